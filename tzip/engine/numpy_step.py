"""The decoding step in numpy, for CPUs: the engine's integer arithmetic with less overhead.

A decoding step of a small model with few streams is a few hundred tiny tensor
operations, and on a CPU PyTorch's fixed cost per operation (a few microseconds) is most
of the time; numpy's is a fraction of that. Every operation here is the one
the reference (tzip/engine/reference.py) performs, in the same order and the same dtypes: float32 matrix products
of integers up to 256 in size (int8 values; attention weights in two parts) whose partial
sums stay below 2**24 (exact in any order, so the BLAS may
sum as it likes), float64 requantisation by m / 2**shift then floor, integer exp tables.
So its tables are bit-identical to the reference step's (tests/test_backends.py).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ..model.intmodel import MLP_BITS
from .exact import exact_matmul
from .weights import Weights


@dataclass
class RingState:
    """Per-layer keys (S, kv, hd, context) and values (S, kv, context, hd) of the last
    `context` positions, the absolute position held in each slot, and the next position;
    views: per-part views of k and v a backend may keep (the ring is written in place)."""
    k: list[np.ndarray]
    v: list[np.ndarray]
    pos: np.ndarray
    t: int = 0
    views: dict = field(default_factory=dict)


class NumpyStep:
    """The reference step (reference.Reference.step) in numpy, behind the Stepper interface."""
    name = "numpy"

    def __init__(self, weights: Weights):
        c = self.cfg = weights.cfg
        self.p, self.r, self.inv = weights.arrays, weights.r, weights.inv
        self.emb, self.att_exp = weights.emb, weights.att_exp
        self.att_parts = None
        if weights.att_parts:
            self.att_parts = (2.0 ** weights.att_split,) + weights.att_parts
        kv, G = c.n_kv_head, weights.groups
        self.slopes = weights.slopes.reshape(kv, G, 1)
        self.split = np.cumsum([c.n_head * c.head_dim, kv * c.head_dim])

    def new_state(self, streams: int) -> RingState:
        c = self.cfg
        vtype = np.float32 if self.att_parts else np.float64
        return RingState([np.zeros((streams, c.n_kv_head, c.head_dim, c.context), np.float32)
                          for _ in range(c.n_layer)],
                         [np.zeros((streams, c.n_kv_head, c.context, c.head_dim), vtype)
                          for _ in range(c.n_layer)],
                         np.full(c.context, -(1 << 40), dtype=np.int64))

    def threads(self, streams: int):
        return nullcontext()

    def _rms(self, res: np.ndarray) -> np.ndarray:
        """As Reference._rms on a CPU: float64 when every row sum of squares is below 2**52,
        else int64 sums of the same float64 squares."""
        sq = res * res
        ss = sq.sum(-1, keepdims=True)
        if ss.max() < 2.0 ** 52:
            return np.maximum(np.floor(np.sqrt(np.floor_divide(ss, float(self.cfg.d_model)))), 1.0)
        n = sq.astype(np.int64).sum(-1, keepdims=True) // self.cfg.d_model
        r = np.sqrt(n.astype(np.float64)).astype(np.int64)
        r = np.where(r * r > n, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= n, r + 1, r)
        return np.maximum(r, 1).astype(np.float64)

    def _norm(self, res: np.ndarray, site: str) -> np.ndarray:
        y = res * self.inv[site]
        y /= self._rms(res)
        y += 0.5
        return np.clip(np.floor(y, out=y), -127, 127, out=y).astype(np.float32)

    def _acc(self, key: str, x: np.ndarray, xmax: int = 127,
             out: np.ndarray | None = None) -> np.ndarray:
        """x @ the key's weights, exactly (exact_matmul)."""
        return exact_matmul(x, self.p[key], xmax, out)

    def _lin(self, key: str, x: np.ndarray, xmax: int = 127) -> np.ndarray:
        """int8 matmul in exact float32 pieces, then round(acc * m / 2**shift), float64."""
        acc = self._acc(key, x, xmax).astype(np.float64, copy=False)
        acc *= self.r[key]
        acc += 0.5
        return np.floor(acc, out=acc)

    def _weigh(self, idx: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(e @ V, sum(e)) in float64 for the weights e at table indices idx >= 0 (past the
        table's end: its last entry), as Reference._attend: for float32 V from the weights'
        two float32 parts, stacked so that one product does both."""
        if V.dtype == np.float64:
            e = np.take(self.att_exp, idx, mode="clip")
            return np.matmul(e, V), e.sum(-1, keepdims=True)
        scale, hi, lo = self.att_parts
        S, kv, G, n = idx.shape
        e = np.empty((S, kv, 2, G, n), dtype=np.float32)
        np.take(hi, idx, mode="clip", out=e[:, :, 0])
        np.take(lo, idx, mode="clip", out=e[:, :, 1])
        e = e.reshape(S, kv, 2 * G, n)
        pv, ps = np.matmul(e, V), e.sum(-1, keepdims=True)
        ev, esum = pv[:, :, :G].astype(np.float64), ps[:, :, :G].astype(np.float64)
        ev *= scale
        ev += pv[:, :, G:]
        esum *= scale
        esum += ps[:, :, G:]
        return ev, esum

    def __call__(self, tokens: np.ndarray, cache: RingState) -> np.ndarray:
        """tokens (S,) int64 at position cache.t -> freqs (S, 256) float32."""
        c = self.cfg
        S, kv, G, hd = len(tokens), c.n_kv_head, c.n_head // c.n_kv_head, c.head_dim
        slot = cache.t % c.context
        pos = cache.pos
        pos[slot] = cache.t
        dist = (cache.t - pos).astype(np.float32)
        valid = (dist >= 0) & (dist < c.context)
        bias = np.where(valid, self.slopes * dist, np.float32(2.0 ** 23)).astype(np.float32)
        res = self.emb[tokens]
        for l in range(c.n_layer):
            y = self._lin(f"l{l}.wqkv", self._norm(res, f"l{l}.n1"))
            q, k, v = np.split(np.clip(y, -127, 127, out=y).astype(np.float32), self.split, -1)
            K, V = cache.k[l], cache.v[l]
            K[..., slot] = k.reshape(S, kv, hd)
            V[:, :, slot] = v.reshape(S, kv, hd)
            z = np.matmul(q.reshape(S, kv, G, hd), K)  # (S, kv, G, context), exact
            z *= self.p[f"l{l}.qk"]
            np.floor(z, out=z)
            z -= bias
            np.subtract(z.max(-1, keepdims=True), z, out=z)
            ev, esum = self._weigh(z.astype(np.int32), V)
            ev *= self.r[f"l{l}.o_in"]
            ev /= esum
            ev += 0.5
            o = np.clip(np.floor(ev, out=ev), -127, 127, out=ev).astype(np.float32).reshape(S, -1)
            res = res + self._lin(f"l{l}.wo", o)
            a = self._lin(f"l{l}.w1", self._norm(res, f"l{l}.n2"))
            np.clip(a, 0, 4095, out=a)
            a *= a
            a *= self.r[f"l{l}.sq"]
            a += 0.5
            h = np.clip(np.floor(a, out=a), 0, (1 << MLP_BITS) - 1, out=a).astype(np.float32)
            res += self._lin(f"l{l}.w2", h, (1 << MLP_BITS) - 1)
        z = self._lin("head", self._norm(res, "nf"))
        tab = self.p["out_exp"]
        np.subtract(z.max(-1, keepdims=True), z, out=z)
        cache.t += 1
        return np.take(tab, np.minimum(z, tab.size - 1, out=z).astype(np.int32))
