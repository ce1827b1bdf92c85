"""The compiled model: owns a state.CMState (and, from revision 3, state.Structure) and
drives the compiled loop of its revision: tzip/cm/jit.py's for revisions 1 and 2, jit3.py's
for 3 to 7."""
from __future__ import annotations

import numpy as np

from . import jit, tables
from .state import ERR, NPAY, POS, X, X2, new_state, new_structure


class FastCM:
    """The compiled model behind Encoder/Decoder (same interface as reference.CMModel)."""

    def __init__(self, lengths, hist, buf, revision: int):
        self.st, self.tb, self.mb = new_state(lengths, hist, buf, revision)
        self.arrays = tuple(self.st)  # what the compiled loop takes (jit.code_steps)
        self.revision = revision
        self.nctx = tables.N_CONTEXTS[revision]
        self.use_c = revision >= tables.MIXER_C_FROM
        self.structure = None  # the part of revisions 3 to 7, as jit3.code_steps takes it
        self.rbits = 0  # log2 of revision 5's run table (state.new_structure sized it), 0: no runs
        if revision >= tables.STRUCTURE_FROM:
            r3 = new_structure(len(lengths), int(np.sum(lengths)), revision)
            self.structure = tuple(r3)
            if revision >= tables.RUN_FROM:
                self.rbits = len(r3.run_table).bit_length() - 1
        self.n_in = tables.n_inputs(revision)  # the revision's counts and match rule, jit3's arguments
        self.match_min, self.match_long, self.recover = tables.match_rule(revision)

    def reserve(self, extra: int) -> None:
        need = int(self.st.coder[POS]) + extra
        if need > len(self.st.buf):
            buf = np.zeros(max(need, 2 * len(self.st.buf)), dtype=np.uint8)
            buf[:len(self.st.buf)] = self.st.buf
            self.st = self.st._replace(buf=buf)
            self.arrays = tuple(self.st)

    def code_steps(self, t0: int, freqs: np.ndarray, decoding: bool, lo: int = 0, hi: int | None = None) -> None:
        hi = len(self.st.lengths) if hi is None else hi
        if self.structure is not None:
            from . import jit3
            jit3.code_steps(self.arrays, self.structure, t0, freqs, lo, hi, decoding, self.tb, self.mb,
                            self.nctx, self.n_in, self.match_min, self.match_long, self.recover, self.rbits)
        else:
            jit.code_steps(self.arrays, t0, freqs, lo, hi, decoding, self.tb, self.mb, self.nctx, self.use_c)

    def flush(self) -> None:
        jit.flush(self.st)

    def output(self) -> bytes:
        return self.st.buf[:self.st.coder[POS]].tobytes()

    def restart(self, buf: np.ndarray) -> None:
        """A fresh coder on buf, the model's learning kept (tzip/cm/alone.py primes it)."""
        self.st.coder[:] = 0
        self.st.coder[X2] = tables.MASK32
        self.st = self.st._replace(buf=buf)
        self.arrays = tuple(self.st)

    def start_decoding(self) -> None:
        c = self.st.coder
        c[NPAY] = len(self.st.buf)
        x = 0
        for i in range(4):  # the first 4 bytes, zero padded (slack)
            x = (x << 8) | (int(self.st.buf[i]) if i < len(self.st.buf) else 0)
        c[X] = x
        c[POS] = 4

    def error(self) -> bool:
        return bool(self.st.coder[ERR])

    def position(self) -> int:
        return int(self.st.coder[POS])

    def payload_length(self) -> int:
        return int(self.st.coder[NPAY])
