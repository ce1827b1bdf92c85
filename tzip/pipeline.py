"""The parts of scale-out that local workers (tzip/parallel.py) and Ray workers
(tzip/cluster.py) share: the ordered pipeline, and what a worker process holds and does.

A worker codes a block with the very call of the single-process path, on its own
Compressor / Decompressor made once (setup_worker), so archive bytes do not depend on
which worker codes which block; `ordered` hands the results back in input order.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from . import threads
from .api import Compressor, Decompressor, ModelSpec
from .errors import TzipError


class WorkerDied(TzipError):
    """A worker process (or Ray worker) died while coding."""


@dataclass
class Backend:
    """How jobs run: submit(job_name, *args) -> handle; wait(handles) blocks until at
    least one is done and raises the first failure seen; done(handle); result(handle)."""
    submit: Callable[..., Any]
    wait: Callable[[list], None]
    done: Callable[[Any], bool]
    result: Callable[[Any], Any]
    close: Callable[[bool], None]  # close(error): error=True stops running work at once


def ordered(jobs: Iterable[tuple[Any, tuple | None]], backend: Backend, limit: int
            ) -> Iterator[tuple[Any, Any]]:
    """(meta, result) of each job in job order. A job is (meta, args): args go to
    backend.submit, or None for a marker that only travels in order. At most `limit` jobs
    are read from `jobs` ahead of the one being yielded; a failure of any job in flight is
    raised as soon as it is seen, not when its turn comes."""
    pending: deque = deque()
    it = iter(jobs)
    more = True
    while True:
        while more and len(pending) < limit:
            try:
                meta, args = next(it)
            except StopIteration:
                more = False
                break
            pending.append((meta, None if args is None else backend.submit(*args)))
        if not pending:
            return
        meta, h = pending[0]
        if h is None:
            pending.popleft()
            yield meta, None
            continue
        backend.wait([h] + [x for _, x in pending if x is not None and x is not h])
        # the head may not be the one that finished; wait raised if any failed
        if backend.done(h):
            pending.popleft()
            yield meta, backend.result(h)


# ------------------------------------------------------------------------ in a worker

WORKER: dict = {}  # in a worker process: its Compressor / Decompressor and settings


def _limit_threads(n: int) -> None:
    """Keep a worker to its share of the cores: the libraries' own thread pools (read when
    they load in this fresh process) and tzip's thread policy (tzip/threads.py)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    threads.set_threads(n)


def setup_worker(kind: str, model: ModelSpec, device: str, threads: int, opts: dict) -> None:
    """Make this process a worker: its thread share, and its one Compressor (kind
    "compress", opts: streams, block_size, format) or Decompressor."""
    _limit_threads(threads)
    WORKER.clear()
    if kind == "compress":
        WORKER["c"] = Compressor(model, device=device, **opts)
    else:
        WORKER["d"] = Decompressor(model, device=device)


def encode_job(raw: bytes):
    """In a worker: one block coded as its Compressor codes it (its format included); the
    parent adds it to the archive (tzip/archive.py Writer), so the bytes are those of
    Compressor.compress_stream."""
    return WORKER["c"].encode([raw])[0]


def decode_job(blk, header, label: str | None = None) -> bytes:
    """In a worker: one block's original bytes, verified against its checksum; header:
    its archive's (archives one after another may name different models); label: a name
    that prefixes the message of an error (the archive's path)."""
    try:
        return WORKER["d"].decode_block(blk, header)
    except TzipError as e:
        if label is None:
            raise
        raise type(e)(f"{label}: {e}") from None


JOBS = {"encode": encode_job, "decode": decode_job}
