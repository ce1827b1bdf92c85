"""The decoding step compiled with numba, for CPUs: NumpyStep's arithmetic, fused.

A decoding step runs a few hundred small array operations, and with few streams their
fixed cost is most of the time. Here the whole step for a part of the streams is one
compiled call (`_step`): the products (int8 weights, float32 sums exact as in
tzip/npstep.py), norms, requantisation, the cache update and the whole attention. Where
these loops sum or compare in another order or precision than Engine and NumpyStep, they
do it on integers whose sums stay exact (float32 below 2**24, float64 below 2**53), so
every value, and hence every table, is the same bit for bit; tests/test_engine.py
compares them. As one call releases the GIL for the whole step, parts of the streams run
on threads of their own without waiting for each other. numba is optional
(`pip install tzip[fast]`): without it the CPU uses NumpyStep.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .npstep import NumpyStep
from .parts import Parts
from .quant import MLP_BITS, exact_pieces

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)

PARTS_FROM = 4  # streams per part at least

# For loops whose sums and maxima run in vector registers (reassoc) with fused
# multiply-adds (contract): every product that is added to something is an exact product
# of integers (whole ALiBi slopes included: Compiled.usable), and every sum one of integers
# below 2**24 in float32 (exact_pieces, JitStep.block, JitChunk.usable) or 2**53 in
# float64, so any order, fused or not, gives the same value; the values are finite (nnan,
# ninf) and integers, for which the sign of a zero never matters (nsz). No flag that would
# turn a division into a reciprocal multiply; loops with divisions do not take it. Also
# used by tzip/jitchunk.py.
_jit_exact = numba.njit(cache=True, nogil=True, boundscheck=False,
                        fastmath={"reassoc", "contract", "nnan", "ninf", "nsz"})


@_jit
def _isqrt(n):
    r = np.int64(math.sqrt(np.float64(n)))
    if r * r > n:
        r -= 1
    if (r + 1) * (r + 1) <= n:
        r += 1
    return r


@_jit
def _norm(res, inv, out):
    """Engine._norm: round(res * inv / max(1, isqrt(sum(res**2) // d))) in [-127, 127]."""
    S, d = res.shape
    for s in range(S):
        ss = np.int64(0)
        for i in range(d):  # float64 squares, as the engine's (exact in its range)
            ss += np.int64(res[s, i] * res[s, i])
        rms = np.float64(max(_isqrt(ss // d), 1))
        for i in range(d):
            y = np.floor(res[s, i] * inv[i] / rms + 0.5)
            out[s, i] = min(max(y, -127.0), 127.0)


@_jit
def _rq(acc, r, j):
    """round(acc * r[j]) as Engine._rq (r per output column, or one for all)."""
    return np.floor(np.float64(acc) * r[j if r.shape[0] > 1 else 0] + 0.5)


@_jit
def _bias(t, pos, slopes, n):
    """(kv, G, n) ALiBi penalties of the ring's keys for the query at t (Engine._alibi);
    2**23 outside the window. The same for every layer."""
    kv, G = slopes.shape
    bias = np.empty((kv, G, n), dtype=np.float32)
    for h in range(kv):
        for g in range(G):
            for j in range(n):
                dist = np.float32(t - pos[j])
                bias[h, g, j] = slopes[h, g] * dist if 0 <= dist < n else np.float32(2.0 ** 23)
    return bias


@_jit_exact
def _weights(q, Ks, qk, bias, att_exp, z, e):
    """One query's attention weights e (n,) float64 = att_exp[top - (floor(q.k * qk) -
    bias)] (past the table's end: its last entry) over the keys Ks (hd, n); returns their
    sum. z (n,) float32 is scratch. q.k sums integers below 2**24 in float32 and the max
    is taken over integers (a float max does not vectorise)."""
    hd, n = Ks.shape
    last = att_exp.shape[0] - 1
    z[:] = 0.0
    for i in range(hd):
        a, kr = q[i], Ks[i]
        for j in range(n):
            z[j] += a * kr[j]
    top = np.int32(-(1 << 30))
    for j in range(n):
        v = np.floor(np.float32(z[j] * qk)) - bias[j]
        z[j] = v
        top = max(top, np.int32(v))
    total = 0.0
    for j in range(n):
        e[j] = att_exp[min(np.int64(np.float32(top) - z[j]), last)]
        total += e[j]
    return total


@_jit_exact
def _values(e, Vs, block, idx, ev32, ev):
    """ev (hd,) float64 = e @ Vs (Vs (n, hd)) over the keys of nonzero weight (about 60%
    with the shipped models' ALiBi slopes), summed in float32 over `block` keys at a time
    (exact: every sum below 2**24, JitStep.usable) and in float64 across blocks. idx (n,)
    and ev32 (hd,) are scratch."""
    n, hd = Vs.shape
    m = 0
    for j in range(n):
        idx[m] = j
        m += e[j] != 0.0
    ev[:] = 0.0
    for j0 in range(0, m, block):
        ev32[:] = 0.0
        for jj in range(j0, min(m, j0 + block)):
            w, vr = np.float32(e[idx[jj]]), Vs[idx[jj]]
            for i in range(hd):
                ev32[i] += w * vr[i]
        for i in range(hd):
            ev[i] += ev32[i]


@_jit
def _attend(acc, r_qkv, slot, bias, K, V, qk, att_exp, block, r_o, o):
    """qkv from the accumulator, the cache update at slot, then attention -> o (S, H*hd).

    acc (S, (H + 2 kv) hd); K (S, kv, hd, n) and V (S, kv, n, hd) of int8 values
    (Engine.decoder), which _values' blocks assume; bias from _bias."""
    S = acc.shape[0]
    kv, hd, n = K.shape[1], K.shape[2], K.shape[3]
    G = bias.shape[1]
    H = kv * G
    q = np.empty(hd, dtype=np.float32)
    z = np.empty(n, dtype=np.float32)
    e = np.empty(n, dtype=np.float64)
    idx = np.empty(n, dtype=np.int64)
    ev32 = np.empty(hd, dtype=np.float32)
    ev = np.empty(hd, dtype=np.float64)
    for s in range(S):
        for h in range(kv):
            Ks, Vs = K[s, h], V[s, h]
            for i in range(hd):
                jk = H * hd + h * hd + i
                jv = H * hd + kv * hd + h * hd + i
                Ks[i, slot] = min(max(_rq(acc[s, jk], r_qkv, jk), -127.0), 127.0)
                Vs[slot, i] = min(max(_rq(acc[s, jv], r_qkv, jv), -127.0), 127.0)
            for g in range(G):
                col = (h * G + g) * hd
                for i in range(hd):
                    q[i] = min(max(_rq(acc[s, col + i], r_qkv, col + i), -127.0), 127.0)
                esum = _weights(q, Ks, qk, bias[h, g], att_exp, z, e)
                _values(e, Vs, block, idx, ev32, ev)
                for i in range(hd):
                    y = np.floor(ev[i] * r_o[0] / esum + 0.5)
                    o[s, col + i] = min(max(y, -127.0), 127.0)


@_jit
def _residual(res, acc, r):
    """res += round(acc * r)."""
    for s in range(res.shape[0]):
        for i in range(res.shape[1]):
            res[s, i] += _rq(acc[s, i], r, i)


@_jit
def _mlp(acc, r1, r_sq, top, h):
    """h = round(clamp(round(acc * r1), 0, 4095)**2 * r_sq) clamped to [0, top]."""
    for s in range(acc.shape[0]):
        for i in range(acc.shape[1]):
            a = min(max(_rq(acc[s, i], r1, i), 0.0), 4095.0)
            h[s, i] = min(max(np.floor(a * a * r_sq[0] + 0.5), 0.0), top)


@_jit
def _head(acc, r, out_exp, out):
    last = out_exp.shape[0] - 1
    for s in range(acc.shape[0]):
        top = -np.inf
        for i in range(acc.shape[1]):
            top = max(top, _rq(acc[s, i], r, i))
        for i in range(acc.shape[1]):
            out[s, i] = out_exp[min(np.int64(top - _rq(acc[s, i], r, i)), last)]


@_jit
def _put(out, s, n, add, a, b, c):
    """out[s, n:n+3] = (or +=) a, b, c, as far as the row goes."""
    N = out.shape[1]
    out[s, n] = a + (out[s, n] if add else 0.0)
    if n + 1 < N:
        out[s, n + 1] = b + (out[s, n + 1] if add else 0.0)
    if n + 2 < N:
        out[s, n + 2] = c + (out[s, n + 2] if add else 0.0)


@_jit_exact
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


@_jit
def _matmul(x, wT, piece, out):
    """out (S, N) float64 = x (S, K) @ wT.T exactly, for int8 weights wT (N, K): each
    piece of `piece` inputs summed in float32 (exact_pieces), the pieces in float64.
    For a few streams numpy's BLAS spends as long packing the weights as multiplying
    (it takes as long for 6 streams as for 12); this does not pack."""
    K = x.shape[1]
    for k0 in range(0, K, piece):
        _piece(x, wT, k0, min(K, k0 + piece), k0 > 0, out)


@_jit
def _step(tokens, t, slot, pos, emb, K, V, n1, wqkv, r_qkv, slopes, qk, att_exp, block, r_o,
          wo, r_wo, n2, w1, r1, r_sq, w2, r2, nf, head, r_head, out_exp, pieces, out):
    """The whole step for some streams, into out (S, 256): per layer l, weights
    wqkv[l], wo[l], w1[l], w2[l] (int8, transposed), multipliers r_*[l], norms n1[l],
    n2[l]; the cache's keys K[l] and values V[l]; pieces: each product's exact piece
    (qkv, o, w1, w2, head). One call, so the GIL is taken once per part."""
    S, d = tokens.shape[0], emb.shape[1]
    L = wqkv.shape[0]
    res = np.empty((S, d), dtype=np.float64)
    for s in range(S):
        res[s] = emb[tokens[s]]
    x = np.empty((S, d), dtype=np.float32)
    acc_qkv = np.empty((S, wqkv.shape[1]), dtype=np.float64)
    o = np.empty((S, wo.shape[2]), dtype=np.float32)
    acc_d = np.empty((S, d), dtype=np.float64)
    acc_h = np.empty((S, w1.shape[1]), dtype=np.float64)
    h = np.empty((S, w1.shape[1]), dtype=np.float32)
    acc_out = np.empty((S, head.shape[0]), dtype=np.float64)
    top = float((1 << MLP_BITS) - 1)
    bias = _bias(t, pos, slopes, K[0].shape[3])
    for l in range(L):
        _norm(res, n1[l], x)
        _matmul(x, wqkv[l], pieces[0], acc_qkv)
        _attend(acc_qkv, r_qkv[l], slot, bias, K[l], V[l], qk[l], att_exp, block, r_o[l], o)
        _matmul(o, wo[l], pieces[1], acc_d)
        _residual(res, acc_d, r_wo[l])
        _norm(res, n2[l], x)
        _matmul(x, w1[l], pieces[2], acc_h)
        _mlp(acc_h, r1[l], r_sq[l], top, h)
        _matmul(h, w2[l], pieces[3], acc_d)
        _residual(res, acc_d, r2[l])
    _norm(res, nf, x)
    _matmul(x, head, pieces[4], acc_out)
    _head(acc_out, r_head, out_exp, out)


class Compiled(NumpyStep):
    """What the compiled step and the compiled pass (tzip/jitchunk.py) share: ALiBi slopes
    per (kv head, group), q.k scales per layer, and the parts the streams run in."""

    @staticmethod
    def usable(engine) -> bool:
        """Whole ALiBi slopes (so penalties are integers, which the loops' integer max
        needs; tzip/quant.py rounds them) and a weight table that is not all zero."""
        s = engine.slopes
        return bool((s == s.floor()).all()) and float(engine.att_exp.max()) >= 1

    def __init__(self, engine):
        super().__init__(engine)
        c = self.cfg
        self.slopes = self.slopes.reshape(c.n_kv_head, -1)  # (kv, G) float32
        self.qk = [np.float32(self.p[f"l{l}.qk"]) for l in range(c.n_layer)]
        self.parts = Parts()


class JitStep(Compiled):
    """Engine.step for an engine on the CPU, compiled; see Engine.step."""

    @staticmethod
    def usable(engine) -> bool:
        """Compiled.usable, and attention values that can be summed in float32 a few keys
        at a time: a weight times an int8 value below 2**24 (the shipped tables: 2**13)."""
        return Compiled.usable(engine) and int(engine.att_exp.max()) * 127 < 2 ** 24

    def __init__(self, engine):
        super().__init__(engine)
        c = self.cfg
        # keys per float32 sum in _values: every partial sum below 2**24
        self.block = (2 ** 24 - 1) // (int(self.att_exp.max()) * 127)
        layers = range(c.n_layer)

        def stack(key: str, what: dict) -> np.ndarray:
            return np.stack([what[f"l{l}.{key}"] for l in layers])

        def int8T(w: np.ndarray) -> np.ndarray:  # int8 values, transposed: (N, K)
            return np.ascontiguousarray(w.T, dtype=np.int8)

        def weights(key: str) -> np.ndarray:
            return np.stack([int8T(self.p[f"l{l}.{key}"]) for l in layers])

        # the inputs' largest values: int8, but squared-ReLU activations into w2
        xmax = {"l0.wqkv": 127, "l0.wo": 127, "l0.w1": 127, "l0.w2": (1 << MLP_BITS) - 1,
                "head": 127}
        pieces = np.array([exact_pieces(self.p[k].shape[0], m)[0].stop for k, m in xmax.items()])
        # _step's arguments after the cache's keys and values, in order (positional: a
        # call with keywords costs more)
        self.args = (stack("n1", self.inv), weights("wqkv"), stack("wqkv", self.r), self.slopes,
                     np.array(self.qk, dtype=np.float32), self.att_exp, self.block,
                     stack("o_in", self.r), weights("wo"), stack("wo", self.r),
                     stack("n2", self.inv), weights("w1"), stack("w1", self.r),
                     stack("sq", self.r), weights("w2"), stack("w2", self.r), self.inv["nf"],
                     int8T(self.p["head"]), self.r["head"],
                     self.p["out_exp"], pieces)

    def __call__(self, tokens: np.ndarray, cache) -> np.ndarray:
        """tokens (S,) int64 at position cache.t -> freqs (S, 256) float32. The streams
        run in parts of at least PARTS_FROM on threads of their own (tzip/parts.py)."""
        slot = cache.t % self.cfg.context
        views = cache.scratch.get("jitstep")
        if views is None or views.key is not cache.k[0]:
            views = cache.scratch["jitstep"] = _Views(cache)
        views.pos[slot] = cache.t
        out = np.empty((len(tokens), 256), dtype=np.float32)

        def part(a: int, b: int) -> None:
            K, V = views.part(a, b)
            _step(tokens[a:b], cache.t, slot, views.pos, self.emb, K, V, *self.args, out[a:b])

        self.parts.run(part, len(tokens), PARTS_FROM)
        cache.t += 1
        return out


class _Views:
    """A decoding cache's positions, keys and values as numpy views, and its keys and
    values per part of the streams: made once per cache, as a ring's tensors are written
    in place, never replaced (making them every step cost tens of us)."""

    def __init__(self, cache):
        self.key = cache.k[0]  # the cache these views are of
        self.pos = cache.pos.numpy()
        self.K = [k.numpy() for k in cache.k]
        self.V = [v.numpy() for v in cache.v]
        self.parts: dict[tuple[int, int], tuple[tuple, tuple]] = {}

    def part(self, a: int, b: int) -> tuple[tuple, tuple]:
        got = self.parts.get((a, b))
        if got is None:
            got = self.parts[a, b] = (tuple(k[a:b] for k in self.K), tuple(v[a:b] for v in self.V))
        return got
