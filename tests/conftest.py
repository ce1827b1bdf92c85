"""Shared fixtures: tiny integer models (fast on a 2-core CPU) and sample text from the repo."""
from __future__ import annotations

import pytest

from helpers import make_model, repo_text
from tzip.model.intmodel import IntModel


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
    from tzip.model import registry
    return registry.load("tzip-small")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long runs, skipped unless TZIP_SLOW_TESTS=1 (tests/test_hostile.py)")
