"""The archive loop, written once: one writer and one reader of .tz archives.

Every path that writes or reads archives goes through here, as CPython's `_compression`
serves gzip, bz2 and lzma: api's Compressor, Decompressor and info, tzfile's file objects
and incremental objects, and parallel's worker pools (local and Ray). When the loop was
written in each of them (four writers, five readers) the copies drifted apart: `-T N`
refused archives one after another, TzipCompressor wrote format 5 whatever its Compressor's
format. This module owns what they shared; the coding of a block stays in tzip/codec.py,
and the byte layout of each record in tzip/container.py (FORMAT.md).

    w = Writer(model_name, model_digest, version, window)  # no I/O: each call returns bytes
    w.begin() -> header;  w.add(block) -> record;  w.finish() -> trailer;  w.total

    for member in ArchiveReader(fin).members():          # archives one after another
        member.header                                    # read before the member is yielded
        for block in member: ...                         # up to its trailer, checked

    m = Member(); m.parse(reader)                        # one record at a time (push mode)
    follows(head)                                        # the policy for what follows a trailer
    info(blob_or_stream) -> ArchiveInfo

The trailer (total length and CRC32 of the original) is built and checked from the block
records alone: each record carries its block's length and CRC32, which crc32_combine
chains, and every decoder checks a block's bytes against its own CRC32 before handing
them on (codec.decode_block). So the trailer check needs no decoded bytes and happens in
one place, when the trailer is read, whoever decodes the blocks and in whatever order.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from .container import (DIGEST_LEN, MAGIC, METHODS, PROFILES, TRANSFORMS,
                        VERSION, Block, FormatError, Header, Reader, Trailer, read_record,
                        transform_parts)
from .errors import CorruptArchive

# ------------------------------------------------------------------------------ CRC32

_POLY = 0xEDB88320  # CRC-32 (zlib's), bit-reflected


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial (reflected bit order), as zlib's crc32.c."""
    m, p = 1 << 31, 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    p, table = 1 << 30, []  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()  # x^(2^n) modulo the polynomial


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib.crc32(a + b) from crc1 = zlib.crc32(a), crc2 = zlib.crc32(b) and len(b), in
    O(log len2) (zlib's crc32_combine, which Python's zlib does not expose)."""
    p, k = 1 << 31, 3  # x^0; len2 bytes are 8 * len2 = 2^3 * len2 bits
    while len2:
        if len2 & 1:
            p = _multmodp(_X2N[k & 31], p)
        len2 >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


# ---------------------------------------------------------------------------- writing

class Writer:
    """One archive as it is written: the header, each coded block's record in order, the
    trailer. It does no I/O: every call returns the bytes to write, so a file, a pipe or an
    incremental compressor's return value can take them. It knows its format version and
    refuses a block that version cannot hold (a block coded for another format)."""

    def __init__(self, model_name: str, model_digest: bytes, version: int = VERSION,
                 window: int | None = None):
        """window: the model's window, in a format that records one (7), else None."""
        self.header = Header(model_name, model_digest[:DIGEST_LEN], version, window)
        self.header.pack()  # a window the format cannot hold is refused here, not mid-archive
        self.total = 0  # original bytes of the blocks added
        self.crc = 0
        self._begun = self._finished = False

    @classmethod
    def for_model(cls, model, version: int = VERSION, window: int | None = None) -> "Writer":
        """A writer of archives made with this model (anything with .name and .digest)."""
        return cls(model.name, model.digest, version, window)

    @property
    def version(self) -> int:
        return self.header.version

    def begin(self) -> bytes:
        """The header, the first time; b"" after it (add and finish begin by themselves)."""
        if self._begun:
            return b""
        self._begun = True
        return self.header.pack()

    def add(self, blk: Block) -> bytes:
        """The record of one coded block (after the header, if not written yet)."""
        self._check_open()
        if blk.method not in PROFILES[self.version].methods or \
                blk.transform not in TRANSFORMS[self.version]:
            raise ValueError(f"a format-{self.version} archive cannot hold a "
                             f"{METHODS.get(blk.method, blk.method)} block with transform "
                             f"{blk.transform} (coded for another format)")
        head = self.begin()
        self.crc = crc32_combine(self.crc, blk.raw_crc, blk.raw_len)
        self.total += blk.raw_len
        return head + blk.pack()

    def finish(self) -> bytes:
        """The trailer (after the header, if not written yet): total length and CRC32."""
        self._check_open()
        head = self.begin()
        self._finished = True
        return head + Trailer(self.total, self.crc).pack()

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError("the archive is finished")


# ---------------------------------------------------------------------------- reading

