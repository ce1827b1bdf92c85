"""Turning measured results into totals, a Markdown report and PNG charts."""
from __future__ import annotations

from pathlib import Path

MEMORY_NOTE = ("peak RSS of the process that ran the phase: for shell tools the command's "
               "max RSS from GNU time (n/a without it); for library codecs and tzip the VmHWM "
               "of a fresh Python worker, which includes the interpreter and its imports "
               "(PyTorch for tzip; *_rss_before in the JSON is the worker's RSS just before "
               "the timed call)")
MEMORY_NOTE_INLINE = ("not measured for library codecs and tzip (--inline: they ran in the "
                      "suite's own process); shell tools: the command's max RSS from GNU time")


def _groups(results: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["group"] not in seen:
            seen.append(r["group"])
    return seen


def _total(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    orig = sum(r["original_bytes"] for r in ok)
    comp = sum(r["compressed_bytes"] for r in ok)
    cs, ds = sum(r["compress_s"] for r in ok), sum(r["decompress_s"] for r in ok)

    def peak(key: str) -> int | None:
        vals = [r[key] for r in ok if r.get(key) is not None]
        return max(vals) if vals else None

    return {"files": len(rows), "files_ok": len(ok),
            "complete": len(ok) == len(rows) and bool(rows),
            "original_bytes": orig, "compressed_bytes": comp,
            "bpb": 8 * comp / orig if orig else None,
            "compress_kbps": orig / cs / 1000 if cs else None,
            "decompress_kbps": orig / ds / 1000 if ds else None,
            "compress_peak_rss": peak("compress_peak_rss"),
            "decompress_peak_rss": peak("decompress_peak_rss"),
            "compress_gpu_peak": peak("compress_gpu_peak"),
            "decompress_gpu_peak": peak("decompress_gpu_peak")}


def aggregates(results: list[dict], tool_names: list[str]) -> list[dict]:
    """Per group and tool, and over all files ("all"): total compressed*8 / total original
    and total bytes / total seconds, over the files whose round trip succeeded; "complete"
    says whether that was every file."""
    out = []
    for group in _groups(results) + ["all"]:
        in_group = {r["file"] for r in results if group in ("all", r["group"])}
        for tool in tool_names:
            rows = [r for r in results if r["tool"] == tool and group in ("all", r["group"])]
            # a tool run on part of the group (--subset) is totalled over its own files
            out.append({"group": group, "tool": tool, **_total(rows),
                        "group_files": len(in_group), "subset": len(rows) < len(in_group)})
    return out


def speed(x: float | None) -> str:
    """Speeds with three significant digits below 100."""
    if x is None:
        return "n/a"
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def _mib(x: int | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.1f}"


def _esc(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _cell(r: dict | None) -> tuple[str, float | None]:
    if r is None:
        return "", None
    if r["status"] != "ok":
        return f"FAILED ({r['status']})", None
    return f"{r['bpb']:.3f}", r["bpb"]


def _row(label: str, size: str, cells: list[tuple[str, float | None]]) -> str:
    vals = [v for _, v in cells if v is not None]
    best = min(vals) if vals else None
    shown = [f"**{t}**" if v is not None and v == best else t for t, v in cells]
    return "| " + " | ".join([label, size] + shown) + " |"


def markdown(doc: dict) -> str:
    e, s = doc["environment"], doc["settings"]
    tools = [t["name"] for t in doc["tools"] if t["available"]]
    by = {(r["file"], r["tool"]): r for r in doc["results"]}
    agg = {(a["group"], a["tool"]): a for a in doc["aggregates"]}
    groups = _groups(doc["results"])
    what = ("first {:,} bytes of each file".format(s["limit_bytes"]) if s["limit_bytes"]
            else "whole files")
    lines = [
        "# tzip benchmark", "",
        f"{e['date']} on {e['host']}: {e['cpu']} ({e['cpu_count']} CPUs), GPU: "
        f"{e['gpu'] or 'none'}; tzip device: {s['device_resolved'] or 'n/a'}; "
        f"git {e['git_commit'] or 'unknown'}.",
        f"Command: `{e['command']}`. Files: {s['corpus'] or 'user files'}, {what}.", "",
        "## Bits per byte (8 x compressed / original; lower is better, best per row in bold)",
        "",
        "| file | bytes | " + " | ".join(tools) + " |",
        "|---|---:|" + "---:|" * len(tools),
    ]
    for f in doc["files"]:
        if not any((f["file"], t) in by for t in tools):
            continue
        used = next(by[(f["file"], t)]["original_bytes"] for t in tools if (f["file"], t) in by)
        lines.append(_row(f["file"], f"{used:,}", [_cell(by.get((f["file"], t))) for t in tools]))
    for g in groups + (["all"] if len(groups) > 1 else []):
        cells, n, size = [], 0, 0
        for t in tools:
            a = agg.get((g, t))
            if a and a.get("subset"):  # over other files than the row: shown, never best
                cells.append((f"{a['bpb']:.3f} ({a['files']} of {a['group_files']} files)"
                              if a["complete"] else "incomplete", None))
                continue
            n, size = (a["files"], a["original_bytes"]) if a and a["complete"] else (n, size)
            cells.append((f"{a['bpb']:.3f}", a["bpb"]) if a and a["complete"] else
                         ("incomplete" if a else "", None))
        lines.append(_row(f"**{g} total** ({n} files)", f"{size:,}", cells))
    lines += ["", "## Speed and memory (all files together)", "",
              "KB/s = 1000 bytes of original per second. Peak RSS in MiB, the largest over "
              f"the files. Memory: {s['memory']}.", "",
              "| tool | settings | bpb | compress KB/s | decompress KB/s | "
              "peak RSS compress | peak RSS decompress |",
              "|---|---|---:|---:|---:|---:|---:|"]
    labels = {t["name"]: t["label"] for t in doc["tools"]}
    for t in tools:
        a = agg[("all", t)]
        bpb = f"{a['bpb']:.3f}" if a["complete"] else f"({a['files_ok']} of {a['files']} ok)"
        if a.get("subset") and a["complete"]:
            bpb += f" ({a['files']} of {a['group_files']} files)"
        gpu = ""
        if a["compress_gpu_peak"] is not None:
            gpu = (f" (GPU {_mib(a['compress_gpu_peak'])} / "
                   f"{_mib(a['decompress_gpu_peak'])} MiB allocated)")
        lines.append(f"| {t} | {_esc(labels[t])}{gpu} | {bpb} | {speed(a['compress_kbps'])} | "
                     f"{speed(a['decompress_kbps'])} | {_mib(a['compress_peak_rss'])} | "
                     f"{_mib(a['decompress_peak_rss'])} |")
    if doc["models"]:
        lines += ["", "## tzip models (their weights are not counted in the sizes above)", "",
                  "| model | id | params | model file bytes | layers x d_model | heads (q/kv) "
                  "| context |", "|---|---|---:|---:|---|---|---:|"]
        for m in doc["models"]:
            c = m["config"]
            lines.append(f"| {m['name']} | `{m['id']}` | {m['params']:,} | {m['file_bytes']:,} | "
                         f"{c.get('n_layer')} x {c.get('d_model')} | "
                         f"{c.get('n_head')}/{c.get('n_kv_head')} | {c.get('context')} |")
        lines.append("")
        lines.append("params: elements of the embedding, the output head and the attention "
                     "and MLP matrices (int8 weights).")
    extra = ([f"- {x['note']}" for x in doc["skipped"]]
             + [f"- **FAILED** {x['tool']} on {x['file']}: {x['status']}: {_esc(x['error'])}"
                for x in doc["failures"]]
             + [f"- {n}" for n in doc["notes"]])
    if extra:
        lines += ["", "## Notes", ""] + extra
    if doc.get("charts"):
        lines += ["", "## Charts", ""] + [f"![{c}]({c})" for c in doc["charts"]]
    return "\n".join(lines) + "\n"


def charts(doc: dict, out_dir: Path) -> tuple[list[str], list[str]]:
    """bpb.png (bpb per file and tool) and speed.png (bpb against compress and decompress
    speed); returns
    the file names written and notes (matplotlib missing, nothing to draw)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], ["charts skipped: matplotlib is not installed (pip install matplotlib)"]
    tools = [t["name"] for t in doc["tools"] if t["available"]]
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    if not tools or not ok:
        return [], ["charts skipped: no successful results to draw"]
    files = [f["file"] for f in doc["files"]]
    by = {(r["file"], r["tool"]): r["bpb"] for r in ok}
    width = 0.8 / len(tools)
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.25 * len(files) * max(1, len(tools)))), 4.5))
    for i, t in enumerate(tools):
        xs = [j + (i - (len(tools) - 1) / 2) * width for j in range(len(files))]
        ax.bar(xs, [by.get((f, t), 0.0) for f in files], width, label=t)
    ax.set_xticks(range(len(files)))
    ax.set_xticklabels([f.rsplit("/", 1)[-1] for f in files], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("bits per byte (lower is better)")
    # the legend beside the axes, never over a bar
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "bpb.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    agg = {a["tool"]: a for a in doc["aggregates"] if a["group"] == "all"}
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.5), sharey=True)
    for ax, key, what in zip(axes, ("compress_kbps", "decompress_kbps"), ("compress", "decompress")):
        points = [(t, agg[t][key], agg[t]["bpb"]) for t in tools
                  if t in agg and agg[t]["bpb"] is not None and agg[t].get(key)]
        for _, x, y in points:
            ax.scatter(x, y)
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} speed, KB/s (log scale)")
        ax.grid(alpha=0.3, which="both")
        _label_points(fig, ax, points)
    axes[0].set_ylabel("bits per byte, all files (lower is better)")
    fig.tight_layout()
    fig.savefig(out_dir / "speed.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    levels_chart(doc, out_dir / "levels.png", plt)
    return ["bpb.png", "speed.png", "levels.png"], []


TEXT_GROUPS = ("canterbury", "calgary")  # drawn as one panel: the bench's text group


def level_panels(doc: dict) -> list[tuple[str, list[dict]]]:
    """(title, points) per panel of levels.png: Calgary and Canterbury together, then each
    other group. A point is one tool's total over the panel's files that it ran on:
    {"tool", "label", "tzip", "bpb", "decompress_kbps", "compress_kbps", "files",
    "panel_files"}; a tool run on a --subset is labelled with its share of the files."""
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    groups = _groups(ok)
    text = [g for g in groups if g in TEXT_GROUPS]
    panels = ([(" + ".join(g.capitalize() for g in text) + " text", text)] if text else []) \
        + [(g, [g]) for g in groups if g not in text]
    kinds = {t["name"]: t["kind"] for t in doc["tools"]}
    out = []
    for title, members in panels:
        rows = [r for r in ok if r["group"] in members]
        n_files = len({r["file"] for r in rows})
        points = []
        for t in [t["name"] for t in doc["tools"] if t["available"]]:
            mine = [r for r in rows if r["tool"] == t]
            total = _total(mine)
            if not mine or not total["decompress_kbps"]:
                continue
            label = t if len(mine) == n_files else f"{t} ({len(mine)} of {n_files} files)"
            points.append({"tool": t, "label": label, "tzip": kinds.get(t) == "tzip",
                           "bpb": total["bpb"], "decompress_kbps": total["decompress_kbps"],
                           "compress_kbps": total["compress_kbps"], "files": len(mine),
                           "panel_files": n_files})
        out.append((f"{title} ({n_files} files)", points))
    return out


def levels_chart(doc: dict, path: Path, plt) -> None:
    """levels.png: decompression speed (log x) against bits per byte, one panel per group
    (Calgary + Canterbury text, then e.g. structured): where each tzip level stands among
    the classic tools. tzip's levels are stars joined from fastest to smallest."""
    panels = level_panels(doc)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.8), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels):
        tz = sorted((p for p in points if p["tzip"]), key=lambda p: -p["decompress_kbps"])
        if len(tz) > 1:
            ax.plot([p["decompress_kbps"] for p in tz], [p["bpb"] for p in tz], color="C3",
                    lw=1, alpha=0.6, zorder=1)
        for p in points:
            ax.scatter(p["decompress_kbps"], p["bpb"], marker="*" if p["tzip"] else "o",
                       s=110 if p["tzip"] else 36, color="C3" if p["tzip"] else "C0", zorder=2)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("decompression speed, KB/s (log scale)")
        ax.set_ylabel("bits per byte (lower is better)")
        ax.grid(alpha=0.3, which="both")
        lo, hi = (min(p["decompress_kbps"] for p in points), max(p["decompress_kbps"] for p in points)) \
            if points else (1, 10)
        ax.set_xlim(lo / 2, hi * 6)  # room for the labels right of the points
        _label_points(fig, ax, [(p["label"], p["decompress_kbps"], p["bpb"]) for p in points])
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _label_points(fig, ax, points: list[tuple[str, float, float]]) -> None:
    """Name each point beside it, moving a label up or down until it overlaps no label
    placed before it (tools of similar speed and ratio, such as zstd and zstd-long, would
    otherwise print over each other)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for name, x, y in sorted(points, key=lambda p: (p[2], p[1])):
        px, py = ax.transData.transform((x, y))
        for step in [0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6]:
            text = ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -3 + 9 * step),
                               fontsize=8)
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:
            text = ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, -3), fontsize=8)
            box = text.get_window_extent(renderer)
        placed.append(box)


def emit_markdown(lines: list[str], out: "Path | None") -> int:
    """Print a small markdown report and, when out is given, save it there; returns 0."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
    return 0


def redraw(out_dir: Path) -> list[str]:
    """Draws a finished run's charts again and rewrites its results.md (a run made before
    a chart existed, or one whose charts were skipped); returns the chart files."""
    import json
    path = Path(out_dir) / "results.json"
    doc = json.loads(path.read_text())
    doc["charts"], notes = charts(doc, Path(out_dir))
    doc["notes"] = [n for n in doc["notes"] if not n.startswith("charts skipped")] + notes
    path.write_text(json.dumps(doc, indent=1) + "\n")
    (Path(out_dir) / "results.md").write_text(markdown(doc))
    return doc["charts"]


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "results.json").is_file():
        print("usage: python -m bench.report RUN_DIR   (a folder with a results.json: draws its "
              "charts again and rewrites results.md)", file=sys.stderr)
        sys.exit(2)
    print("\n".join(redraw(Path(sys.argv[1]))))
