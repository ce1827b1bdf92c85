"""Streams + one interleaved range coder: model frequencies in, bits out, and back.

A block is split into S contiguous streams that the model reads in lockstep. All symbols
go into one range-coded sequence in step-major order (step t: stream 0..S-1), so the
decoder handles step t with one batched model call and one coder call. Before coding,
each step's model frequencies are refined by the adaptive models of tzip/mixer.py.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Callable

import constriction
import numpy as np
import torch

from .engine import Engine
from .mixer import Mixer
from .model import BOS

SEGMENT_CONTEXTS = 16  # streams >= 16 contexts long: 46 -> 128 streams on book1 cost +0.1% in size
MAX_STREAMS = 128
# Small blocks get up to 8 streams of 2 contexts or more (the last may be shorter):
# decoding runs one step per stream position at nearly the same cost for 1 or 8 streams,
# so 4 KB files decoded 4-4.6x faster for +2-6% in size
# (bench/published/cpu-2026-11-29-speed/small-files.md)
MIN_STREAMS, MIN_SEGMENT_CONTEXTS = 8, 2
# positions x streams per parallel pass; on a CPU 2048 rather than 4096 halves the attention
# tables' memory at the same speed (bench/published/cpu-2026-11-28-speed/chunk-rows-ab.md)
CHUNK_ROWS = {"cpu": 2048, "cuda": 32768}
# A pass of C positions attends over context - 1 cached keys plus its own C, most of them
# outside each query's window when C is large: on a CPU, passes of at most a quarter
# context (bench/published/cpu-2026-11-29-speed/chunk-positions-ab.md)
CHUNK_CONTEXT_FRACTION = {"cpu": 4, "cuda": 1}

# Blocks of at least this many positions per stream run the adaptive models and, on a
# CPU, the model as compiled loops when numba is installed (tzip/jitmix.py,
# tzip/jitstep.py, tzip/jitchunk.py): the same numbers, far fewer operations per step.
# Loading them costs a process about 1.2 s (0.4 s import, 0.8 s first call; AMD machine,
# 2026-11-29). Compressing, PyTorch's pass starts sooner and 1,024 positions repay the
# load; decoding, the numpy step takes 3-4 ms per step of 8 streams against 0.4 ms
# compiled, so a few hundred steps repay it: grammar.lsp (465 steps) decoded in 1.6-2.1 s
# per call against 2.3-2.5 s with the numpy step
# (bench/published/cpu-2026-11-29-speed/decode-threshold.md)
# Once a block has taken them, a process has them loaded and smaller blocks take them too:
# warm, they compressed a 4 KB file (grammar.lsp, 7 streams) in 0.24-0.37 s against
# 0.83-0.94 s for PyTorch's pass and the numpy models.
COMPILED_FROM = 1024
DECODE_COMPILED_FROM = 256
_warm = False  # a block took the compiled loops in this process

_FAMILY = constriction.stream.model.Categorical(perfect=False)

Progress = Callable[[int], None] | None


class CorruptPayload(ValueError):
    """The range-coded payload could not be decoded."""


def split_streams(n: int, context: int, streams: int | None = None) -> list[int]:
    """Lengths of the contiguous streams a block of n bytes is cut into (sum = n).

    Depends on n and the model's context only, never on the device, so archives are the
    same everywhere."""
    if n == 0:
        return []
    if not streams:
        streams = max(n // (SEGMENT_CONTEXTS * context),
                      min(MIN_STREAMS, n // (MIN_SEGMENT_CONTEXTS * context)))
        streams = min(MAX_STREAMS, streams)
    s = max(1, min(streams, n))
    seg = -(-n // s)
    lengths = [seg] * (n // seg)
    if n % seg:
        lengths.append(n % seg)
    return lengths


def _compiled(steps: int, decoding: bool = False) -> bool:
    """Whether a block of `steps` positions per stream takes the compiled loops."""
    global _warm
    least = DECODE_COMPILED_FROM if decoding else COMPILED_FROM
    if (_warm or steps >= least) and _numba():
        _warm = True
    return _warm


@functools.cache
def _numba() -> bool:
    """Whether the compiled loops can run (numba installed and importable); imported
    only for blocks that use them, as loading numba takes a while."""
    try:
        from . import jitchunk, jitmix, jitstep  # noqa: F401
    except Exception:  # not installed, or unusable here: the numpy path computes the same
        return False
    return True


def _layout(data: bytes, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(S, L) byte matrix of the streams (zero padded) and the (S, L) mask of real bytes."""
    S, L = len(lengths), max(lengths)
    arr = np.frombuffer(data, dtype=np.uint8)
    mat = np.zeros((S, L), dtype=np.int64)
    off = 0
    for i, n in enumerate(lengths):
        mat[i, :n] = arr[off:off + n]
        off += n
    mask = np.arange(L)[None, :] < np.asarray(lengths)[:, None]
    return mat, mask


