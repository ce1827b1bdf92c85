"""One phase of one library codec in a fresh process, so that its peak RSS is its own.

    python -m bench.worker JOB.json

JOB.json: {"spec": tool spec, "phase": "compress"|"decompress", "input": path,
"output": path, "result": path}. Writes the phase's output bytes and a result JSON with
the fastest time, the number of runs, this process's peak RSS (VmHWM, which starts afresh
at exec, unlike ru_maxrss, and is restarted after the warm-up), its RSS just before the
timed call and, for tzip on CUDA, the GPU memory peak.
"""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from bench.measure import best_of_cpu, gpu_phase, Phase
from bench.tools import make_codec


def proc_status(field: str) -> int | None:
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak) in bytes; None
    where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def reset_peak() -> bool:
    """Restart VmHWM from the current RSS (Linux 4.0+), so the warm-up, which may run the
    other phase, does not count in this phase's peak (where this fails, it does)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    codec = make_codec(job["spec"])
    codec.warmup()
    data = Path(job["input"]).read_bytes()
    fn = codec.compress if job["phase"] == "compress" else codec.decompress
    reset_peak()
    rss_before = proc_status("VmRSS")

    def run() -> tuple[bytes, Phase]:
        out, seconds, reps, cpu = best_of_cpu(lambda: fn(data))
        return out, Phase(seconds, reps, cpu_seconds=cpu)

    out, ph = gpu_phase(job["spec"], run)
    peak = proc_status("VmHWM")
    Path(job["output"]).write_bytes(out)
    Path(job["result"]).write_text(json.dumps({"seconds": ph.seconds, "reps": ph.reps,
                                               "peak_rss": peak, "rss_before": rss_before,
                                               "gpu_peak": ph.gpu_peak,
                                               "cpu_seconds": ph.cpu_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
