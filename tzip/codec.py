"""The byte path of one block: stored, LZMA or model, and the model's streams and coder.

    block bytes -> transforms (UTF-16 -> UTF-8, then CRLF -> LF, when they apply)
                -> LZMA trial; model trial when the block looks compressible
                   split_streams (tzip/streams.py): S contiguous streams, coded in lockstep
                   encode_cm: per pass of positions, the engine's scorer gives the
                           model's frequencies (S, C, 256); the context mixer (tzip/cm,
                           of the format's revision: container.PROFILES)
                           takes them as one input among its own models and codes every
                           byte, bit by bit, in step-major order (step t: streams 0..S-1)
                -> the smallest of stored / LZMA / model, as a container Block

decode mirrors it with the engine's stepper: one model step per stream position, so step
t of every stream is decoded with one batched model call. What a format version codes
with (transforms, methods, the mixer's revision, the stream cap) is its profile,
container.PROFILES. Format 3's model blocks (method 2: linear mixing and one range coder)
are coded and decoded by tzip/legacy/linear.py, which this module hands them to. Only the
constants marked "archive" here change archive bytes; the engine's plan (what runs each
stage, and the loops' speed-only numbers: tzip/engine/plan.py) never does.
"""
from __future__ import annotations

import lzma
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from . import cm, threads, transform
from .container import (ALONE_REVISION, CM_ALONE, CM_REVISION, LZMA, MODEL, PROFILES, STORED,
                        STREAM_METHODS, VERSION, Block, put_varint, transform_code, transform_parts)
from .engine import Engine
from .errors import CorruptArchive, LimitExceeded
from .legacy import linear
from .limits import (OutputLimit, check_memory, decode_memory, limit_text, lzma_memory,
                     memory_limit, transform_memory)
from .model.config import BOS
from .streams import (CorruptPayload, Progress, canonical as _canonical, layout as _layout,
                      passes as _passes, split_streams)

# archive: LZMA blocks are raw LZMA2, preset 9 extreme
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]



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


def _encode_alone(raw: bytes, progress: Progress, mixer: str | None = None) -> Block:
    """The smallest of stored, LZMA and the context mixer alone (format 6)."""
    from .cm import alone
    crc = zlib.crc32(raw)
    utf16, crlf, data = transform.to_text_block(raw)
    tf = transform_code(utf16, crlf)
    blk = Block(STORED, 0, len(raw), crc, raw)
    packed = lzma_pack(data)
    if len(packed) < len(blk.payload):
        blk = Block(LZMA, tf, len(raw), crc, packed)
    if data and _looks_compressible(data):
        payload = alone.encode(data, ALONE_REVISION, mixer)
        if len(payload) + 2 < len(blk.payload):
            blk = Block(CM_ALONE, tf, len(raw), crc, payload, [len(data)])
    if progress:
        progress(len(raw))
    return blk


def encode_cm(engine: Engine, data: bytes, lengths: list[int], progress: Progress = None,
              revision: int = cm.LATEST) -> bytes:
    """Code data (already split into streams of the given lengths) with the model and the
    context mixer of this revision (2: format 5; 3: format 8; 4: format 9; 5: format 10; 6: format 11;
    7: format 12; 1: format 4)."""
    return encode_cm_group(engine, [(data, lengths, revision)], progress)[0]


