"""The CM stage's state for one block, built in one place: both implementations start from
`new_state` (tzip/cm/jit.py works on these arrays in place, tzip/cm/reference.py copies
them into Python lists), so they cannot disagree about a table's size or initial value.
Revision 3 adds a second part, `Structure` (new_structure): the stream's nesting, words
and fields, and its two APMs (revision 4's indirect bytes and line heads, revision 5's
runs, revision 6's shapes and mixers D and E, revision 7's word before the word before
and the mixers' update counts), kept apart so that CMState, and the
compiled loop of revisions 1 and 2 that takes it, stay what they were before revision 3
(tzip/cm/jit3.py takes both).

Imports numpy and tables only: the reference must work without numba.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import tables as T


class CMState(NamedTuple):
    """Everything the CM stage remembers within one block (sizes from tables.py)."""
    hist: np.ndarray  # (S, L) int64: the streams' bytes (the decoder fills it)
    lengths: np.ndarray  # (S,) int64
    start: np.ndarray  # (S,) int64: offset of each stream in the block
    table: np.ndarray  # (buckets * BUCKET,) uint32: hashed context slots
    o1: np.ndarray  # (O1_SIZE,) uint32: order-1 counters by (c1, c0)
    ctx_map: np.ndarray  # (tables.cmap_size(revision),) uint32: counters by ((run row,) context, count, p)
    match_sm: np.ndarray  # (MATCH_SM_SIZE,) uint32: match counters by (length, expected bit)
    match_table: np.ndarray  # (2^bits,) int64: 1 + step * S + stream after a hashed context
    match_ptr: np.ndarray  # (S,) int64: 1 + step * S + stream of the predicted byte, 0 none
    match_len: np.ndarray  # (S,) int64
    match2_table: np.ndarray  # (2^bits,) int64: 1 + step, by hash of (context, stream)
    match2_ptr: np.ndarray  # (S,) int64: step of the byte match model 2 predicts
    match2_len: np.ndarray  # (S,) int64
    match2_sm: np.ndarray  # (MATCH_SM_SIZE,) uint32: match 2 counters by (length, expected bit)
    word: np.ndarray  # (S,) int64: hash of the letters since the last non-letter
    line_start: np.ndarray  # (S,) int64: step after the stream's last newline
    prev_line: np.ndarray  # (S,) int64: start of the line before
    field: np.ndarray  # (S,) int64: separators since the line start (revision 2)
    field_hash: np.ndarray  # (S,) int64: hash of the field's bytes so far (revision 2)
    field_start: np.ndarray  # (S, FIELDS + 1) int64: where this line's fields start (-1: not yet)
    prev_field_start: np.ndarray  # (S, FIELDS + 1) int64: the same for the line before
    w_a: np.ndarray  # (mix_sets_a(revision) * n_inputs(revision),) int64 mixer A weights
    w_b: np.ndarray  # (mix_sets_b(revision) * n_inputs(revision),) int64 mixer B weights
    w_c: np.ndarray  # (MIX_SETS_C * n_inputs(revision),) int64 mixer C weights (empty before MIXER_C_FROM)
    w_f: np.ndarray  # (MIX_SETS_F * n_final(revision),) int64 final mixer weights
    apm_tf: np.ndarray  # (APM_TF_SIZE * APM_BINS,) int32
    apm1: np.ndarray  # (APM1_SIZE * APM_BINS,) int32
    apm2: np.ndarray  # (APM2_SIZE * APM_BINS,) int32
    coder: np.ndarray  # (8,) int64: x1, x2, x (decoder), pos, error, payload length
    buf: np.ndarray  # uint8 output (encoder) or input (decoder) bytes
    scratch: np.ndarray  # (SCRATCH,) int64 work space of the compiled code (layout below)


class Structure(NamedTuple):
    """What revisions 3 to 7 remember beyond CMState (sizes from tables.py)."""
    nest: np.ndarray  # (S, 3) int64: bracket depth, inside a "string" (1), after a backslash in one (1)
    nest_stack: np.ndarray  # (S, NEST_MAX) int64: the open brackets, the innermost at depth - 1
    prev_word: np.ndarray  # (S,) int64: hash of the word before the current one
    field_hashes: np.ndarray  # (S, FIELDS + 1) int64: hashes of this line's finished fields
    prev_field_hashes: np.ndarray  # (S, FIELDS + 1) int64: the same for the line before (0: none)
    apm_o1: np.ndarray  # (APM_O1_SIZE * APM_BINS,) int32
    apm_match: np.ndarray  # (APM_MATCH_SIZE * APM_BINS,) int32
    # revision 4: by the two bytes (c2 << 8 | c1), the two bytes that followed them last
    # (the earlier one in bits 8-15), in any stream
    indirect: np.ndarray  # (65536,) int64
    line_head: np.ndarray  # (S,) int64: hash of the line's first LINE_HEAD bytes so far
    # revision 5: each context's run, (checksum << 16) | (byte << 8) | times in a row (0: empty)
    run_table: np.ndarray  # (2^run_bits, or 1 before revision 5,) uint32
    run_sm: np.ndarray  # (len(CONTEXTS) * RUN_SM_SIZE,) uint32: counters by (context, run length, bit)
    # revision 6: per stream the byte-class runs (SHAPE_WORDS words of 4 entries of 8 bits,
    # the latest first), the last byte's class and its run's length
    shape: np.ndarray  # (S, SHAPE_WORDS + 2) int64
    w_d: np.ndarray  # (MIX_SETS_D * n_inputs(revision), or 0 before revision 6,) int64 mixer D weights
    w_e: np.ndarray  # (MIX_SETS_E * n_inputs(revision), or 0 before revision 6,) int64 mixer E weights
    # revision 7: per stream the hash of the word before prev_word; per weight set of mixers
    # A to E (rows 0-4) its updates so far, capped at SET_COUNT_CAP (tables.set_rate)
    prev_word2: np.ndarray  # (S,) int64
    set_counts: np.ndarray  # (5, SET_COUNT_WIDTH, or 0 before revision 7) int64
    scratch: np.ndarray  # (SCRATCH3,) int64 work space of jit3 (layout below)


# What one phase hands to the next (the same in both implementations)
class Match(NamedTuple):
    """Both match models' prediction for the byte (see reference.CMModel.match)."""
    ptr: int  # 1 + step * S + stream of the predicted byte
    length: int  # 0: no match
    byte: int  # the predicted byte, -1: none
    ptr2: int  # match model 2: the step of the predicted byte in this stream
    length2: int
    byte2: int


