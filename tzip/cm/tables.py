"""The CM stage's one table: every constant, context slot, input offset and integer table
both implementations read (reference.py at run time, jit.py frozen at compile time), and
the integer primitives both use (squash, stretch, hmix, ...: Python here, compiled there).

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


def _squash_from_knots(d: int) -> int:
    """12-bit probability of the stretched value d (an integer, 256 per nat): the
    definition that SQUASH tabulates (squash() below reads the table)."""
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    w = d & 127
    i = (d >> 7) + 16
    return (SQUASH_KNOTS[i] * (128 - w) + SQUASH_KNOTS[i + 1] * w + 64) >> 7


def _build_squash() -> np.ndarray:
    """SQUASH[d + 2048] for d in -2048..2047."""
    return np.array([_squash_from_knots(d) for d in range(-2048, 2048)], dtype=np.int64)


def _build_stretch() -> np.ndarray:
    """STRETCH[p] for p in 0..4095: the inverse of squash (the smallest d with
    squash(d) >= p), so stretch(squash(d)) ~= d."""
    out = np.zeros(4096, dtype=np.int64)
    pi = 0
    for x in range(-2047, 2048):
        v = _squash_from_knots(x)
        for i in range(pi, v + 1):
            out[i] = x
        pi = v + 1
    out[pi:] = 2047
    return out


SQUASH = _build_squash()
STRETCH = _build_stretch()


# Integer primitives, written once: the reference calls them as Python, tzip/cm/jit.py
# compiles these same functions with numba (so their bodies stick to what both accept).
def squash(d: int) -> int:
    """12-bit probability of the stretched value d, clamped outside +-2047."""
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    return int(SQUASH[d + 2048])


def stretch(p: int) -> int:
    """The stretched value of the 12-bit probability p."""
    return int(STRETCH[p])


def hmix(h: int, x: int) -> int:
    """Mix x into the 32-bit hash h (products stay below 2^63: numba's int64 computes
    Python's unbounded result)."""
    h = (((h ^ x) & MASK32) * HASH_MUL) & MASK32
    return ((h ^ (h >> 15)) * HASH_MUL2) & MASK32


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def is_letter(c: int) -> bool:
    """A byte of a word (the word context): ASCII letters and every byte >= 128."""
    return (65 <= c <= 90) or (97 <= c <= 122) or c >= 128


def shape_class(c: int) -> int:
    """A byte's class in the shape context: DIGIT, CAPITAL, SMALL (ASCII small letters
    and every byte >= 128, as words do), any other byte itself."""
    if 48 <= c <= 57:
        return DIGIT
    if 65 <= c <= 90:
        return CAPITAL
    if (97 <= c <= 122) or c >= 128:
        return SMALL
    return c


def is_separator(c: int) -> bool:
    """A byte that ends a field (the field contexts): one of SEPARATORS."""
    for sep in SEPARATORS:
        if c == sep:
            return True
    return False


def is_opener(c: int) -> bool:
    """A byte that opens a bracket (revision 3's nest context): one of OPENERS."""
    for o in OPENERS:
        if c == o:
            return True
    return False


def is_closer(c: int) -> bool:
    """A byte that closes a bracket: one of CLOSERS."""
    for o in CLOSERS:
        if c == o:
            return True
    return False


def apm_match_context(expect: int, expect2: int, length: int, c0: int) -> int:
    """Revision 3's APM match context: both match models' expected bits (-1: none), match
    1's length capped at APM_MATCH_LEN, and c0."""
    state = (expect + 1) * 3 + expect2 + 1
    return (state * (APM_MATCH_LEN + 1) + min(length, APM_MATCH_LEN)) * 256 + c0


def run_expects(length: int, run_byte: int, j: int, c0: int) -> int:
    """Revision 5: what a context's run says of bit j (c0: 1 and the bits so far), the row
    of its context map: 0 nothing (no run, or its byte disagrees with the bits so far),
    1 + the bit it expects for a run shorter than RUN_LONG, 3 + the bit from RUN_LONG."""
    if length == 0 or (run_byte + 256) >> (8 - j) != c0:
        return 0
    return (1 if length < RUN_LONG else 3) + ((run_byte >> (7 - j)) & 1)


def mix_rate(done: int) -> int:
    """Revision 6's learning rate of mixers A to E after `done` coded bytes."""
    for i in range(len(MIX_RATE_EDGES)):
        if done < MIX_RATE_EDGES[i]:
            return MIX_RATES[i]
    return MIX_RATES[len(MIX_RATE_EDGES)]


def match_length_bucket(n: int) -> int:
    """Mixer B's match-length bucket, 0..len(MATCH_LEN_EDGES)."""
    for i in range(len(MATCH_LEN_EDGES)):
        if n < MATCH_LEN_EDGES[i]:
            return i
    return len(MATCH_LEN_EDGES)


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
CHECKSUM_SEED = 0x5BD1E995  # mixed into a bucket's hash to give its 16-bit checksum
SLACK = 4  # zero bytes the decoder may read past the payload's end (its 4-byte window)

REVISIONS = (1, 2, 3, 4, 5, 6, 7)  # of the CM stage: 1 codes format 4's blocks, 2 format 5's, 3 format 8's,
# 4 format 9's, 5 format 10's, 6 format 11's, 7 format 12's
STRUCTURE_FROM = 3  # the first revision with the structure contexts, the quiet start and two more APMs
RUN_FROM = 5  # the first revision with each context's run (the byte it saw last, how often in a row)
SHAPE_FROM = 6  # the first revision with the shape contexts (and mixers D and E, the falling learning rate)
WORD3_FROM = 7  # the first revision with the word3 and shape_word contexts (and mixer A's sets by the
# previous byte's class, each weight set's own learning boost, the final mixer's slower rate)
# How a byte is coded, in both implementations (functions of these names in jit.py, methods
# of reference.CMModel): contexts and match once per byte; inputs, mix, code and learn
# for each of its 8 bits; advance after it.
PHASES = ("contexts", "match", "inputs", "mix", "code", "learn", "advance")

# Hashed context models, in slot order. Orders k: the previous k bytes; word: the letters
# since the last non-letter (NULs skipped, so UTF-16 text keeps its words) with the
# previous byte; column: the byte above (same column of the previous line of this stream)
# with the previous byte; even: the 2nd, 4th and 6th previous bytes (UTF-16 code units,
# 2-byte records). Measured on a 9-file subset and not kept: order 5, 6 and 16, sparse
# (2nd and 3rd bytes back), indirect (the bytes that followed the order-2 context last time;
# revision 4 takes one, of the two bytes that followed the last two times, see below).
# Revision 2 adds two for tables, logs and records: field, the number of separators
# (, ; tab |) since the line start with the field's bytes so far; and field_above, the
# byte at the same offset of the same field of the previous line (the column of a table
# whose cells vary in width), with the field's number. Revision 1 (format 4) has the
# first nine. Measured with the CM stage alone on the structured group's whole files:
# field (with mixer C) -2.6%, field_above -0.7% (airports.csv -4.3%).
# Revision 3 (format 8) adds four for structured text: nest, the bracket nesting (depth,
# innermost opener, inside a "string") with the two previous bytes; record, the column
# (bytes since the line start) with the byte above; field_prev, the field's number and
# bytes so far with the whole same field of the line before (a log's repeated host or
# program name, a CSV column of few values); word2, the word so far with the word before
# it. Measured alone on the structured group's whole files (bench/published/cm/
# rev3-ablations.md): nest -0.39%, word2 -0.29%, field_prev -0.21%, record -0.13%.
# Revision 4 (format 9) adds two: indirect, the bytes that followed the two previous
# bytes the last two times they occurred (anywhere in the block), with the previous byte; line_head, a hash of the
# line's first LINE_HEAD bytes with the word so far (a log line's or a record's kind).
# Measured alone on the structured group at 4 streams (bench/published/cm/
# rev4-candidates.md): -0.17% and -0.18%, -0.27% together.
# Revision 6 (format 11) adds two: shape, the last SHAPE_RUNS runs of byte classes
# (shape_class: digits, capitals, small letters, each other byte its own class; a run of
# one class is one entry however long) with the current run's length capped at
# SHAPE_LEN_CAP: "a timestamp, a space, a bracketed number" whatever the digits, so the
# structure after a variable field is predicted as often as the structure repeats; and
# shape_long, the last SHAPE_LONG_RUNS runs. Measured on the structured group at 4
# streams (bench/published/cm/rev6-candidates.md): shape alone -1.4% (its 6-run form),
# every file gains; shape_long -0.35% more on top of revision 6's other parts.
# Revision 7 (format 12) adds two: word3, the word so far with the two words before it (a
# log message's or a sentence's three-word phrase); shape_word, the shape's last 4 runs
# with the word so far (a word wherever it follows the same kind of bytes, whatever their
# digits: a log's program name after any timestamp). Measured alone on the structured
# group at 4 streams (bench/published/cm/rev7-candidates.md): -0.16% and -0.20%.
CONTEXTS = ("o2", "o3", "o4", "word", "column", "even", "o8", "o12", "o24", "field", "field_above",
            "nest", "record", "field_prev", "word2", "indirect", "line_head", "shape", "shape_long",
            "word3", "shape_word")
CONTEXTS_R1, CONTEXTS_R2, CONTEXTS_R3, CONTEXTS_R4, CONTEXTS_R6 = 9, 11, 15, 17, 19
N_CONTEXTS = (0, CONTEXTS_R1, CONTEXTS_R2, CONTEXTS_R3, CONTEXTS_R4, CONTEXTS_R4,
              CONTEXTS_R6, len(CONTEXTS))  # by revision: a prefix of CONTEXTS
MIXER_C_FROM = 2  # the first revision with mixer C (and the final mixer's fifth input)
ORDER_CONTEXTS = {"o2": 2, "o3": 3, "o4": 4, "o8": 8, "o12": 12, "o24": 24}
MAX_ORDER = max(ORDER_CONTEXTS.values())
# ORDER_SLOT[k]: the slot of the order-k context, -1 where no context has order k
ORDER_SLOT = np.array([CONTEXTS.index(f"o{k}") if f"o{k}" in ORDER_CONTEXTS else -1
                       for k in range(MAX_ORDER + 1)], dtype=np.int64)
ORDER_SLOTS = tuple(CONTEXTS.index(name) for name in ORDER_CONTEXTS)  # revision 5's "seen" counts those it has
CTX_WORD = CONTEXTS.index("word")
CTX_COLUMN = CONTEXTS.index("column")
CTX_EVEN = CONTEXTS.index("even")
CTX_FIELD = CONTEXTS.index("field")
CTX_FIELD_ABOVE = CONTEXTS.index("field_above")
CTX_NEST, CTX_RECORD = CONTEXTS.index("nest"), CONTEXTS.index("record")
CTX_FIELD_PREV, CTX_WORD2 = CONTEXTS.index("field_prev"), CONTEXTS.index("word2")
CTX_INDIRECT, CTX_LINE_HEAD = CONTEXTS.index("indirect"), CONTEXTS.index("line_head")
CTX_SHAPE, CTX_SHAPE_LONG = CONTEXTS.index("shape"), CONTEXTS.index("shape_long")
CTX_WORD3, CTX_SHAPE_WORD = CONTEXTS.index("word3"), CONTEXTS.index("shape_word")
# seeds that keep the non-order contexts' hashes apart
SEED_ORDER, SEED_WORD, SEED_COLUMN, SEED_EVEN, SEED_FIELD, SEED_FIELD_ABOVE = 1, 5, 7, 8, 11, 12
SEED_NEST, SEED_RECORD, SEED_FIELD_PREV, SEED_WORD2 = 13, 14, 15, 16
SEED_INDIRECT, SEED_LINE_HEAD, SEED_SHAPE, SEED_SHAPE_LONG = 42, 44, 144, 149
SEED_WORD3, SEED_SHAPE_WORD = 201, 204
LINE_HEAD = 6  # bytes of a line that make its head
OPENERS, CLOSERS = (40, 91, 123, 60), (41, 93, 125, 62)  # ( [ { <  and  ) ] } >
QUOTE, BACKSLASH = 34, 92
NEST_MAX = 16  # open brackets remembered per stream (deeper nesting is counted, not remembered)
NEST_DEPTH_CAP = 15  # the nest context's depth is capped here
RECORD_COL_CAP = 255  # and the record context's column here
SEPARATORS = (9, 44, 59, 124)  # tab , ; |
FIELDS = 32  # fields of a line whose starts are remembered (for field_above)
HISTORY = 8  # previous bytes c[1..8] every phase may read (c[k]: k back, 0 before the start)
# byte-class runs the shape contexts see, 8 bits each, 4 to a word of state.Structure.shape
SHAPE_RUNS, SHAPE_LONG_RUNS = 8, 16
SHAPE_WORDS = SHAPE_LONG_RUNS // 4
SHAPE_LEN_CAP = 7  # the shape context's current run length is capped here
DIGIT, CAPITAL, SMALL = 48, 65, 97  # the shape classes of letters and digits ("0", "A", "a")

# Inputs of the mixers, in order: (name, width). IN_<NAME> is each one's first index and
# N_INPUTS their count (revisions 1 and 2), both derived from this table. Revision 3 mixes
# INPUTS_R3 (N_INPUTS_R3): the same, then its four contexts' two inputs each, so that the
# first N_INPUTS mean the same in every revision; revision 4 INPUTS_R4, revision 3's and
# then its two contexts' two inputs each; revision 5 INPUTS_R5, revision 4's and then
# every context's run; revision 6 INPUTS_R6, revision 5's and then its two contexts'
# three inputs each (counter, map, run); revision 7 INPUTS_R7, the same for its two.
INPUTS = (
    ("tf", 1),  # the transformer's P(bit | c0), stretched
    ("tf_apm", 1),  # the same through an APM by (previous byte, c0)
    ("o1", 1),  # order-1 counter by (previous byte, c0)
    ("ctx", CONTEXTS_R2),  # each hashed context's counter
    ("cmap", CONTEXTS_R2),  # the same counters through a map by (context, count, p)
    ("match", 1),  # match model: adaptive st(p) by (length, expected bit)
    ("match_len", 1),  # match model: +-length, linear
    ("match2", 1),  # match model 2 (the stream's own history): st(p) by (length, bit)
    ("bias", 1),
)
INPUTS_R3 = INPUTS + (
    ("ctx3", CONTEXTS_R3 - CONTEXTS_R2),  # revision 3's contexts' counters,
    ("cmap3", CONTEXTS_R3 - CONTEXTS_R2),  # and the same through the map
)
INPUTS_R4 = INPUTS_R3 + (
    ("ctx4", CONTEXTS_R4 - CONTEXTS_R3),  # revision 4's contexts' counters,
    ("cmap4", CONTEXTS_R4 - CONTEXTS_R3),  # and the same through the map
)
INPUTS_R5 = INPUTS_R4 + (
    ("run", CONTEXTS_R4),  # each context's run: st(p) by (context, run length, expected bit)
)
INPUTS_R6 = INPUTS_R5 + (
    ("ctx6", CONTEXTS_R6 - CONTEXTS_R4),  # revision 6's contexts' counters,
    ("cmap6", CONTEXTS_R6 - CONTEXTS_R4),  # the same through the map,
    ("run6", CONTEXTS_R6 - CONTEXTS_R4),  # and their runs
)
INPUTS_R7 = INPUTS_R6 + (
    ("ctx7", len(CONTEXTS) - CONTEXTS_R6),  # revision 7's contexts' counters,
    ("cmap7", len(CONTEXTS) - CONTEXTS_R6),  # the same through the map,
    ("run7", len(CONTEXTS) - CONTEXTS_R6),  # and their runs
)


def _offsets(rows) -> dict:
    out, at = {}, 0
    for name, width in rows:
        out[name] = at
        at += width
    out["_n"] = at
    return out


_IN = _offsets(INPUTS_R7)
IN_TF, IN_TF_APM, IN_O1 = _IN["tf"], _IN["tf_apm"], _IN["o1"]
IN_CTX, IN_CMAP = _IN["ctx"], _IN["cmap"]
IN_MATCH, IN_MATCH_LEN, IN_MATCH2, IN_BIAS = _IN["match"], _IN["match_len"], _IN["match2"], _IN["bias"]
IN_CTX3, IN_CMAP3, IN_CTX4, IN_CMAP4 = _IN["ctx3"], _IN["cmap3"], _IN["ctx4"], _IN["cmap4"]
IN_RUN = _IN["run"]
IN_CTX6, IN_CMAP6, IN_RUN6 = _IN["ctx6"], _IN["cmap6"], _IN["run6"]
IN_CTX7, IN_CMAP7, IN_RUN7 = _IN["ctx7"], _IN["cmap7"], _IN["run7"]
N_INPUTS = _offsets(INPUTS)["_n"]
N_INPUTS_R3 = _offsets(INPUTS_R3)["_n"]
N_INPUTS_R4 = _offsets(INPUTS_R4)["_n"]
N_INPUTS_R5 = _offsets(INPUTS_R5)["_n"]
N_INPUTS_R6 = _offsets(INPUTS_R6)["_n"]
N_INPUTS_R7 = _IN["_n"]


def n_inputs(revision: int) -> int:
    """The mixers' inputs (weights per set) of a revision: the first n of INPUTS_R7."""
    if revision >= WORD3_FROM:
        return N_INPUTS_R7
    if revision >= SHAPE_FROM:
        return N_INPUTS_R6
    if revision >= RUN_FROM:
        return N_INPUTS_R5
    return N_INPUTS_R4 if revision >= 4 else N_INPUTS_R3 if revision >= STRUCTURE_FROM else N_INPUTS


def _slot_input(i: int, firsts: tuple[int, ...]) -> int:
    """The input of context slot i in a kind of input whose rows start at `firsts`: one
    row per group of slots (revision 2's, 3's, 4's, 6's and 7's contexts), in order."""
    starts = (0, CONTEXTS_R2, CONTEXTS_R3, CONTEXTS_R4, CONTEXTS_R6)
    k = len(starts) - 1
    while starts[k] > i:
        k -= 1
    return firsts[k] + i - starts[k]


def ctx_input(i: int) -> int:
    """The input of context slot i's counter: revision 2's contexts first, then revision
    3's, then revision 4's, then revision 6's, then revision 7's."""
    return _slot_input(i, (IN_CTX, IN_CTX3, IN_CTX4, IN_CTX6, IN_CTX7))


def cmap_input(i: int) -> int:
    """The input of context slot i's counter through the context map."""
    return _slot_input(i, (IN_CMAP, IN_CMAP3, IN_CMAP4, IN_CMAP6, IN_CMAP7))


def run_input(i: int) -> int:
    """The input of context slot i's run (revision 5's contexts in one row, then revision
    6's, then 7's)."""
    return _slot_input(i, (IN_RUN, IN_RUN + CONTEXTS_R2, IN_RUN + CONTEXTS_R3, IN_RUN6, IN_RUN7))


BIAS = 256  # the bias input's value (and the final mixer's)

MATCH_MIN = 7  # bytes of context hashed to find a match candidate (revisions 1 to 3)
# Revision 4 (format 9) looks match model 1's candidate up by the last MATCH_LONG bytes
# first (the same table, its hash mixed with MATCH_LONG_SEED), else by the last
# MATCH_MIN_R4; both models look up after MATCH_MIN_R4 bytes; and after a wrong guess in a
# copy of at least MATCH_RECOVER bytes, each follows its copy on at length 1 (as paq8px's
# recovery mode: a record that differs in one byte goes on as it was); lengths below the
# lookup's minimum then mean "recovering", with counters of their own. Measured with the
# CM stage alone on the structured group's whole files at 4 streams
# (bench/published/cm/rev4-candidates.md): -0.58% for the shorter lookup and the recovery,
# -0.76% with the longer lookup first.
MATCH_MIN_R4 = 4
MATCH_LONG = 12
MATCH_LONG_SEED = 0x3C6EF372
MATCH_RECOVER = 8
MATCH_VERIFY = 48  # bytes compared backwards to measure a candidate's true length
MATCH_LEN_CAP = 65535
MATCH_LEN_EDGES = (1, 16, 24, 32, 64, 128, 512)  # mixer B's match-length buckets 0..7
MATCH_SM_LEN = 15  # match counters by (length capped here, expected bit)
MATCH_SM_SIZE = 2 * (MATCH_SM_LEN + 1)
MATCH_STRENGTH_LEN, MATCH_STRENGTH = 32, 32  # the linear input: min(length, 32) * 32

CMAP_COUNT_CAP = 15  # the context map's key: (context, count capped here, p's top 6 bits)
CMAP_SIZE = 1024  # map entries per context: 16 counts * 64 probabilities
O1_SIZE = 65536  # order-1 counters by (previous byte, c0)

COUNTER_LIMIT_CTX = 255  # count limit of the context models' counters
COUNTER_LIMIT_O1 = 1023
COUNTER_LIMIT_MATCH = 1023
COUNTER_LIMIT_CMAP = 1023

MIX_SETS_A = 256  # mixer A: weight set by the partial byte c0, and from revision 7 by the
MIX_A_CLASSES = 4  # previous byte's class (mix_class), so 4 times as many sets (mix_sets_a)
MIX_SETS_B = 64  # mixer B: by (match length bucket 0..7, transformer confidence 0..3, parity)
# and from revision 5 by the order contexts seen before (0..6: those whose bucket's first
# counter has a count, for this nibble), so 8 times as many sets (mix_sets_b)
SEEN_SETS = 8
assert len(ORDER_SLOTS) < SEEN_SETS  # every count of order contexts seen has its sets
MIX_C_BITS = 12  # mixer C (revision 2): by a 12-bit hash of the two previous bytes,
MIX_SETS_C = 1 << MIX_C_BITS  # hmix(c1 | c2 << 8, MIX_C_SEED) >> (32 - MIX_C_BITS)
MIX_C_SEED = 77
TF_CONF_SHIFT, TF_CONF_MAX = 9, 3  # mixer B's transformer confidence: min(|st| >> 9, 3)
MIX_SETS_F = 16  # final mixer (A, B, transformer, bias, C (, D, E) -> p): by (bit position, parity)
N_FINAL = 5
MIX_F_INIT = {1: (1 << 15, 1 << 15, 0, 0, 0), 2: (22000, 22000, 0, 0, 22000),  # by revision
              3: (22000, 22000, 0, 0, 22000), 4: (22000, 22000, 0, 0, 22000), 5: (22000, 22000, 0, 0, 22000),
              6: (22000, 22000, 0, 0, 22000, 16384, 16384), 7: (22000, 22000, 0, 0, 22000, 16384, 16384)}
# Revision 6's mixer D: a weight set per (field number capped at MIX_D_FIELDS - 1, bytes
# into the field capped at MIX_D_OFFSETS - 1, bit position): where in a record the byte
# is, which no other mixer's sets see (A: the byte's bits so far; B: how much history;
# C: the two bytes before). Its output is the final mixer's sixth input. Measured with
# the CM stage alone at 4 streams on the structured group (bench/published/cm/
# rev6-candidates.md): -0.75% alone. And mixer E: a weight set per (MIX_E_BITS of a hash
# of the shape's last MIX_E_RUNS runs' classes, bit position): what kind of bytes came
# just before (a word, a space, a number), the final mixer's seventh input; -0.86% on top
# of revision 6's other parts.
MIX_D_FIELDS, MIX_D_OFFSETS = 16, 16
MIX_SETS_D = MIX_D_FIELDS * MIX_D_OFFSETS * 8
MIX_E_RUNS, MIX_E_BITS, MIX_E_SEED = 3, 10, 5
MIX_E_MASK = (1 << 8 * MIX_E_RUNS) - 1  # of the shape's first word (its last 4 runs)
MIX_SETS_E = (1 << MIX_E_BITS) * 8
SET_COUNT_WIDTH = max(MIX_SETS_A * MIX_A_CLASSES, MIX_SETS_B * SEEN_SETS, MIX_SETS_C, MIX_SETS_D,
                      MIX_SETS_E)  # revision 7's update counts per mixer: room for its most sets


def mix_class(c: int) -> int:
    """Revision 7: the class of the previous byte c that picks mixer A's sets with c0: 0 a
    digit, 1 a letter (is_letter), 2 a space or tab, 3 any other byte."""
    if 48 <= c <= 57:
        return 0
    if (65 <= c <= 90) or (97 <= c <= 122) or c >= 128:  # (is_letter, which numba cannot call here)
        return 1
    return 2 if c == 32 or c == 9 else 3


def mix_sets_a(revision: int) -> int:
    """Mixer A's weight sets in a revision (from revision 7, also by the previous byte's class)."""
    return MIX_SETS_A * MIX_A_CLASSES if revision >= WORD3_FROM else MIX_SETS_A


def n_final(revision: int) -> int:
    """The final mixer's inputs in a revision (from revision 6, mixers D's and E's too)."""
    return N_FINAL + 2 if revision >= SHAPE_FROM else N_FINAL


def mix_set_d(field: int, offset: int, j: int) -> int:
    """Mixer D's weight set for bit j of a byte `offset` bytes into field number `field`
    (offset -1: the field's start is not known, past FIELDS fields)."""
    if offset < 0:
        offset = MIX_D_OFFSETS - 1
    return (min(field, MIX_D_FIELDS - 1) * MIX_D_OFFSETS + min(offset, MIX_D_OFFSETS - 1)) * 8 + j
# parity: of the byte's offset in the block (UTF-16 and 2-byte records alternate roles);
# measured on UTF-16 Chinese text: 2.070 -> 1.996 bpb, others within +-0.2%
LR_A, LR_B, LR_F = 24, 24, 8  # learning rates: w += (x * err * LR + 2^15) >> 16
LR_C = LR_B
assert LR_A == LR_B == LR_C  # (jit3.py hands its mixers one rate)
# Revision 6: mixers A to E learn at MIX_RATES[i] while fewer than MIX_RATE_EDGES[i]
# bytes of the block were coded before the byte (t * S + s, step-major order), then at
# the last rate: fast while the weights are far from their values, finer later. Measured
# with the CM stage alone at 4 streams (bench/published/cm/rev6-candidates.md): -0.15%
# on the structured group.
MIX_RATE_EDGES = (32768, 131072, 524288)
MIX_RATES = (32, 24, 18, 14)
# Revision 7: each weight set of mixers A to E also counts its updates n (capped at
# SET_COUNT_CAP) and learns at set_rate(rate, n), up to 1 + SET_RATE_BOOST times the
# rate while it is new: a set chosen seldom (a rare field, shape or byte pair) learns its
# weights in fewer bits than the block-wide schedule gives it. And the final mixer learns
# at LR_F7. Measured with the CM stage alone at 4 streams (bench/published/cm/
# rev7-candidates.md): -0.16% and -0.11% on the structured group.
SET_RATE_BOOST, SET_RATE_K, SET_COUNT_CAP = 2, 64, 1023
LR_F7 = 5


def set_rate(rate: int, n: int) -> int:
    """Revision 7's learning rate of a weight set updated n times before (at `rate`)."""
    return rate + rate * SET_RATE_BOOST * SET_RATE_K // (n + SET_RATE_K)


def lr_final(revision: int) -> int:
    """The final mixer's learning rate in a revision."""
    return LR_F7 if revision >= WORD3_FROM else LR_F
ST_LIMIT = 2047  # a mixer's output st is clamped to +-ST_LIMIT
W_INIT_TF = 1 << 14  # initial weights (1.0 = 2^16): the transformer 0.25, the others 1/16;
W_INIT = 1 << 12  # from 1.0 / 0.125: -0.9% on 7 files, -1.2% where the transformer is bad
# (revision 3's own inputs start at 0, the "quiet start": small files lost 0.5-2% to their
# noise while they learned, structured whole files gain 0.05% less: state._weights)
APM_RATE = 6
APM_BINS = 33
APM2_BITS = 16  # APM 2 by the top bits of hmix(c1 | c2 << 8, c0)
APM_TF_SIZE, APM1_SIZE, APM2_SIZE = 65536, 256, 1 << APM2_BITS  # contexts of the three APMs
# Revision 3's two more APMs on the final probability: APM o1 by (previous byte, c0); APM
# match by (match 1's expected bit + 1, match 2's + 1, match 1's length capped at
# APM_MATCH_LEN, c0). Its final p: (p_f + p_apm1 + 2 (p_apm2 + p_o1 + p_match) + 4) >> 3
# (revision 2's: (p_f + p_apm1 + 2 p_apm2 + 2) >> 2). Measured alone on the structured
# group's whole files: -0.16% and -0.12% (JSON -0.65%).
APM_O1_SIZE = 65536
APM_MATCH_LEN = 15
APM_MATCH_SIZE = 9 * (APM_MATCH_LEN + 1) * 256


def apm_init(contexts: int) -> np.ndarray:
    """An APM table: for each context, 33 bins at stretch -2048, -1920, ..., 2048 holding
    the identity map (16-bit probabilities)."""
    row = np.array([squash((i - 16) * 128) * 16 for i in range(APM_BINS)], dtype=np.int64)
    return np.tile(row, contexts)


def table_bits(n: int, revision: int) -> int:
    """log2 of the bucket count of the context hash table for a block of n bytes: 4 to 8
    buckets per byte, from 2^12 (256 KiB) to 2^20 (64 MiB) in revision 1, up to 2^21
    (128 MiB) in revision 2: each byte looks up two buckets per context, and twice the
    table for blocks of 512 KiB and more saved 0.4% on the structured group (smaller
    blocks gain nothing from it, and lose speed to cache misses); revisions 3 to 7 as 2."""
    if revision == 1:
        return min(20, max(12, n.bit_length() + 2))
    return min(21, max(12, n.bit_length() + 2))


def cmap_size(revision: int) -> int:
    """Counters of the context map in a revision (from revision 5, RUN_ROWS rows of them)."""
    return N_CONTEXTS[revision] * CMAP_SIZE * (RUN_ROWS if revision >= RUN_FROM else 1)


def mix_sets_b(revision: int) -> int:
    """Mixer B's weight sets in a revision (from revision 5, also by the order contexts seen)."""
    return MIX_SETS_B * SEEN_SETS if revision >= RUN_FROM else MIX_SETS_B


# Revision 5 (format 10) gives each context a run: in a table of uint32 entries found by a
# hash of the context (no probing; 16 bits of checksum, the byte that followed the context
# last, how many times in a row it did, capped at RUN_COUNT_CAP), looked up once per byte.
# While the bits so far agree with the run's byte, the context's run input is st(p) of a
# counter by (context, run length capped at RUN_SM_LEN, the byte's next bit): what a
# deterministic context is worth in this block (paq8px's run maps, in other words); and
# the context map has RUN_ROWS rows, chosen by what the run expects (run_expects), so its
# counters calibrate the context's counter and run together. Measured with the CM stage
# alone at 4 streams on the structured group's whole files (bench/published/cm/
# rev5-candidates.md): the run inputs -0.55% (gdb-check.log -2.5%, xkb-base.xml -1.4%);
# with mixer B's sets by the order contexts seen, -0.75%; with the map's rows, -1.0%.
RUN_SEED, RUN_CHECK_SEED = 0x1234567, 0x2545F4
RUN_COUNT_CAP = 255
RUN_SM_LEN = 15
RUN_SM_SIZE = 2 * (RUN_SM_LEN + 1)  # counters per context
RUN_LONG = 3  # a run this long or longer has context-map rows of its own
RUN_ROWS = 5  # of the context map: the run says nothing; expects 0, 1 (short); 0, 1 (long)
COUNTER_LIMIT_RUN = 1023


def run_bits(n: int) -> int:
    """log2 of the run table's entries for a block of n bytes (revisions 5 and 6): 16 to 32
    per byte (about one per context), from 2^12 (16 KiB) to 2^22 (16 MiB)."""
    return min(22, max(12, n.bit_length() + 4))


def match_rule(revision: int) -> tuple[int, int, int]:
    """-> (the bytes of context a match candidate is looked up by; those of match model
    1's first lookup, 0: none; the shortest copy whose wrong guess is followed on at
    length 1, 0: none) of a revision."""
    return (MATCH_MIN_R4, MATCH_LONG, MATCH_RECOVER) if revision >= 4 else (MATCH_MIN, 0, 0)


def match_bits(n: int) -> int:
    """log2 of the match model's table size for a block of n bytes."""
    return min(22, max(10, n.bit_length() + 1))

