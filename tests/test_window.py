"""Format 7: the model over a window shorter than its context (levels -2..-5).

The window is archive bytes: the header records it (FORMAT.md), the decoder builds its
engine for it, and a header whose window no encoder writes is a corrupt archive. The
backends' tables for a window are checked in tests/test_backends.py, the pinned archive
in tests/test_models.py, the levels in tests/test_cli.py.
"""
from __future__ import annotations

import io
import struct
import zlib

import pytest

import tzip
from tzip import api, parallel
from tzip.container import DIGEST_LEN, MAGIC, MAX_WINDOW, Header, put_varint
from tzip.engine import Engine


@pytest.fixture(scope="module")
def data(text) -> bytes:
    return text[:2500]


def _header_len(blob: bytes) -> int:
    """Bytes of a version-7 header: magic, version, name, id, the window, its CRC."""
    n = len(MAGIC) + 2 + blob[len(MAGIC) + 1] + DIGEST_LEN
    while blob[n] & 0x80:
        n += 1
    return n + 1 + 4


@pytest.mark.parametrize("window", [1, 8, 31])
def test_a_window_round_trips_and_is_recorded(tiny, data, window):
    blob = tzip.compress(data, tiny, window=window)
    info = tzip.info(blob)
    assert (info.version, info.window) == (7, window)
    assert info.blocks[0].method == "model+cm2"
    assert tzip.decompress(blob, tiny) == data


def test_the_whole_context_codes_format_5s_blocks(tiny, data):
    """A window of the whole context, or longer, or format 7 without one: the model
    unchanged, so the same block records as format 5; only the header differs."""
    five = tzip.compress(data, tiny)
    h5 = len(Header(tiny.name, tiny.digest[:DIGEST_LEN], 5).pack())
    for kw in ({"window": tiny.cfg.context}, {"window": 10_000}, {"format": 7}):
        blob = tzip.compress(data, tiny, **kw)
        assert tzip.info(blob).window == tiny.cfg.context, kw
        assert blob[_header_len(blob):] == five[h5:], kw
    assert tzip.compress(data, tiny, window=8)[_header_len(blob):] != five[h5:]


@pytest.mark.parametrize("kw, match", [
    ({"window": 0}, "window"), ({"window": -4}, "window"), ({"window": True}, "window"),
    ({"window": 2.5}, "window"), ({"window": 8, "format": 5}, "format 7"),
    ({"window": 8, "format": 6}, "format 7")])
def test_compressor_refuses_what_it_cannot_write(tiny, kw, match):
    with pytest.raises(ValueError, match=match):
        tzip.Compressor(tiny, **kw)


def test_the_mixer_alone_has_no_window():
    for kw in ({"window": 8}, {"format": 7}):
        with pytest.raises(ValueError, match="no window"):
            tzip.Compressor("none", **kw)


def test_one_decompressor_keeps_an_engine_per_window(tiny, data):
    """Archives of one model over three windows, one after another: each decodes with its
    own window's engine (an engine kept per model alone would decode two of them wrong)."""
    parts = [data[:900], data[900:1700], data[1700:]]
    blob = b"".join(tzip.compress(p, tiny, **kw) for p, kw in
                    zip(parts, ({"window": 4}, {"window": 16}, {})))
    d = tzip.Decompressor(tiny)
    assert d.decompress(blob) == data
    assert sorted((w is None, w) for _, w in d._engines) == [(False, 4), (False, 16), (True, None)]
    assert d.predictor.count("tiny-a, window") == 3 and "window 4 of 32" in d.predictor
    assert tzip.Compressor(tiny, window=8).predictor == "tiny-a, window 8 of 32"
    assert tzip.Compressor(tiny).predictor == "tiny-a, window 32"


