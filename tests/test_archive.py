"""The one archive writer and reader (tzip/archive.py), and what the copies of the loop it
replaced got wrong: `-T N` refused archives one after another, TzipCompressor wrote format
5 whatever its Compressor's format. The tests that need worker processes are in
test_parallel.py."""
from __future__ import annotations

import io
import random
import zlib

import pytest

import tzip
from tzip.archive import ArchiveReader, Member, Writer, crc32_combine, follows, info
from tzip.container import (CRLF, MAGIC, MODEL_CM2, STORED, Block, Header, Trailer,
                            transform_code)
from tzip.errors import CorruptArchive


def _stored(raw: bytes) -> Block:
    return Block(STORED, 0, len(raw), zlib.crc32(raw), raw)


def _archive(parts: list[bytes], name: str = "m", version: int = 5) -> bytes:
    w = Writer(name, bytes(range(16)), version)
    return w.begin() + b"".join(w.add(_stored(p)) for p in parts) + w.finish()


def test_crc32_combine_is_the_crc32_of_the_concatenation():
    r = random.Random(0)
    for _ in range(300):
        a = r.randbytes(r.randrange(3000))
        b = r.randbytes(r.choice([0, 1, 7, r.randrange(70000)]))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_the_writer_writes_header_records_and_the_trailer_of_the_bytes():
    parts = [b"abc", b"x" * 1000, random.Random(1).randbytes(70000)]
    whole = b"".join(parts)
    want = (Header("m", bytes(range(16)), 4).pack() + b"".join(_stored(p).pack() for p in parts)
            + Trailer(len(whole), zlib.crc32(whole)).pack())
    w = Writer("m", bytes(range(16)), 4)
    got = w.begin() + w.begin() + b"".join(w.add(_stored(p)) for p in parts) + w.finish()
    assert got == want and w.total == len(whole)
    with pytest.raises(ValueError, match="finished"):
        w.add(_stored(b"late"))
    empty = Writer("m", bytes(16), 5)
    assert empty.finish() == Header("m", bytes(16), 5).pack() + Trailer(0, 0).pack()


def test_the_writer_refuses_a_block_of_another_format():
    """A format-3 archive holds no context-mixer block and no UTF-16 transform: the
    writer checks, so a writer coding for the wrong format cannot go unnoticed."""
    raw = b"hello\r\n"
    cm = Block(MODEL_CM2, CRLF, len(raw), zlib.crc32(raw), b"\0" * 4, [6])
    with pytest.raises(ValueError, match="format-3 archive cannot hold a model\\+cm2 block"):
        Writer("m", bytes(16), 3).add(cm)
    utf16 = Block(STORED, transform_code("le", False), 2, 0, b"ab")
    with pytest.raises(ValueError, match="format-3"):
        Writer("m", bytes(16), 3).add(utf16)
    Writer("m", bytes(16), 5).add(cm)  # format 5's own


def test_the_reader_reads_archives_one_after_another():
    a, b = _archive([b"one", b"two"], "a"), _archive([b"three"], "b", version=4)
    got = []
    reader = ArchiveReader(io.BytesIO(a + b))
    for m in reader.members():
        got.append((m.header.model_name, m.header.version, [blk.payload for blk in m], m.total))
    assert got == [("a", 5, [b"one", b"two"], 6), ("b", 4, [b"three"], 5)]
    assert reader.bytes_read == len(a + b)
    i = info(a + b)
    assert (i.members, i.original_size, i.compressed_size, len(i.blocks)) == (2, 11, len(a + b), 3)


@pytest.mark.parametrize("after, message", [
    (b"junk", "trailing data after the end"),
    (MAGIC[:3], "truncated archive \\(while reading header\\)"),
    (MAGIC + b"\x05", "truncated archive"),
])
def test_what_follows_an_archive_is_checked_in_one_place(after, message):
    blob = _archive([b"data"]) + after
    for read in (lambda: [list(m) for m in ArchiveReader(io.BytesIO(blob)).members()],
                 lambda: info(blob),
                 lambda: tzip.TzipFile(io.BytesIO(blob)).read()):
        with pytest.raises(CorruptArchive, match=message):
            read()


def test_empty_input_is_a_truncated_archive_unless_allowed():
    with pytest.raises(CorruptArchive, match="truncated archive"):
        list(ArchiveReader(io.BytesIO(b"")).members())
    assert list(ArchiveReader(io.BytesIO(b""), empty_ok=True).members()) == []
    assert not follows(b"") and follows(MAGIC + b"more")


def test_the_trailer_is_checked_against_the_block_records():
    """Without decoding a byte: a trailer whose total or CRC32 does not match its blocks'
    records (its own checksum intact) is refused by every reader, info included."""
    body = _archive([b"one", b"two"])
    head = body[:-len(Trailer(6, 0).pack())]
    for trailer in (Trailer(7, zlib.crc32(b"onetwo")), Trailer(6, zlib.crc32(b"twoone"))):
        with pytest.raises(CorruptArchive, match="total length or checksum mismatch"):
            info(head + trailer.pack())
        with pytest.raises(CorruptArchive, match="total length or checksum mismatch"):
            tzip.TzipDecompressor().decompress(head + trailer.pack())


def test_a_member_is_read_to_its_end_before_the_next():
    members = ArchiveReader(io.BytesIO(_archive([b"x"]) * 2)).members()
    next(members)
    with pytest.raises(RuntimeError):
        next(members)


class _Short(Exception):
    pass


class _Upto:
    """blob[pos:end], read by a reader that stops short (raises) at end."""

    def __init__(self, blob: bytes, pos: int, end: int):
        self.blob, self.pos, self.end = blob, pos, end

    def read(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise _Short
        self.pos += n
        return self.blob[self.pos - n:self.pos]


def test_member_parse_changes_nothing_until_a_record_is_whole():
    """The push-mode reader (TzipDecompressor) retries a record with more input: a short
    read leaves the member as it was."""
    from tzip.container import Reader
    blob = _archive([b"abc", b"defg"])
    m, pos, kinds = Member(), 0, []
    while not m.done:
        for end in range(pos + 1, len(blob) + 1):
            src, before = _Upto(blob, pos, end), (m.header, m.total, m.crc)
            try:
                kinds.append(type(m.parse(Reader(src))).__name__)
                break
            except _Short:
                assert (m.header, m.total, m.crc) == before
        pos = src.pos
    assert kinds == ["Header", "Block", "Block", "Trailer"] and pos == len(blob)


def test_tzip_compressor_writes_the_format_of_its_compressor(tiny_path, text):
    """TzipCompressor(compressor=c) wrote format 5 whatever c's format was."""
    data = text[:2500]
    for fmt in (3, 4):
        c = tzip.Compressor(tiny_path, device="cpu", block_size=1000, format=fmt)
        tc = tzip.TzipCompressor(compressor=c)
        blob = b"".join(tc.compress(data[i:i + 700]) for i in range(0, len(data), 700)) + tc.flush()
        assert tzip.info(blob).version == fmt
        assert blob == c.compress(data)
        tc = tzip.TzipCompressor(tiny_path, device="cpu", block_size=1000, format=fmt)
        assert tc.compress(data) + tc.flush() == blob
        assert tzip.decompress(blob, tiny_path) == data
