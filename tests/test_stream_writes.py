"""Every write the library's stream writers make is complete or an error (issue 29): the
file objects a caller hands to tzip.compress_stream / decompress_stream, Compressor and
Decompressor, tzip.open("wb") / TzipFile and tzip.parallel's streams may be raw
(unbuffered) files, which return short counts; an ignored short count is a truncated
archive or output with no error."""
from __future__ import annotations

import errno
import io
import random

import pytest

import tzip
from tzip import parallel

BS = 1024


class Dribble(io.RawIOBase):
    """A raw file that stores at most `step` bytes a call and returns the short count, as a
    raw stdout or pipe does; with `room`, a disk that is full after that many bytes (then
    0 bytes stored: a count of 0)."""

    def __init__(self, step: int = 7, room: int | None = None):
        self.step, self.room, self.data = step, room, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        k = min(len(b), self.step)
        if self.room is not None:
            k = min(k, self.room - len(self.data))
        self.data += bytes(memoryview(b)[:k])
        return k


@pytest.fixture(scope="module")
def data(text) -> bytes:
    """Model blocks and stored blocks: several writes of each kind."""
    return text[:2500] + random.Random(5).randbytes(1500)


@pytest.fixture(scope="module")
def archive(tiny, data) -> bytes:
    return tzip.compress(data, tiny, device="cpu", block_size=BS)


def test_compress_stream_into_short_counts_writes_everything(tiny, data, archive):
    out = Dribble()
    n = tzip.compress_stream(io.BytesIO(data), out, tiny, device="cpu", block_size=BS)
    assert n == len(data)
    assert bytes(out.data) == archive
    out = Dribble(step=3)
    tzip.Compressor(tiny, device="cpu", block_size=BS).compress_stream(io.BytesIO(data), out)
    assert bytes(out.data) == archive


def test_decompress_stream_into_short_counts_writes_everything(tiny, data, archive):
    out = Dribble()
    assert tzip.decompress_stream(io.BytesIO(archive), out, tiny, device="cpu") == len(data)
    assert bytes(out.data) == data
    out = Dribble(step=5)
    d = tzip.Decompressor(tiny, device="cpu")
    assert d.decompress_member(io.BytesIO(archive), out) == len(data)
    assert bytes(out.data) == data


@pytest.mark.parametrize("mode", ["wb", "ab", "xb"])
def test_tzip_open_into_short_counts_writes_everything(tiny, data, archive, mode):
    out = Dribble()
    with tzip.open(out, mode, model=tiny, device="cpu", block_size=BS) as f:
        for i in range(0, len(data), 900):
            f.write(data[i:i + 900])
    assert bytes(out.data) == archive


def test_a_write_that_stores_nothing_is_an_error_not_a_short_archive(tiny, data):
    with pytest.raises(OSError) as e:
        tzip.compress_stream(io.BytesIO(data), Dribble(room=100), tiny, device="cpu",
                             block_size=BS)
    assert e.value.errno == errno.EIO
    f = tzip.open(Dribble(room=100), "wb", model=tiny, device="cpu", block_size=BS)
    with pytest.raises(OSError):
        f.write(data)
        f.close()


def test_errors_name_the_file_written(tiny, data, tmp_path):
    class Named(Dribble):
        name = str(tmp_path / "out.tz")

    with pytest.raises(OSError) as e:
        tzip.compress_stream(io.BytesIO(data), Named(room=10), tiny, device="cpu", block_size=BS)
    assert e.value.filename == str(tmp_path / "out.tz")


def test_parallel_streams_into_short_counts_write_everything(tiny, data, archive):
    out = Dribble(step=11)
    parallel.compress_stream(io.BytesIO(data), out, tiny, workers=2, device="cpu", block_size=BS)
    assert bytes(out.data) == archive
    back = Dribble(step=11)
    assert parallel.decompress_stream(io.BytesIO(archive), back, tiny, workers=2,
                                      device="cpu") == len(data)
    assert bytes(back.data) == data
