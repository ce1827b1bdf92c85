"""Scale-out on one machine: blocks (and files) coded by worker processes.

Blocks are independent in the format (FORMAT.md), so N workers code N blocks at once. A
worker codes a block exactly as the single-process path does (the same
`Compressor.encode`, with the same model and format), block boundaries are fixed by
block_size, and the parent adds the blocks in input order to the one archive writer
(tzip/archive.py), which writes the header and the trailer: archives are byte-identical
to `tzip.compress_stream` / `-T 1` whatever the number of workers or the order in which
they finish. Reading goes through the one archive reader too, so archives one after
another decode one after another, as with -T 1.

    compress_stream(fin, fout, model, workers=N, ...)      -> bytes read
    decompress_stream(fin, fout, model, workers=N, ...)    -> bytes written
    compress_files(paths, model, workers=N, ray=None, ...) -> [FILE.tz, ...]
    decompress_files(paths, model, workers=N, ray=None, ...) -> [FILE, ...]
    iter_files(paths, recursive=True, compressing=True, skipped=print) -> files to code

workers: 1 codes in this process (no pool); 0 means one per core (the cores this process
may use, cgroup quota included: threads.available_cores). Memory is bounded: at
most `in_flight` blocks (default 2 x workers) are read ahead and in flight, each at most
block_size bytes plus its coded form. Workers are started with the "spawn" method
(forking a process whose torch/numba thread pools exist is unsafe), load the model once
each, run with cores // workers threads, and ignore SIGINT: the parent handles Ctrl-C and
errors by terminating the pool and re-raising at once. A worker that dies raises
WorkerDied. Every write to fout is complete or an error (output.checked). Partial output
is the caller's concern: write through a temporary file (tzip/output.py's atomic_write or
TempOutput; compress_files and decompress_files do, as tzip.compress_file and the CLI).

The Ray backend (tzip/cluster.py) feeds the same pipeline with Ray tasks.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import stat
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from . import threads
from .api import (BLOCK_SIZE, Compressor, Decompressor, ModelSpec, Progress, format_for, is_alone, window_for,
                  source_mode, writer_for)
from .archive import ArchiveReader, Member, Writer
from .container import MAX_BLOCK, MAX_STREAMS, READABLE, VERSION, Reader
from .errors import CorruptArchive, TzipError
from .output import TempOutput, checked
from .pipeline import JOBS, Backend, WorkerDied, ordered, setup_worker

__all__ = ["compress_stream", "decompress_stream", "compress_files", "decompress_files",
           "iter_files", "resolve_workers", "WorkerDied", "Backend", "ordered"]

IN_FLIGHT_PER_WORKER = 2  # blocks read ahead and in flight per worker
START_METHOD = "spawn"


def resolve_workers(workers: int | None) -> int:
    """workers as given, or one per core for 0 / None (like xz -T0, zstd -T0)."""
    if workers is None or workers == 0:
        return threads.available_cores()
    if workers < 0:
        raise ValueError(f"workers must be 0 (all cores) or more, not {workers}")
    return workers


# ------------------------------------------------------------------ local worker processes

def _init_worker(kind: str, model: ModelSpec, device: str, threads: int, opts: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    setup_worker(kind, model, device, threads, opts)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and kill what runs."""
    stop = getattr(pool, "terminate_workers", None)  # Python 3.14
    if stop is not None:
        stop()
        pool.shutdown(wait=True, cancel_futures=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.terminate()
        except Exception:
            pass
    pool.shutdown(wait=True, cancel_futures=True)
    for p in procs:
        p.join(5)


def local_backend(workers: int, init_args: tuple) -> Backend:
    """A pool of `workers` spawned processes, each initialised once with init_args."""
    ctx = multiprocessing.get_context(START_METHOD)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=init_args)

    def submit(name: str, *args) -> Future:
        try:
            return pool.submit(JOBS[name], *args)
        except BrokenProcessPool as e:
            raise WorkerDied(f"a worker process died: {e}") from None

    def wait_any(handles: list[Future]) -> None:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        for f in done:
            e = f.exception()
            if isinstance(e, BrokenProcessPool):
                raise WorkerDied(f"a worker process died: {e}") from None
            if e is not None:
                raise e

    def close(error: bool) -> None:
        if error:
            _terminate(pool)
        else:
            pool.shutdown(wait=True)

    return Backend(submit, wait_any, lambda f: f.done(), lambda f: f.result(), close)


def _run(backend: Backend, body: Callable[[Backend], Any]) -> Any:
    """body(backend), then close the backend: at once and killing its work on any error
    (KeyboardInterrupt included)."""
    try:
        result = body(backend)
    except BaseException:
        backend.close(True)
        raise
    backend.close(False)
    return result


