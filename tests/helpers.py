"""Test helpers: tiny integer models of several shapes, and tables from any backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tzip.model.config import BOS, ModelConfig
from tzip.model.intmodel import IntModel
from tzip.training.convert import convert
from tzip.training.net import ByteTransformer

REPO = Path(__file__).resolve().parent.parent
TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, n_kv_head=1, mlp_mult=4, context=32)
# model shapes every backend is checked on (tests/test_backends.py)
SHAPES = {
    "tiny": TINY,
    # two key/value heads of two queries each; a wide MLP cuts its products into pieces
    "grouped": ModelConfig(d_model=16, n_layer=2, n_head=4, n_kv_head=2, mlp_mult=36, context=64),
    # d_model * mlp_mult > 1024: the first products are cut into pieces too
    "wide": ModelConfig(d_model=272, n_layer=1, n_head=4, n_kv_head=2, mlp_mult=4, context=16),
    # a context too long for float32 value sums: float64 values
    "long": ModelConfig(d_model=16, n_layer=1, n_head=2, n_kv_head=1, mlp_mult=2, context=1100),
}


def repo_text() -> bytes:
    """Real text that any clone has: this project's own sources."""
    parts = [p.read_bytes() for p in sorted((REPO / "tzip").rglob("*.py"))]
    return b"\n".join(parts)


def make_model(seed: int, name: str, cfg: ModelConfig = TINY, text: bytes | None = None) -> IntModel:
    torch.manual_seed(seed)
    m = ByteTransformer(cfg)
    src = torch.tensor(list((text or bytes(range(256)) * 8)[: 8 * cfg.context]), dtype=torch.long)
    calib = src.view(8, cfg.context)
    return convert(m, calib, name)


def inputs(text: bytes, S: int, L: int) -> np.ndarray:
    """(S, L) model inputs: BOS, then each stream's bytes but the last."""
    arr = np.frombuffer(text, dtype=np.uint8)[: S * L].astype(np.int64).reshape(S, L)
    return np.concatenate([np.full((S, 1), BOS), arr[:, :-1]], 1)


def tables_scored(scorer, inp: np.ndarray, passes: list[int]) -> np.ndarray:
    """A scorer's tables over inp in passes of the given lengths (cycled)."""
    state = scorer.new_state(inp.shape[0])
    out, t, i = [], 0, 0
    while t < inp.shape[1]:
        c = passes[i % len(passes)]
        out.append(np.array(scorer(np.ascontiguousarray(inp[:, t:t + c]), state)))
        t, i = t + c, i + 1
    return np.concatenate(out, 1)


def tables_stepped(stepper, inp: np.ndarray) -> np.ndarray:
    """A stepper's tables over inp, one position at a time."""
    S = inp.shape[0]
    state = stepper.new_state(S)
    with stepper.threads(S):
        return np.stack([np.array(stepper(np.ascontiguousarray(inp[:, t]), state))
                         for t in range(inp.shape[1])], 1)
