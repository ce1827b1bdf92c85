"""Shared fixtures: tiny integer models (fast on a 2-core CPU) and sample text from the repo.

The suite runs PyTorch, OpenBLAS and tzip on one thread unless OMP_NUM_THREADS or
TZIP_THREADS says otherwise (set here, before anything imports torch): on a busy 2-core
machine default threads made it several times slower (464 s against 90 s). The tests
that check several threads set them themselves.

helpers.py lives beside this file; pytest puts this folder (never the repository root) on
sys.path, so the tzip under test is whichever one is importable: the installed one when
pytest runs outside the repository (as .ci/run does), else the source tree.
"""
from __future__ import annotations

import os
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("TZIP_THREADS") or "1")

import pytest  # noqa: E402

from helpers import repo_text, tiny_model
from tzip.model.intmodel import IntModel


@pytest.fixture(scope="session")
def text() -> bytes:
    return repo_text()


@pytest.fixture(scope="session")
def tiny() -> IntModel:
    return tiny_model(1, "tiny-a", text=repo_text())


@pytest.fixture(scope="session")
def tiny_b() -> IntModel:
    return tiny_model(2, "tiny-b", text=repo_text())


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



# ---- report lines: counts and times that long runs print at the end of the session ----
_REPORT = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def report_line(request):
    """Append a line to the report printed after the tests (tests/test_encoder_props.py
    reports how many cases its property runs made, and how long they took)."""
    return request.config.stash.setdefault(_REPORT, []).append


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.section("tzip reports")
        for line in lines:
            terminalreporter.write_line(line)