def _in_flight(workers: int, ray: str | None) -> int:
    """Default blocks in flight: 2 per local worker (one coding, one queued, so that a
    worker never waits for the parent); with Ray, where every task in flight may run at
    once, one per worker, so that `workers` bounds the concurrency there too."""
    return workers if ray is not None else IN_FLIGHT_PER_WORKER * workers


def _threads_each(workers: int) -> int:
    return max(1, threads.available_cores() // workers)


# ------------------------------------------------------------------------------ streams

def _read_blocks(fin: BinaryIO, block_size: int) -> Iterator[bytes]:
    """The blocks of fin, block_size bytes each but the last."""
    r = Reader(fin)
    while raw := r.read(block_size):
        yield raw


def _check(opts: dict) -> None:
    """The checks Compressor makes, made here before any worker starts."""
    if opts["format"] is not None and opts["format"] not in READABLE:
        raise ValueError(f"format must be one of {READABLE}, not {opts['format']}")
    if opts.get("window") is not None:
        format_for(None, opts["format"], opts["window"])
    if opts["streams"] is not None and not 1 <= opts["streams"] <= MAX_STREAMS:
        raise ValueError(f"streams must be between 1 and {MAX_STREAMS}, not {opts['streams']}")
    if not 1 <= opts["block_size"] <= MAX_BLOCK:
        raise ValueError(f"block_size must be between 1 and {MAX_BLOCK}, not {opts['block_size']}")


def _writer(model: ModelSpec, format: int | None, window: int | None = None) -> Writer:
    """The archive writer of the model the workers code with (its header)."""
    if is_alone(model):
        return writer_for(None, format_for(model, format, window))
    from .model import registry
    # model is resolved (never None) here: no device needed
    m, format = registry.load(model), format_for(model, format, window)
    return writer_for(m, format, window_for(m, format, window))


def resolve_model(model: ModelSpec, device: str, ray: str | None, ray_options: dict | None
                  ) -> tuple[ModelSpec, str]:
    """(model, device) with model=None replaced by the default model's name, chosen here
    once for every worker (Ray workers on GPUs when ray_options asks for num_gpus, else on
    CPUs), so that the header names the model the workers use."""
    if model is not None:
        return model, device
    import torch
    from .model import registry
    if ray is not None:
        gpu = bool((ray_options or {}).get("num_gpus"))
        if str(device) == "auto":
            device = "cuda" if gpu else "cpu"
        return registry.default_name(torch.device(str(device).split(":")[0])), device
    return registry.default_name(registry.resolve_device(device)), device


def compress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, workers: int = 0,
                    device: str = "auto", streams: int | None = None,
                    block_size: int = BLOCK_SIZE, format: int | None = None,
                    progress: Progress = None, in_flight: int | None = None,
                    ray: str | None = None, ray_options: dict | None = None,
                    window: int | None = None) -> int:
    """Compress everything readable from fin into fout with `workers` processes (0: one per
    core; 1: in this process), or with Ray (ray="local" or a cluster address); returns the
    bytes read. The archive is byte-identical to tzip.compress_stream's. progress(n) is
    called with each block's original length as it is written."""
    opts = dict(streams=streams, block_size=block_size, format=format, window=window)
    if ray is None:
        n = resolve_workers(workers)
        if n == 1:
            return Compressor(model, device=device, **opts).compress_stream(fin, fout, progress)
    _check(opts)
    model, device = resolve_model(model, device, ray, ray_options)
    w = _writer(model, format, window)
    backend, n = _backend("compress", model, device, opts, workers, ray, ray_options)
    limit = in_flight or _in_flight(n, ray)
    fout = checked(fout)

    def body(be: Backend) -> int:
        fout.write(w.begin())
        jobs = ((len(raw), ("encode", raw)) for raw in _read_blocks(fin, block_size))
        for raw_len, blk in ordered(jobs, be, limit):
            fout.write(w.add(blk))
            if progress:
                progress(raw_len)
        fout.write(w.finish())
        return w.total

    return _run(backend, body)


def _backend(kind: str, model: ModelSpec, device: str, opts: dict, workers: int | None,
             ray: str | None, ray_options: dict | None) -> tuple[Backend, int]:
    if ray is not None:
        from . import cluster
        return cluster.ray_backend(kind, model, device, opts, ray, workers, ray_options)
    from .model import registry
    registry.resolve_device(device)  # a bad device: ModelError here, not a broken pool
    n = resolve_workers(workers)
    return local_backend(n, (kind, model, device, _threads_each(n), opts)), n


