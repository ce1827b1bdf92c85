"""How many threads tzip's model runs on: the cores this process may actually use.

PyTorch starts as many OpenMP threads as it sees cores. On a machine whose cores are busy
with other work, those threads wait for each other and small jobs get many times slower
(measured on a busy 2-core machine, load 4-10: `tzip FILE` of 6 KB took 13.6-75 s with two
threads, 2.0-17 s with one; a fresh process's tzip.compress of 4 KB 30.6-34.2 s against
3.1-3.2 s). So unless the user chose (OMP_NUM_THREADS, TZIP_THREADS,
`tzip -T N`, tzip.set_threads), tzip picks:

    cores = CPUs in this process's affinity mask, capped by a cgroup CPU quota
    busy = min(int(load average over 1 minute + 0.25),
               tasks runnable now (/proc/loadavg) less this process's running threads)
    threads = max(1, cores - busy)

once, before it first loads numpy (OpenBLAS reads its count then), and again for PyTorch
when a torch backend first loads it (the CPU backends never do). The 1-minute load average
alone still counts the previous job for a minute after it ended (the user's previous tzip,
an install): a second `tzip` in a row on an idle 2-core machine ran on one thread, at half
speed. So the load counts only as far as tasks runnable at this moment corroborate it; a
moment's spike of runnable tasks on an idle machine is not counted either (the load
average caps it). Where /proc/loadavg cannot be read, the load average alone decides, as
before. Where the host application imported PyTorch before tzip needed it, its thread
settings are left as they are. The thread count never changes archive bytes.
"""
from __future__ import annotations

import math
import os
import sys
import time

_chosen: int | None = None  # set by set_threads or by the policy
_applied = False
_count: int | None = None  # count()'s answer while PyTorch is not loaded


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2/v1 quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, p = f.read().split()[:2]
        if q != "max":
            quota = int(q) / int(p)
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                q = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                p = int(f.read())
            if q > 0 and p > 0:
                quota = q / p
        except (OSError, ValueError):
            pass
    if quota:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


LOADAVG = "/proc/loadavg"
OWN_TASKS = "/proc/self/task"


def pick_threads(cores: int, load1: float | None, runnable_others: int | None) -> int:
    """The policy on its readings: cores less the busy ones, where busy is the 1-minute
    load average (rounded up from .75) capped by the tasks of other processes runnable
    now. No load average: all cores; no runnable count: the load average alone."""
    if load1 is None:
        return max(1, cores)
    busy = int(load1 + 0.25)
    if runnable_others is not None:
        busy = min(busy, runnable_others)
    return max(1, cores - busy)


def runnable_others(loadavg: str | None = None, own_running: int | None = None) -> int | None:
    """Tasks runnable on the machine now (the fourth field of /proc/loadavg, "R/T"), less
    this process's own running threads (at least the one reading); None where unknown."""
    try:
        if loadavg is None:
            with open(LOADAVG) as f:
                loadavg = f.read()
        running = int(loadavg.split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    own = _own_running() if own_running is None else own_running
    return max(0, running - max(1, own))


def _own_running() -> int:
    """This process's threads in state R (running or runnable) now."""
    n = 0
    try:
        tids = os.listdir(OWN_TASKS)
    except OSError:
        return 1
    for tid in tids:
        try:
            with open(os.path.join(OWN_TASKS, tid, "stat")) as f:
                stat = f.read()
        except OSError:  # a thread that just ended
            continue
        n += stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R"
    return max(1, n)


SAMPLES, SAMPLE_GAP = 5, 0.001  # readings of the runnable tasks, seconds apart


def steady_runnable_others() -> int | None:
    """The fewest other runnable tasks over a few readings a millisecond apart (at most
    SAMPLES; the first that finds none ends it): one reading on an idle machine often
    catches a kernel thread or a daemon's moment of work (a second runnable task in 2 of
    3 readings on the developers' idle VM), which after a previous job (load average
    still high) took a core away from a whole run."""
    fewest = runnable_others()
    for _ in range(SAMPLES - 1):
        if not fewest:
            break
        time.sleep(SAMPLE_GAP)
        now = runnable_others()
        fewest = now if fewest is None or (now is not None and now < fewest) else fewest
    return fewest


def auto_threads() -> int:
    """The policy's pick: available cores less those other processes keep busy now."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    return pick_threads(available_cores(), load, steady_runnable_others() if load is not None else None)


def _from_env() -> int | None:
    v = os.environ.get("TZIP_THREADS", "").strip()
    if v:
        try:
            n = int(v)
        except ValueError:
            return None
        return auto_threads() if n <= 0 else n
    return None


def user_chose() -> bool:
    return _chosen is not None or bool(os.environ.get("OMP_NUM_THREADS")) or _from_env() is not None


def set_threads(n: int | None) -> None:
    """Run the model on n threads (0 or None: the automatic choice), from now on."""
    global _chosen, _applied, _count
    _chosen = auto_threads() if not n or n <= 0 else int(n)
    _applied = False
    _count = None
    if "torch" in sys.modules:
        apply()


def wanted() -> int | None:
    """The thread count tzip will set, or None to leave the libraries' own choice."""
    if _chosen is not None:
        return _chosen
    env = _from_env()
    if env is not None:
        return env
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's: PyTorch and OpenBLAS read it themselves
    return auto_threads()


def before_loading() -> None:
    """Called before tzip first loads its numeric libraries (numpy, the compiled loops):
    OpenBLAS takes its thread count from the environment when it loads. PyTorch's is set
    here only if it is already loaded; else when a torch backend loads it (before_torch)."""
    if "torch" in sys.modules:
        before_torch()
        return
    n = wanted()
    if n is not None and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(n))
    count()  # the CPU loops' count, made now with OpenBLAS's


def count() -> int:
    """The threads the model's CPU loops run on: PyTorch's setting once PyTorch is loaded
    (the policy's, or the application's), else the policy's pick, or OMP_NUM_THREADS, made
    once (a decoding step asks for it)."""
    global _count
    torch = sys.modules.get("torch")
    if torch is not None:
        before_torch()
        return torch.get_num_threads()
    if _count is None:
        n = wanted()
        if n is None:
            try:
                n = int(os.environ.get("OMP_NUM_THREADS", ""))
            except ValueError:
                n = 0
        _count = n if n > 0 else available_cores()
    return _count


def before_torch() -> None:
    """Called before tzip imports PyTorch for the first time in this process."""
    global _applied
    if _applied:
        return
    if "torch" in sys.modules and _chosen is None and _from_env() is None:
        _applied = True  # the application's PyTorch: its settings stand
        return
    n = wanted()
    if n is not None and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(n))
    apply()


def apply() -> None:
    global _applied
    n = wanted()
    _applied = True
    if n is None:
        return
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
