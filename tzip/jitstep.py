"""The decoding step compiled with numba, for CPUs: NumpyStep's arithmetic, fused.

A decoding step runs a few hundred small array operations, and with few streams their
fixed cost is most of the time. Here each layer is four BLAS products (numpy, exact in
float32 as in tzip/npstep.py) and four compiled loops that do everything in between:
norms, requantisation, the cache update and the whole attention. The loops compute the
same IEEE-754 operations on the same values in the same order as Engine and NumpyStep
(attention weights and values are summed in float64, exact below 2**53, so no
two-part split is needed), hence the same tables bit for bit; tests/test_engine.py
compares them. numba is optional (`pip install tzip[fast]`): without it the CPU uses
NumpyStep.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .npstep import NumpyStep
from .parts import Parts, blas_on_calling_threads
from .quant import MLP_BITS

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)

PARTS_FROM = 12  # streams per part at least


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
def _attend(acc, r_qkv, t, slot, pos, slopes, K, V, qk, att_exp, r_o, o):
    """qkv from the accumulator, cache update at slot (pos[slot] = t already), then
    attention -> o (S, H*hd).

    acc (S, (H + 2 kv) hd); K (S, kv, hd, n) and V (S, kv, n, hd) int8 (Engine.decoder;
    any real dtype works); slopes (kv, G)."""
    S = acc.shape[0]
    kv, hd, n = K.shape[1], K.shape[2], K.shape[3]
    G = slopes.shape[1]
    H = kv * G
    last = att_exp.shape[0] - 1
    bias = np.empty((kv, G, n), dtype=np.float32)
    for h in range(kv):
        for g in range(G):
            for j in range(n):
                dist = np.float32(t - pos[j])
                bias[h, g, j] = slopes[h, g] * dist if 0 <= dist < n else np.float32(2.0 ** 23)
    q = np.empty((G, hd), dtype=np.float32)
    z = np.empty((G, n), dtype=np.float32)
    e = np.empty(n, dtype=np.float64)
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
                for i in range(hd):
                    jq = (h * G + g) * hd + i
                    q[g, i] = min(max(_rq(acc[s, jq], r_qkv, jq), -127.0), 127.0)
            for g in range(G):
                zg = z[g]
                zg[:] = 0.0
                for i in range(hd):  # float32 sums of integers below 2**24: exact
                    a, kr = q[g, i], Ks[i]
                    for j in range(n):
                        zg[j] += a * kr[j]
                top = np.float32(-np.inf)
                for j in range(n):
                    zg[j] = np.floor(np.float32(zg[j] * qk)) - bias[h, g, j]
                    top = max(top, zg[j])
                esum = 0.0
                for j in range(n):
                    e[j] = att_exp[min(np.int64(top - zg[j]), last)]
                    esum += e[j]
                ev[:] = 0.0
                for j in range(n):  # float64 sums below 2**53: exact
                    w, vr = e[j], Vs[j]
                    for i in range(hd):
                        ev[i] += w * vr[i]
                for i in range(hd):
                    y = np.floor(ev[i] * r_o[0] / esum + 0.5)
                    o[s, (h * G + g) * hd + i] = min(max(y, -127.0), 127.0)


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


class JitStep(NumpyStep):
    """Engine.step for an engine on the CPU, compiled; see Engine.step. The matrix
    products are NumpyStep's (_acc)."""

    def __init__(self, engine):
        super().__init__(engine)
        self.slopes = self.slopes.reshape(self.cfg.n_kv_head, -1)  # (kv, G) float32
        self.qk = [np.float32(self.p[f"l{l}.qk"]) for l in range(self.cfg.n_layer)]
        self.parts = Parts()

    def __call__(self, tokens: np.ndarray, cache) -> np.ndarray:
        """tokens (S,) int64 at position cache.t -> freqs (S, 256) float32. From
        PARTS_FROM streams on, the streams run in parts on threads of their own
        (tzip/parts.py)."""
        c = self.cfg
        slot = cache.t % c.context
        pos = cache.pos.numpy()
        pos[slot] = cache.t
        K = [k.numpy() for k in cache.k]
        V = [v.numpy() for v in cache.v]
        out = np.empty((len(tokens), 256), dtype=np.float32)

        def part(a: int, b: int) -> None:
            self._streams(tokens[a:b], cache.t, slot, pos, [k[a:b] for k in K],
                          [v[a:b] for v in V], out[a:b])

        with blas_on_calling_threads():
            self.parts.run(part, len(tokens), PARTS_FROM)
        cache.t += 1
        return out

    def _streams(self, tokens, t, slot, pos, K, V, out) -> None:
        """The whole step for some streams, with their caches' keys K and values V per
        layer, into out."""
        c = self.cfg
        S, d = len(tokens), c.d_model
        res = self.emb[tokens]
        x = np.empty((S, d), dtype=np.float32)
        o = np.empty((S, c.n_head * c.head_dim), dtype=np.float32)
        h = np.empty((S, c.mlp_mult * d), dtype=np.float32)
        top = float((1 << MLP_BITS) - 1)
        for l in range(c.n_layer):
            _norm(res, self.inv[f"l{l}.n1"], x)
            acc = self._acc(f"l{l}.wqkv", x)
            _attend(acc, self.r[f"l{l}.wqkv"], t, slot, pos, self.slopes, K[l], V[l], self.qk[l],
                    self.att_exp, self.r[f"l{l}.o_in"], o)
            _residual(res, self._acc(f"l{l}.wo", o), self.r[f"l{l}.wo"])
            _norm(res, self.inv[f"l{l}.n2"], x)
            _mlp(self._acc(f"l{l}.w1", x), self.r[f"l{l}.w1"], self.r[f"l{l}.sq"], top, h)
            _residual(res, self._acc(f"l{l}.w2", h, (1 << MLP_BITS) - 1), self.r[f"l{l}.w2"])
        _norm(res, self.inv["nf"], x)
        _head(self._acc("head", x), self.r["head"], self.p["out_exp"], out)
