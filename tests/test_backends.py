"""The hard rule, as a matrix: every backend x model shape x stream count x window x
{pass, step} gives the reference's tables bit for bit (tzip/engine/exact.py says why it
can)."""
from __future__ import annotations

import dataclasses
import os
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (pip install 'tzip[torch]')")

from helpers import SHAPES, inputs, make_model, tables_scored, tables_stepped
from tzip.engine import TUNING, Engine, numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


def _vnni() -> bool:
    if not numba_available():
        return False
    from tzip.engine.compiled import vnni
    return vnni.available()


needs_vnni = pytest.mark.skipif(not _vnni(), reason="no numba, or a CPU without AVX-512 VNNI or AVX-VNNI")
# the model's whole context, and a window shorter than every shape's context and than the
# inputs and passes below, and no multiple of the compiled step's ring of 64 (format 7)
WINDOWS = [None, 11]
SCORERS = ["torch", pytest.param("numba", marks=needs_numba), pytest.param("vnni", marks=needs_vnni)]
STEPPERS = ["torch", "numpy", pytest.param("numba", marks=needs_numba),
            pytest.param("vnni", marks=needs_vnni), "graph"]


@functools.cache
def model(shape: str):
    from helpers import repo_text
    return make_model(4, shape, SHAPES[shape], repo_text())


@functools.cache
def reference_tables(shape: str, S: int, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inputs longer than twice the context (the window and the ring wrap) and the
    reference pass's tables over them, in passes of 13."""
    from helpers import repo_text
    m = model(shape)
    L = min(2 * m.cfg.context + 7, 60)
    inp = inputs(repo_text(), S, L)
    return inp, tables_scored(Engine(m, window=window).backend("torch", "scorer"), inp, [13])


def _usable(engine: Engine, backend: str, kind: str) -> bool:
    return backend not in ("numba", "vnni") or engine._numba_can(kind, vnni=backend == "vnni")


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("S", [1, 5])
@pytest.mark.parametrize("backend", SCORERS)
def test_scorer_equals_the_reference(backend, shape, S, window):
    """Passes of 1 to more than a context, cycled."""
    e = Engine(model(shape), window=window)
    if not _usable(e, backend, "scorer"):
        pytest.skip(f"{backend} does not run {shape}")
    inp, want = reference_tables(shape, S, window)
    assert np.array_equal(tables_scored(e.backend(backend, "scorer"), inp, [7, 1, 40, 16]), want)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("S", [1, 5])
@pytest.mark.parametrize("backend", STEPPERS)
def test_stepper_equals_the_reference(backend, shape, S, window):
    e = Engine(model(shape), window=window)
    if not _usable(e, backend, "stepper"):
        pytest.skip(f"{backend} does not run {shape}")
    inp, want = reference_tables(shape, S, window)
    assert np.array_equal(tables_stepped(e.backend(backend, "stepper"), inp), want)


@pytest.mark.parametrize("backend", ["torch", "numpy", pytest.param("numba", marks=needs_numba),
                                     pytest.param("vnni", marks=needs_vnni)])
def test_a_window_of_one_attends_to_the_position_alone(tiny, text, backend):
    """The shortest window, passes and steps: the reference's tables."""
    e = Engine(tiny, window=1)
    inp = inputs(text, 3, 40)
    want = tables_scored(e.backend("torch", "scorer"), inp, [13])
    if backend != "numpy" and _usable(e, backend, "scorer"):
        assert np.array_equal(tables_scored(e.backend(backend, "scorer"), inp, [7, 1, 16]), want)
    if _usable(e, backend, "stepper"):
        assert np.array_equal(tables_stepped(e.backend(backend, "stepper"), inp), want)


@pytest.mark.parametrize("window", [1, 5, 20])
def test_a_window_sees_its_last_positions_only(tiny, text, window):
    """With a window of W, each layer at position t attends to positions t-W+1..t, so
    with n layers the table at t depends on inputs t-n(W-1)..t alone: streams that differ
    before position p agree from p + n(W-1) on, not one position earlier; over the whole
    context (32 here) they still differ there. So a window is what it says."""
    a = inputs(text, 1, 60)
    b = a.copy()
    p = 10
    b[0, 1:p] = (b[0, 1:p] + 1) % 256  # every input before p differs
    both = np.concatenate([a, b])
    short = tables_scored(Engine(tiny, window=window).backend("torch", "scorer"), both, [13])
    whole = tables_scored(Engine(tiny).backend("torch", "scorer"), both, [13])
    t = p + tiny.cfg.n_layer * (window - 1)
    assert np.array_equal(short[0, t:], short[1, t:])
    assert not np.array_equal(short[0, t - 1], short[1, t - 1])
    assert not np.array_equal(whole[0, t:t + 8], whole[1, t:t + 8])


def test_a_window_must_fit_the_model(tiny):
    """1 to the model's context; the context itself is the model unchanged."""
    for bad in (0, -3, tiny.cfg.context + 1):
        with pytest.raises(ValueError, match="window"):
            Engine(tiny, window=bad)
    assert Engine(tiny, window=tiny.cfg.context).weights.cfg == tiny.cfg
    e = Engine(tiny, window=7)
    assert e.window == e.weights.cfg.context == 7 and e.cfg.context == tiny.cfg.context


def test_frequencies_are_valid_integers(tiny, text):
    f = tables_scored(Engine(tiny).backend("torch", "scorer"), inputs(text, 2, 64), [64])
    assert f.dtype == np.float32 and f.shape[-1] == 256
    assert np.array_equal(f, np.floor(f))
    assert f.min() >= 1 and f.max() <= 1 << 16
    assert f.sum(-1).max() < 1 << 24  # exact as float32 in the coder


def test_pass_length_and_batch_do_not_matter(tiny, text):
    scorer = Engine(tiny).backend("torch", "scorer")
    inp = inputs(text, 4, 100)
    ref = tables_scored(scorer, inp, [7])
    assert np.array_equal(ref, tables_scored(scorer, inp, [32]))
    assert np.array_equal(ref, tables_scored(scorer, inp, [1]))
    alone = tables_scored(scorer, inp[2:3], [13])  # one stream alone vs inside a batch
    assert np.array_equal(alone[0], ref[2])


def test_thread_count_does_not_matter(tiny, text):
    scorer = Engine(tiny).backend("torch", "scorer")
    inp = inputs(text, 2, 80)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = tables_scored(scorer, inp, [80])
        torch.set_num_threads(max(2, before))
        many = tables_scored(scorer, inp, [80])
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, many)


