"""The byte path of one block: stored, LZMA or model, and the model's streams and coder.

    block bytes -> transforms (UTF-16 -> UTF-8, then CRLF -> LF, when they apply)
                -> LZMA trial; model trial when the block looks compressible
                   split_streams: S contiguous streams, coded in lockstep
                   encode_cm: per pass of positions, the engine's scorer gives the
                           model's frequencies (S, C, 256); the context mixer (tzip/cm)
                           takes them as one input among its own models and codes every
                           byte, bit by bit, in step-major order (step t: streams 0..S-1)
                -> the smallest of stored / LZMA / model, as a container Block

decode mirrors it with the engine's stepper: one model step per stream position, so step
t of every stream is decoded with one batched model call. Archives of format 3 code model
blocks with the linear mixer of tzip/mixing and one range coder (encode / decode below);
they are still decoded. Only the constants marked "archive" here change archive bytes;
the engine's TUNING never does.
"""
from __future__ import annotations

import lzma
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import constriction
import numpy as np

from . import cm, transform
from .container import (LZMA, MODEL, MODEL_CM, STORED, Block, transform_code,
                        transform_parts)
from .engine import Engine
from .errors import CorruptArchive
from .mixing import Mixer
from .model.net import BOS

# archive: how a block is cut into streams (docs/performance.md has the measurements)
SEGMENT_CONTEXTS = 16  # streams of at least 16 contexts
AUTO_MAX_STREAMS = 128  # the most streams split_streams picks by itself
MIN_STREAMS, MIN_SEGMENT_CONTEXTS = 8, 2  # small blocks: up to 8 streams of 2 contexts
# archive: LZMA blocks are raw LZMA2, preset 9 extreme
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]

