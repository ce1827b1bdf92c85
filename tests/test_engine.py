"""The hard rule: identical integer frequency tables on every path and configuration."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tzip import coder
from tzip.engine import Engine
from tzip.model import BOS
from tzip.npstep import NumpyStep
from tzip.quant import ATT_EXP_ONE, weight_split

from conftest import make_model, ModelConfig


def tables_parallel(engine: Engine, inp: torch.Tensor, chunk: int) -> torch.Tensor:
    cache = engine.new_cache(inp.shape[0], ring=False)
    return torch.cat([engine.forward_chunk(inp[:, t:t + chunk], cache)
                      for t in range(0, inp.shape[1], chunk)], 1)


def tables_incremental(engine: Engine, inp: torch.Tensor) -> torch.Tensor:
    cache = engine.new_cache(inp.shape[0], ring=True)
    return torch.stack([engine.step(inp[:, t], cache) for t in range(inp.shape[1])], 1)


def inputs(text: bytes, S: int, L: int) -> torch.Tensor:
    arr = np.frombuffer(text, dtype=np.uint8)[: S * L].astype(np.int64).reshape(S, L)
    inp = torch.from_numpy(arr)
    return torch.cat([torch.full((S, 1), BOS), inp[:, :-1]], 1)


@pytest.mark.parametrize("S", [1, 3, 8])
def test_parallel_equals_incremental(tiny, text, S):
    """Longer than the context, so the sliding window and the ring buffer both wrap."""
    e = Engine(tiny)
    inp = inputs(text, S, 3 * tiny.cfg.context + 5)
    par = tables_parallel(e, inp, chunk=tiny.cfg.context)
    assert torch.equal(par, tables_incremental(e, inp))


def test_chunk_size_and_batch_do_not_matter(tiny, text):
    e = Engine(tiny)
    inp = inputs(text, 4, 100)
    ref = tables_parallel(e, inp, chunk=7)
    assert torch.equal(ref, tables_parallel(e, inp, chunk=32))
    assert torch.equal(ref, tables_parallel(e, inp, chunk=1))
    alone = tables_parallel(e, inp[2:3], chunk=13)  # one stream alone vs inside a batch
    assert torch.equal(alone[0], ref[2])


def test_thread_count_does_not_matter(tiny, text):
    e = Engine(tiny)
    inp = inputs(text, 2, 80)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tables_parallel(e, inp, chunk=80)
        torch.set_num_threads(max(2, before))
        many = tables_parallel(e, inp, chunk=80)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


def test_frequencies_are_valid_integers(tiny, text):
    f = tables_parallel(Engine(tiny), inputs(text, 2, 64), chunk=64)
    assert f.dtype == torch.float32 and f.shape[-1] == 256
    assert torch.equal(f, f.floor())
    assert int(f.min()) >= 1 and int(f.max()) <= 1 << 16
    assert int(f.sum(-1).max()) < 1 << 24  # exact as float32 in the coder


def test_split_matmul_is_exact():
    """Long reductions are cut so float32 partial sums stay exact; compare with float64."""
    from tzip.engine import _mm
    g = torch.Generator().manual_seed(5)
    for xmax, K in ((127, 3000), (255, 2100)):
        x = torch.randint(-xmax, xmax + 1, (7, K), generator=g).float()
        w = torch.randint(-127, 128, (K, 9), generator=g).float()
        x[0], w[:, 0] = xmax, 127  # the worst case: every product at its maximum
        assert torch.equal(_mm(x, w, xmax).double(), x.double() @ w.double())


def test_long_reductions_are_chunked_exactly(text):
    """d_model * mlp_mult > 1024 exercises the K-split of exact matmuls."""
    cfg = ModelConfig(d_model=272, n_layer=1, n_head=4, n_kv_head=2, mlp_mult=4, context=16)
    m = make_model(4, "wide", cfg, text)
    e = Engine(m)
    inp = inputs(text, 2, 40)
    assert torch.equal(tables_parallel(e, inp, 16), tables_incremental(e, inp))


@pytest.mark.parametrize("S", [1, 5])
def test_coder_roundtrip(tiny, text, S):
    e = Engine(tiny)
    data = text[:3000]
    lengths = coder.split_streams(len(data), tiny.cfg.context, S)
    assert sum(lengths) == len(data)
    payload = coder.encode(e, data, lengths)
    assert coder.decode(e, payload, lengths) == data


def test_split_streams_depends_on_size_only():
    assert coder.split_streams(0, 256) == []
    assert coder.split_streams(10, 256) == [10]
    assert coder.split_streams(10, 256, 4) == [3, 3, 3, 1]
    big = coder.split_streams(10_000_000, 256)
    assert len(big) == coder.MAX_STREAMS and sum(big) == 10_000_000


def test_small_blocks_get_up_to_eight_streams_of_two_contexts():
    """Fewer sequential decoding steps for small files; long streams for large ones."""
    assert len(coder.split_streams(511, 256)) == 1
    assert coder.split_streams(1024, 256) == [512, 512]
    assert len(coder.split_streams(3721, 256)) == 7  # grammar.lsp: 532 bytes each
    assert len(coder.split_streams(24_603, 256)) == 8  # cp.html (16-context rule: 6)
    assert len(coder.split_streams(53_161, 256)) == 12  # paper1: the 16-context rule
    assert min(coder.split_streams(5000, 256)[:-1]) >= 512


def _four_squares(n: int) -> list[int]:
    """Four integers whose squares sum to n (Lagrange), found by a short search."""
    import math
    for a in range(math.isqrt(n), -1, -1):
        for b in range(math.isqrt(n - a * a), -1, -1):
            rem = n - a * a - b * b
            for c in range(math.isqrt(rem), max(-1, math.isqrt(rem) - 50), -1):
                d = math.isqrt(rem - c * c)
                if d * d == rem - c * c:
                    return [a, b, c, d]
    raise AssertionError(n)


def test_rms_is_exact_on_both_sides_of_the_float_bound(tiny):
    """The norm's isqrt(sum // d): float64 while row sums stay below 2**52, int64 above,
    the same integers either way, also where sum // d is just below or above a square.
    A row summing to d*s*s - 1 above 2**53 rounds to d*s*s in float64: only the int64
    path gets s - 1 there."""
    import math
    e = Engine(tiny, "cpu")
    d = e.cfg.d_model
    assert d >= 8
    rng = np.random.default_rng(0)
    batches = []
    for bits in (10, 20, 23, 25, 26):  # d * m * m crosses 2**52 between 2**23 and 2**25
        m = rng.integers(1 << (bits - 1), 1 << bits, size=8).tolist()
        batches.append([[x] * d for x in m] + [[x] * (d - 1) + [x + k] for x in m for k in (-1, 1)])
    s = rng.integers(1 << 24, 1 << 25, size=4).tolist()
    batches.append([[x] * (d - 4) + _four_squares(4 * x * x - 1) for x in s])  # d*s*s - 1
    batches.append(batches[0] + batches[-1])
    for rows in batches:
        want = [max(1, math.isqrt(sum(v * v for v in row) // d)) for row in rows]
        res = torch.tensor(rows, dtype=torch.float64)
        assert e._rms(res * res).view(-1).long().tolist() == want
        assert e.numpy_step._rms(res.numpy()).reshape(-1).astype(np.int64).tolist() == want


def tables_torch_step(engine: Engine, inp: torch.Tensor) -> torch.Tensor:
    """tables_incremental with PyTorch's step even where the CPU would take numpy's."""
    saved, engine.numpy_step = engine.numpy_step, None
    try:
        return tables_incremental(engine, inp)
    finally:
        engine.numpy_step = saved


@pytest.mark.parametrize("S", [1, 3])
def test_numpy_step_equals_torch_step(tiny, text, S):
    """Two implementations of a decoding step, one table: also on a model whose matmuls
    are cut into pieces, and past the ring buffer's wrap."""
    wide = make_model(4, "wide", ModelConfig(d_model=272, n_layer=1, n_head=4, n_kv_head=2,
                                             mlp_mult=4, context=16), text)
    for m in (tiny, wide):
        e = Engine(m)
        assert e.numpy_step is not None
        inp = inputs(text, S, 2 * m.cfg.context + 7)
        assert torch.equal(tables_incremental(e, inp), tables_torch_step(e, inp))