def _with(m, **changes):
    """An engine over m whose prepared weights differ as given (dataclasses.replace)."""
    e = Engine(m)
    object.__setattr__(e, "weights", dataclasses.replace(e.weights, **changes))
    return e


def test_value_precision_does_not_change_tables(tiny, text):
    """Float32 values with two-part weights give the tables of float64 values."""
    fast, exact = Engine(tiny), _with(tiny, att_split=None)
    assert fast.weights.att_split is not None
    inp = inputs(text, 3, 2 * tiny.cfg.context + 9)
    want = tables_scored(exact.backend("torch", "scorer"), inp, [11])
    assert np.array_equal(tables_scored(fast.backend("torch", "scorer"), inp, [11]), want)
    for name in ("torch", "numpy"):
        assert np.array_equal(tables_stepped(fast.backend(name, "stepper"), inp), want)
        assert np.array_equal(tables_stepped(exact.backend(name, "stepper"), inp), want)


@needs_numba
def test_compiled_step_in_parts_on_threads(tiny, text, monkeypatch):
    """Five streams in three parts (1, 2, 2) on three threads, then one, then two, step
    after step on one state, whatever this machine has."""
    from tzip.engine.compiled.parts import Parts
    monkeypatch.setitem(TUNING, "step_parts_from", 1)
    stepper = Engine(tiny).backend("numba", "stepper")
    parts = [Parts(threads=n) for n in (3, 1, 2)]
    assert len(parts[0].cuts(5, 1)) == 4
    inp = inputs(text, 5, 2 * tiny.cfg.context + 7)
    state, out = stepper.new_state(5), []
    for t in range(inp.shape[1]):
        stepper.parts = parts[t % 3]
        out.append(stepper(np.ascontiguousarray(inp[:, t]), state))
    want = tables_scored(Engine(tiny).backend("torch", "scorer"), inp, [13])
    assert np.array_equal(np.stack(out, 1), want)


