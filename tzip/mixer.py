"""Adaptive mixing: the transformer's distribution, refined by models that learn the block.

The transformer is fixed and sees only `context` bytes. Text it never saw (a terminal
transcript, Lisp, a bibliography) or that repeats itself from far back is better told by
models that learn while coding. Each step, the model frequencies pass through a chain of
such components (tzip/counts.py: order-2 and order-4 byte counts; tzip/match.py: what
followed the last occurrence of the recent bytes); each mixes its own prediction in linearly,

    p' = (1 - w) * p + w * q,

with a weight w per bucket of its own state (how much it has seen, how sure it is), and
learns w from the gradient of the code length. All of it is int64 arithmetic on numpy
arrays, stepped in the same order by the encoder and the decoder, so both see the same
probabilities bit for bit.
"""
from __future__ import annotations

import numpy as np

from .counts import CountModel
from .match import MatchModel


class Mixer:
    """The chain for S lockstep streams whose bytes are filled into `hist` (S, L) as
    coding proceeds: mix() then update() once per step."""

    def __init__(self, hist: np.ndarray, compiled: bool = False):
        """compiled: run the components' steps as tzip/jitmix.py's loops (numba must be
        installed); the same numbers either way."""
        self.parts = [CountModel(hist, 2, compiled), CountModel(hist, 4, compiled),
                      MatchModel(hist, 6, compiled)]

    def mix(self, t: int, freqs: np.ndarray) -> np.ndarray:
        """freqs (S, 256) integer-valued model frequencies -> (S, 256) float32 mixture of
        exact integers >= 1 with row sums below 2**24."""
        p = freqs.astype(np.int64)
        for part in self.parts:
            p = part.mix(t, p)
        return p.astype(np.float32)

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        """Learn from the bytes sym (S,) just coded at step t (only where active)."""
        for part in self.parts:
            part.update(t, sym, active)
