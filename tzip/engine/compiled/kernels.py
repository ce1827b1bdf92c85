"""The numba kernels the compiled step and the compiled scorer share.

Norms, requantisation, residuals, the MLP's squared ReLU, the head and an exact product
for a few rows, each the reference's arithmetic (tzip/engine/reference.py) on one row at
a time. Where a loop sums or compares in another order or precision than the reference,
it does so on integers whose sums stay exact (tzip/engine/exact.py, rule 2), so every
value is the same bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from ... import jitcache

numba = jitcache.numba()  # its cache folder chosen first (tzip/jitcache.py)
jit = numba.njit(cache=jitcache.caching(), nogil=True, boundscheck=False)

# For loops whose sums and maxima run in vector registers (reassoc) with fused
# multiply-adds (contract): every product that is added to something is an exact product
# of integers (whole ALiBi slopes included: Weights.whole_slopes), and every sum one of
# integers below 2**24 in float32 (exact_pieces, JitStep's keys per sum, JitScorer.usable)
# or 2**53 in float64, so any order, fused or not, gives the same value; the values are
# finite (nnan, ninf) and integers, for which the sign of a zero never matters (nsz). No
# flag that would turn a division into a reciprocal multiply; loops with divisions do not
# take it.
jit_exact = numba.njit(cache=jitcache.caching(), nogil=True, boundscheck=False,
                       fastmath={"reassoc", "contract", "nnan", "ninf", "nsz"})


@jit
def isqrt(n):
    r = np.int64(math.sqrt(np.float64(n)))
    if r * r > n:
        r -= 1
    if (r + 1) * (r + 1) <= n:
        r += 1
    return r


@jit
def clamp(y, lo, hi):
    """A whole float y clamped to [lo, hi], as an integer: the loops that clamp this way
    vectorise (a float max does not), with the same values."""
    return min(max(np.int64(y), lo), hi)


@jit
def norm(res, inv, out):
    """The reference's _norm: round(res * inv / max(1, isqrt(sum(res**2) // d))) in [-127, 127]."""
    S, d = res.shape
    for s in range(S):
        ss = np.int64(0)
        for i in range(d):  # float64 squares, as the engine's (exact in its range)
            ss += np.int64(res[s, i] * res[s, i])
        rms = np.float64(max(isqrt(ss // d), 1))
        for i in range(d):
            out[s, i] = clamp(np.floor(res[s, i] * inv[i] / rms + 0.5), -127, 127)


@jit
def rq(acc, r, j):
    """round(acc * r[j]) as the reference's _rq (r per output column, or one for all)."""
    return np.floor(np.float64(acc) * r[j if r.shape[0] > 1 else 0] + 0.5)


@jit
def residual(res, acc, r):
    """res += round(acc * r)."""
    for s in range(res.shape[0]):
        for i in range(res.shape[1]):
            res[s, i] += rq(acc[s, i], r, i)


@jit
def mlp(acc, r1, r_sq, top, h):
    """h = round(clamp(round(acc * r1), 0, 4095)**2 * r_sq) clamped to [0, top]."""
    most = np.int64(top)
    for s in range(acc.shape[0]):
        for i in range(acc.shape[1]):
            a = np.float64(clamp(rq(acc[s, i], r1, i), 0, 4095))
            h[s, i] = clamp(np.floor(a * a * r_sq[0] + 0.5), 0, most)


@jit
def head(acc, r, out_exp, out):
    """out = out_exp[min(max(logits) - logits, last)], logits = round(acc * r): the max
    over integers and the table lookup (a gather) in a loop of its own, so that the
    other loops vectorise."""
    last = np.int64(out_exp.shape[0] - 1)
    index = np.empty(acc.shape[1], dtype=np.int64)
    for s in range(acc.shape[0]):
        top = np.int64(-(1 << 62))
        for i in range(acc.shape[1]):
            top = max(top, np.int64(rq(acc[s, i], r, i)))
        for i in range(acc.shape[1]):
            index[i] = min(top - np.int64(rq(acc[s, i], r, i)), last)
        for i in range(acc.shape[1]):
            out[s, i] = out_exp[np.uint64(index[i])]


@jit
def _put(out, s, n, add, a, b, c):
    """out[s, n:n+3] = (or +=) a, b, c, as far as the row goes."""
    N = out.shape[1]
    out[s, n] = a + (out[s, n] if add else 0.0)
    if n + 1 < N:
        out[s, n + 1] = b + (out[s, n + 1] if add else 0.0)
    if n + 2 < N:
        out[s, n + 2] = c + (out[s, n + 2] if add else 0.0)


@jit_exact
def _piece(x, wT, k0, k1, add, out):
    """out (S, N) float64 = (or +=) x[:, k0:k1] @ wT[:, k0:k1].T summed in float32: three
    streams and three outputs at a time, nine sums in registers, each loaded weight and
    input used three times. A short last group repeats its last row, written once."""
    S, N = out.shape
    for s in range(0, S, 3):
        x0, x1, x2 = x[s, k0:k1], x[min(s + 1, S - 1), k0:k1], x[min(s + 2, S - 1), k0:k1]
        for n in range(0, N, 3):
            w0, w1, w2 = wT[n, k0:k1], wT[min(n + 1, N - 1), k0:k1], wT[min(n + 2, N - 1), k0:k1]
            a0 = a1 = a2 = b0 = b1 = b2 = c0 = c1 = c2 = np.float32(0.0)
            for k in range(k1 - k0):
                u, v, z = np.float32(w0[k]), np.float32(w1[k]), np.float32(w2[k])
                a0 += x0[k] * u
                a1 += x1[k] * u
                a2 += x2[k] * u
                b0 += x0[k] * v
                b1 += x1[k] * v
                b2 += x2[k] * v
                c0 += x0[k] * z
                c1 += x1[k] * z
                c2 += x2[k] * z
            _put(out, s, n, add, a0, b0, c0)
            if s + 1 < S:
                _put(out, s + 1, n, add, a1, b1, c1)
            if s + 2 < S:
                _put(out, s + 2, n, add, a2, b2, c2)


@jit
def matmul(x, wT, piece, out):
    """out (S, N) float64 = x (S, K) @ wT.T exactly, for int8 weights wT (N, K): each
    piece of `piece` inputs summed in float32 (exact_pieces), the pieces in float64.
    For a few streams numpy's BLAS spends as long packing the weights as multiplying
    (it takes as long for 6 streams as for 12); this does not pack."""
    K = x.shape[1]
    for k0 in range(0, K, piece):
        _piece(x, wT, k0, min(K, k0 + piece), k0 > 0, out)