@needs_numba
@pytest.mark.parametrize("scale", [5, 16])  # blocks of 3 keys, and of 1: the limit
def test_compiled_step_with_larger_weights_sums_fewer_keys_at_a_time(text, scale):
    """A weight table scaled up: the values' float32 sums take fewer keys each, the tables
    stay those of the float64 path."""
    m = make_model(8, "long", dataclasses.replace(SHAPES["grouped"], context=300), text)
    w = Engine(m).weights
    e = _with(m, att_exp=w.att_exp * scale, att_split=None)
    stepper = e.backend("numba", "stepper")
    assert stepper.w.keys_per_sum == {5: 3, 16: 1}[scale]
    inp = inputs(text, 7, 2 * m.cfg.context + 9)
    assert np.array_equal(tables_stepped(stepper, inp), tables_stepped(e.backend("numpy", "stepper"), inp))


@needs_numba
def test_compiled_backends_decline_what_their_sums_cannot_hold(tiny):
    """Values summed in float32 need weight * 127 < 2**24, the integer max whole ALiBi
    penalties; past either, the plan takes another backend."""
    e, compiled = Engine(tiny), ("numba", "vnni")
    assert e.plan.stepper in compiled and e.plan.scorer in compiled
    big = _with(tiny, att_exp=e.weights.att_exp * 2 ** 12)
    assert big.plan.stepper not in compiled
    half = _with(tiny, slopes=e.weights.slopes + 0.5)
    assert half.plan.stepper not in compiled and half.plan.scorer not in compiled
    long = Engine(model("long"))  # float64 values: the compiled pass cannot skip keys
    assert long.plan.scorer == "torch"


@needs_numba
@pytest.mark.parametrize("S,N,K,piece", [(1, 1, 5, 5), (4, 7, 64, 64), (5, 8, 100, 32), (9, 3, 33, 8)])
def test_compiled_products_are_exact(S, N, K, piece):
    """Groups of three streams and outputs ending short, products in pieces: the exact
    integer result."""
    from tzip.engine.compiled.kernels import matmul
    rng = np.random.default_rng(S * N)
    x = rng.integers(-255, 256, (S, K)).astype(np.float32)
    wT = rng.integers(-127, 128, (N, K)).astype(np.int8)
    out = np.full((S, N), np.nan)
    matmul(x, wT, piece, out)
    assert np.array_equal(out, x.astype(np.int64) @ wT.T.astype(np.int64))


@pytest.mark.parametrize("backend", [pytest.param("numba", marks=needs_numba),
                                     pytest.param("vnni", marks=needs_vnni)])
def test_compiled_pass_in_attention_groups(tiny, text, monkeypatch, backend):
    """Attention groups of one stream, or of two where a part of 3 ends with a group of
    one, on two threads."""
    from tzip.engine.compiled.parts import Parts
    scorer = Engine(tiny).backend(backend, "scorer")
    scorer.parts = Parts(threads=2)
    inp = inputs(text, 5, 3 * tiny.cfg.context + 11)
    want = tables_scored(Engine(tiny).backend("torch", "scorer"), inp, [13])
    monkeypatch.setitem(TUNING, "attention_bytes", 1)
    assert np.array_equal(tables_scored(scorer, inp, [5, 33]), want)
    c = tiny.cfg  # passes of 8 once the cache is full: tables of 12 bytes a query and key
    monkeypatch.setitem(TUNING, "attention_bytes", 2 * 12 * c.n_head * 8 * (c.context - 1 + 8))
    assert np.array_equal(tables_scored(scorer, inp, [8]), want)


@needs_numba
def test_compiled_pass_restores_the_blas_thread_count(tiny, text):
    from tzip.engine.compiled import parts
    if parts.BLAS is None:
        pytest.skip("numpy's BLAS is not a known OpenBLAS here")
    get, set_ = parts.BLAS
    before = get()
    set_(3)  # not 1, or the test could not tell
    try:
        tables_scored(Engine(tiny).backend("numba", "scorer"), inputs(text, 4, 20), [20])
        assert get() == 3
    finally:
        set_(before)


