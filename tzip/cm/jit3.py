"""The CM stage's revisions 3 to 7 (formats 8 to 12) compiled with numba: the same
integers as tzip/cm/reference.py, fast.

A loop of its own, beside tzip/cm/jit.py's for revisions 1 and 2: revision 3 mixes more
inputs (tables.INPUTS_R3), looks up more contexts and has two more APMs, and with those as
arguments of one shared loop, revision 2's compiled paths ran 2-4% slower (CPU of
`tzip -1` on book1, bench/published/cm/rev3-ablations.md). So jit.py is left as it was
(but for its match rule, an argument its loop passes as constants), and this module
defines the phases that differ (`contexts`, `inputs`, `mix`, `learn`, `advance`) and
takes the others (`match`, `code`, the counters, APMs and bucket lookup) from jit.py,
inlined into its own loop. Revision 4 differs from 3 in its match rule
(tables.match_rule) and two more contexts, so the revision's context and input counts
(nctx, n_in) and match rule are arguments here; revision 5 adds the contexts' runs, the
context map's rows by what they expect and mixer B's sets by the order contexts seen,
all of them only where its run table's size (the argument rbits) is not 0; revision 6 the
shape contexts (a context count, as revision 4's), mixers D and E and the learning rate
schedule, where the state has mixer D's weights; revision 7 two more contexts (a context
count again), mixer A's sets by the previous byte's class, each weight set's learning
boost and the final mixer's rate, where the state counts the sets' updates. The state is
state.CMState (as jit.py's) and state.Structure, the part of revisions 3 to 7.

numba's on-disk cache is keyed on this file only (see jit.py): after changing tables.py
or jit.py, delete tzip/cm/__pycache__ (or touch this file).
"""
from __future__ import annotations

import numpy as np

from . import tables as T
from .jit import (_jit, _phase, apm_p, apm_update, bucket_find, clamp, code, counter_update, hmix,
                  is_letter, is_separator, match, match_length_bucket, squash, stretch)
from .jit import advance as advance_r2
from .jit import contexts as contexts_r2
from .state import (ERR, SC3_C, SC3_CMAP, SC3_CTXH, SC3_ROWS, SC3_RUN, SC3_RUN_SM, SC3_SEEN, SC3_SLOT, SC_CUM, SC_X,
                    CMState, Mixed, Picked, Refined, Structure)

is_opener = _phase(T.is_opener)
shape_class = _phase(T.shape_class)
mix_set_d = _phase(T.mix_set_d)
mix_rate = _phase(T.mix_rate)
mix_class = _phase(T.mix_class)
set_rate = _phase(T.set_rate)
run_expects = _phase(T.run_expects)
is_closer = _phase(T.is_closer)
apm_match_context = _phase(T.apm_match_context)

R2 = T.CONTEXTS_R2  # revision 2's contexts: slots 0..R2-1, hashed as in jit.py
# each context slot's inputs (counter, the counter through the map, run), by the table's
# rule (tables.ctx_input, cmap_input, run_input), frozen at compile time
CTX_AT = np.array([T.ctx_input(i) for i in range(len(T.CONTEXTS))], dtype=np.int64)
CMAP_AT = np.array([T.cmap_input(i) for i in range(len(T.CONTEXTS))], dtype=np.int64)
RUN_AT = np.array([T.run_input(i) for i in range(len(T.CONTEXTS))], dtype=np.int64)


