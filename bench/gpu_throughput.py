"""GPU throughput: encode and decode speed of tzip's models on one device, every round trip
verified, archives checked against the CPU's.

    python bench/gpu_throughput.py --data .data/corpora --mb 100 --out $OUT [--models tzip-large,tzip-small]
                                   [--budget 420] [--device auto] [--backends torch,graph]

Builds the input from the text files under --data (a copy of ../shared/corpora: train
and bench, carried to the device in a git-ignored folder), concatenated in name order up
to --mb megabytes. For each model, and for decoding each stepper backend of --backends,
it compresses and decompresses as much of the input as fits its share of --budget
seconds: a first pass on 1 MB measures the speed, then the input is cut to what the
remaining time allows (`input_bytes` says how much was measured). Lockstep groups follow
the engine's TUNING (all blocks of the input together, within the memory limit, on CUDA).

It also times the parts of decoding (the model step with its transfers, the mixers'
decoding), records peak GPU memory, checks that the pinned archives of
tests/test_models.py come out byte-identical on this device and that the CPU-made ones in
tests/data decode here. Writes OUT/throughput.json (a list of records {model,
input_bytes, device, backend, encode_MBps, decode_MBps, roundtrip, cpu_identical, ...})
and OUT/results.md; exits 1 if a round trip or an identity check fails.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MB = 1_000_000
PROBE = 1 << 18  # bytes of the first, speed-measuring pass
TEXT_SUFFIXES = {"", ".txt", ".xml", ".html", ".md", ".csv", ".json", ".log", ".c", ".h", ".py",
                 ".rs", ".js", ".lsp", ".1", ".tex", ".bib"}


def build_input(data: Path, size: int) -> bytes:
    """Text files under data (xz-compressed ones unpacked), in name order, up to size bytes."""
    import lzma
    parts, have = [], 0
    for p in sorted(data.rglob("*")):
        if not p.is_file() or have >= size:
            continue
        if p.suffix == ".xz":
            b = lzma.decompress(p.read_bytes())
        elif p.suffix in TEXT_SUFFIXES:
            b = p.read_bytes()
        else:
            continue
        parts.append(b[:size - have])
        have += len(parts[-1])
    return b"".join(parts)


def sync(dev: str) -> None:
    if dev == "cuda":
        import torch
        torch.cuda.synchronize()


class Parts:
    """Wall time of the model's steps (with their transfers) and of the mixers' decoding
    during one decompression: Engine.stepper hands out timed steppers, and
    cm.Decoder.decode is timed, while it lasts."""

    def __init__(self):
        self.step = self.mix = 0.0
        self.steps = 0

    def __enter__(self):
        from tzip import cm
        from tzip.engine import Engine
        self._saved = (cm.Decoder.decode, Engine.stepper)
        decode, stepper = self._saved
        parts = self

        def timed_decode(dec, t, freqs):
            t0 = time.perf_counter()
            try:
                return decode(dec, t, freqs)
            finally:
                parts.mix += time.perf_counter() - t0

        cm.Decoder.decode = timed_decode
        Engine.stepper = lambda engine, S, L: Timed(stepper(engine, S, L), parts)
        return self

    def __exit__(self, *exc):
        from tzip import cm
        from tzip.engine import Engine
        cm.Decoder.decode, Engine.stepper = self._saved


class Timed:
    """A stepper whose calls are timed into parts.step."""

    def __init__(self, inner, parts: Parts):
        self.inner, self.parts, self.name = inner, parts, inner.name

    def new_state(self, streams: int):
        return self.inner.new_state(streams)

    def threads(self, streams: int):
        return self.inner.threads(streams)

    def __call__(self, tokens, state):
        t0 = time.perf_counter()
        try:
            return self.inner(tokens, state)
        finally:
            self.parts.step += time.perf_counter() - t0
            self.parts.steps += 1


def measure(model: str, data: bytes, dev: str, backend: str) -> dict:
    """Compress and decompress data on dev; decoding steps with `backend` (TZIP_BACKEND)."""
    import torch

    import tzip
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    os.environ["TZIP_BACKEND"] = "auto"
    c = tzip.Compressor(model, device=dev)
    sync(dev)
    t0 = time.perf_counter()
    blob = c.compress(data)
    sync(dev)
    enc = time.perf_counter() - t0
    os.environ["TZIP_BACKEND"] = backend
    try:
        d = tzip.Decompressor(model, device=dev)
        with Parts() as parts:
            sync(dev)
            t0 = time.perf_counter()
            back = d.decompress(blob)
            sync(dev)
            dec = time.perf_counter() - t0
    finally:
        os.environ["TZIP_BACKEND"] = "auto"
    info = tzip.info(blob)
    return {"model": model, "input_bytes": len(data), "device": device_name(dev), "backend": d.backend,
            "encode_MBps": round(len(data) / enc / MB, 4), "decode_MBps": round(len(data) / dec / MB, 4),
            "roundtrip": back == data, "bpb": round(8 * len(blob) / len(data), 4),
            "blocks": len(info.blocks), "streams": sum(b.streams for b in info.blocks),
            "encode_s": round(enc, 2), "decode_s": round(dec, 2),
            "decode_parts_s": {"model_step_and_transfers": round(parts.step, 2),
                               "mixing_and_coding": round(parts.mix, 2),
                               "other": round(dec - parts.step - parts.mix, 2)},
            "steps": parts.steps,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if dev == "cuda" else 0}


def device_name(dev: str) -> str:
    import torch
    return torch.cuda.get_device_name() if dev == "cuda" else "cpu"


SAMPLE = REPO / "bench" / "sample" / "gettysburg.txt"


def pinned() -> dict[tuple[str, int], str]:
    """tests/test_models.py's PINNED table (sha256 of each shipped model's archive of
    SAMPLE, by format), read as data: the tests hold the one copy, and bench imports none
    of their code."""
    import ast
    tree = ast.parse((REPO / "tests" / "test_models.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PINNED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("tests/test_models.py has no PINNED table")


def cpu_identity(dev: str, models: list[str]) -> dict:
    """The pinned archives of tests/test_models.py made here, and tests/data's decoded here."""
    import tzip
    sample = SAMPLE.read_bytes()
    out = {}
    for (name, fmt), digest in pinned().items():
        if name not in models:
            continue
        blob = tzip.compress(sample, name, device=dev, streams=4, format=fmt)
        out[f"{name} format {fmt} archive"] = hashlib.sha256(blob).hexdigest() == digest
    for fmt in (3, 4):
        for name in models:
            p = REPO / "tests" / "data" / f"gettysburg.{name}.format{fmt}.tz"
            if p.exists():
                out[f"{name} format {fmt} CPU archive decodes"] = \
                    tzip.decompress(p.read_bytes(), device=dev) == sample
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / ".data" / "corpora")
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--models", default="tzip-large,tzip-small")
    ap.add_argument("--backends", default="torch,graph", help="decoding steppers to measure")
    ap.add_argument("--budget", type=float, default=420, help="seconds for all the measurements")
    ap.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when there is one)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.device == "auto":
        import torch
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    text = build_input(a.data, int(a.mb * MB))
    models, backends = a.models.split(","), a.backends.split(",")
    a.out.mkdir(parents=True, exist_ok=True)
    checks = cpu_identity(a.device, models)
    ok = all(checks.values())
    records: list[dict] = []

    def save() -> None:
        (a.out / "throughput.json").write_text(json.dumps(records, indent=1))
        (a.out / "results.md").write_text(report(records, checks, len(text), a))

    runs = [(m, b) for m in models for b in backends]
    for i, (model, backend) in enumerate(runs):
        share = (a.budget - (time.perf_counter() - start)) / (len(runs) - i)
        probe = measure(model, text[:min(len(text), PROBE)], a.device, backend)
        # time for the whole input at the probe's speeds, with a margin
        per_byte = (probe["encode_s"] + probe["decode_s"]) / probe["input_bytes"]
        n = min(len(text), int(0.8 * max(0.0, share - probe["encode_s"] - probe["decode_s"]) / per_byte))
        rec = measure(model, text[:n], a.device, backend) if n > probe["input_bytes"] else probe
        rec["cpu_identical"] = all(v for k, v in checks.items() if k.startswith(model))
        ok &= rec["roundtrip"]
        records.append(rec)
        print(json.dumps(rec), flush=True)
        save()
    save()
    print("ALL OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1


def report(records: list[dict], checks: dict, built: int, a) -> str:
    lines = [f"# GPU throughput ({records[0]['device'] if records else a.device})", "",
             f"Input: {built / MB:.1f} MB of text from {a.data} (each row measured on the first "
             "`input` bytes: what fitted its share of the time budget).", "",
             "| model | decoding stepper | input MB | encode MB/s | decode MB/s | bpb | streams | "
             "step + transfers s | mixing + coding s | peak GPU MiB | round trip |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in records:
        p = r["decode_parts_s"]
        lines.append(f"| {r['model']} | {r['backend']} | {r['input_bytes'] / MB:.2f} | {r['encode_MBps']:.3f} | "
                     f"{r['decode_MBps']:.4f} | {r['bpb']:.3f} | {r['streams']} | "
                     f"{p['model_step_and_transfers']} | {p['mixing_and_coding']} | "
                     f"{r['peak_gpu_bytes'] / 2 ** 20:.0f} | {'ok' if r['roundtrip'] else 'FAILED'} |")
    lines += ["", "Identity with the CPU:", ""]
    lines += [f"- {k}: {'yes' if v else 'NO'}" for k, v in checks.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # the checkout's tzip, as a script run from it
    raise SystemExit(main())
