"""CPU speed of model shapes before any training: what a config would cost to run.

Training time is scarce (GPU sessions), while the engine's speed depends on the shape of
a model, not on its weights. This builds each config's model with its initial weights,
converts it to the integer engine as a trained one would be, and times the model coder
(tzip/codec.py encode and decode: the path of a model-coded block, which the container
would not choose for an untrained model) on the given files, interleaved (round r runs
every config in turn, the order rotating each round) so the machine's drift hits all
alike:

    python -m bench.arch_speed tzip/configs/tzip-small.json cand.json --files alice29.txt paper1

A config is a model JSON as in tzip/configs/ (only its "model" part is used) or inline JSON; a
trained model (.npz path or a name in models/) may be listed too, to check that its
untrained twin runs at its speed. The sizes it would report mean nothing (untrained weights); the speeds are the point.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tzip import codec as coder
from tzip.legacy import linear
from tzip import transform
from tzip.engine import Engine
from tzip.model import IntModel, ModelConfig
from tzip.model import registry as models
from tzip.training.convert import calibration_windows, convert
from tzip.training.net import ByteTransformer
from bench.report import emit_markdown

CALIBRATION = Path(__file__).resolve().parent / "sample" / "notes.txt"


def build(spec: str) -> tuple[str, IntModel, Engine]:
    """(label, integer model, its CPU engine) for a trained model, a config path or inline
    JSON; a config's model keeps its initial weights."""
    if spec.endswith(".npz") or spec in models.available():
        im = models.load(spec)
        label = f"{im.name} (trained)"
    else:
        p = Path(spec)
        conf = json.loads(p.read_text()) if p.is_file() else json.loads(spec)
        c = ModelConfig.from_dict(conf.get("model", conf))
        torch.manual_seed(0)
        text = np.frombuffer(CALIBRATION.read_bytes(), np.uint8)
        im = convert(ByteTransformer(c).eval(), calibration_windows(text, min(c.context, 256), 8), "speed")
        label = f"d{c.d_model} L{c.n_layer} H{c.n_head}/{c.n_kv_head} mlp{c.mlp_mult} ctx{c.context}"
    return label, im, Engine(im, "cpu")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.arch_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="model config JSON files or inline JSON")
    ap.add_argument("--files", nargs="+", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    built = [build(s) for s in args.configs]
    files = []
    for f in args.files:  # as the container codes them: CRLF files with LF line ends
        raw = Path(f).read_bytes()
        files.append((Path(f).name, transform.crlf_to_lf(raw) if transform.crlf_applies(raw) else raw))
    speed: dict[tuple[int, str, str], list[float]] = {}
    for r in range(args.rounds):
        for k in range(len(built)):
            i = (k + r) % len(built)
            label, im, engine = built[i]
            for name, data in files:
                lengths = coder.split_streams(len(data), im.cfg.context)
                t = time.perf_counter()
                blob = linear.encode(engine, data, lengths)
                t1 = time.perf_counter()
                ok = linear.decode(engine, blob, lengths) == data
                t2 = time.perf_counter()
                if not ok:
                    raise SystemExit(f"{label}: {name} did not round-trip")
                speed.setdefault((i, name, "c"), []).append(len(data) / (t1 - t) / 1e3)
                speed.setdefault((i, name, "d"), []).append(len(data) / (t2 - t1) / 1e3)
                print(f"round {r + 1} {label} {name}: {speed[(i, name, 'c')][-1]:.1f} / "
                      f"{speed[(i, name, 'd')][-1]:.1f} KB/s", file=sys.stderr)
    lines = [f"Untrained models, integer engine, device cpu ({torch.get_num_threads()} threads), "
             f"{args.rounds} rounds interleaved; compress / decompress KB/s, each run listed.", "",
             "| config | params | streams | " + " | ".join(n for n, _ in files) + " |",
             "|---|---:|---|" + "---|" * len(files)]
    for i, (label, im, _) in enumerate(built):
        cells = [", ".join(f"{c:.1f}/{d:.1f}" for c, d in zip(speed[(i, n, 'c')], speed[(i, n, 'd')]))
                 for n, _ in files]
        streams = ", ".join(str(len(coder.split_streams(len(d), im.cfg.context))) for _, d in files)
        lines.append(f"| {label} | {im.num_params():,} | {streams} | " + " | ".join(cells) + " |")
    return emit_markdown(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
