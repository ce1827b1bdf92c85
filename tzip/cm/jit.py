"""The CM stage compiled with numba: the same integers as tzip/cm/reference.py, fast.

The byte is coded in the reference's phases (tables.PHASES), one function each with the same name
and role as the reference's method: `contexts`, `match` once per byte, then per bit
`inputs`, `mix`, `code` and `learn`, and `advance` after the byte. Every constant and
context slot is read from tzip/cm/tables.py (numba freezes module globals as compile-time
constants), the shared primitives (squash, stretch, hmix, ...) are tables.py's own
functions compiled here, and the state is tzip/cm/state.py's CMState, updated in place.
See tzip/cm/reference.py for the normative, commented definition of every phase.

numba's on-disk cache is keyed on the source file of each function, not on the globals it
froze: after changing a constant in tables.py, delete tzip/cm/__pycache__ (or touch this
file), or stale compiled code keeps the old constants (tests/test_cm.py would then find
reference and compiled payloads different).
"""
from __future__ import annotations

import numpy as np

from .. import jitcache
from . import tables as T
from .state import (ERR, NPAY, POS, SC_C, SC_CMAP, SC_CTXH, SC_CUM, SC_SLOT, SC_X, X, X1, X2, CMState, Match,
                    Mixed, Picked)

numba = jitcache.numba()  # its cache folder chosen first (tzip/jitcache.py)

# Without numba's reference counting (_nrt=False): nothing here allocates an array, and
# with it every phase that takes the state (a tuple of 31 arrays) paid 31 atomic increments
# and decrements per call, inlined or not: encoding ran at a third of the speed of one
# function. Were it ever to allocate, numba refuses to compile (NRT required), not miscompute.
try:  # (a numba without the option computes the same, slower)
    from numba.core.cpu import CPUTargetOptions
    _NO_REFCOUNTS = {"_nrt": False} if hasattr(CPUTargetOptions, "_nrt") else {}
except ImportError:
    _NO_REFCOUNTS = {}
_OPTIONS = dict(cache=jitcache.caching(), nogil=True, boundscheck=False, **_NO_REFCOUNTS)
_jit = numba.njit(**_OPTIONS)
# a phase: inlined into code_byte by numba, so splitting the byte into phases costs nothing
_phase = numba.njit(**_OPTIONS, inline="always")


squash = _phase(T.squash)
stretch = _phase(T.stretch)
hmix = _phase(T.hmix)
clamp = _phase(T.clamp)
is_letter = _phase(T.is_letter)
is_separator = _phase(T.is_separator)
match_length_bucket = _phase(T.match_length_bucket)

N_IN = T.N_INPUTS
ORDER_SLOT = T.ORDER_SLOT


@_phase
def counter_update(tab, i, y, limit):
    e = np.int64(tab[i])
    n = e & 1023
    p = e >> 10
    p += (((y << 22) - p) * T.DT[n]) >> 16
    if n < limit:
        n += 1
    tab[i] = np.uint32((p << 10) | n)


@_phase
def apm_p(tab, ctx, p):
    s = T.STRETCH[p] + 2048
    lo = s >> 7
    w = s & 127
    idx = ctx * T.APM_BINS + lo
    out = (tab[idx] * (128 - w) + tab[idx + 1] * w) >> 11
    return clamp(out, 1, 4095), idx + (w >> 6)


@_phase
def apm_update(tab, idx, y):
    g = (y << 16) + (y << T.APM_RATE) - y - y
    tab[idx] += (g - tab[idx]) >> T.APM_RATE


@_jit
def bucket_find(table, h, key, tbits):
    """Slot base of the bucket for context hash h and nibble key (see reference)."""
    hh = hmix(h, key + 1)
    idx = hh >> (32 - tbits)
    chk = hmix(hh, T.CHECKSUM_SEED) & 0xFFFF
    if chk == 0:
        chk = 1
    best = -1
    best_pri = 1 << 30
    for k in range(T.PROBES):
        b = (idx ^ k) * T.BUCKET
        c = np.int64(table[b])
        if c == chk:
            return b
        if c == 0:
            pri = -1
        else:
            pri = np.int64(table[b + 1]) & 1023
        if pri < best_pri:
            best_pri = pri
            best = b
    table[best] = np.uint32(chk)
    for i in range(1, T.BUCKET):
        table[best + i] = np.uint32(T.COUNTER_INIT)
    return best