class Member:
    """One archive as it is read: its header, then block records, then the trailer, which
    must match the blocks before it (their lengths summed, their CRC32s combined). Errors
    are CorruptArchive, one line.

    parse(reader) reads the next record and changes the state only once the record is
    whole, so a push-mode reader (tzfile.TzipDecompressor) can retry it with more input.
    Given a source, iterating yields the blocks up to the checked trailer."""

    def __init__(self, source: BinaryIO | None = None):
        self.header: Header | None = None
        self.trailer: Trailer | None = None
        self.total = 0  # original bytes of the blocks read
        self.crc = 0
        self._reader = Reader(source) if source is not None else None

    @property
    def done(self) -> bool:
        """The trailer has been read and checked."""
        return self.trailer is not None

    def parse(self, r: Reader) -> Header | Block | Trailer:
        """The next record: the header first, then a block or the trailer."""
        if self.done:
            raise ValueError("the archive has ended")
        try:
            if self.header is None:
                self.header = Header.read(r)
                return self.header
            rec = read_record(r, self.header.version)
        except FormatError as e:
            raise CorruptArchive(str(e)) from None
        if isinstance(rec, Trailer):
            if rec.total_len != self.total or rec.total_crc != self.crc:
                raise CorruptArchive("corrupt archive (total length or checksum mismatch)")
            self.trailer = rec
        else:
            self.crc = crc32_combine(self.crc, rec.raw_crc, rec.raw_len)
            self.total += rec.raw_len
        return rec

    def read_header(self) -> Header:
        if self.header is None:
            self.parse(self._reader)
        return self.header

    def __iter__(self) -> Iterator[Block]:
        """The blocks, in order, from the source; the trailer is checked after the last."""
        self.read_header()
        while not self.done:
            rec = self.parse(self._reader)
            if isinstance(rec, Block):
                yield rec


def follows(head: bytes) -> bool:
    """After an archive's trailer, given the bytes that follow (at least len(MAGIC) of
    them, or all there are): whether another archive follows. Archives one after another
    (`cat a.tz b.tz`, or tzip.open(..., "ab")) decode one after another, as with gzip, xz
    and zstd; anything else after an archive is an error."""
    if not head:
        return False
    if head[:len(MAGIC)] == MAGIC:
        return True
    raise CorruptArchive("truncated archive (while reading header)" if MAGIC.startswith(head)
                         else "corrupt archive (trailing data after the end)")


class CountingReader:
    """Counts the bytes read through it."""

    def __init__(self, f: BinaryIO):
        self.f, self.n = f, 0

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.n += len(b)
        return b


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


class ArchiveReader:
    """The archives in a binary stream, one after another: members() yields each as a
    Member whose header is read (a bad first header fails before any block is read), and
    after each trailer applies `follows`. Each member must be read to its end before the
    next is yielded. empty_ok: an empty stream holds no archive (tzip.open reads it as
    empty, as lzma.open does) rather than a truncated one (decompress, info, -T N)."""

    def __init__(self, fin: BinaryIO, *, empty_ok: bool = False):
        self._counted = CountingReader(fin)
        self._f = _Prepend(self._counted)
        self.empty_ok = empty_ok
        self.members_read = 0

    @property
    def bytes_read(self) -> int:
        """Bytes of the stream consumed so far (not counting those looked at and put back)."""
        return self._counted.n - len(self._f.head)

    def _peek(self) -> bytes:
        head = Reader(self._f).read(len(MAGIC))
        self._f.push(head)
        return head

    def members(self) -> Iterator[Member]:
        while True:
            if self.members_read or self.empty_ok:
                head = self._peek()
                if not head and not self.members_read:
                    return  # an empty stream, where that is allowed
                if self.members_read and not follows(head):
                    return
            m = Member(self._f)
            m.read_header()
            self.members_read += 1
            yield m
            if not m.done:
                raise RuntimeError("a member must be read to its end before the next")


# ------------------------------------------------------------------------------- info

@dataclass
class BlockInfo:
    method: str  # "stored", "lzma", "model" (format 3), "model+cm" (4), "model+cm2" (5-7), "cm2"
    # (the mixer alone: 6, 7), "model+cm3" (8), "model+cm4" (9), "model+cm5" (10), "model+cm6"
    # (11) or "model+cm7" (12)
    crlf: bool  # coded with LF line endings
    original: int
    coded: int
    streams: int
    utf16: str | None = None  # "le" or "be": coded as UTF-8

    @classmethod
    def of(cls, blk: Block) -> "BlockInfo":
        utf16, crlf = transform_parts(blk.transform)
        return cls(METHODS[blk.method], crlf, blk.raw_len, len(blk.payload), len(blk.streams),
                   utf16)


@dataclass
class ArchiveInfo:
    model_name: str
    model_id: str
    version: int = VERSION
    original_size: int = 0
    compressed_size: int = 0
    blocks: list[BlockInfo] = field(default_factory=list)
    members: int = 1  # archives one after another (cat a.tz b.tz)
    window: int | None = None  # the model's window, in a format that records one (7)

    @property
    def bpb(self) -> float:
        return 8 * self.compressed_size / self.original_size if self.original_size else 0.0


def info(src: "bytes | BinaryIO") -> ArchiveInfo:
    """Sizes, model and block layout of an archive, without decoding it; each trailer is
    checked against its blocks' records. Archives one after another are summed (`members`
    counts them; the model is the first one's)."""
    reader = ArchiveReader(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    res = None
    for m in reader.members():
        h = m.header
        if res is None:
            res = ArchiveInfo(h.model_name, h.model_digest.hex(), h.version, members=0, window=h.window)
        res.members += 1
        res.blocks.extend(BlockInfo.of(blk) for blk in m)
        res.original_size += m.total
    res.compressed_size = reader.bytes_read
    return res
