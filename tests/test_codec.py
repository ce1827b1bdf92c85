"""The byte path of a block: streams, passes, backends and processes never change an
archive's bytes, and every payload decodes."""
from __future__ import annotations

import pytest

from tzip import codec
from tzip.engine import Engine, numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.mark.parametrize("S", [1, 5])
def test_coder_roundtrip(tiny, text, S):
    e = Engine(tiny)
    data = text[:3000]
    lengths = codec.split_streams(len(data), tiny.cfg.context, S)
    assert sum(lengths) == len(data)
    payload = codec.encode(e, data, lengths)
    assert codec.decode(e, payload, lengths) == data


def test_split_streams_depends_on_size_only():
    assert codec.split_streams(0, 256) == []
    assert codec.split_streams(10, 256) == [10]
    assert codec.split_streams(10, 256, 4) == [3, 3, 3, 1]
    big = codec.split_streams(10_000_000, 256)
    assert len(big) == codec.AUTO_MAX_STREAMS[5] == 16 and sum(big) == 10_000_000
    assert len(codec.split_streams(10_000_000, 256, version=4)) == 128


@pytest.mark.parametrize("version", [4, 5])
def test_small_blocks_get_up_to_eight_streams_of_two_contexts(version):
    """Fewer sequential decoding steps for small files; long streams for large ones."""
    def count(n: int) -> int:
        return len(codec.split_streams(n, 256, version=version))
    assert count(511) == 1
    assert codec.split_streams(1024, 256, version=version) == [512, 512]
    assert count(3721) == 7  # grammar.lsp: 532 bytes each
    assert count(24_603) == 8  # cp.html (16-context rule: 6)
    assert count(53_161) == 12  # paper1: the 16-context rule
    assert min(codec.split_streams(5000, 256, version=version)[:-1]) >= 512
    assert count(768_771) == (128 if version == 4 else 16)  # book1


def test_archives_do_not_depend_on_the_compression_pass_length(tiny, text, monkeypatch):
    e = Engine(tiny)
    data = text[:3000]
    lengths = codec.split_streams(len(data), tiny.cfg.context, 3)
    want = codec.encode(e, data, lengths)
    monkeypatch.setitem(codec.PASS_CONTEXT_FRACTION, "cpu", 1)
    monkeypatch.setitem(codec.PASS_ROWS, "cpu", 7)
    assert codec.encode(e, data, lengths) == want


@pytest.mark.parametrize("backend", ["torch", "numpy", pytest.param("numba", marks=needs_numba)])
def test_every_backend_makes_and_reads_the_same_archives(tiny, text, monkeypatch, backend):
    """TZIP_BACKEND picks the model's backend and whether the adaptive models run
    compiled: 1 byte, more streams than steps, a short last stream, a few contexts."""
    e = Engine(tiny)
    cases = [(text[:1], None), (text[:40], 7), (text[:300], 3), (bytes(range(256)) * 3, 5),
             (text[:2500], 3)]
    monkeypatch.setenv("TZIP_BACKEND", "torch")
    want = []
    for data, streams in cases:
        lengths = codec.split_streams(len(data), tiny.cfg.context, streams)
        want.append((data, lengths, codec.encode(e, data, lengths)))
    monkeypatch.setenv("TZIP_BACKEND", backend)
    for data, lengths, payload in want:
        assert codec.encode(e, data, lengths) == payload
        assert codec.decode(e, payload, lengths) == data


def _compress_in_child(data: bytes, blob: bytes, q) -> None:
    import tzip
    q.put(tzip.compress(data, streams=2) == blob)


@needs_numba
def test_compiled_coding_in_a_forked_child(text, monkeypatch):
    """Thread pools do not survive fork(): a child of a process that has compressed makes
    its own (it hung before)."""
    import multiprocessing
    import tzip
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork() here")
    data = text[:3000]
    monkeypatch.setenv("TZIP_BACKEND", "numba")
    blob = tzip.compress(data, streams=2)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_compress_in_child, args=(data, blob, q))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung")
    assert p.exitcode == 0 and q.get(timeout=5)
