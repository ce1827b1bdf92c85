"""The .tz container: header, blocks, trailer. See FORMAT.md for the byte layout; the loop
over these records (writing an archive, reading archives one after another) is
tzip/archive.py.

Everything that can be checked is checked: each header and block header carries a CRC32
of its own bytes, each block the CRC32 of its original bytes, and the trailer the total
length and CRC32 of the whole original.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import LimitExceeded
from .transform import coded_length_range

MAGIC = b"\x89TZP"
VERSION = 5  # what this tzip writes by default: 5's model blocks use the context mixer's revision 2
DIGEST_LEN = 16
# Most streams a model block may have: decoding holds a key/value cache per stream, so
# a corrupt or hostile count must not make the decoder allocate without bound.
MAX_STREAMS = 4096
MAX_BLOCK = 1 << 30  # longest original block: decoders size arrays by the stated length
READ_CHUNK = 1 << 20  # a long field is read in pieces, so memory follows the bytes present

STORED, LZMA, MODEL, MODEL_CM, MODEL_CM2, CM_ALONE, MODEL_CM3, MODEL_CM4, MODEL_CM5, MODEL_CM6, MODEL_CM7 = range(11)
METHODS = {STORED: "stored", LZMA: "lzma", MODEL: "model", MODEL_CM: "model+cm", MODEL_CM2: "model+cm2",
           CM_ALONE: "cm2", MODEL_CM3: "model+cm3", MODEL_CM4: "model+cm4",
           MODEL_CM5: "model+cm5", MODEL_CM6: "model+cm6", MODEL_CM7: "model+cm7"}
MODEL_METHODS = (MODEL, MODEL_CM, MODEL_CM2, MODEL_CM3, MODEL_CM4, MODEL_CM5, MODEL_CM6,
                 MODEL_CM7)  # the methods that need the archive's model
STREAM_METHODS = MODEL_METHODS + (CM_ALONE,)  # the methods whose block header lists streams
# The transform byte: bit 0, CRLF -> LF; bits 1-2, UTF-16 -> UTF-8 (1 little-endian, 2
# big-endian), applied first (tzip/transform.py). Version 3 knows 0 and 1 only.
NO_TRANSFORM, CRLF = 0, 1
UTF16_SHIFT = 1
UTF16_KINDS = {1: "le", 2: "be"}
_ALL_TRANSFORMS = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Profile:
    """Everything that depends on a format version, in one place: what its archives may
    hold (a reader accepts nothing else) and how tzip writes them (tzip/codec.py reads
    nothing version-specific from anywhere else)."""
    methods: tuple[int, ...]  # block methods
    transforms: tuple[int, ...]  # transform bytes
    model_method: int  # the method of its transformer's blocks
    revision: int | None  # the context mixer's revision of model_method (None: linear mixing, tzip/legacy)
    # archive: the most streams codec's split_streams picks by itself (a decoder reads any
    # count). Every cut hides bytes from the adaptive models (those of the streams before
    # it, past the current step): format 5's 16 against 128 saved 1.2-4.2% on the
    # structured group's larger files; formats 8 to 11 (level -8) trade decoding speed for
    # ratio at 4, format 12 at 2 (docs/levels.md).
    max_streams: int
    alone_revision: int | None = None  # the context mixer's revision of its CM_ALONE blocks
    # archive: its header carries the window its model blocks were coded with (each
    # position attends to itself and the window-1 before it; the model's context if absent)
    windowed: bool = False
    # archive: the most streams split_streams gives a block too short for max_streams
    # streams of 16 contexts (streams of at least 2 contexts): a small file then decodes in
    # fewer steps, for a larger archive; formats 8 to 12 (level -8) take the ratio (docs/levels.md)
    small_streams: int = 8

    @property
    def utf16(self) -> bool:
        """Whether its blocks may be converted from UTF-16 (else CRLF -> LF is the only transform)."""
        return any(t >> UTF16_SHIFT for t in self.transforms)


# 3: model blocks mixed linearly (tzip/legacy); 4: context mixer revision 1; 5: revision 2;
# 6: 5's blocks and the context mixer alone (tzip/cm/alone.py), the fastest level;
# 7: 6's methods, the model over a window shorter than its context (the middle levels);
# 8: 5's, with the context mixer's revision 3 (structure contexts, two more APMs); at
#    most 4 streams a block, none shorter than 16 contexts (level -8 of 0.4);
# 9: 8's, with revision 4 (match lookups by 12 and 4 bytes, recovery after a wrong guess, an
#    indirect and a line-head context; level -8 of 0.5);
# 10: 9's, with revision 5 (each context's run, mixer B's sets by the order contexts seen;
#    level -8 of 0.6);
# 11: 10's, with revision 6 (two shape contexts, mixers by the place in the record and by
#    the shape, a falling learning rate; level -8 of 0.7);
# 12: 11's, with revision 7 (word3 and shape_word contexts, mixer A's sets by the previous
#    byte's class, each weight set's own learning boost); at most 2 streams a block (level -8)
PROFILES = {3: Profile((STORED, LZMA, MODEL), (0, 1), MODEL, None, 128),
            4: Profile((STORED, LZMA, MODEL_CM), _ALL_TRANSFORMS, MODEL_CM, 1, 128),
            5: Profile((STORED, LZMA, MODEL_CM2), _ALL_TRANSFORMS, MODEL_CM2, 2, 16),
            6: Profile((STORED, LZMA, MODEL_CM2, CM_ALONE), _ALL_TRANSFORMS, MODEL_CM2, 2, 16, 2),
            7: Profile((STORED, LZMA, MODEL_CM2, CM_ALONE), _ALL_TRANSFORMS, MODEL_CM2, 2, 16, 2, True),
            8: Profile((STORED, LZMA, MODEL_CM3), _ALL_TRANSFORMS, MODEL_CM3, 3, 4, small_streams=1),
            9: Profile((STORED, LZMA, MODEL_CM4), _ALL_TRANSFORMS, MODEL_CM4, 4, 4, small_streams=1),
            10: Profile((STORED, LZMA, MODEL_CM5), _ALL_TRANSFORMS, MODEL_CM5, 5, 4, small_streams=1),
            11: Profile((STORED, LZMA, MODEL_CM6), _ALL_TRANSFORMS, MODEL_CM6, 6, 4, small_streams=1),
            12: Profile((STORED, LZMA, MODEL_CM7), _ALL_TRANSFORMS, MODEL_CM7, 7, 2, small_streams=1)}
READABLE = tuple(PROFILES)
ALONE_VERSION = 6  # the version of archives coded by the mixer alone
WINDOW_VERSION = 7  # the version of archives coded with a window
CM3_VERSION = 8  # the version of archives coded with the context mixer's revision 3
CM4_VERSION = 9  # and with its revision 4 (level -8 of 0.5)
CM5_VERSION = 10  # and with its revision 5 (level -8 of 0.6)
CM6_VERSION = 11  # and with its revision 6 (level -8 of 0.7)
CM7_VERSION = 12  # and with its revision 7 (level -8 from 0.8.0)
MAX_WINDOW = 1 << 16  # no header's window is larger (a model's context is checked when it is known)
# the model method of each format version (a version's blocks are stored, LZMA or this)
MODEL_METHOD = {v: p.model_method for v, p in PROFILES.items()}
TRANSFORMS = {v: p.transforms for v, p in PROFILES.items()}
# the context mixer's revision of each model method that uses it (a method codes with one
# revision in every version that has it: tests/test_codec.py checks), and of CM_ALONE blocks
CM_REVISION = {p.model_method: p.revision for p in PROFILES.values() if p.revision is not None}
ALONE_REVISION = PROFILES[ALONE_VERSION].alone_revision
TAG_BLOCK, TAG_END = 1, 0


class FormatError(ValueError):
    """The input is not a valid .tz archive (wrong magic, corrupt, truncated...)."""


def put_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Reader:
    """Reads fields from a binary stream, turning short reads into FormatError."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.seen = bytearray()  # bytes of the record being read, for its CRC

    def read(self, n: int) -> bytes:
        """Up to n bytes; fewer only at the end of input (pipes may return short reads).
        Read in pieces of READ_CHUNK: a length from a corrupt header costs no memory beyond
        the bytes that are really there."""
        parts, got = [], 0
        while got < n:
            b = self.f.read(min(n - got, READ_CHUNK))
            if not b:
                break
            parts.append(b)
            got += len(b)
        return b"".join(parts)

    def take(self, n: int, what: str) -> bytes:
        b = self.read(n)
        if len(b) != n:
            raise FormatError(f"truncated archive (while reading {what})")
        self.seen += b
        return b

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def varint(self, what: str) -> int:
        n = shift = 0
        while True:
            b = self.u8(what)
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 63:
                raise FormatError(f"corrupt archive (bad number in {what})")

    def check_crc(self, what: str) -> None:
        body = bytes(self.seen)
        stored = self.u32(what + " checksum")
        if zlib.crc32(body) != stored:
            raise FormatError(f"corrupt archive ({what} checksum mismatch)")
        self.seen = bytearray()