def test_steps_may_alternate_between_numpy_and_torch(tiny, text):
    """Both read and write the same cache: a mixed run gives the tables of a plain one."""
    e = Engine(tiny)
    inp = inputs(text, 2, tiny.cfg.context + 9)
    cache, rows = e.new_cache(2, ring=True), []
    for t in range(inp.shape[1]):
        saved = e.numpy_step
        if t % 3 == 1:
            e.numpy_step = None
        rows.append(e.step(inp[:, t], cache))
        e.numpy_step = saved
    assert torch.equal(torch.stack(rows, 1), tables_torch_step(e, inp))


def test_weight_split_keeps_every_float32_sum_exact():
    top = ATT_EXP_ONE
    for n in (16, 32, 256, 1024, 1040):
        b = weight_split(top, n)
        assert b is not None
        assert ((1 << b) - 1) * 127 * n < 2 ** 24 and (top >> b) * 127 * n < 2 ** 24
        assert top >> b <= 256  # exact in bf16 and TF32 too
    assert weight_split(top, 1041) is None


def test_weight_parts_at_their_bounds(text):
    """Every weight at its maximum and every value at +-127 over a 256-key ring: the
    two-part float32 products equal the float64 ones, in PyTorch and in numpy."""
    m = make_model(7, "ctx256", ModelConfig(d_model=32, n_layer=1, n_head=4, n_kv_head=1,
                                            mlp_mult=2, context=256), text)
    e = Engine(m)
    b, hi, lo = e.att_parts
    assert torch.equal(hi.double() * 2 ** b + lo.double(), e.att_exp)
    S, G, n, hd = 3, 4, 256, m.cfg.head_dim
    V = torch.full((S, 1, n, hd), 127.0)
    V[2, :, ::2] = -127.0
    idx = torch.zeros((S, 1, G, n), dtype=torch.int32)  # stream 0: every weight at the top
    idx[1:] = torch.randint(0, 300, (S - 1, 1, G, n), generator=torch.Generator().manual_seed(0))
    want = torch.matmul(e.att_exp[idx.long()], V.double())
    ev, esum = e._weigh_parts(idx.view(-1), V, idx.shape)
    assert torch.equal(ev, want) and torch.equal(esum, e.att_exp[idx.long()].sum(-1, keepdim=True))
    nev, nsum = e.numpy_step._weigh(idx.numpy(), V.numpy())
    assert np.array_equal(nev, want.numpy()) and np.array_equal(nsum, esum.numpy())


