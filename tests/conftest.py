"""Shared fixtures: tiny integer models (fast on a 2-core CPU) and sample text from the repo."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tzip.model import ByteTransformer, ModelConfig
from tzip.quant import IntModel, convert

REPO = Path(__file__).resolve().parent.parent
TINY = ModelConfig(d_model=32, n_layer=2, n_head=2, n_kv_head=1, mlp_mult=4, context=32)


def make_model(seed: int, name: str, cfg: ModelConfig = TINY, text: bytes | None = None) -> IntModel:
    torch.manual_seed(seed)
    m = ByteTransformer(cfg)
    src = torch.tensor(list((text or bytes(range(256)) * 8)[: 8 * cfg.context]), dtype=torch.long)
    calib = src.view(8, cfg.context)
    return convert(m, calib, name)


def repo_text() -> bytes:
    """Real text that any clone has: this project's own sources and docs."""
    parts = [p.read_bytes() for p in sorted((REPO / "tzip").glob("*.py"))]
    return b"\n".join(parts)


@pytest.fixture(autouse=True)
def cold_coder(monkeypatch):
    """Each test starts as a fresh process would: small blocks on the plain path until a
    block has taken the compiled loops (tzip/coder.py's _warm)."""
    from tzip import coder
    monkeypatch.setattr(coder, "_warm", False)


@pytest.fixture(scope="session")
def text() -> bytes:
    return repo_text()


@pytest.fixture(scope="session")
def tiny() -> IntModel:
    return make_model(1, "tiny-a", text=repo_text())


@pytest.fixture(scope="session")
def tiny_b() -> IntModel:
    return make_model(2, "tiny-b", text=repo_text())


@pytest.fixture(scope="session")
def tiny_path(tiny, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("models") / "tiny-a.npz"
    tiny.save(p)
    return p


@pytest.fixture(scope="session")
def tiny_b_path(tiny_b, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("models_b") / "tiny-b.npz"
    tiny_b.save(p)
    return p


@pytest.fixture(scope="session")
def small() -> IntModel:
    """The shipped CPU model (committed in models/), for tests where the model must win."""
    from tzip import models
    return models.load("tzip-small")
