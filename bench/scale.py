"""Scale-out measurements: speed with 1 vs N workers (local processes, local Ray), worker
start-up, memory per worker (peak RSS), and that every archive is byte-identical.

    python -m bench.scale                                   # tzip-small, 64 KiB of book1
    python -m bench.scale --size 262144 --block-size 32768 --workers 1 2 --ray
    python -m bench.scale --json scale.json

Speeds are of the whole job as a user sees it (pool start-up, model loads included), on
an input of size bytes cut into blocks of block-size (small blocks so that a short run
has several). Start-up is measured apart: the same job on one block of random bytes
(stored, so coding costs ~nothing). The machine's load (uptime) is printed with the
results: on a shared machine other jobs take cores from the workers.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path

import tzip
from tzip import parallel

BOOK1 = Path("/work/shared/corpora/bench/calgary/book1")


def text(size: int) -> bytes:
    if BOOK1.is_file():
        data = BOOK1.read_bytes()
    else:  # any clone has tzip's own sources
        data = b"\n".join(p.read_bytes() for p in sorted(Path(tzip.__file__).parent.rglob("*.py")))
    return (data * (1 + size // len(data)))[:size]


def peak_rss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def ray_workers() -> list[int]:
    """Ray's worker processes (titled ray::IDLE, ray::run_job...)."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if (d / "cmdline").read_bytes().startswith(b"ray::"):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def run(label: str, fn, data: bytes, size: int | None = None) -> dict:
    """fn(data, tick) timed; speeds in KB/s of original bytes (size, default len(data))."""
    rss: dict[int, int] = {}

    def tick(n: int) -> None:  # sample the workers' peak memory while they live
        pids = [p.pid for p in multiprocessing.active_children()] + ray_workers()
        for pid in pids:
            rss[pid] = max(rss.get(pid, 0), peak_rss_kib(pid))

    ray0 = {pid: cpu_s(pid) for pid in ray_workers()}
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = fn(data, tick)
    dt = time.perf_counter() - t
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(b, f) - getattr(a, f) for a, b in ((self0, self1), (kids0, kids1))
              for f in ("ru_utime", "ru_stime"))  # pool workers count once joined
    cpu += sum(cpu_s(pid) - ray0.get(pid, 0.0) for pid in ray_workers())
    res = {"run": label, "seconds": round(dt, 2), "kb_per_s": round((size or len(data)) / dt / 1e3, 2),
           "cpu_s": round(cpu, 1),
           "worker_peak_rss_mib": [round(v / 1024) for v in rss.values()],
           "parent_peak_rss_mib": round(peak_rss_kib(os.getpid()) / 1024), "load": load()}
    print(json.dumps(res), file=sys.stderr, flush=True)
    return res | {"out": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tzip-small")
    ap.add_argument("--size", type=int, default=64 << 10)
    ap.add_argument("--block-size", type=int, default=16 << 10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--ray", action="store_true", help="also with Ray (local cluster)")
    ap.add_argument("--no-local", action="store_true", help="Ray only")
    ap.add_argument("--no-decompress", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    data, bs, m = text(a.size), a.block_size, a.model
    results = []

    def comp(workers, ray=None):
        def f(d, tick):
            out = io.BytesIO()
            parallel.compress_stream(io.BytesIO(d), out, m, workers=workers, ray=ray,
                                     device="cpu", block_size=bs, progress=tick)
            return out.getvalue()
        return f

    def dec(workers, ray=None):
        def f(blob, tick):
            out = io.BytesIO()
            parallel.decompress_stream(io.BytesIO(blob), out, m, workers=workers, ray=ray,
                                       device="cpu", progress=tick)
            return out.getvalue()
        return f

    noise = random.Random(0).randbytes(bs)
    backends = [] if a.no_local else [("local", None)]
    if a.ray:
        import ray
        ray.init(num_cpus=max(a.workers), include_dashboard=False, log_to_driver=False)
        backends.append(("ray", "local"))
    ref = None
    print(f"model {m}, {len(data)} bytes, blocks of {bs}, load {load()}", file=sys.stderr)
    for name, ray in backends:
        for w in a.workers:
            tag = f"{name} workers={w}"
            r = run(f"{tag} start-up (1 stored block)", comp(w, ray), noise)
            results.append({k: v for k, v in r.items() if k != "out"})
            r = run(f"{tag} compress", comp(w, ray), data)
            blob = r.pop("out")
            ref = ref or blob
            r["identical"] = blob == ref
            results.append(r)
            if not a.no_decompress:
                r = run(f"{tag} decompress", dec(w, ray), blob, len(data))
                r["round_trip"] = r.pop("out") == data
                results.append(r)
    print("\n| run | s | KB/s | CPU s | worker peak RSS (MiB) | load | ok |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        ok = r.get("identical", r.get("round_trip", ""))
        print(f"| {r['run']} | {r['seconds']} | {r['kb_per_s']} | {r['cpu_s']} | "
              f"{', '.join(map(str, r['worker_peak_rss_mib'])) or '-'} | {r['load']} | {ok} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": m, "size": len(data), "block_size": bs,
                                            "results": results}, indent=1))
    bad = [r for r in results if r.get("identical") is False or r.get("round_trip") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
