"""The library API that the CLI, the tests and the benchmarks all use.

Objects the caller keeps, as lzma and zstandard offer them:

    c = tzip.Compressor(model=None, device="auto")   # loads the model once
    c.compress(data) -> bytes;  c.compress_stream(fin, fout)
    d = tzip.Decompressor(model=None, device="auto")
    d.decompress(blob) -> bytes;  d.decompress_stream(fin, fout)

and one-shot functions over them:

    tzip.compress(data) -> bytes          tzip.decompress(blob) -> bytes
    tzip.compress_stream(fin, fout)       tzip.decompress_stream(fin, fout)
    tzip.compress_file(src, dst)          tzip.decompress_file(src, dst)
    tzip.info(blob_or_stream) -> ArchiveInfo

File objects and incremental objects as lzma has them are in tzip/tzfile.py:
tzip.open(path_or_file, "rb"|"wb"|"rt"|"wt"...), tzip.TzipFile, tzip.TzipCompressor
(compress(data) -> what is ready, flush() -> the rest) and tzip.TzipDecompressor
(decompress(data) -> whole blocks decoded, eof, unused_data). Compressor.compress(data)
keeps returning a whole archive. Archives one after another (cat a.tz b.tz) decompress
to both contents, here and there.

Importing this module loads no PyTorch: _heavy() imports the engine when a Compressor or
Decompressor is first made, after tzip/threads.py has chosen the thread count.

Input is cut into blocks; each block is coded by the model, by LZMA or stored, whichever
is smallest (tzip/codec.py), so incompressible input grows by a few bytes only
(FORMAT.md has the bound).
"""
from __future__ import annotations

import io
import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Union

from .container import (MAGIC, MAX_BLOCK, MAX_STREAMS, METHODS, READABLE, VERSION, Block,
                        FormatError, Header, Reader, Trailer, read_record, transform_parts)
from .errors import CorruptArchive, TzipError, WrongModel
from .output import atomic_write  # noqa: F401 - tzip.api.atomic_write, as before

if TYPE_CHECKING:
    import torch

    from .model.intmodel import IntModel

# PyTorch, numpy and the engine are imported on first use (_heavy), not with tzip: `import
# tzip`, `tzip --help`, `tzip info` and `tzip models` never load them.
codec = Engine = registry = None


def _heavy() -> None:
    """Import the engine's modules, after setting the thread policy (tzip/threads.py)."""
    global codec, Engine, registry
    if codec is not None:
        return
    from . import threads
    threads.before_torch()
    from . import codec as _codec
    from .engine import Engine as _Engine
    from .model import registry as _registry
    codec, Engine, registry = _codec, _Engine, _registry


BLOCK_SIZE = 4 << 20

ModelSpec = Union[str, Path, "IntModel", None]  # a name of an installed model, a path, or a loaded model
Progress = Callable[[int], None] | None


@dataclass
class BlockInfo:
    method: str  # "stored", "lzma", "model" (format 3), "model+cm" (4) or "model+cm2" (5)
    crlf: bool  # coded with LF line endings
    original: int
    coded: int
    streams: int
    utf16: str | None = None  # "le" or "be": coded as UTF-8


@dataclass
class ArchiveInfo:
    model_name: str
    model_id: str
    version: int = VERSION
    original_size: int = 0
    compressed_size: int = 0
    blocks: list[BlockInfo] = field(default_factory=list)
    members: int = 1  # archives one after another (cat a.tz b.tz)

    @property
    def bpb(self) -> float:
        return 8 * self.compressed_size / self.original_size if self.original_size else 0.0


