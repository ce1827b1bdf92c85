"""Reversible byte transforms applied to a block before coding.

CRLF: the training text uses LF line endings, and a model that never saw CRLF codes such
files about 1 bit per byte worse. When every LF of a block is preceded by CR, the block is
coded with those CRs removed and the decoder puts them back; the mapping is exact
(a lone CR, or CR CR LF, survives the round trip).

UTF-16: a block of UTF-16 text (LE or BE, with or without a byte order mark) is coded as
its UTF-8, converted back exactly by the decoder; applied before CRLF (see below).
"""
from __future__ import annotations

import math as _math
import re as _re
import unicodedata as _ud


def crlf_applies(block: bytes) -> bool:
    n_lf = block.count(b"\n")
    return n_lf > 0 and block.count(b"\r\n") == n_lf


def crlf_to_lf(block: bytes) -> bytes:
    return block.replace(b"\r\n", b"\n")


def lf_to_crlf(block: bytes) -> bytes:
    return block.replace(b"\n", b"\r\n")


# ---------------------------------------------------------------------------------------
# UTF-16 -> UTF-8
#
# A UTF-16 text (Windows "Unicode" files, .reg exports, some logs and subtitles) spends
# every other byte on a high byte that a model trained on UTF-8 never saw in that place.
# When a block is UTF-16 text, it is coded as the UTF-8 of the same characters and the
# decoder converts it back.
#
# Kinds: "le" and "be" (the byte order of the code units). A byte order mark is not a
# separate kind: U+FEFF is a character like any other and becomes EF BB BF in UTF-8,
# which converts back to the same two bytes; so does a mark of the other order (U+FFFE).
#
# Exactness: the conversion is str.decode / str.encode with 'surrogatepass', and
# utf16_applies accepts a block only after checking that the round trip
# utf8_to_utf16(utf16_to_utf8(block)) == block. An unpaired surrogate is accepted only as
# the block's first code unit (a low surrogate: the block starts inside a pair) or its
# last (a high surrogate: the block ends inside a pair), which is what cutting a file into
# even-sized slices can make; 'surrogatepass' writes each as its three-byte form
# (ED A0..BF xx) and reads it back. Unpaired surrogates elsewhere mean the block is not
# UTF-16 text: rejected. Odd lengths and empty blocks: rejected.
#
# Order with CRLF: UTF-16 first, then CRLF on the converted bytes. The encoder does
#     u = utf16_to_utf8(block, kind); if crlf_applies(u): u = crlf_to_lf(u)
# and the decoder undoes it in the reverse order (lf_to_crlf, then utf8_to_utf16).
# crlf_applies on the raw UTF-16 bytes is never true for CRLF text (CR 00 LF 00), so the
# CRLF test must come after the conversion; to_text_block / from_text_block do both.
# ---------------------------------------------------------------------------------------
_SAMPLE = 4096          # bytes looked at in each of up to three places (even)
_MIN_GAP_BITS = 1.0     # high bytes' entropy must be this far under the low bytes'
_MAX_BAD = 0.01         # most control / unassigned / private-use characters in the sample
_SURROGATE = _re.compile("[\ud800-\udfff]")
_CODEC = {"le": "utf-16-le", "be": "utf-16-be"}
_OK_CONTROLS = frozenset("\t\n\r\f\v\x1b")
_BAD_CATEGORIES = frozenset(("Cc", "Cn", "Co", "Cs"))


def _profile(data: bytes) -> tuple[float, int]:
    """(entropy in bits, number of distinct values) of the bytes."""
    n = len(data)
    if n == 0:
        return 0.0, 0
    counts = [c for c in (data.count(bytes((b,))) for b in range(256)) if c]
    return -sum(c / n * _math.log2(c / n) for c in counts), len(counts)


