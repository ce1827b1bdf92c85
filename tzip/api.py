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

import errno
import io
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Union

from .archive import ArchiveInfo, ArchiveReader, BlockInfo, Member, Writer, info  # noqa: F401
from .archive import CountingReader as _Counting  # noqa: F401 (tzip/cli.py counts input with it)
from .container import (ALONE_VERSION, CM_ALONE, DIGEST_LEN, MAX_BLOCK, MAX_STREAMS, PROFILES, READABLE,
                        VERSION, WINDOW_VERSION, Block, FormatError, Header, Reader)
from .container import MAGIC  # noqa: F401 (tzip/cli.py: what tzip -dcf takes for an archive)
from .container import CM3_VERSION, CM4_VERSION, CM5_VERSION, CM6_VERSION, CM7_VERSION  # noqa: F401 (tzip/cli.py: what -8 writes, wrote)
from .errors import CorruptArchive, TzipError, WrongModel
from .limits import OutputLimit, Progress
from .output import atomic_write  # noqa: F401 - tzip.api.atomic_write, as before
from .output import checked

if TYPE_CHECKING:
    import torch

    from .model.intmodel import IntModel

# numpy and the engine are imported on first use (_heavy), not with tzip: `import tzip`,
# `tzip --help`, `tzip info` and `tzip models` never load them. PyTorch loads only with a
# torch backend (tzip/engine/__init__.py) or to ask whether a GPU is there (tzip/device.py).
codec = Engine = Plan = registry = None


def _heavy() -> None:
    """Import the engine's modules, after setting the thread policy (tzip/threads.py)."""
    global codec, Engine, Plan, registry
    if codec is not None:
        return
    from . import jitcache, threads
    threads.before_loading()
    jitcache.prepare()  # numba's cache folder, before any compiled module loads
    from . import codec as _codec
    from .engine import Engine as _Engine
    from .engine.plan import Plan as _Plan
    from .model import registry as _registry
    codec, Engine, Plan, registry = _codec, _Engine, _Plan, _registry


BLOCK_SIZE = 4 << 20
NO_MODEL = "none"  # the model spec of the context mixer alone (tzip/cm/alone.py, level 1)

ModelSpec = Union[str, Path, "IntModel", None]  # a name of an installed model, a path, or a loaded model


def is_alone(model: ModelSpec) -> bool:
    """Whether a model spec asks for the context mixer alone (no transformer)."""
    return isinstance(model, str) and model == NO_MODEL


