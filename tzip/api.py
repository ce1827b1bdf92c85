"""The library API that the CLI, the tests and the benchmarks all use.

    tzip.compress(data) -> bytes          tzip.decompress(blob) -> bytes
    tzip.compress_stream(fin, fout)       tzip.decompress_stream(fin, fout)
    tzip.compress_file(src, dst)          tzip.decompress_file(src, dst)
    tzip.info(blob_or_stream) -> ArchiveInfo

Input is cut into blocks; each block is coded by the model, by LZMA or stored, whichever
is smallest, so incompressible input grows by a few bytes only (FORMAT.md has the bound).
"""
from __future__ import annotations

import io
import lzma
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Union

from . import coder, models, transform
from .container import (CRLF, LZMA, MAX_BLOCK, MAX_STREAMS, METHODS, MODEL, NO_TRANSFORM, STORED,
                        Block, FormatError, Header, Reader, Trailer, read_record)
from .errors import CorruptArchive, TzipError, WrongModel
from .quant import IntModel

BLOCK_SIZE = 4 << 20
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _lzma_pack(data: bytes) -> bytes:
    """LZMA2 preset 9e with a dictionary no larger than the data needs: the same bytes as
    the preset's 64 MiB one gives (checked on the Calgary files), which the decoder's
    _LZMA_FILTERS read, without setting up its match finder for 64 MiB (75 ms for a 4 KB
    block, 94 for paper1; 2 and 18 sized)."""
    size = max(1 << 12, 1 << max(0, len(data) - 1).bit_length())
    filters = [{**_LZMA_FILTERS[0], "dict_size": min(size, 64 << 20)}]
    return lzma.compress(data, lzma.FORMAT_RAW, filters=filters)

ModelSpec = Union[str, Path, IntModel, None]  # a name in models/, a path, or a loaded model
Progress = Callable[[int], None] | None


@dataclass
class ArchiveInfo:
    model_name: str
    model_id: str
    original_size: int = 0
    compressed_size: int = 0
    blocks: list[dict] = field(default_factory=list)

    @property
    def bpb(self) -> float:
        return 8 * self.compressed_size / self.original_size if self.original_size else 0.0


def _looks_compressible(data: bytes) -> bool:
    """Cheap screen that skips the model on random or already-compressed data."""
    sample = data[:1 << 16]
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


def _encode_block(raw: bytes, engine, streams: int | None, progress: Progress) -> Block:
    crc = zlib.crc32(raw)
    best = Block(STORED, NO_TRANSFORM, len(raw), crc, raw)
    tf = CRLF if transform.crlf_applies(raw) else NO_TRANSFORM
    data = transform.crlf_to_lf(raw) if tf == CRLF else raw
    packed = _lzma_pack(data)
    if len(packed) < len(best.payload):
        best = Block(LZMA, tf, len(raw), crc, packed)
    done = 0
    if engine is not None and data and _looks_compressible(data):
        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(n)
        lengths = coder.split_streams(len(data), engine.cfg.context, streams)
        payload = coder.encode(engine, data, lengths, tick)
        if len(payload) + 2 * len(lengths) < len(best.payload):
            best = Block(MODEL, tf, len(raw), crc, payload, lengths)
    if progress and len(raw) > done:
        progress(len(raw) - done)
    return best


def compress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, device="auto",
                    streams: int | None = None, block_size: int = BLOCK_SIZE,
                    progress: Progress = None) -> int:
    """Compress everything readable from fin into fout; returns the bytes read.
    streams: model streams per block (1 to MAX_STREAMS; default: from the block size)."""
    if streams is not None and not 1 <= streams <= MAX_STREAMS:
        raise ValueError(f"streams must be between 1 and {MAX_STREAMS}, not {streams}")
    if not 1 <= block_size <= MAX_BLOCK:
        raise ValueError(f"block_size must be between 1 and {MAX_BLOCK}, not {block_size}")
    dev = models.resolve_device(device)
    m = models.load(model, dev)
    engine = models.engine_for(m, dev)
    fout.write(Header(m.name, m.digest[:16]).pack())
    total, crc = 0, 0
    while True:
        raw = Reader(fin).read(block_size)
        if not raw:
            break
        fout.write(_encode_block(raw, engine, streams, progress).pack())
        total += len(raw)
        crc = zlib.crc32(raw, crc)
    fout.write(Trailer(total, crc).pack())
    return total


