"""Damaged, truncated, foreign and mismatched archives: clear errors, never wrong output."""
from __future__ import annotations

import pytest

import tzip
from tzip.container import MAGIC


@pytest.fixture(scope="module", params=[5, 8, 9, 10, 11, 12])
def archive(request, small, text):
    """An archive with a model block, so payload corruption reaches the range decoder: of
    the default format (5) and of level -8's (12, the context mixer's revision 7; 11, 10, 9
    and 8, 0.7's, 0.6's, 0.5's and 0.4's)."""
    return tzip.compress(text[:3000], small, streams=8, format=request.param)


def test_not_an_archive():
    with pytest.raises(tzip.CorruptArchive, match="not a tzip archive"):
        tzip.decompress(b"hello world, not compressed")


def test_empty_input_is_not_an_archive():
    with pytest.raises(tzip.CorruptArchive, match="truncated|not a tzip"):
        tzip.decompress(b"")


@pytest.mark.parametrize("cut", [2, 10, 30, 60, 200, -20, -5, -1])
def test_truncated(archive, small, cut):
    with pytest.raises(tzip.CorruptArchive):
        tzip.decompress(archive[:cut], small)


def test_flipped_payload_byte(archive, small):
    i = tzip.info(archive)
    assert i.blocks[0].method == {5: "model+cm2", 8: "model+cm3", 9: "model+cm4", 10: "model+cm5",
                                  11: "model+cm6", 12: "model+cm7"}[i.version]
    for pos in (len(archive) - 200, len(archive) // 2, 100):
        bad = bytearray(archive)
        bad[pos] ^= 0x10
        with pytest.raises(tzip.CorruptArchive):
            tzip.decompress(bytes(bad), small)


@pytest.mark.parametrize("pos", [5, 8, 20, 40])
def test_flipped_header_byte(archive, small, pos):
    bad = bytearray(archive)
    bad[pos] ^= 0x01
    with pytest.raises(tzip.TzipError):
        tzip.decompress(bytes(bad), small)


def test_unknown_version(archive):
    bad = bytearray(archive)
    bad[len(MAGIC)] = 99
    with pytest.raises(tzip.CorruptArchive, match="version 99"):
        tzip.decompress(bytes(bad))


def test_trailing_garbage(archive, small):
    with pytest.raises(tzip.CorruptArchive, match="trailing"):
        tzip.decompress(archive + b"x", small)


def test_wrong_model_is_refused(tiny, tiny_b, text):
    blob = tzip.compress(text[:3000], tiny, streams=4, block_size=1 << 20)
    if tzip.info(blob).blocks[0].method != "model+cm2":  # the random tiny model may lose
        blob = _force_model_block(tiny, text[:3000])
    with pytest.raises(tzip.WrongModel, match="tiny-a"):
        tzip.decompress(blob, tiny_b)


def test_missing_model_is_named(tiny, text, monkeypatch, tmp_path):
    monkeypatch.setenv("TZIP_MODELS", str(tmp_path))
    blob = _force_model_block(tiny, text[:2000])
    with pytest.raises(tzip.ModelError, match="tiny-a.*not installed"):
        tzip.decompress(blob)


def test_model_found_by_id_in_models_dir(tiny, text, monkeypatch, tmp_path):
    tiny.save(tmp_path / "renamed.npz")
    monkeypatch.setenv("TZIP_MODELS", str(tmp_path))
    data = text[:2000]
    assert tzip.decompress(_force_model_block(tiny, data)) == data


def _force_model_block(model, data: bytes, version: int = 5) -> bytes:
    """An archive whose only block is model-coded, whatever LZMA would have done."""
    import zlib
    from tzip import codec
    from tzip.container import MODEL, MODEL_METHOD, NO_TRANSFORM, Block, Header, Trailer
    from tzip.engine import Engine
    from tzip.legacy import linear
    lengths = codec.split_streams(len(data), model.cfg.context, 4)
    method = MODEL_METHOD[version]
    if method == MODEL:
        payload = linear.encode(Engine(model), data, lengths)
    else:
        payload = codec.encode_cm(Engine(model), data, lengths, None, codec.CM_REVISION[method])
    crc = zlib.crc32(data)
    return (Header(model.name, model.digest[:16], version).pack()
            + Block(method, NO_TRANSFORM, len(data), crc, payload, lengths).pack()
            + Trailer(len(data), crc).pack())


def _model_block_claiming(n_streams: int, raw_len: int) -> bytes:
    """A block header that says `n_streams` model streams of one byte each (valid CRC)."""
    import struct
    import zlib
    from tzip.container import MODEL_CM2, NO_TRANSFORM, TAG_BLOCK, put_varint
    body = bytes([TAG_BLOCK, MODEL_CM2, NO_TRANSFORM]) + put_varint(raw_len) + put_varint(4) \
        + struct.pack("<I", 0) + put_varint(n_streams) + put_varint(1) * n_streams
    return body + struct.pack("<I", zlib.crc32(body)) + b"\0" * 4


@pytest.mark.parametrize("n", [0, 4097])
def test_stream_counts_outside_the_format_are_refused(archive, n):
    """A hostile count must fail as corrupt before the decoder sizes its caches by it."""
    from tzip.container import Header
    head = len(Header(tzip.info(archive).model_name, bytes(16)).pack())
    bad = archive[:head] + _model_block_claiming(n, 1 << 20)
    with pytest.raises(tzip.CorruptArchive, match="stream count"):
        tzip.decompress(bad)


def test_block_lengths_outside_the_format_are_refused(archive):
    from tzip.container import Header
    head = len(Header(tzip.info(archive).model_name, bytes(16)).pack())
    bad = archive[:head] + _model_block_claiming(1, 1 << 40)
    with pytest.raises(tzip.CorruptArchive, match="block length"):
        tzip.decompress(bad)


@pytest.mark.parametrize("streams", [0, 4097])
def test_compress_refuses_stream_counts_outside_the_format(tiny, streams):
    with pytest.raises(ValueError, match="streams must be between 1 and 4096"):
        tzip.compress(b"some text " * 50, tiny, streams=streams)
