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

import functools
import threading
from dataclasses import dataclass, field

import numpy as np

from ...model.intmodel import MLP_BITS
from ..exact import exact_matmul
from ..plan import TUNING
from ..weights import MATRICES, Weights
from .kernels import head, jit, jit_exact, mlp, norm, residual, rq
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
                        q[s, h, g * C + c, i] = min(max(rq(acc[a, j], r, j), -127.0), 127.0)
                for i in range(hd):
                    jk = H * hd + h * hd + i
                    jv = H * hd + kv * hd + h * hd + i
                    K[s, h, i, n0 + c] = min(max(rq(acc[a, jk], r, jk), -127.0), 127.0)
                    V[s, h, n0 + c, i] = min(max(rq(acc[a, jv], r, jv), -127.0), 127.0)


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
    P_ROWS, P_DTYPE = 2, np.float32  # e @ V: the weights' two parts' rows, float32

    def _scores(self, q: np.ndarray, K: np.ndarray, z: np.ndarray, scratch: dict) -> None:
        """z = q @ K for a group of streams (S, kv, G*C, hd) @ (S, kv, hd, n)."""
        np.matmul(q, K, out=z)

    def _mix(self, E: np.ndarray, V: np.ndarray, P: np.ndarray, scratch: dict) -> None:
        """P = both parts of the weights E (S, kv, 2, G*C, n) @ V (S, kv, n, hd)."""
        S, kv, _, GC, n = E.shape
        np.matmul(E.reshape(S, kv, 2 * GC, n), V, out=P)

    def _attended(self, P: np.ndarray, esum: np.ndarray, r_o: np.ndarray, C: int, o: np.ndarray) -> None:
        _attended(P, esum, self.unit, r_o, C, o)

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
        streams = {"q": self._buf(sc, "q", (S, kv, G * C, hd)),
                   "esum": self._buf(sc, "esum", (S, kv, G * C)),
                   "P": self._buf(sc, "P", (S, kv, self.P_ROWS * G * C, hd), self.P_DTYPE)}
        for l in range(c.n_layer):  # the parts copy the cached keys and values in
            for kind, shape in (("K", (S, kv, hd, n)), ("V", (S, kv, n, hd))):
                was = (cache.k if kind == "K" else cache.v)[l]
                streams[f"{kind}{l}"] = self._spare(sc, f"{kind}{l}.", was, shape)
                streams[f"old{kind}{l}"] = was
        rows = {"res": self.emb[tokens.reshape(-1)],  # (S*C, d) float64, a fresh copy
                "x": self._buf(sc, "x", (S * C, d)), "o": self._buf(sc, "o", (S * C, c.n_head * hd)),
                "h": self._buf(sc, "h", (S * C, f)), "out": np.empty((S * C, 256), dtype=np.float32)}
        for w in {self.p[key].shape[1] for key in ("l0.wqkv", "l0.wo", "l0.w1", "l0.w2", "head")}:
            rows[f"acc{w}"] = self._buf(sc, f"acc{w}", (S * C, w), self.ACC)  # one per product width

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

    def _part(self, a: dict, r: dict, C: int, t0: int, old: int, scratch: dict) -> None:
        """The whole model for some streams: a holds their per-stream arrays, r their rows,
        scratch this part's own attention tables."""
        c = self.cfg
        kv, G, n = c.n_kv_head, c.n_head // c.n_kv_head, old + C
        S = a["q"].shape[0]
        res, x, o, h = r["res"], r["x"], r["o"], r["h"]
        acc = lambda key: r[f"acc{self.p[key].shape[1]}"]
        top = float((1 << MLP_BITS) - 1)
        group = max(1, min(S, TUNING["attention_bytes"] // (12 * kv * G * C * n)))
        z = self._buf(scratch, "z", (group, kv, G * C, n))
        E = self._buf(scratch, "E", (group, kv, 2, G * C, n))
        for l in range(c.n_layer):
            K, V = a[f"K{l}"], a[f"V{l}"]
            K[..., :old] = a[f"oldK{l}"]
            V[:, :, :old] = a[f"oldV{l}"]
            norm(res, self.inv[f"l{l}.n1"], x)
            _qkv(self._acc(f"l{l}.wqkv", x, out=acc(f"l{l}.wqkv")), self.r[f"l{l}.wqkv"], C,
                 a["q"], K, V, old)
            for i in range(0, S, group):  # a group's weights stay in the cache
                j = min(S, i + group)
                self._scores(a["q"][i:j], K[i:j], z[:j - i], scratch)
                _weigh(z[:j - i], self.qk[l], t0, t0 - old, C, self.slopes, c.context, self.exp32,
                       self.unit, E[:j - i], a["esum"][i:j])
                self._mix(E[:j - i], V[i:j], a["P"][i:j], scratch)
            self._attended(a["P"], a["esum"], self.r[f"l{l}.o_in"], C, o)
            residual(res, self._acc(f"l{l}.wo", o, out=acc(f"l{l}.wo")), self.r[f"l{l}.wo"])
            norm(res, self.inv[f"l{l}.n2"], x)
            mlp(self._acc(f"l{l}.w1", x, out=acc(f"l{l}.w1")), self.r[f"l{l}.w1"], self.r[f"l{l}.sq"],
                 top, h)
            residual(res, self._acc(f"l{l}.w2", h, (1 << MLP_BITS) - 1, acc(f"l{l}.w2")),
                      self.r[f"l{l}.w2"])
        norm(res, self.inv["nf"], x)
        head(self._acc("head", x, out=acc("head")), self.r["head"], self.p["out_exp"], r["out"])


class VnniScorer(JitScorer):
    """JitScorer with its weight products on the CPU's int8 dot-product units (vnni.py)
    instead of numpy's float32 BLAS: the same integers, so the same tables bit for bit."""
    name = "vnni"
    ACC = np.float64  # int32 sums (w2's pass 2**24) held exactly

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
        # weighed with a unit above every weight: E's first part is zero, its second e
        self.unit = 2 ** int(weights.att_exp.max()).bit_length()
        self.laid = {key: vnni.layout(w, Weights.xmax(key) > 127) for key, w in self.p.items()
                     if key == "head" or key.split(".")[-1] in MATRICES}

    P_ROWS, P_DTYPE = 1, np.float64  # e @ V whole, in int32 sums (usable)

    def _scores(self, q: np.ndarray, K: np.ndarray, z: np.ndarray, scratch: dict) -> None:
        S, kv, GC, hd = q.shape
        n = K.shape[3]
        hdp, npad = -(-hd // 4) * 4, -(-n // vnni.BLOCK) * vnni.BLOCK
        qb = self._buf(scratch, "qb", (GC, hdp), np.uint8)
        kl = self._buf(scratch, "kl", (hdp // 4, npad * 4), np.int8)
        if hdp > hd:
            qb[:] = 0
            kl[:] = 0
        _scores_vnni(q, K, qb, kl, self._buf(scratch, "koff", (npad,), np.int32), z)

    def _mix(self, E: np.ndarray, V: np.ndarray, P: np.ndarray, scratch: dict) -> None:
        GC, n, hd = E.shape[3], V.shape[2], V.shape[3]
        n2, hdp = -(-n // 2) * 2, -(-hd // vnni.BLOCK) * vnni.BLOCK
        eb = self._buf(scratch, "eb", (GC, n2), np.int16)
        vl = self._buf(scratch, "vl", (n2 // 2, hdp * 2), np.int16)
        if n2 > n:
            eb[:] = 0
            vl[:] = 0
        _mix_vnni(E, V, eb, vl, self.zero_offset(hdp), P)

    @functools.cache
    def zero_offset(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.int32)

    def _attended(self, P: np.ndarray, esum: np.ndarray, r_o: np.ndarray, C: int, o: np.ndarray) -> None:
        _attended_whole(P, esum, r_o, C, o)

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
            out = np.empty((x.shape[0], self.p[key].shape[1]), np.float64)
        if wide:
            vnni.to_i16(x, xb)
            vnni.product_i16(xb, w, offset, out)
        else:
            vnni.to_u8(x, xb)
            vnni.product_u8(xb, w, offset, out)
        return out


@jit
def _scores_vnni(q, K, qb, kl, offset, z):
    """z (S, kv, GC, n) = q (S, kv, GC, hd) @ K (S, kv, hd, n) on VPDPBUSD, per stream
    and head: q + 128 into qb (GC, hdp) uint8, K into the product's layout kl and its
    offset (128 * each key's sum); exact integers (below 2**24, so float32 z holds them)."""
    S, kv, GC, hd = q.shape
    n = K.shape[3]
    for s in range(S):
        for h in range(kv):
            Ks = K[s, h]
            offset[:] = 0
            for i in range(hd):
                base, r = i // 4, i % 4
                for j in range(n):
                    kj = np.int32(Ks[i, j])
                    kl[base, j * 4 + r] = np.int8(kj)
                    offset[j] += 128 * kj
            vnni.to_u8(q[s, h], qb)
            vnni.product_u8(qb, kl, offset, z[s, h])


@jit
def _mix_vnni(E, V, eb, vl, offset, P):
    """P (S, kv, GC, hd) float64 = e @ V on VPDPWSSD, e the whole weights (E's second
    part: VnniScorer weighs with a unit above every weight, so the first is zero) as int16
    pairs of keys in eb (GC, n2), V in the product's layout vl (n2 / 2, hdp * 2) int16."""
    S, kv = E.shape[0], E.shape[1]
    n, hd = V.shape[2], V.shape[3]
    for s in range(S):
        for h in range(kv):
            Vs = V[s, h]
            for j in range(n):
                base, r = j // 2, j % 2
                for i in range(hd):
                    vl[base, i * 2 + r] = np.int16(Vs[j, i])
            vnni.to_i16(E[s, h, 1], eb)
            vnni.product_i16(eb, vl, offset, P[s, h])


@jit
def _attended_whole(P, esum, r_o, C, o):
    """_attended for whole sums e @ V (P (S, kv, G*C, hd) float64, exact)."""
    S, kv, GC, hd = P.shape
    G = GC // C
    for s in range(S):
        for h in range(kv):
            for g in range(G):
                for c in range(C):
                    a = g * C + c
                    row, col = s * C + c, (h * G + g) * hd
                    for i in range(hd):
                        y = np.floor(P[s, h, a, i] * r_o[0] / esum[s, h, a] + 0.5)
                        o[row, col + i] = min(max(y, -127.0), 127.0)
