"""A model block's streams: how a block is cut into them (split_streams), laid out as one
matrix, and scored pass by pass by the engine. Shared by the current format's coder
(tzip/codec.py, the context mixer) and format 3's (tzip/legacy/linear.py, linear mixing):
both code the same streams from the same frequencies. Only the constants marked "archive"
change archive bytes.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

import numpy as np

from .cm import CorruptPayload  # noqa: F401 (one class for a payload that does not decode)
from .container import PROFILES, VERSION
from .limits import Progress  # noqa: F401
from .model.config import BOS

if TYPE_CHECKING:
    from .engine import Engine

# archive: how a block is cut into streams (docs/performance.md has the measurements); the
# most streams it picks by itself is its format's (container.Profile.max_streams), and so
# is whether small blocks get more (container.Profile.small_streams)
SEGMENT_CONTEXTS = 16  # streams of at least 16 contexts
MIN_SEGMENT_CONTEXTS = 2  # small blocks: up to Profile.small_streams streams of 2 contexts


def split_streams(n: int, context: int, streams: int | None = None, version: int = VERSION) -> list[int]:
    """Lengths of the contiguous streams a block of n bytes is cut into (sum = n): into
    `streams` streams, or as many as format `version` picks for n.

    Depends on n and the model's context only, never on the device, so archives are the
    same everywhere."""
    if n == 0:
        return []
    if not streams:
        profile = PROFILES[version]
        streams = max(n // (SEGMENT_CONTEXTS * context),
                      min(profile.small_streams, n // (MIN_SEGMENT_CONTEXTS * context)))
        streams = min(profile.max_streams, streams)
    s = max(1, min(streams, n))
    seg = -(-n // s)
    lengths = [seg] * (n // seg)
    if n % seg:
        lengths.append(n % seg)
    return lengths


def canonical(lengths: list[int], context: int) -> int:
    """The block length of stream lengths that are the encoder's cut of it (split_streams),
    else CorruptPayload: a decoder accepts no other layout."""
    n = sum(lengths)
    if not lengths or lengths != split_streams(n, context, len(lengths)):
        raise CorruptPayload("stream lengths are not the ones the encoder cuts")
    return n


def layout(data: bytes, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
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


def passes(engine: Engine, mat: np.ndarray, code: Callable[[int, np.ndarray], None]) -> None:
    """Score the streams mat (S, L) pass by pass with the engine's scorer and hand each
    pass's frequencies (S, c, 256) to code(t0, freqs), in order; with the compiled scorer
    (the plan's `overlap`), code runs on a thread of its own while the next pass is scored."""
    S, L = mat.shape
    plan = engine.plan
    inp = np.concatenate([np.full((S, 1), BOS), mat[:, :-1]], 1)
    most = engine.cfg.context // plan.pass_context_fraction
    chunk = max(1, min(most, plan.pass_rows // S))
    scorer = engine.scorer(S, L)
    state = scorer.new_state(S)
    pool = ThreadPoolExecutor(1, thread_name_prefix="tzip-code") if plan.overlap else None
    coded = None  # the previous pass's coding, when on the pool
    try:
        for t0 in range(0, L, chunk):
            freqs = scorer(np.ascontiguousarray(inp[:, t0:t0 + chunk]), state)
            if coded is not None:
                coded.result()
            coded = pool.submit(code, t0, freqs) if pool else code(t0, freqs)
        if coded is not None:
            coded.result()
    finally:
        if pool:
            pool.shutdown()
