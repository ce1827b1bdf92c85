"""Constants and integer tables shared by both implementations of the CM stage.

Everything here is built from integers only (no float maths), so the tables are the same on
every machine. Probabilities are 12-bit: P(bit = 1) * 4096, in 1..4095. The logistic
domain ("stretch") is scaled by 256: st(p) = 256 * ln(p / (1 - p)), clamped to +-2047.
"""
from __future__ import annotations

import numpy as np

# logistic function 4096 / (1 + exp(-x / 256)) at x = -2048, -1920, ..., 2048 (33 knots,
# rounded integers); squash interpolates linearly between them (as lpaq1 does)
SQUASH_KNOTS = (1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
                2549, 2994, 3348, 3607, 3785, 3901, 3975, 4022, 4050, 4068, 4079, 4085,
                4089, 4092, 4093, 4094)


def squash_int(d: int) -> int:
    """12-bit probability of the stretched value d (an integer, 256 per nat)."""
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    w = d & 127
    i = (d >> 7) + 16
    return (SQUASH_KNOTS[i] * (128 - w) + SQUASH_KNOTS[i + 1] * w + 64) >> 7


def _build_squash() -> np.ndarray:
    """SQUASH[d + 2048] for d in -2048..2047."""
    return np.array([squash_int(d) for d in range(-2048, 2048)], dtype=np.int64)


def _build_stretch() -> np.ndarray:
    """STRETCH[p] for p in 0..4095: the inverse of squash (the smallest d with
    squash(d) >= p), so stretch(squash(d)) ~= d."""
    out = np.zeros(4096, dtype=np.int64)
    pi = 0
    for x in range(-2047, 2048):
        v = squash_int(x)
        for i in range(pi, v + 1):
            out[i] = x
        pi = v + 1
    out[pi:] = 2047
    return out


SQUASH = _build_squash()
STRETCH = _build_stretch()