def _samples(block: bytes) -> list[bytes]:
    n = len(block)
    if n <= 3 * _SAMPLE:
        return [block]
    mid = (n // 2) & ~1
    return [block[:_SAMPLE], block[mid:mid + _SAMPLE], block[n - _SAMPLE:]]


def _byte_order(sample: bytes) -> str | None:
    """The side whose bytes clearly take fewer values holds the high bytes of the code units.

    UTF-16 text keeps its high bytes in a few values (00 for ASCII, 04 for Cyrillic,
    4E..9F for CJK ideographs) while its low bytes spread; ASCII, UTF-8, 8-bit text and
    binary data look alike at even and odd offsets. "Clearly": the entropy at least 1 bit
    lower, or (CJK with many ASCII spaces, whose 00 / 20 pull both entropies down) at most
    2/3 as many distinct values and at least 16 fewer."""
    (h0, d0), (h1, d1) = _profile(sample[0::2]), _profile(sample[1::2])

    def high(h, d, h_other, d_other):
        return h <= h_other - _MIN_GAP_BITS or (3 * d <= 2 * d_other and d <= d_other - 16)

    if high(h1, d1, h0, d0):
        return "le"
    if high(h0, d0, h1, d1):
        return "be"
    return None


def _unpaired_ok(text: str) -> bool:
    """Unpaired surrogates only where a slice boundary can put them."""
    for m in _SURROGATE.finditer(text):
        i, c = m.start(), ord(m.group())
        if i == 0 and 0xDC00 <= c <= 0xDFFF:
            continue
        if i == len(text) - 1 and 0xD800 <= c <= 0xDBFF:
            continue
        return False
    return True


def _text_like(text: str) -> bool:
    if not text:
        return False
    bad = 0
    for ch in text:
        if ch in _OK_CONTROLS:
            continue
        if _ud.category(ch) in _BAD_CATEGORIES:
            bad += 1
    return bad <= _MAX_BAD * len(text)


def utf16_applies(block: bytes) -> str | None:
    """"le" or "be" when block is UTF-16 text that converts to UTF-8 and back exactly; else None.

    Cheap rejection first: odd or empty blocks, then the byte-order test on a 4 KB sample
    (ASCII, UTF-8, binary and random data fail it at once), then the sampled characters
    must be text (at most 1% controls other than whitespace and ESC, unassigned or
    private-use code points, surrogates other than at the block's edges). Only then is the
    whole block decoded, its unpaired surrogates checked, and the round trip compared."""
    n = len(block)
    if n < 2 or n % 2:
        return None
    samples = _samples(block)
    kind = _byte_order(samples[0])
    if kind is None:
        return None
    codec = _CODEC[kind]
    for i, s in enumerate(samples):
        if i and _byte_order(s) != kind:
            return None
        text = s.decode(codec, "surrogatepass")
        # a sample from the middle may start or end inside a pair: drop those code units
        text = _SURROGATE.sub("", text[:1]) + text[1:-1] + _SURROGATE.sub("", text[-1:]) \
            if len(text) > 1 else text
        if _SURROGATE.search(text) and not _unpaired_ok(text):
            return None
        if not _text_like(text):
            return None
    try:
        text = block.decode(codec, "surrogatepass")
    except UnicodeDecodeError:
        return None
    if not _unpaired_ok(text):
        return None
    utf8 = text.encode("utf-8", "surrogatepass")
    if utf8.decode("utf-8", "surrogatepass").encode(codec, "surrogatepass") != block:
        return None
    return kind


def utf16_to_utf8(block: bytes, kind: str) -> bytes:
    """The UTF-8 of a block that utf16_applies accepted as `kind`."""
    return block.decode(_CODEC[kind], "surrogatepass").encode("utf-8", "surrogatepass")


def utf8_to_utf16(data: bytes, kind: str) -> bytes:
    """Inverse of utf16_to_utf8 on its outputs."""
    return data.decode("utf-8", "surrogatepass").encode(_CODEC[kind], "surrogatepass")


def to_text_block(block: bytes, utf16: bool = True) -> tuple[str | None, bool, bytes]:
    """(utf16 kind or None, crlf applied, bytes to code): UTF-16 -> UTF-8 first (unless
    utf16 is False: format 3 knows CRLF -> LF only), then CRLF -> LF."""
    kind = utf16_applies(block) if utf16 else None
    data = utf16_to_utf8(block, kind) if kind else block
    crlf = crlf_applies(data)
    return kind, crlf, crlf_to_lf(data) if crlf else data


def from_text_block(data: bytes, kind: str | None, crlf: bool) -> bytes:
    """Inverse of to_text_block: LF -> CRLF first, then UTF-8 -> UTF-16.

    UTF-16 is converted piece by piece (_pieces), each piece's CRs put back and its
    characters converted alone: the same bytes as converting the whole (each UTF-8
    sequence converts by itself), in memory of about twice the output, where str's
    decoder of a whole block takes up to six times it (a str of 4-byte characters, or
    surrogates through the error handler)."""
    if not kind:
        return lf_to_crlf(data) if crlf else data
    codec = _CODEC[kind]
    return b"".join((lf_to_crlf(p) if crlf else p).decode("utf-8", "surrogatepass")
                    .encode(codec, "surrogatepass") for p in _pieces(data))


PIECE = 1 << 20  # bytes of UTF-8 from_text_block converts at a time


def _pieces(data: bytes):
    """data in pieces of about PIECE bytes, cut before a byte that is not a UTF-8
    continuation byte (10xxxxxx), so no sequence is split; after four continuation
    bytes in a row (never valid) anywhere, as the piece fails to convert either way."""
    i, n = 0, len(data)
    while i < n:
        k = j = min(n, i + PIECE)
        while k < n and k - j < 4 and 0x80 <= data[k] < 0xC0:
            k += 1
        yield data[i:k]
        i = k


# ---------------------------------------------------------------------------------------
# Lengths: how long the bytes to code (to_text_block's output) of a block of n bytes can
# be, for the encoder to check what it writes and the decoder what it reads.
#
# UTF-16 -> UTF-8 ('surrogatepass'): a code unit (2 bytes) of U+0000..U+007F becomes 1
# byte, of U+0080..U+07FF 2, of U+0800..U+FFFF 3 (an unpaired surrogate too: ED xx xx);
# a surrogate pair (4 bytes) becomes 4. So the UTF-8 is at most 3/2 of the block, and at
# least half of it; CRLF -> LF then only removes bytes, at most 3 of every 4 (CR 00 LF 00
# becomes LF), so the bytes to code are at least a quarter of the block.
# CRLF alone: at least one LF, every LF after a CR, so n/2 <= coded < n.
# ---------------------------------------------------------------------------------------
def coded_length_range(raw_len: int, utf16: bool, crlf: bool) -> tuple[int, int]:
    """(shortest, longest) bytes to code that to_text_block gives for a block of raw_len
    bytes with these transforms (see above): the encoder never writes, and the decoder
    never accepts or produces, other lengths."""
    if utf16:
        return raw_len // 4, raw_len * 3 // 2
    if crlf:
        return (raw_len + 1) // 2, raw_len - 1
    return raw_len, raw_len


_CHUNK = 1 << 20
_CONTINUATION = bytes(range(0x80, 0xC0))
_NOT_LEAD4 = bytes(b for b in range(256) if not 0xF0 <= b <= 0xF7)


def text_block_length(data: bytes, kind: str | None, crlf: bool) -> int:
    """The length of from_text_block(data, kind, crlf) when data is valid (UTF-8 with
    'surrogatepass' for UTF-16 blocks), counted in a few passes of 1 MiB without building
    it, so a decoder can refuse a block whose stated length it is not before converting it.
    In UTF-16 each character is 2 bytes, or 4 for one of four UTF-8 bytes; CRLF adds a CR
    (a character) per LF."""
    nl = data.count(b"\n") if crlf else 0
    if not kind:
        return len(data) + nl
    chars = lead4 = 0
    for i in range(0, len(data), _CHUNK):
        part = data[i:i + _CHUNK]
        chars += len(part.translate(None, _CONTINUATION))
        lead4 += len(part.translate(None, _NOT_LEAD4))
    return 2 * (chars + lead4 + nl)
