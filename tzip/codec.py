"""The byte path of one block: stored, LZMA or model, and the model's streams and coder.

    block bytes -> transform (CRLF->LF when it applies)
                -> LZMA trial; model trial when the block looks compressible
                   split_streams: S contiguous streams, coded in lockstep
                   encode: per pass of positions, the engine's scorer gives the model's
                           frequencies (S, C, 256); the adaptive models (tzip/mixing)
                           refine them step by step; one range coder codes every symbol
                           in step-major order (step t: streams 0..S-1)
                -> the smallest of stored / LZMA / model, as a container Block

decode mirrors it with the engine's stepper: one model step and one coder call per stream
position, so step t of every stream is decoded with one batched model call. Only the
constants marked "archive" here change archive bytes; the engine's TUNING never does.
"""
from __future__ import annotations

import lzma
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import constriction
import numpy as np

from . import transform
from .container import CRLF, LZMA, MODEL, NO_TRANSFORM, STORED, Block, LimitExceeded
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
    """Inverse of encode: one model step and one coder call per stream position.

    Bounded by the payload: lengths must be the ones split_streams gives for their sum
    and count, the block no longer than its payload can code, the memory it needs
    within memory_limit() (checked before the caches are allocated), and decoding stops
    as soon as the symbols have used more information than the payload holds."""
    if len(payload) % 4:
        raise CorruptPayload("payload length is not a multiple of 4")
    S, n = len(lengths), sum(lengths)
    if not S or lengths != split_streams(n, engine.cfg.context, S):
        raise CorruptPayload("stream lengths are not the ones the encoder cuts")
    if n > max_symbols(len(payload) // 4):
        raise CorruptPayload(f"a payload of {len(payload)} bytes cannot code {n} bytes")
    L = max(lengths)
    compiled = engine.compiled("stepper", L)
    stepper = engine.stepper(S, L)
    check_memory(decode_memory(stepper, engine.cfg, S, L),
                 f"decoding a model block of {n} bytes in {S} streams", engine.device)
    with stepper.threads(S):
        return _decode(payload, lengths, progress, compiled, stepper, stepper.new_state(S))


# A range coder's symbols cost at least the information they carry: decoding n symbols
# of probabilities q_i (constriction's quantized ones, of 2**24) takes
# sum(log2(2**24 / q_i)) <= 32 * (k + 1) bits after k refills of its 64-bit state (the
# range starts below 2**64, is multiplied by at most q_i / 2**24 per symbol and by 2**32
# per refill, and stays >= 2**32). The encoder writes one word per refill and one or two
# to finish, so a decoder that decodes what was encoded refills at most W - 1 times for a
# payload of W words: the symbols it decodes carry at most 32 * W bits. constriction's
# fast quantization (Categorical(perfect=False)) of exact integer frequencies f (sum F,
# below 2**24) gives q <= 2**24 * (f / F) * (1 + 2**-24)**2 + 6, so p = f / F + 2**-20
# bounds q / 2**24 from above; and with 256 symbols of q >= 1, every q <= 2**24 - 255.
PAYLOAD_BITS_MARGIN = 64  # slack on 32 * W for float rounding of the running sum
_Q_SLACK = 2.0 ** -20
_MIN_SYMBOL_BITS = float(np.log2(2.0 ** 24 / (2 ** 24 - 255)))  # 2.19e-5 bits


def payload_bits(words: int) -> int:
    """The most information (bits) the symbols coded in a payload of `words` uint32 words
    can carry, with margin."""
    return 32 * words + PAYLOAD_BITS_MARGIN


def max_symbols(words: int) -> int:
    """The most symbols a payload of `words` words can code: each costs >= 2.19e-5 bits
    (0 without words: the encoder writes at least one for any symbol)."""
    return int(payload_bits(words) / _MIN_SYMBOL_BITS) + 1 if words else 0


def _symbol_bits(probs: np.ndarray, sym: np.ndarray) -> float:
    """A lower bound on the bits the range decoder consumed for symbols sym of the rows
    probs (exact integers as float32), as the block comment above derives."""
    total = probs.sum(1).astype(np.float64)  # exact: partial sums of integers below 2**24
    p = probs[np.arange(len(sym)), sym] / total
    return float(-np.log2(np.minimum(1.0, p + _Q_SLACK)).sum())


def _decode(payload: bytes, lengths: list[int], progress: Progress, compiled: bool,
            step: Callable[[np.ndarray, object], np.ndarray], cache) -> bytes:
    S, L = len(lengths), max(lengths)
    active_until = np.asarray(lengths)
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    budget = payload_bits(len(words))
    spent = 0.0  # bits the decoded symbols carry at least (see payload_bits)
    dec = constriction.stream.queue.RangeDecoder(words)
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
                spent += _symbol_bits(probs, sym)
            else:
                sym = np.zeros(S, dtype=np.int32)
                sym[act] = got = dec.decode(_FAMILY, probs[act])
                spent += _symbol_bits(probs[act], got)
        except Exception as e:  # constriction raises on invalid input
            raise CorruptPayload(f"range decoder failed at step {t}: {e}") from None
        if spent > budget:
            raise CorruptPayload(f"payload exhausted at step {t} of {L}")
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


def encode_block(raw: bytes, engine: Engine | None, streams: int | None, progress: Progress) -> Block:
    """The smallest of stored, LZMA and (with an engine) model coding of raw."""
    crc = zlib.crc32(raw)
    best = Block(STORED, NO_TRANSFORM, len(raw), crc, raw)
    tf = CRLF if transform.crlf_applies(raw) else NO_TRANSFORM
    data = transform.crlf_to_lf(raw) if tf == CRLF else raw
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
        payload = encode(engine, data, lengths, tick)
        if len(payload) + 2 * len(lengths) < len(best.payload):
            best = Block(MODEL, tf, len(raw), crc, payload, lengths)
    if progress and len(raw) > done:
        progress(len(raw) - done)
    return best


def decode_block(blk: Block, get_engine: Callable[[], Engine], progress: Progress) -> bytes:
    """The original bytes of a block, verified against its checksum.

    Whatever the block's bytes, this returns them or raises CorruptArchive (or
    LimitExceeded, ModelError...: TzipError subclasses), with work and memory bounded by
    what the block really holds (FORMAT.md, "Decoder limits")."""
    try:
        if blk.method == STORED:
            data = blk.payload
        elif blk.method == LZMA:
            check_memory(2 * blk.raw_len + _lzma_dict(blk.raw_len),
                         f"an LZMA block of {blk.raw_len} bytes")
            data = _lzma_decode(blk.payload, blk.raw_len)
        else:
            _check_model_block(blk)
            try:
                data = decode(get_engine(), blk.payload, blk.streams, progress)
            except CorruptPayload as e:
                raise CorruptArchive(f"corrupt archive ({e})") from None
        if blk.transform == CRLF:
            if len(data) + data.count(b"\n") != blk.raw_len:
                raise CorruptArchive("corrupt archive (block checksum mismatch)")
            data = transform.lf_to_crlf(data)
    except MemoryError:
        raise LimitExceeded(f"not enough memory to decode a block of {blk.raw_len} bytes "
                            f"(limit: {_limit_text()})") from None
    except RuntimeError as e:  # torch.OutOfMemoryError on a GPU
        if type(e).__name__ != "OutOfMemoryError":
            raise
        raise LimitExceeded(f"not enough GPU memory to decode a block of {blk.raw_len} bytes in "
                            f"{len(blk.streams)} streams; try --device cpu") from None
    if len(data) != blk.raw_len or zlib.crc32(data) != blk.raw_crc:
        raise CorruptArchive("corrupt archive (block checksum mismatch)")
    if progress and blk.method != MODEL:
        progress(len(data))
    return data


def _lzma_dict(limit: int) -> int:
    """The dictionary that decodes an LZMA block of at most `limit` bytes as LZMA_FILTERS'
    64 MiB one does (no match reaches further back than the bytes decoded), as lzma_pack
    sizes it: liblzma allocates the whole dictionary up front."""
    return min(max(1 << 12, 1 << max(0, limit - 1).bit_length()), 64 << 20)


def _lzma_decode(payload: bytes, limit: int) -> bytes:
    """A raw LZMA2 stream of at most `limit` bytes: decompression stops one byte past it
    (a bomb costs no more than the stated length), and the stream must end exactly at
    the end of the payload."""
    filters = [{**LZMA_FILTERS[0], "dict_size": _lzma_dict(limit + 1)}]
    d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    try:
        data = d.decompress(payload, max_length=limit + 1)
    except lzma.LZMAError as e:
        raise CorruptArchive(f"corrupt archive (LZMA block: {e})") from None
    if len(data) > limit:
        raise CorruptArchive("corrupt archive (LZMA block longer than its stated length)")
    if not d.eof or d.unused_data:
        raise CorruptArchive("corrupt archive (LZMA block does not end with its payload)")
    return data


def _check_model_block(blk: Block) -> None:
    """What a model block's header must say, checked before the model is looked up: its
    streams sum to the block length (less the CRs a CRLF block drops: at least one, at
    most one per byte), and its payload of whole words can code that many symbols."""
    n = sum(blk.streams)
    ok = n == blk.raw_len if blk.transform != CRLF else n < blk.raw_len <= 2 * n
    if not ok or len(blk.payload) % 4 or n > max_symbols(len(blk.payload) // 4):
        raise CorruptArchive("corrupt archive (bad model block lengths)")


# ---- memory: what a decode needs, against a limit ---------------------------------------
MEMORY_FRACTION = 0.5  # default limit: this share of the physical memory (or cgroup limit)
_MIXER_FIXED = 2 * ((1 << 16) * 256 * 2 + (1 << 16) * 8) + 8 * (1 << 22)  # count tables, match table
_MIXER_PER_STREAM = 48 * 256 * 8  # (S, 256) int64 rows of the chain and its temporaries


def _state_bytes(obj) -> tuple[int, int]:
    """(host, device) bytes of the arrays and tensors in a stepper state."""
    import torch
    host = dev = 0
    if isinstance(obj, np.ndarray):
        host += obj.nbytes
    elif isinstance(obj, torch.Tensor):
        b = obj.numel() * obj.element_size()
        if obj.device.type == "cpu":
            host += b
        else:
            dev += b
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            h, d = _state_bytes(x)
            host, dev = host + h, dev + d
    elif hasattr(obj, "__dict__"):
        return _state_bytes(list(vars(obj).values()))
    return host, dev


def decode_memory(stepper, cfg, S: int, L: int) -> tuple[int, int]:
    """(host, device) bytes that decoding S streams of up to L positions with this stepper
    needs, estimated before any of it is allocated: the stepper's state per stream
    (measured on states of one and two streams) and its temporaries (attention scores
    and MLP activations of a step, a few copies each), the (S, L) int64 output matrix
    and the bytes it becomes, and the adaptive models' tables and rows."""
    h1, d1 = _state_bytes(stepper.new_state(1))
    h2, d2 = _state_bytes(stepper.new_state(2))
    work = 16 * cfg.n_head * cfg.context + 64 * cfg.d_model * cfg.mlp_mult
    if d2 > d1:  # a GPU step: its temporaries are there
        dev, host = d1 + S * (d2 - d1 + work), h1 + S * (h2 - h1)
    else:
        dev, host = 0, h1 + S * (h2 - h1 + work)
    return host + S * _MIXER_PER_STREAM + _MIXER_FIXED + 12 * S * L, dev


def physical_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower
    (None when unknown)."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(f) as fh:
                v = fh.read().strip()
        except OSError:
            continue
        if v.isdigit() and 0 < int(v) < 1 << 60:
            sizes.append(int(v))
    return min(sizes) if sizes else None


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_limit() -> int | None:
    """The most bytes a block's decoding may need: TZIP_MEMORY_LIMIT (bytes with an optional
    K, M, G or T suffix, a percentage of physical memory, or "none" or 0), by default
    MEMORY_FRACTION of physical memory. None: no limit."""
    env = os.environ.get("TZIP_MEMORY_LIMIT", "").strip()
    phys = physical_memory()
    if not env:
        return int(MEMORY_FRACTION * phys) if phys else None
    v = env.upper()
    if v in ("NONE", "UNLIMITED", "0"):  # 0: no limit, as for xz
        return None
    try:
        if v.endswith("%"):
            n = float(v[:-1]) / 100 * phys if phys else float("nan")
        else:
            v = v.removesuffix("IB").removesuffix("B")
            unit = _UNITS.get(v[-1:], 1)
            n = float(v[:-1] if v[-1:] in _UNITS else v) * unit
    except ValueError:
        n = float("nan")
    if not 1 <= n < 2.0 ** 62:  # also NaN
        raise LimitExceeded(f"TZIP_MEMORY_LIMIT={env!r}: give bytes with an optional K, M, G or "
                            f"T suffix (e.g. 8G), a share of memory (e.g. 75%), or none")
    return int(n)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _limit_text() -> str:
    limit = memory_limit()
    return "none" if limit is None else f"{_size(limit)}, TZIP_MEMORY_LIMIT"


def check_memory(need: "int | tuple[int, int]", what: str, device=None) -> None:
    """Refuse, before allocating, a decode that needs more than memory_limit() (host), or
    more than the GPU has (need = (host, device bytes))."""
    host, dev = need if isinstance(need, tuple) else (need, 0)
    limit = memory_limit()
    if limit is not None and host > limit:
        raise LimitExceeded(
            f"{what} needs about {_size(host)} of memory, more than the limit of {_size(limit)} "
            f"(half the physical memory unless TZIP_MEMORY_LIMIT says otherwise); "
            f"set TZIP_MEMORY_LIMIT={_size_arg(host)} to allow it")
    if dev:
        import torch
        total = torch.cuda.get_device_properties(device).total_memory
        if dev > total:
            raise LimitExceeded(f"{what} needs about {_size(dev)} of GPU memory, more than the "
                                f"GPU's {_size(total)}; try --device cpu")


def _size_arg(n: int) -> str:
    """A TZIP_MEMORY_LIMIT value a little above n."""
    return f"{-(-n * 11 // 10 // (1 << 30))}G" if n >= 1 << 30 else f"{-(-n * 11 // 10 // (1 << 20))}M"