def test_backend_choice_follows_tuning_and_environment(tiny, monkeypatch):
    """The plan's choice (tzip/engine/plan.py): numba's loops wherever they run the model,
    else torch for passes and numpy for CPU steps; TZIP_BACKEND overrides."""
    from tzip.engine.plan import choose
    yes = lambda backend, kind: True  # noqa: E731
    only_torch = lambda backend, kind: backend == "torch" or kind == "stepper" and backend != "numba"  # noqa: E731
    monkeypatch.setitem(TUNING, "vnni", ())
    assert choose("scorer", "auto", "cpu", yes) == "numba" and choose("stepper", "auto", "cpu", yes) == "numba"
    assert choose("scorer", "auto", "cpu", only_torch) == "torch"
    assert choose("stepper", "auto", "cpu", only_torch) == "numpy"
    assert choose("stepper", "auto", "cuda", only_torch) == "torch"
    assert choose("stepper", "torch", "cpu", yes) == "torch" and choose("scorer", "numpy", "cpu", yes) == "torch"
    assert choose("stepper", "graph", "cuda", yes) == "graph" and choose("scorer", "graph", "cuda", yes) == "torch"
    monkeypatch.setitem(TUNING, "cuda_graphs", 1)
    assert choose("stepper", "auto", "cuda", only_torch) == "graph"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("S", [1, 5, 37])
@pytest.mark.parametrize("backend", ["torch", "graph"])
def test_cuda_stepper_equals_the_cpu_reference(backend, shape, S):
    """On a GPU: the eager reference step and its CUDA-graph replay give the CPU's tables
    (37 streams: padded to 64 in the graph)."""
    from helpers import repo_text
    m = model(shape)
    inp = inputs(repo_text(), S, min(2 * m.cfg.context + 7, 60))
    want = tables_stepped(Engine(m).backend("torch", "stepper"), inp)
    assert np.array_equal(tables_stepped(Engine(m, "cuda").backend(backend, "stepper"), inp), want)


@needs_vnni
@pytest.mark.parametrize("S,N,K,xmax,dtype", [
    (1, 1, 5, 127, np.float64), (4, 7, 64, 127, np.float64), (5, 33, 100, 127, np.float64),
    (9, 64, 33, 4095, np.float64), (3, 40, 512, 4095, np.float64), (6, 300, 7, 127, np.float64),
    (8, 32, 128, 127, np.float32), (19, 70, 128, 127, np.float32), (40, 96, 9, 127, np.int32),
    (17, 64, 512, 4095, np.float64)])
def test_vnni_products_are_exact(S, N, K, xmax, dtype):
    """Rows, outputs and inputs not multiples of the tiles (4 or 8 rows, 32 outputs, 4 or
    2 inputs), int8 inputs shifted to uint8 and wide inputs as int16 pairs, into float64,
    float32 or int32: the exact integer result."""
    from tzip.engine.compiled import vnni
    rng = np.random.default_rng(S * N + K)
    wide = xmax > 127
    x = rng.integers(0 if wide else -127, xmax + 1, (S, K)).astype(np.float32)
    w = rng.integers(-127, 128, (K, N)).astype(np.float32)
    laid, offset = vnni.layout(w, wide)
    xb = np.zeros((S, laid.shape[0] * (2 if wide else 4)), np.int16 if wide else np.uint8)
    out = np.full((S, N), -1, dtype)
    (vnni.to_i16 if wide else vnni.to_u8)(x, xb)
    vnni.product(xb, laid, offset, out)
    assert np.array_equal(out, x.astype(np.int64) @ w.astype(np.int64))


@needs_vnni
def test_vnni_products_run_on_the_dot_product_instructions():
    """Both tile shapes compile to VPDPBUSD (uint8 inputs) and VPDPWSSD (int16 ones), on
    512-bit registers (what makes them worth having)."""
    from tzip.engine.compiled import vnni
    import numba
    for kernel in (vnni._few, vnni._many):
        fresh = numba.njit(kernel.py_func)  # numba shows no machine code of cached loops
        for wide in (False, True):
            laid, offset = vnni.layout(np.ones((64, 32), np.int8), wide)
            x = np.ones((8, 64), np.int16 if wide else np.uint8)
            out = np.zeros((8, 32))
            fresh(x, laid, offset, out)
            assert (out == 64 - (0 if wide else 128 * 64)).all()
        asm = {str(sig): text for sig, text in fresh.inspect_asm().items()}
        u8 = "".join(t for sig, t in asm.items() if "uint8" in sig)
        i16 = "".join(t for sig, t in asm.items() if "int16" in sig)
        assert "vpdpbusd" in u8 and ("zmm" if vnni.wide() else "ymm") in u8
        assert "vpdpwssd" in i16


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split()[2:])
    except (OSError, StopIteration):
        return set()


