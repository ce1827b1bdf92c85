"""The compiled CM model: owns a jit.CMState and drives tzip/cm/jit.py's loops."""
from __future__ import annotations

import numpy as np

from . import jit, tables


def _aligned_zeros(n: int, dtype, align: int = 64) -> np.ndarray:
    """Zeros whose first element starts a cache line: a 16-slot uint32 bucket then spans
    one line, not two."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(n + align // itemsize, dtype=dtype)
    off = (-raw.ctypes.data % align) // itemsize
    return raw[off:off + n]


def new_state(lengths: np.ndarray, hist: np.ndarray, buf: np.ndarray,
              revision: int) -> tuple[jit.CMState, int, int]:
    """A block's fresh state (the same initial values as reference.CMModel), with the
    log2 sizes of the context hash table (buckets) and of the match tables."""
    S = len(lengths)
    n = int(lengths.sum())
    tb, mb = tables.table_bits(n, revision), tables.match_bits(n)
    N = tables.N_INPUTS
    w_a = np.full((tables.MIX_SETS_A, N), tables.W_INIT, dtype=np.int64)
    w_a[:, tables.IN_TF] = tables.W_INIT_TF
    w_b = np.full((tables.MIX_SETS_B, N), tables.W_INIT, dtype=np.int64)
    w_b[:, tables.IN_TF] = tables.W_INIT_TF
    w_c = np.full((tables.MIX_SETS_C if revision >= 2 else 0, N), tables.W_INIT, dtype=np.int64)
    w_c[:, tables.IN_TF] = tables.W_INIT_TF
    w_f = np.tile(np.array(tables.MIX_F_INIT[revision], dtype=np.int64), tables.MIX_SETS_F)
    return jit.CMState(
        hist=hist, lengths=lengths.astype(np.int64),
        start=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if S else np.zeros(0, np.int64),
        table=_aligned_zeros((1 << tb) * tables.BUCKET, np.uint32),
        o1=np.full(65536, tables.COUNTER_INIT, dtype=np.uint32),
        ctx_map=np.full(len(tables.CONTEXTS) * 1024, tables.COUNTER_INIT, dtype=np.uint32),
        match_sm=np.full(64, tables.COUNTER_INIT, dtype=np.uint32),
        match_table=np.zeros(1 << mb, dtype=np.int64),
        match2_table=np.zeros(1 << mb, dtype=np.int64), match2_ptr=np.zeros(S, dtype=np.int64),
        match2_len=np.zeros(S, dtype=np.int64),
        match2_sm=np.full(64, tables.COUNTER_INIT, dtype=np.uint32),
        match_ptr=np.zeros(S, dtype=np.int64), match_len=np.zeros(S, dtype=np.int64),
        word=np.zeros(S, dtype=np.int64), line_start=np.zeros(S, dtype=np.int64),
        prev_line=np.zeros(S, dtype=np.int64),
        field=np.zeros(S, dtype=np.int64), field_hash=np.zeros(S, dtype=np.int64),
        field_start=np.concatenate([np.zeros((S, 1), np.int64),
                                    np.full((S, tables.FIELDS), -1, np.int64)], 1),
        prev_field_start=np.full((S, tables.FIELDS + 1), -1, dtype=np.int64),
        w_a=w_a.ravel(), w_b=w_b.ravel(), w_c=w_c.ravel(), w_f=w_f,
        apm_tf=tables.apm_init(65536).astype(np.int32), apm1=tables.apm_init(256).astype(np.int32),
        apm2=tables.apm_init(65536).astype(np.int32),
        coder=np.array([0, 0xFFFFFFFF, 0, 0, 0, 0, 0, 0], dtype=np.int64),
        buf=buf, scratch=np.zeros(257 + 4 * N + 9, dtype=np.int64)), tb, mb


class FastCM:
    """The compiled model behind Encoder/Decoder (same interface as reference.CMModel)."""

    def __init__(self, lengths, hist, buf, revision: int):
        self.st, self.tb, self.mb = new_state(lengths, hist, buf, revision)
        self.parts = tuple(self.st)  # what the compiled loop takes (jit.code_steps)
        self.revision = revision

    def reserve(self, extra: int) -> None:
        need = int(self.st.coder[jit.POS]) + extra
        if need > len(self.st.buf):
            buf = np.zeros(max(need, 2 * len(self.st.buf)), dtype=np.uint8)
            buf[:len(self.st.buf)] = self.st.buf
            self.st = self.st._replace(buf=buf)
            self.parts = tuple(self.st)

    def code_steps(self, t0: int, freqs: np.ndarray, decoding: bool) -> None:
        jit.code_steps(self.parts, t0, freqs, decoding, self.tb, self.mb, self.revision)

    def flush(self) -> None:
        jit.flush(self.st)

    def output(self) -> bytes:
        return self.st.buf[:self.st.coder[jit.POS]].tobytes()

    def start_decoding(self) -> None:
        c = self.st.coder
        c[jit.NPAY] = len(self.st.buf)
        x = 0
        for i in range(4):  # the first 4 bytes, zero padded (slack)
            x = (x << 8) | (int(self.st.buf[i]) if i < len(self.st.buf) else 0)
        c[jit.X] = x
        c[jit.POS] = 4

    def error(self) -> bool:
        return bool(self.st.coder[jit.ERR])

    def position(self) -> int:
        return int(self.st.coder[jit.POS])

    def payload_length(self) -> int:
        return int(self.st.coder[jit.NPAY])
