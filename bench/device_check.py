"""Cross-device check, GPU speed and GPU-side model evaluation, for a machine with CUDA.

    python bench/device_check.py --refs REF_DIR --out OUT_DIR [--speed FILE] [--models a,b]
                                 [--eval MODEL=FILE,FILE,...]...

REF_DIR holds archives made elsewhere (on a CPU) as NAME.tz, their originals as NAME, and
refs.json ({"NAME": {"model": name or path, "streams": n}}). For each: the archive made
here must be byte-identical to the reference, and the reference must decode here.
--speed times compression and decompression of FILE with each of --models.
--eval compresses each FILE with MODEL (sizes are the same on every device, so this is
how the big model gets its per-file numbers quickly). Results: OUT_DIR/device_check.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402

import tzip  # noqa: E402


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev: str):
    _sync(dev)
    t0 = time.time()
    out = fn()
    _sync(dev)
    return out, time.time() - t0


def table_digest(model_path: Path, data: bytes, streams: int, dev: str) -> str:
    """sha256 of every frequency table the engine gives for data cut into streams."""
    import hashlib
    import numpy as np
    from tzip.engine import Engine
    from tzip.model.intmodel import IntModel
    scorer = Engine(IntModel.load(model_path), dev).backend("torch", "scorer")
    tok = np.frombuffer(data, dtype=np.uint8).astype(np.int64).reshape(streams, -1)
    state, h = scorer.new_state(streams), hashlib.sha256()
    for t in range(0, tok.shape[1], 250):
        h.update(scorer(np.ascontiguousarray(tok[:, t:t + 250]), state).tobytes())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--speed", type=Path)
    ap.add_argument("--models", default="tzip-small,tzip-large")
    ap.add_argument("--eval", action="append", default=[], metavar="MODEL=FILE,FILE")
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__, "checks": [], "speed": [], "eval": []}
    ok = True

    def emit(kind: str, row: dict) -> None:
        res[kind].append(row)
        print(kind, row, flush=True)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "device_check.json").write_text(json.dumps(res, indent=1))

    if a.refs:
        for name, spec in json.loads((a.refs / "refs.json").read_text()).items():
            if "tables" in spec:  # engine tables of a model file, without the coder
                got = table_digest(a.refs / spec["model"], (a.refs / name).read_bytes(), spec["streams"], dev)
                ok &= got == spec["tables"]
                emit("checks", {"file": name, "model": spec["model"], "identical_tables": got == spec["tables"]})
                continue
            model = spec["model"] if not spec["model"].endswith(".npz") else str(a.refs / spec["model"])
            data, ref_blob = (a.refs / name).read_bytes(), (a.refs / f"{name}.tz").read_bytes()
            blob, enc_s = _timed(lambda: tzip.compress(data, model, device=dev, streams=spec["streams"]), dev)
            back, dec_s = _timed(lambda: tzip.decompress(ref_blob, model, device=dev), dev)
            row = {"file": name, "model": spec["model"], "bytes": len(data),
                   "identical_archive": blob == ref_blob, "decodes_cpu_archive": back == data,
                   "enc_s": round(enc_s, 2), "dec_s": round(dec_s, 2)}
            ok &= row["identical_archive"] and row["decodes_cpu_archive"]
            emit("checks", row)
    for spec in a.eval:
        model, files = spec.split("=", 1)
        for f in files.split(","):
            data = Path(f).read_bytes()
            blob, enc_s = _timed(lambda: tzip.compress(data, model, device=dev), dev)
            emit("eval", {"model": model, "file": Path(f).name, "bytes": len(data),
                          "compressed": len(blob), "bpb": round(8 * len(blob) / len(data), 4),
                          "enc_kBps": round(len(data) / enc_s / 1e3, 1)})
    if a.speed:
        text = a.speed.read_bytes()
        for model in a.models.split(","):
            blob, enc_s = _timed(lambda: tzip.compress(text, model, device=dev), dev)
            back, dec_s = _timed(lambda: tzip.decompress(blob, model, device=dev), dev)
            row = {"model": model, "bytes": len(text), "bpb": round(8 * len(blob) / len(text), 4),
                   "streams": tzip.info(blob).blocks[0].get("streams"), "roundtrip": back == text,
                   "enc_kBps": round(len(text) / enc_s / 1e3, 1), "dec_kBps": round(len(text) / dec_s / 1e3, 1)}
            ok &= row["roundtrip"]
            emit("speed", row)
    print("ALL OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
