"""UTF-16 -> UTF-8 transform (tzip/transform.py): exact round trips, and rejection of what is not UTF-16 text."""
from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from tzip import transform
from tzip.transform import (
    coded_length_range, crlf_applies, crlf_to_lf, from_text_block, lf_to_crlf, text_block_length,
    to_text_block, utf16_applies, utf16_to_utf8, utf8_to_utf16,
)

CODEC = {"le": "utf-16-le", "be": "utf-16-be"}
_R = random.Random(42)
WORDS = {
    "en": "the quick brown fox jumps over lazy dog while compressing text files and logs".split(),
    "ru": "знание сила наука искусство ставить вопросы так чтобы получать точные ответы".split(),
    # CJK: words of 1-3 ideographs from the common range, with fullwidth punctuation
    "zh": ["".join(chr(_R.randrange(0x4E00, 0x9FA6)) for _ in range(_R.randrange(1, 4))) + _R.choice(["", "", "，", "。"])
           for _ in range(400)],
    "ja": ["".join(chr(_R.choice([_R.randrange(0x3041, 0x3097), _R.randrange(0x30A1, 0x30FB), _R.randrange(0x4E00, 0x9FA6)]))
                   for _ in range(_R.randrange(1, 5))) for _ in range(400)],
    "emoji": "😀 🎉 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👍🏽 𠀋 smile party thumbs up unicode text".split(),
}


def prose(lang: str, n_words: int, seed: int = 0, sep: str | None = None, nl: str = "\n") -> str:
    rng = random.Random(seed)
    if sep is None:
        sep = "" if lang in ("zh", "ja") else " "
    words = WORDS[lang]
    out = []
    for i in range(n_words):
        out.append(rng.choice(words))
        out.append(nl if i % 11 == 10 else sep)
    return "".join(out)


