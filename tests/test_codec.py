"""The byte path of a block: streams, passes, backends and processes never change an
archive's bytes, and every payload decodes."""
from __future__ import annotations

import io

import pytest

from helpers import HAVE_TORCH, needs_torch

from tzip import codec
from tzip.container import PROFILES
from tzip.engine import TUNING, Engine, numba_available
from tzip.legacy import linear

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.mark.parametrize("S", [1, 5])
def test_coder_roundtrip(tiny, text, S):
    e = Engine(tiny)
    data = text[:3000]
    lengths = codec.split_streams(len(data), tiny.cfg.context, S)
    assert sum(lengths) == len(data)
    payload = linear.encode(e, data, lengths)
    assert linear.decode(e, payload, lengths) == data


def test_split_streams_depends_on_size_only():
    assert codec.split_streams(0, 256) == []
    assert codec.split_streams(10, 256) == [10]
    assert codec.split_streams(10, 256, 4) == [3, 3, 3, 1]
    big = codec.split_streams(10_000_000, 256)
    assert len(big) == PROFILES[5].max_streams == 16 and sum(big) == 10_000_000
    assert len(codec.split_streams(10_000_000, 256, version=4)) == 128


@pytest.mark.parametrize("version", [8, 9, 10, 11])
def test_level_8_cuts_fewer_longer_streams(version):
    """Level -8 of 0.4 to 0.7 (formats 8 to 11) takes ratio over decoding speed: at most 4 streams, none
    shorter than 16 contexts (4 KiB for tzip-small), where format 5 cuts small blocks into
    up to 8."""
    def count(n: int) -> int:
        return len(codec.split_streams(n, 256, version=version))
    assert count(10_000_000) == 4
    assert count(3721) == count(8191) == 1 and count(8192) == 2 and count(16384) == 4
    assert codec.split_streams(10_000, 256, 3, version=version) == [3334, 3334, 3332]  # asked for: as asked


def test_level_8_of_format_12_cuts_two_streams():
    """Format 12 (level -8 from 0.8) cuts a block into at most 2 streams, none shorter than
    16 contexts: half the cuts of format 11 for its ratio, one-third more decoding time."""
    def count(n: int) -> int:
        return len(codec.split_streams(n, 256, version=12))
    assert count(10_000_000) == 2
    assert count(8191) == 1 and count(8192) == count(16384) == 2
    assert codec.split_streams(10_000, 256, 3, version=12) == [3334, 3334, 3332]  # asked for: as asked


def test_level_8_archives_of_format_12_have_two_streams(small, text):
    """What -8 writes: a 20 KB block at format 12 is 2 streams (format 11: 4), and decodes."""
    import tzip
    data = (text * 8)[:20_000]
    assert len(data) == 20_000
    for version, streams in ((12, 2), (11, 4)):
        blob = tzip.compress(data, small, format=version)
        assert [b.streams for b in tzip.info(blob).blocks] == [streams]
        assert tzip.decompress(blob, small) == data


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
    want = codec.encode_cm(e, data, lengths)
    monkeypatch.setitem(TUNING, "pass_context_fraction_cpu", 1)
    monkeypatch.setitem(TUNING, "pass_rows_cpu", 7)
    short = Engine(tiny)
    assert short.plan.pass_rows == 7
    assert codec.encode_cm(short, data, lengths) == want


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=needs_torch), "numpy",
                                     pytest.param("numba", marks=needs_numba)])
def test_every_backend_makes_and_reads_the_same_archives(tiny, text, monkeypatch, backend):
    """TZIP_BACKEND picks the model's backend (format 3's adaptive models follow
    TZIP_CM): 1 byte, more streams than steps, a short last stream, a few contexts."""
    cases = [(text[:1], None), (text[:40], 7), (text[:300], 3), (bytes(range(256)) * 3, 5),
             (text[:2500], 3)]
    monkeypatch.setenv("TZIP_BACKEND", "torch" if HAVE_TORCH else "numba")  # the reference
    monkeypatch.setenv("TZIP_CM", "reference")
    e = Engine(tiny)
    want = []
    for data, streams in cases:
        lengths = codec.split_streams(len(data), tiny.cfg.context, streams)
        want.append((data, lengths, linear.encode(e, data, lengths)))
    monkeypatch.setenv("TZIP_BACKEND", backend)
    monkeypatch.delenv("TZIP_CM")
    e = Engine(tiny)
    assert e.plan.stepper == backend
    for data, lengths, payload in want:
        assert linear.encode(e, data, lengths) == payload
        assert linear.decode(e, payload, lengths) == data


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


