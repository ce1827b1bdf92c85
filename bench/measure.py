"""Timing and peak memory of one compress or decompress phase.

Memory is the peak resident set size of the process that did the phase, so each number
belongs to one phase of one file:
- shell tools: the command's max RSS as GNU time (%M) reports it; n/a without GNU time;
- library codecs and tzip: VmHWM of a fresh Python worker (python -m bench.worker) that
  reads the input, loads the codec, warms it up and runs the timed call. It includes the
  interpreter and the libraries it imported (PyTorch for tzip), so the worker also
  reports its RSS just before the timed call (rss_before).
The suite does not read ru_maxrss from wait4() itself: Linux carries the parent's RSS
into a child's ru_maxrss at fork and exec, so every child of a process holding PyTorch
would report over 200 MB. In --inline mode library codecs run in this process and their
memory is not measured.
Times are wall-clock seconds of the phase alone (for workers: the call, not the start-up;
for shell tools: the whole command); a phase shorter than MIN_TOTAL is repeated up to
MAX_REPS times and the fastest run counts.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

MIN_TOTAL, MAX_REPS = 0.25, 10
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Phase:
    seconds: float
    reps: int
    peak_rss: int | None = None     # bytes
    rss_before: int | None = None   # bytes, workers only
    gpu_peak: int | None = None     # bytes of CUDA memory allocated, tzip on CUDA only
    cpu_seconds: float | None = None  # user + system CPU of the fastest run, all threads


class PhaseError(RuntimeError):
    """A phase that failed: the command exited nonzero, timed out or made no output."""


@lru_cache(maxsize=1)
def gnu_time() -> str | None:
    """Path of GNU time, which reports a command's peak RSS with a tiny parent process."""
    path = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").is_file() else None)
    if path is None:
        return None
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in (r.stdout + r.stderr) else None


def cpu_now() -> float:
    """User + system CPU seconds of this process (all its threads, at the clock's
    nanosecond resolution, where os.times() counts 10 ms ticks that a fast codec's call
    falls between) and of its waited-for children: on a machine shared with other jobs,
    CPU time says what a phase cost when wall-clock time also counts the waiting for a
    core."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def best_of_cpu(call: Callable[[], object]) -> tuple[object, float, int, float]:
    """(result, fastest seconds, runs, CPU seconds of that fastest run): runs again while
    the total is under MIN_TOTAL."""
    best, total, reps, result, cpu = float("inf"), 0.0, 0, None, 0.0
    while reps == 0 or (total < MIN_TOTAL and reps < MAX_REPS):
        c0, t0 = cpu_now(), time.perf_counter()
        result = call()
        dt, dc = time.perf_counter() - t0, cpu_now() - c0
        if dt < best:
            best, cpu = dt, dc
        total, reps = total + dt, reps + 1
    return result, best, reps, cpu


def best_of(call: Callable[[], object]) -> tuple[object, float, int]:
    """(result, fastest seconds, runs): runs again while the total is under MIN_TOTAL."""
    result, best, reps, _ = best_of_cpu(call)
    return result, best, reps


def run_process(argv: list[str], timeout: float | None = None,
                env: dict | None = None) -> tuple[float, int, str]:
    """Run argv to the end, its process group killed after timeout seconds;
    (seconds, returncode, stderr tail)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=env, start_new_session=True)
        try:
            rc = p.wait(timeout)
            note = ""
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
            note = f"timed out after {timeout:g} s. "
        dt = time.perf_counter() - t0
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace").strip()
    return dt, rc, (note + tail).strip()


def shell_phase(template: str, src: Path, dst: Path, timeout: float | None) -> Phase:
    """One shell command with {in}/{out} filled in, repeated like best_of."""
    cmd = template.replace("{in}", shlex.quote(str(src))).replace("{out}", shlex.quote(str(dst)))
    gt, mem = gnu_time(), dst.with_name(dst.name + ".maxrss")
    argv = ([gt, "-f", "%M %U %S", "-o", str(mem)] if gt else []) + ["/bin/sh", "-c", cmd]
    best, total, reps, peak, cpu = float("inf"), 0.0, 0, None, None
    while reps == 0 or (total < MIN_TOTAL and reps < MAX_REPS):
        dst.unlink(missing_ok=True)
        dt, rc, tail = run_process(argv, timeout)
        if rc != 0:
            raise PhaseError(f"`{cmd}` exited with status {rc}" + (f": {tail}" if tail else ""))
        if not dst.is_file():
            raise PhaseError(f"`{cmd}` did not write {{out}}")
        rss, used = _gnu_time_report(mem.read_text() if gt and mem.is_file() else "")
        if rss is not None:
            peak = max(peak or 0, rss)
        if dt < best:
            best, cpu = dt, used
        total, reps = total + dt, reps + 1
    return Phase(best, reps, peak, cpu_seconds=cpu)


def _gnu_time_report(text: str) -> tuple[int | None, float | None]:
    """(peak RSS bytes, user + system seconds) from GNU time's "%M %U %S" line, the last
    line of its output file (a command killed by a signal adds a line before it)."""
    lines = text.strip().splitlines()
    words = lines[-1].split() if lines else []
    if len(words) != 3 or not words[0].isdigit():
        return None, None
    try:
        return int(words[0]) * 1024, float(words[1]) + float(words[2])
    except ValueError:
        return int(words[0]) * 1024, None


def worker_phase(spec: dict, phase: str, src: Path, dst: Path,
                 timeout: float | None) -> Phase:
    """One phase of a library codec or tzip, in a fresh `python -m bench.worker`."""
    job = dst.with_name(dst.name + ".job.json")
    result = dst.with_name(dst.name + ".result.json")
    job.write_text(json.dumps({"spec": spec, "phase": phase, "input": str(src),
                               "output": str(dst), "result": str(result)}))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    _, rc, tail = run_process([sys.executable, "-m", "bench.worker", str(job)], timeout, env)
    if rc != 0 or not result.is_file():
        last = tail.splitlines()[-1] if tail else ""
        raise PhaseError(f"{phase} failed in the worker (status {rc})"
                         + (f": {last}" if last else ""))
    r = json.loads(result.read_text())
    return Phase(r["seconds"], r["reps"], r.get("peak_rss"), r.get("rss_before"),
                 r.get("gpu_peak"), r.get("cpu_seconds"))


def inline_phase(codec, phase: str, data: bytes) -> tuple[bytes, Phase]:
    """One phase in this process (no memory figure)."""
    fn = codec.compress if phase == "compress" else codec.decompress
    out, seconds, reps, cpu = best_of_cpu(lambda: fn(data))
    return out, Phase(seconds, reps, cpu_seconds=cpu)


def uses_cuda(spec: dict) -> bool:
    """Whether a tzip spec runs on a CUDA GPU (then its GPU memory peak is recorded)."""
    torch = sys.modules.get("torch")
    return ("tzip" in spec and spec.get("device") != "cpu" and torch is not None
            and torch.cuda.is_available())


def gpu_phase(spec: dict, run: Callable[[], tuple[bytes, Phase]]) -> tuple[bytes, Phase]:
    """run() with the CUDA allocator's peak recorded when the phase uses the GPU."""
    if not uses_cuda(spec):
        return run()
    import torch
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out, ph = run()
    torch.cuda.synchronize()
    ph.gpu_peak = int(torch.cuda.max_memory_allocated())
    return out, ph