def encode_cm_group(engine: Engine, items: list[tuple[bytes, list[int], int]],
                    progress: Progress = None) -> list[bytes]:
    """Blocks, as (data, stream lengths, revision), coded together: their streams side by
    side in the scorer's passes, each block with its own mixer and coder, so each payload
    is the one encode_cm gives for the block alone (a pass's tables do not depend on the
    other streams, nor do payloads on the pass lengths)."""
    layouts = [_layout(data, lengths) for data, lengths, _ in items]
    offsets = _offsets(items)
    ends = [mat.shape[1] for mat, _ in layouts]
    mat = np.zeros((int(offsets[-1]), max(ends)), dtype=np.int64)
    mask = np.zeros(mat.shape, dtype=bool)
    for b, (m, k) in enumerate(layouts):
        mat[offsets[b]:offsets[b + 1], :ends[b]] = m
        mask[offsets[b]:offsets[b + 1], :ends[b]] = k
    encs = [cm.Encoder(lengths, m, rev, engine.plan.mixer)
            for (_, lengths, rev), (m, _) in zip(items, layouts)]

    def code(t0: int, freqs: np.ndarray) -> None:
        c = freqs.shape[1]
        for b, enc in enumerate(encs):
            if t0 < ends[b]:
                enc.encode(t0, freqs[offsets[b]:offsets[b + 1], :min(c, ends[b] - t0)])  # releases the GIL
        if progress:
            progress(int(mask[:, t0:t0 + c].sum()))

    _passes(engine, mat, code)
    return [enc.finish() for enc in encs]


def _offsets(items: list[tuple[bytes, list[int], int]]) -> list[int]:
    """Where each block's streams start among a lockstep group's, and their total."""
    out = [0]
    for _, lengths, _ in items:
        out.append(out[-1] + len(lengths))
    return out


def group_memory(n: int, version: int = VERSION) -> int:
    """Host bytes one block of n bytes adds to a lockstep group while format `version`
    codes it: its mixer's tables and its rows (the matrices of its bytes, a few int64
    copies)."""
    return cm.memory(n, PROFILES[version].revision or cm.LATEST) + 32 * n


def decode_cm(engine: Engine, payload: bytes, lengths: list[int], progress: Progress = None,
              revision: int = cm.LATEST) -> bytes:
    """Inverse of encode_cm: one model step and one mixer step per stream position."""
    return decode_cm_group(engine, [(payload, lengths, revision)], progress)[0]


def cm_group_memory(engine: Engine, items: list[tuple[bytes, list[int], int]]) -> tuple[int, int]:
    """(host, device) bytes decode_cm_group needs for these blocks, before allocating."""
    S = sum(len(lengths) for _, lengths, _ in items)
    L = max(max(lengths) for _, lengths, _ in items)
    mixers = sum(cm.memory(sum(lengths), rev) for _, lengths, rev in items)
    return decode_memory(engine.stepper(S, L), engine.cfg, S, L, mixers)


def decode_cm_group(engine: Engine, items: list[tuple[bytes, list[int], int]],
                    progress: Progress = None) -> list[bytes]:
    """Blocks coded with the context mixer, as (payload, stream lengths, revision), decoded
    together: their streams side by side in one stepper state, so each position of all of
    them takes one batched model step, and each block with its own mixer and coder. A
    stream's tables do not depend on the other streams of a step (docs/exactness.md), so
    each block decodes exactly as it would alone; a GPU step costs about the same for 16
    streams as for thousands, which is why the blocks of an input are decoded in lockstep.

    Bounded as a single block is: canonical stream lengths, no more bytes than each
    payload can code (cm.max_bytes), memory of the whole group checked before allocating,
    and each mixer's coder stops once it has read past its payload."""
    ctx = engine.cfg.context
    for payload, lengths, _ in items:
        n = _canonical(lengths, ctx)
        if n > cm.max_bytes(len(payload)):
            raise CorruptPayload(f"a payload of {len(payload)} bytes cannot code {n} bytes")
    offsets = _offsets(items)
    S, ends = offsets[-1], [max(lengths) for _, lengths, _ in items]
    L = max(ends)
    stepper = engine.stepper(S, L)
    n_all = sum(sum(lengths) for _, lengths, _ in items)
    what = (f"decoding a model block of {n_all} bytes in {S} streams" if len(items) == 1 else
            f"decoding {len(items)} model blocks of {n_all} bytes in {S} streams together")
    check_memory(cm_group_memory(engine, items), what, engine.device)
    outs = [np.zeros((len(lengths), m), dtype=np.int64) for (_, lengths, _), m in zip(items, ends)]
    every = np.concatenate([lengths for _, lengths, _ in items])
    # streams still running at each step (for progress)
    running = S - np.searchsorted(np.sort(every), np.arange(L), side="right")
    decs = [cm.Decoder(payload, lengths, out, rev, engine.plan.mixer)
            for (payload, lengths, rev), out in zip(items, outs)]
    cuts = _part_cuts(stepper, S) if len(items) == 1 else ()
    if len(cuts) > 2:
        _decode_in_parts(stepper, decs[0], items[0][1], cuts, progress, running)
    else:
        _decode_in_lockstep(engine, stepper, decs, offsets, ends, L, progress, running)
    for dec in decs:
        dec.finish()
    return [b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))
            for (_, lengths, _), out in zip(items, outs)]