def test_archives_do_not_depend_on_the_compression_pass_length(tiny, text, monkeypatch):
    e = Engine(tiny)
    data = text[:3000]
    lengths = coder.split_streams(len(data), tiny.cfg.context, 3)
    want = coder.encode(e, data, lengths)
    monkeypatch.setitem(coder.CHUNK_CONTEXT_FRACTION, "cpu", 1)
    monkeypatch.setitem(coder.CHUNK_ROWS, "cpu", 7)
    assert coder.encode(e, data, lengths) == want


def test_contexts_too_long_for_float32_parts_keep_float64_values(text):
    """A decoding cache whose float32 sums could round falls back to float64, same tables."""
    m = make_model(5, "long", ModelConfig(d_model=16, n_layer=1, n_head=2, n_kv_head=1,
                                          mlp_mult=2, context=2048), text)
    e = Engine(m)
    assert e.att_parts is None and e.new_cache(1, ring=True).v[0].dtype == torch.float64
    assert Engine(make_model(6, "short", text=text)).new_cache(1, ring=True).v[0].dtype == torch.float32
    inp = inputs(text, 2, 40)
    want = tables_parallel(e, inp, 16)
    assert torch.equal(tables_incremental(e, inp), want)
    assert torch.equal(tables_torch_step(e, inp), want)


def test_value_precision_does_not_change_tables(tiny, text):
    """Float32 values with two-part weights give the float64 tables, on every path."""
    fast, exact = Engine(tiny), Engine(tiny)
    assert fast.vtype == torch.float32
    exact.att_parts, exact.vtype = None, torch.float64
    exact.numpy_step = NumpyStep(exact)
    inp = inputs(text, 3, 2 * tiny.cfg.context + 9)
    want = tables_parallel(exact, inp, 11)
    assert torch.equal(tables_parallel(fast, inp, 11), want)
    assert torch.equal(tables_incremental(fast, inp), want)
    assert torch.equal(tables_torch_step(fast, inp), want)
    assert torch.equal(tables_incremental(exact, inp), want)


