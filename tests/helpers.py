"""Test helpers: tiny integer models of several shapes, and tables from any backend.

Tiny models are made by converting a float torch net (make_model). PyTorch is an extra
(tzip[torch]): without it make_model skips the test that asks, and the session's tiny
models (tests/conftest.py) load from tests/data/tiny-a.npz instead (saved_tiny).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tzip.model.config import BOS, ModelConfig
from tzip.model.intmodel import IntModel

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


HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs PyTorch (pip install 'tzip[torch]')")
SAVED_TINY = REPO / "tests" / "data" / "tiny-a.npz"


def make_model(seed: int, name: str, cfg: ModelConfig = TINY, text: bytes | None = None) -> IntModel:
    """A float net of shape cfg (torch's seed) converted to integers: needs PyTorch (skips)."""
    torch = pytest.importorskip("torch", reason="needs PyTorch (pip install 'tzip[torch]')")
    from tzip.training.convert import convert
    from tzip.training.net import ByteTransformer
    torch.manual_seed(seed)
    m = ByteTransformer(cfg)
    src = torch.tensor(list((text or bytes(range(256)) * 8)[: 8 * cfg.context]), dtype=torch.long)
    calib = src.view(8, cfg.context)
    return convert(m, calib, name)


def saved_tiny(seed: int, name: str) -> IntModel:
    """Without PyTorch: the committed tiny model (make_model(1, "tiny-a") at the default text),
    or for another seed a copy whose head differs (another model, another digest)."""
    m = IntModel.load(SAVED_TINY)
    arrays = dict(m.arrays)
    if seed != 1:
        arrays["head"] = np.ascontiguousarray(np.roll(arrays["head"], seed, axis=1))
    return IntModel(m.cfg, arrays, dict(m.shifts), name, dict(m.info))


def tiny_model(seed: int, name: str, text: bytes | None = None) -> IntModel:
    """A tiny model, from PyTorch when it is installed, else saved_tiny."""
    return make_model(seed, name, text=text) if HAVE_TORCH else saved_tiny(seed, name)


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