def _decode_in_lockstep(engine: Engine, stepper, decs: list[cm.Decoder], offsets: list[int],
                        ends: list[int], L: int, progress: Progress, running: np.ndarray) -> None:
    """decode_cm_group's loop over steps: one model step of all the blocks' streams, then
    each block's mixer decodes its streams' bytes of the step."""
    S = offsets[-1]
    tok = np.full(S, BOS, dtype=np.int64)

    def mix(t: int, freqs: np.ndarray, blocks: range) -> None:
        """The mixers of these blocks decode step t (releasing the GIL while they code)."""
        for b in blocks:
            if t < ends[b]:  # (an ended block's streams step on, unread)
                lo, hi = offsets[b], offsets[b + 1]
                tok[lo:hi] = decs[b].decode(t, freqs[lo:hi])
    # several blocks: their mixers share the host's cores, in contiguous shares
    n = len(decs)
    workers = min(n, threads.available_cores()) if n >= engine.plan.lockstep_pool_from else 1
    shares = [range(n * i // workers, n * (i + 1) // workers) for i in range(workers)]
    pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="tzip-mix") if workers > 1 else None
    try:
        state = stepper.new_state(S)
        with stepper.threads(S):
            for t in range(L):
                freqs = stepper(tok, state)
                if pool:
                    done = [pool.submit(mix, t, freqs, share) for share in shares[1:]]
                    mix(t, freqs, shares[0])
                    for d in done:
                        d.result()
                else:
                    mix(t, freqs, shares[0])
                if progress:
                    progress(int(running[t]))
    finally:
        if pool:
            pool.shutdown()


def _part_cuts(stepper, S: int) -> tuple[int, ...]:
    """Where decode_cm_group cuts a block's S streams to decode them in parts (_decode_in_parts):
    the compiled stepper's cut of its step into parts for its threads; () for a stepper
    that steps all its streams at once (torch, numpy)."""
    if not hasattr(stepper, "step_here"):
        return ()
    from .engine import TUNING
    return stepper.parts.cuts(S, TUNING["step_parts_from"])


def _decode_in_parts(stepper, dec: cm.Decoder, lengths: list[int], cuts: tuple[int, ...],
                     progress: Progress, running: np.ndarray) -> None:
    """Decode one block with its streams cut into parts, each on a thread of its own that
    steps its part's model state and then, in turn, decodes its part's bytes of the step.

    The coder reads a step's bytes stream by stream, so the parts decode in turn: part 0,
    1, ..., then part 0 of the next step. But a part's next model step needs only its own
    bytes, so it runs while the parts after it decode: the mixer's work, one core's when
    the whole step's streams are stepped together and then decoded, overlaps the model's.
    The tables are the same (streams never mix inside the model), so are the bytes."""
    P, L = len(cuts) - 1, max(lengths)
    turn = [0]  # parts decoded so far, all steps: part p of step t decodes at turn t * P + p
    failed: list[BaseException] = []
    cond = threading.Condition()

    def run(p: int) -> None:
        a, b = cuts[p], cuts[p + 1]
        state, tok, end = stepper.new_state(b - a), np.full(b - a, BOS, dtype=np.int64), max(lengths[a:b])
        freqs = None
        try:
            for t in range(L):
                if t < end:  # (a part whose streams all ended still takes its turns)
                    freqs = stepper.step_here(tok, state)
                with cond:
                    while turn[0] != t * P + p and not failed:
                        cond.wait()
                    if failed:
                        return
                tok[:] = dec.decode(t, freqs, a, b)
                if progress and p == P - 1:
                    progress(int(running[t]))
                with cond:
                    turn[0] += 1
                    cond.notify_all()
        except BaseException as e:  # stop the other parts: they would wait for this turn forever
            with cond:
                failed.append(e)
                cond.notify_all()

    workers = [threading.Thread(target=run, args=(p,), name=f"tzip-part-{p}", daemon=True)
               for p in range(1, P)]
    for w in workers:
        w.start()
    run(0)
    for w in workers:
        w.join()
    if failed:
        raise failed[0]


def encode_block(raw: bytes, engine: Engine | None, streams: int | None, progress: Progress,
                 version: int = VERSION) -> Block:
    """The smallest of stored, LZMA and (with an engine) model coding of raw, as archive
    format `version` codes it (5; 12: the context mixer's revision 7; 11: its revision 6; 10: its revision 5; 9:
    its revision 4; 8: its revision 3; 4: its revision 1; 3: linear mixing and the CRLF transform only)."""
    return encode_blocks([raw], engine, streams, progress, version)[0]


def encode_blocks(raws: list[bytes], engine: Engine | None, streams: int | None,
                  progress: Progress, version: int = VERSION, alone: bool = False,
                  mixer: str | None = None) -> list[Block]:
    """encode_block of each of raws; their model trials are coded in one lockstep group
    (encode_cm_group). The caller chooses the group (api.Compressor: up to the engine's
    TUNING["lockstep_blocks"], within the memory limit). alone: the trial codes with the
    context mixer alone (tzip/cm/alone.py; format 6), no engine, with the `mixer`
    implementation (a Compressor's plan's; the engine's plan decides for model blocks)."""
    if alone:
        return [_encode_alone(raw, progress, mixer) for raw in raws]
    profile = PROFILES[version]
    method = profile.model_method
    best, trials = [], []
    for raw in raws:
        crc = zlib.crc32(raw)
        utf16, crlf, data = transform.to_text_block(raw, profile.utf16)
        tf = transform_code(utf16, crlf)
        blk = Block(STORED, 0, len(raw), crc, raw)
        packed = lzma_pack(data)
        if len(packed) < len(blk.payload):
            blk = _verified(Block(LZMA, tf, len(raw), crc, packed), raw) or blk
        best.append(_verified(blk, raw) if blk.method == STORED else blk)
        if engine is not None and data and _looks_compressible(data):
            trials.append((len(best) - 1, tf, data, split_streams(len(data), engine.cfg.context,
                                                                  streams, version)))
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(n)
    payloads: list[bytes] = []
    if method == MODEL:
        payloads = [linear.encode(engine, data, lengths, tick) for _, _, data, lengths in trials]
    elif trials:
        payloads = encode_cm_group(engine, [(data, lengths, profile.revision)
                                            for _, _, data, lengths in trials], tick)
    for (i, tf, _, lengths), payload in zip(trials, payloads):
        if len(payload) + 2 * len(lengths) < len(best[i].payload):
            best[i] = Block(method, tf, best[i].raw_len, best[i].raw_crc, payload, lengths)
    rest = sum(len(raw) for raw in raws) - done
    if progress and rest > 0:
        progress(rest)
    return best


def _verified(blk: Block, raw: bytes) -> Block | None:
    """blk if the decoder gives raw back from it (checked as the decoder checks it: its
    lengths, transforms and checksum), else None; a stored block that does not is a bug
    of tzip, raised rather than written. Cheap for stored and LZMA blocks (LZMA decodes
    at tens of MB/s where it encodes at about one), so no archive holds a block of
    these that tzip cannot decode."""
    try:
        ok = _original(blk, _payload_bytes(blk, _no_engine, None), None) == raw
    except CorruptArchive:
        ok = False
    if not ok and blk.method == STORED:
        raise AssertionError("a stored block does not decode to its bytes")
    return blk if ok else None


def _no_engine() -> Engine:
    raise AssertionError("a stored or LZMA block needs no model")


def decode_block(blk: Block, get_engine: Callable[[], Engine], progress: Progress,
                 limit: OutputLimit | None = None, mixer: str | None = None) -> bytes:
    """The original bytes of a block, verified against its checksum.

    Whatever the block's bytes, this returns them or raises CorruptArchive (or
    LimitExceeded, ModelError...: TzipError subclasses), with work and memory bounded by
    what the block really holds (FORMAT.md, "Decoder limits"), and its length within
    `limit` (by default TZIP_MAX_OUTPUT and TZIP_MAX_RATIO for this block alone)."""
    return decode_blocks([blk], get_engine, progress, limit, mixer)[0]


def record_len(blk: Block) -> int:
    """The bytes of a block's record in the archive (Block.pack's length, not built)."""
    streams = len(put_varint(len(blk.streams))) + sum(len(put_varint(n)) for n in blk.streams) \
        if blk.method in STREAM_METHODS else 0
    return 3 + len(put_varint(blk.raw_len)) + len(put_varint(len(blk.payload))) + 8 + streams \
        + len(blk.payload)


def lockstep(blk: Block) -> bool:
    """Whether a block can be decoded in lockstep with others (decode_blocks): the
    context mixer's model blocks."""
    return blk.method in CM_REVISION


def decode_blocks(blocks: list[Block], get_engine: Callable[[], Engine],
                  progress: Progress, limit: OutputLimit | None = None,
                  mixer: str | None = None) -> list[bytes]:
    """The original bytes of each block, as decode_block gives them; the context mixer's
    model blocks among them are decoded together in one lockstep group
    (decode_cm_group). The caller chooses the group (api.Decompressor: up to the engine's
    TUNING["lockstep_blocks"], within the memory limit) and the output limit (one for a
    whole archive; by default TZIP_MAX_OUTPUT and TZIP_MAX_RATIO for these blocks),
    which every block's stated length is claimed from before any of them is decoded.
    mixer: the implementation of the blocks of the context mixer alone (a Decompressor's
    plan's); model blocks take their engine's plan."""
    limit = OutputLimit() if limit is None else limit
    for b in blocks:
        limit.claim(b.raw_len, record_len(b))
    try:
        for b in blocks:
            _check_block_memory(b)
        group = [b for b in blocks if lockstep(b)]
        for b in group:
            _check_model_block(b)
        coded: dict[int, bytes] = {}
        if group:
            try:
                got = decode_cm_group(get_engine(), [(b.payload, b.streams, CM_REVISION[b.method])
                                                     for b in group], progress)
            except CorruptPayload as e:
                raise CorruptArchive(f"corrupt archive ({e})") from None
            coded = {id(b): d for b, d in zip(group, got)}
        return [_original(b, coded[id(b)] if id(b) in coded else _payload_bytes(b, get_engine, progress, mixer),
                          progress) for b in blocks]
    except MemoryError:
        raw = sum(b.raw_len for b in blocks)
        raise LimitExceeded(f"not enough memory to decode {_blocks_text(blocks)} of {raw} bytes "
                            f"(limit: {limit_text()})") from None
    except RuntimeError as e:  # torch.OutOfMemoryError on a GPU
        if type(e).__name__ != "OutOfMemoryError":
            raise
        raise LimitExceeded(f"not enough GPU memory to decode {_blocks_text(blocks)} of "
                            f"{sum(b.raw_len for b in blocks)} bytes in "
                            f"{sum(len(b.streams) for b in blocks)} streams; try --device cpu") from None


def _blocks_text(blocks: list[Block]) -> str:
    return "a block" if len(blocks) == 1 else f"{len(blocks)} blocks"


def _payload_bytes(blk: Block, get_engine: Callable[[], Engine], progress: Progress,
                   mixer: str | None = None) -> bytes:
    """A block's coded bytes (before transforms are undone), for blocks not in lockstep."""
    if blk.method == STORED:
        return blk.payload
    if blk.method == LZMA:
        return _lzma_decode(blk.payload, _coded_range(blk)[1])
    _check_model_block(blk)
    if blk.method == CM_ALONE:
        from .cm import alone
        n = blk.streams[0]
        try:
            return alone.decode(blk.payload, n, ALONE_REVISION, mixer, progress=progress)
        except CorruptPayload as e:
            raise CorruptArchive(f"corrupt archive ({e})") from None
    try:
        if blk.method == MODEL:
            return linear.decode(get_engine(), blk.payload, blk.streams, progress)
        return decode_cm(get_engine(), blk.payload, blk.streams, progress, CM_REVISION[blk.method])
    except CorruptPayload as e:
        raise CorruptArchive(f"corrupt archive ({e})") from None


def _coded_range(blk: Block) -> tuple[int, int]:
    """(shortest, longest) coded bytes (before its transforms are undone) a block of its
    length and transforms can have (transform.coded_length_range)."""
    utf16, crlf = transform_parts(blk.transform)
    return transform.coded_length_range(blk.raw_len, bool(utf16), crlf)


def block_memory(blk: Block) -> int:
    """Host bytes that decoding a block needs beyond the model's part (estimated by
    decode / decode_cm_group): an LZMA block's dictionary and output, and for every
    method, the transforms undone on the longest coded bytes its length allows."""
    utf16, crlf = transform_parts(blk.transform)
    coded = _coded_range(blk)[1]
    need = transform_memory(blk.raw_len, bool(utf16), crlf)
    if blk.method == LZMA:
        need += lzma_memory(coded, _lzma_dict(coded + 1))
    elif blk.method == CM_ALONE:  # the mixer's tables and the stream, the prime before it
        from .cm import alone
        primed = len(alone.prime()) + coded
        need += cm.memory(primed, ALONE_REVISION) + 8 * primed + coded
    elif need:  # the coded bytes are held while the transforms are undone
        need += coded
    return need


def _check_block_memory(blk: Block) -> None:
    """Refuse, before any of it is allocated, a block whose block_memory is over the limit."""
    need = block_memory(blk)
    if need:
        what = {LZMA: "an LZMA block", CM_ALONE: "a block of the context mixer alone"}.get(blk.method, "a block")
        check_memory(need, f"{what} of {blk.raw_len} bytes")


def _original(blk: Block, data: bytes, progress: Progress) -> bytes:
    """The block's original bytes from its coded ones: transforms undone, length and
    checksum verified. The length the transforms give is counted before they run, so
    they allocate no more than _check_block_memory allowed for."""
    utf16, crlf = transform_parts(blk.transform)
    if blk.transform and transform.text_block_length(data, utf16, crlf) != blk.raw_len:
        raise CorruptArchive("corrupt archive (block checksum mismatch)")
    try:
        data = transform.from_text_block(data, utf16, crlf)
    except UnicodeError:  # only a corrupt block's bytes fail to convert back
        raise CorruptArchive("corrupt archive (block checksum mismatch)") from None
    if len(data) != blk.raw_len or zlib.crc32(data) != blk.raw_crc:
        raise CorruptArchive("corrupt archive (block checksum mismatch)")
    if progress and blk.method not in STREAM_METHODS:
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
    streams sum to a length the block's transforms can give (transform.coded_length_range:
    the block length less the CRs a CRLF block drops, at least one, at most one per byte;
    a UTF-16 block's UTF-8 is between a quarter and 3/2 of it), and its payload can code
    that many symbols."""
    n = sum(blk.streams)
    lo, hi = _coded_range(blk)
    ok = lo <= n <= hi
    if blk.method == MODEL:
        ok = ok and linear.payload_fits(len(blk.payload), n)
    elif blk.method == CM_ALONE:  # one stream, as the encoder codes it
        ok = ok and len(blk.streams) == 1 and n <= cm.max_bytes(len(blk.payload))
    else:
        ok = ok and n <= cm.max_bytes(len(blk.payload))
    if not ok:
        raise CorruptArchive("corrupt archive (bad model block lengths)")