def decompress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *,
                      workers: int = 0, device: str = "auto", progress: Progress = None,
                      in_flight: int | None = None, ray: str | None = None,
                      ray_options: dict | None = None) -> int:
    """Decompress a .tz stream from fin into fout with `workers` processes (0: one per core;
    1: in this process) or Ray; returns the bytes written. The same reader and checks as
    tzip.decompress_stream (tzip/archive.py): archives one after another, every block's
    CRC32 before it is written, each trailer, no trailing data. At most `in_flight` blocks
    are read ahead."""
    if ray is None and resolve_workers(workers) == 1:
        return Decompressor(model, device=device).decompress_stream(fin, fout, progress)
    members = ArchiveReader(fin).members()
    first = next(members)  # a bad header fails here, before any worker starts
    backend, n = _backend("decompress", model, device, {}, workers, ray, ray_options)
    limit = in_flight or _in_flight(n, ray)
    fout = checked(fout)

    def body(be: Backend) -> int:
        jobs = ((None, ("decode", blk, m.header)) for m in itertools.chain([first], members)
                for blk in m)
        total = 0
        for _, data in ordered(jobs, be, limit):
            fout.write(data)
            total += len(data)
            if progress:
                progress(len(data))
        return total

    return _run(backend, body)


# -------------------------------------------------------------------------------- files

def iter_files(paths: Iterable[str | Path], recursive: bool = True, compressing: bool = True,
               skipped: Callable[[Path, str], None] | None = None) -> Iterator[Path]:
    """The regular files named by paths, and (recursive) those under the directories named,
    in sorted order. Skipped, each reported as skipped(path, reason): directories when not
    recursive, anything not a regular file (links to regular files are followed; links to
    directories are not descended), and when compressing, names ending in .tz; when
    decompressing, names that do not."""
    report = skipped or (lambda p, why: None)
    for p in map(Path, paths):
        try:
            st = os.stat(p)
        except OSError as e:
            report(p, f"cannot be read ({e.strerror})")
            continue
        if stat.S_ISDIR(st.st_mode):
            if not recursive:
                report(p, "is a directory (use -r)")
                continue
            yield from _walk(p, compressing, report)
        else:
            yield from _file(p, st, compressing, report)


def _file(p: Path, st: os.stat_result, compressing: bool, report) -> Iterator[Path]:
    if not stat.S_ISREG(st.st_mode):
        report(p, "is not a regular file")
    elif compressing and p.suffix == ".tz":
        report(p, "already has the .tz suffix")
    elif not compressing and p.suffix != ".tz":
        report(p, "has no .tz suffix")
    else:
        yield p


def _walk(top: Path, compressing: bool, report) -> Iterator[Path]:
    for root, dirs, files in os.walk(top, onerror=lambda e: report(Path(e.filename), "cannot be read")):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            try:
                st = os.stat(p)
            except OSError as e:
                report(p, f"cannot be read ({e.strerror})")
                continue
            yield from _file(p, st, compressing, report)
        for d in dirs:
            if os.path.islink(os.path.join(root, d)):
                report(Path(root) / d, "is a link to a directory (not followed)")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def _output(src: Path, dst: Path, force: bool) -> TempOutput:
    """dst written through a temporary file (tzip/output.py: checked writes, stale
    temporary files of killed runs removed), given src's permission bits and times as
    tzip.compress_file and the CLI give them; it replaces an existing dst only if force."""
    st = os.stat(src)
    return TempOutput(dst, source_mode(src), replace=force, times=(st.st_atime_ns, st.st_mtime_ns))


def _publish(out: TempOutput) -> None:
    """out.commit(), an output that appeared meanwhile (without force) a TzipError: it is
    kept, and the temporary file removed."""
    try:
        out.commit()
    except FileExistsError as e:
        if e.filename != str(out.dst):
            raise
        raise TzipError(f"{out.dst} already exists (made while tzip was writing it; use "
                        "force=True / -f to overwrite)") from None