def tables_jit(engine: Engine, inp: torch.Tensor) -> torch.Tensor:
    step, cache = engine.decoder(inp.shape[0], compiled=True)
    return torch.stack([torch.from_numpy(step(inp[:, t].numpy(), cache))
                        for t in range(inp.shape[1])], 1)


@pytest.mark.parametrize("S", [1, 5])
def test_compiled_step_equals_the_parallel_pass(tiny, text, S):
    pytest.importorskip("numba")
    e = Engine(tiny)
    inp = inputs(text, S, 2 * tiny.cfg.context + 7)
    assert torch.equal(tables_jit(e, inp), tables_parallel(e, inp, 13))


def test_compiled_step_in_parts_on_threads(tiny, text, monkeypatch):
    """Five streams in three parts (1, 2, 2) on three threads, whatever this machine has."""
    pytest.importorskip("numba")
    from tzip import jitstep
    from tzip.parts import Parts
    monkeypatch.setattr(jitstep, "PARTS_FROM", 1)
    e = Engine(tiny)
    step, _ = e.decoder(5, compiled=True)
    step.parts = Parts(threads=3)
    assert len(step.parts.cuts(5, 1)) == 4
    inp = inputs(text, 5, 2 * tiny.cfg.context + 7)
    assert torch.equal(tables_jit(e, inp), tables_parallel(e, inp, 13))


def test_compiled_step_on_one_cache_as_its_parts_change(tiny, text, monkeypatch):
    """Three parts, then one, then two, step after step on one cache (the thread count may
    change between steps): each cut's views of the cache serve it alike."""
    pytest.importorskip("numba")
    from tzip import jitstep
    from tzip.parts import Parts
    monkeypatch.setattr(jitstep, "PARTS_FROM", 1)
    e = Engine(tiny)
    step, cache = e.decoder(5, compiled=True)
    parts = [Parts(threads=n) for n in (3, 1, 2)]
    inp = inputs(text, 5, 2 * tiny.cfg.context + 7)
    out = []
    for t in range(inp.shape[1]):
        step.parts = parts[t % 3]
        out.append(torch.from_numpy(step(inp[:, t].numpy(), cache)))
    assert torch.equal(torch.stack(out, 1), tables_parallel(e, inp, 13))


def test_compiled_step_with_a_long_context_and_split_products(text):
    """A long context (float64 values elsewhere); a wide MLP cuts its products into pieces."""
    pytest.importorskip("numba")
    m = make_model(8, "long", ModelConfig(d_model=16, n_layer=2, n_head=4, n_kv_head=2,
                                          mlp_mult=36, context=1100), text)
    e = Engine(m)
    assert e.att_parts is None
    inp = inputs(text, 2, 50)
    assert torch.equal(tables_jit(e, inp), tables_parallel(e, inp, 16))


@pytest.mark.parametrize("S,N,K,piece", [(1, 1, 5, 5), (4, 7, 64, 64), (5, 8, 100, 32), (9, 3, 33, 8)])
def test_compiled_products_are_exact(S, N, K, piece):
    """Groups of three streams and outputs ending short, products in pieces: the exact
    integer result."""
    pytest.importorskip("numba")
    from tzip.jitstep import _matmul
    rng = np.random.default_rng(S * N)
    x = rng.integers(-255, 256, (S, K)).astype(np.float32)
    wT = rng.integers(-127, 128, (N, K)).astype(np.int8)
    out = np.full((S, N), np.nan)
    _matmul(x, wT, piece, out)
    assert np.array_equal(out, x.astype(np.int64) @ wT.T.astype(np.int64))


@pytest.mark.parametrize("scale", [5, 16])  # blocks of 3 keys, and of 1: the limit
def test_compiled_step_with_larger_weights_sums_fewer_keys_at_a_time(text, scale):
    """A weight table scaled up: the values' float32 sums take fewer keys each, the tables
    stay those of the float64 path."""
    pytest.importorskip("numba")
    from tzip.jitstep import JitStep
    m = make_model(8, "long", ModelConfig(d_model=16, n_layer=2, n_head=4, n_kv_head=2,
                                          mlp_mult=36, context=300), text)
    e = Engine(m)
    e.att_exp = e.att_exp * scale
    e.att_parts, e.vtype = None, torch.float64
    e.numpy_step = NumpyStep(e)
    step, _ = e.decoder(7, compiled=True)
    assert isinstance(step, JitStep) and step.block == (2 ** 24 - 1) // (int(e.att_exp.max()) * 127)
    assert step.block == {5: 3, 16: 1}[scale]
    inp = inputs(text, 7, 2 * m.cfg.context + 9)
    assert torch.equal(tables_jit(e, inp), tables_incremental(e, inp))