class Compressor:
    """Compresses with one model on one device; keeps the model and its engine (weights
    prepared, backends built) from call to call."""

    def __init__(self, model: ModelSpec = None, *, device: str | torch.device = "auto",
                 streams: int | None = None, block_size: int = BLOCK_SIZE, format: int = VERSION):
        """streams: model streams per block (1 to MAX_STREAMS; default: from the block size);
        format: the archive format to write (4; 3 for decoders of tzip before it)."""
        if format not in READABLE:
            raise ValueError(f"format must be one of {READABLE}, not {format}")
        if streams is not None and not 1 <= streams <= MAX_STREAMS:
            raise ValueError(f"streams must be between 1 and {MAX_STREAMS}, not {streams}")
        if not 1 <= block_size <= MAX_BLOCK:
            raise ValueError(f"block_size must be between 1 and {MAX_BLOCK}, not {block_size}")
        _heavy()
        self.device = registry.resolve_device(device)
        if model is None:  # the default, wherever on the search path it is installed
            model = registry.default_name(self.device)
        self.model = registry.load(model, self.device)
        self.engine = Engine(self.model, self.device)
        self.streams, self.block_size, self.format = streams, block_size, format

    def compress_stream(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Compress everything readable from fin into fout; returns the bytes read."""
        m = self.model
        fout.write(Header(m.name, m.digest[:16], self.format).pack())
        total, crc = 0, 0
        reader = Reader(fin)
        while True:
            raws = self._next_group(reader)
            if not raws:
                break
            for blk in codec.encode_blocks(raws, self.engine, self.streams, progress, self.format):
                fout.write(blk.pack())
            for raw in raws:
                total += len(raw)
                crc = zlib.crc32(raw, crc)
        fout.write(Trailer(total, crc).pack())
        return total

    def _next_group(self, reader: Reader) -> list[bytes]:
        """The next blocks to code in lockstep: up to the engine's lockstep_blocks (one on a
        CPU), while another block would still fit the memory limit."""
        raws: list[bytes] = []
        need, limit = 0, codec.memory_limit()
        while len(raws) < self.engine.lockstep_blocks:
            raw = reader.read(self.block_size)
            if not raw:
                break
            raws.append(raw)
            need += codec.group_memory(len(raw))
            if limit is not None and need + codec.group_memory(self.block_size) > limit:
                break
        return raws

    def compress(self, data: bytes) -> bytes:
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(data), out)
        return out.getvalue()

    @property
    def backend(self) -> str:
        """What ran the model last (engine backends and device), for -v."""
        return self.engine.describe()


def _joins(pending: "list[Block]", blk: "Block", engine: "Engine") -> bool:
    """Whether the context-mixed model block blk is decoded in lockstep with the pending
    ones (codec.decode_blocks): while they are fewer than the engine's lockstep_blocks and
    the group fits in the memory limit (a block alone is checked when it is decoded)."""
    if len(pending) + 1 > engine.lockstep_blocks:
        return False
    items = [(b.payload, b.streams, codec.CM_REVISION[b.method]) for b in pending + [blk]]
    limit = codec.memory_limit()
    return limit is None or codec.cm_group_memory(engine, items)[0] <= limit


class Decompressor:
    """Decompresses archives; with model=None each archive's model is found among the
    installed ones by its id. Keeps the engines it has built from call to call."""

    def __init__(self, model: ModelSpec = None, *, device: str | torch.device = "auto"):
        _heavy()
        self.model_spec, self.device_spec = model, device
        self._engines: dict[bytes, Engine] = {}

    def engine_for(self, header: Header) -> Engine:
        """The engine for an archive of this header: the given model (its id checked), or
        the installed model with the header's id."""
        dev = registry.resolve_device(self.device_spec)
        if self.model_spec is None:
            m = registry.find(header.model_name, header.model_digest)
        else:
            m = registry.load(self.model_spec, dev)
            if not m.digest.startswith(header.model_digest):
                raise WrongModel(
                    f"wrong model: the archive was made with {header.model_name!r} "
                    f"(id {header.model_digest.hex()[:16]}), but {m.name!r} has id "
                    f"{m.digest.hex()[:16]}")
        e = self._engines.get(m.digest)
        if e is None or e.device != dev:
            e = self._engines[m.digest] = Engine(m, dev)
        return e

    def decompress_stream(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Decompress a .tz stream from fin into fout; returns the bytes written.

        Archives one after another (`cat a.tz b.tz`) decode one after another, as gzip, xz
        and zstd do; anything else after an archive is an error. Every block is verified
        against its checksum before it is written."""
        total = 0
        fin = _Prepend(fin)
        while True:
            total += self.decompress_member(fin, fout, progress)
            head = Reader(fin).read(len(MAGIC))
            if not head:
                return total
            if head != MAGIC:
                if MAGIC.startswith(head):
                    raise CorruptArchive("truncated archive (while reading header)")
                raise CorruptArchive("corrupt archive (trailing data after the end)")
            fin.push(head)

    def decompress_member(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Decompress one archive from fin, reading no byte past its end."""
        r = Reader(fin)
        try:
            header = Header.read(r)
        except FormatError as e:
            raise CorruptArchive(str(e)) from None
        engine = None

        def get_engine() -> Engine:
            nonlocal engine
            if engine is None:
                engine = self.engine_for(header)
            return engine

        total, crc = 0, 0
        pending: list[Block] = []  # blocks read, not decoded yet: a lockstep group

        def flush() -> None:
            nonlocal total, crc
            for data in codec.decode_blocks(pending, get_engine, progress):
                fout.write(data)
                total += len(data)
                crc = zlib.crc32(data, crc)
            pending.clear()

        try:
            while True:
                rec = read_record(r, header.version)
                if isinstance(rec, Trailer):
                    break
                if not codec.lockstep(rec):
                    flush()
                    pending.append(rec)
                    flush()
                    continue
                if pending and not _joins(pending, rec, get_engine()):
                    flush()
                pending.append(rec)
                if len(pending) >= get_engine().lockstep_blocks:
                    flush()
            flush()
        except FormatError as e:
            raise CorruptArchive(str(e)) from None
        if rec.total_len != total or rec.total_crc != crc:
            raise CorruptArchive("corrupt archive (total length or checksum mismatch)")
        return total

    def decompress(self, blob: bytes) -> bytes:
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(blob), out)
        return out.getvalue()

    @property
    def backend(self) -> str:
        """What ran the models last (engine backends and device), for -v."""
        return "; ".join(e.describe() for e in self._engines.values()) or "no model needed"