@_phase
def contexts(st, r3, s, t, c, ctxh, nctx, rbits):
    """The previous bytes c[1..HISTORY] and the hashes of the first nctx of
    tables.CONTEXTS: revision 2's as jit.py computes them, then revision 3's four (and
    revision 4's two); in revision 5 (rbits > 0) each context's run (scratch SC3_RUN)."""
    contexts_r2(st, s, t, c, ctxh, R2)
    depth = r3.nest[s, 0]
    top = r3.nest_stack[s, min(depth, T.NEST_MAX) - 1] if depth > 0 else 0  # the innermost opener
    h = hmix(hmix(hmix(T.SEED_NEST, min(depth, T.NEST_DEPTH_CAP)), top), r3.nest[s, 1])
    ctxh[T.CTX_NEST] = hmix(h, c[1] | (c[2] << 8))
    line_start = st.line_start[s]
    above_at = st.prev_line[s] + t - line_start  # same column, previous line of this stream
    above = st.hist[s, above_at] if above_at < line_start else 0
    ctxh[T.CTX_RECORD] = hmix(hmix(T.SEED_RECORD, min(t - line_start, T.RECORD_COL_CAP)), above)
    f = st.field[s]
    prev_field = r3.prev_field_hashes[s, f] if f <= T.FIELDS else 0
    ctxh[T.CTX_FIELD_PREV] = hmix(hmix(hmix(T.SEED_FIELD_PREV, f), prev_field), st.field_hash[s])
    ctxh[T.CTX_WORD2] = hmix(hmix(T.SEED_WORD2, st.word[s]), r3.prev_word[s])
    if nctx > T.CTX_INDIRECT:
        ctxh[T.CTX_INDIRECT] = hmix(hmix(T.SEED_INDIRECT, r3.indirect[(c[2] << 8) | c[1]]), c[1])
        ctxh[T.CTX_LINE_HEAD] = hmix(hmix(T.SEED_LINE_HEAD, r3.line_head[s]), st.word[s])
    if nctx > T.CTX_SHAPE_LONG:  # revision 6's two
        sh = r3.shape
        h = T.SEED_SHAPE
        for i in range(T.SHAPE_RUNS // 4):
            h = hmix(h, sh[s, i])
        ctxh[T.CTX_SHAPE] = hmix(h, min(sh[s, T.SHAPE_WORDS + 1], T.SHAPE_LEN_CAP))
        h = T.SEED_SHAPE_LONG
        for i in range(T.SHAPE_WORDS):
            h = hmix(h, sh[s, i])
        ctxh[T.CTX_SHAPE_LONG] = h
    if nctx > T.CTX_WORD3:  # revision 7's two
        ctxh[T.CTX_WORD3] = hmix(hmix(hmix(T.SEED_WORD3, st.word[s]), r3.prev_word[s]), r3.prev_word2[s])
        ctxh[T.CTX_SHAPE_WORD] = hmix(hmix(T.SEED_SHAPE_WORD, r3.shape[s, 0]), st.word[s])
    if rbits > 0:
        run = r3.scratch[SC3_RUN:SC3_RUN_SM]
        for i in range(nctx):
            hh = hmix(ctxh[i], T.RUN_SEED)
            index = hh >> (32 - rbits)
            check = hmix(hh, T.RUN_CHECK_SEED) & 0xFFFF
            e = np.int64(r3.run_table[index])
            run[4 * i] = index
            run[4 * i + 1] = check
            if e != 0 and (e >> 16) == check:
                run[4 * i + 2] = (e >> 8) & 255
                run[4 * i + 3] = e & 255
            else:
                run[4 * i + 2] = 0
                run[4 * i + 3] = 0


@_phase
def inputs(st, r3, j, c0, c1, cum, x, slot, ctxh, cmi, m, tbits, nctx, rbits):
    """The mixers' inputs x for bit j (c0: 1 and the bits so far) -> Picked. At a nibble
    boundary every context's bucket is looked up (slot), all before any is read, as the
    reference does (a lookup may take over another context's bucket), and in revision 5
    the order contexts seen are counted."""
    table = st.table
    if j == 0 or j == 4:
        key = 0 if j == 0 else c0
        for i in range(nctx):
            slot[i] = bucket_find(table, ctxh[i], key, tbits)
        if rbits > 0:
            seen = 0
            for i in T.ORDER_SLOTS:  # (those among the revision's contexts)
                if i < nctx and (np.int64(table[slot[i] + 1]) & 1023) > 0:
                    seen += 1
            r3.scratch[SC3_SEEN] = seen
    node = c0 if j < 4 else (1 << (j - 4)) | (c0 & ((1 << (j - 4)) - 1))
    # the transformer: the bytes below node c0 whose next bit is 1, over all below it
    lo = (c0 - (1 << j)) << (8 - j)
    wd = 256 >> j
    n1 = cum[lo + wd] - cum[lo + (wd >> 1)]
    tot = cum[lo + wd] - cum[lo]
    ptf = clamp((n1 * 4096 + (tot >> 1)) // tot, 1, 4095)
    x[T.IN_TF] = stretch(ptf)
    pa, ia_tf = apm_p(st.apm_tf, c1 * 256 + c0, ptf)
    x[T.IN_TF_APM] = stretch(pa)
    o1i = c1 * 256 + c0
    x[T.IN_O1] = stretch(np.int64(st.o1[o1i]) >> 20)
    run = r3.scratch[SC3_RUN:SC3_RUN_SM]
    rows = r3.scratch[SC3_ROWS:SC3_SEEN]  # revision 5: what each context's run says of this bit
    if rbits > 0:  # (earlier revisions: 0, as the scratch started)
        for i in range(nctx):
            rows[i] = run_expects(run[4 * i + 3], run[4 * i + 2], j, c0)
    for i in range(nctx):  # each context's counter, and the same through the map
        e = np.int64(table[slot[i] + node])
        x[CTX_AT[i]] = stretch(e >> 20)
        cmi[i] = (rows[i] * nctx + i) * T.CMAP_SIZE + min(e & 1023, T.CMAP_COUNT_CAP) * 64 + (e >> 26)
        x[CMAP_AT[i]] = stretch(np.int64(st.ctx_map[cmi[i]]) >> 20)
    expect = -1  # the match's bit, while its byte agrees with the bits so far
    if m.byte >= 0 and ((m.byte + 256) >> (8 - j)) == c0:
        expect = (m.byte >> (7 - j)) & 1
    mi = -1
    x[T.IN_MATCH] = 0
    x[T.IN_MATCH_LEN] = 0
    if expect >= 0:
        mi = min(m.length, T.MATCH_SM_LEN) * 2 + expect
        x[T.IN_MATCH] = stretch(np.int64(st.match_sm[mi]) >> 20)
        strength = min(m.length, T.MATCH_STRENGTH_LEN) * T.MATCH_STRENGTH
        x[T.IN_MATCH_LEN] = strength if expect == 1 else -strength
    mi2 = -1
    x[T.IN_MATCH2] = 0
    if m.byte2 >= 0 and ((m.byte2 + 256) >> (8 - j)) == c0:
        mi2 = min(m.length2, T.MATCH_SM_LEN) * 2 + ((m.byte2 >> (7 - j)) & 1)
        x[T.IN_MATCH2] = stretch(np.int64(st.match2_sm[mi2]) >> 20)
    x[T.IN_BIAS] = T.BIAS
    if rbits > 0:  # revision 5: each context's run, while its byte agrees
        rsm = r3.scratch[SC3_RUN_SM:SC3_ROWS]
        for i in range(nctx):
            rsm[i] = -1
            at = RUN_AT[i]
            x[at] = 0
            if rows[i] > 0:
                ri = (i * (T.RUN_SM_LEN + 1) + min(run[4 * i + 3], T.RUN_SM_LEN)) * 2 + ((rows[i] - 1) & 1)
                rsm[i] = ri
                x[at] = stretch(np.int64(r3.run_sm[ri]) >> 20)
    return Picked(node, ia_tf, o1i, mi, mi2, expect)


@_phase
def mix(st, r3, j, c0, c, x, expect, len_bucket, parity, m, n_in, rbits, place, kind, base_a):
    """Mixers A, B, C, (revision 6, place >= 0: their sets at bit 0, place and kind) D and
    E, the final mixer and four APMs -> (Mixed, p: the bit's P(1); Refined). base_a: mixer
    A's first set for this byte (revision 7: by the previous byte's class, else 0)."""
    lim = T.ST_LIMIT
    set_a = base_a + c0
    tf_conf = min(abs(x[T.IN_TF]) >> T.TF_CONF_SHIFT, T.TF_CONF_MAX)
    set_b = ((len_bucket if expect >= 0 else 0) * 4 + tf_conf) * 2 + parity
    if rbits > 0:  # revision 5: and by the order contexts seen
        set_b = set_b * T.SEEN_SETS + r3.scratch[SC3_SEEN]
    set_c = hmix(c[1] | (c[2] << 8), T.MIX_C_SEED) >> (32 - T.MIX_C_BITS)
    set_f = j * 2 + parity
    nf = T.N_FINAL + 2 if place >= 0 else T.N_FINAL  # (tables.n_final)
    sa, sb, sc, sf = set_a * n_in, set_b * n_in, set_c * n_in, set_f * nf
    dot_a = 0
    dot_b = 0
    dot_c = 0
    for i in range(n_in):
        dot_a += st.w_a[sa + i] * x[i]
        dot_b += st.w_b[sb + i] * x[i]
        dot_c += st.w_c[sc + i] * x[i]
    sta = clamp(dot_a >> 16, -lim, lim)
    stb = clamp(dot_b >> 16, -lim, lim)
    stc = clamp(dot_c >> 16, -lim, lim)
    w_f = st.w_f
    dot_f = w_f[sf] * sta + w_f[sf + 1] * stb + w_f[sf + 2] * x[T.IN_TF] + w_f[sf + 3] * T.BIAS \
        + w_f[sf + 4] * stc
    set_d = -1
    std = 0
    set_e = -1
    ste = 0
    if place >= 0:
        set_d = place + j
        set_e = kind + j
        sd = set_d * n_in
        se = set_e * n_in
        dot_d = 0
        dot_e = 0
        for i in range(n_in):
            dot_d += r3.w_d[sd + i] * x[i]
            dot_e += r3.w_e[se + i] * x[i]
        std = clamp(dot_d >> 16, -lim, lim)
        ste = clamp(dot_e >> 16, -lim, lim)
        dot_f += w_f[sf + 5] * std + w_f[sf + 6] * ste
    pf = squash(clamp(dot_f >> 16, -lim, lim))
    p1, i1 = apm_p(st.apm1, c0, pf)
    p2, i2 = apm_p(st.apm2, hmix(c[1] | (c[2] << 8), c0) >> (32 - T.APM2_BITS), pf)
    p3, i3 = apm_p(r3.apm_o1, c[1] * 256 + c0, pf)
    expect2 = -1  # match model 2's bit, while its byte agrees
    if m.byte2 >= 0 and ((m.byte2 + 256) >> (8 - j)) == c0:
        expect2 = (m.byte2 >> (7 - j)) & 1
    p4, i4 = apm_p(r3.apm_match, apm_match_context(expect, expect2, m.length, c0), pf)
    p = clamp((pf + p1 + 2 * (p2 + p3 + p4) + 4) >> 3, 1, 4095)
    return (Mixed(p, set_a, set_b, set_c, set_f, sta, stb, stc, squash(sta), squash(stb), squash(stc), pf, i1, i2),
            Refined(i3, i4, set_d, std, squash(std), set_e, ste, squash(ste)))


@_phase
def train(w, sel, n_in, x, err):
    """Weight set sel of a mixer (n_in weights each) learns its error, already times its
    rate: reference.Mixer.update."""
    base = sel * n_in
    for i in range(n_in):
        w[base + i] += (x[i] * err + 32768) >> 16


@_phase
def rate_of(counts, row, sel, lr):
    """The learning rate of weight set sel of mixer `row` (0-4: A to E): lr, or in
    revision 7 (counts has columns) tables.set_rate by its updates so far, which it counts."""
    if counts.shape[1] == 0:
        return lr
    n = counts[row, sel]
    if n < T.SET_COUNT_CAP:
        counts[row, sel] = n + 1
    return set_rate(lr, n)


@_phase
def learn(st, r3, x, y, slot, cmi, k, mx, rf, nctx, n_in, rbits, lr, lr_f):
    """Every component learns the coded bit y (k: what inputs read, mx and rf: what mix
    did; lr: the learning rate of mixers A to E, lr_f the final mixer's)."""
    counts = r3.set_counts
    train(st.w_a, mx.set_a, n_in, x, ((y << 12) - mx.p_a) * rate_of(counts, 0, mx.set_a, lr))
    train(st.w_b, mx.set_b, n_in, x, ((y << 12) - mx.p_b) * rate_of(counts, 1, mx.set_b, lr))
    train(st.w_c, mx.set_c, n_in, x, ((y << 12) - mx.p_c) * rate_of(counts, 2, mx.set_c, lr))
    err_f = ((y << 12) - mx.p_f) * lr_f
    sf = mx.set_f * (T.N_FINAL + 2 if rf.set_d >= 0 else T.N_FINAL)
    if rf.set_d >= 0:  # revision 6
        train(r3.w_d, rf.set_d, n_in, x, ((y << 12) - rf.p_d) * rate_of(counts, 3, rf.set_d, lr))
        train(r3.w_e, rf.set_e, n_in, x, ((y << 12) - rf.p_e) * rate_of(counts, 4, rf.set_e, lr))
        st.w_f[sf + 5] += (rf.st_d * err_f + 32768) >> 16
        st.w_f[sf + 6] += (rf.st_e * err_f + 32768) >> 16
    st.w_f[sf] += (mx.st_a * err_f + 32768) >> 16
    st.w_f[sf + 1] += (mx.st_b * err_f + 32768) >> 16
    st.w_f[sf + 2] += (x[T.IN_TF] * err_f + 32768) >> 16
    st.w_f[sf + 3] += (T.BIAS * err_f + 32768) >> 16
    st.w_f[sf + 4] += (mx.st_c * err_f + 32768) >> 16
    apm_update(st.apm_tf, k.apm_tf, y)
    apm_update(st.apm1, mx.apm1, y)
    apm_update(st.apm2, mx.apm2, y)
    apm_update(r3.apm_o1, rf.apm_o1, y)
    apm_update(r3.apm_match, rf.apm_match, y)
    for i in range(nctx):
        counter_update(st.ctx_map, cmi[i], y, T.COUNTER_LIMIT_CMAP)
    counter_update(st.o1, k.o1, y, T.COUNTER_LIMIT_O1)
    for i in range(nctx):
        counter_update(st.table, slot[i] + k.node, y, T.COUNTER_LIMIT_CTX)
    if k.match >= 0:
        counter_update(st.match_sm, k.match, y, T.COUNTER_LIMIT_MATCH)
    if k.match2 >= 0:
        counter_update(st.match2_sm, k.match2, y, T.COUNTER_LIMIT_MATCH)
    if rbits > 0:
        for i in range(nctx):
            ri = r3.scratch[SC3_RUN_SM + i]
            if ri >= 0:
                counter_update(r3.run_sm, ri, y, T.COUNTER_LIMIT_RUN)


@_phase
def advance(st, r3, s, t, byte, m, recover, nctx, rbits):
    """The stream's state after its byte: (revision 5) the contexts' runs, its structure
    (reference.advance_structure), read before jit.py's advance moves the word, the line
    and the field on, then that."""
    if rbits > 0:  # each run goes on, or starts again at 1
        run = r3.scratch[SC3_RUN:SC3_RUN_SM]
        for i in range(nctx):
            length = run[4 * i + 3]
            if length > 0 and run[4 * i + 2] == byte:
                length = min(length + 1, T.RUN_COUNT_CAP)
            else:
                length = 1
            r3.run_table[run[4 * i]] = np.uint32((run[4 * i + 1] << 16) | (byte << 8) | length)
    nest = r3.nest
    if nest[s, 1]:  # inside a string
        if byte == T.QUOTE and nest[s, 2] == 0:
            nest[s, 1] = 0
        nest[s, 2] = 1 if (byte == T.BACKSLASH and nest[s, 2] == 0) else 0
    else:
        nest[s, 2] = 0
        if byte == T.QUOTE:
            nest[s, 1] = 1
        elif is_opener(byte):
            if nest[s, 0] < T.NEST_MAX:
                r3.nest_stack[s, nest[s, 0]] = byte
            nest[s, 0] += 1
        elif is_closer(byte) and nest[s, 0] > 0:
            nest[s, 0] -= 1
    if not is_letter(byte) and byte != 0 and st.word[s] != 0:
        if nctx > T.CTX_WORD3:  # revision 7
            r3.prev_word2[s] = r3.prev_word[s]
        r3.prev_word[s] = st.word[s]
    if byte == 10 or is_separator(byte):
        f = st.field[s]
        if f <= T.FIELDS:
            r3.field_hashes[s, f] = st.field_hash[s]
        if byte == 10:
            for i in range(T.FIELDS + 1):
                r3.prev_field_hashes[s, i] = r3.field_hashes[s, i]
                r3.field_hashes[s, i] = 0
    if nctx > T.CTX_SHAPE_LONG:  # revision 6 (reference.advance_shape)
        sh = r3.shape
        k = shape_class(byte)
        if k == sh[s, T.SHAPE_WORDS]:
            sh[s, T.SHAPE_WORDS + 1] += 1
        else:
            for i in range(T.SHAPE_WORDS - 1, 0, -1):
                sh[s, i] = ((sh[s, i] << 8) | (sh[s, i - 1] >> 24)) & T.MASK32
            sh[s, 0] = ((sh[s, 0] << 8) | k) & T.MASK32
            sh[s, T.SHAPE_WORDS] = k
            sh[s, T.SHAPE_WORDS + 1] = 1
    if nctx > T.CTX_INDIRECT:  # revision 4
        if t >= 2:
            pair = (st.hist[s, t - 2] << 8) | st.hist[s, t - 1]
            r3.indirect[pair] = ((r3.indirect[pair] << 8) | byte) & 0xFFFF
        if byte == 10:
            r3.line_head[s] = 0
        elif t - st.line_start[s] < T.LINE_HEAD:
            r3.line_head[s] = hmix(r3.line_head[s], byte)
    advance_r2(st, s, t, byte, m, recover)


@_jit
def code_byte(st, r3, s, t, freq, byte, decoding, tbits, mbits, nctx, n_in, match_min, match_long, recover,
              rbits):
    """Code (or decode, returning it) the byte of stream s at step t with the revision's
    first nctx contexts, n_in inputs, match rule (tables.match_rule), (revision 5) a run
    table of 2^rbits entries (0: none), (revision 6, where the state has mixer D) the
    rest of revision 6 and (revision 7, where the state counts the sets' updates) the rest
    of revision 7."""
    sc = r3.scratch
    cum = sc[SC_CUM:SC_X]  # prefix sums of the transformer's frequencies
    x = sc[SC_X:SC3_SLOT]
    slot = sc[SC3_SLOT:SC3_CTXH]  # the contexts' bucket bases
    ctxh = sc[SC3_CTXH:SC3_CMAP]
    cmi = sc[SC3_CMAP:SC3_C]
    c = sc[SC3_C:SC3_C + T.HISTORY + 1]
    cum[0] = 0
    for i in range(256):
        cum[i + 1] = cum[i] + np.int64(freq[i])
    contexts(st, r3, s, t, c, ctxh, nctx, rbits)
    m = match(st, s, t, mbits, match_min, match_long)
    len_bucket = match_length_bucket(m.length)
    parity = (st.start[s] + t) & 1  # of the byte's offset in the block
    place = -1  # revision 6: mixer D's set for the byte's first bit (where in its record it is),
    kind = -1  # mixer E's (reference.kind)
    lr = T.LR_A
    if r3.w_d.size > 0:
        f = st.field[s]
        place = mix_set_d(f, t - st.field_start[s, f] if f <= T.FIELDS else -1, 0)
        kind = (hmix(r3.shape[s, 0] & T.MIX_E_MASK, T.MIX_E_SEED) >> (32 - T.MIX_E_BITS)) * 8
        lr = mix_rate(t * st.lengths.shape[0] + s)
    base_a = 0  # revision 7 (where the state counts the mixers' updates): mixer A's sets by the
    lr_f = T.LR_F  # previous byte's class; the final mixer's learning rate
    if r3.set_counts.shape[1] > 0:
        base_a = mix_class(c[1]) * T.MIX_SETS_A
        lr_f = T.LR_F7
    c0 = 1
    for j in range(8):
        k = inputs(st, r3, j, c0, c[1], cum, x, slot, ctxh, cmi, m, tbits, nctx, rbits)
        mx, rf = mix(st, r3, j, c0, c, x, k.expect, len_bucket, parity, m, n_in, rbits, place, kind, base_a)
        y = code(st, mx.p, (byte >> (7 - j)) & 1, decoding)
        learn(st, r3, x, y, slot, cmi, k, mx, rf, nctx, n_in, rbits, lr, lr_f)
        c0 = (c0 << 1) | y
        if decoding and st.coder[ERR]:
            return 0
    byte = c0 & 255
    advance(st, r3, s, t, byte, m, recover, nctx, rbits)
    return byte


@_jit
def code_steps(parts, parts3, t0, freqs, lo, hi, decoding, tbits, mbits, nctx, n_in, match_min, match_long,
               recover, rbits):
    """Steps t0 .. t0 + c - 1 of streams lo .. hi - 1 (freqs (hi - lo, c, 256)) in
    step-major order, as jit.code_steps; the state as two plain tuples, CMState's and
    Structure's fields."""
    st = CMState(*parts)
    r3 = Structure(*parts3)
    c = freqs.shape[1]
    for k in range(c):
        t = t0 + k
        for s in range(lo, hi):
            if t < st.lengths[s]:
                b = code_byte(st, r3, s, t, freqs[s - lo, k], st.hist[s, t], decoding, tbits, mbits,
                              nctx, n_in, match_min, match_long, recover, rbits)
                if decoding:
                    st.hist[s, t] = b
                    if st.coder[ERR]:
                        return
