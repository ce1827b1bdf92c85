"""Context-mixing (CM) stage of tzip's archive formats 4 to 12: the transformer's integer
frequencies are one input of a bitwise context mixer (lpaq/paq8 style) whose binary
arithmetic coder writes the payload.

    enc = Encoder(lengths, hist, revision); enc.encode(t0, freqs) ...; payload = enc.finish()
    dec = Decoder(payload, lengths, hist0, revision); dec.decode(t, freqs) ...; dec.finish()

The stage has revisions (tables.REVISIONS), each fixed forever once archives use it:
revision 1 codes format 4's model blocks, revision 2 (a field context and a third mixer)
format 5's (and 6's and 7's), revision 3 (contexts for structured text and two more APMs)
format 8's, written by 0.4's level -8, revision 4 (a new match rule, two more contexts)
format 9's, written by 0.5's level -8, revision 5 (each context's run, mixer B's sets
by the order contexts seen) format 10's, written by 0.6's level -8, revision 6 (the
shape contexts, mixers by the place in the record and by the shape, a falling learning
rate) format 11's, written by 0.7's level -8, and revision 7 (word3 and shape_word
contexts, mixer A's sets by the previous byte's class, each weight set's own learning
boost) format 12's, written by level -8. LATEST, every default here, is the revision of the
default format, 5.

A block of bytes is cut into S contiguous streams (stream i is the i-th slice, lengths
given); they are coded in lockstep, step-major: at step t, streams 0..S-1 that still have
a byte at t, in order. freqs are the transformer's integer frequencies (float32 holding
exact integers 1..65536) for each stream and step. Every probability is computed in
integers (tzip/cm/tables.py), so encoder and decoder agree on any machine.

Two implementations produce identical payloads: tzip/cm/reference.py (readable, slow:
the normative definition) and tzip/cm/jit.py (numba; the loop of revisions 3 to 7: jit3.py), both
coding a byte in the same named phases (tables.PHASES) from the same constants (tables.py)
and initial state (state.py).
The caller picks one with `implementation` ("reference" or "compiled", IMPLEMENTATIONS):
tzip's codec passes its plan's choice (tzip/engine/plan.py, TZIP_CM); left out,
`default_implementation()` decides (compiled whenever numba is importable).
"""
from __future__ import annotations

import functools

import numpy as np

from . import tables

__all__ = ["CorruptPayload", "Encoder", "Decoder", "IMPLEMENTATIONS", "default_implementation",
           "numba_available", "max_bytes", "memory"]

LATEST = 2  # the revision of the default format (5); tables.REVISIONS[-1] is format 12's
IMPLEMENTATIONS = ("reference", "compiled")
FLUSH_READ_AHEAD = 3  # a complete decode has read exactly len(payload) + 3 bytes


class CorruptPayload(ValueError):
    """A block's coded payload could not be decoded (truncated, corrupted or with trailing
    bytes): the context mixer's, or format 3's range-coded one (tzip/codec.py uses this
    class too)."""


@functools.cache
def numba_available() -> bool:
    try:
        from . import jit  # noqa: F401
    except Exception as exc:  # numba missing or unusable: the reference computes the same
        from ..jitcache import unusable
        unusable(exc)  # one line on stderr: never silently slow
        return False
    return True


def _check_layout(lengths, hist) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.asarray([int(n) for n in lengths], dtype=np.int64)
    if np.any(lengths < 0):
        raise ValueError("negative stream length")
    hist = np.asarray(hist)
    S = len(lengths)
    L = int(lengths.max()) if S else 0
    if hist.ndim != 2 or hist.shape[0] != S or hist.shape[1] < L:
        raise ValueError(f"hist must be (S, >= max length) = ({S}, {L}), got {hist.shape}")
    return lengths, hist


def default_implementation() -> str:
    """The implementation a caller that does not choose gets: "compiled" whenever numba is
    importable, else "reference" (both code the same bytes)."""
    return "compiled" if numba_available() else "reference"


def _new_model(lengths: np.ndarray, hist: np.ndarray, buf: np.ndarray, revision: int,
               implementation: str | None):
    if revision not in tables.REVISIONS:
        raise ValueError(f"CM revision must be one of {tables.REVISIONS}, not {revision}")
    if implementation is None:
        implementation = default_implementation()
    if implementation == "compiled":
        if not numba_available():
            raise ValueError("the compiled context mixer needs numba, which is not importable here")
        from .fast import FastCM
        return FastCM(lengths, hist, buf, revision)
    if implementation == "reference":
        from .reference import CMModel
        return CMModel(lengths, hist, buf, revision)
    raise ValueError(f"CM implementation must be one of {IMPLEMENTATIONS}, not {implementation!r}")


