"""Order-k count models: how often each byte followed the last k bytes, in this block.

PPM's insight, kept small: a file's own statistics (a transcript's prompts, Lisp's
parentheses, a bibliography's field names) are learned after a few occurrences, while
the fixed transformer may never have seen such text. Counts live in one table per order,
shared by all streams of the block; a row is halved when its total passes LIMIT, so it
follows recent text. Mixed in as in __init__.py, with a weight per bucket of (how much
the row has seen, how sure it is of its favourite byte).
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import ONE, hash_bytes, shift_rows, weights_step

ROW_BITS = 16  # rows per order: order 2 indexes them exactly, higher orders by hash
INC = 32  # added to a byte's count each time it occurs
LIMIT = 1 << 15  # a row whose total passes this is halved
SEEN = 8  # buckets for the row total: log2(total / INC), capped
SURE = 4  # buckets for the share of the row's most frequent byte


class CountModel:
    """Counts for one order over S lockstep streams whose bytes fill `hist` (S, L)."""

    def __init__(self, hist: np.ndarray, order: int):
        self.hist, self.order = hist, order
        self.cnt = np.zeros((1 << ROW_BITS, 256), dtype=np.uint16)
        self.tot = np.zeros(1 << ROW_BITS, dtype=np.int64)
        self.rows = np.arange(hist.shape[0])
        self.w = np.zeros(SEEN * SURE, dtype=np.int64)
        self._step = None

    def _row(self, t: int) -> np.ndarray:
        if self.order == 2:
            return self.hist[:, t - 2] << 8 | self.hist[:, t - 1]
        return hash_bytes(self.hist, t, self.order, ROW_BITS)

    def mix(self, t: int, p: np.ndarray) -> np.ndarray:
        if t < self.order:
            self._step = None
            return p
        row = self._row(t)
        c = self.cnt[row].astype(np.int64)
        C = self.tot[row]
        has = C > 0
        C1 = np.maximum(C, 1)
        top = c.max(1)
        seen = np.minimum(np.maximum(C // INC, 1), 1 << (SEEN - 1))
        sure = (top * 4 >= C).astype(np.int64) + (top * 2 >= C) + (top * 4 >= 3 * C)
        bucket = (np.frexp(seen.astype(np.float64))[1] - 1) * SURE + sure
        w = np.where(has, self.w[bucket], 0)
        F = p.sum(1)
        g = p * ((ONE - w) * C1)[:, None]
        g += c * (w * F)[:, None]
        total = ONE * F * C1
        k = shift_rows(g, total)
        self._step = (row, has, bucket, p, F, c, C1, g, k, total)
        return g

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        if self._step is None:
            return
        row, has, bucket, p, F, c, C1, g, k, total = self._step
        rows = self.rows
        x16 = (c[rows, sym] << 16) // C1 - (p[rows, sym] << 16) // F
        self.w[:] = weights_step(self.w, bucket, x16, g[rows, sym], k, total, active & has)
        r = row[active]
        np.add.at(self.cnt, (r, sym[active]), INC)
        np.add.at(self.tot, r, INC)
        full = r[self.tot[r] > LIMIT]
        if len(full):
            full = np.unique(full)
            self.cnt[full] = (self.cnt[full] + 1) >> 1
            self.tot[full] = self.cnt[full].sum(1, dtype=np.int64)