def test_compiled_step_declines_what_its_sums_cannot_hold(tiny):
    """Values summed in float32 need weight * 127 < 2**24, the integer max whole ALiBi
    penalties; past either, the numpy step."""
    pytest.importorskip("numba")
    from tzip.jitstep import JitStep
    e = Engine(tiny)
    assert isinstance(e.decoder(2, compiled=True)[0], JitStep)
    e.att_exp = e.att_exp * 2 ** 12
    assert not isinstance(e.decoder(2, compiled=True)[0], JitStep)
    e = Engine(tiny)
    e.slopes = e.slopes + 0.5
    assert not isinstance(e.decoder(2, compiled=True)[0], JitStep)
    assert e.encoder(2, compiled=True)[0].__class__.__name__ != "JitChunk"


def test_compiled_and_plain_coding_make_and_read_the_same_archives(tiny, text, monkeypatch):
    """Blocks long enough take the compiled step and components; short ones do not until
    a block has loaded them."""
    pytest.importorskip("numba")
    from tzip.jitstep import JitStep
    assert not coder._compiled(coder.COMPILED_FROM - 1)
    assert not coder._compiled(coder.DECODE_COMPILED_FROM - 1, decoding=True)
    assert coder._compiled(coder.DECODE_COMPILED_FROM, decoding=True)
    assert coder._compiled(1) and coder._compiled(1, decoding=True)  # loaded: any size
    monkeypatch.setattr(coder, "_warm", False)
    step, cache = Engine(tiny).decoder(2, compiled=True)
    assert isinstance(step, JitStep) and cache.k[0].dtype == torch.int8
    e = Engine(tiny)
    data = text[:2500]
    lengths = coder.split_streams(len(data), tiny.cfg.context, 3)
    plain = coder.encode(e, data, lengths)
    monkeypatch.setattr(coder, "COMPILED_FROM", 1)
    assert coder.encode(e, data, lengths) == plain
    for least in (1, 10 ** 9):  # the compiled step, then the numpy one (in a cold process)
        monkeypatch.setattr(coder, "DECODE_COMPILED_FROM", least)
        monkeypatch.setattr(coder, "_warm", False)
        assert coder.decode(e, plain, lengths) == data
        assert coder._warm == (least == 1)