class Encoder:
    """Codes a block's streams; encode() is called with consecutive passes of steps."""

    def __init__(self, lengths: list[int], hist: np.ndarray, revision: int = LATEST,
                 implementation: str | None = None):
        lengths, hist = _check_layout(lengths, hist)
        self.hist = np.ascontiguousarray(hist, dtype=np.int64)
        self.lengths = lengths
        self.t = 0
        self.model = _new_model(lengths, self.hist, np.zeros(1 << 12, dtype=np.uint8), revision,
                                implementation)

    def encode(self, t0: int, freqs: np.ndarray) -> None:
        """freqs (S, c, 256): the transformer's frequencies for steps t0 .. t0 + c - 1."""
        if t0 != self.t:
            raise ValueError(f"encode passes must be consecutive: expected step {self.t}, got {t0}")
        freqs = np.asarray(freqs, dtype=np.float32)
        S, c = freqs.shape[0], freqs.shape[1]
        if S != len(self.lengths) or freqs.shape[2] != 256:
            raise ValueError(f"freqs must be ({len(self.lengths)}, c, 256), got {freqs.shape}")
        coded = int(np.clip(self.lengths - t0, 0, c).sum())
        self.model.reserve(32 * coded + 16)  # at most 4 bytes out per bit, with margin
        self.model.code_steps(t0, np.ascontiguousarray(freqs), False)
        self.t += c

    def finish(self) -> bytes:
        if self.t < int(self.lengths.max(initial=0)):
            raise ValueError(f"finish() at step {self.t} of {int(self.lengths.max())}")
        self.model.reserve(16)
        self.model.flush()
        return self.model.output()


class Decoder:
    """Decodes a block step by step; each step's bytes are written into hist[:, t]."""

    def __init__(self, payload: bytes, lengths: list[int], hist: np.ndarray,
                 revision: int = LATEST, implementation: str | None = None):
        lengths, hist = _check_layout(lengths, hist)
        if not (isinstance(hist, np.ndarray) and hist.dtype == np.int64 and hist.flags.c_contiguous):
            raise ValueError("the decoder's hist must be a C-contiguous int64 array (it is filled in place)")
        self.hist = hist
        self.lengths = lengths
        self.t = 0
        self.next_stream = 0  # the first stream of step t not decoded yet
        buf = np.frombuffer(bytes(payload), dtype=np.uint8).copy()
        self.model = _new_model(lengths, hist, buf, revision, implementation)
        self.model.start_decoding()
        self._check(0)

    def _check(self, t: int) -> None:
        if self.model.error():
            raise CorruptPayload(f"CM payload exhausted at step {t} "
                                 f"({self.model.payload_length()} bytes)")

    def decode(self, t: int, freqs: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """freqs (hi - lo, 256) -> the bytes of streams lo .. hi - 1 (all by default) at
        step t (0 for streams already ended). A step may be decoded in several calls over
        consecutive ranges of its streams, in order (the coder reads them in that order):
        the caller's model can then step the streams already decoded while the others are."""
        S = len(self.lengths)
        hi = S if hi is None else hi
        if t != self.t or lo != self.next_stream or not lo < hi <= S:
            raise ValueError(f"decode steps must be consecutive: expected step {self.t} from stream "
                             f"{self.next_stream}, got step {t}, streams {lo}..{hi - 1}")
        freqs = np.asarray(freqs, dtype=np.float32)
        if freqs.shape != (hi - lo, 256):
            raise ValueError(f"freqs must be ({hi - lo}, 256), got {freqs.shape}")
        self.model.code_steps(t, np.ascontiguousarray(freqs[:, None, :]), True, lo, hi)
        self._check(t)
        self.next_stream = hi % S
        self.t += hi == S
        return self.hist[lo:hi, t].copy() if t < self.hist.shape[1] else np.zeros(hi - lo, np.int64)

    def finish(self) -> None:
        """Raise CorruptPayload unless the payload was consumed exactly."""
        if self.t < int(self.lengths.max(initial=0)):
            raise ValueError(f"finish() at step {self.t} of {int(self.lengths.max())}")
        self._check(self.t)
        used, n = self.model.position(), self.model.payload_length()
        if used != n + FLUSH_READ_AHEAD:
            raise CorruptPayload(f"CM payload of {n} bytes, but decoding used {used - FLUSH_READ_AHEAD}"
                                 " (trailing or missing bytes)")


def max_bytes(payload_len: int) -> int:
    """The most bytes a payload of payload_len bytes can code: every binary decision's
    probability is at most 4095/4096, so a byte costs at least 8 * log2(4096/4095) bits
    (and the decoder reads at most SLACK bytes past the payload)."""
    per_byte_bits = 8 * np.log2(4096 / 4095) / 1.25  # with a margin for the coder's rounding
    return int(8 * (payload_len + tables.SLACK) / per_byte_bits) + 1


def memory(n: int, revision: int = LATEST) -> int:
    """Bytes of the mixer's tables for a block of n bytes (the largest of its arrays)."""
    apms = tables.APM_TF_SIZE + tables.APM2_SIZE
    if revision >= tables.STRUCTURE_FROM:
        apms += tables.APM_O1_SIZE + tables.APM_MATCH_SIZE
    return (1 << tables.table_bits(n, revision)) * tables.BUCKET * 4 + 2 * (1 << tables.match_bits(n)) * 8 \
        + apms * tables.APM_BINS * 8 + tables.MIX_SETS_C * tables.n_inputs(revision) * 8 + (1 << 22) \
        + ((1 << tables.run_bits(n)) * 4 if revision >= tables.RUN_FROM else 0) \
        + ((tables.MIX_SETS_D + tables.MIX_SETS_E) * tables.n_inputs(revision) * 8
           if revision >= tables.SHAPE_FROM else 0) \
        + ((tables.mix_sets_a(revision) * tables.n_inputs(revision) + 5 * tables.SET_COUNT_WIDTH) * 8
           if revision >= tables.WORD3_FROM else 0)