def compress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, device="auto",
                    streams: int | None = None, block_size: int = BLOCK_SIZE, format: int = VERSION,
                    progress: Progress = None) -> int:
    """Compress everything readable from fin into fout; returns the bytes read."""
    return Compressor(model, device=device, streams=streams, block_size=block_size,
                      format=format).compress_stream(fin, fout, progress)


def decompress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, device="auto",
                      progress: Progress = None) -> int:
    """Decompress a .tz stream from fin into fout; returns the bytes written."""
    return Decompressor(model, device=device).decompress_stream(fin, fout, progress)


def compress(data: bytes, model: ModelSpec = None, **kw) -> bytes:
    """Compress bytes; keyword arguments as for Compressor."""
    return Compressor(model, **kw).compress(data)


def decompress(blob: bytes, model: ModelSpec = None, **kw) -> bytes:
    """Decompress bytes made by compress; raises CorruptArchive or WrongModel."""
    return Decompressor(model, **kw).decompress(blob)


def source_mode(src: str | Path) -> int:
    """The permission bits of src, which its output keeps (as gzip does)."""
    return stat.S_IMODE(os.stat(src).st_mode)


def compress_file(src: str | Path, dst: str | Path | None = None, model: ModelSpec = None,
                  **kw) -> Path:
    """src -> dst (default src + '.tz'), written atomically (tzip/output.py: every write
    checked, published only when complete; an existing dst is replaced)."""
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


class _Prepend:
    """A binary reader with bytes pushed back in front of it (to look at what follows an
    archive without consuming it)."""

    def __init__(self, f: BinaryIO):
        self.f, self.head = f, b""

    def push(self, b: bytes) -> None:
        self.head = b + self.head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                b, self.head = self.head + self.f.read(), b""
                return b
            b, self.head = self.head[:n], self.head[n:]
            return b
        return self.f.read(n)


class _Counting:
    """Counts the bytes read through it."""

    def __init__(self, f: BinaryIO):
        self.f, self.n = f, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        return b


def info(src: "bytes | BinaryIO") -> ArchiveInfo:
    """Sizes, model and block layout of an archive, without decoding it. Archives one after
    another are summed (`members` counts them; the model is the first one's)."""
    fin = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
    counted = _Counting(fin)
    stream = _Prepend(counted)
    res = None
    try:
        while True:
            r = Reader(stream)
            h = Header.read(r)
            if res is None:
                res = ArchiveInfo(h.model_name, h.model_digest.hex(), h.version)
            else:
                res.members += 1
            while True:
                rec = read_record(r, h.version)
                if isinstance(rec, Trailer):
                    res.original_size += rec.total_len
                    break
                utf16, crlf = transform_parts(rec.transform)
                res.blocks.append(BlockInfo(METHODS[rec.method], crlf, rec.raw_len, len(rec.payload),
                                            len(rec.streams), utf16))
            head = Reader(stream).read(len(MAGIC))
            if not head:
                break
            if head != MAGIC:
                raise FormatError("truncated archive (while reading header)" if MAGIC.startswith(head)
                                  else "corrupt archive (trailing data after the end)")
            stream.push(head)
    except FormatError as e:
        raise CorruptArchive(str(e)) from None
    res.compressed_size = counted.n
    return res