def test_a_warm_process_codes_small_blocks_compiled_to_the_same_archives(tiny, text, monkeypatch):
    """Once a block has loaded the compiled loops, blocks of any size take them: 1 byte,
    more streams than steps, a short last stream: the same payloads as a cold process's
    (plain path), decoded by the compiled step."""
    pytest.importorskip("numba")
    e = Engine(tiny)
    cases = [(text[:1], None), (text[:40], 7), (text[:300], 3), (bytes(range(256)) * 3, 5)]
    cold = []
    for data, streams in cases:
        lengths = coder.split_streams(len(data), tiny.cfg.context, streams)
        cold.append((data, lengths, coder.encode(e, data, lengths)))
        assert not coder._warm
    monkeypatch.setattr(coder, "_warm", True)  # as after a large block
    for data, lengths, payload in cold:
        assert coder._compiled(len(data) // len(lengths))
        assert coder.encode(e, data, lengths) == payload
        assert coder.decode(e, payload, lengths) == data


def tables_jit_pass(engine: Engine, inp: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """The compiled compression pass over inp in passes of the given lengths (cycled)."""
    forward, cache = engine.encoder(inp.shape[0], compiled=True)
    out, t, i = [], 0, 0
    while t < inp.shape[1]:
        c = chunks[i % len(chunks)]
        out.append(torch.from_numpy(forward(inp[:, t:t + c].numpy().copy(), cache)))
        t, i = t + c, i + 1
    return torch.cat(out, 1)


@pytest.mark.parametrize("S", [1, 5])
def test_compiled_pass_equals_the_parallel_pass(tiny, text, S, monkeypatch):
    """Passes of 1 to more than a context, past the window's wrap; with 5 streams two
    threads take 2 and 3; attention groups of one stream, or of two where a part of 3
    ends with a group of one."""
    pytest.importorskip("numba")
    from tzip import jitchunk
    from tzip.parts import Parts
    e = Engine(tiny)
    forward, _ = e.encoder(S, compiled=True)
    assert isinstance(forward, jitchunk.JitChunk)
    forward.parts = Parts(threads=2)  # two parts whatever this machine has
    inp = inputs(text, S, 3 * tiny.cfg.context + 11)
    want = tables_parallel(e, inp, 13)
    assert torch.equal(tables_jit_pass(e, inp, [7, 1, 40, 16]), want)
    monkeypatch.setattr(jitchunk, "ATTENTION_BYTES", 1)
    assert torch.equal(tables_jit_pass(e, inp, [5, 33]), want)
    c = tiny.cfg  # passes of 8 once the cache is full: tables of 12 bytes a query and key
    per_stream = 12 * c.n_head * 8 * (c.context - 1 + 8)
    monkeypatch.setattr(jitchunk, "ATTENTION_BYTES", 2 * per_stream)
    assert torch.equal(tables_jit_pass(e, inp, [8]), want)


def test_compiled_pass_with_grouped_heads_and_split_products(text):
    """Two key/value heads of two queries each; a wide MLP cuts its products into pieces."""
    pytest.importorskip("numba")
    m = make_model(9, "wide", ModelConfig(d_model=16, n_layer=2, n_head=4, n_kv_head=2,
                                          mlp_mult=36, context=64), text)
    e = Engine(m)
    inp = inputs(text, 3, 150)
    assert torch.equal(tables_jit_pass(e, inp, [20, 3]), tables_parallel(e, inp, 16))


def test_compiled_and_plain_passes_share_one_cache(tiny, text):
    pytest.importorskip("numba")
    e = Engine(tiny)
    inp = inputs(text, 2, 2 * tiny.cfg.context + 3)
    forward, cache = e.encoder(2, compiled=True)
    parts = []
    for i, t in enumerate(range(0, inp.shape[1], 10)):
        x = inp[:, t:t + 10]
        parts.append(torch.from_numpy(forward(x.numpy().copy(), cache)) if i % 2
                     else e.forward_chunk(x, cache))
    assert torch.equal(torch.cat(parts, 1), tables_parallel(e, inp, 10))


def test_compiled_pass_falls_back_where_it_cannot_skip_keys(text):
    """Float64 values (a long context) are not what the compiled pass handles: PyTorch's."""
    pytest.importorskip("numba")
    from tzip.jitchunk import JitChunk
    m = make_model(5, "long", ModelConfig(d_model=16, n_layer=1, n_head=2, n_kv_head=1,
                                          mlp_mult=2, context=2048), text)
    forward, cache = Engine(m).encoder(2, compiled=True)
    assert not isinstance(forward, JitChunk)
    inp = inputs(text, 2, 30)
    assert torch.equal(torch.from_numpy(forward(inp.numpy(), cache)), tables_parallel(Engine(m), inp, 30))


def test_compiled_pass_restores_the_blas_thread_count(tiny, text):
    pytest.importorskip("numba")
    from tzip import parts
    if parts.BLAS is None:
        pytest.skip("numpy's BLAS is not a known OpenBLAS here")
    get, set_ = parts.BLAS
    before = get()
    set_(3)  # not 1, or the test could not tell
    try:
        tables_jit_pass(Engine(tiny), inputs(text, 4, 20), [20])
        assert get() == 3
    finally:
        set_(before)


def _compress_in_child(data: bytes, blob: bytes, q) -> None:
    import tzip
    q.put(tzip.compress(data, streams=2) == blob)


def test_compiled_coding_in_a_forked_child(text, tmp_path):
    """Thread pools do not survive fork(): a child of a process that has compressed makes
    its own (it hung before)."""
    pytest.importorskip("numba")
    import multiprocessing
    import tzip
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork() here")
    data = text[:3000]
    blob = tzip.compress(data, streams=2)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(coder, "COMPILED_FROM", 1)
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