class Picked(NamedTuple):
    """What `inputs` read for one bit, so that `learn` updates the same entries."""
    node: int  # the bit's node in the nibble's tree (slot in each bucket)
    apm_tf: int  # the transformer APM's bin
    o1: int  # the order-1 counter
    match: int  # the match counter, -1: none
    match2: int  # match model 2's counter, -1: none
    expect: int  # the match's expected bit, -1: none


class Mixed(NamedTuple):
    """What `mix` computed for one bit, so that `learn` trains each mixer on its error."""
    p: int  # the final 12-bit probability, what the coder uses
    set_a: int  # the weight sets of mixers A, B, C and the final mixer
    set_b: int
    set_c: int
    set_f: int
    st_a: int  # the mixers' stretched outputs and their probabilities
    st_b: int
    st_c: int
    p_a: int
    p_b: int
    p_c: int
    p_f: int
    apm1: int  # the two APMs' bins
    apm2: int


class Refined(NamedTuple):
    """What revision 3's `mix` adds to Mixed: the bins of its two more APMs (-1: none,
    revisions 1 and 2), so that `learn` updates them; and revision 6's mixers D and E (set
    -1: none)."""
    apm_o1: int
    apm_match: int
    set_d: int
    st_d: int
    p_d: int
    set_e: int
    st_e: int
    p_e: int


# coder[] fields
X1, X2, X, POS, ERR, NPAY = 0, 1, 2, 3, 4, 5

# scratch[] layout (revisions 1 and 2): the transformer's prefix sums, the inputs x, and
# per context its bucket, its hash and its context-map index; then the previous bytes
# c[0..HISTORY]. Structure.scratch[] is the same for the inputs and contexts of revisions
# 3 to 7 (room for the latest revision's inputs), then revision 5's runs.
SC_CUM = 0
SC_X = SC_CUM + 257
SC_SLOT = SC_X + T.N_INPUTS
SC_CTXH = SC_SLOT + T.CONTEXTS_R2
SC_CMAP = SC_CTXH + T.CONTEXTS_R2
SC_C = SC_CMAP + T.CONTEXTS_R2
SCRATCH = SC_C + T.HISTORY + 1
SC3_SLOT = SC_X + T.n_inputs(T.REVISIONS[-1])
SC3_CTXH = SC3_SLOT + len(T.CONTEXTS)
SC3_CMAP = SC3_CTXH + len(T.CONTEXTS)
SC3_C = SC3_CMAP + len(T.CONTEXTS)
# revision 5: per context its run's table index, checksum, byte and length (0: none), then
# per context the run counter its input read (-1: none) and what its run says of the bit
# (tables.run_expects), then the order contexts seen
SC3_RUN = SC3_C + T.HISTORY + 1
SC3_RUN_SM = SC3_RUN + 4 * len(T.CONTEXTS)
SC3_ROWS = SC3_RUN_SM + len(T.CONTEXTS)
SC3_SEEN = SC3_ROWS + len(T.CONTEXTS)
SCRATCH3 = SC3_SEEN + 1


