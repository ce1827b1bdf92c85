"""Cross-device check and GPU speed, for a machine with CUDA.

    python bench/device_check.py REF_DIR OUT_DIR

REF_DIR holds archives made elsewhere (on a CPU) as NAME.tz, their originals as NAME, and
refs.json ({"NAME": {"model": ..., "streams": ...}}). For each: the archive made here on
CUDA must be byte-identical to the reference, and the reference must decode here on CUDA.
Then it times compression and decompression on CUDA for each model on REF_DIR/speed.txt.
Results go to OUT_DIR/device_check.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402

import tzip  # noqa: E402


def main() -> int:
    ref, out = Path(sys.argv[1]), Path(sys.argv[2])
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__, "checks": [], "speed": []}
    ok = True
    for name, spec in json.loads((ref / "refs.json").read_text()).items():
        data, ref_blob = (ref / name).read_bytes(), (ref / f"{name}.tz").read_bytes()
        t0 = time.time()
        blob = tzip.compress(data, spec["model"], device=dev, streams=spec["streams"])
        t1 = time.time()
        back = tzip.decompress(ref_blob, spec["model"], device=dev)
        t2 = time.time()
        row = {"file": name, "model": spec["model"], "bytes": len(data),
               "identical_archive": blob == ref_blob, "decodes_cpu_archive": back == data,
               "enc_s": round(t1 - t0, 2), "dec_s": round(t2 - t1, 2)}
        ok &= row["identical_archive"] and row["decodes_cpu_archive"]
        res["checks"].append(row)
        print(row, flush=True)
    text = (ref / "speed.txt").read_bytes()
    for model, streams in (("tzip-small", 128), ("tzip-large", 128)):
        torch.cuda.synchronize() if dev == "cuda" else None
        t0 = time.time()
        blob = tzip.compress(text, model, device=dev, streams=streams)
        t1 = time.time()
        back = tzip.decompress(blob, model, device=dev)
        t2 = time.time()
        row = {"model": model, "bytes": len(text), "streams": streams, "bpb": 8 * len(blob) / len(text),
               "roundtrip": back == text, "enc_kBps": len(text) / (t1 - t0) / 1e3,
               "dec_kBps": len(text) / (t2 - t1) / 1e3}
        ok &= row["roundtrip"]
        res["speed"].append(row)
        print(row, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(res, indent=1))
    print("ALL OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