def _decode_block(blk: Block, get_engine, progress: Progress) -> bytes:
    if blk.method == STORED:
        data = blk.payload
    elif blk.method == LZMA:
        try:
            data = lzma.decompress(blk.payload, lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        except lzma.LZMAError as e:
            raise CorruptArchive(f"corrupt archive (LZMA block: {e})") from None
    else:
        try:
            data = coder.decode(get_engine(), blk.payload, blk.streams, progress)
        except coder.CorruptPayload as e:
            raise CorruptArchive(f"corrupt archive ({e})") from None
    if blk.transform == CRLF:
        data = transform.lf_to_crlf(data)
    if len(data) != blk.raw_len or zlib.crc32(data) != blk.raw_crc:
        raise CorruptArchive("corrupt archive (block checksum mismatch)")
    if progress and blk.method != MODEL:
        progress(len(data))
    return data


def decompress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, device="auto",
                      progress: Progress = None) -> int:
    """Decompress a .tz stream from fin into fout; returns the bytes written.

    Every block is verified against its checksum before it is written."""
    r = Reader(fin)
    try:
        header = Header.read(r)
    except FormatError as e:
        raise CorruptArchive(str(e)) from None
    engine = None

    def get_engine():
        nonlocal engine
        if engine is None:
            dev = models.resolve_device(device)
            if model is None:
                m = models.find(header.model_name, header.model_digest)
            else:
                m = models.load(model, dev)
                if not m.digest.startswith(header.model_digest):
                    raise WrongModel(
                        f"wrong model: the archive was made with {header.model_name!r} "
                        f"(id {header.model_digest.hex()[:16]}), but {m.name!r} has id "
                        f"{m.digest.hex()[:16]}")
            engine = models.engine_for(m, dev)
        return engine

    total, crc = 0, 0
    try:
        while True:
            rec = read_record(r)
            if isinstance(rec, Trailer):
                break
            data = _decode_block(rec, get_engine, progress)
            fout.write(data)
            total += len(data)
            crc = zlib.crc32(data, crc)
    except FormatError as e:
        raise CorruptArchive(str(e)) from None
    if rec.total_len != total or rec.total_crc != crc:
        raise CorruptArchive("corrupt archive (total length or checksum mismatch)")
    if fin.read(1):
        raise CorruptArchive("corrupt archive (trailing data after the end)")
    return total


def compress(data: bytes, model: ModelSpec = None, **kw) -> bytes:
    """Compress bytes; keyword arguments as for compress_stream."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, model, **kw)
    return out.getvalue()


def decompress(blob: bytes, model: ModelSpec = None, **kw) -> bytes:
    """Decompress bytes made by compress; raises CorruptArchive or WrongModel."""
    out = io.BytesIO()
    decompress_stream(io.BytesIO(blob), out, model, **kw)
    return out.getvalue()


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def source_mode(src: str | Path) -> int:
    """The permission bits of src, which its output keeps (as gzip does)."""
    return stat.S_IMODE(os.stat(src).st_mode)


def atomic_write(dst: Path, fill: Callable[[BinaryIO], int], mode: int | None = None) -> int:
    """Write through a temporary file beside dst, renamed into place only on success, with
    permission bits mode (default: those of any new file); returns what fill returned."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            result = fill(f)
        os.chmod(tmp, _new_file_mode() if mode is None else mode)
        os.replace(tmp, dst)
        return result
    except BaseException:
        os.unlink(tmp)
        raise


def compress_file(src: str | Path, dst: str | Path | None = None, model: ModelSpec = None,
                  **kw) -> Path:
    """src -> dst (default src + '.tz'), written atomically."""
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(src.name + ".tz")
    with open(src, "rb") as fin:
        atomic_write(dst, lambda f: compress_stream(fin, f, model, **kw), source_mode(src))
    return dst


def decompress_file(src: str | Path, dst: str | Path | None = None, model: ModelSpec = None,
                    **kw) -> Path:
    """src.tz -> dst (default src without '.tz'), written atomically after verification."""
    src = Path(src)
    if dst is None:
        if src.suffix != ".tz":
            raise TzipError(f"{src}: unknown suffix (expected .tz); give an output name")
        dst = src.with_suffix("")
    dst = Path(dst)
    with open(src, "rb") as fin:
        atomic_write(dst, lambda f: decompress_stream(fin, f, model, **kw), source_mode(src))
    return dst


def info(src: "bytes | BinaryIO") -> ArchiveInfo:
    """Sizes, model and block layout of an archive, without decoding it."""
    fin = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
    start = fin.tell() if fin.seekable() else 0
    r = Reader(fin)
    try:
        h = Header.read(r)
        res = ArchiveInfo(h.model_name, h.model_digest.hex())
        while True:
            rec = read_record(r)
            if isinstance(rec, Trailer):
                res.original_size = rec.total_len
                break
            res.blocks.append({"method": METHODS[rec.method], "crlf": rec.transform == CRLF,
                               "original": rec.raw_len, "coded": len(rec.payload),
                               "streams": len(rec.streams)})
    except FormatError as e:
        raise CorruptArchive(str(e)) from None
    res.compressed_size = (fin.tell() - start) if fin.seekable() else \
        sum(b["coded"] for b in res.blocks)
    return res
