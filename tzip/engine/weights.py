"""A model's arrays, prepared once for every backend.

Every backend computes with the same numbers (tzip/engine/exact.py): int8 weight
matrices held as float32, requantisation multipliers as the exact float64 m / 2**shift,
norm steps, exp tables and ALiBi slopes. They are derived here once per model, as numpy
arrays; the torch reference wraps them with torch.from_numpy (no copy on a CPU) and the
compiled loops read them directly. No backend derives a number of its own from the model
file, so none can drift from another.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..model.config import ModelConfig
from ..model.intmodel import MLP_BITS, NORM_SHIFT, IntModel
from .exact import exact_pieces, weight_split

MATRICES = ("wqkv", "wo", "w1", "w2")


@dataclass(frozen=True, eq=False)
class Weights:
    """Numbers of one model, shared by every backend (read-only).

    cfg: the model's config, its context the window the backends attend over.

    arrays: the model file's arrays (its int8 weights as int8-valued float32 (K, N));
    r: every multiplier as float64 m / 2**shift, at least 1-D (a 0-dim float64 would let
    torch's addcmul compute in float32); inv: norm steps as float64 inv / 2**NORM_SHIFT;
    att_split: the bits b of weight_split for the attention weights, or None (then values
    are summed in float64)."""
    cfg: ModelConfig
    arrays: dict[str, np.ndarray]
    r: dict[str, np.ndarray]
    inv: dict[str, np.ndarray]
    emb: np.ndarray
    att_exp: np.ndarray
    out_exp: np.ndarray
    slopes: np.ndarray
    qk: np.ndarray
    att_split: int | None

    @classmethod
    def from_model(cls, model: IntModel, window: int | None = None) -> "Weights":
        """The model's numbers; window: how many positions each position attends to
        (itself and the window-1 before it), 1 to the model's context (None: the context).
        ALiBi scores a key by its distance alone, so a shorter window is the same model
        with the farther keys masked: every backend reads it as cfg.context (its rings,
        masks and exactness bounds), and the engine keeps the model's own config."""
        c = model.cfg
        if window is not None and window != c.context:
            if not 1 <= window <= c.context:
                raise ValueError(f"window must be between 1 and the model's context ({c.context}), not {window}")
            c = replace(c, context=window)
        a = {k: v.astype(np.float32) if v.dtype == np.int8 else v for k, v in model.arrays.items()}
        r = {k: np.atleast_1d(a.get(k + ".m", a.get(k)).astype(np.float64) * 2.0 ** -shift)
             for k, shift in model.shifts.items() if k != "norm"}
        inv = {k[:-4]: a[k].astype(np.float64) * 2.0 ** -NORM_SHIFT for k in a if k.endswith(".inv")}
        att_exp = a["att_exp"].astype(np.float64)
        return cls(c, a, r, inv, a["emb"].astype(np.float64), att_exp,
                   a["out_exp"].astype(np.float32), a["alibi"].astype(np.float32),
                   np.array([a[f"l{l}.qk"] for l in range(c.n_layer)], dtype=np.float32),
                   weight_split(int(att_exp.max()), c.context))

    @property
    def groups(self) -> int:
        """Query heads per key/value head."""
        return self.cfg.n_head // self.cfg.n_kv_head

    @cached_property
    def att_parts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The attention weights' two float32 parts (e // 2**b, e mod 2**b), or None."""
        b = self.att_split
        if b is None:
            return None
        return (self.att_exp // 2 ** b).astype(np.float32), (self.att_exp % 2 ** b).astype(np.float32)

    def matrix(self, key: str) -> np.ndarray:
        """An int8-valued float32 (K, N) weight matrix: key is "l{l}.wqkv" ... or "head"."""
        return self.arrays[key]

    @staticmethod
    def xmax(key: str) -> int:
        """The largest input value of a product: int8, but squared-ReLU activations into w2."""
        return (1 << MLP_BITS) - 1 if key.endswith("w2") else 127

    def piece(self, key: str) -> int:
        """Inputs per exact float32 partial sum of the product with this matrix."""
        return exact_pieces(self.matrix(key).shape[0], self.xmax(key))[0].stop

    @cached_property
    def whole_slopes(self) -> bool:
        """Whole ALiBi slopes, so penalties are integers (the compiled loops' integer max
        needs it; conversion rounds them), and a weight table that is not all zero."""
        return bool((self.slopes == np.floor(self.slopes)).all()) and float(self.att_exp.max()) >= 1
