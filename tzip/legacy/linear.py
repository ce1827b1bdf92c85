"""Format 3's model blocks (method 2): the transformer's frequencies refined by the linear
mixer of tzip/legacy/mixing and coded with one constriction range coder. tzip writes format 3
only when asked (--format 3) and decodes its archives forever; the current format's blocks
are tzip/codec.py's, which hands method 2 blocks to encode / decode here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import constriction
import numpy as np

from ..limits import check_memory, decode_memory
from ..model.config import BOS
from ..streams import CorruptPayload, Progress, canonical, layout, passes
from .mixing import Mixer

if TYPE_CHECKING:
    from ..engine import Engine

_FAMILY = constriction.stream.model.Categorical(perfect=False)
# the linear mixer's memory: count tables and match table, and its (S, 256) int64 rows per
# stream with their temporaries
MIXER_FIXED = 2 * ((1 << 16) * 256 * 2 + (1 << 16) * 8) + 8 * (1 << 22)
MIXER_PER_STREAM = 48 * 256 * 8


def mixer_memory(S: int) -> int:
    """Host bytes of the linear mixer of S streams (limits.decode_memory's `mixer`)."""
    return MIXER_FIXED + S * MIXER_PER_STREAM


def encode(engine: Engine, data: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Range-code data (already split into streams of the given lengths) with the model
    and the linear mixer (format 3)."""
    mat, mask = layout(data, lengths)
    enc = constriction.stream.queue.RangeEncoder()
    mixer = Mixer(mat, engine.compiled("scorer", mat.shape[1]))

    def code(t0: int, freqs: np.ndarray) -> None:
        """Mix and range-code one pass's positions, in order."""
        c = freqs.shape[1]
        probs = mixer.mix_coded(t0, freqs, mask)
        m = mask[:, t0:t0 + c].T
        enc.encode(mat[:, t0:t0 + c].T[m].astype(np.int32), _FAMILY, probs[m])
        if progress:
            progress(int(m.sum()))

    passes(engine, mat, code)
    return enc.get_compressed().astype("<u4").tobytes()


def decode(engine: Engine, payload: bytes, lengths: list[int], progress: Progress = None) -> bytes:
    """Inverse of encode: one model step and one coder call per stream position.

    Bounded by the payload: lengths must be the ones split_streams gives for their sum
    and count, the block no longer than its payload can code, the memory it needs
    within memory_limit() (checked before the caches are allocated), and decoding stops
    as soon as the symbols have used more information than the payload holds."""
    if len(payload) % 4:
        raise CorruptPayload("payload length is not a multiple of 4")
    S, n = len(lengths), canonical(lengths, engine.cfg.context)
    if n > max_symbols(len(payload) // 4):
        raise CorruptPayload(f"a payload of {len(payload)} bytes cannot code {n} bytes")
    L = max(lengths)
    compiled = engine.compiled("stepper", L)
    stepper = engine.stepper(S, L)
    check_memory(decode_memory(stepper, engine.cfg, S, L, mixer_memory(S)),
                 f"decoding a model block of {n} bytes in {S} streams", engine.device)
    with stepper.threads(S):
        return _decode(payload, lengths, progress, compiled, stepper, stepper.new_state(S))


# A range coder's symbols cost at least the information they carry: decoding n symbols
# of probabilities q_i (constriction's quantized ones, of 2**24) takes
# sum(log2(2**24 / q_i)) <= 32 * (k + 1) bits after k refills of its 64-bit state (the
# range starts below 2**64, is multiplied by at most q_i / 2**24 per symbol and by 2**32
# per refill, and stays >= 2**32). The encoder writes one word per refill and one or two
# to finish, so a decoder that decodes what was encoded refills at most W - 1 times for a
# payload of W words: the symbols it decodes carry at most 32 * W bits. constriction's
# fast quantization (Categorical(perfect=False)) of exact integer frequencies f (sum F,
# below 2**24) gives q <= 2**24 * (f / F) * (1 + 2**-24)**2 + 6, so p = f / F + 2**-20
# bounds q / 2**24 from above; and with 256 symbols of q >= 1, every q <= 2**24 - 255.
PAYLOAD_BITS_MARGIN = 64  # slack on 32 * W for float rounding of the running sum
_Q_SLACK = 2.0 ** -20
_MIN_SYMBOL_BITS = float(np.log2(2.0 ** 24 / (2 ** 24 - 255)))  # 2.19e-5 bits


def payload_bits(words: int) -> int:
    """The most information (bits) the symbols coded in a payload of `words` uint32 words
    can carry, with margin."""
    return 32 * words + PAYLOAD_BITS_MARGIN


def max_symbols(words: int) -> int:
    """The most symbols a payload of `words` words can code: each costs >= 2.19e-5 bits
    (0 without words: the encoder writes at least one for any symbol)."""
    return int(payload_bits(words) / _MIN_SYMBOL_BITS) + 1 if words else 0


def _symbol_bits(probs: np.ndarray, sym: np.ndarray) -> float:
    """A lower bound on the bits the range decoder consumed for symbols sym of the rows
    probs (exact integers as float32), as the block comment above derives."""
    total = probs.sum(1).astype(np.float64)  # exact: partial sums of integers below 2**24
    p = probs[np.arange(len(sym)), sym] / total
    return float(-np.log2(np.minimum(1.0, p + _Q_SLACK)).sum())


def _decode(payload: bytes, lengths: list[int], progress: Progress, compiled: bool,
            step: Callable[[np.ndarray, object], np.ndarray], cache) -> bytes:
    S, L = len(lengths), max(lengths)
    active_until = np.asarray(lengths)
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    budget = payload_bits(len(words))
    spent = 0.0  # bits the decoded symbols carry at least (see payload_bits)
    dec = constriction.stream.queue.RangeDecoder(words)
    out = np.zeros((S, L), dtype=np.int64)
    mixer = Mixer(out, compiled)
    tok = np.full(S, BOS, dtype=np.int64)
    every, full = np.ones(S, dtype=bool), min(lengths, default=0)  # all active before full
    for t in range(L):
        probs = mixer.mix(t, step(tok, cache))
        act = every if t < full else active_until > t
        try:
            if t < full:
                sym = dec.decode(_FAMILY, probs)
                spent += _symbol_bits(probs, sym)
            else:
                sym = np.zeros(S, dtype=np.int32)
                sym[act] = got = dec.decode(_FAMILY, probs[act])
                spent += _symbol_bits(probs[act], got)
        except Exception as e:  # constriction raises on invalid input
            raise CorruptPayload(f"range decoder failed at step {t}: {e}") from None
        if spent > budget:
            raise CorruptPayload(f"payload exhausted at step {t} of {L}")
        out[:, t] = sym
        mixer.update(t, out[:, t], act)
        tok = out[:, t].copy()
        if progress:
            progress(S if t < full else int(act.sum()))
    return b"".join(out[i, :n].astype(np.uint8).tobytes() for i, n in enumerate(lengths))


def payload_fits(payload_len: int, n: int) -> bool:
    """Whether a method 2 payload of payload_len bytes can code n bytes (whole uint32 words,
    at most max_symbols of them): checked from the block header, before the model is looked up."""
    return payload_len % 4 == 0 and n <= max_symbols(payload_len // 4)