def mixed(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(prose(rng.choice(list(WORDS)), 12, seed=rng.randrange(1 << 30)) for _ in range(n_words // 12))


def roundtrip(block: bytes, kind: str) -> None:
    assert utf8_to_utf16(utf16_to_utf8(block, kind), kind) == block


# --- accepted, exact ---------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "ru", "zh", "ja", "emoji"])
@pytest.mark.parametrize("kind", ["le", "be"])
@pytest.mark.parametrize("bom", [False, True])
def test_text_accepted_and_exact(lang, kind, bom):
    text = ("\ufeff" if bom else "") + prose(lang, 800, seed=len(lang))
    block = text.encode(CODEC[kind])
    assert utf16_applies(block) == kind
    utf8 = utf16_to_utf8(block, kind)
    assert utf8 == text.encode("utf-8")            # a BOM becomes EF BB BF, nothing else changes
    roundtrip(block, kind)


@pytest.mark.parametrize("kind", ["le", "be"])
def test_cjk_with_ascii_spaces(kind):
    text = prose("zh", 800, seed=4, sep=" ")
    block = text.encode(CODEC[kind])
    assert utf16_applies(block) == kind
    roundtrip(block, kind)


def test_python_utf16_codec_output():
    """str.encode('utf-16') writes a BOM in the machine's order; no separate kind needed."""
    block = prose("ru", 500).encode("utf-16")
    kind = utf16_applies(block)
    assert kind in ("le", "be")
    assert utf16_to_utf8(block, kind).startswith(b"\xef\xbb\xbf")
    roundtrip(block, kind)


def test_large_block_samples_three_places():
    text = mixed(30000, seed=3)
    block = text.encode("utf-16-le")
    assert len(block) > 3 * 4096
    assert utf16_applies(block) == "le"
    roundtrip(block, "le")


def test_bom_of_the_other_order_is_kept():
    block = b"\xff\xfe" + prose("en", 400).encode("utf-16-be")   # says LE, is BE: U+FFFE
    assert utf16_applies(block) == "be"
    roundtrip(block, "be")


def test_nul_characters():
    text = prose("en", 600)
    few = text[:1000] + "\x00" + text[1000:2000] + "\x00" + text[2000:]
    block = few.encode("utf-16-le")
    assert utf16_applies(block) == "le"
    roundtrip(block, "le")
    many = "\x00".join(text.split(" ")).encode("utf-16-le")      # NUL instead of every space
    assert utf16_applies(many) is None                             # not text
    roundtrip(many, "le")                                          # the conversion is exact anyway
    assert utf16_to_utf8("\x00".encode("utf-16-be"), "be") == b"\x00"


@pytest.mark.parametrize("kind", ["le", "be"])
def test_block_cut_inside_a_surrogate_pair(kind):
    text = prose("emoji", 3000, seed=5)
    full = text.encode(CODEC[kind])
    cuts = [i for i in range(2, len(full) - 2, 2)
            if 0xD800 <= int.from_bytes(full[i - 2:i], "little" if kind == "le" else "big") <= 0xDBFF]
    assert len(cuts) > 100
    for cut in cuts[:: max(1, len(cuts) // 20)]:
        head, tail = full[:cut], full[cut:]                        # head ends in a high surrogate,
        for part in (head, tail):                                  # tail starts with a low one
            if len(part) < 64:
                continue
            assert utf16_applies(part) == kind, cut
            roundtrip(part, kind)
        assert utf16_to_utf8(head, kind) + utf16_to_utf8(tail, kind) != text.encode("utf-8")
        assert utf8_to_utf16(utf16_to_utf8(head, kind), kind) + utf8_to_utf16(utf16_to_utf8(tail, kind), kind) == full


def test_block_starting_and_ending_inside_pairs():
    full = prose("emoji", 2000, seed=9).encode("utf-16-le")
    units = [int.from_bytes(full[i:i + 2], "little") for i in range(0, len(full), 2)]
    start = next(i for i, u in enumerate(units) if 0xDC00 <= u <= 0xDFFF)
    end = max(i for i, u in enumerate(units) if 0xD800 <= u <= 0xDBFF)
    block = full[2 * start:2 * end + 2]
    assert utf16_applies(block) == "le"
    roundtrip(block, "le")


def test_crlf_after_utf16():
    text = prose("zh", 1500).replace("\n", "\r\n")
    block = text.encode("utf-16-le")
    assert not crlf_applies(block)                                 # CR 00 LF 00: not seen raw
    kind, crlf, data = to_text_block(block)
    assert (kind, crlf) == ("le", True)
    assert data == text.replace("\r\n", "\n").encode("utf-8")
    assert from_text_block(data, kind, crlf) == block
    # and in the order the docstring gives, by hand
    assert utf8_to_utf16(lf_to_crlf(crlf_to_lf(utf16_to_utf8(block, kind))), kind) == block


def test_crlf_mixed_endings_not_applied():
    text = prose("en", 1500).replace("\n", "\r\n", 3)              # some LF left bare
    kind, crlf, data = to_text_block(text.encode("utf-16-be"))
    assert (kind, crlf) == ("be", False)
    assert from_text_block(data, kind, crlf) == text.encode("utf-16-be")


def test_to_text_block_plain_bytes():
    for block in (b"", b"abc\r\ndef\r\n", bytes(range(256))):
        kind, crlf, data = to_text_block(block)
        assert kind is None
        assert from_text_block(data, kind, crlf) == block


# --- rejected ------------------------------------------------------------------------------

def test_empty_and_odd_lengths():
    block = prose("en", 300).encode("utf-16-le")
    assert utf16_applies(b"") is None
    assert utf16_applies(block + b"x") is None
    assert utf16_applies(block[1:]) is None                        # odd length
    shifted = block[1:-1]                                          # even, off by one byte: it is
    assert utf16_applies(shifted) == "be"                          # the same text in UTF-16BE
    roundtrip(shifted, "be")


@pytest.mark.parametrize("lang", ["en", "ru", "zh", "ja", "emoji"])
def test_utf8_rejected(lang):
    assert utf16_applies(prose(lang, 2000).encode("utf-8")) is None
    assert utf16_applies(mixed(2000).encode("utf-8")) is None


def test_ascii_latin1_and_binary_rejected(text):
    assert utf16_applies(text) is None                             # this project's sources
    assert utf16_applies(text[:len(text) & ~1]) is None
    assert utf16_applies(b"a" * 1000) is None
    latin1 = prose("en", 2000).replace("o", "\xf6").replace("a", "\xe9").encode("latin-1")
    assert utf16_applies(latin1[:len(latin1) & ~1]) is None
    assert utf16_applies(bytes(4096)) is None                      # all NUL
    assert utf16_applies(b"\xff\xfe" + bytes(4096)) is None
    ints = b"".join(struct.pack("<I", i * 7919 % 100000) for i in range(5000))
    assert utf16_applies(ints) is None
    floats = b"".join(struct.pack("<d", i / 7) for i in range(3000))
    assert utf16_applies(floats) is None
    assert utf16_applies(bytes(range(256)) * 40) is None


def test_random_bytes_rejected_fast():
    rng = random.Random(1)
    for n in (2, 10, 1000, 4096, 100_000):
        for _ in range(5):
            assert utf16_applies(rng.randbytes(n)) is None
    big = rng.randbytes(4 << 20)
    tracemalloc.start()
    try:
        assert utf16_applies(big) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # the samples only: decoding the block would take 4+ MiB


def test_interior_unpaired_surrogate_rejected():
    text = prose("en", 1500)
    for lone in ("\ud800", "\udc00", "\udbff\udbff"):
        s = text[:900] + lone + text[900:]
        block = s.encode("utf-16-le", "surrogatepass")
        assert utf16_applies(block) is None
        roundtrip(block, "le")                                     # the conversion itself is still exact
    # a low surrogate at the end / a high one at the start is no slice boundary either
    assert utf16_applies((text + "\udc00").encode("utf-16-le", "surrogatepass")) is None
    assert utf16_applies(("\ud800" + text).encode("utf-16-le", "surrogatepass")) is None


def test_utf16_text_then_binary_rejected():
    block = prose("ru", 6000).encode("utf-16-le")
    tail = random.Random(2).randbytes(len(block) // 3 & ~1)
    assert utf16_applies(block + tail) is None
    assert utf16_applies(tail + block) is None


def test_utf32_rejected():
    assert utf16_applies(prose("en", 1000).encode("utf-32")) is None
    assert utf16_applies(prose("zh", 1000).encode("utf-32-be")) is None


def test_unicode_control_and_private_use_text_rejected():
    pua = "".join(chr(0xE000 + i % 6000) for i in range(3000))
    assert utf16_applies(pua.encode("utf-16-le")) is None


# --- exactness over arbitrary inputs --------------------------------------------------------

def test_conversion_exact_on_any_even_bytes():
    """With 'surrogatepass' the conversion is a bijection on even-length byte strings, so
    utf16_applies' round-trip check can never be the only thing standing between a block
    and corruption."""
    rng = random.Random(7)
    for _ in range(300):
        block = rng.randbytes(2 * rng.randrange(0, 64))
        for kind in ("le", "be"):
            roundtrip(block, kind)
        k = utf16_applies(block)
        if k:
            roundtrip(block, k)
    units = [0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0x0041, 0x0000, 0xFEFF, 0xFFFE, 0xFFFF]
    for _ in range(2000):
        block = b"".join(struct.pack("<H", rng.choice(units)) for _ in range(rng.randrange(1, 8)))
        roundtrip(block, "le")


def test_hypothesis_properties():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=300, deadline=None)
    @hyp.given(st.text(min_size=0, max_size=300), st.sampled_from(["le", "be"]), st.booleans())
    def text_prop(s, kind, crlf):
        if crlf:
            s = s.replace("\n", "\r\n")
        block = s.encode(CODEC[kind])
        roundtrip(block, kind)
        k = utf16_applies(block)
        if k is not None:
            roundtrip(block, k)
        k2, c2, data = to_text_block(block)
        assert from_text_block(data, k2, c2) == block

    @hyp.settings(max_examples=300, deadline=None)
    @hyp.given(st.binary(max_size=400))
    def bytes_prop(b):
        k = utf16_applies(b)
        if len(b) % 2 or not b:
            assert k is None
        if k is not None:
            roundtrip(b, k)
        k2, c2, data = to_text_block(b)
        assert from_text_block(data, k2, c2) == b

    text_prop()
    bytes_prop()


# ---- the decoder's side: conversion in pieces, and lengths counted before it ----------
def _whole(data: bytes, kind: str, crlf: bool) -> bytes | None:
    """The conversion of the whole block at once (as before pieces), None if it fails."""
    try:
        return utf8_to_utf16(lf_to_crlf(data) if crlf else data, kind)
    except UnicodeError:
        return None


def _pieces(data: bytes, kind: str, crlf: bool) -> bytes | None:
    try:
        return from_text_block(data, kind, crlf)
    except UnicodeError:
        return None


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 7, 64])
def test_conversion_in_pieces_is_the_conversion_of_the_whole(piece, monkeypatch):
    """Cut anywhere PIECE puts a cut, valid UTF-8 (every length of sequence, surrogates
    through 'surrogatepass', LFs) converts to the same bytes, and invalid UTF-8 fails
    either way; text_block_length is the converted length whenever it converts."""
    monkeypatch.setattr(transform, "PIECE", piece)
    rng = random.Random(piece)
    alphabet = ["a", "\n", "é", "吾", "😀", "\ud800", "\udfff", "\r"]
    invalid = [b"\x80", b"\xc3", b"\xe5\x90", b"\xf0\x9f\x98", b"\xff", b"\x80" * 5]
    for trial in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        data = text.encode("utf-8", "surrogatepass")
        if trial % 3 == 0:  # a broken sequence somewhere
            i = rng.randrange(0, len(data) + 1)
            data = data[:i] + rng.choice(invalid) + data[i:]
        for kind in ("le", "be"):
            for crlf in (False, True):
                want = _whole(data, kind, crlf)
                assert _pieces(data, kind, crlf) == want, (data, kind, crlf)
                if want is not None:
                    assert text_block_length(data, kind, crlf) == len(want)


def test_coded_length_range_holds_for_generated_utf16_blocks():
    rng = random.Random(7)
    for lang in WORDS:
        for crlf_text in (False, True):
            text = prose(lang, 300, seed=rng.randrange(1000), nl="\r\n" if crlf_text else "\n")
            for kind in ("le", "be"):
                raw = text.encode(CODEC[kind])
                got, crlf, data = to_text_block(raw)
                if got is None:
                    continue
                lo, hi = coded_length_range(len(raw), True, crlf)
                assert lo <= len(data) <= hi
                assert text_block_length(data, got, crlf) == len(raw)
