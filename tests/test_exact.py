"""The exactness helpers (tzip/engine/exact.py) and the reference's exact operations,
against Python integers at their bounds."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch (pip install 'tzip[torch]')")

from helpers import SHAPES, make_model
from tzip.engine import Engine
from tzip.model.intmodel import ATT_EXP_ONE
from tzip.engine.exact import weight_split


def test_split_matmul_is_exact():
    """Long reductions are cut so float32 partial sums stay exact; compare with float64."""
    from tzip.engine.reference import _mm
    g = torch.Generator().manual_seed(5)
    for xmax, K in ((127, 3000), (255, 2100)):
        x = torch.randint(-xmax, xmax + 1, (7, K), generator=g).float()
        w = torch.randint(-127, 128, (K, 9), generator=g).float()
        x[0], w[:, 0] = xmax, 127  # the worst case: every product at its maximum
        assert torch.equal(_mm(x, w, xmax).double(), x.double() @ w.double())


def _four_squares(n: int) -> list[int]:
    """Four integers whose squares sum to n (Lagrange), found by a short search."""
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
    e = Engine(tiny, "cpu")
    ref, numpy_step = e.backend("torch", "stepper").engine, e.backend("numpy", "stepper")
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
        assert ref._rms(res * res).view(-1).long().tolist() == want
        assert numpy_step._rms(res.numpy()).reshape(-1).astype(np.int64).tolist() == want


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
    two-part float32 products equal the float64 ones, in the reference and in numpy."""
    import dataclasses
    m = make_model(7, "ctx256", dataclasses.replace(SHAPES["tiny"], n_layer=1, n_head=4,
                                                    mlp_mult=2, context=256), text)
    e = Engine(m)
    ref = e.backend("torch", "stepper").engine
    b, hi, lo = ref.att_parts
    assert torch.equal(hi.double() * 2 ** b + lo.double(), ref.att_exp)
    S, G, n, hd = 3, 4, 256, m.cfg.head_dim
    V = torch.full((S, 1, n, hd), 127.0)
    V[2, :, ::2] = -127.0
    idx = torch.zeros((S, 1, G, n), dtype=torch.int32)  # stream 0: every weight at the top
    idx[1:] = torch.randint(0, 300, (S - 1, 1, G, n), generator=torch.Generator().manual_seed(0))
    want = torch.matmul(ref.att_exp[idx.long()], V.double())
    ev, esum = ref._weigh_parts(idx.view(-1), V, idx.shape)
    assert torch.equal(ev, want) and torch.equal(esum, ref.att_exp[idx.long()].sum(-1, keepdim=True))
    nev, nsum = e.backend("numpy", "stepper")._weigh(idx.numpy(), V.numpy())
    assert np.array_equal(nev, want.numpy()) and np.array_equal(nsum, esum.numpy())


def test_long_contexts_keep_float64_values(text):
    """A context whose float32 value sums could round has no weight split: float64 values."""
    m = make_model(5, "long", SHAPES["long"], text)
    e = Engine(m)
    assert e.weights.att_split is None
    assert e.backend("numpy", "stepper").new_state(1).v[0].dtype == np.float64
    assert Engine(make_model(6, "short", text=text)).backend("numpy", "stepper").new_state(1).v[0].dtype == np.float32
