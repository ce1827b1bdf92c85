"""File objects and incremental (de)compressors, shaped after the lzma module:

    with tzip.open("notes.txt.tz", "wt", encoding="utf-8") as f:   # rb, wb, ab, xb, rt, wt...
        f.write("hello\\n")
    with tzip.open("notes.txt.tz", "rt", encoding="utf-8") as f:
        text = f.read()

    c = tzip.TzipCompressor()             # as lzma.LZMACompressor
    out = c.compress(chunk) + ... + c.flush()
    d = tzip.TzipDecompressor()           # as lzma.LZMADecompressor
    data = d.decompress(out)              # d.eof, d.unused_data, d.needs_input

The one-shot Compressor/Decompressor objects of tzip/api.py keep their meaning (their
compress(data) returns a whole archive); the incremental ones are these.

Writing buffers input and codes it a block (block_size bytes) at a time, so output
appears per block and on close; reading decodes a block at a time as it is read. Archives
one after another are read one after another, as gzip and xz files are.
"""
from __future__ import annotations

import builtins
import io
import os

from . import api, output
from .archive import Member, follows
from .container import MAGIC, VERSION, Block, Reader
from .errors import CorruptArchive

_READ_CHUNK = 1 << 16


class TzipCompressor:
    """Incremental compression into one archive: compress(data) returns what is ready
    (the header and whole blocks), flush() the rest and the trailer. The archive is the
    one its Compressor writes (model, streams, block size, format and window), byte for byte."""

    def __init__(self, model: api.ModelSpec = None, *, device="auto", streams: int | None = None,
                 block_size: int = api.BLOCK_SIZE, format: int | None = None,
                 compressor: api.Compressor | None = None, window: int | None = None):
        self._c = compressor or api.Compressor(model, device=device, streams=streams,
                                               block_size=block_size, format=format, window=window)
        self._w = self._c.writer()
        self._buf = bytearray()
        self._finished = False

    def _block(self, raw: bytes) -> bytes:
        return self._w.add(self._c.encode([raw])[0])

    def compress(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("compressor has been flushed")
        self._buf += data
        out = [self._w.begin()]
        bs = self._c.block_size
        while len(self._buf) >= bs:
            out.append(self._block(bytes(self._buf[:bs])))
            del self._buf[:bs]
        return b"".join(out)

    def flush(self) -> bytes:
        if self._finished:
            raise ValueError("repeated call to flush()")
        out = [self._w.begin()]
        if self._buf:
            out.append(self._block(bytes(self._buf)))
            self._buf.clear()
        out.append(self._w.finish())
        self._finished = True
        return b"".join(out)


class _WantMore(Exception):
    """The buffered input ends inside a record."""


class _Source:
    """Reads a bytearray from a position; a short read means more input is needed."""

    def __init__(self, buf: bytearray, pos: int):
        self.buf, self.pos, self.need = buf, pos, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.buf) if n is None or n < 0 else self.pos + n
        if end > len(self.buf):
            self.need = end
            raise _WantMore
        b = bytes(self.buf[self.pos:end])
        self.pos = end
        return b


class TzipDecompressor:
    """Incremental decompression of one archive, as lzma.LZMADecompressor: decompress(data,
    max_length=-1) returns the bytes decoded so far (whole blocks, each verified); after
    the archive's end `eof` is True and `unused_data` holds whatever followed it."""

    def __init__(self, model: api.ModelSpec = None, *, device="auto",
                 decompressor: api.Decompressor | None = None):
        self._d = decompressor or api.Decompressor(model, device=device)
        self._in = bytearray()
        self._need = 0  # decode nothing until this much input is buffered
        self._out = bytearray()
        self._member = Member()  # the archive's records read so far (tzip/archive.py)
        self.eof = False
        self.unused_data = b""

    @property
    def needs_input(self) -> bool:
        return not self.eof and not self._out and len(self._in) < max(self._need, 1)

    def _step(self) -> bool:
        """Decode the next record if all of it is buffered; False when more input is needed."""
        if len(self._in) < self._need:
            return False
        src = _Source(self._in, 0)
        try:
            rec = self._member.parse(Reader(src))
        except _WantMore:
            self._need = src.need
            return False
        if isinstance(rec, Block):
            self._out += self._d.decode_block(rec, self._member.header)
        del self._in[:src.pos]
        self._need = 0
        if self._member.done:
            self.eof = True
            self.unused_data = bytes(self._in)
            self._in.clear()
        return True

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self.eof:
            if data:
                self.unused_data += bytes(data)
            raise EOFError("already at end of archive")
        self._in += data
        while not self.eof and (max_length < 0 or len(self._out) < max_length) and self._step():
            pass
        if max_length < 0:
            out, self._out = bytes(self._out), bytearray()
        else:
            out = bytes(self._out[:max_length])
            del self._out[:max_length]
        return out


