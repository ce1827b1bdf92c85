"""Match model: predicts that a stream repeats what followed the last occurrence of its
recent bytes, and mixes that guess into the transformer's distribution.

The transformer sees only `context` bytes; text often repeats itself from much further
back (a bibliography, a verse, a table). A hash table maps the last MATCH_BYTES bytes to
where they last occurred in any stream of the block, among the bytes already coded
(every stream up to the previous step); the byte that followed them then is the guess. How much to trust it is learned while coding: one weight per bucket
(how many guesses in a row were right, and how likely the model already finds the
guess), moved by the gradient of the code length.

Everything is integer arithmetic on numpy int64 arrays, done step by step in the same
order by the encoder and the decoder, so both see the same probabilities bit for bit.
"""
from __future__ import annotations

import numpy as np

MATCH_BYTES = 4  # context bytes hashed to find an earlier occurrence
RUN_EDGES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64])  # bucket lower edges
RUNS = len(RUN_EDGES)  # buckets for the number of right guesses in a row
CONF = 4  # buckets for the model's own probability of the guessed byte
ONE = 1 << 16  # weights are fractions of ONE
MAX_W = ONE - ONE // 64
RATE_SHIFT = 25  # learning rate: 2**-7 of the code-length gradient (in units of ONE)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _to_float32(g: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Rows of int64 frequencies (row sums `total`, up to 2**40) -> float32 values that are
    exact integers >= 1 with row sums below 2**24: each row is shifted right just enough,
    then 1 is added. float32 cannot hold the raw mixture exactly, and a rare byte whose
    weight vanished when the coder summed a row would get no code space at all."""
    k = np.zeros(len(total), dtype=np.int64)
    for j in range(23, 63):
        k += (total >> j) > 0
    return ((g >> k[:, None]) + 1).astype(np.float32)


class MatchMixer:
    """State of the match model for S lockstep streams whose bytes are filled in `hist`
    (S, L) as coding proceeds; mix() then update() once per step."""

    def __init__(self, hist: np.ndarray):
        self.hist = hist
        S, L = hist.shape
        self.bits = min(22, max(12, (S * L).bit_length() + 1))
        self.table = np.full(1 << self.bits, -1, dtype=np.int64)  # step * S + stream
        self.rows = np.arange(S)
        self.run = np.zeros(S, dtype=np.int64)
        self.ptr = np.full(S, -1, dtype=np.int64)  # step * S + stream of the last guess
        self.w = np.repeat(np.minimum(RUN_EDGES, 20) * (ONE // 40), CONF).astype(np.int64)
        self._step = None

    def _slots(self, t: int) -> np.ndarray:
        ctx = self.hist[:, t - MATCH_BYTES:t].astype(np.uint64)
        v = np.zeros(len(ctx), dtype=np.uint64)
        for i in range(MATCH_BYTES):
            v |= ctx[:, i] << np.uint64(8 * i)
        return ((v * _GOLDEN) >> np.uint64(64 - self.bits)).astype(np.int64)

    def mix(self, t: int, freqs: np.ndarray) -> np.ndarray:
        """freqs (S, 256) integer-valued model frequencies -> (S, 256) float32 mixture."""
        f = freqs.astype(np.int64)
        if t < MATCH_BYTES:
            self._step = None
            return f.astype(np.float32)
        slots = self._slots(t)
        S = len(self.rows)
        # while the guesses keep coming true, follow the same earlier copy; else look up
        prev = np.where(self.run > 0, self.ptr + S, self.table[slots])
        has = prev >= 0
        pred = self.hist[prev % S, np.maximum(prev, 0) // S].astype(np.int64)
        F = f.sum(1)
        fp = f[self.rows, pred]
        conf = (fp * 16 >= F).astype(np.int64) + (fp * 4 >= F) + (fp * 4 >= 3 * F)
        bucket = (np.searchsorted(RUN_EDGES, self.run, side="right") - 1) * CONF + conf
        w = np.where(has, self.w[bucket], 0)
        g = f * (ONE - w)[:, None]
        g[self.rows, pred] += F * w
        self._step = (slots, has, pred, bucket, f, F, g)
        self.ptr = prev
        return _to_float32(g, F * ONE)

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        """Learn from the bytes sym (S,) just coded at step t (only where active)."""
        if self._step is None:
            return
        slots, has, pred, bucket, f, F, g = self._step
        rows = self.rows
        hit = pred == sym
        learn = active & has
        if learn.any():
            num = np.where(hit, F, 0) - f[rows, sym]  # sign and size of d log p / d w
            step = (num << RATE_SHIFT) // g[rows, sym]
            total = np.bincount(bucket[learn], minlength=RUNS * CONF)
            acc = np.zeros(RUNS * CONF, dtype=np.int64)
            np.add.at(acc, bucket[learn], step[learn])
            self.w = np.clip(self.w + acc // np.maximum(total, 1), 0, MAX_W)
        self.run = np.where(active, np.where(has & hit, self.run + 1, 0), self.run)
        np.maximum.at(self.table, slots[active], t * len(rows) + rows[active])  # latest wins