def _aligned_zeros(n: int, dtype, align: int = 64) -> np.ndarray:
    """Zeros whose first element starts a cache line: a 16-slot uint32 bucket then spans
    one line, not two."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(n + align // itemsize, dtype=dtype)
    off = (-raw.ctypes.data % align) // itemsize
    return raw[off:off + n]


def _weights(sets: int, revision: int) -> np.ndarray:
    """A mixer's weight sets over the revision's inputs (tables.n_inputs); the inputs of
    revisions 3 to 7 start at 0 (the quiet start: they move the mix only once they have learnt to)."""
    w = np.full((sets, T.n_inputs(revision)), T.W_INIT, dtype=np.int64)
    w[:, T.N_INPUTS:] = 0
    w[:, T.IN_TF] = T.W_INIT_TF
    return w.ravel()


def new_state(lengths: np.ndarray, hist: np.ndarray, buf: np.ndarray,
              revision: int) -> tuple[CMState, int, int]:
    """A block's fresh state, with the log2 sizes of the context hash table (buckets) and
    of the match tables."""
    S = len(lengths)
    n = int(np.sum(lengths))
    tb, mb = T.table_bits(n, revision), T.match_bits(n)
    counters = lambda size: np.full(size, T.COUNTER_INIT, dtype=np.uint32)  # noqa: E731
    per_stream = lambda: np.zeros(S, dtype=np.int64)  # noqa: E731
    fields = np.full((S, T.FIELDS + 1), -1, dtype=np.int64)
    field_start = fields.copy()
    field_start[:, 0] = 0  # the first line's first field starts at step 0
    lengths = np.asarray(lengths, dtype=np.int64)
    return CMState(
        hist=hist, lengths=lengths,
        start=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if S else per_stream(),
        table=_aligned_zeros((1 << tb) * T.BUCKET, np.uint32),
        o1=counters(T.O1_SIZE),
        ctx_map=counters(T.cmap_size(revision)),
        match_sm=counters(T.MATCH_SM_SIZE),
        match_table=np.zeros(1 << mb, dtype=np.int64),
        match_ptr=per_stream(), match_len=per_stream(),
        match2_table=np.zeros(1 << mb, dtype=np.int64),
        match2_ptr=per_stream(), match2_len=per_stream(),
        match2_sm=counters(T.MATCH_SM_SIZE),
        word=per_stream(), line_start=per_stream(), prev_line=per_stream(),
        field=per_stream(), field_hash=per_stream(),
        field_start=field_start, prev_field_start=fields,
        w_a=_weights(T.mix_sets_a(revision), revision), w_b=_weights(T.mix_sets_b(revision), revision),
        w_c=_weights(T.MIX_SETS_C if revision >= T.MIXER_C_FROM else 0, revision),
        w_f=np.tile(np.array(T.MIX_F_INIT[revision], dtype=np.int64), T.MIX_SETS_F),  # n_final(revision) each
        apm_tf=T.apm_init(T.APM_TF_SIZE).astype(np.int32),
        apm1=T.apm_init(T.APM1_SIZE).astype(np.int32),
        apm2=T.apm_init(T.APM2_SIZE).astype(np.int32),
        coder=np.array([0, T.MASK32, 0, 0, 0, 0, 0, 0], dtype=np.int64),
        buf=buf, scratch=np.zeros(SCRATCH, dtype=np.int64)), tb, mb


def new_structure(S: int, n: int, revision: int) -> Structure:
    """The part of a block's fresh state of revisions 3 to 7, for S streams of n bytes in all."""
    fields = np.zeros((S, T.FIELDS + 1), dtype=np.int64)
    return Structure(
        nest=np.zeros((S, 3), dtype=np.int64), nest_stack=np.zeros((S, T.NEST_MAX), dtype=np.int64),
        prev_word=np.zeros(S, dtype=np.int64), field_hashes=fields, prev_field_hashes=fields.copy(),
        apm_o1=T.apm_init(T.APM_O1_SIZE).astype(np.int32),
        apm_match=T.apm_init(T.APM_MATCH_SIZE).astype(np.int32),
        indirect=np.zeros(65536, dtype=np.int64), line_head=np.zeros(S, dtype=np.int64),
        run_table=np.zeros(1 << T.run_bits(n) if revision >= T.RUN_FROM else 1, dtype=np.uint32),
        run_sm=np.full(len(T.CONTEXTS) * T.RUN_SM_SIZE, T.COUNTER_INIT, dtype=np.uint32),
        shape=np.zeros((S, T.SHAPE_WORDS + 2), dtype=np.int64),
        w_d=_weights(T.MIX_SETS_D if revision >= T.SHAPE_FROM else 0, revision),
        w_e=_weights(T.MIX_SETS_E if revision >= T.SHAPE_FROM else 0, revision),
        prev_word2=np.zeros(S, dtype=np.int64),
        set_counts=np.zeros((5, T.SET_COUNT_WIDTH if revision >= T.WORD3_FROM else 0), dtype=np.int64),
        scratch=np.zeros(SCRATCH3, dtype=np.int64))