# speed only: positions x streams per parallel pass, and passes of at most a fraction of
# the context (a pass attends over context - 1 cached keys plus its own positions)
PASS_ROWS = {"cpu": 2048, "cuda": 32768}
PASS_CONTEXT_FRACTION = {"cpu": 4, "cuda": 1}

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
        streams = min(AUTO_MAX_STREAMS, streams)
    s = max(1, min(streams, n))
    seg = -(-n // s)
    lengths = [seg] * (n // seg)
    if n % seg:
        lengths.append(n % seg)
    return lengths


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
    most = engine.cfg.context // PASS_CONTEXT_FRACTION.get(dev.type, 4)
    chunk = max(1, min(most, PASS_ROWS.get(dev.type, 2048) // S))
    enc = constriction.stream.queue.RangeEncoder()
    compiled = engine.compiled("scorer", L)
    scorer = engine.scorer(S, L)
    state = scorer.new_state(S)
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
    # the GIL), which coding the previous pass on a thread of its own fills
    pool = ThreadPoolExecutor(1, thread_name_prefix="tzip-code") if compiled else None
    coded = None  # the previous pass's coding, when on the pool
    try:
        for t0 in range(0, L, chunk):
            freqs = scorer(np.ascontiguousarray(inp[:, t0:t0 + chunk]), state)  # (S, c, 256)
            if coded is not None:
                coded.result()
            coded = pool.submit(code, t0, freqs) if pool else code(t0, freqs)
        if coded is not None:
            coded.result()
    finally:
        if pool:
            pool.shutdown()
    return enc.get_compressed().astype("<u4").tobytes()


def decode(engine: Engine, payload: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Inverse of encode: one model step and one coder call per stream position."""
    if len(payload) % 4:
        raise CorruptPayload("payload length is not a multiple of 4")
    S, L = len(lengths), max(lengths, default=0)
    compiled = engine.compiled("stepper", L)
    stepper = engine.stepper(S, L)
    with stepper.threads(S):
        return _decode(payload, lengths, progress, compiled, stepper, stepper.new_state(S))


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


def lzma_pack(data: bytes) -> bytes:
    """LZMA2 preset 9e with a dictionary no larger than the data needs: the same bytes as
    the preset's 64 MiB one gives (which LZMA_FILTERS decode), without setting up a match
    finder for 64 MiB for a small block."""
    size = max(1 << 12, 1 << max(0, len(data) - 1).bit_length())
    filters = [{**LZMA_FILTERS[0], "dict_size": min(size, 64 << 20)}]
    return lzma.compress(data, lzma.FORMAT_RAW, filters=filters)


def _looks_compressible(data: bytes) -> bool:
    """Cheap screen that skips the model on random or already-compressed data."""
    sample = data[:1 << 16]
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


def encode_cm(engine: Engine, data: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Code data (already split into streams of the given lengths) with the model and the
    context mixer (format 4)."""
    mat, mask = _layout(data, lengths)
    S, L = mat.shape
    dev = engine.device
    inp = np.concatenate([np.full((S, 1), BOS), mat[:, :-1]], 1)
    most = engine.cfg.context // PASS_CONTEXT_FRACTION.get(dev.type, 4)
    chunk = max(1, min(most, PASS_ROWS.get(dev.type, 2048) // S))
    compiled = engine.compiled("scorer", L)
    scorer = engine.scorer(S, L)
    state = scorer.new_state(S)
    enc = cm.Encoder(lengths, mat)  # compiled whenever numba is installed

    def code(t0: int, freqs: np.ndarray) -> None:
        enc.encode(t0, freqs)
        if progress:
            progress(int(mask[:, t0:t0 + freqs.shape[1]].sum()))

    # the mixer codes one pass (releasing the GIL) while the model scores the next
    pool = ThreadPoolExecutor(1, thread_name_prefix="tzip-code") if compiled else None
    coded = None
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
    return enc.finish()


def decode_cm(engine: Engine, payload: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Inverse of encode_cm: one model step and one mixer step per stream position."""
    S, L = len(lengths), max(lengths)
    stepper = engine.stepper(S, L)
    out = np.zeros((S, L), dtype=np.int64)
    try:
        dec = cm.Decoder(payload, lengths, out)
        state = stepper.new_state(S)
        tok = np.full(S, BOS, dtype=np.int64)
        active = np.asarray(lengths)
        with stepper.threads(S):
            for t in range(L):
                tok = dec.decode(t, stepper(tok, state))
                if progress:
                    progress(int((active > t).sum()))
        dec.finish()
    except cm.CorruptPayload as e:
        raise CorruptPayload(str(e)) from None
    return b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))


def encode_block(raw: bytes, engine: Engine | None, streams: int | None, progress: Progress,
                 version: int = 4) -> Block:
    """The smallest of stored, LZMA and (with an engine) model coding of raw, as archive
    format `version` codes it (4; or 3: linear mixing and the CRLF transform only)."""
    crc = zlib.crc32(raw)
    best = Block(STORED, 0, len(raw), crc, raw)
    if version == 3:
        crlf = transform.crlf_applies(raw)
        utf16, data = None, transform.crlf_to_lf(raw) if crlf else raw
    else:
        utf16, crlf, data = transform.to_text_block(raw)
    tf = transform_code(utf16, crlf)
    packed = lzma_pack(data)
    if len(packed) < len(best.payload):
        best = Block(LZMA, tf, len(raw), crc, packed)
    done = 0
    if engine is not None and data and _looks_compressible(data):
        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(n)
        lengths = split_streams(len(data), engine.cfg.context, streams)
        method, code = (MODEL, encode) if version == 3 else (MODEL_CM, encode_cm)
        payload = code(engine, data, lengths, tick)
        if len(payload) + 2 * len(lengths) < len(best.payload):
            best = Block(method, tf, len(raw), crc, payload, lengths)
    if progress and len(raw) > done:
        progress(len(raw) - done)
    return best


def decode_block(blk: Block, get_engine: Callable[[], Engine], progress: Progress) -> bytes:
    """The original bytes of a block, verified against its checksum."""
    if blk.method == STORED:
        data = blk.payload
    elif blk.method == LZMA:
        try:
            data = lzma.decompress(blk.payload, lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        except lzma.LZMAError as e:
            raise CorruptArchive(f"corrupt archive (LZMA block: {e})") from None
    else:
        try:
            code = decode if blk.method == MODEL else decode_cm
            data = code(get_engine(), blk.payload, blk.streams, progress)
        except CorruptPayload as e:
            raise CorruptArchive(f"corrupt archive ({e})") from None
    utf16, crlf = transform_parts(blk.transform)
    try:
        data = transform.from_text_block(data, utf16, crlf)
    except UnicodeError:  # only a corrupt block's bytes fail to convert back
        raise CorruptArchive("corrupt archive (block checksum mismatch)") from None
    if len(data) != blk.raw_len or zlib.crc32(data) != blk.raw_crc:
        raise CorruptArchive("corrupt archive (block checksum mismatch)")
    if progress and blk.method not in (MODEL, MODEL_CM):
        progress(len(data))
    return data
