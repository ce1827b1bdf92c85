"""Round trips through the library API: whatever goes in comes out, byte for byte."""
from __future__ import annotations

import io
import os
import random
import stat

import pytest

import tzip

CASES = {
    "empty": b"",
    "one byte": b"x",
    "all byte values": bytes(range(256)) * 3,
    "invalid utf-8": b"caf\xc3 \xff\xfe\xed\xa0\x80 ok \xc0\xaf" * 50,
    "long runs": b"a" * 5000 + b"\n" * 3000 + b"\x00" * 4000 + b"ab" * 2000,
    "crlf text": b"Line one\r\nLine two\r\n\r\nLast line\r\n" * 40,
    "mixed endings": b"a\r\nb\nc\rd\r\r\ne" * 30,
}


@pytest.mark.parametrize("name", CASES)
def test_roundtrip_small_inputs(tiny, name):
    data = CASES[name]
    assert tzip.decompress(tzip.compress(data, tiny), tiny) == data


def test_random_megabyte_grows_by_a_few_bytes_only(tiny):
    data = random.Random(7).randbytes(1 << 20)
    blob = tzip.compress(data, tiny)
    assert len(blob) <= len(data) + 256
    assert tzip.decompress(blob, tiny) == data


@pytest.mark.slow
def test_hundreds_of_kb_of_text_across_blocks(tiny, text):
    data = (text * (300_000 // len(text) + 1))[:300_000]
    blob = tzip.compress(data, tiny, block_size=128 << 10)
    assert len(tzip.info(blob).blocks) == 3
    assert tzip.decompress(blob, tiny) == data


def test_model_blocks_roundtrip_with_shipped_model(small, text):
    """Real text with the real model: the model must win over LZMA and decode exactly."""
    data = text[:6000]
    blob = tzip.compress(data, small, streams=12)
    blocks = tzip.info(blob).blocks
    assert [b.method for b in blocks] == ["model+cm2"]
    assert tzip.decompress(blob) == data  # model found by the name and id in the archive


def test_crlf_text_is_coded_as_lf(small, text):
    lf = text[:3000]
    crlf = lf.replace(b"\n", b"\r\n")
    blob = tzip.compress(crlf, small, streams=16)
    i = tzip.info(blob)
    assert i.blocks[0].crlf and i.blocks[0].method == "model+cm2"
    assert len(blob) <= len(tzip.compress(lf, small, streams=16)) + 8
    assert tzip.decompress(blob, small) == crlf


def test_archive_does_not_depend_on_streams_being_recomputed(tiny, text):
    """The decoder reads stream lengths from the archive, whatever the encoder chose."""
    data = text[:2000]
    for s in (1, 2, 7, 64):
        assert tzip.decompress(tzip.compress(data, tiny, streams=s), tiny) == data


def test_stream_api_with_short_reads(tiny, text):
    class Trickle(io.RawIOBase):
        """A pipe-like reader returning at most 100 bytes per read."""
        def __init__(self, b):
            self.b = io.BytesIO(b)
        def readable(self):
            return True
        def read(self, n=-1):
            return self.b.read(min(100, n if n >= 0 else 100))

    data = text[:5000]
    out = io.BytesIO()
    assert tzip.compress_stream(Trickle(data), out, tiny, block_size=1000) == len(data)
    back = io.BytesIO()
    assert tzip.decompress_stream(Trickle(out.getvalue()), back, tiny) == len(data)
    assert back.getvalue() == data


def test_file_api(tiny_path, tmp_path, text):
    src = tmp_path / "a.txt"
    src.write_bytes(text[:3000])
    tz = tzip.compress_file(src, model=tiny_path)
    assert tz == tmp_path / "a.txt.tz" and src.exists()
    os.remove(src)
    assert tzip.decompress_file(tz, model=tiny_path) == src
    assert src.read_bytes() == text[:3000]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(src.stat().st_mode) == 0o666 & ~umask  # as any new file, not 0600


def test_same_archive_every_time(tiny, text):
    data = text[:4000]
    assert tzip.compress(data, tiny) == tzip.compress(data, tiny)
