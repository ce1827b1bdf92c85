"""Fixed-point arithmetic shared by the adaptive components of __init__.py: exact int64
numpy operations, so encoder and decoder compute the same numbers on every machine."""
from __future__ import annotations

import numpy as np

ONE = 1 << 16  # weights and probabilities in learning are fractions of ONE
MAX_W = ONE - ONE // 64
RATE_SHIFT = 24  # learning rate: 2**-8 of the code-length gradient (in units of ONE)
_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of int64 values 0 <= x < 2**62, exact: frexp's exponent, less one where
    rounding to float64 carried x up to the next power of two."""
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    return np.maximum(e - ((x >> np.maximum(e - 1, 0)) == 0), 0)


def hash_bytes(hist: np.ndarray, t: int, nbytes: int, bits: int) -> np.ndarray:
    """(S,) table slots from the nbytes bytes before step t of each stream (uint64
    arithmetic wraps the same way everywhere)."""
    v = np.zeros(hist.shape[0], dtype=np.uint64)
    for i in range(t - nbytes, t):
        v = v * _PRIME ^ hist[:, i].astype(np.uint64)
    return ((v * _GOLDEN) >> np.uint64(64 - bits)).astype(np.int64)


def shift_rows(g: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Rows of int64 numerators (row sums `total` < 2**62) -> exact integers >= 1 with row
    sums below 2**24, in place: each row shifted right just enough, then 1 added; returns
    the shifts. The next component and float32 both need that bound, and a byte whose
    share vanished must keep code space."""
    k = np.maximum(bit_length(total) - 23, 0)
    g >>= k[:, None]
    g += 1
    return k


def weights_step(w: np.ndarray, bucket: np.ndarray, x16: np.ndarray, g: np.ndarray,
                 k: np.ndarray, total: np.ndarray, learn: np.ndarray) -> np.ndarray:
    """One gradient step on the bucket weights w, after a component mixed numerators
    (row sums `total`) that shift_rows turned into g with shifts k.

    For p' = (1-w) p + w q the code-length gradient is (q - p) / p'; x16 = (q - p) * ONE
    for the coded byte of each stream, and g holds that byte's p' (times its row total,
    shifted). Streams in the same bucket are averaged, so the step does not depend on how
    many streams there are."""
    if not learn.any():
        return w
    p16 = ((g - 1) << k) // (total >> 16)  # p' * ONE
    step = (x16 << (RATE_SHIFT - 16)) // np.maximum(p16, 1)
    b = bucket[learn]
    count = np.bincount(b, minlength=len(w))
    acc = np.zeros(len(w), dtype=np.int64)
    np.add.at(acc, b, step[learn])
    return np.minimum(np.maximum(w + acc // np.maximum(count, 1), 0), MAX_W)