def encode(engine: Engine, data: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Range-code data (already split into streams of the given lengths) with the model."""
    mat, mask = _layout(data, lengths)
    S, L = mat.shape
    dev = engine.device
    inp = np.concatenate([np.full((S, 1), BOS), mat[:, :-1]], 1)
    most = engine.cfg.context // CHUNK_CONTEXT_FRACTION.get(dev.type, 4)
    chunk = max(1, min(most, CHUNK_ROWS.get(dev.type, 2048) // S))
    enc = constriction.stream.queue.RangeEncoder()
    compiled = _compiled(L)
    forward, cache = engine.encoder(S, compiled)
    mixer = Mixer(mat, compiled)

    def code(t0: int, freqs: np.ndarray) -> None:
        """Mix and range-code one pass's positions, in order."""
        c = freqs.shape[1]
        probs = mixer.mix_coded(t0, freqs, mask)
        m = mask[:, t0:t0 + c].T
        enc.encode(mat[:, t0:t0 + c].T[m].astype(np.int32), _FAMILY, probs[m])
        if progress:
            progress(int(m.sum()))

    # The compiled pass leaves gaps on the cores (its threads wait for each other, and for
    # the GIL), which coding the previous pass on a thread of its own fills: measured
    # 1.17x on book1, within noise on smaller files (compiled-pass-ab.md)
    pool = ThreadPoolExecutor(1, thread_name_prefix="tzip-code") if compiled else None
    coded = None  # the previous pass's coding, when on the pool
    try:
        for t0 in range(0, L, chunk):
            freqs = forward(np.ascontiguousarray(inp[:, t0:t0 + chunk]), cache)  # (S, c, 256)
            if coded is not None:
                coded.result()
            coded = pool.submit(code, t0, freqs) if pool else code(t0, freqs)
        if coded is not None:
            coded.result()
    finally:
        if pool:
            pool.shutdown()
    return enc.get_compressed().astype("<u4").tobytes()


@contextmanager
def _threads_for_batch(device: torch.device, S: int):
    """Small CPU steps are dominated by thread hand-offs: run them on one thread
    (measured 6.0 -> 3.9 ms per step at 8 streams on 2 cores). Results are unaffected."""
    before = torch.get_num_threads()
    if device.type == "cpu" and S < 32:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode(engine: Engine, payload: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Inverse of encode: one model step and one coder call per stream position."""
    if len(payload) % 4:
        raise CorruptPayload("payload length is not a multiple of 4")
    compiled = _compiled(max(lengths, default=0), decoding=True)
    step, cache = engine.decoder(len(lengths), compiled)
    # a compiled step (tzip/jitstep.py) runs its own threads (tzip/parts.py)
    with nullcontext() if hasattr(step, "parts") else _threads_for_batch(engine.device, len(lengths)):
        return _decode(payload, lengths, progress, compiled, step, cache)


def _decode(payload: bytes, lengths: list[int], progress: Progress, compiled: bool,
            step: Callable[[np.ndarray, object], np.ndarray], cache) -> bytes:
    S, L = len(lengths), max(lengths)
    active_until = np.asarray(lengths)
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    out = np.zeros((S, L), dtype=np.int64)
    mixer = Mixer(out, compiled)
    tok = np.full(S, BOS, dtype=np.int64)
    every, full = np.ones(S, dtype=bool), min(lengths, default=0)  # all active before full
    for t in range(L):
        probs = mixer.mix(t, step(tok, cache))
        act = every if t < full else active_until > t
        try:
            if t < full:
                sym = dec.decode(_FAMILY, probs)
            else:
                sym = np.zeros(S, dtype=np.int32)
                sym[act] = dec.decode(_FAMILY, probs[act])
        except Exception as e:  # constriction raises on exhausted or invalid input
            raise CorruptPayload(f"range decoder failed at step {t}: {e}") from None
        out[:, t] = sym
        mixer.update(t, out[:, t], act)
        tok = out[:, t].copy()
        if progress:
            progress(S if t < full else int(act.sum()))
    return b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))
