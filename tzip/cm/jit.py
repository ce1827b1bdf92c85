"""The CM stage compiled with numba: the same integers as tzip/cm/reference.py, fast.

State lives in a typing.NamedTuple of numpy arrays (CMState), updated in place; scalars
that change (the coder's range, the output position, error flags) live in small int64
arrays. `code_steps` codes (or decodes) whole steps of the lockstep layout in one call.
See tzip/cm/reference.py for the normative, commented definition of every step.

The constants are read from tzip/cm/tables.py at compile time, and numba's on-disk cache
is keyed on this file only: after changing tables.py, delete tzip/cm/__pycache__ (or touch
this file), or stale compiled code keeps the old constants (tests/test_cm.py would then
find reference and compiled payloads different).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from . import tables as T

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)

SQUASH = T.SQUASH
STRETCH = T.STRETCH
DT = T.DT
MASK32 = T.MASK32
HASH_MUL = T.HASH_MUL
HASH_MUL2 = T.HASH_MUL2
N_IN = T.N_INPUTS
N_CTX = len(T.CONTEXTS)
N_CTX_R1 = T.CONTEXTS_R1
SEP0, SEP1, SEP2, SEP3 = T.SEPARATORS
FIELDS = T.FIELDS
IN_CTX = T.IN_CTX
IN_MATCH = T.IN_MATCH
IN_CMAP = T.IN_CMAP
IN_MATCH_LEN = T.IN_MATCH_LEN
IN_BIAS = T.IN_BIAS
IN_MATCH2 = T.IN_MATCH2
COUNTER_INIT = T.COUNTER_INIT
MATCH_MIN = T.MATCH_MIN
MATCH_VERIFY = T.MATCH_VERIFY
MATCH_LEN_CAP = T.MATCH_LEN_CAP
LIM_CTX = T.COUNTER_LIMIT_CTX
LIM_O1 = T.COUNTER_LIMIT_O1
LIM_MATCH = T.COUNTER_LIMIT_MATCH
LR_A, LR_B, LR_F = T.LR_A, T.LR_B, T.LR_F
APM_RATE = T.APM_RATE
SLACK = 4


class CMState(NamedTuple):
    """Everything the CM stage remembers within one block (see reference.CMModel)."""
    hist: np.ndarray  # (S, L) int64: the streams' bytes (the decoder fills it)
    lengths: np.ndarray  # (S,) int64
    start: np.ndarray  # (S,) int64: offset of each stream in the block
    table: np.ndarray  # (buckets * 16,) uint32: hashed context slots
    o1: np.ndarray  # (65536,) uint32: order-1 counters by (c1, c0)
    ctx_map: np.ndarray  # (contexts * 1024,) uint32: counters by (context, count, p)
    match_sm: np.ndarray  # (64,) uint32: match counters by (length bucket, expected bit)
    match_table: np.ndarray  # (2^bits,) int64: 1 + step * S + stream after a hashed context
    match_ptr: np.ndarray  # (S,) int64: 1 + step * S + stream of the predicted byte, 0 none
    match_len: np.ndarray  # (S,) int64
    match2_table: np.ndarray  # (2^bits,) int64: 1 + step, by hash of (context, stream)
    match2_ptr: np.ndarray  # (S,) int64: step of the byte match model 2 predicts
    match2_len: np.ndarray  # (S,) int64
    match2_sm: np.ndarray  # (64,) uint32: match 2 counters by (length, expected bit)
    word: np.ndarray  # (S,) int64: hash of the letters since the last non-letter
    line_start: np.ndarray  # (S,) int64: step after the stream's last newline
    prev_line: np.ndarray  # (S,) int64: start of the line before
    field: np.ndarray  # (S,) int64: separators since the line start (revision 2)
    field_hash: np.ndarray  # (S,) int64: hash of the field's bytes so far (revision 2)
    field_start: np.ndarray  # (S, FIELDS + 1) int64: where this line's fields start (-1: not yet)
    prev_field_start: np.ndarray  # (S, FIELDS + 1) int64: the same for the line before
    w_a: np.ndarray  # (256 * N_IN,) int64 mixer A weights
    w_b: np.ndarray  # (64 * N_IN,) int64 mixer B weights
    w_c: np.ndarray  # (4096 * N_IN,) int64 mixer C weights (revision 2)
    w_f: np.ndarray  # (16 * 5,) int64 final mixer weights
    apm_tf: np.ndarray  # (65536 * 33,) int32
    apm1: np.ndarray  # (256 * 33,) int32
    apm2: np.ndarray  # (65536 * 33,) int32
    coder: np.ndarray  # (8,) int64: x1, x2, x (decoder), pos, limit, error, payload length
    buf: np.ndarray  # uint8 output (encoder) or input (decoder) bytes
    scratch: np.ndarray  # (257 + 4 * N_IN,) int64 work space


# coder[] fields
X1, X2, X, POS, ERR, NPAY = 0, 1, 2, 3, 4, 5


@_jit
def hmix(h, x):
    h = ((h ^ x) & MASK32) * HASH_MUL & MASK32
    return (h ^ (h >> 15)) * HASH_MUL2 & MASK32


@_jit
def squash(d):
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    return SQUASH[d + 2048]


@_jit
def counter_update(tab, i, y, limit):
    e = np.int64(tab[i])
    n = e & 1023
    p = e >> 10
    p += (((y << 22) - p) * DT[n]) >> 16
    if n < limit:
        n += 1
    tab[i] = np.uint32((p << 10) | n)


@_jit
def apm_p(tab, ctx, p):
    s = STRETCH[p] + 2048
    lo = s >> 7
    w = s & 127
    idx = ctx * 33 + lo
    out = (tab[idx] * (128 - w) + tab[idx + 1] * w) >> 11
    if out < 1:
        out = 1
    elif out > 4095:
        out = 4095
    return out, idx + (w >> 6)


@_jit
def apm_update(tab, idx, y):
    g = (y << 16) + (y << APM_RATE) - y - y
    tab[idx] += (g - tab[idx]) >> APM_RATE


@_jit
def bucket_find(table, h, key, tbits):
    """Slot base of the bucket for context hash h and nibble key (see reference)."""
    hh = hmix(h, key + 1)
    idx = hh >> (32 - tbits)
    chk = hmix(hh, 0x5BD1E995) & 0xFFFF
    if chk == 0:
        chk = 1
    best = -1
    best_pri = 1 << 30
    for k in range(3):
        b = (idx ^ k) * 16
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
    for i in range(1, 16):
        table[best + i] = np.uint32(COUNTER_INIT)
    return best


@_jit
def is_letter(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c >= 128


@_jit
def code_byte(st, s, t, freq, byte, decoding, tbits, mbits, rev):
    """Code (or decode, returning it) the byte of stream s at step t with the CM stage of
    revision rev (1: no field context, no mixer C)."""
    hist = st.hist
    S = hist.shape[0]
    sc = st.scratch
    cum = sc[0:257]
    x = sc[257:257 + N_IN]
    slot = sc[257 + N_IN:257 + 2 * N_IN]  # context bucket bases
    ctxh = sc[257 + 2 * N_IN:257 + 3 * N_IN]
    cmi = sc[257 + 3 * N_IN:257 + 4 * N_IN]
    cum[0] = 0
    for i in range(256):
        cum[i + 1] = cum[i] + np.int64(freq[i])
    c = sc[257 + 4 * N_IN:257 + 4 * N_IN + 9]
    for k in range(1, 9):
        c[k] = hist[s, t - k] if t - k >= 0 else 0
    c1 = c[1]
    sc = (hmix(c1 | (c[2] << 8), 77) >> 20) * N_IN  # mixer C's set (revision 2)
    # byte contexts (tables.CONTEXTS, in that order)
    h = hmix(1, c1)  # orders: one hash chain over the previous bytes (0 before the start)
    for k in range(2, 25):
        h = hmix(h, hist[s, t - k] if t - k >= 0 else 0)
        if k <= 4:
            ctxh[k - 2] = h  # o2, o3, o4
        elif k == 8:
            ctxh[6] = h
        elif k == 12:
            ctxh[7] = h
        elif k == 24:
            ctxh[8] = h
    ctxh[3] = hmix(hmix(5, st.word[s]), c1)
    col = t - st.line_start[s]
    above_i = st.prev_line[s] + col
    above = hist[s, above_i] if above_i < st.line_start[s] else 0
    ctxh[4] = hmix(hmix(7, above), c1)
    ctxh[5] = hmix(hmix(hmix(8, c[2]), c[4]), c[6])
    nctx = N_CTX_R1
    if rev >= 2:
        nctx = N_CTX
        f = st.field[s]
        ctxh[9] = hmix(hmix(11, f), st.field_hash[s])
        above = 0  # field_above: 1 + the byte, 0 where the line before has none
        if f < FIELDS:
            at = st.prev_field_start[s, f] + t - st.field_start[s, f]
            end = st.prev_field_start[s, f + 1] - 1  # its separator
            if end < 0:
                end = st.line_start[s] - 1  # the line's newline
            if st.prev_field_start[s, f] >= 0 and at < end:
                above = hist[s, at] + 1
        ctxh[10] = hmix(hmix(12, above), f)
    # match model: find or continue a candidate
    mptr = st.match_ptr[s]
    mlen = st.match_len[s]
    if mlen > 0:
        pt = (mptr - 1) // S
        if pt >= t:
            mlen = 0
    if t >= MATCH_MIN:
        hm = 0
        for k in range(MATCH_MIN, 0, -1):
            hm = hmix(hm, hist[s, t - k])
        mslot = hm >> (32 - mbits)
        cand = st.match_table[mslot]
        st.match_table[mslot] = 1 + t * S + s  # this context now last seen before (t, s)
        if mlen == 0 and cand > 0:
            ps = (cand - 1) % S
            pt = (cand - 1) // S
            if pt < t:
                n = 0
                while n < MATCH_VERIFY and pt - n - 1 >= 0 and t - n - 1 >= 0 \
                        and hist[ps, pt - n - 1] == hist[s, t - n - 1]:
                    n += 1
                if n >= MATCH_MIN:
                    mlen = n
                    mptr = cand
    # match model 2: the stream's own last occurrence of the context
    m2ptr = st.match2_ptr[s]
    m2len = st.match2_len[s]
    if t >= MATCH_MIN:
        slot2 = hmix(hm, s + 1) >> (32 - mbits)
        cand2 = st.match2_table[slot2]
        st.match2_table[slot2] = t + 1
        if m2len == 0 and 0 < cand2 <= t:  # (another stream may have written t + 1: not yet known)
            pt = cand2 - 1
            n = 0
            while n < MATCH_VERIFY and pt - n - 1 >= 0 and hist[s, pt - n - 1] == hist[s, t - n - 1]:
                n += 1
            if n >= MATCH_MIN:
                m2len = n
                m2ptr = pt
    pb2 = hist[s, m2ptr] if m2len > 0 else -1
    m2cap = min(m2len, 15)
    pb = -1
    if mlen > 0:
        pb = hist[(mptr - 1) % S, (mptr - 1) // S]
    if mlen == 0:
        lb = 0
    elif mlen < 16:
        lb = 1
    elif mlen < 24:
        lb = 2
    elif mlen < 32:
        lb = 3
    elif mlen < 64:
        lb = 4
    elif mlen < 128:
        lb = 5
    elif mlen < 512:
        lb = 6
    else:
        lb = 7
    mcap = min(mlen, 15)
    # bits
    coder = st.coder
    buf = st.buf
    table = st.table
    c0 = 1
    for j in range(8):
        if j == 0 or j == 4:
            key = 0 if j == 0 else c0
            for i in range(nctx):
                slot[i] = bucket_find(table, ctxh[i], key, tbits)
        if j < 4:
            node = c0
        else:
            node = (1 << (j - 4)) | (c0 & ((1 << (j - 4)) - 1))
        # transformer
        lo = (c0 - (1 << j)) << (8 - j)
        wd = 256 >> j
        n1 = cum[lo + wd] - cum[lo + (wd >> 1)]
        tot = cum[lo + wd] - cum[lo]
        ptf = (n1 * 4096 + (tot >> 1)) // tot
        if ptf < 1:
            ptf = 1
        elif ptf > 4095:
            ptf = 4095
        x[0] = STRETCH[ptf]
        ctx_tf = c1 * 256 + c0
        pa, ia_tf = apm_p(st.apm_tf, ctx_tf, ptf)
        x[1] = STRETCH[pa]
        o1i = c1 * 256 + c0
        x[2] = STRETCH[np.int64(st.o1[o1i]) >> 20]
        for i in range(nctx):
            e = np.int64(table[slot[i] + node])
            x[IN_CTX + i] = STRETCH[e >> 20]
            n = e & 1023
            cmi[i] = i * 1024 + (n if n < 15 else 15) * 64 + (e >> 26)
            x[IN_CMAP + i] = STRETCH[np.int64(st.ctx_map[cmi[i]]) >> 20]
        # match
        expect = -1
        if pb >= 0 and ((pb + 256) >> (8 - j)) == c0:
            expect = (pb >> (7 - j)) & 1
        if expect >= 0:
            mi = mcap * 2 + expect
            x[IN_MATCH] = STRETCH[np.int64(st.match_sm[mi]) >> 20]
            ml = min(mlen, 32) * 32
            x[IN_MATCH_LEN] = ml if expect == 1 else -ml
        else:
            mi = -1
            x[IN_MATCH] = 0
            x[IN_MATCH_LEN] = 0
        mi2 = -1
        x[IN_MATCH2] = 0
        if pb2 >= 0 and ((pb2 + 256) >> (8 - j)) == c0:
            mi2 = m2cap * 2 + ((pb2 >> (7 - j)) & 1)
            x[IN_MATCH2] = STRETCH[np.int64(st.match2_sm[mi2]) >> 20]
        x[IN_BIAS] = 256
        # mixers
        sa = c0 * N_IN
        tfb = abs(x[0]) >> 9
        if tfb > 3:
            tfb = 3
        sb = (((lb if expect >= 0 else 0) * 4 + tfb) * 2 + ((st.start[s] + t) & 1)) * N_IN
        dot_a = 0
        dot_b = 0
        for i in range(N_IN):
            dot_a += st.w_a[sa + i] * x[i]
            dot_b += st.w_b[sb + i] * x[i]
        sta = dot_a >> 16
        stb = dot_b >> 16
        sta = max(-2047, min(2047, sta))
        stb = max(-2047, min(2047, stb))
        pma = squash(sta)
        pmb = squash(stb)
        stc = 0
        if rev >= 2:
            dot_c = 0
            for i in range(N_IN):
                dot_c += st.w_c[sc + i] * x[i]
            stc = max(-2047, min(2047, dot_c >> 16))
        pmc = squash(stc)
        sf = (j * 2 + ((st.start[s] + t) & 1)) * 5
        dot_f = st.w_f[sf] * sta + st.w_f[sf + 1] * stb + st.w_f[sf + 2] * x[0] + \
            st.w_f[sf + 3] * 256 + st.w_f[sf + 4] * stc
        stf = max(-2047, min(2047, dot_f >> 16))
        pf = squash(stf)
        # APMs
        p1, i1 = apm_p(st.apm1, c0, pf)
        ctx2 = (hmix(c1 | (c[2] << 8), c0) >> 16)
        p2, i2 = apm_p(st.apm2, ctx2, pf)
        p = (pf + p1 + 2 * p2 + 2) >> 2
        if p < 1:
            p = 1
        elif p > 4095:
            p = 4095
        # code the bit
        x1 = coder[X1]
        x2 = coder[X2]
        xmid = x1 + ((x2 - x1) >> 12) * p
        if decoding:
            y = 1 if coder[X] <= xmid else 0
        else:
            y = (byte >> (7 - j)) & 1
        if y:
            x2 = xmid
        else:
            x1 = xmid + 1
        while ((x1 ^ x2) & 0xFF000000) == 0:
            if decoding:
                pos = coder[POS]
                if pos < coder[NPAY]:
                    b = np.int64(buf[pos])
                elif pos < coder[NPAY] + SLACK:
                    b = 0
                else:
                    coder[ERR] = 1
                    b = 0
                coder[POS] = pos + 1
                coder[X] = ((coder[X] << 8) & MASK32) | b
            else:
                buf[coder[POS]] = np.uint8(x2 >> 24)
                coder[POS] += 1
            x1 = (x1 << 8) & MASK32
            x2 = ((x2 << 8) & MASK32) | 255
        coder[X1] = x1
        coder[X2] = x2
        # learn
        err_a = ((y << 12) - pma) * LR_A
        err_b = ((y << 12) - pmb) * LR_B
        w_a = st.w_a
        w_b = st.w_b
        for i in range(N_IN):
            w_a[sa + i] += (x[i] * err_a + 32768) >> 16
        for i in range(N_IN):
            w_b[sb + i] += (x[i] * err_b + 32768) >> 16
        if rev >= 2:
            err_c = ((y << 12) - pmc) * LR_B
            w_c = st.w_c
            for i in range(N_IN):
                w_c[sc + i] += (x[i] * err_c + 32768) >> 16
        err_f = ((y << 12) - pf) * LR_F
        st.w_f[sf] += (sta * err_f + 32768) >> 16
        st.w_f[sf + 1] += (stb * err_f + 32768) >> 16
        st.w_f[sf + 2] += (x[0] * err_f + 32768) >> 16
        st.w_f[sf + 3] += (256 * err_f + 32768) >> 16
        if rev >= 2:
            st.w_f[sf + 4] += (stc * err_f + 32768) >> 16
        apm_update(st.apm_tf, ia_tf, y)
        apm_update(st.apm1, i1, y)
        apm_update(st.apm2, i2, y)
        for i in range(nctx):
            counter_update(st.ctx_map, cmi[i], y, 1023)
        counter_update(st.o1, o1i, y, LIM_O1)
        for i in range(nctx):
            counter_update(table, slot[i] + node, y, LIM_CTX)
        if mi >= 0:
            counter_update(st.match_sm, mi, y, LIM_MATCH)
        if mi2 >= 0:
            counter_update(st.match2_sm, mi2, y, LIM_MATCH)
        c0 = (c0 << 1) | y
        if decoding and coder[ERR]:
            return 0
    byte = c0 & 255
    # per-stream state after the byte
    if mlen > 0:
        if pb == byte:
            mlen = min(mlen + 1, MATCH_LEN_CAP)
            mptr += S
        else:
            mlen = 0
    st.match_len[s] = mlen
    if m2len > 0:
        if pb2 == byte:
            m2len = min(m2len + 1, MATCH_LEN_CAP)
            m2ptr += 1
        else:
            m2len = 0
    st.match2_len[s] = m2len
    st.match2_ptr[s] = m2ptr
    st.match_ptr[s] = mptr
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
        for i in range(FIELDS + 1):
            st.prev_field_start[s, i] = st.field_start[s, i]
            st.field_start[s, i] = -1
        st.field_start[s, 0] = t + 1
    elif byte == SEP0 or byte == SEP1 or byte == SEP2 or byte == SEP3:
        st.field[s] += 1
        st.field_hash[s] = 0
        if st.field[s] <= FIELDS:
            st.field_start[s, st.field[s]] = t + 1
    else:
        st.field_hash[s] = hmix(st.field_hash[s], byte)
    return byte


@_jit
def code_steps(parts, t0, freqs, decoding, tbits, mbits, rev):
    """Steps t0 .. t0 + c - 1 (freqs (S, c, 256)) in step-major order. Encoding reads the
    bytes from st.hist; decoding writes them there. Stops early on a decoder error.

    The state comes as a plain tuple of CMState's fields (tuple(state)): numba types a
    NamedTuple argument in Python on every call, which cost more than a decoding step's
    mixing of 16 streams."""
    st = CMState(*parts)
    S = st.hist.shape[0]
    c = freqs.shape[1]
    for k in range(c):
        t = t0 + k
        for s in range(S):
            if t < st.lengths[s]:
                b = code_byte(st, s, t, freqs[s, k], st.hist[s, t], decoding, tbits, mbits, rev)
                if decoding:
                    st.hist[s, t] = b
                    if st.coder[ERR]:
                        return


@_jit
def flush(st):
    """Encoder end: one byte that, followed by zeros, lies inside the final range."""
    st.buf[st.coder[POS]] = np.uint8((st.coder[X1] >> 24) + 1)
    st.coder[POS] += 1