def test_incremental_and_file_writers_take_the_window(tiny, data, tmp_path):
    want = tzip.compress(data, tiny, window=8, block_size=1000)
    c = tzip.TzipCompressor(tiny, window=8, block_size=1000)
    assert c.compress(data) + c.flush() == want
    p = tmp_path / "a.tz"
    with tzip.open(p, "wb", model=tiny, window=8, block_size=1000) as f:
        f.write(data)
    assert p.read_bytes() == want
    out = io.BytesIO()
    tzip.compress_stream(io.BytesIO(data), out, tiny, window=8, block_size=1000)
    assert out.getvalue() == want


def test_worker_processes_write_the_same_windowed_archive(tiny_path, data):
    """-T 2 with a window level: the header and blocks of one process."""
    want = tzip.compress(data, tiny_path, window=8, block_size=1000)
    out = io.BytesIO()
    parallel.compress_stream(io.BytesIO(data), out, tiny_path, workers=2, window=8, block_size=1000)
    assert out.getvalue() == want
    back = io.BytesIO()
    parallel.decompress_stream(io.BytesIO(want), back, tiny_path, workers=2)
    assert back.getvalue() == data


# ---- hostile headers -------------------------------------------------------------------
def _with_window(blob: bytes, window_bytes: bytes) -> bytes:
    """The archive with its header's window field replaced by these bytes, the header's
    CRC made valid again."""
    head = blob[:len(MAGIC) + 2 + blob[len(MAGIC) + 1] + DIGEST_LEN]
    body = head + window_bytes
    return body + struct.pack("<I", zlib.crc32(body)) + blob[_header_len(blob):]


@pytest.mark.parametrize("window, match", [
    (0, "bad window"), (MAX_WINDOW + 1, "bad window"), (1 << 62, "bad window"),
    (33, "larger than the model's context")])  # the tiny model's context is 32
def test_a_window_no_encoder_writes_is_a_corrupt_archive(tiny, data, window, match):
    blob = _with_window(tzip.compress(data, tiny, window=8), put_varint(window))
    with pytest.raises(tzip.CorruptArchive, match=match) as exc:
        tzip.decompress(blob, tiny)
    assert "\n" not in str(exc.value)
    assert _with_window(blob, put_varint(8)) == tzip.compress(data, tiny, window=8)


def test_a_window_past_the_end_or_unchecked_is_refused(tiny, data):
    blob = tzip.compress(data, tiny, window=8)
    n = _header_len(blob)
    for cut in range(n - 5, n):  # in the window, or in its CRC
        with pytest.raises(tzip.CorruptArchive, match="truncated"):
            tzip.decompress(blob[:cut], tiny)
    flipped = bytearray(blob)
    flipped[n - 5] ^= 0x01  # window 9, under the header CRC of window 8
    with pytest.raises(tzip.CorruptArchive, match="header checksum"):
        tzip.decompress(bytes(flipped), tiny)
    endless = _with_window(blob, b"\x80" * 10 + b"\x01")  # a varint of 71 bits
    with pytest.raises(tzip.CorruptArchive, match="bad number"):
        tzip.decompress(endless, tiny)


def test_headers_refuse_a_window_their_format_cannot_hold(tiny):
    with pytest.raises(ValueError, match="needs a window"):
        Header("m", bytes(16), 7).pack()
    with pytest.raises(ValueError, match="has no window"):
        Header("m", bytes(16), 5, 64).pack()
    with pytest.raises(ValueError, match="needs a window"):
        api.writer_for(tiny, 7, 0)


def test_the_engine_keeps_the_models_stream_layout(tiny, data):
    """A window changes what the model attends to, not how a block is cut into streams:
    the same stream lengths as format 5 for every window."""
    five = tzip.info(tzip.compress(data, tiny)).blocks[0].streams
    assert five > 1
    for w in (1, 8):
        assert tzip.info(tzip.compress(data, tiny, window=w)).blocks[0].streams == five
        assert Engine(tiny, window=w).cfg.context == tiny.cfg.context
