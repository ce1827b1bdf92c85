"""The adaptive models' chain compiled with numba (optional, like jitstep): Mixer's steps.

counts.py and match.py run a few dozen small int64 numpy operations per step,
whose fixed cost is most of their time. These loops compute the same integers from the
same state arrays (numpy's int64 // and >> floor like these do), so either
implementation can code a block and the other decode it; tests/test_mixer.py compares
them. Each function mirrors the numpy method named in its docstring. The whole chain is
one call per mix and one per update (Chain), and the encoder's pass of steps, whose bytes
are known, one call in all: a call costs microseconds however small the work, which
with tens of streams was most of the time. Importing this module needs numba
(tzip/engine/__init__.py checks).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ... import jitcache
from . import counts, match
from .fixedpoint import _GOLDEN, _PRIME, MAX_W, ONE, RATE_SHIFT

numba = jitcache.numba()  # its cache folder chosen first (tzip/jitcache.py)
_jit = numba.njit(cache=jitcache.caching(), nogil=True, boundscheck=False)


@_jit
def _bit_length(x):
    n = 0
    while x > 0:
        x >>= 1
        n += 1
    return n


@_jit
def hash_bytes(hist, t, nbytes, bits, out):
    """fixedpoint.hash_bytes into out (S,) int64."""
    for s in range(hist.shape[0]):
        v = np.uint64(0)
        for i in range(t - nbytes, t):
            v = v * _PRIME ^ np.uint64(hist[s, i])
        out[s] = np.int64((v * _GOLDEN) >> np.uint64(64 - bits))


@_jit
def _shift_row(g, s, total):
    """fixedpoint.shift_rows for row s; returns its shift."""
    k = max(_bit_length(total) - 23, 0)
    for i in range(g.shape[1]):
        g[s, i] = (g[s, i] >> k) + 1
    return k


@_jit
def weights_step(w, bucket, x16, gsym, k, total, learn):
    """fixedpoint.weights_step, in place on w."""
    nb = w.shape[0]
    acc = np.zeros(nb, dtype=np.int64)
    count = np.zeros(nb, dtype=np.int64)
    for s in range(bucket.shape[0]):
        if learn[s]:
            p16 = ((gsym[s] - 1) << k[s]) // (total[s] >> 16)
            acc[bucket[s]] += (x16[s] << (RATE_SHIFT - 16)) // max(p16, 1)
            count[bucket[s]] += 1
    for b in range(nb):
        w[b] = min(max(w[b] + acc[b] // max(count[b], 1), 0), MAX_W)


@_jit
def count_mix(row, cnt, tot, w, p, g, has, bucket, F, C1, k, total, inc, seen_cap, sure_n):
    """CountModel.mix: g (S, 256) from p and the rows' counts; fills the per-stream
    arrays that count_update needs."""
    S, n = p.shape
    for s in range(S):
        r = row[s]
        C = tot[r]
        has[s] = C > 0
        C1[s] = max(C, 1)
        top = 0
        for i in range(n):
            top = max(top, np.int64(cnt[r, i]))
        seen = min(max(C // inc, 1), seen_cap)
        sure = np.int64(top * 4 >= C) + np.int64(top * 2 >= C) + np.int64(top * 4 >= 3 * C)
        bucket[s] = (_bit_length(seen) - 1) * sure_n + sure
        ws = w[bucket[s]] if has[s] else 0
        f = 0
        for i in range(n):
            f += p[s, i]
        F[s] = f
        a, b = (ONE - ws) * C1[s], ws * f
        for i in range(n):
            g[s, i] = p[s, i] * a + np.int64(cnt[r, i]) * b
        total[s] = ONE * f * C1[s]
        k[s] = _shift_row(g, s, total[s])


@_jit
def count_update(row, cnt, tot, w, p, g, has, bucket, F, C1, k, total, sym, active, inc, limit):
    """CountModel.update: learn the weights, then count the coded bytes."""
    S = p.shape[0]
    x16 = np.empty(S, dtype=np.int64)
    gsym = np.empty(S, dtype=np.int64)
    learn = np.empty(S, dtype=np.bool_)
    for s in range(S):
        c = np.int64(cnt[row[s], sym[s]])
        x16[s] = (c << 16) // C1[s] - (p[s, sym[s]] << 16) // F[s]
        gsym[s] = g[s, sym[s]]
        learn[s] = active[s] and has[s]
    weights_step(w, bucket, x16, gsym, k, total, learn)
    for s in range(S):  # uint16 counts wrap as numpy's do
        if active[s]:
            cnt[row[s], sym[s]] += inc
            tot[row[s]] += inc
    full = np.empty(S, dtype=np.int64)
    n = 0
    for s in range(S):
        if active[s] and tot[row[s]] > limit:
            full[n] = row[s]
            n += 1
    full = np.sort(full[:n])
    for j in range(n):  # each full row halved once, however full (np.unique in counts.py)
        r = full[j]
        if j > 0 and r == full[j - 1]:
            continue
        t = 0
        for i in range(cnt.shape[1]):
            cnt[r, i] = np.uint16(cnt[r, i] + np.uint16(1)) >> np.uint16(1)
            t += cnt[r, i]
        tot[r] = t


@_jit
def match_mix(hist, t, nbytes, bits, table, ln, ptr, w, run_edges, conf_n, verify, p,
              g, slots, has, pred, prev, length, bucket, F, k):
    """MatchModel.mix: g (S, 256) from p and each stream's guessed byte."""
    S, n = p.shape
    hash_bytes(hist, t, nbytes, bits, slots)
    for s in range(S):
        follow = ln[s] > 0
        pv = ptr[s] + S if follow else table[slots[s]]
        has[s] = pv >= 0
        pv = max(pv, 0)
        prev[s] = pv
        L = ln[s]
        if has[s] and not follow:  # MatchModel._agree
            ps, pt = pv % S, pv // S
            L = 0
            for b in range(1, verify + 1):
                if pt - b < 0 or t - b < 0 or hist[ps, pt - b] != hist[s, t - b]:
                    break
                L += 1
        length[s] = L
        pred[s] = hist[pv % S, pv // S]
        f = 0
        for i in range(n):
            f += p[s, i]
        F[s] = f
        fp = p[s, pred[s]]
        conf = np.int64(fp * 16 >= f) + np.int64(fp * 4 >= f) + np.int64(fp * 4 >= 3 * f)
        run = 0
        while run + 1 < run_edges.shape[0] and run_edges[run + 1] <= L:
            run += 1
        bucket[s] = run * conf_n + conf
        ws = w[bucket[s]] if has[s] else 0
        for i in range(n):
            g[s, i] = p[s, i] * (ONE - ws)
        g[s, pred[s]] += f * ws
        k[s] = _shift_row(g, s, f * ONE)


@_jit
def match_update(t, table, ln, ptr, w, p, g, slots, has, pred, prev, length, bucket, F,
                 k, sym, active):
    """MatchModel.update: learn the weights, follow or drop each copy, index step t."""
    S = p.shape[0]
    x16 = np.empty(S, dtype=np.int64)
    gsym = np.empty(S, dtype=np.int64)
    learn = np.empty(S, dtype=np.bool_)
    total = np.empty(S, dtype=np.int64)
    for s in range(S):
        hit = pred[s] == sym[s]
        x16[s] = (ONE if hit else 0) - (p[s, sym[s]] << 16) // F[s]
        gsym[s] = g[s, sym[s]]
        learn[s] = active[s] and has[s]
        total[s] = F[s] * ONE
    weights_step(w, bucket, x16, gsym, k, total, learn)
    for s in range(S):
        ptr[s] = prev[s]
        if active[s]:
            ln[s] = length[s] + 1 if has[s] and pred[s] == sym[s] else 0
            table[slots[s]] = max(table[slots[s]], t * S + s)


class CountState(NamedTuple):
    """A CountModel's constants and arrays for the compiled loops: its learned state
    (cnt, tot, w: the numpy model's own arrays, updated in place) and per-step scratch
    (row .. total, one entry per stream)."""
    order: int
    row_bits: int
    inc: int
    seen_cap: int
    sure_n: int
    limit: int
    cnt: np.ndarray
    tot: np.ndarray
    w: np.ndarray
    row: np.ndarray
    g: np.ndarray
    has: np.ndarray
    bucket: np.ndarray
    F: np.ndarray
    C1: np.ndarray
    k: np.ndarray
    total: np.ndarray


class MatchState(NamedTuple):
    """A MatchModel's constants and arrays for the compiled loops: its learned state
    (table, ln, ptr, w: the numpy model's own arrays) and per-step scratch (g .. k)."""
    nbytes: int
    bits: int
    conf_n: int
    verify: int
    run_edges: np.ndarray
    table: np.ndarray
    ln: np.ndarray
    ptr: np.ndarray
    w: np.ndarray
    g: np.ndarray
    slots: np.ndarray
    has: np.ndarray
    pred: np.ndarray
    prev: np.ndarray
    length: np.ndarray
    bucket: np.ndarray
    F: np.ndarray
    k: np.ndarray


@_jit
def _count_mix_at(t, hist, cm, p):
    """CountModel.mix at step t: the numerators g from p, or p itself before the model
    has `order` bytes to look at."""
    if t < cm.order:
        return p
    if cm.order == 2:
        for s in range(hist.shape[0]):
            cm.row[s] = hist[s, t - 2] << 8 | hist[s, t - 1]
    else:
        hash_bytes(hist, t, cm.order, cm.row_bits, cm.row)
    count_mix(cm.row, cm.cnt, cm.tot, cm.w, p, cm.g, cm.has, cm.bucket, cm.F, cm.C1, cm.k,
              cm.total, cm.inc, cm.seen_cap, cm.sure_n)
    return cm.g


@_jit
def _count_mixed(t, cm, p):
    """What CountModel.mix at step t gave for p (the next model's input): its g, or p."""
    return p if t < cm.order else cm.g


@_jit
def _count_update_at(t, cm, p, sym, active):
    """CountModel.update at step t, p being what the model mixed."""
    if t >= cm.order:
        count_update(cm.row, cm.cnt, cm.tot, cm.w, p, cm.g, cm.has, cm.bucket, cm.F, cm.C1, cm.k,
                     cm.total, sym, active, cm.inc, cm.limit)


@_jit
def _match_mix_at(t, hist, mm, p):
    """MatchModel.mix at step t, as _count_mix_at."""
    if t < mm.nbytes:
        return p
    match_mix(hist, t, mm.nbytes, mm.bits, mm.table, mm.ln, mm.ptr, mm.w, mm.run_edges, mm.conf_n,
              mm.verify, p, mm.g, mm.slots, mm.has, mm.pred, mm.prev, mm.length, mm.bucket, mm.F, mm.k)
    return mm.g


@_jit
def _match_update_at(t, mm, p, sym, active):
    """MatchModel.update at step t, as _count_update_at."""
    if t >= mm.nbytes:
        match_update(t, mm.table, mm.ln, mm.ptr, mm.w, p, mm.g, mm.slots, mm.has, mm.pred, mm.prev,
                     mm.length, mm.bucket, mm.F, mm.k, sym, active)


@_jit
def _mix_step(t, freqs, hist, c2, c4, mm, p0, out):
    """Mixer.mix: freqs (S, 256) integer-valued through both count models, then the
    match model, into out (S, 256) float32; p0 (S, 256) int64 keeps the model's."""
    S, n = p0.shape
    for s in range(S):
        for i in range(n):
            p0[s, i] = np.int64(freqs[s, i])
    g = _match_mix_at(t, hist, mm, _count_mix_at(t, hist, c4, _count_mix_at(t, hist, c2, p0)))
    for s in range(S):
        for i in range(n):
            out[s, i] = np.float32(g[s, i])


@_jit
def _update_step(t, sym, active, c2, c4, mm, p0):
    """Mixer.update after _mix_step at step t: each model learns from what it mixed."""
    p2 = _count_mixed(t, c2, p0)
    p4 = _count_mixed(t, c4, p2)
    _count_update_at(t, c2, p0, sym, active)
    _count_update_at(t, c4, p2, sym, active)
    _match_update_at(t, mm, p4, sym, active)


@_jit
def _mix_coded(t0, freqs, hist, active, c2, c4, mm, p0, out):
    """_mix_step and _update_step for steps t0 .. t0+c-1 of freqs (S, c, 256), whose
    bytes hist (S, L) already holds (the encoder's): out (c, S, 256) float32."""
    for i in range(freqs.shape[1]):
        t = t0 + i
        _mix_step(t, freqs[:, i], hist, c2, c4, mm, p0, out[i])
        _update_step(t, hist[:, t], active[:, t], c2, c4, mm, p0)


# The entry points from Python take each state as a plain tuple and name it inside: the
# dispatcher types a plain tuple of arrays in C, a NamedTuple in Python (tens of us per
# call, every step).
@_jit
def mix_step(t, freqs, hist, c2, c4, mm, p0, out):
    _mix_step(t, freqs, hist, CountState(*c2), CountState(*c4), MatchState(*mm), p0, out)


@_jit
def update_step(t, sym, active, c2, c4, mm, p0):
    _update_step(t, sym, active, CountState(*c2), CountState(*c4), MatchState(*mm), p0)


@_jit
def mix_coded(t0, freqs, hist, active, c2, c4, mm, p0, out):
    _mix_coded(t0, freqs, hist, active, CountState(*c2), CountState(*c4), MatchState(*mm), p0, out)


class Chain:
    """Mixer's chain over the state of its components (order-a and order-b counts, then
    matches), compiled: the components' arrays, updated in place, and per-step scratch.
    Both work on the same arrays, in place, so either may run any step."""

    def __init__(self, hist: np.ndarray, c2: counts.CountModel, c4: counts.CountModel,
                 mm: match.MatchModel):
        S = hist.shape[0]
        self.hist = hist
        i64 = lambda: np.zeros(S, dtype=np.int64)
        rows = lambda: np.zeros((S, 256), dtype=np.int64)

        def count_state(cm: counts.CountModel) -> CountState:
            return CountState(cm.order, counts.ROW_BITS, counts.INC, 1 << (counts.SEEN - 1),
                              counts.SURE, counts.LIMIT, cm.cnt, cm.tot, cm.w, row=i64(), g=rows(),
                              has=np.zeros(S, dtype=bool), bucket=i64(), F=i64(), C1=i64(), k=i64(),
                              total=i64())

        self.c2, self.c4 = count_state(c2), count_state(c4)
        self.mm = MatchState(mm.nbytes, mm.bits, match.CONF, match.VERIFY, match.RUN_EDGES, mm.table,
                             mm.len, mm.ptr, mm.w, g=rows(), slots=i64(), has=np.zeros(S, dtype=bool),
                             pred=i64(), prev=i64(), length=i64(), bucket=i64(), F=i64(), k=i64())
        self.p0 = rows()
        self._states = (tuple(self.c2), tuple(self.c4), tuple(self.mm))

    def mix(self, t: int, freqs: np.ndarray) -> np.ndarray:
        out = np.empty(self.p0.shape, dtype=np.float32)
        mix_step(t, freqs, self.hist, *self._states, self.p0, out)
        return out

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        update_step(t, sym, active, *self._states, self.p0)

    def mix_coded(self, t0: int, freqs: np.ndarray, active: np.ndarray) -> np.ndarray:
        out = np.empty((freqs.shape[1],) + self.p0.shape, dtype=np.float32)
        mix_coded(t0, freqs, self.hist, active, *self._states, self.p0, out)
        return out