@needs_numba
@pytest.mark.skipif("avx_vnni" not in _cpu_flags(), reason="a CPU without AVX-VNNI")
def test_vnni_products_on_avx_vnni_alone(tmp_path):
    """Compiled for a target with AVX-VNNI but no AVX-512 (Intel's client CPUs), the
    kernels run their 512-bit vectors as 256-bit halves with VEX-encoded dot products:
    the same exact integers, both tile shapes, both input types."""
    import subprocess
    import sys
    import llvmlite.binding as ll
    features = ",".join(("-" if f.startswith(("avx512", "amx", "avx10", "evex512")) or not on else "+") + f
                        for f, on in ll.get_host_cpu_features().items())
    script = (
        "import numpy as np\n"
        "from tzip.engine.compiled import vnni\n"
        "assert vnni.available() and not vnni.wide()\n"
        "rng = np.random.default_rng(0)\n"
        "for S, K, N, xmax in ((5, 100, 33, 127), (19, 128, 70, 127), (17, 512, 64, 4095)):\n"
        "    wide = xmax > 127\n"
        "    x = rng.integers(0 if wide else -127, xmax + 1, (S, K)).astype(np.float32)\n"
        "    w = rng.integers(-127, 128, (K, N)).astype(np.float32)\n"
        "    laid, offset = vnni.layout(w, wide)\n"
        "    xb = np.zeros((S, laid.shape[0] * (2 if wide else 4)), np.int16 if wide else np.uint8)\n"
        "    (vnni.to_i16 if wide else vnni.to_u8)(x, xb)\n"
        "    out = np.zeros((S, N))\n"
        "    vnni.product(xb, laid, offset, out)\n"
        "    assert np.array_equal(out, x.astype(np.int64) @ w.astype(np.int64)), (S, K, N)\n")
    import tzip
    env = dict(os.environ, NUMBA_CPU_NAME="alderlake", NUMBA_CPU_FEATURES=features,
               NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=os.path.dirname(os.path.dirname(tzip.__file__)))
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


@needs_vnni
def test_vnni_is_chosen_where_the_tuning_says(tiny, monkeypatch):
    def plan():
        p = Engine(tiny).plan
        return p.stepper, p.scorer
    monkeypatch.delenv("TZIP_BACKEND", raising=False)
    monkeypatch.setitem(TUNING, "vnni", ("stepper", "scorer"))
    assert plan() == ("vnni", "vnni")
    monkeypatch.setitem(TUNING, "vnni", ("stepper",))
    assert plan() == ("vnni", "numba")
    monkeypatch.setitem(TUNING, "vnni", ())
    assert plan() == ("numba", "numba")
    monkeypatch.setenv("TZIP_BACKEND", "vnni")
    e = Engine(tiny)
    assert e.stepper().name == "vnni" and e.scorer().name == "vnni"
    monkeypatch.setenv("TZIP_BACKEND", "numba")
    monkeypatch.setitem(TUNING, "vnni", ("stepper", "scorer"))
    assert plan() == ("numba", "numba")
    monkeypatch.delenv("TZIP_BACKEND")
    wide = _with(tiny, att_exp=Engine(tiny).weights.att_exp * 8)  # weights past int16: float32 sums
    assert int(wide.weights.att_exp.max()) >= 2 ** 15
    assert wide.plan.stepper == "numba"


@needs_numba
def test_vnni_follows_numbas_target(monkeypatch):
    """A portable numba target (NUMBA_CPU_NAME=generic) has no VNNI unless its feature
    list says so: compiling the intrinsics for it would fail."""
    from numba.core import config
    from tzip.engine.compiled import vnni
    monkeypatch.setattr(config, "CPU_NAME", "generic")
    for features, available, wide in (("", False, False), ("+avx2,-avxvnni", False, False),
                                      ("+avx512f,+avx512bw,+avx512vnni", True, True),
                                      ("+avx2,+avxvnni,-avx512f", True, False)):
        monkeypatch.setattr(config, "CPU_FEATURES", features)
        vnni._features.cache_clear()
        assert (vnni.available(), vnni.wide()) == (available, wide), features
    vnni._features.cache_clear()