def compress_files(paths: Iterable[str | Path], model: ModelSpec = None, *, workers: int = 0,
                   ray: str | None = None, device: str = "auto", streams: int | None = None,
                   block_size: int = BLOCK_SIZE, format: int | None = None, force: bool = False,
                   progress: Progress = None, in_flight: int | None = None,
                   ray_options: dict | None = None, window: int | None = None) -> list[Path]:
    """Compress each file to FILE.tz beside it (atomically, with its permission bits and
    times), the blocks of all files coded by one pool of workers (or Ray) so that many small
    files keep every worker busy as well as one large file does. Each archive is byte-identical
    to tzip.compress_file's. An existing FILE.tz is an error unless force. Returns the
    archives written, in order; on an error, archives finished before it stay, the one
    being written is removed. Without force, an archive that another process creates
    while this one is written is kept, and this run fails (never replaces it)."""
    paths = [Path(p) for p in paths]
    dsts = [p.with_name(p.name + ".tz") for p in paths]
    if not force:
        for d in dsts:
            if d.exists():
                raise TzipError(f"{d} already exists (use force=True / -f to overwrite)")
    opts = dict(streams=streams, block_size=block_size, format=format, window=window)
    if ray is None and resolve_workers(workers) == 1:
        c = Compressor(model, device=device, **opts)
        for src, dst in zip(paths, dsts):
            with open(src, "rb") as fin:
                out = _output(src, dst, force)
                try:
                    c.compress_stream(fin, out.f, progress)
                except BaseException:
                    out.discard()
                    raise
                _publish(out)
        return dsts
    _check(opts)
    model, device = resolve_model(model, device, ray, ray_options)
    writer = _writer(model, format, window)  # made once: checks the model and format before any work
    backend, n = _backend("compress", model, device, opts, workers, ray, ray_options)
    limit = in_flight or _in_flight(n, ray)

    def jobs():
        for i, src in enumerate(paths):
            yield ("start", i, None), None
            with open(src, "rb") as fin:
                for raw in _read_blocks(fin, block_size):
                    yield ("block", i, len(raw)), ("encode", raw)
            yield ("end", i, None), None

    def body(be: Backend) -> list[Path]:
        out = w = None
        try:
            for (what, i, x), blk in ordered(jobs(), be, limit):
                if what == "start":
                    out = _output(paths[i], dsts[i], force)
                    w = Writer(writer.header.model_name, writer.header.model_digest,
                               writer.version, writer.header.window)
                    out.f.write(w.begin())
                elif what == "block":
                    out.f.write(w.add(blk))
                    if progress:
                        progress(x)
                else:
                    out.f.write(w.finish())
                    done, out = out, None
                    _publish(done)
        except BaseException:
            if out is not None:
                out.discard()
            raise
        return dsts

    return _run(backend, body)


def decompress_files(paths: Iterable[str | Path], model: ModelSpec = None, *,
                     workers: int = 0, ray: str | None = None, device: str = "auto",
                     force: bool = False, progress: Progress = None, in_flight: int | None = None,
                     ray_options: dict | None = None) -> list[Path]:
    """Decompress each FILE.tz to FILE (atomically, after verification, with its
    permission bits and times), the blocks of all archives decoded by one pool of workers
    (or Ray).
    The checks of tzip.decompress_file for each; an error names the archive. An existing
    FILE is an error unless force. Returns the files written; on an error, files finished
    before it stay, the one being written is removed. Without force, a file that another
    process creates while this one is written is kept, and this run fails."""
    paths = [Path(p) for p in paths]
    for src in paths:
        if src.suffix != ".tz":
            raise TzipError(f"{src}: unknown suffix (expected .tz)")
    dsts = [src.with_suffix("") for src in paths]
    if not force:
        for d in dsts:
            if d.exists():
                raise TzipError(f"{d} already exists (use force=True / -f to overwrite)")
    if ray is None and resolve_workers(workers) == 1:
        d = Decompressor(model, device=device)
        for src, dst in zip(paths, dsts):
            with open(src, "rb") as fin:
                out = _output(src, dst, force)
                try:
                    d.decompress_stream(fin, out.f, progress)
                except TzipError as e:
                    out.discard()
                    raise type(e)(f"{src}: {e}") from None
                except BaseException:
                    out.discard()
                    raise
                _publish(out)
        return dsts
    backend, n = _backend("decompress", model, device, {}, workers, ray, ray_options)
    limit = in_flight or _in_flight(n, ray)

    def jobs():
        for i, src in enumerate(paths):
            with open(src, "rb") as fin:
                try:
                    members = ArchiveReader(fin).members()
                    m: Member = next(members)
                    yield ("start", i), None
                    for m in itertools.chain([m], members):
                        for blk in m:
                            yield ("block", i), ("decode", blk, m.header, str(src))
                except CorruptArchive as e:
                    raise CorruptArchive(f"{src}: {e}") from None
            yield ("end", i), None  # every trailer checked, nothing after the last

    def body(be: Backend) -> list[Path]:
        out = None
        try:
            for (what, i), data in ordered(jobs(), be, limit):
                if what == "start":
                    out = _output(paths[i], dsts[i], force)
                elif what == "block":
                    out.f.write(data)
                    if progress:
                        progress(len(data))
                else:
                    done, out = out, None
                    _publish(done)
        except BaseException:
            if out is not None:
                out.discard()
            raise
        return dsts

    return _run(backend, body)
