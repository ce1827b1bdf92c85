"""What more streams cost: archive sizes at the default stream count and multiples of it.

Decoding runs one batched model step per stream position, so more streams decode
faster; each stream starts with an empty context, so they cost some ratio. This measures
that cost (compression only: sizes do not depend on the device or on decoding):

    python -m bench.streams --model tzip-small --files paper1 alice29.txt --factors 1,2,4
    python -m bench.streams --model tzip-large --files alice29.txt --counts 9,37,74
    python -m bench.streams --format 12 --files corpora/structured/*.* --counts 1,2,4,8,16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tzip
from tzip import codec, transform
from tzip.container import PROFILES, VERSION
from tzip.model import registry
from bench.report import emit_markdown


def default_streams(data: bytes, context: int, version: int = VERSION) -> int:
    """The stream count format `version` picks for a one-block file (after the CRLF transform)."""
    if transform.crlf_applies(data):
        data = transform.crlf_to_lf(data)
    return len(codec.split_streams(len(data), context, version=version))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tzip-small")
    ap.add_argument("--files", nargs="+", required=True)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--factors", default="1,2,4", help="multiples of the default count")
    group.add_argument("--counts", help="explicit stream counts instead")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--format", type=int, help="archive format (default: the library's; 10: level -8's mixer)")
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    version = args.format or VERSION
    m = registry.load(args.model)
    cols = (args.counts or args.factors).split(",")
    heads = cols if args.counts else [f"{c}x default" for c in cols]
    lines = [f"Model {m.name} (id {m.digest.hex()[:16]}), device {args.device}, format "
             f"{version}: bits per byte of the whole archive (stream count in brackets).", "",
             "| file | bytes | " + " | ".join(heads) + " |",
             "|---|---:|" + "---|" * len(cols)]
    total_in, total_out = 0, [0] * len(cols)
    for f in args.files:
        data = Path(f).read_bytes()
        base = default_streams(data, m.cfg.context, version)
        cells = []
        for i, c in enumerate(cols):
            n = int(c) if args.counts else min(PROFILES[version].max_streams, base * int(c))
            size = len(tzip.compress(data, m, device=args.device, streams=n, format=args.format))
            total_out[i] += size
            cells.append(f"{8 * size / len(data):.4f} ({n})")
            print(f"{Path(f).name}: {cells[-1]}", file=sys.stderr)
        total_in += len(data)
        lines.append(f"| {Path(f).name} | {len(data):,} | " + " | ".join(cells) + " |")
    if len(args.files) > 1:
        lines.append(f"| all | {total_in:,} | " + " | ".join(f"{8 * o / total_in:.4f}" for o in total_out) + " |")
    return emit_markdown(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
