"""Match model: predicts that a stream repeats what followed the last occurrence of its
recent bytes.

The transformer sees only `context` bytes; text often repeats itself from much further
back (a bibliography, a verse, a table). A hash table maps the last `nbytes` bytes to
where they last occurred in any stream of the block, among the bytes already coded
(every stream up to the previous step); the byte that followed them then is the guess.
While guesses keep coming true the model follows the same copy. Its trust is a weight
per bucket of (match length, how likely the mixture so far finds the guess), learned as
in __init__.py; the match length of a fresh candidate is the number of bytes before it
that agree with the stream's own, up to VERIFY.
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import ONE, hash_bytes, shift_rows, weights_step

RUN_EDGES = np.array([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32])  # bucket lower edges
RUNS = len(RUN_EDGES)  # buckets for the match length
CONF = 4  # buckets for the mixture's probability of the guessed byte
VERIFY = 32  # bytes compared backwards to measure a fresh candidate's match length


class MatchModel:
    """One match model over S lockstep streams whose bytes fill `hist` (S, L)."""

    def __init__(self, hist: np.ndarray, nbytes: int):
        self.hist, self.nbytes = hist, nbytes
        S, L = hist.shape
        self.bits = min(22, max(12, (S * L).bit_length() + 1))
        self.table = np.full(1 << self.bits, -1, dtype=np.int64)  # step * S + stream
        self.rows = np.arange(S)
        self.len = np.zeros(S, dtype=np.int64)  # bytes of agreeing context
        self.ptr = np.full(S, -1, dtype=np.int64)  # step * S + stream of the last guess
        self.w = np.repeat(np.minimum(RUN_EDGES, 20) * (ONE // 40), CONF).astype(np.int64)
        self._back = np.arange(1, VERIFY + 1)
        self._step = None

    def _agree(self, t: int, streams: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Bytes before position prev (step * S + stream) that equal those before step t
        of the given streams, up to VERIFY."""
        S = len(self.rows)
        ps, pt = prev % S, prev // S
        there = pt[:, None] - self._back  # (S, VERIFY) steps in the earlier copy
        here = t - self._back
        ok = (there >= 0) & (here >= 0)[None, :]
        same = self.hist[ps[:, None], np.maximum(there, 0)] == self.hist[streams[:, None], np.maximum(here, 0)]
        return np.cumprod(ok & same, axis=1).sum(1)

    def mix(self, t: int, p: np.ndarray) -> np.ndarray:
        if t < self.nbytes:
            self._step = None
            return p
        S = len(self.rows)
        slots = hash_bytes(self.hist, t, self.nbytes, self.bits)
        follow = self.len > 0  # the last guess came true: stay on the same copy
        prev = np.where(follow, self.ptr + S, self.table[slots])
        has = prev >= 0
        prev = np.maximum(prev, 0)
        length = self.len.copy()
        fresh = has & ~follow
        if fresh.any():
            length[fresh] = self._agree(t, self.rows[fresh], prev[fresh])
        pred = self.hist[prev % S, prev // S]
        F = p.sum(1)
        fp = p[self.rows, pred]
        conf = (fp * 16 >= F).astype(np.int64) + (fp * 4 >= F) + (fp * 4 >= 3 * F)
        bucket = (np.searchsorted(RUN_EDGES, length, side="right") - 1) * CONF + conf
        w = np.where(has, self.w[bucket], 0)
        g = p * (ONE - w)[:, None]
        g[self.rows, pred] += F * w
        k = shift_rows(g, F * ONE)
        self._step = (slots, has, pred, prev, length, bucket, p, F, g, k)
        return g

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        if self._step is None:
            return
        slots, has, pred, prev, length, bucket, p, F, g, k = self._step
        rows = self.rows
        hit = pred == sym
        x16 = np.where(hit, ONE, 0) - (p[rows, sym] << 16) // F
        self.w[:] = weights_step(self.w, bucket, x16, g[rows, sym], k, F * ONE, active & has)
        self.ptr[:] = prev
        self.len[:] = np.where(active, np.where(has & hit, length + 1, 0), self.len)
        np.maximum.at(self.table, slots[active], t * len(rows) + rows[active])  # latest wins