@_phase
def contexts(st, s, t, c, ctxh, nctx):
    """The previous bytes c[1..HISTORY] and the hashes of the first nctx contexts
    (tables.CONTEXTS), fixed for the whole byte."""
    hist = st.hist
    for k in range(1, T.HISTORY + 1):
        c[k] = hist[s, t - k] if t - k >= 0 else 0
    c1 = c[1]
    h = hmix(T.SEED_ORDER, c1)  # orders: one hash chain over the previous bytes
    for k in range(2, T.MAX_ORDER + 1):
        h = hmix(h, hist[s, t - k] if t - k >= 0 else 0)
        if ORDER_SLOT[k] >= 0:
            ctxh[ORDER_SLOT[k]] = h
    ctxh[T.CTX_WORD] = hmix(hmix(T.SEED_WORD, st.word[s]), c1)
    above_at = st.prev_line[s] + t - st.line_start[s]
    above = hist[s, above_at] if above_at < st.line_start[s] else 0
    ctxh[T.CTX_COLUMN] = hmix(hmix(T.SEED_COLUMN, above), c1)
    ctxh[T.CTX_EVEN] = hmix(hmix(hmix(T.SEED_EVEN, c[2]), c[4]), c[6])
    if nctx > T.CTX_FIELD:
        f = st.field[s]
        ctxh[T.CTX_FIELD] = hmix(hmix(T.SEED_FIELD, f), st.field_hash[s])
    if nctx > T.CTX_FIELD_ABOVE:
        f = st.field[s]
        above = 0  # 1 + the byte, 0 where the line before has none
        if f < T.FIELDS:
            at = st.prev_field_start[s, f] + t - st.field_start[s, f]
            end = st.prev_field_start[s, f + 1] - 1  # its separator
            if end < 0:
                end = st.line_start[s] - 1  # the line's newline
            if st.prev_field_start[s, f] >= 0 and at < end:
                above = hist[s, at] + 1
        ctxh[T.CTX_FIELD_ABOVE] = hmix(hmix(T.SEED_FIELD_ABOVE, above), f)


@_phase
def lookup(st, s, t, slot, need, mlen, mptr):
    """Match model 1's table at slot: (t, s) is recorded there; while no copy is followed
    (mlen 0), the candidate it held is taken if the contexts agree on `need` bytes or
    more -> (mlen, mptr)."""
    hist = st.hist
    S = hist.shape[0]
    cand = st.match_table[slot]
    st.match_table[slot] = 1 + t * S + s  # this context now last seen before (t, s)
    if mlen == 0 and cand > 0:
        ps = (cand - 1) % S
        pt = (cand - 1) // S
        if pt < t:
            n = 0
            while n < T.MATCH_VERIFY and pt - n - 1 >= 0 and t - n - 1 >= 0 \
                    and hist[ps, pt - n - 1] == hist[s, t - n - 1]:
                n += 1
            if n >= need:
                return n, cand
    return mlen, mptr