def format_for(model: ModelSpec, format: int | None, window: int | None = None) -> int:
    """The archive format a Compressor of this model spec and window writes when asked for
    `format` (None: 5, 6 for the mixer alone, 7 with a window); ValueError for one it
    cannot write."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be a whole number of positions, 1 or more, not {window!r}")
    if format is None:
        format = ALONE_VERSION if is_alone(model) else WINDOW_VERSION if window is not None else VERSION
    if format not in READABLE:
        raise ValueError(f"format must be one of {READABLE}, not {format}")
    if is_alone(model) and (window is not None or PROFILES[format].windowed):
        raise ValueError("model 'none' (the context mixer alone) has no window")
    if is_alone(model) and CM_ALONE not in PROFILES[format].methods:
        raise ValueError(f"model 'none' (the context mixer alone) needs format {ALONE_VERSION}, "
                         f"not {format}")
    if window is not None and not PROFILES[format].windowed:
        raise ValueError(f"a window needs format {WINDOW_VERSION}, not {format}")
    return format


def window_for(model: "IntModel", format: int, window: int | None) -> int | None:
    """The window a format-`format` archive of this model records: None for a format
    without one; else `window`, or the model's whole context when window is None or
    longer (a level's window is at most what it attends to: -2 with a model of context 32
    attends to 32 positions)."""
    if not PROFILES[format].windowed:
        return None
    context = model.cfg.context
    return context if window is None else min(window, context)


def writer_for(model: "IntModel | None", format: int, window: int | None = None) -> Writer:
    """The archive writer of a loaded model (None: the mixer alone, whose archives name
    no model: an empty name and a zero id), format and window (window_for's; tzip/archive.py)."""
    if model is None:
        return Writer("", bytes(DIGEST_LEN), format)
    return Writer.for_model(model, format, window)


class Compressor:
    """Compresses with one model on one device; keeps the model and its engine (weights
    prepared, backends built) from call to call."""

    def __init__(self, model: ModelSpec = None, *, device: str | torch.device = "auto",
                 streams: int | None = None, block_size: int = BLOCK_SIZE, format: int | None = None,
                 window: int | None = None):
        """model: an installed model's name, a path or a loaded model (default: the
        device's default model), or "none": no transformer, the context mixer alone
        (tzip/cm/alone.py; the fastest level, -1). streams: model streams per block (1 to
        MAX_STREAMS; default: from the block size); format: the archive format to write
        (default: 5, 6 for model "none", 7 with a window; 12, the context mixer's revision
        7: smaller on structured text, slower (level -8); 11 (revision 6, 0.7's -8), 10
        (revision 5, 0.6's -8), 9 (revision 4, 0.5's -8), 8 (revision 3, 0.4's -8), 4 or 3
        for decoders of tzip before them). window: each position attends to itself and the window-1 positions
        before it (None, or one at least the model's context: the whole context, as
        formats 3-6 code): a shorter window is cheaper and codes a little larger (the
        middle levels, docs/levels.md); it needs format 7, which records it."""
        alone = is_alone(model)
        format = format_for(model, format, window)
        if streams is not None and not 1 <= streams <= MAX_STREAMS:
            raise ValueError(f"streams must be between 1 and {MAX_STREAMS}, not {streams}")
        if not 1 <= block_size <= MAX_BLOCK:
            raise ValueError(f"block_size must be between 1 and {MAX_BLOCK}, not {block_size}")
        _heavy()
        self.device = registry.resolve_device(device)
        self.model = self.engine = None  # the mixer alone needs neither
        if not alone:
            if model is None:  # the default, wherever on the search path it is installed
                model = registry.default_name(self.device)
            self.model = registry.load(model, self.device)
            window = window_for(self.model, format, window)
            self.engine = Engine(self.model, self.device, window=window)
        # the window the archives record (None: a format without one, the whole context)
        self.window = window if self.engine else None
        self.streams, self.block_size, self.format = streams, block_size, format
        # every speed choice (tzip/engine/plan.py): the engine's, or the mixer's alone
        self.plan = self.engine.plan if self.engine else Plan.build(str(self.device))

    def writer(self) -> Writer:
        """A new archive of this Compressor's model and format (tzip/archive.py); an
        archive of the mixer alone names no model (an empty name, a zero id)."""
        return writer_for(self.model, self.format, self.window)

    def encode(self, raws: list[bytes], progress: Progress = None) -> list[Block]:
        """The blocks of raws coded as this Compressor's format does, in one lockstep group
        (every writer codes through here: archive bytes do not depend on the writer)."""
        return codec.encode_blocks(raws, self.engine, self.streams, progress, self.format,
                                   alone=self.engine is None, mixer=self.plan.mixer)

    def compress_stream(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Compress everything readable from fin into fout; returns the bytes read. Every
        write to fout is complete or an error (output.checked: raw files, short counts)."""
        fout = checked(fout)
        w = self.writer()
        fout.write(w.begin())
        reader = Reader(fin)
        while raws := self._next_group(reader):
            for blk in self.encode(raws, progress):
                fout.write(w.add(blk))
        fout.write(w.finish())
        return w.total

    def _next_group(self, reader: Reader) -> list[bytes]:
        """The next blocks to code in lockstep: up to the engine's lockstep_blocks (one on a
        CPU), while another block would still fit the memory limit."""
        raws: list[bytes] = []
        need, limit = 0, codec.memory_limit()
        while len(raws) < (self.engine.lockstep_blocks if self.engine else 1):
            raw = reader.read(self.block_size)
            if not raw:
                break
            raws.append(raw)
            need += codec.group_memory(len(raw), self.format)
            if limit is not None and need + codec.group_memory(self.block_size, self.format) > limit:
                break
        return raws

    def compress(self, data: bytes) -> bytes:
        out = io.BytesIO()
        self.compress_stream(io.BytesIO(data), out)
        return out.getvalue()

    @property
    def backend(self) -> str:
        """This Compressor's plan in a line (what runs each stage, on which device), for -v."""
        return self.plan.describe() + ("" if self.engine else ", no model")

    @property
    def predictor(self) -> str:
        """What predicts the bytes, for -v: the model and its window, e.g. 'tzip-small,
        window 64 of 256' ("" for the mixer alone: backend says "no model")."""
        return _predictor(self.engine) if self.engine else ""


def _predictor(engine: "Engine") -> str:
    """An engine's model and window, e.g. 'tzip-small, window 64 of 256' or 'tzip-small,
    window 256' (its whole context)."""
    c = engine.cfg.context
    return f"{engine.model.name}, window {engine.window}" + (f" of {c}" if engine.window != c else "")


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

    def __init__(self, model: ModelSpec = None, *, device: str | torch.device = "auto",
                 max_output: int | None = None, max_ratio: float | None = None):
        """max_output, max_ratio: an opt-in bound on each decompress_stream call's output,
        in bytes and in bytes per archive byte (limits.OutputLimit; by default
        TZIP_MAX_OUTPUT and TZIP_MAX_RATIO), refused before the work when blocks state more."""
        _heavy()
        self.model_spec, self.device_spec = model, device
        self._engines: dict[tuple[bytes, int | None], Engine] = {}  # by (model id, window)
        self.max_output, self.max_ratio = max_output, max_ratio
        self._limit: OutputLimit | None = None  # the decompress_stream call's, while it runs
        OutputLimit(max_output, max_ratio)  # bad values are refused here
        self._by_header: dict[tuple[str, bytes, int | None], Engine] = {}
        # the mixer's implementation, for every block; each model's engine plans the rest
        self.mixer = Plan.build().mixer

    def engine_for(self, header: Header) -> Engine:
        """The engine for an archive of this header: the given model (its id checked), or
        the installed model with the header's id, over the header's window (format 7; a
        window longer than the model's context is a corrupt archive)."""
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
        try:
            window = header.check_window(m.cfg.context)
        except FormatError as exc:
            raise CorruptArchive(str(exc)) from None
        key = (m.digest, window)
        e = self._engines.get(key)
        if e is None or e.device != dev:
            e = self._engines[key] = Engine(m, dev, self.mixer, window)
        return e

    def decode_block(self, blk: Block, header: Header) -> bytes:
        """One block of an archive of this header, verified against its checksum (the
        model, if the block needs one, found as engine_for finds it, once per header)."""
        return codec.decode_block(blk, lambda: self._engine_of(header), None, mixer=self.mixer)

    def _engine_of(self, header: Header) -> Engine:
        key = (header.model_name, header.model_digest, header.window)
        if key not in self._by_header:
            self._by_header[key] = self.engine_for(header)
        return self._by_header[key]

    def decompress_stream(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Decompress a .tz stream from fin into fout; returns the bytes written.

        Archives one after another (`cat a.tz b.tz`) decode one after another, as gzip, xz
        and zstd do; anything else after an archive is an error (tzip/archive.py). Every
        block is verified against its checksum before it is written, and every write to
        fout is complete or an error (output.checked)."""
        fout = checked(fout)
        self._limit = OutputLimit(self.max_output, self.max_ratio)  # for all the members
        try:
            return sum(self._decode_member(m, fout, progress) for m in ArchiveReader(fin).members())
        finally:
            self._limit = None

    def decompress_member(self, fin: BinaryIO, fout: BinaryIO, progress: Progress = None) -> int:
        """Decompress one archive from fin, reading no byte past its end."""
        return self._decode_member(Member(fin), checked(fout), progress)

    def _decode_member(self, member: Member, fout: BinaryIO, progress: Progress) -> int:
        """The blocks of one archive decoded into fout, context-mixed model blocks in
        lockstep groups (codec.decode_blocks); returns the bytes written."""
        header = member.read_header()
        total = 0
        pending: list[Block] = []  # blocks read, not decoded yet: a lockstep group
        limit = self._limit or OutputLimit(self.max_output, self.max_ratio)

        def get_engine() -> Engine:
            return self._engine_of(header)

        def flush() -> None:
            nonlocal total
            for data in codec.decode_blocks(pending, get_engine, progress, limit, self.mixer):
                fout.write(data)
                total += len(data)
            pending.clear()

        for blk in member:
            if not codec.lockstep(blk):
                flush()
                pending.append(blk)
                flush()
                continue
            if pending and not _joins(pending, blk, get_engine()):
                flush()
            pending.append(blk)
            if len(pending) >= get_engine().lockstep_blocks:
                flush()
        flush()
        return total

    def decompress(self, blob: bytes) -> bytes:
        out = io.BytesIO()
        self.decompress_stream(io.BytesIO(blob), out)
        return out.getvalue()

    @property
    def backend(self) -> str:
        """The plans of the engines built so far (what runs each stage, on which device),
        for -v; without a model, the mixer's implementation."""
        return "; ".join(e.describe() for e in self._engines.values()) or f"{self.mixer} mixer, no model needed"

    @property
    def predictor(self) -> str:
        """The models and windows of the engines built so far, for -v ("" if none)."""
        return "; ".join(_predictor(e) for e in self._engines.values())


def compress_stream(fin: BinaryIO, fout: BinaryIO, model: ModelSpec = None, *, device="auto",
                    streams: int | None = None, block_size: int = BLOCK_SIZE, format: int | None = None,
                    window: int | None = None, progress: Progress = None) -> int:
    """Compress everything readable from fin into fout; returns the bytes read."""
    return Compressor(model, device=device, streams=streams, block_size=block_size,
                      format=format, window=window).compress_stream(fin, fout, progress)


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


def _file_job(src: Path, dst: Path, force: bool, code: Callable[[BinaryIO, BinaryIO], object]) -> None:
    """What compress_file and decompress_file share with the command line: an existing
    dst is an error unless force (FileExistsError, also when one appears while dst is
    being written), the output is published whole (tzip/output.py), and it gets src's
    permission bits and access and modification times."""
    if not force and os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "already exists (force=True overwrites it)", str(dst))
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise TzipError(f"{src}: input and output are the same file")
    with open(src, "rb") as fin:
        st = os.fstat(fin.fileno())
        atomic_write(dst, lambda f: code(fin, f), stat.S_IMODE(st.st_mode), replace=force,
                     times=(st.st_atime_ns, st.st_mtime_ns))


def compress_file(src: str | Path, dst: str | Path | None = None, model: ModelSpec = None, *,
                  force: bool = False, **kw) -> Path:
    """src -> dst (default src + '.tz'), as the tzip command writes it: atomically (every
    write checked, published only when complete), with src's permission bits and times;
    an existing dst is FileExistsError unless force. Returns dst."""
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(src.name + ".tz")
    _file_job(src, dst, force, lambda fin, f: compress_stream(fin, f, model, **kw))
    return dst


def decompress_file(src: str | Path, dst: str | Path | None = None, model: ModelSpec = None, *,
                    force: bool = False, **kw) -> Path:
    """src.tz -> dst (default src without '.tz'), written atomically after verification,
    with the archive's permission bits and times, as tzip -d; an existing dst is
    FileExistsError unless force. Returns dst."""
    src = Path(src)
    if dst is None:
        if src.suffix != ".tz":
            raise TzipError(f"{src}: unknown suffix (expected .tz); give an output name")
        dst = src.with_suffix("")
    dst = Path(dst)
    _file_job(src, dst, force, lambda fin, f: decompress_stream(fin, f, model, **kw))
    return dst