def transform_code(utf16: str | None, crlf: bool) -> int:
    """The transform byte for a block converted from UTF-16 of this kind (or not), then
    CRLF -> LF (or not)."""
    kind = {v: k for k, v in UTF16_KINDS.items()}[utf16] if utf16 else 0
    return kind << UTF16_SHIFT | int(crlf)


def transform_parts(code: int) -> tuple[str | None, bool]:
    """(UTF-16 kind or None, CRLF) of a transform byte."""
    return UTF16_KINDS.get(code >> UTF16_SHIFT), bool(code & CRLF)


@dataclass
class Header:
    """model_name, model_digest: the model's; window: in a version whose profile is
    `windowed` (7), the positions each position attended to (1 to the model's context;
    checked against it when the model is known: check_window), else None."""
    model_name: str
    model_digest: bytes
    version: int = VERSION
    window: int | None = None

    def pack(self) -> bytes:
        name = self.model_name.encode()[:255]
        body = MAGIC + bytes([self.version, len(name)]) + name + self.model_digest
        if PROFILES[self.version].windowed:
            if self.window is None or not 1 <= self.window <= MAX_WINDOW:
                raise ValueError(f"a format-{self.version} header needs a window of 1 to {MAX_WINDOW}, "
                                 f"not {self.window}")
            body += put_varint(self.window)
        elif self.window is not None:
            raise ValueError(f"a format-{self.version} header has no window")
        return body + struct.pack("<I", zlib.crc32(body))

    def check_window(self, context: int) -> int | None:
        """The header's window for a model of this context, or None (the whole context);
        FormatError for one larger than the context (no encoder writes it)."""
        if self.window is not None and self.window > context:
            raise FormatError(f"corrupt archive (window {self.window} is larger than the "
                              f"model's context, {context})")
        return self.window

    @classmethod
    def read(cls, r: Reader) -> "Header":
        magic = r.read(len(MAGIC))
        if magic != MAGIC:
            if len(magic) < len(MAGIC) and MAGIC.startswith(magic):
                raise FormatError("truncated archive (while reading header)")
            raise FormatError("not a tzip archive (bad magic)")
        r.seen += magic
        version = r.u8("header")
        if version not in READABLE:
            raise FormatError(f"unsupported archive format version {version} (this tzip reads "
                              f"versions {', '.join(map(str, READABLE))}); upgrade tzip")
        name = r.take(r.u8("header"), "header").decode("utf-8", "replace")
        digest = r.take(DIGEST_LEN, "header")
        window = r.varint("header") if PROFILES[version].windowed else None
        r.check_crc("header")
        if window is not None and not 1 <= window <= MAX_WINDOW:
            raise FormatError(f"corrupt archive (bad window {window})")
        return cls(name, digest, version, window)


