"""Archives tzip writes decode (issue 29): UTF-16 blocks whose UTF-8 is longer than the
block, and stored or LZMA blocks decoded back before they are accepted.

tests/data/ja16*.tz were written by the tzip of ae02ea1, whose decoder refused them
(it capped an LZMA block's output at the block's length, shorter than its UTF-8): they
must decode forever."""
from __future__ import annotations

import hashlib
import lzma
import random
import zlib
from pathlib import Path

import pytest

import tzip
from tzip import codec, transform
from tzip.container import LZMA, STORED, Block, transform_parts

HERE = Path(__file__).resolve().parent
LINE = "吾輩は猫である。名前はまだ無い。\n"
# name: (original, sha256 of the archive as ae02ea1 wrote it with tzip-small)
PINNED = {
    "ja16le.format5": ((LINE * 4000).encode("utf-16-le"),
                       "f88304cd7b8a60361659647bdd9da7c988aed6a3a95bf85a6b6684e545f3e18e"),
    "ja16be-bom-crlf.format4": (("\ufeff" + LINE.replace("\n", "\r\n") * 4000).encode("utf-16-be"),
                                "5447db0ae55667c2a08e106d313747be0ae1964eabeda13d223918a632b6191b"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_utf16_lzma_archives_of_ae02ea1_decode(name):
    """LZMA blocks of UTF-16 CJK text whose UTF-8 is 1.44 times the block, as ae02ea1
    wrote them (no model needed: the blocks are LZMA)."""
    raw, digest = PINNED[name]
    blob = (HERE / "data" / f"{name}.tz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == digest
    info = tzip.info(blob)
    assert [b.method for b in info.blocks] == ["lzma"] and info.blocks[0].utf16
    assert tzip.decompress(blob) == raw


def _utf16_cases():
    text = LINE * 1500
    return {
        "le": text.encode("utf-16-le"),
        "be": text.encode("utf-16-be"),
        "le-bom": ("\ufeff" + text).encode("utf-16-le"),
        "be-bom-crlf": ("\ufeff" + text.replace("\n", "\r\n")).encode("utf-16-be"),
        "le-astral-crlf": ("吾輩は猫である。𠀋名前はまだ無い。😀\r\n" * 1500).encode("utf-16-le"),
    }


@pytest.mark.parametrize("fmt", [4, 5])
@pytest.mark.parametrize("case", sorted(_utf16_cases()))
def test_utf16_lzma_block_longer_in_utf8_roundtrips(tiny, case, fmt):
    """The reproduction of issue 29 item 1 with the tiny model (LZMA beats it): the block's
    UTF-8 is longer than the block, and the archive decodes."""
    raw = _utf16_cases()[case]
    kind, crlf, data = transform.to_text_block(raw)
    assert kind and len(data) > len(raw)
    blob = tzip.compress(raw, tiny, format=fmt)
    assert [b.method for b in tzip.info(blob).blocks] == ["lzma"]
    assert tzip.decompress(blob, tiny) == raw


def test_coded_length_range_bounds_every_utf16_block():
    """3/2 is reached (U+0800..U+FFFF and lone surrogates: 2 bytes -> 3) and never
    passed; a quarter is reached with CRLF (CR 00 LF 00 -> LF)."""
    for s in ("吾" * 100, "\ud800" + "吾" * 99, "吾" * 99 + "\udbff", "𠀋" * 50, "a" * 100,
              "\r\n" * 100, "a\r\n" * 33):
        for kind in ("le", "be"):
            raw = s.encode(f"utf-16-{kind}", "surrogatepass")
            got_kind, crlf, data = transform.to_text_block(raw)
            if got_kind is None:  # not taken as UTF-16 text (e.g. only line ends)
                continue
            lo, hi = transform.coded_length_range(len(raw), True, crlf)
            assert lo <= len(data) <= hi, (s[:3], kind)
    assert transform.coded_length_range(200, True, False)[1] == len(("吾" * 100).encode())
    assert transform.coded_length_range(400, True, True)[0] == len("\n" * 100)


# ---- stored and LZMA blocks are decoded back before they are accepted -----------------
def _no_model_blocks(raws, fmt=5):
    return codec.encode_blocks(raws, None, None, None, fmt)


def _decoded(blocks):
    return codec.decode_blocks(blocks, codec._no_engine, None)


@pytest.mark.parametrize("fault", ["truncated", "other data", "garbage", "longer"])
def test_an_lzma_block_that_does_not_decode_back_is_stored(monkeypatch, fault):
    """A faulty LZMA result (as a liblzma bug or a wrong bound in tzip would give) never
    reaches the archive: the block is stored, and the archive round-trips."""
    real = codec.lzma_pack

    def faulty(data: bytes) -> bytes:
        good = real(data)
        return {"truncated": good[:-4], "other data": real(data[:-1] + b"!"),
                "garbage": bytes(len(good)), "longer": real(data + data[:1])}[fault]
    monkeypatch.setattr(codec, "lzma_pack", faulty)
    raws = [b"hello world, hello world, hello world\n" * 200, LINE.encode("utf-16-le") * 300]
    blocks = _no_model_blocks(raws)
    assert [b.method for b in blocks] == [STORED, STORED]
    assert _decoded(blocks) == raws


def test_a_faulty_lzma_result_through_the_api_roundtrips(tiny, monkeypatch):
    """The same through tzip.compress, with the model trial skipped (random bytes)."""
    raw = random.Random(1).randbytes(3000) + b"a" * 150
    assert [b.method for b in tzip.info(tzip.compress(raw, tiny)).blocks] == ["lzma"]
    monkeypatch.setattr(codec, "lzma_pack", lambda data: lzma.compress(b"x" + data, lzma.FORMAT_RAW,
                                                                        filters=codec.LZMA_FILTERS))
    blob = tzip.compress(raw, tiny)
    assert [b.method for b in tzip.info(blob).blocks] == ["stored"]
    assert tzip.decompress(blob, tiny) == raw


def test_good_lzma_blocks_are_kept():
    raws = [b"hello world, hello world, hello world\n" * 200, (LINE * 300).encode("utf-16-be")]
    blocks = _no_model_blocks(raws)
    assert [b.method for b in blocks] == [LZMA, LZMA]
    assert transform_parts(blocks[1].transform)[0] == "be"
    assert _decoded(blocks) == raws


def test_a_stored_block_that_does_not_decode_back_is_a_bug_not_an_archive(monkeypatch):
    monkeypatch.setattr(codec, "_original", lambda blk, data, progress: data + b"?")
    with pytest.raises(AssertionError, match="stored block"):
        _no_model_blocks([bytes(range(256))])


def test_verified_returns_none_for_a_block_of_other_bytes():
    raw = b"abc" * 100
    good = Block(LZMA, 0, len(raw), zlib.crc32(raw), codec.lzma_pack(raw))
    assert codec._verified(good, raw) is good
    assert codec._verified(good, raw[:-1] + b"d") is None