class _DecodingRaw(io.RawIOBase):
    """The decoded bytes of the archives in a binary file, one after another."""

    def __init__(self, fp, decompressor: api.Decompressor):
        self._fp, self._d = fp, decompressor
        self._dec = TzipDecompressor(decompressor=decompressor)
        self._pending = b""  # decoded, not yet returned
        self._done = False
        self._seen = False  # any input at all

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._pending and not self._done:
            self._fill()
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> None:
        dec = self._dec
        if dec.eof:
            rest = dec.unused_data
            if len(rest) < len(MAGIC):
                rest += self._fp.read(len(MAGIC) - len(rest))
            if not follows(rest):
                self._done = True
                return
            self._dec = dec = TzipDecompressor(decompressor=self._d)
            self._pending = dec.decompress(rest)
            return
        chunk = self._fp.read(_READ_CHUNK) if dec.needs_input else b""
        if dec.needs_input and not chunk:
            if not self._seen:  # an empty file reads as empty, as with lzma.open
                self._done = True
                return
            raise CorruptArchive("truncated archive (it ends before its trailer)")
        self._seen = self._seen or bool(chunk)
        self._pending = dec.decompress(chunk)


class TzipFile(io.BufferedIOBase):
    """A .tz file opened for reading ("r", "rb") or writing ("w", "wb", "x", "xb", "a", "ab":
    appending adds a second archive after the first, which readers decode in turn).
    filename is a path or a binary file object; model, device, streams, block_size and
    window are as for tzip.Compressor / tzip.Decompressor.

    In read mode seek works anywhere, as gzip's and lzma's files do, by decoding again:
    forward it decodes and drops the bytes between; backward it goes back to the start of
    the file (which must then be seekable) and decodes from there, so a backward seek costs
    as much as reading up to the new position. Writing is sequential (seek raises there,
    as with lzma.LZMAFile). `mode` is "rb", "wb", "xb" or "ab"."""

    def __init__(self, filename, mode: str = "r", *, model: api.ModelSpec = None, device="auto",
                 streams: int | None = None, block_size: int = api.BLOCK_SIZE,
                 window: int | None = None):
        mode = mode.replace("b", "")
        if mode not in ("r", "w", "x", "a"):
            raise ValueError(f"invalid mode: {mode!r}")
        self._mode = mode
        if isinstance(filename, (str, bytes, os.PathLike)):
            self._fp = builtins.open(filename, mode + "b")
            self._close_fp = True
            self.name = os.fspath(filename)
        elif hasattr(filename, "read" if mode == "r" else "write"):
            self._fp, self._close_fp = filename, False
            self.name = getattr(filename, "name", "")
        else:
            raise TypeError("filename must be a str, bytes, os.PathLike or file object")
        try:
            if mode == "r":
                try:  # where a backward seek starts decoding again
                    self._start = self._fp.tell() if self._fp.seekable() else None
                except (OSError, AttributeError, ValueError):
                    self._start = None
                self._decompressor = api.Decompressor(model, device=device)
                self._reader = io.BufferedReader(_DecodingRaw(self._fp, self._decompressor),
                                                 _READ_CHUNK)
            else:
                self._comp = TzipCompressor(model, device=device, streams=streams,
                                            block_size=block_size, window=window)
                # every write complete or an error, also into a raw file or one that
                # returns short counts
                named = isinstance(self.name, (str, bytes)) and self.name
                self._out = output.checked(self._fp, os.fsdecode(self.name) if named else None)
        except BaseException:
            if self._close_fp:
                self._fp.close()
            raise
        self._pos = 0

    # --- state
    def readable(self) -> bool:
        self._check_open()
        return self._mode == "r"

    def writable(self) -> bool:
        self._check_open()
        return self._mode != "r"

    @property
    def mode(self) -> str:
        return self._mode + "b"

    def seekable(self) -> bool:
        self._check_open()
        return self._mode == "r" and self._start is not None

    def _rewind(self) -> None:
        """Back to the first byte: decode the file again from its start."""
        if self._start is None:
            raise io.UnsupportedOperation("the underlying file is not seekable: "
                                          "cannot seek backward")
        self._fp.seek(self._start)
        self._reader = io.BufferedReader(_DecodingRaw(self._fp, self._decompressor), _READ_CHUNK)
        self._pos = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to offset (from the start, the current position or the end, as whence
        says) by decoding: see the class's docstring for the cost. Returns the new position."""
        self._check_open()
        if self._mode != "r":
            raise io.UnsupportedOperation("seek is only supported in read mode")
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            while self.read(_READ_CHUNK):  # the end is known only by decoding to it
                pass
            target = self._pos + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        target = max(target, 0)
        if target < self._pos:
            self._rewind()
        while self._pos < target:
            if not self.read(min(_READ_CHUNK, target - self._pos)):
                break  # past the end: stay at the end, as gzip and lzma files do
        return self._pos

    def fileno(self) -> int:
        self._check_open()
        return self._fp.fileno()

    @property
    def closed(self) -> bool:
        return self._fp is None

    def _check_open(self) -> None:
        if self._fp is None:
            raise ValueError("I/O operation on closed file")

    def _check(self, reading: bool) -> None:
        self._check_open()
        if reading != (self._mode == "r"):
            raise io.UnsupportedOperation("not open for " + ("reading" if reading else "writing"))

    def close(self) -> None:
        if self._fp is None:
            return
        try:
            if self._mode == "r":
                self._reader.close()
            else:
                self._out.write(self._comp.flush())
        finally:
            try:
                if self._close_fp:
                    self._fp.close()
            finally:
                self._fp = None
                super().close()

    def tell(self) -> int:
        self._check_open()
        return self._pos

    # --- reading
    def read(self, size: int | None = -1) -> bytes:
        self._check(True)
        b = self._reader.read(-1 if size is None else size)
        self._pos += len(b)
        return b

    def read1(self, size: int = -1) -> bytes:
        self._check(True)
        b = self._reader.read1(size if size and size > 0 else _READ_CHUNK)
        self._pos += len(b)
        return b

    def readinto(self, b) -> int:
        self._check(True)
        n = self._reader.readinto(b)
        self._pos += n
        return n

    def peek(self, size: int = 0) -> bytes:
        self._check(True)
        return self._reader.peek(size)

    def readline(self, size: int | None = -1) -> bytes:
        self._check(True)
        b = self._reader.readline(-1 if size is None else size)
        self._pos += len(b)
        return b

    # --- writing
    def write(self, data) -> int:
        self._check(False)
        data = memoryview(data).cast("B")
        out = self._comp.compress(bytes(data))
        if out:
            self._out.write(out)
        self._pos += len(data)
        return len(data)


def open(filename, mode: str = "rb", *, model: api.ModelSpec = None, device="auto",
         streams: int | None = None, block_size: int = api.BLOCK_SIZE, encoding: str | None = None,
         errors: str | None = None, newline: str | None = None, window: int | None = None):
    """A .tz file as a file object, as lzma.open and gzip.open give: binary modes "rb",
    "wb", "xb", "ab" (a TzipFile) and text modes "rt", "wt", "xt", "at" (an
    io.TextIOWrapper over one, with encoding, errors and newline)."""
    if "t" in mode:
        if "b" in mode:
            raise ValueError(f"invalid mode: {mode!r}")
    else:
        if encoding is not None:
            raise ValueError("argument 'encoding' not supported in binary mode")
        if errors is not None:
            raise ValueError("argument 'errors' not supported in binary mode")
        if newline is not None:
            raise ValueError("argument 'newline' not supported in binary mode")
    binary = TzipFile(filename, mode.replace("t", ""), model=model, device=device, streams=streams,
                      block_size=block_size, window=window)
    if "t" in mode:
        return io.TextIOWrapper(binary, io.text_encoding(encoding), errors, newline)
    return binary