# Adaptive probability counter: one uint32, a 22-bit probability over a 10-bit count n.
# Update: p += (y * 2^22 - p) * DT[n] >> 16 with DT[n] = 2^16 / (n + 1.5): the first
# observations move it fast (KT-like frequency estimate), later ones by at most 1/(limit+1.5)
# so it keeps following a changing source.
DT = np.array([(1 << 17) // (2 * n + 3) for n in range(1024)], dtype=np.int64)
COUNTER_INIT = 1 << 31  # p = 1/2, n = 0

# Hashing: 32-bit values mixed with multipliers below 2^30, so every product fits in a
# signed 64-bit integer (numba) and equals Python's unbounded result.
MASK32 = 0xFFFFFFFF
HASH_MUL = 0x2545F491
HASH_MUL2 = 0x3C6EF35F

BUCKET = 16  # uint32 slots per hash bucket: a checksum and the 15 nodes of a nibble's tree
PROBES = 3  # buckets tried per lookup (idx, idx ^ 1, idx ^ 2)

# Inputs of the mixers, in order
IN_TF, IN_TF_APM, IN_O1 = 0, 1, 2
# Hashed context models. Orders k: the previous k bytes; word: the letters since the last
# non-letter (NULs skipped, so UTF-16 text keeps its words) with the previous byte; column:
# the byte above (same column of the previous line of this stream) with the previous byte;
# even: the 2nd, 4th and 6th previous bytes (UTF-16 code units, 2-byte records). Measured
# on a 9-file subset and not kept: order 5, 6 and 16, sparse (2nd and 3rd bytes back),
# indirect (the bytes that followed the order-2 context last time).
# Revision 2 adds two for tables, logs and records: field, the number of separators
# (, ; tab |) since the line start with the field's bytes so far; and field_above, the
# byte at the same offset of the same field of the previous line (the column of a table
# whose cells vary in width), with the field's number. Revision 1 (format 4) has the
# first nine. Measured with the CM stage alone on the structured group's whole files:
# field (with mixer C) -2.6%, field_above -0.7% (airports.csv -4.3%).
CONTEXTS = ("o2", "o3", "o4", "word", "column", "even", "o8", "o12", "o24", "field", "field_above")
CONTEXTS_R1 = 9
SEPARATORS = (9, 44, 59, 124)  # tab , ; |
FIELDS = 32  # fields of a line whose starts are remembered (for field_above)
ORDER_CONTEXTS = {"o2": 2, "o3": 3, "o4": 4, "o8": 8, "o12": 12, "o24": 24}
IN_CTX = 3
IN_CMAP = IN_CTX + len(CONTEXTS)  # the same counters through a map by (order, count, p)
IN_MATCH = IN_CMAP + len(CONTEXTS)  # match model: adaptive st(p) by (length, expected bit)
IN_MATCH_LEN = IN_MATCH + 1  # match model: +-length, linear
IN_MATCH2 = IN_MATCH_LEN + 1  # match model 2 (the stream's own history): st(p) by (length, bit)
IN_BIAS = IN_MATCH2 + 1
N_INPUTS = IN_BIAS + 1

MATCH_MIN = 7  # bytes of context hashed to find a match candidate
MATCH_VERIFY = 48  # bytes compared backwards to measure a candidate's true length
MATCH_LEN_CAP = 65535

COUNTER_LIMIT_CTX = 255  # count limit of the context models' counters
COUNTER_LIMIT_O1 = 1023
COUNTER_LIMIT_MATCH = 1023

MIX_SETS_A = 256  # mixer A: weight set by the partial byte c0
MIX_SETS_B = 64  # mixer B: by (match length bucket 0..7, transformer confidence 0..3, parity)
MIX_SETS_C = 4096  # mixer C (revision 2): by a 12-bit hash of the two previous bytes
MIX_SETS_F = 16  # final mixer (A, B, transformer, bias, C -> p): by (bit position, parity)
MIX_F_INIT = {1: (1 << 15, 1 << 15, 0, 0, 0), 2: (22000, 22000, 0, 0, 22000)}  # by revision
REVISIONS = (1, 2)  # of the CM stage: 1 codes format 4's blocks, 2 format 5's
# parity: of the byte's offset in the block (UTF-16 and 2-byte records alternate roles);
# measured on UTF-16 Chinese text: 2.070 -> 1.996 bpb, others within +-0.2%
LR_A, LR_B, LR_F = 24, 24, 8  # learning rates: w += (x * err * LR + 2^15) >> 16
W_INIT_TF = 1 << 14  # initial weights (1.0 = 2^16): the transformer 0.25, the others 1/16;
W_INIT = 1 << 12  # from 1.0 / 0.125: -0.9% on 7 files, -1.2% where the transformer is bad
APM_RATE = 6

APM_BINS = 33


def apm_init(contexts: int) -> np.ndarray:
    """An APM table: for each context, 33 bins at stretch -2048, -1920, ..., 2048 holding
    the identity map (16-bit probabilities)."""
    row = np.array([squash_int((i - 16) * 128) * 16 for i in range(APM_BINS)], dtype=np.int64)
    return np.tile(row, contexts)


def table_bits(n: int, revision: int) -> int:
    """log2 of the bucket count of the context hash table for a block of n bytes: 4 to 8
    buckets per byte, from 2^12 (256 KiB) to 2^20 (64 MiB) in revision 1, up to 2^21
    (128 MiB) in revision 2: each byte looks up two buckets per context, and twice the
    table for blocks of 512 KiB and more saved 0.4% on the structured group (smaller
    blocks gain nothing from it, and lose speed to cache misses)."""
    if revision == 1:
        return min(20, max(12, n.bit_length() + 2))
    return min(21, max(12, n.bit_length() + 2))


def match_bits(n: int) -> int:
    """log2 of the match model's table size for a block of n bytes."""
    return min(22, max(10, n.bit_length() + 1))