@dataclass
class Block:
    method: int
    transform: int
    raw_len: int
    raw_crc: int
    payload: bytes
    streams: list[int] = field(default_factory=list)

    def pack(self) -> bytes:
        body = bytes([TAG_BLOCK, self.method, self.transform]) + put_varint(self.raw_len) \
            + put_varint(len(self.payload)) + struct.pack("<I", self.raw_crc)
        if self.method in STREAM_METHODS:
            if not 0 < len(self.streams) <= MAX_STREAMS:
                raise ValueError(f"a model block has 1 to {MAX_STREAMS} streams, not {len(self.streams)}")
            body += put_varint(len(self.streams)) + b"".join(put_varint(n) for n in self.streams)
        return body + struct.pack("<I", zlib.crc32(body)) + self.payload


@dataclass
class Trailer:
    total_len: int
    total_crc: int

    def pack(self) -> bytes:
        body = bytes([TAG_END]) + put_varint(self.total_len) + struct.pack("<I", self.total_crc)
        return body + struct.pack("<I", zlib.crc32(body))


def read_record(r: Reader, version: int, max_payload: int = MAX_BLOCK) -> Block | Trailer:
    """The next block, or the trailer, of an archive of this format version. Every length
    is checked against what the encoder can write before anything is read or sized by it:
    a payload is never longer than its block (the encoder stores a block that coding does
    not make smaller), model streams are 1 to MAX_STREAMS, at most one per byte, and sum to
    at most the transformed block's length (the block's, or 3/2 of it for UTF-16 text,
    whose UTF-8 may be longer)."""
    tag = r.u8("block header")
    if tag == TAG_END:
        total = r.varint("trailer")
        crc = r.u32("trailer")
        r.check_crc("trailer")
        return Trailer(total, crc)
    if tag != TAG_BLOCK:
        raise FormatError("corrupt archive (bad block tag)")
    method, transform = r.u8("block header"), r.u8("block header")
    raw_len, n_payload = r.varint("block header"), r.varint("block header")
    raw_crc = r.u32("block header")
    if raw_len > MAX_BLOCK:
        raise FormatError("corrupt archive (bad block length)")
    streams: list[int] = []
    if method in STREAM_METHODS:
        n = r.varint("block header")
        if not 1 <= n <= min(raw_len, MAX_STREAMS):
            raise FormatError("corrupt archive (bad stream count)")
        streams = [r.varint("block header") for _ in range(n)]
    r.check_crc("block header")
    if method not in PROFILES[version].methods or transform not in TRANSFORMS[version]:
        raise FormatError(f"unsupported block method {method}/{transform}; upgrade tzip")
    longest = coded_length_range(raw_len, bool(transform >> UTF16_SHIFT), bool(transform & CRLF))[1]
    if sum(streams) > longest or n_payload > min(raw_len, max_payload):
        raise FormatError("corrupt archive (bad block lengths)")
    r.seen = bytearray()
    try:
        payload = r.read(n_payload)  # not kept in r.seen: no CRC covers it
    except MemoryError:
        raise LimitExceeded(f"not enough memory to read a block payload of {n_payload} bytes") from None
    if len(payload) != n_payload:
        raise FormatError("truncated archive (while reading block payload)")
    return Block(method, transform, raw_len, raw_crc, payload, streams)