@_phase
def match(st, s, t, mbits, match_min, match_long):
    """Both match models: continue the copy or look the context up, by the last
    match_long bytes first (0: not), then by the last match_min (tables.match_rule) -> Match."""
    hist = st.hist
    S = hist.shape[0]
    mptr = st.match_ptr[s]
    mlen = st.match_len[s]
    if mlen > 0 and (mptr - 1) // S >= t:  # the copy reached bytes not coded yet
        mlen = 0
    if match_long and t >= match_long:
        hl = 0
        for k in range(match_long, 0, -1):
            hl = hmix(hl, hist[s, t - k])
        mlen, mptr = lookup(st, s, t, hmix(hl, T.MATCH_LONG_SEED) >> (32 - mbits), match_long, mlen, mptr)
    hm = 0
    if t >= match_min:
        for k in range(match_min, 0, -1):
            hm = hmix(hm, hist[s, t - k])
        mlen, mptr = lookup(st, s, t, hm >> (32 - mbits), match_min, mlen, mptr)
    # match model 2: the stream's own last occurrence of the context
    m2ptr = st.match2_ptr[s]
    m2len = st.match2_len[s]
    if t >= match_min:
        slot2 = hmix(hm, s + 1) >> (32 - mbits)
        cand2 = st.match2_table[slot2]
        st.match2_table[slot2] = t + 1
        if m2len == 0 and 0 < cand2 <= t:  # (another stream may have written t + 1: not yet known)
            pt = cand2 - 1
            n = 0
            while n < T.MATCH_VERIFY and pt - n - 1 >= 0 and hist[s, pt - n - 1] == hist[s, t - n - 1]:
                n += 1
            if n >= match_min:
                m2len = n
                m2ptr = pt
    pb = hist[(mptr - 1) % S, (mptr - 1) // S] if mlen > 0 else -1
    pb2 = hist[s, m2ptr] if m2len > 0 else -1
    return Match(mptr, mlen, pb, m2ptr, m2len, pb2)


@_phase
def inputs(st, j, c0, c1, cum, x, slot, ctxh, cmi, nctx, m, tbits):
    """The mixers' inputs x for bit j (c0: 1 and the bits so far) -> Picked. At a nibble
    boundary the contexts' buckets are looked up (slot)."""
    table = st.table
    if j == 0 or j == 4:
        key = 0 if j == 0 else c0
        for i in range(nctx):
            slot[i] = bucket_find(table, ctxh[i], key, tbits)
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
    for i in range(nctx):
        e = np.int64(table[slot[i] + node])
        x[T.IN_CTX + i] = stretch(e >> 20)
        cmi[i] = i * T.CMAP_SIZE + min(e & 1023, T.CMAP_COUNT_CAP) * 64 + (e >> 26)
        x[T.IN_CMAP + i] = stretch(np.int64(st.ctx_map[cmi[i]]) >> 20)
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
    return Picked(node, ia_tf, o1i, mi, mi2, expect)


@_phase
def mix(st, j, c0, c, x, expect, len_bucket, parity, use_c):
    """Mixers A, B (and C), the final mixer and two APMs -> Mixed (p: the bit's P(1))."""
    lim = T.ST_LIMIT
    set_a = c0
    tf_conf = min(abs(x[T.IN_TF]) >> T.TF_CONF_SHIFT, T.TF_CONF_MAX)
    set_b = ((len_bucket if expect >= 0 else 0) * 4 + tf_conf) * 2 + parity
    set_c = hmix(c[1] | (c[2] << 8), T.MIX_C_SEED) >> (32 - T.MIX_C_BITS)
    set_f = j * 2 + parity
    sa, sb, sc, sf = set_a * N_IN, set_b * N_IN, set_c * N_IN, set_f * T.N_FINAL
    dot_a = 0
    dot_b = 0
    for i in range(N_IN):
        dot_a += st.w_a[sa + i] * x[i]
        dot_b += st.w_b[sb + i] * x[i]
    sta = clamp(dot_a >> 16, -lim, lim)
    stb = clamp(dot_b >> 16, -lim, lim)
    stc = 0
    if use_c:
        dot_c = 0
        for i in range(N_IN):
            dot_c += st.w_c[sc + i] * x[i]
        stc = clamp(dot_c >> 16, -lim, lim)
    w_f = st.w_f
    dot_f = w_f[sf] * sta + w_f[sf + 1] * stb + w_f[sf + 2] * x[T.IN_TF] + w_f[sf + 3] * T.BIAS \
        + w_f[sf + 4] * stc
    pf = squash(clamp(dot_f >> 16, -lim, lim))
    p1, i1 = apm_p(st.apm1, c0, pf)
    p2, i2 = apm_p(st.apm2, hmix(c[1] | (c[2] << 8), c0) >> (32 - T.APM2_BITS), pf)
    p = clamp((pf + p1 + 2 * p2 + 2) >> 2, 1, 4095)
    return Mixed(p, set_a, set_b, set_c, set_f, sta, stb, stc, squash(sta), squash(stb), squash(stc), pf, i1, i2)


@_phase
def code(st, p, bit, decoding):
    """The binary arithmetic coder: encode bit, or decode one, with P(1) = p / 4096."""
    coder = st.coder
    buf = st.buf
    x1 = coder[X1]
    x2 = coder[X2]
    xmid = x1 + ((x2 - x1) >> 12) * p
    y = (1 if coder[X] <= xmid else 0) if decoding else bit
    if y:
        x2 = xmid
    else:
        x1 = xmid + 1
    while ((x1 ^ x2) & 0xFF000000) == 0:
        if decoding:
            pos = coder[POS]
            if pos < coder[NPAY]:
                b = np.int64(buf[pos])
            else:  # zeros for SLACK bytes past the end, then an error
                b = 0
                if pos >= coder[NPAY] + T.SLACK:
                    coder[ERR] = 1
            coder[POS] = pos + 1
            coder[X] = ((coder[X] << 8) & T.MASK32) | b
        else:
            buf[coder[POS]] = np.uint8(x2 >> 24)
            coder[POS] += 1
        x1 = (x1 << 8) & T.MASK32
        x2 = ((x2 << 8) & T.MASK32) | 255
    coder[X1] = x1
    coder[X2] = x2
    return y


@_phase
def learn(st, x, y, slot, cmi, nctx, k, mx, use_c):
    """Every component learns the coded bit y (k: what inputs read, mx: what mix did)."""
    err_a = ((y << 12) - mx.p_a) * T.LR_A
    err_b = ((y << 12) - mx.p_b) * T.LR_B
    w_a = st.w_a
    w_b = st.w_b
    sa = mx.set_a * N_IN
    sb = mx.set_b * N_IN
    for i in range(N_IN):
        w_a[sa + i] += (x[i] * err_a + 32768) >> 16
    for i in range(N_IN):
        w_b[sb + i] += (x[i] * err_b + 32768) >> 16
    if use_c:
        err_c = ((y << 12) - mx.p_c) * T.LR_C
        w_c = st.w_c
        sc = mx.set_c * N_IN
        for i in range(N_IN):
            w_c[sc + i] += (x[i] * err_c + 32768) >> 16
    err_f = ((y << 12) - mx.p_f) * T.LR_F
    sf = mx.set_f * T.N_FINAL
    st.w_f[sf] += (mx.st_a * err_f + 32768) >> 16
    st.w_f[sf + 1] += (mx.st_b * err_f + 32768) >> 16
    st.w_f[sf + 2] += (x[T.IN_TF] * err_f + 32768) >> 16
    st.w_f[sf + 3] += (T.BIAS * err_f + 32768) >> 16
    if use_c:
        st.w_f[sf + 4] += (mx.st_c * err_f + 32768) >> 16
    apm_update(st.apm_tf, k.apm_tf, y)
    apm_update(st.apm1, mx.apm1, y)
    apm_update(st.apm2, mx.apm2, y)
    for i in range(nctx):
        counter_update(st.ctx_map, cmi[i], y, T.COUNTER_LIMIT_CMAP)
    counter_update(st.o1, k.o1, y, T.COUNTER_LIMIT_O1)
    for i in range(nctx):
        counter_update(st.table, slot[i] + k.node, y, T.COUNTER_LIMIT_CTX)
    if k.match >= 0:
        counter_update(st.match_sm, k.match, y, T.COUNTER_LIMIT_MATCH)
    if k.match2 >= 0:
        counter_update(st.match2_sm, k.match2, y, T.COUNTER_LIMIT_MATCH)


@_phase
def advance(st, s, t, byte, m, recover):
    """The stream's state after its byte: the match copies (a wrong guess in a copy of at
    least `recover` bytes follows it on at length 1; 0: ends it), the word, the line, the field."""
    S = st.hist.shape[0]
    mlen = m.length
    mptr = m.ptr
    if mlen > 0:
        if m.byte == byte:
            mlen = min(mlen + 1, T.MATCH_LEN_CAP)
            mptr += S  # the next byte of the copy
        elif recover and mlen >= recover:
            mlen = 1
            mptr += S
        else:
            mlen = 0
    st.match_len[s] = mlen
    st.match_ptr[s] = mptr
    m2len = m.length2
    m2ptr = m.ptr2
    if m2len > 0:
        if m.byte2 == byte:
            m2len = min(m2len + 1, T.MATCH_LEN_CAP)
            m2ptr += 1
        elif recover and m2len >= recover:
            m2len = 1
            m2ptr += 1
        else:
            m2len = 0
    st.match2_len[s] = m2len
    st.match2_ptr[s] = m2ptr
    if is_letter(byte):
        lc = byte + 32 if 65 <= byte <= 90 else byte
        st.word[s] = hmix(st.word[s] + 1, lc)
    elif byte != 0:  # NULs do not end a word (UTF-16)
        st.word[s] = 0
    if byte == 10:
        st.prev_line[s] = st.line_start[s]
        st.line_start[s] = t + 1
        st.field[s] = 0
        st.field_hash[s] = 0
        for i in range(T.FIELDS + 1):
            st.prev_field_start[s, i] = st.field_start[s, i]
            st.field_start[s, i] = -1
        st.field_start[s, 0] = t + 1
    elif is_separator(byte):
        st.field[s] += 1
        st.field_hash[s] = 0
        if st.field[s] <= T.FIELDS:
            st.field_start[s, st.field[s]] = t + 1
    else:
        st.field_hash[s] = hmix(st.field_hash[s], byte)


@_jit
def code_byte(st, s, t, freq, byte, decoding, tbits, mbits, nctx, use_c):
    """Code (or decode, returning it) the byte of stream s at step t with the first nctx
    contexts, and mixer C if use_c (the revision's choices: tables.N_CONTEXTS, MIXER_C_FROM)."""
    sc = st.scratch
    cum = sc[SC_CUM:SC_X]  # prefix sums of the transformer's frequencies
    x = sc[SC_X:SC_SLOT]
    slot = sc[SC_SLOT:SC_CTXH]  # the contexts' bucket bases
    ctxh = sc[SC_CTXH:SC_CMAP]
    cmi = sc[SC_CMAP:SC_C]
    c = sc[SC_C:SC_C + T.HISTORY + 1]
    cum[0] = 0
    for i in range(256):
        cum[i + 1] = cum[i] + np.int64(freq[i])
    contexts(st, s, t, c, ctxh, nctx)
    m = match(st, s, t, mbits, T.MATCH_MIN, 0)
    len_bucket = match_length_bucket(m.length)
    parity = (st.start[s] + t) & 1  # of the byte's offset in the block
    c0 = 1
    for j in range(8):
        k = inputs(st, j, c0, c[1], cum, x, slot, ctxh, cmi, nctx, m, tbits)
        mx = mix(st, j, c0, c, x, k.expect, len_bucket, parity, use_c)
        y = code(st, mx.p, (byte >> (7 - j)) & 1, decoding)
        learn(st, x, y, slot, cmi, nctx, k, mx, use_c)
        c0 = (c0 << 1) | y
        if decoding and st.coder[ERR]:
            return 0
    byte = c0 & 255
    advance(st, s, t, byte, m, 0)
    return byte


@_jit
def code_steps(parts, t0, freqs, lo, hi, decoding, tbits, mbits, nctx, use_c):
    """Steps t0 .. t0 + c - 1 of streams lo .. hi - 1 (freqs (hi - lo, c, 256)) in
    step-major order. Encoding reads the bytes from st.hist; decoding writes them there.
    Stops early on a decoder error.

    The state comes as a plain tuple of CMState's fields (tuple(state)): numba types a
    NamedTuple argument in Python on every call, which cost more than a decoding step's
    mixing of 16 streams."""
    st = CMState(*parts)
    c = freqs.shape[1]
    for k in range(c):
        t = t0 + k
        for s in range(lo, hi):
            if t < st.lengths[s]:
                b = code_byte(st, s, t, freqs[s - lo, k], st.hist[s, t], decoding, tbits, mbits, nctx, use_c)
                if decoding:
                    st.hist[s, t] = b
                    if st.coder[ERR]:
                        return


@_jit
def flush(st):
    """Encoder end: one byte that, followed by zeros, lies inside the final range."""
    st.buf[st.coder[POS]] = np.uint8((st.coder[X1] >> 24) + 1)
    st.coder[POS] += 1
