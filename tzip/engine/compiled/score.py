"""The compression pass compiled with numba, for CPUs: the reference's score, fused.

Compression runs the model over many positions of many streams at once. In PyTorch the
products are a third of that time; the rest is a dozen elementwise passes per layer over
the attention tables and activations (scale, floor, bias, max, index, two table lookups,
two sums, requantisations, casts), each a trip through memory. Here the products are
numpy's BLAS (float32 operands of integers whose partial sums stay below 2**24: exact in
any order, tzip/engine/exact.py) and everything between them is one compiled
loop each, reusing the kernels of kernels.py for norms, residuals, the MLP and the
head. A query's keys outside its window are skipped rather than given the
weight att_exp[-1], so the model must have att_exp[-1] == 0 (JitScorer.usable). The same
IEEE-754 operations on the same values give the same tables bit for bit;
tests/test_backends.py compares them with the reference.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ...model.intmodel import MLP_BITS
from ..exact import exact_matmul
from ..plan import TUNING
from ..weights import MATRICES, Weights
from .kernels import clamp, head, jit, jit_exact, mlp, norm, residual, rq
from .parts import Parts, blas_on_calling_threads
from . import vnni

# Attention tables (q.k and the weights' two parts, 12 bytes per query and key) of
# TUNING["attention_bytes"] at a time: a group of streams' tables stay in the processor's
# cache between the product, the weighing and the next product (docs/performance.md)


@jit
def _qkv(acc, r, C, q, K, V, n0):
    """Requantise the qkv accumulator (S*C, (H + 2 kv) hd) into queries q (S, kv, G*C, hd)
    (row g*C + c) and the new keys and values, at column n0 + c of K (S, kv, hd, n) and
    row n0 + c of V (S, kv, n, hd)."""
    S, kv, GC, hd = q.shape
    G = GC // C
    H = kv * G
    for s in range(S):
        for c in range(C):
            a = s * C + c
            for h in range(kv):
                for g in range(G):
                    for i in range(hd):
                        j = (h * G + g) * hd + i
                        q[s, h, g * C + c, i] = clamp(rq(acc[a, j], r, j), -127, 127)
                for i in range(hd):
                    jk = H * hd + h * hd + i
                    jv = H * hd + kv * hd + h * hd + i
                    K[s, h, i, n0 + c] = clamp(rq(acc[a, jk], r, jk), -127, 127)
                    V[s, h, n0 + c, i] = clamp(rq(acc[a, jv], r, jv), -127, 127)


@jit_exact
def _weigh(z, qk, t0, k0, C, slopes, context, att_exp, unit, E, esum):
    """Attention weights from z (S, kv, G*C, n) = q.k of the queries at positions
    t0 .. t0+C-1 and the keys at k0 .. k0+n-1: the reference's _attend's scale, floor, ALiBi bias,
    max and exp table (float32 att_exp), over each query's window only. Writes the
    weights' two float32 parts e // unit and e mod unit (unit = 2**b, Weights.att_split)
    into E (S, kv, 2, G*C, n) (zero outside the window) and their sums into esum
    (S, kv, G*C) (integers below 2**24: exact in float32); z is overwritten.

    Written for the vector units: indices from 0 (no negative-index checks), the max
    over integers (a float max does not vectorise), the table lookup in a loop of its
    own."""
    S, kv, GC, n = z.shape
    G = GC // C
    last = np.int32(att_exp.shape[0] - 1)
    unit = np.float32(unit)
    inv = np.float32(1.0) / unit  # a power of two: exact
    for s in range(S):
        for h in range(kv):
            for g in range(G):
                slope = slopes[h, g]
                for c in range(C):
                    a = g * C + c
                    t = t0 + c
                    jhi = t - k0 + 1
                    jlo = max(0, t - context + 1 - k0)
                    E[s, h, :, a, :jlo] = 0.0
                    E[s, h, :, a, jhi:] = 0.0
                    zr, eh, el = z[s, h, a, jlo:jhi], E[s, h, 0, a, jlo:jhi], E[s, h, 1, a, jlo:jhi]
                    m = jhi - jlo
                    top = np.int32(-(1 << 30))
                    for j in range(m):  # distance m - 1 - j
                        v = np.floor(np.float32(zr[j] * qk)) - slope * np.float32(np.int32(m - 1 - j))
                        zr[j] = v
                        top = max(top, np.int32(v))
                    for j in range(m):
                        eh[j] = min(np.float32(top) - zr[j], last)
                    for j in range(m):
                        eh[j] = att_exp[np.int32(eh[j])]
                    total = np.float32(0.0)
                    for j in range(m):
                        e = eh[j]
                        hi = np.floor(e * inv)
                        eh[j] = hi
                        el[j] = e - hi * unit
                        total += e
                    esum[s, h, a] = total


@jit
def _attended(P, esum, scale, r_o, C, o):
    """o (S*C, H*hd) = round(e @ V * r_o / sum(e)) clamped to int8, where e @ V = P's hi
    rows * scale + its lo rows (P (S, kv, 2*G*C, hd) float32; float64 sum, exact)."""
    S, kv, GC2, hd = P.shape
    GC = GC2 // 2
    G = GC // C
    for s in range(S):
        for h in range(kv):
            for g in range(G):
                for c in range(C):
                    a = g * C + c
                    row, col = s * C + c, (h * G + g) * hd
                    for i in range(hd):
                        ev = np.float64(P[s, h, a, i]) * scale + np.float64(P[s, h, GC + a, i])
                        y = np.floor(ev * r_o[0] / esum[s, h, a] + 0.5)
                        o[row, col + i] = min(max(y, -127.0), 127.0)


@dataclass
class PassState:
    """Per-layer float32 keys (S, kv, hd, n) and values (S, kv, n, hd) of the last
    context - 1 positions (n grows to that), their absolute positions, the next position,
    and scratch arrays reused from pass to pass (freed with the state, never shared)."""
    k: list[np.ndarray]
    v: list[np.ndarray]
    pos: np.ndarray
    t: int = 0
    scratch: dict = field(default_factory=dict)


class JitScorer:
    """The reference's score compiled, behind the Scorer interface."""
    name = "numba"
    ACC = np.float32  # the products' accumulators (exact_matmul's pieces: float64 past one)

    def __init__(self, weights: Weights):
        self.cfg = weights.cfg
        self.p, self.r, self.inv, self.emb = weights.arrays, weights.r, weights.inv, weights.emb
        self.unit = 2 ** weights.att_split
        self.slopes = weights.slopes.reshape(self.cfg.n_kv_head, -1)  # (kv, G)
        self.qk = weights.qk
        self.exp32 = weights.att_exp.astype(np.float32)  # exact: see usable
        self.parts = Parts()

    @staticmethod
    def usable(weights: Weights) -> bool:
        """Whole slopes, float32 values (two weight parts), a zero last exp entry, which
        lets the loops skip the keys outside a query's window, and weights whose sums over
        a window are exact in float32."""
        e = weights.att_exp
        return (weights.whole_slopes and weights.att_split is not None
                and float(e[-1]) == 0.0 and float(e.max()) * weights.cfg.context < 2 ** 24)

    def new_state(self, streams: int) -> PassState:
        c = self.cfg
        return PassState([np.zeros((streams, c.n_kv_head, c.head_dim, 0), np.float32)
                          for _ in range(c.n_layer)],
                         [np.zeros((streams, c.n_kv_head, 0, c.head_dim), np.float32)
                          for _ in range(c.n_layer)],
                         np.zeros(0, dtype=np.int64))

    def _acc(self, key: str, x: np.ndarray, xmax: int = 127,
             out: np.ndarray | None = None) -> np.ndarray:
        """x @ the key's weights, exactly (exact_matmul)."""
        return exact_matmul(x, self.p[key], xmax, out)

    def _acc_type(self, key: str) -> type:
        """The dtype of the product of this key's weights."""
        return self.ACC

    def _acc_name(self, key: str) -> str:
        """The rows' accumulator a product writes (products of a width and type share one)."""
        return f"acc{self.p[key].shape[1]}.{np.dtype(self._acc_type(key)).name}"

    @staticmethod
    def _buf(scratch: dict, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A scratch array reused from pass to pass (fresh tens of MB per pass cost page
        faults), kept in the cache's scratch: freed with it, never shared by two caches."""
        b = scratch.get(name)
        if b is None or b.shape != shape:
            b = scratch[name] = np.empty(shape, dtype=dtype)
        return b

    def _spare(self, scratch: dict, name: str, old: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A scratch array for a layer's keys or values with this pass's columns: one of
        two, the one old (the cache, a view of the other after the first pass) is not in."""
        b = self._buf(scratch, name + "0", shape)
        return self._buf(scratch, name + "1", shape) if np.may_share_memory(b, old) else b

    def __call__(self, tokens: np.ndarray, cache: PassState) -> np.ndarray:
        """tokens (S, C) int64 at positions cache.t .. cache.t+C-1 -> freqs (S, C, 256).

        The streams run in parts on threads of their own (parts.py)."""
        c = self.cfg
        S, C = tokens.shape
        kv, G, hd, d = c.n_kv_head, c.n_head // c.n_kv_head, c.head_dim, c.d_model
        keep = c.context - 1
        old = cache.k[0].shape[3]
        n = old + C
        f = c.mlp_mult * d
        # per stream (axis 0) and per row (S*C rows), cut between the parts
        sc = cache.scratch
        streams = {"q": self._buf(sc, "q", (S, kv, G * C, hd))}
        for l in range(c.n_layer):  # the parts copy the cached keys and values in
            for kind, shape in (("K", (S, kv, hd, n)), ("V", (S, kv, n, hd))):
                was = (cache.k if kind == "K" else cache.v)[l]
                streams[f"{kind}{l}"] = self._spare(sc, f"{kind}{l}.", was, shape)
                streams[f"old{kind}{l}"] = was
        rows = {"res": self.emb[tokens.reshape(-1)],  # (S*C, d) float64, a fresh copy
                "x": self._buf(sc, "x", (S * C, d)), "o": self._buf(sc, "o", (S * C, c.n_head * hd)),
                "h": self._buf(sc, "h", (S * C, f)), "out": np.empty((S * C, 256), dtype=np.float32)}
        for key in ("l0.wqkv", "l0.wo", "l0.w1", "l0.w2", "head"):  # one per width and type
            name = self._acc_name(key)
            rows[name] = self._buf(sc, name, (S * C, self.p[key].shape[1]), self._acc_type(key))

        def part(a: int, b: int) -> None:
            self._part({k: v[a:b] for k, v in streams.items()},
                       {k: v[a * C:b * C] for k, v in rows.items()}, C, cache.t, old,
                       sc.setdefault(("part", a), {}))

        with blas_on_calling_threads():
            self.parts.run(part, S)
        for l in range(c.n_layer):
            cache.k[l] = streams[f"K{l}"][..., -keep:]
            cache.v[l] = streams[f"V{l}"][:, :, -keep:]
        t0 = cache.t
        cache.pos = np.arange(max(t0 - old, t0 + C - keep), t0 + C)
        cache.t += C
        return rows["out"].reshape(S, C, 256)

    def _attention(self, a: dict, K: np.ndarray, V: np.ndarray, l: int, C: int, t0: int, old: int,
                   o: np.ndarray, scratch: dict) -> None:
        """Layer l's attention of a part's streams into o: numpy's products of the queries
        and keys and of the weights and values, the weighing between them, a group of
        streams at a time so that its tables stay in the cache."""
        c = self.cfg
        S = a["q"].shape[0]
        kv, G, n = c.n_kv_head, c.n_head // c.n_kv_head, old + C
        group = max(1, min(S, TUNING["attention_bytes"] // (12 * kv * G * C * n)))
        z = self._buf(scratch, "z", (group, kv, G * C, n))
        E = self._buf(scratch, "E", (group, kv, 2, G * C, n))
        esum = self._buf(scratch, "esum", (S, kv, G * C))
        P = self._buf(scratch, "P", (S, kv, 2 * G * C, c.head_dim))
        for i in range(0, S, group):
            j = min(S, i + group)
            np.matmul(a["q"][i:j], K[i:j], out=z[:j - i])
            _weigh(z[:j - i], self.qk[l], t0, t0 - old, C, self.slopes, c.context, self.exp32,
                   self.unit, E[:j - i], esum[i:j])
            np.matmul(E[:j - i].reshape(j - i, kv, 2 * G * C, n), V[i:j], out=P[i:j])
        _attended(P, esum, self.unit, self.r[f"l{l}.o_in"], C, o)

    def _part(self, a: dict, r: dict, C: int, t0: int, old: int, scratch: dict) -> None:
        """The whole model for some streams: a holds their per-stream arrays, r their rows,
        scratch this part's own attention tables."""
        c = self.cfg
        res, x, o, h = r["res"], r["x"], r["o"], r["h"]
        acc = lambda key: r[self._acc_name(key)]
        top = float((1 << MLP_BITS) - 1)
        for l in range(c.n_layer):
            K, V = a[f"K{l}"], a[f"V{l}"]
            K[..., :old] = a[f"oldK{l}"]
            V[:, :, :old] = a[f"oldV{l}"]
            norm(res, self.inv[f"l{l}.n1"], x)
            _qkv(self._acc(f"l{l}.wqkv", x, out=acc(f"l{l}.wqkv")), self.r[f"l{l}.wqkv"], C,
                 a["q"], K, V, old)
            self._attention(a, K, V, l, C, t0, old, o, scratch)
            residual(res, self._acc(f"l{l}.wo", o, out=acc(f"l{l}.wo")), self.r[f"l{l}.wo"])
            norm(res, self.inv[f"l{l}.n2"], x)
            mlp(self._acc(f"l{l}.w1", x, out=acc(f"l{l}.w1")), self.r[f"l{l}.w1"], self.r[f"l{l}.sq"],
                 top, h)
            residual(res, self._acc(f"l{l}.w2", h, (1 << MLP_BITS) - 1, acc(f"l{l}.w2")),
                      self.r[f"l{l}.w2"])
        norm(res, self.inv["nf"], x)
        head(self._acc("head", x, out=acc("head")), self.r["head"], self.p["out_exp"], r["out"])


class VnniScorer(JitScorer):
    """JitScorer with its products on the CPU's int8 dot-product units (vnni.py) instead
    of numpy's float32 BLAS, and each stream's attention one compiled call
    (_attend_vnni): the same integers, so the same tables bit for bit."""
    name = "vnni"

    @staticmethod
    def usable(weights: Weights) -> bool:
        """JitScorer's conditions, and whole weights e below 2**15 (int16) whose sums with
        int8 values over a window fit int32."""
        e = int(weights.att_exp.max())
        return (vnni.available() and JitScorer.usable(weights) and e < 2 ** 15
                and e * 127 * weights.cfg.context < 2 ** 31)

    def __init__(self, weights: Weights):
        super().__init__(weights)
        self._inputs: dict = {}  # (thread, shape, dtype) -> a product's input buffer
        self.exp_whole = weights.att_exp.astype(np.int32)  # below 2**15 (usable)
        self.laid = {key: vnni.layout(w, Weights.xmax(key) > 127) for key, w in self.p.items()
                     if key == "head" or key.split(".")[-1] in MATRICES}

    def _acc_type(self, key: str) -> type:
        """float32 where the product's integers stay below 2**24 (exact), else float64:
        half the bytes written and read for most products."""
        return np.float32 if Weights.xmax(key) * 127 * self.p[key].shape[0] < 2 ** 24 else np.float64

    def _attention(self, a: dict, K: np.ndarray, V: np.ndarray, l: int, C: int, t0: int, old: int,
                   o: np.ndarray, scratch: dict) -> None:
        c = self.cfg
        G, hd, n = c.n_head // c.n_kv_head, c.head_dim, old + C
        hdp, npad, n2 = -(-hd // vnni.BLOCK) * vnni.BLOCK, -(-n // vnni.BLOCK) * vnni.BLOCK, -(-n // 2) * 2
        bufs = {"qb": ((G * C, hdp), np.uint8), "kl": ((hdp // 4, npad * 4), np.int8),
                "koff": ((npad,), np.int32), "z": ((G * C, npad), np.int32),
                "eb": ((G * C, n2), np.int16), "vl": ((n2 // 2, hdp * 2), np.int16),
                "voff": ((hdp,), np.int32), "P": ((G * C, hdp), np.int32), "esum": ((G * C,), np.int32)}
        b = {}
        for name, (shape, dtype) in bufs.items():
            was = scratch.get(name)
            b[name] = self._buf(scratch, name, shape, dtype)
            if b[name] is not was:
                b[name][:] = 0  # padding: zero inputs and weights, written once
        _attend_vnni(a["q"], K, V, t0, t0 - old, C, self.slopes, c.context, self.qk[l], self.exp_whole,
                     self.r[f"l{l}.o_in"], o, b["qb"], b["kl"], b["koff"], b["z"], b["eb"], b["vl"],
                     b["voff"], b["P"], b["esum"])

    def _acc(self, key: str, x: np.ndarray, xmax: int = 127,
             out: np.ndarray | None = None) -> np.ndarray:
        w, offset = self.laid[key]
        wide = xmax > 127
        g = 2 if wide else 4
        Kp = w.shape[0] * g
        # inputs as bytes (or int16), in a buffer of this thread's (fresh ones cost page faults)
        shape, dtype = (x.shape[0], Kp), np.int16 if wide else np.uint8
        xb = self._inputs.get((threading.get_ident(), shape, dtype))
        if xb is None:
            xb = self._inputs[threading.get_ident(), shape, dtype] = np.zeros(shape, dtype)
        if out is None:
            out = np.empty((x.shape[0], self.p[key].shape[1]), self._acc_type(key))
        if wide:
            vnni.to_i16(x, xb)
        else:
            vnni.to_u8(x, xb)
        vnni.product(xb, w, offset, out)
        return out


@jit
def _attend_vnni(q, K, V, t0, k0, C, slopes, context, qk, exp_whole, r_o, o,
                 qb, kl, koff, z, eb, vl, voff, P, esum):
    """_attention of JitScorer for each stream and key head on VPDPBUSD and VPDPWSSD, in
    integers: the keys K (S, kv, hd, n) laid out into kl (hdp / 4, npad * 4) int8 with
    koff = 128 * each key's sum, the queries q (S, kv, G*C, hd) + 128 into qb uint8, their
    scores z (G*C, npad) int32; the weights as _weigh finds them, whole, into eb (G*C, n2)
    int16 with their sums esum; the values V (S, kv, n, hd) into vl (n2 / 2, hdp * 2)
    int16, e @ V into P int32; o as _attended makes it. Every sum is an exact integer
    (VnniScorer.usable)."""
    S, kv, GC, hd = q.shape
    G = GC // C
    for s in range(S):
        for h in range(kv):
            _lay_keys(K[s, h], kl, koff)
            _lay_values(V[s, h], vl)
            _lay_queries(q[s, h], qb)
            vnni.product(qb, kl, koff, z)
            for g in range(G):
                _weigh_whole(z[g * C:(g + 1) * C], t0, k0, slopes[h, g], context, qk,
                             exp_whole, eb[g * C:(g + 1) * C], esum[g * C:(g + 1) * C])
            vnni.product(eb, vl, voff, P)
            for g in range(G):
                _attended_whole(P[g * C:(g + 1) * C], esum[g * C:(g + 1) * C], r_o,
                                o[s * C:(s + 1) * C, (h * G + g) * hd:(h * G + g + 1) * hd])


@jit
def _lay_keys(Ks, kl, koff):
    """Keys Ks (hd, n) into the product's layout kl (hdp / 4, npad * 4): four dimensions
    of a key per int32 lane; koff[j] = 128 * key j's sum."""
    hd, n = Ks.shape
    koff[:n] = 0
    for i in range(hd):
        base, r = i // 4, i % 4
        for j in range(n):
            kj = np.int32(Ks[i, j])
            kl[base, j * 4 + r] = np.int8(kj)
            koff[j] += 128 * kj


@jit
def _lay_values(Vs, vl):
    """Values Vs (n, hd) into the product's layout vl (n2 / 2, hdp * 2): two keys per lane."""
    n, hd = Vs.shape
    for j in range(n):
        base, r = j // 2, j % 2
        for i in range(hd):
            vl[base, i * 2 + r] = np.int16(Vs[j, i])


@jit
def _lay_queries(qs, qb):
    """Queries qs (G*C, hd) + 128 into qb as bytes."""
    for a in range(qs.shape[0]):
        for i in range(qs.shape[1]):
            qb[a, i] = np.uint8(np.int32(qs[a, i]) + 128)


@jit_exact
def _weigh_whole(z, t0, k0, slope, context, qk, exp_whole, eb, esum):
    """_weigh for one query head, whole: z (C, npad) int32 the scores of the queries at
    t0 .. t0+C-1 with the keys at k0 ..; the weights into eb (C, n2) int16, zero outside
    each query's window, and their sums into esum. The same float32 scale, floor and
    penalties as _weigh (integers below 2**24: exact in any order), computed twice rather
    than stored between the max and the table lookup; written for the vector units
    (indices from 0, unsigned table indices: no negative-index checks)."""
    C = z.shape[0]
    last = np.int32(exp_whole.shape[0] - 1)
    for c in range(C):
        t = t0 + c
        jhi = t - k0 + 1
        jlo = max(0, t - context + 1 - k0)
        eb[c, :jlo] = 0
        eb[c, jhi:] = 0
        zr, er = z[c, jlo:jhi], eb[c, jlo:jhi]
        m = jhi - jlo
        top = np.int32(-(1 << 30))
        for j in range(m):  # distance m - 1 - j
            top = max(top, np.int32(np.floor(np.float32(zr[j]) * qk) - slope * np.float32(np.int32(m - 1 - j))))
        for j in range(m):
            zr[j] = min(top - np.int32(np.floor(np.float32(zr[j]) * qk) - slope * np.float32(np.int32(m - 1 - j))), last)
        total = np.int32(0)
        for j in range(m):  # the table lookup (a gather), in a loop of its own
            e = exp_whole[np.uint32(zr[j])]
            er[j] = np.int16(e)
            total += e
        esum[c] = total


@jit
def _attended_whole(P, esum, r_o, o):
    """o (C, hd) = round(P * r_o / esum) clamped to int8, P (C, hdp) the whole sums e @ V."""
    r = r_o[0]
    for c in range(o.shape[0]):
        total = np.float64(esum[c])
        for i in range(o.shape[1]):  # clamped as integers (a float max does not vectorise)
            y = np.int64(np.floor(np.float64(P[c, i]) * r / total + 0.5))
            o[c, i] = min(max(y, -127), 127)
