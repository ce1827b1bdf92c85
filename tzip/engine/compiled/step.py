"""The decoding step compiled with numba, for CPUs: the reference step's arithmetic, fused.

A decoding step runs a few hundred small array operations, and with few streams their
fixed cost is most of the time. Here the whole step for a part of the streams is one
compiled call (`_step`): the products (int8 weights, float32 sums exact as in
tzip/engine/exact.py), norms, requantisation, the cache update and the whole attention.
Where these loops sum or compare in another order or precision than the reference, they
do it on integers whose sums stay exact (float32 below 2**24, float64 below 2**53), so
every value, and hence every table, is the same bit for bit; tests/test_backends.py
compares them. As one call releases the GIL for the whole step, parts of the streams run
on threads of their own without waiting for each other.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from ...model.intmodel import MLP_BITS
from ..numpy_step import RingState
from ..plan import TUNING
from ..weights import MATRICES, Weights
from .kernels import head, jit, jit_exact, matmul, mlp, norm, residual, rq
from .parts import Parts
from . import vnni



@jit
def _bias(t, pos, slopes, n):
    """(kv, G, n) ALiBi penalties of the ring's keys for the query at t (the reference's _alibi);
    2**23 outside the window. The same for every layer."""
    kv, G = slopes.shape
    bias = np.empty((kv, G, n), dtype=np.float32)
    for h in range(kv):
        for g in range(G):
            for j in range(n):
                dist = np.float32(t - pos[j])
                bias[h, g, j] = slopes[h, g] * dist if 0 <= dist < n else np.float32(2.0 ** 23)
    return bias


@jit_exact
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


@jit_exact
def _values(e, Vs, keys_per_sum, idx, ev32, ev):
    """ev (hd,) float64 = e @ Vs (Vs (n, hd)) over the keys of nonzero weight (about 60%
    with the shipped models' ALiBi slopes), summed in float32 over `keys_per_sum` keys at a time
    (exact: every sum below 2**24, JitStep.usable) and in float64 across blocks. idx (n,)
    and ev32 (hd,) are scratch."""
    n, hd = Vs.shape
    m = 0
    for j in range(n):
        idx[m] = j
        m += e[j] != 0.0
    ev[:] = 0.0
    for j0 in range(0, m, keys_per_sum):
        ev32[:] = 0.0
        for jj in range(j0, min(m, j0 + keys_per_sum)):
            w, vr = np.float32(e[idx[jj]]), Vs[idx[jj]]
            for i in range(hd):
                ev32[i] += w * vr[i]
        for i in range(hd):
            ev[i] += ev32[i]


@jit
def _attend(acc, r_qkv, slot, bias, K, V, qk, att_exp, keys_per_sum, r_o, o):
    """qkv from the accumulator, the cache update at slot, then attention -> o (S, H*hd).

    acc (S, (H + 2 kv) hd); K (S, kv, hd, n) and V (S, kv, n, hd) of int8 values
    (JitStep.new_state), which _values' blocks assume; bias from _bias."""
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
                Ks[i, slot] = min(max(rq(acc[s, jk], r_qkv, jk), -127.0), 127.0)
                Vs[slot, i] = min(max(rq(acc[s, jv], r_qkv, jv), -127.0), 127.0)
            for g in range(G):
                col = (h * G + g) * hd
                for i in range(hd):
                    q[i] = min(max(rq(acc[s, col + i], r_qkv, col + i), -127.0), 127.0)
                esum = _weights(q, Ks, qk, bias[h, g], att_exp, z, e)
                _values(e, Vs, keys_per_sum, idx, ev32, ev)
                for i in range(hd):
                    y = np.floor(ev[i] * r_o[0] / esum + 0.5)
                    o[s, col + i] = min(max(y, -127.0), 127.0)


class StepWeights(NamedTuple):
    """What _step reads besides the cache, per layer stacked on axis 0: norm steps n1, n2;
    int8 weights transposed (N, K) wqkv, wo, w1, w2; multipliers r_*; then the final
    norm nf, the head and its multiplier, the exp tables, ALiBi slopes (kv, G), q.k
    scales, keys per exact float32 sum of attention values, and each product's exact
    piece (qkv, o, w1, w2, head)."""
    n1: np.ndarray
    wqkv: np.ndarray
    r_qkv: np.ndarray
    slopes: np.ndarray
    qk: np.ndarray
    att_exp: np.ndarray
    keys_per_sum: int
    r_o: np.ndarray
    wo: np.ndarray
    r_wo: np.ndarray
    n2: np.ndarray
    w1: np.ndarray
    r1: np.ndarray
    r_sq: np.ndarray
    w2: np.ndarray
    r2: np.ndarray
    nf: np.ndarray
    head: np.ndarray
    r_head: np.ndarray
    out_exp: np.ndarray
    pieces: np.ndarray


@jit
def _step(tokens, t, slot, pos, emb, K, V, weights, out):
    """The whole step for some streams, into out (S, 256), with the cache's keys K[l]
    and values V[l] and the weights as a plain tuple of StepWeights' fields (the
    dispatcher types a plain tuple of arrays in C, a NamedTuple in Python: tens of us per
    call). One call, so the GIL is taken once per part."""
    w = StepWeights(*weights)
    S, d = tokens.shape[0], emb.shape[1]
    L = w.wqkv.shape[0]
    res = np.empty((S, d), dtype=np.float64)
    for s in range(S):
        res[s] = emb[tokens[s]]
    x = np.empty((S, d), dtype=np.float32)
    acc_qkv = np.empty((S, w.wqkv.shape[1]), dtype=np.float64)
    o = np.empty((S, w.wo.shape[2]), dtype=np.float32)
    acc_d = np.empty((S, d), dtype=np.float64)
    acc_h = np.empty((S, w.w1.shape[1]), dtype=np.float64)
    h = np.empty((S, w.w1.shape[1]), dtype=np.float32)
    acc_out = np.empty((S, w.head.shape[0]), dtype=np.float64)
    top = float((1 << MLP_BITS) - 1)
    bias = _bias(t, pos, w.slopes, K[0].shape[3])
    for l in range(L):
        norm(res, w.n1[l], x)
        matmul(x, w.wqkv[l], w.pieces[0], acc_qkv)
        _attend(acc_qkv, w.r_qkv[l], slot, bias, K[l], V[l], w.qk[l], w.att_exp, w.keys_per_sum,
                w.r_o[l], o)
        matmul(o, w.wo[l], w.pieces[1], acc_d)
        residual(res, acc_d, w.r_wo[l])
        norm(res, w.n2[l], x)
        matmul(x, w.w1[l], w.pieces[2], acc_h)
        mlp(acc_h, w.r1[l], w.r_sq[l], top, h)
        matmul(h, w.w2[l], w.pieces[3], acc_d)
        residual(res, acc_d, w.r2[l])
    norm(res, w.nf, x)
    matmul(x, w.head, w.pieces[4], acc_out)
    head(acc_out, w.r_head, w.out_exp, out)


@jit
def _product(x, xb, w, offset, out):
    """out = x @ W exactly on the int8 dot-product units (vnni.py): x (S, K) float32
    integers in [-127, 127] into xb (S, Kp) as uint8 x + 128."""
    vnni.to_u8(x, xb)
    vnni.product(xb, w, offset, out)


@jit
def _product16(x, xb, w, offset, out):
    """_product for wider inputs (the squared ReLU's): xb int16, int16 weight pairs."""
    vnni.to_i16(x, xb)
    vnni.product(xb, w, offset, out)


@jit
def _bias_padded(t, pos, slopes, n):
    """_bias over n >= context ring slots, the slots past the context outside every window."""
    kv, G = slopes.shape
    ctx = pos.shape[0]
    bias = np.full((kv, G, n), np.float32(2.0 ** 23), dtype=np.float32)
    bias[:, :, :ctx] = _bias(t, pos, slopes, ctx)
    return bias


@jit
def _attend_vnni(acc, r_qkv, slot, ctx, bias, K4, V2, qk, att_exp, r_o, o):
    """_attend on the int8 dot-product units, for the vnni ring (VnniStep.new_state):
    keys K4 (S, kv, hdp / 4, n, 4) uint8 key + 128, four dimensions of a key per int32
    lane; values V2 (S, kv, n / 2, hdp, 2) int16, two keys per lane (n, hdp: the context
    and head size rounded up to 64 and 16). q.k = sum((k + 128) q) - 128 sum(q) on VPDPBUSD,
    e @ V on VPDPWSSD (weights below 2**15 as int16): integers, exact in int32
    (VnniStep.usable), then the same requantisation as _attend's."""
    S = acc.shape[0]
    kv, hd4, n = K4.shape[1], K4.shape[2], K4.shape[3]
    hdp = hd4 * 4
    G = bias.shape[1]
    H = kv * G
    hd = o.shape[1] // H
    last = att_exp.shape[0] - 1
    q = np.zeros(hdp, dtype=np.int8)
    z = np.empty(n, dtype=np.int32)
    zi = np.empty(n, dtype=np.int32)
    e16 = np.zeros(n, dtype=np.int16)
    exp32 = np.empty(last + 1, dtype=np.int32)  # the table as integers (below 2**15)
    for j in range(last + 1):
        exp32[j] = np.int32(att_exp[j])
    ev = np.empty(hdp, dtype=np.int32)
    krow = n * 4  # bytes of one K4 row (four dimensions of every key)
    vrow = hdp * 4  # bytes of one V2 row (two keys of every dimension)
    for s in range(S):
        for h in range(kv):
            Ks, Vs = K4[s, h], V2[s, h]
            for i in range(hd):
                jk = H * hd + h * hd + i
                jv = H * hd + kv * hd + h * hd + i
                Ks[i // 4, slot, i % 4] = np.uint8(np.int32(min(max(rq(acc[s, jk], r_qkv, jk), -127.0), 127.0)) + 128)
                Vs[slot // 2, i, slot % 2] = np.int16(min(max(rq(acc[s, jv], r_qkv, jv), -127.0), 127.0))
            for g in range(G):
                col = (h * G + g) * hd
                qsum = np.int32(0)
                for i in range(hd):
                    qi = np.int32(min(max(rq(acc[s, col + i], r_qkv, col + i), -127.0), 127.0))
                    q[i] = qi
                    qsum += qi
                for j0 in range(0, n, 64):  # four chains of sums at once (the latency)
                    a0 = vnni.vzero()
                    a1 = vnni.vzero()
                    a2 = vnni.vzero()
                    a3 = vnni.vzero()
                    for i4 in range(hd4):
                        qb = vnni.vbroadcast(q, i4 * 4)
                        r = i4 * krow + j0 * 4
                        a0 = vnni.dpbusd(a0, vnni.vload(Ks, r), qb)
                        a1 = vnni.dpbusd(a1, vnni.vload(Ks, r + 64), qb)
                        a2 = vnni.dpbusd(a2, vnni.vload(Ks, r + 128), qb)
                        a3 = vnni.dpbusd(a3, vnni.vload(Ks, r + 192), qb)
                    vnni.vstore(z, j0 * 4, a0)
                    vnni.vstore(z, j0 * 4 + 64, a1)
                    vnni.vstore(z, j0 * 4 + 128, a2)
                    vnni.vstore(z, j0 * 4 + 192, a3)
                bg = bias[h, g]
                shift = 128 * qsum
                for j in range(n):  # integers: floor(q.k * qk) - penalty
                    zi[j] = np.int32(np.floor(np.float32(np.float32(z[j] - shift) * qk)) - bg[j])
                top = np.int32(-(1 << 30))
                for j in range(ctx):
                    top = max(top, zi[j])
                for j in range(ctx):
                    zi[j] = min(top - zi[j], last)
                esum = np.int32(0)
                for j in range(ctx):  # the table lookup (a gather), in a loop of its own
                    ej = exp32[np.uint32(zi[j])]
                    e16[j] = np.int16(ej)
                    esum += ej
                for i0 in range(0, hdp, 16):  # four chains: keys 8j .. 8j+7 in pairs
                    a0 = vnni.vzero()
                    a1 = vnni.vzero()
                    a2 = vnni.vzero()
                    a3 = vnni.vzero()
                    for j2 in range(0, n // 2, 4):
                        r = j2 * vrow + i0 * 4
                        a0 = vnni.dpwssd(a0, vnni.vload(Vs, r), vnni.vbroadcast(e16, j2 * 4))
                        a1 = vnni.dpwssd(a1, vnni.vload(Vs, r + vrow), vnni.vbroadcast(e16, j2 * 4 + 4))
                        a2 = vnni.dpwssd(a2, vnni.vload(Vs, r + 2 * vrow), vnni.vbroadcast(e16, j2 * 4 + 8))
                        a3 = vnni.dpwssd(a3, vnni.vload(Vs, r + 3 * vrow), vnni.vbroadcast(e16, j2 * 4 + 12))
                    vnni.vstore(ev, i0 * 4, vnni.vadd(vnni.vadd(a0, a1), vnni.vadd(a2, a3)))
                for i in range(hd):
                    y = np.floor(np.float64(ev[i]) * r_o[0] / np.float64(esum) + 0.5)
                    o[s, col + i] = min(max(y, -127.0), 127.0)


@jit
def _step_vnni(tokens, t, slot, pos, emb, K, V, weights, mats, out):
    """_step with the weight products on the int8 dot-product units: mats holds per
    product (qkv, o, w1, w2, head) the vnni layout's weights (stacked per layer) and
    offsets (VnniStep)."""
    w = StepWeights(*weights)
    wqkv, oqkv, wo, oo, w1, o1, w2, o2, wh, oh = mats
    S, d = tokens.shape[0], emb.shape[1]
    L = wqkv.shape[0]
    res = np.empty((S, d), dtype=np.float64)
    for s in range(S):
        res[s] = emb[tokens[s]]
    x = np.empty((S, d), dtype=np.float32)
    xb = np.zeros((S, wqkv.shape[1] * 4), dtype=np.uint8)
    acc_qkv = np.empty((S, w.wqkv.shape[1]), dtype=np.float64)
    o = np.empty((S, w.wo.shape[2]), dtype=np.float32)
    ob = np.zeros((S, wo.shape[1] * 4), dtype=np.uint8)
    acc_d = np.empty((S, d), dtype=np.float64)
    acc_h = np.empty((S, w.w1.shape[1]), dtype=np.float64)
    h = np.empty((S, w.w1.shape[1]), dtype=np.float32)
    hb = np.zeros((S, w2.shape[1] * 2), dtype=np.int16)
    acc_out = np.empty((S, w.head.shape[0]), dtype=np.float64)
    top = float((1 << MLP_BITS) - 1)
    bias = _bias_padded(t, pos, w.slopes, K[0].shape[3])
    for l in range(L):
        norm(res, w.n1[l], x)
        _product(x, xb, wqkv[l], oqkv[l], acc_qkv)
        _attend_vnni(acc_qkv, w.r_qkv[l], slot, pos.shape[0], bias, K[l], V[l], w.qk[l], w.att_exp,
                     w.r_o[l], o)
        _product(o, ob, wo[l], oo[l], acc_d)
        residual(res, acc_d, w.r_wo[l])
        norm(res, w.n2[l], x)
        _product(x, xb, w1[l], o1[l], acc_h)
        mlp(acc_h, w.r1[l], w.r_sq[l], top, h)
        _product16(h, hb, w2[l], o2[l], acc_d)
        residual(res, acc_d, w.r2[l])
    norm(res, w.nf, x)
    _product(x, xb, wh, oh, acc_out)
    head(acc_out, w.r_head, w.out_exp, out)


def _int8T(w: np.ndarray) -> np.ndarray:
    """int8 values, transposed: (N, K), the layout _piece reads."""
    return np.ascontiguousarray(w.T, dtype=np.int8)


class JitStep:
    """The reference step compiled, behind the Stepper interface. Its state is a ring of
    int8 keys and values (they are int8 values): a quarter of the bytes a step reads."""
    name = "numba"

    @staticmethod
    def usable(weights: Weights) -> bool:
        """Whole ALiBi slopes, and attention values that can be summed in float32 a few
        keys at a time: a weight times an int8 value below 2**24 (the shipped tables: 2**13)."""
        return weights.whole_slopes and int(weights.att_exp.max()) * 127 < 2 ** 24

    def __init__(self, weights: Weights):
        c = self.cfg = weights.cfg
        self.emb = weights.emb
        self.parts = Parts()
        layers = range(c.n_layer)
        stack = lambda key, what: np.stack([what[f"l{l}.{key}"] for l in layers])
        mats = {m: np.stack([_int8T(weights.matrix(f"l{l}.{m}")) for l in layers]) for m in MATRICES}
        pieces = np.array([weights.piece(k) for k in ("l0.wqkv", "l0.wo", "l0.w1", "l0.w2", "head")])
        self.w = StepWeights(
            n1=stack("n1", weights.inv), wqkv=mats["wqkv"], r_qkv=stack("wqkv", weights.r),
            slopes=weights.slopes.reshape(c.n_kv_head, -1), qk=weights.qk, att_exp=weights.att_exp,
            keys_per_sum=(2 ** 24 - 1) // (int(weights.att_exp.max()) * 127),
            r_o=stack("o_in", weights.r), wo=mats["wo"], r_wo=stack("wo", weights.r),
            n2=stack("n2", weights.inv), w1=mats["w1"], r1=stack("w1", weights.r),
            r_sq=stack("sq", weights.r), w2=mats["w2"], r2=stack("w2", weights.r),
            nf=weights.inv["nf"], head=_int8T(weights.matrix("head")), r_head=weights.r["head"],
            out_exp=weights.out_exp, pieces=pieces)
        self._w = tuple(self.w)

    def new_state(self, streams: int) -> RingState:
        c = self.cfg
        return RingState([np.zeros((streams, c.n_kv_head, c.head_dim, c.context), np.int8)
                          for _ in range(c.n_layer)],
                         [np.zeros((streams, c.n_kv_head, c.context, c.head_dim), np.int8)
                          for _ in range(c.n_layer)],
                         np.full(c.context, -(1 << 40), dtype=np.int64))

    def threads(self, streams: int):
        """It runs its own threads (Parts)."""
        return nullcontext()

    def __call__(self, tokens: np.ndarray, state: RingState) -> np.ndarray:
        """tokens (S,) int64 at position state.t -> freqs (S, 256) float32. The streams
        run in parts of at least TUNING["step_parts_from"] on threads of their own (parts.py)."""
        return self._step(tokens, state, True)

    def step_here(self, tokens: np.ndarray, state: RingState) -> np.ndarray:
        """The same step, all of its streams on the calling thread in one compiled call
        (codec's decoding in parts runs a state of its own on each thread)."""
        return self._step(tokens, state, False)

    def _step(self, tokens: np.ndarray, state: RingState, in_parts: bool) -> np.ndarray:
        slot = state.t % self.cfg.context
        state.pos[slot] = state.t
        out = np.empty((len(tokens), 256), dtype=np.float32)

        def part(a: int, b: int) -> None:
            views = state.views.get((a, b))
            if views is None:  # made once per cut: slicing anew each step costs tens of us
                views = state.views[a, b] = (tuple(k[a:b] for k in state.k),
                                             tuple(v[a:b] for v in state.v))
            K, V = views
            self._run(tokens[a:b], state.t, slot, state.pos, K, V, out[a:b])

        if in_parts:
            self.parts.run(part, len(tokens), TUNING["step_parts_from"])
        else:
            part(0, len(tokens))
        state.t += 1
        return out

    def _run(self, tokens, t, slot, pos, K, V, out) -> None:
        """One part's step: one compiled call."""
        _step(tokens, t, slot, pos, self.emb, K, V, self._w, out)


class VnniStep(JitStep):
    """JitStep with its weight products on the CPU's int8 dot-product units (vnni.py):
    the same tables bit for bit (integer products are exact in any order)."""
    name = "vnni"

    @staticmethod
    def usable(weights: Weights) -> bool:
        """JitStep's conditions, and attention weights that fit int16 whose sums with int8
        values over a window fit int32."""
        e = int(weights.att_exp.max())
        return (vnni.available() and JitStep.usable(weights) and e < 2 ** 15
                and e * 127 * weights.cfg.context < 2 ** 31)

    def __init__(self, weights: Weights):
        super().__init__(weights)
        layers = range(self.cfg.n_layer)
        mats = []
        for key in MATRICES:
            laid = [vnni.layout(weights.matrix(f"l{l}.{key}"), weights.xmax(key) > 127) for l in layers]
            mats += [np.stack([a for a, _ in laid]), np.stack([b for _, b in laid])]
        mats += vnni.layout(weights.matrix("head"), False)
        self._mats = tuple(mats)

    def new_state(self, streams: int) -> RingState:
        """The ring in _attend_vnni's layouts: keys as uint8 key + 128 (empty slots hold
        128, a zero key) and int16 values, the context rounded up to 64 and the head size
        to 16."""
        c = self.cfg
        n, hdp = -(-c.context // 64) * 64, -(-c.head_dim // 16) * 16
        return RingState([np.full((streams, c.n_kv_head, hdp // 4, n, 4), 128, np.uint8)
                          for _ in range(c.n_layer)],
                         [np.zeros((streams, c.n_kv_head, n // 2, hdp, 2), np.int16)
                          for _ in range(c.n_layer)],
                         np.full(c.context, -(1 << 40), dtype=np.int64))

    def _run(self, tokens, t, slot, pos, K, V, out) -> None:
        _step_vnni(tokens, t, slot, pos, self.emb, K, V, self._w, self._mats, out)
