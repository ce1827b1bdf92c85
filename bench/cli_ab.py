"""Interleaved A/B of the whole CLI (`tzip -c`, `tzip -dc`) of two checkouts: CPU seconds.

    python -m bench.cli_ab OLD_CHECKOUT NEW_CHECKOUT FILE... [--rounds 3] [--bytes N]

Each measurement is a fresh `python -m tzip` process (start-up included), its CPU time
(user + system, all threads) from the kernel's accounting of the child, so the figure
holds on a shared machine where wall time does not. Order A, B then B, A, alternating;
one warm-up round first (it fills numba's cache of each checkout). The archives of A and
B are compared byte for byte and every decompression checked against the input. Prints
a markdown table of medians: CPU seconds and KB of original per CPU second.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(checkout: Path, args: list[str], stdin: Path, stdout: Path) -> float:
    """CPU seconds of one `python -m tzip ARGS < stdin > stdout` in the checkout."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    with open(stdin, "rb") as fi, open(stdout, "wb") as fo:
        p = subprocess.Popen([sys.executable, "-m", "tzip", *args], stdin=fi, stdout=fo, env=env,
                             cwd=checkout)
        _, status, ru = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{checkout}: tzip {' '.join(args)} failed")
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=200_000, help="first N bytes of each file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tzip-cli-ab-"))
    inputs = []
    for f in args.files:
        p = tmp / f.name
        p.write_bytes(f.read_bytes()[:args.bytes])
        inputs.append(p)
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(args.rounds + 1):  # round 0: warm-up
        order = [("A", args.a), ("B", args.b)] if r % 2 else [("B", args.b), ("A", args.a)]
        for inp in inputs:
            for name, co in order:
                arc, out = tmp / f"{inp.name}.{name}.tz", tmp / f"{inp.name}.{name}.out"
                c = run(co, ["-c"], inp, arc)
                d = run(co, ["-dc"], arc, out)
                if out.read_bytes() != inp.read_bytes():
                    raise SystemExit(f"{name}: {inp.name} did not round-trip")
                if r:
                    times.setdefault((inp.name, "compress", name), []).append(c)
                    times.setdefault((inp.name, "decompress", name), []).append(d)
                print(f"round {r} {name} {inp.name}: -c {c:.2f} CPU s, -dc {d:.2f} CPU s",
                      file=sys.stderr, flush=True)
            same = (tmp / f"{inp.name}.A.tz").read_bytes() == (tmp / f"{inp.name}.B.tz").read_bytes()
            if not same:
                raise SystemExit(f"{inp.name}: the archives of A and B differ")
    print(f"| file ({args.bytes} B) | | A CPU s | B CPU s | A KB/s | B KB/s | B / A speed |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for inp in inputs:
        n = inp.stat().st_size
        for what in ("compress", "decompress"):
            a = statistics.median(times[inp.name, what, "A"])
            b = statistics.median(times[inp.name, what, "B"])
            print(f"| {inp.name} | {what} | {a:.2f} | {b:.2f} | {n / a / 1e3:.1f} | {n / b / 1e3:.1f} "
                  f"| {a / b:.2f}x |")
    print(f"\n{args.rounds} rounds, medians; every run: {times}")


if __name__ == "__main__":
    main()
