"""The context mixer alone (format 6's method 5, the fastest level): the compiled mixer
codes exactly what the reference does, every kind of block round-trips, and hostile
payloads are refused, not decoded into something else."""
from __future__ import annotations

import hashlib
import io
import os
import zlib

import pytest

from tzip import codec
from tzip.cm import alone
from tzip.container import CM_ALONE, Block, Reader, read_record
from tzip.errors import CorruptArchive

TEXTS = {
    "empty-ish": b"a",
    "prose": b"It was the best of times, it was the worst of times.\n" * 40,
    "code": b"for (int i = 0; i < n; i++) {\n    total += v[i];\n}\n" * 30,
    "binary-ish": bytes(range(256)) * 3,
}


def test_prime_is_the_one_the_format_names():
    assert hashlib.sha256(alone.prime()).hexdigest() == alone.PRIME_SHA256
    assert len(alone.prime()) == 15571


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_compiled_payload_is_the_reference_payload(name):
    data = TEXTS[name]
    ref = alone.encode(data, implementation="reference")
    assert alone.encode(data, implementation="compiled") == ref
    assert alone.decode(ref, len(data), implementation="reference") == data
    assert alone.decode(ref, len(data), implementation="compiled") == data


def test_blocks_longer_than_one_call_round_trip():
    data = os.urandom(3000).hex().encode() + b"the end\n" * 700  # > alone.STEPS bytes
    assert len(data) > 2 * alone.STEPS
    assert alone.decode(alone.encode(data), len(data)) == data


def _round_trip(raw: bytes) -> Block:
    blk = codec.encode_blocks([raw], None, None, None, 6, alone=True)[0]
    back = read_record(Reader(io.BytesIO(blk.pack())), 6)
    assert codec.decode_block(back, lambda: None, None) == raw
    return blk


@pytest.mark.parametrize("raw", [
    b"", b"x", b"line one\r\nline two\r\n" * 200,
    ("吾輩は猫である。名前はまだ無い。\n" * 300).encode("utf-16-le"),
    ("\ufeffGröße und Maße\r\n" * 200).encode("utf-16-be"),
    os.urandom(5000),
], ids=["empty", "one-byte", "crlf", "utf16le-cjk", "utf16be-bom-crlf", "random"])
def test_every_kind_of_block_round_trips(raw):
    _round_trip(raw)


def test_text_is_coded_by_the_mixer_alone():
    blk = _round_trip(TEXTS["prose"] * 5)
    assert blk.method == CM_ALONE and blk.streams == [len(TEXTS["prose"] * 5)]
    assert len(blk.payload) < len(TEXTS["prose"])


def _alone_block(data: bytes) -> Block:
    payload = alone.encode(data)
    return Block(CM_ALONE, 0, len(data), zlib.crc32(data), payload, [len(data)])


@pytest.mark.parametrize("damage", ["truncated", "extra-byte", "flipped", "two-streams", "longer"])
def test_hostile_blocks_are_refused(damage):
    data = TEXTS["prose"]
    blk = _alone_block(data)
    if damage == "truncated":
        blk.payload = blk.payload[:len(blk.payload) // 2]
    elif damage == "extra-byte":
        blk.payload += b"\x00"
    elif damage == "flipped":
        p = bytearray(blk.payload)
        p[len(p) // 2] ^= 0x10
        blk.payload = bytes(p)
    elif damage == "two-streams":
        half = len(data) // 2
        blk.streams = [len(data) - half, half]
    elif damage == "longer":
        blk.streams, blk.raw_len = [len(data) * 2], len(data) * 2
    with pytest.raises(CorruptArchive):
        codec.decode_block(blk, lambda: None, None)


def test_format_5_readers_refuse_the_method():
    blk = _alone_block(TEXTS["prose"])
    from tzip.container import FormatError
    with pytest.raises(FormatError, match="upgrade tzip"):
        read_record(Reader(io.BytesIO(blk.pack())), 5)


# ---- the level as users meet it: tzip.compress(data, "none"), tzip -1 ---------------------
HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "bench", "sample", "gettysburg.txt")
PINNED_F6 = "57662303cc8c0ad6042a3e7ae2aab1f0dd609d38b79aefb74174ce0f4e99e0b4"


def test_format_6_archive_is_pinned_and_decodes():
    """The mixer alone's archives decode the same way forever (tests/data keeps one)."""
    import tzip
    data = open(SAMPLE, "rb").read()
    blob = tzip.compress(data, "none")
    assert hashlib.sha256(blob).hexdigest() == PINNED_F6
    kept = open(os.path.join(HERE, "data", "gettysburg.none.format6.tz"), "rb").read()
    assert kept == blob
    info = tzip.info(blob)
    assert info.version == 6 and info.model_name == "" and [b.method for b in info.blocks] == ["cm2"]
    assert tzip.decompress(kept) == data


def test_level_1_needs_format_6():
    import tzip
    with pytest.raises(ValueError, match="needs format 6"):
        tzip.Compressor("none", format=5)


def test_writers_agree_and_members_concatenate(tmp_path):
    import tzip
    data = TEXTS["prose"] * 3
    one = tzip.compress(data, "none", block_size=1000)
    assert len(tzip.info(one).blocks) == -(-len(data) // 1000)
    with tzip.open(tmp_path / "a.tz", "wb", model="none", block_size=1000) as f:
        f.write(data)
    assert (tmp_path / "a.tz").read_bytes() == one
    assert tzip.decompress(one + tzip.compress(b"second\n", "none")) == data + b"second\n"
