"""Whether each tzip level is worth having, from a finished bench run.

    python -m bench.levels RESULTS.json [--fast tzip-1] [--default tzip-small] [--out FILE]

Issue 31 asks two things of the ladder of levels, and this answers both from one run's
results.json (nothing is re-timed):
- the fastest level is smaller than PPMd at its best order on every file of the text
  groups: PPMd is re-run here at every order (the same pyppmd settings as the bench's
  `ppmd` tool, only the order varies), so "best" is per file, not one order chosen for
  all; the table gives the margin in bytes, the whole tzip archive (header, blocks,
  trailer) against PPMd's whole output;
- no classic tool is both faster and smaller than a tzip level: per group, each tzip
  tool's total bpb and speeds against every other tool's, over the same files (a tzip
  tool run on a --subset is compared over its subset).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tools import PPMD_MEM

PPMD_ORDERS = tuple(range(2, 17)) + (20, 24, 32, 48, 64)
TEXT_GROUPS = ("calgary", "canterbury")


def ppmd_sizes(data: bytes, orders: tuple[int, ...] = PPMD_ORDERS) -> dict[int, int]:
    """Bytes of PPMd var. I output at each order (the bench's ppmd settings otherwise)."""
    import pyppmd
    return {o: len(pyppmd.compress(data, max_order=o, mem_size=PPMD_MEM, variant="I"))
            for o in orders}


def per_file(doc: dict, fast: str, default: str | None, groups=TEXT_GROUPS,
             sizes=ppmd_sizes) -> list[dict]:
    """One row per file of the groups: the fast level's bytes against PPMd's best order."""
    by = {(r["file"], r["tool"]): r for r in doc["results"] if r["status"] == "ok"}
    rows = []
    for f in doc["files"]:
        if f["group"] not in groups or (f["file"], fast) not in by:
            continue
        data = Path(f["path"]).read_bytes()[:f["used_bytes"]]
        ppmd = sizes(data)
        order = min(ppmd, key=lambda o: (ppmd[o], o))
        tz = by[(f["file"], fast)]["compressed_bytes"]
        d = by.get((f["file"], default)) if default else None
        rows.append({"file": f["file"], "bytes": len(data), "fast_bytes": tz,
                     "fast_bpb": 8 * tz / len(data), "ppmd_order": order,
                     "ppmd_bytes": ppmd[order], "ppmd_bpb": 8 * ppmd[order] / len(data),
                     "margin_bytes": ppmd[order] - tz,
                     "default_bpb": d["bpb"] if d else None})
    return rows


def _total(rows: list[dict], key: str) -> tuple[float | None, float | None, float | None]:
    """(bpb, compress KB/s, decompress KB/s) of one tool over rows (all ok)."""
    orig = sum(r["original_bytes"] for r in rows)
    if not rows or not orig:
        return None, None, None
    comp = sum(r["compressed_bytes"] for r in rows)
    cs, ds = sum(r["compress_s"] for r in rows), sum(r["decompress_s"] for r in rows)
    return 8 * comp / orig, orig / cs / 1000, orig / ds / 1000


def dominated(doc: dict, tzip_tools: list[str], groups: list[str],
              aliases: dict[str, tuple[str, ...]] | None = None) -> list[dict]:
    """For each tzip tool and group: the other tools that are smaller and faster over the
    files the tzip tool ran on (faster to compress, to decompress, or both). aliases name
    a set of groups as one (text: calgary and canterbury)."""
    aliases = aliases or {}
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    tools = [t["name"] for t in doc["tools"] if t["available"]]
    out = []
    for g in groups:
        for t in tzip_tools:
            members = aliases.get(g, (g,))
            files = {r["file"] for r in ok if r["tool"] == t and r["group"] in members}
            if not files:
                continue
            mine = _total([r for r in ok if r["tool"] == t and r["file"] in files], t)
            beaten = []
            for other in tools:
                rows = [r for r in ok if r["tool"] == other and r["file"] in files]
                if other == t or len(rows) < len(files):
                    continue
                theirs = _total(rows, other)
                if theirs[0] < mine[0]:
                    faster = [w for w, i in (("compress", 1), ("decompress", 2))
                              if theirs[i] > mine[i]]
                    if faster:
                        beaten.append({"tool": other, "bpb": theirs[0], "faster": faster})
            out.append({"group": g, "tool": t, "files": len(files), "bpb": mine[0],
                        "compress_kbps": mine[1], "decompress_kbps": mine[2],
                        "dominated_by": beaten})
    return out


def ladder(doc: dict, tzip_tools: list[str], panels: dict[str, tuple[str, ...]]) -> list[dict]:
    """Each tzip tool on each panel (a name -> its groups): bpb, wall-clock KB/s and KB per
    CPU second both ways, over the files it ran on (CPU: all threads of the process; on a
    loaded machine wall-clock speed also counts the waiting for a core)."""
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    out = []
    for t in tzip_tools:
        for name, groups in panels.items():
            rows = [r for r in ok if r["tool"] == t and r["group"] in groups]
            if not rows:
                continue
            orig = sum(r["original_bytes"] for r in rows)
            bpb, ck, dk = _total(rows, t)
            cpu = {}
            for ph in ("compress", "decompress"):
                vals = [r.get(f"{ph}_cpu_s") for r in rows]
                cpu[ph] = orig / sum(vals) / 1000 if None not in vals and sum(vals) else None
            out.append({"tool": t, "panel": name, "files": len(rows), "bytes": orig, "bpb": bpb,
                        "compress_kbps": ck, "decompress_kbps": dk,
                        "compress_kb_per_cpu_s": cpu["compress"],
                        "decompress_kb_per_cpu_s": cpu["decompress"]})
    return out


def _k(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def markdown(rows: list[dict], dom: list[dict], fast: str, default: str | None,
             steps: list[dict] | None = None) -> str:
    lines = [f"## {fast} against PPMd at its best order, per file", "",
             f"PPMd var. I, {PPMD_MEM >> 20} MiB, orders {PPMD_ORDERS[0]}..{PPMD_ORDERS[-1]} "
             "(best per file); bytes are whole outputs (tzip: the archive with its header, "
             "block and trailer). margin = PPMd bytes - tzip bytes (positive: tzip smaller).",
             "", f"| file | bytes | {fast} bpb | PPMd best bpb (order) | margin bytes | "
             + (f"{default} bpb |" if default else ""),
             "|---|---:|---:|---:|---:|" + ("---:|" if default else "")]
    for r in rows:
        d = (f" {r['default_bpb']:.3f} |" if r["default_bpb"] is not None else " n/a |") \
            if default else ""
        lines.append(f"| {r['file']} | {r['bytes']:,} | {r['fast_bpb']:.3f} | "
                     f"{r['ppmd_bpb']:.3f} ({r['ppmd_order']}) | {r['margin_bytes']:+,} |" + d)
    losses = [r for r in rows if r["margin_bytes"] <= 0]
    lines += ["", f"{fast} is smaller on {len(rows) - len(losses)} of {len(rows)} files"
              + (": loses on " + ", ".join(f"{r['file']} by {-r['margin_bytes']:,} bytes"
                                          for r in losses) if losses else "."), "",
              "## Is any tool both smaller and faster than a tzip level?", "",
              "| group | tzip tool | files | bpb | compress KB/s | decompress KB/s | "
              "smaller and faster |", "|---|---|---:|---:|---:|---:|---|"]
    for d in dom:
        who = "; ".join(f"{b['tool']} ({b['bpb']:.3f} bpb, faster to {' and '.join(b['faster'])})"
                        for b in d["dominated_by"]) or "none"
        lines.append(f"| {d['group']} | {d['tool']} | {d['files']} | {d['bpb']:.3f} | "
                     f"{d['compress_kbps']:.3g} | {d['decompress_kbps']:.3g} | {who} |")
    if steps:
        lines += ["", "## The ladder", "",
                  "KB = 1000 bytes of original; KB/s: wall clock; KB/CPU s: per second of CPU "
                  "time, all threads.", "",
                  "| tzip tool | files | bytes | bpb | compress KB/s | decompress KB/s | "
                  "compress KB/CPU s | decompress KB/CPU s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for s in steps:
            lines.append(f"| {s['tool']} | {s['panel']}: {s['files']} | {s['bytes']:,} | "
                         f"{s['bpb']:.3f} | {_k(s['compress_kbps'])} | {_k(s['decompress_kbps'])} | "
                         f"{_k(s['compress_kb_per_cpu_s'])} | {_k(s['decompress_kb_per_cpu_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.levels", description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--fast", default="tzip-1", help="the fastest level's tool (default tzip-1)")
    ap.add_argument("--default", default="tzip-small", help="the default level's tool")
    ap.add_argument("--out", type=Path, help="also write the tables here")
    args = ap.parse_args(argv)
    try:
        doc = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        print(f"bench.levels: error: {args.results}: {e}", file=sys.stderr)
        return 2
    tzips = [t["name"] for t in doc["tools"] if t["kind"] == "tzip" and t["available"]]
    if args.fast not in tzips:
        print(f"bench.levels: error: no tzip tool {args.fast!r} in {args.results} "
              f"(tzip tools: {', '.join(tzips) or 'none'})", file=sys.stderr)
        return 2
    default = args.default if args.default in tzips else None
    groups = [g for g in dict.fromkeys(r["group"] for r in doc["results"])]
    text_groups = tuple(g for g in groups if g in TEXT_GROUPS)
    panels = ({"text": text_groups} if text_groups else {}) | \
        {g: (g,) for g in groups if g not in TEXT_GROUPS}
    text = markdown(per_file(doc, args.fast, default),
                    dominated(doc, tzips, (["text"] if text_groups else []) + groups,
                              aliases={"text": text_groups}),
                    args.fast, default, ladder(doc, tzips, panels))
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
