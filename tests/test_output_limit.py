"""An opt-in bound on decode output (issue 29 item 9): max_output / TZIP_MAX_OUTPUT and
max_ratio / TZIP_MAX_RATIO refuse an archive whose blocks state more, before any block
of it is decoded (limits.OutputLimit)."""
from __future__ import annotations

import io
import zlib

import pytest
from click.testing import CliRunner

import tzip
from tzip import codec, limits
from tzip.cli import main
from tzip.container import LZMA, MODEL, Block, Header, Trailer
from tzip.errors import LimitExceeded

DATA = b"the same line of text, again and again\n" * 20_000  # 780 KB, LZMA ~ 0.3 KB


@pytest.fixture(scope="module")
def blob(tiny) -> bytes:
    b = tzip.compress(DATA, tiny)
    assert [x.method for x in tzip.info(b).blocks] == ["lzma"]
    return b


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decoding of a block fails the test: a refusal must come before the work."""
    def fail(*a, **k):
        raise AssertionError("a block was decoded before the output limit refused it")
    monkeypatch.setattr(codec, "_payload_bytes", fail)
    monkeypatch.setattr(codec, "decode_cm_group", fail)


def one_line(exc) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, tzip.TzipError) and msg and "\n" not in msg
    return msg


def test_max_output_allows_the_stated_length_and_refuses_one_byte_less(tiny, blob, no_decoding):
    with pytest.raises(LimitExceeded, match="max_output or TZIP_MAX_OUTPUT") as exc:
        tzip.decompress(blob, tiny, max_output=len(DATA) - 1)
    one_line(exc)


def test_max_output_and_ratio_that_fit_decode(tiny, blob):
    blocks = len(blob) - len(Header(tiny.name, tiny.digest[:16]).pack()) \
        - len(Trailer(len(DATA), zlib.crc32(DATA)).pack())
    ratio = len(DATA) / blocks  # per byte of block records: the archive less header and trailer
    assert ratio > 1000  # what one archive byte of LZMA claims here
    assert tzip.decompress(blob, tiny, max_output=len(DATA), max_ratio=ratio) == DATA


def test_max_ratio_refuses_an_archive_that_claims_more_per_byte(tiny, blob, no_decoding):
    with pytest.raises(LimitExceeded, match="more than 100 per byte") as exc:
        tzip.decompress(blob, tiny, max_ratio=100)
    one_line(exc)


def test_the_limit_counts_every_member_of_a_stream(tiny, blob):
    two = blob + blob
    out = io.BytesIO()
    assert tzip.Decompressor(tiny, max_output=2 * len(DATA)).decompress_stream(io.BytesIO(two), out) \
        == 2 * len(DATA)
    d = tzip.Decompressor(tiny, max_output=2 * len(DATA) - 1)
    with pytest.raises(LimitExceeded):
        d.decompress_stream(io.BytesIO(two), io.BytesIO())
    # a new call starts counting again
    assert d.decompress(blob) == DATA


def test_a_hostile_model_block_is_refused_before_the_model_is_looked_up(tiny):
    """A format-3 model block can state 365,000 bytes per payload byte; with a ratio bound
    it is refused from its header: no model, no step."""
    n = 1 << 20
    blk = Block(MODEL, 0, n, 0, bytes(8), codec.split_streams(n, tiny.cfg.context, 8, 3))

    def no_model():
        raise AssertionError("the model was looked up")
    with pytest.raises(LimitExceeded, match="TZIP_MAX_RATIO"):
        codec.decode_blocks([blk], no_model, None, limits.OutputLimit(max_ratio=1000))


@pytest.mark.parametrize("var, value", [("TZIP_MAX_OUTPUT", "100K"), ("TZIP_MAX_RATIO", "50")])
def test_environment_bounds_the_cli(tiny_path, blob, tmp_path, monkeypatch, var, value):
    """The CLI (and every Decompressor without arguments) takes the bound from the
    environment: a one-line error, exit 1, no output file."""
    src = tmp_path / "a.txt.tz"
    src.write_bytes(blob)
    monkeypatch.setenv(var, value)
    r = CliRunner().invoke(main, ["decompress", "--model", str(tiny_path), str(src)],
                           catch_exceptions=False)
    assert r.exit_code == 1
    assert var in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "a.txt").exists()
    monkeypatch.setenv(var, "none")
    r = CliRunner().invoke(main, ["decompress", "--model", str(tiny_path), str(src)],
                           catch_exceptions=False)
    assert r.exit_code == 0 and (tmp_path / "a.txt").read_bytes() == DATA


@pytest.mark.parametrize("var, value", [("TZIP_MAX_OUTPUT", "lots"), ("TZIP_MAX_OUTPUT", "-1"),
                                        ("TZIP_MAX_RATIO", "0"), ("TZIP_MAX_RATIO", "x")])
def test_bad_environment_values_are_one_line_errors(var, value, monkeypatch):
    monkeypatch.setenv(var, value)
    with pytest.raises(LimitExceeded, match=var) as exc:
        limits.OutputLimit()
    one_line(exc)


def test_environment_values(monkeypatch):
    monkeypatch.setenv("TZIP_MAX_OUTPUT", "1.5M")
    monkeypatch.setenv("TZIP_MAX_RATIO", "250")
    lim = limits.OutputLimit()
    assert (lim.max_output, lim.max_ratio) == (1536 << 10, 250)
    assert limits.OutputLimit(max_output=7).max_output == 7  # the argument wins


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError):
        limits.OutputLimit(max_ratio=0)
    with pytest.raises(ValueError):
        limits.OutputLimit(max_output=-1)


def test_record_len_is_the_packed_length(tiny):
    for blk in (Block(LZMA, 3, 300, 5, b"x" * 200),
                Block(MODEL, 0, 1 << 20, 1, bytes(999), codec.split_streams(1 << 20, 64, 100, 3))):
        assert codec.record_len(blk) == len(blk.pack())
