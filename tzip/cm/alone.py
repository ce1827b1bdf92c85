"""The context mixer alone: tzip's fastest level, with no transformer.

The mixer of tzip/cm (its revision 2) codes the block by itself: where a model block
gives it the transformer's frequencies, this gives it flat ones (every byte 1/256), which
carry no information, so every probability comes from the mixer's own context models. It
runs about ten times faster than the transformer's levels and is smaller than PPMd on text
(docs/levels.md has the measurements).

A fresh mixer knows nothing, which costs small files most (a 4 KB manual page: 2.84 bpb
cold against 2.43 primed). So before each block the mixer is *primed*: it codes a fixed
text (prime.txt: samples of prose, C, Lisp, shell, roff, HTML, JSON, CSV, logs, XML and
Markdown) as the start of the block's one stream, then its coder restarts and the block
follows in the same stream, with every table, weight and the match history learned from
the prime. The decoder primes the same way (it knows the prime's bytes), then decodes. The
prime is part of the archive format: its bytes never change (PRIME_SHA256 checks them).
"""
from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np

from . import FLUSH_READ_AHEAD, LATEST, CorruptPayload, _new_model

PRIME_SHA256 = "0c3fdaa3380cd6ff3c35e59f46a7c7bd206484a559f1ade8002742451f129011"
STEPS = 4096  # steps per call of the compiled loop (a flat input of STEPS x 256 float32)


@cache
def prime() -> bytes:
    """The priming text, checked: a changed copy would code archives no tzip decodes."""
    data = (Path(__file__).parent / "prime.txt").read_bytes()
    if hashlib.sha256(data).hexdigest() != PRIME_SHA256:
        raise RuntimeError("tzip's installed prime.txt is damaged (checksum mismatch); reinstall tzip")
    return data


def _primed(n: int, data: bytes | None, buf: np.ndarray, revision: int, implementation: str | None):
    """A mixer for a block of n bytes that has coded the prime; its coder restarted on buf.
    Returns (model, hist, flat) with the block's bytes (when given) after the prime."""
    p = prime()
    hist = np.zeros((1, len(p) + n), dtype=np.int64)
    hist[0, :len(p)] = np.frombuffer(p, dtype=np.uint8)
    if data is not None:
        hist[0, len(p):] = np.frombuffer(data, dtype=np.uint8)
    flat = np.ones((1, STEPS, 256), dtype=np.float32)
    model = _new_model(np.array([len(p) + n], dtype=np.int64), hist, np.zeros(1 << 12, np.uint8),
                       revision, implementation)
    for t0 in range(0, len(p), STEPS):
        c = min(STEPS, len(p) - t0)
        model.reserve(32 * c + 16)
        model.code_steps(t0, flat[:, :c], False)
    model.restart(buf)
    return model, hist, flat


def encode(data: bytes, revision: int = LATEST, implementation: str | None = None) -> bytes:
    """The payload of data coded by the primed mixer alone."""
    n = len(data)
    model, _, flat = _primed(n, data, np.zeros(1 << 12, np.uint8), revision, implementation)
    start = len(prime())
    for t0 in range(start, start + n, STEPS):
        c = min(STEPS, start + n - t0)
        model.reserve(32 * c + 16)
        model.code_steps(t0, flat[:, :c], False)
    model.reserve(16)
    model.flush()
    return model.output()


def decode(payload: bytes, n: int, revision: int = LATEST, implementation: str | None = None,
           progress=None) -> bytes:
    """The n bytes a payload of encode() codes, or CorruptPayload (a payload that runs out,
    or one that decoding does not use exactly)."""
    buf = np.frombuffer(bytes(payload), dtype=np.uint8).copy()
    model, hist, flat = _primed(n, None, buf, revision, implementation)
    model.start_decoding()
    start = len(prime())
    for t0 in range(start, start + n, STEPS):
        c = min(STEPS, start + n - t0)
        model.code_steps(t0, flat[:, :c], True)
        if model.error():
            raise CorruptPayload(f"CM payload exhausted at byte {t0 - start} "
                                 f"({model.payload_length()} bytes)")
        if progress:
            progress(c)
    used = model.position()
    if used != len(payload) + FLUSH_READ_AHEAD:
        raise CorruptPayload(f"CM payload of {len(payload)} bytes, but decoding used "
                             f"{used - FLUSH_READ_AHEAD} (trailing or missing bytes)")
    return hist[0, start:].astype(np.uint8).tobytes()
