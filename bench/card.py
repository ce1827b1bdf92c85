"""Write a bench run's per-file numbers into the model cards (models/NAME.md).

    python -m bench --models tzip-small --tools xz,bzip2,ppmd --out DIR
    python -m bench.card DIR/results.json            # or: python -m bench ... --card

For every tzip model in the run, the card's section between the markers below is
replaced by a table: the model's bpb on each file next to xz -9e, bzip2 -9 and PPMd
measured in the same run (round-trip verified), and the gap to PPMd.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
CLASSICS = ("xz", "bzip2", "ppmd")


def _total(a: dict | None) -> str:
    """An aggregate's bpb, saying so when some files failed and are not in it."""
    if a is None or a["bpb"] is None:
        return "n/a"
    return f"{a['bpb']:.3f}" + ("" if a["complete"] else f" ({a['files_ok']} of {a['files']} files)")


def section(doc: dict, model: str) -> str:
    """The Markdown block for one model of one results.json document."""
    env = doc["environment"]
    by = {(r["file"], r["tool"]): r for r in doc["results"] if r["status"] == "ok"}
    files = [f["file"] for f in doc["files"]]
    tools = [t for t in CLASSICS if any(k[1] == t for k in by)]
    lines = [BEGIN,
             f"Measured by the bench suite on {env['date'][:10]}, {env['cpu']} "
             f"({env['cpu_count']} cores){', GPU ' + env['gpu'] if env.get('gpu') else ''}; "
             f"`{env['command']}`. Bits per byte of the whole archive, every file "
             f"round-trip verified; gap = {model} / PPMd - 1.", "",
             "| file | bytes | " + model + " | " + " | ".join(tools) + " | gap to PPMd |",
             "|---|---:|---:|" + "---:|" * len(tools) + "---:|"]
    for f in files:
        r = by.get((f, model))
        if r is None:
            continue
        cells = [f"{by[(f, t)]['bpb']:.3f}" if (f, t) in by else "n/a" for t in tools]
        p = by.get((f, "ppmd"))
        gap = f"{100 * (r['bpb'] / p['bpb'] - 1):+.1f}%" if p else "n/a"
        lines.append(f"| {f} | {r['original_bytes']:,} | {r['bpb']:.3f} | "
                     + " | ".join(cells) + f" | {gap} |")
    agg = {(a["group"], a["tool"]): a for a in doc["aggregates"]}
    if ("all", model) in agg:
        a = agg[("all", model)]
        cells = [_total(agg.get(("all", t))) for t in tools]
        lines.append(f"| **all files** | {a['original_bytes']:,} | {_total(a)} | "
                     + " | ".join(cells) + " | |")
        lines += ["", f"Speed on this machine: compress {a['compress_kbps']:.1f} KB/s, "
                      f"decompress {a['decompress_kbps']:.1f} KB/s (all files together)."]
    lines.append(END)
    return "\n".join(lines)


def update(results: Path, models_dir: Path) -> list[Path]:
    """Rewrite the bench section of each model card named in results; returns the cards."""
    doc = json.loads(Path(results).read_text())
    written = []
    for m in doc["models"]:
        card = models_dir / f"{m['name']}.md"
        if not card.exists():
            continue
        text = card.read_text()
        block = section(doc, m["name"])
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n## Bench (held-out files)\n\n" + block + "\n"
        card.write_text(text)
        written.append(card)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m bench.card", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="results.json of a bench run")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="where the cards are (default: tzip's models folder, $TZIP_MODELS)")
    a = ap.parse_args(argv)
    from tzip.model.registry import models_dir
    for card in update(a.results, a.models_dir or models_dir()):
        print(f"bench.card: updated {card}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