# ---- one block decoded in parts: the model steps a part while the parts before it decode --
@needs_numba
@pytest.mark.parametrize("revision", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("mixer", ["compiled", "reference"])
@pytest.mark.parametrize("threads", [2, 7])
def test_a_block_decodes_the_same_in_parts(tiny, text, monkeypatch, mixer, threads, revision):
    """Seven streams in two parts, or in seven of one stream (the last, shorter, ends
    while the others step on): the bytes of the one-part loop, every byte counted once;
    with the mixer's revision 2 (format 5) and 3 to 7 (formats 8 to 12, a compiled loop of
    their own)."""
    from tzip.engine.compiled.parts import Parts
    monkeypatch.setenv("TZIP_BACKEND", "numba")
    monkeypatch.setenv("TZIP_CM", mixer)
    monkeypatch.setitem(TUNING, "step_parts_from", 1)
    e = Engine(tiny)
    data = text[:1900]
    lengths = codec.split_streams(len(data), tiny.cfg.context, 7)
    assert len(set(lengths)) == 2
    payload = codec.encode_cm(e, data, lengths, None, revision)
    e.stepper().parts = Parts(threads=1)
    assert codec._part_cuts(e.stepper(), 7) == (0, 7)
    assert codec.decode_cm(e, payload, lengths, None, revision) == data
    e.stepper().parts = Parts(threads=threads)
    assert len(codec._part_cuts(e.stepper(), 7)) == threads + 1
    seen = []
    assert codec.decode_cm(e, payload, lengths, seen.append, revision) == data
    assert sum(seen) == len(data)


@needs_numba
@pytest.mark.parametrize("fail", ["exhausted", 0, 1, 2])
def test_a_part_that_fails_stops_every_part(tiny, text, monkeypatch, fail):
    """A payload that ends early, or an error in the turn of part 0, 1 or 2: every part
    stops (none waits for a turn that never comes), no thread is left behind, and the
    error is the decoder's."""
    import threading
    from tzip import cm
    from tzip.engine.compiled.parts import Parts
    monkeypatch.setenv("TZIP_BACKEND", "numba")
    monkeypatch.setitem(TUNING, "step_parts_from", 1)
    e = Engine(tiny)
    data = text[:1900]
    lengths = codec.split_streams(len(data), tiny.cfg.context, 5)
    payload = codec.encode_cm(e, data, lengths)
    e.stepper().parts = Parts(threads=3)
    cuts = codec._part_cuts(e.stepper(), 5)
    assert len(cuts) == 4
    if fail == "exhausted":
        payload = payload[:len(payload) // 3]
    else:
        real = cm.Decoder.decode

        def decode(self, t, freqs, lo=0, hi=None):
            if t == 7 and lo == cuts[fail]:
                raise codec.CorruptPayload("injected")
            return real(self, t, freqs, lo, hi)
        monkeypatch.setattr(cm.Decoder, "decode", decode)
    before = threading.active_count()
    with pytest.raises(codec.CorruptPayload, match="exhausted" if fail == "exhausted" else "injected"):
        codec.decode_cm(e, payload, lengths)
    assert threading.active_count() == before


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
    monkeypatch.setattr(codec, "encode_blocks", lambda raws, *a, **k: groups.append(len(raws)) or real(raws, *a, **k))
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


# ---- the plan: every speed choice in one place ---------------------------------------------
def _spy_mixers(monkeypatch) -> list:
    """The implementations the context mixer is built with, as codec asks for them."""
    from tzip import cm
    from tzip.cm import alone
    seen = []
    real = cm._new_model

    def spy(lengths, hist, buf, revision, implementation):
        seen.append(implementation)
        return real(lengths, hist, buf, revision, implementation)
    monkeypatch.setattr(cm, "_new_model", spy)
    monkeypatch.setattr(alone, "_new_model", spy)
    return seen


@pytest.mark.parametrize("model", ["tiny", "none"])
def test_tzip_cm_reaches_the_context_mixer(tiny, text, monkeypatch, model):
    """TZIP_CM=reference makes the Compressor's and Decompressor's mixers the reference
    (model blocks and the mixer alone), the plan says so, and the bytes are the same."""
    import tzip
    spec = tiny if model == "tiny" else "none"
    data = text[:600]
    want = tzip.compress(data, spec)
    monkeypatch.setenv("TZIP_CM", "reference")
    seen = _spy_mixers(monkeypatch)
    c = tzip.Compressor(spec)
    assert c.plan.mixer == "reference" and "reference mixer" in c.backend
    assert c.compress(data) == want
    d = tzip.Decompressor(tiny if model == "tiny" else None)
    assert d.decompress(want) == data
    assert "reference mixer" in d.backend
    assert seen and set(seen) == {"reference"}


def test_the_plan_follows_the_environment(tiny, monkeypatch):
    import tzip
    from tzip.errors import TzipError
    monkeypatch.setenv("TZIP_BACKEND", "torch")
    p = Engine(tiny).plan
    assert (p.scorer, p.stepper, p.device) == ("torch", "torch", "cpu")
    monkeypatch.setenv("TZIP_BACKEND", "numpy")
    p = Engine(tiny).plan
    assert (p.scorer, p.stepper) == ("torch", "numpy")
    assert Engine(tiny).stepper().name == "numpy" and Engine(tiny).scorer().name == "torch"
    monkeypatch.setenv("TZIP_BACKEND", "auto")
    p = Engine(tiny).plan
    if numba_available():
        assert p.scorer in ("numba", "vnni") and p.stepper == p.scorer and p.mixer == "compiled"
        assert p.overlap
        monkeypatch.setenv("TZIP_BACKEND", "numba")
        assert Engine(tiny).stepper().name == "numba" and Engine(tiny).scorer().name == "numba"
    c = tzip.Compressor(tiny)
    assert c.backend == c.plan.describe()
    assert f"{c.plan.scorer} scorer, {c.plan.stepper} stepper, {c.plan.mixer} mixer on cpu" == c.backend
    for name, value in (("TZIP_BACKEND", "gpu"), ("TZIP_CM", "jit")):
        monkeypatch.setenv(name, value)
        with pytest.raises(TzipError, match=name):
            Engine(tiny).plan
        monkeypatch.delenv(name)


def test_memory_estimates_keep_no_stepper_alive(tiny):
    """limits.decode_memory measures a stepper's states once, without keeping the stepper
    (and its weights) after the engine that built it is gone."""
    import gc
    import weakref

    from tzip.limits import decode_memory
    e = Engine(tiny)
    stepper = e.backend("numpy", "stepper")
    first = decode_memory(stepper, tiny.cfg, 3, 50, 0)
    assert decode_memory(stepper, tiny.cfg, 3, 50, 0) == first
    gone = weakref.ref(stepper)
    del e, stepper
    gc.collect()
    assert gone() is None


def test_each_method_codes_with_one_mixer_revision():
    """A block's method names its context-mixer revision whatever its archive's version
    (the decoder sees the block, not the version): the profiles must agree."""
    from tzip.container import ALONE_REVISION, CM_ALONE, CM_REVISION
    for version, p in PROFILES.items():
        if p.revision is None:
            assert p.model_method not in CM_REVISION, version
        else:
            assert CM_REVISION[p.model_method] == p.revision, version
        assert (p.alone_revision is not None) == (CM_ALONE in p.methods), version
        assert p.alone_revision in (None, ALONE_REVISION), version


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_blocks_take_the_transforms_of_their_format(version):
    """Format 3 converts CRLF -> LF only; later formats UTF-16 too (their profile says)."""
    line = "Four score and seven years ago our fathers brought forth\r\n" * 200
    for raw, utf16 in ((line.encode(), False), (line.encode("utf-16-le"), True)):
        blk = codec.encode_block(raw, None, None, None, version)
        assert blk.method != 0 and blk.transform in PROFILES[version].transforms
        want = (2 | 1) if utf16 and PROFILES[version].utf16 else int(not utf16)
        assert blk.transform == want, (version, utf16, blk.transform)
