"""The byte path of a block: streams, passes, backends and processes never change an
archive's bytes, and every payload decodes."""
from __future__ import annotations

import io

import pytest

from helpers import HAVE_TORCH, needs_torch

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


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=needs_torch), "numpy",
                                     pytest.param("numba", marks=needs_numba)])
def test_every_backend_makes_and_reads_the_same_archives(tiny, text, monkeypatch, backend):
    """TZIP_BACKEND picks the model's backend and whether the adaptive models run
    compiled: 1 byte, more streams than steps, a short last stream, a few contexts."""
    e = Engine(tiny)
    cases = [(text[:1], None), (text[:40], 7), (text[:300], 3), (bytes(range(256)) * 3, 5),
             (text[:2500], 3)]
    monkeypatch.setenv("TZIP_BACKEND", "torch" if HAVE_TORCH else "numba")  # the reference
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


# ---- lockstep: model blocks decoded together -----------------------------------------------
def _cm_items(tiny, text):
    """Blocks of unequal lengths and stream counts, of both mixer revisions."""
    e = Engine(tiny)
    out = []
    for data, streams, rev in ((text[:2000], 4, 2), (text[3000:3900], 3, 1), (text[5000:5077], 1, 2),
                               (text[100:1700], 16, 2)):
        lengths = codec.split_streams(len(data), tiny.cfg.context, streams)
        out.append((data, (codec.encode_cm(e, data, lengths, None, rev), lengths, rev)))
    return e, out


@pytest.mark.parametrize("backend", ["numpy", "numba", pytest.param("torch", marks=needs_torch)])
def test_lockstep_group_decodes_each_block_as_alone(tiny, text, monkeypatch, backend):
    """One stepper state for all blocks' streams: the same bytes as each block alone,
    whichever backend steps them."""
    if backend == "numba" and not numba_available():
        pytest.skip("numba not installed")
    monkeypatch.setenv("TZIP_BACKEND", backend)
    e, items = _cm_items(tiny, text)
    seen = []
    got = codec.decode_cm_group(e, [item for _, item in items], seen.append)
    assert got == [data for data, _ in items]
    assert sum(seen) == sum(len(data) for data, _ in items)


def test_lockstep_group_refuses_a_corrupt_block(tiny, text):
    e, items = _cm_items(tiny, text)
    payload, lengths, rev = items[1][1]
    bad = [item for _, item in items]
    bad[1] = (payload[:len(payload) // 2], lengths, rev)
    with pytest.raises(codec.CorruptPayload):
        codec.decode_cm_group(e, bad)


@pytest.mark.parametrize("blocks", [1, 3, 64])
def test_archives_decode_the_same_in_lockstep_groups(tiny, text, monkeypatch, blocks):
    """The decompressor groups up to TUNING's lockstep_blocks model blocks (LZMA and
    stored blocks in between are decoded in order); the output is the same."""
    import random

    import tzip
    from tzip.engine import TUNING
    data = text[:1500] + random.Random(1).randbytes(700) + text[2000:6000] + text[:900]
    blob = tzip.compress(data, tiny, block_size=1000)
    methods = [b.method for b in tzip.info(blob).blocks]
    model = methods.count("model+cm2")
    assert model >= 4 and len(methods) > model  # LZMA or stored blocks among them
    monkeypatch.setitem(TUNING, "lockstep_blocks_cpu", blocks)
    calls = []
    real = codec.decode_cm_group
    monkeypatch.setattr(codec, "decode_cm_group", lambda e, items, p=None: calls.append(len(items)) or real(e, items, p))
    assert tzip.decompress(blob, tiny) == data
    assert sum(calls) == model and max(calls) == min(blocks, max(_runs(methods)))


def _runs(methods: list[str]) -> list[int]:
    """Lengths of the runs of consecutive model blocks."""
    runs, n = [], 0
    for m in methods + ["end"]:
        if m == "model+cm2":
            n += 1
        else:
            runs, n = runs + [n], 0
    return runs


def test_lockstep_groups_stay_within_the_memory_limit(tiny, text, monkeypatch):
    """A group grows only while its memory estimate fits the limit."""
    import tzip
    from tzip.engine import TUNING
    data = text[:6000]
    blob = tzip.compress(data, tiny, block_size=1000)
    monkeypatch.setitem(TUNING, "lockstep_blocks_cpu", 64)
    calls = []
    real = codec.decode_cm_group
    monkeypatch.setattr(codec, "decode_cm_group", lambda e, items, p=None: calls.append(len(items)) or real(e, items, p))
    e = Engine(tiny)
    item = (b"", codec.split_streams(1000, tiny.cfg.context, None), 2)
    two = codec.cm_group_memory(e, [item, item])[0]
    monkeypatch.setenv("TZIP_MEMORY_LIMIT", str(two + (two // 4)))
    assert tzip.decompress(blob, tiny) == data
    assert max(calls) == 2 and sum(calls) == 6


@pytest.mark.parametrize("blocks", [1, 3, 64])
def test_archives_are_the_same_when_blocks_are_coded_in_lockstep(tiny, text, monkeypatch, blocks):
    """The compressor codes up to TUNING's lockstep_blocks blocks together: the archive is
    byte for byte the one of one block at a time."""
    import random

    import tzip
    from tzip.engine import TUNING
    data = text[:1500] + random.Random(1).randbytes(700) + text[2000:6000] + text[:900]
    want = tzip.compress(data, tiny, block_size=1000)
    monkeypatch.setitem(TUNING, "lockstep_blocks_cpu", blocks)
    groups = []
    real = codec.encode_blocks
    monkeypatch.setattr(codec, "encode_blocks", lambda raws, *a: groups.append(len(raws)) or real(raws, *a))
    seen = []
    c = tzip.Compressor(tiny, block_size=1000)
    out = io.BytesIO()
    assert c.compress_stream(io.BytesIO(data), out, seen.append) == len(data)
    assert out.getvalue() == want and sum(seen) == len(data)
    assert max(groups) == min(blocks, 8) and sum(groups) == 8


def test_a_corrupt_block_in_a_lockstep_group_is_one_line_error(tiny, text, monkeypatch):
    import tzip
    from tzip.engine import TUNING
    data = text[:6000]
    blob = bytearray(tzip.compress(data, tiny, block_size=1000))
    monkeypatch.setitem(TUNING, "lockstep_blocks_cpu", 64)
    for at in (len(blob) // 3, len(blob) // 2, len(blob) - 40):
        bad = bytearray(blob)
        bad[at] ^= 0x5A
        with pytest.raises(tzip.TzipError) as e:
            tzip.decompress(bytes(bad), tiny)
        assert "\n" not in str(e.value) and "corrupt" in str(e.value)
