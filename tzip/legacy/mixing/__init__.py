"""Adaptive mixing: the transformer's distribution, refined by models that learn the block.

The transformer is fixed and sees only `context` bytes. Text it never saw (a terminal
transcript, Lisp, a bibliography) or that repeats itself from far back is better told by
models that learn while coding. Each step, the model frequencies pass through a chain of
such components (counts.py: order-2 and order-4 byte counts; match.py: what
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
        """compiled: run the chain as tzip/legacy/mixing/compiled.py's loops on the components' state
        (numba must be installed: tzip/legacy/mixing/compiled.py); the same numbers either way."""
        self.hist = hist
        self.components = [CountModel(hist, 2), CountModel(hist, 4), MatchModel(hist, 6)]
        self._chain = None
        if compiled:
            from .compiled import Chain
            self._chain = Chain(hist, *self.components)

    def mix(self, t: int, freqs: np.ndarray) -> np.ndarray:
        """freqs (S, 256) integer-valued model frequencies -> (S, 256) float32 mixture of
        exact integers >= 1 with row sums below 2**24."""
        if self._chain is not None:
            return self._chain.mix(t, freqs)
        p = freqs.astype(np.int64)
        for part in self.components:
            p = part.mix(t, p)
        return p.astype(np.float32)

    def update(self, t: int, sym: np.ndarray, active: np.ndarray) -> None:
        """Learn from the bytes sym (S,) just coded at step t (only where active)."""
        if self._chain is not None:
            self._chain.update(t, sym, active)
            return
        for part in self.components:
            part.update(t, sym, active)

    def mix_coded(self, t0: int, freqs: np.ndarray, active: np.ndarray) -> np.ndarray:
        """mix() and update() for steps t0 .. t0+c-1 of freqs (S, c, 256) whose bytes
        `hist` already holds, as the encoder's do (active (S, L): where streams have
        bytes) -> (c, S, 256)."""
        if self._chain is not None:
            return self._chain.mix_coded(t0, freqs, active)
        out = np.empty((freqs.shape[1],) + freqs.shape[::2], dtype=np.float32)
        for i in range(freqs.shape[1]):
            out[i] = self.mix(t0 + i, freqs[:, i])
            self.update(t0 + i, self.hist[:, t0 + i], active[:, t0 + i])
        return out
