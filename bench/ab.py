"""Interleaved A/B speed of two tzip checkouts on this machine.

Shared machines drift by a third within minutes, so two bench runs back to back can
show a change as faster or slower by chance. This alternates the two checkouts, one
fresh process per measurement (order A, B, then B, A, ...), so drift hits both alike:

    python -m bench.ab OLD_CHECKOUT NEW_CHECKOUT --files book1 paper1 --what decompress
    python -m bench.ab A B --what step --streams 12,128 --rounds 5 --out ab.md

compress and decompress: KB of original per second of the library call alone
(--clock cpu: per second of the process's CPU time; TZIP_AB_FORMAT=3 makes a checkout
that writes format 4 write format 3)
(tzip.compress / tzip.decompress, model loaded beforehand, device cpu); step: ms per
engine step at S streams, threads as decoding sets them. Archives are compared too:
a speed change must not change them.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import emit_markdown

_MEASURE = r"""
import hashlib, os, sys, time
import numpy as np, tzip
what, model, arg, blob_path, clock = sys.argv[1:6]
clock = time.process_time if clock == "cpu" else time.perf_counter
# the model and its engine made beforehand (checkouts from tzip.Compressor on: 8150c8c's
# module-level tzip.models and tzip.coder are gone)
fmt = {"format": int(os.environ["TZIP_AB_FORMAT"])} if os.environ.get("TZIP_AB_FORMAT") else {}
comp, dec = tzip.Compressor(model, device="cpu", **fmt), tzip.Decompressor(model, device="cpu")
compress, decompress = comp.compress, dec.decompress
if what == "step":
    S = int(arg)
    tok = np.random.default_rng(0).integers(0, 256, S)
    stepper = comp.engine.stepper(S, 10 ** 9)
    state, threads = stepper.new_state(S), stepper.threads(S)
    step = lambda: stepper(tok, state)
    with threads:
        for _ in range(50):
            step()
        t = clock()
        for _ in range(200):
            step()
        print(f"{(clock() - t) / 200 * 1e3:.3f} -")
    sys.exit()
data = open(arg, "rb").read()
if what == "compress":
    t = clock()
    blob = compress(data)
    dt = clock() - t
    open(blob_path, "wb").write(blob)
else:
    blob = open(blob_path, "rb").read()
    t = clock()
    assert decompress(blob) == data
    dt = clock() - t
print(f"{len(data) / dt / 1e3:.2f} {hashlib.sha256(blob).hexdigest()[:12]}")
"""


def measure(checkout: Path, what: str, model: str, arg: str, blob: Path,
            clock: str = "wall") -> tuple[float, str]:
    """One fresh process in the given checkout; returns (value, archive digest or '-')."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, "-c", _MEASURE, what, model, arg, str(blob), clock],
                         env=env, capture_output=True, text=True, cwd=checkout)
    if out.returncode:
        raise SystemExit(f"{checkout}: {what} {arg} failed:\n{out.stderr.strip()}")
    value, digest = out.stdout.split()
    return float(value), digest


def _median(x: list[float]) -> float:
    return sorted(x)[len(x) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="checkout A (the baseline)")
    ap.add_argument("b", type=Path, help="checkout B (the change)")
    ap.add_argument("--files", nargs="*", default=[], help="files for compress/decompress")
    ap.add_argument("--what", default="compress,decompress", help="compress,decompress,step")
    ap.add_argument("--streams", default="12,128", help="stream counts for step")
    ap.add_argument("--model", default="tzip-small")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the process's CPU time (all its threads): steadier "
                         "on a machine busy with other work")
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    sides = {"A": args.a.resolve(), "B": args.b.resolve()}
    args.files = [str(Path(f).resolve()) for f in args.files]  # measured from each checkout
    rows = []
    for what in args.what.split(","):
        if what not in ("compress", "decompress", "step"):
            ap.error(f"unknown --what {what!r}")
        for arg in (args.streams.split(",") if what == "step" else args.files):
            rows.append((what, arg))
    results: dict[tuple[str, str, str], list[float]] = {}
    digests: dict[tuple[str, str], set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def archive(side: str, arg: str) -> Path:
            """Where a side's archive of a file lives: compress writes it, decompress reads it."""
            return Path(tmp) / f"{side}-{hashlib.md5(arg.encode()).hexdigest()}.tz"

        for what, arg in rows:  # archives to decode, made once per side
            if what == "decompress":
                for side, path in sides.items():
                    blob = archive(side, arg)
                    if not blob.exists():
                        _, d = measure(path, "compress", args.model, arg, blob, args.clock)
                        digests.setdefault((arg, side), set()).add(d)
        for r in range(args.rounds):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            for what, arg in rows:
                for side in order:
                    v, d = measure(sides[side], what, args.model, arg, archive(side, arg), args.clock)
                    results.setdefault((what, arg, side), []).append(v)
                    if d != "-":
                        digests.setdefault((arg, side), set()).add(d)
                    print(f"round {r + 1} {what} {Path(arg).name} {side}: {v}", file=sys.stderr)
    lines = [f"A = {sides['A']}, B = {sides['B']}; model {args.model}; {args.rounds} rounds, "
             f"one fresh process each, alternating A, B / B, A; {args.clock} clock.", "",
             "| measure | input | unit | A | B | B / A (medians) |", "|---|---|---|---|---|---:|"]
    for what, arg in rows:
        a, b = results[(what, arg, "A")], results[(what, arg, "B")]
        unit = "ms/step" if what == "step" else "KB/s"
        name = f"{arg} streams" if what == "step" else Path(arg).name
        lines.append(f"| {what} | {name} | {unit} | {', '.join(map(str, a))} | "
                     f"{', '.join(map(str, b))} | {_median(b) / _median(a):.3f} |")
    same = {arg: digests.get((arg, "A")) == digests.get((arg, "B")) for arg in args.files
            if (arg, "A") in digests}
    if same:
        lines += ["", "Archives identical in A and B: " +
                  ", ".join(f"{Path(f).name} {'yes' if ok else 'NO'}" for f, ok in same.items())]
    return emit_markdown(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
