"""Running the model's streams in parts on threads of their own (the compiled CPU paths).

Streams never mix inside the model, so a pass or a step over S streams can be cut into
contiguous parts run at once on several threads: the compiled loops release the GIL and
so do numpy's products. Each part's arithmetic is the same whichever thread runs it, so
the tables are too. OpenBLAS's own threads would only get in the way (they run a product
of these shapes no faster than one thread, and two callers at once queue for them), so
while parts run, OpenBLAS runs each product on the thread that calls it.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable

import numpy as np

from ... import threads as thread_policy


def _openblas() -> tuple | None:
    """get/set of the thread count of numpy's own OpenBLAS (its wheels bundle one, its
    symbols named with or without scipy_ and 64_), if it has one and they can be found."""
    here = os.path.dirname(np.__file__)
    for lib in sorted(glob.glob(os.path.join(here + ".libs", "*openblas*"))
                      + glob.glob(os.path.join(here, ".dylibs", "*openblas*"))):
        try:
            blas = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("openblas_%s_num_threads", "scipy_openblas_%s_num_threads64_"):
            get, set_ = (getattr(blas, name % w, None) for w in ("get", "set"))
            if get is not None and set_ is not None:
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, set_
    return None


BLAS = _openblas()
_lock = threading.Lock()
_users = 0  # callers inside blas_on_calling_threads
_before = 1


@contextmanager
def blas_on_calling_threads():
    """OpenBLAS on one thread, the caller's (docs/performance.md). The setting is process-wide:
    the first caller in sets it, the last one out restores it, and concurrent callers run
    at once. Where numpy's BLAS is not a known OpenBLAS, nothing changes but the speed."""
    global _users, _before
    if BLAS is None:
        yield
        return
    get, set_ = BLAS
    with _lock:
        if _users == 0:
            _before = get()
            set_(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                set_(_before)


@functools.lru_cache(maxsize=64)
def _cuts(threads: int, S: int, least: int) -> tuple[int, ...]:
    """Cut points of S streams into up to `threads` parts of at least `least` streams
    (np.linspace takes tens of us, a decoding step's part a few hundred)."""
    n = max(1, min(threads, S // max(1, least)))
    return tuple(int(x) for x in np.linspace(0, S, n + 1).astype(int))


class Parts:
    """Cuts S streams into up to `threads` contiguous parts (default: tzip's thread count,
    tzip/threads.py `count`, which is PyTorch's once PyTorch is loaded) of at least `least`
    streams, and runs a function on each at once. Threads are kept from call to call
    (and made anew in a forked child, which inherits none of them)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._pool: tuple[int, int, ThreadPoolExecutor] | None = None  # pid, workers, pool
        self._lock = threading.Lock()

    def cuts(self, S: int, least: int = 1) -> tuple[int, ...]:
        return _cuts(self.threads or thread_policy.count(), S, least)

    def _workers(self, n: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool[0] != os.getpid() or self._pool[1] < n:
                # a pool another caller still uses is left to finish and be collected
                self._pool = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="tzip-part"))
            return self._pool[2]

    def run(self, fn: Callable[[int, int], None], S: int, least: int = 1) -> None:
        """fn(a, b) for each part a..b-1 of the S streams, the first on this thread; returns
        when all have ended (raising the first error)."""
        cuts = self.cuts(S, least)
        if len(cuts) == 2:
            fn(0, S)
            return
        pool = self._workers(len(cuts) - 2)
        jobs = [pool.submit(fn, a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
        try:
            fn(cuts[0], cuts[1])
        finally:
            for job in jobs:  # never leave a part writing after we return
                job.exception()
        for job in jobs:
            job.result()
