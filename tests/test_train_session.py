"""bench/gpu_session.sh runs once per GPU session, where nothing can be fixed: what it names
must exist here (modules, scripts, configs, the models it starts from)."""
from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_session.sh"


def _text() -> str:
    return SCRIPT.read_text()


def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_python_module_it_runs_exists():
    mods = set(re.findall(r"python -m ([\w.]+)", _text())) - {"pip"}
    assert {"tzip.training.train", "tzip.training.convert"} <= mods, mods
    for mod in sorted(mods):
        assert importlib.util.find_spec(mod) is not None, f"python -m {mod}: no such module"


def test_every_python_script_it_runs_exists():
    scripts = set(re.findall(r"python (bench/[\w/]+\.py)", _text()))
    assert scripts, "no scripts found: the pattern is stale"
    for s in scripts:
        assert (REPO / s).is_file(), s


def _default(var: str) -> str:
    m = re.search(rf"^{var}=\$\{{{var}:-(.*)\}}", _text(), re.M)
    assert m, f"no default for {var}"
    return m.group(1)


def test_default_models_have_configs_and_start_from_a_shipped_model():
    """Each default model is a new name (never a shipped file, whose archives must keep
    decoding) with its own config, and the shipped model it fine-tunes is in models/."""
    for m in _default("MODELS").split():
        assert (REPO / "tzip" / "configs" / f"tzip-{m}.json").is_file(), m
        base = re.sub(r"-[0-9]+$", "", m)
        assert base != m and (REPO / "models" / f"tzip-{base}.npz").is_file(), m


def test_default_eval_files_are_in_the_repo_or_bench():
    """Names with a folder are repository files; the others come from the bench tarball."""
    files = [f for g in re.search(r'^EVAL=\$\{EVAL-(.*)\}', _text(), re.M).group(1).split(";")
             for f in g.split(",")]
    structured = REPO / "corpora" / "structured"
    for f in files:
        f = f.replace("$S", "corpora/structured")
        if "/" in f:
            assert (REPO / f).is_file(), f
        else:
            assert "/" not in f and f, f
    assert any("/" in f for f in files) and structured.is_dir()


def test_default_mix_is_a_valid_data_list():
    pytest.importorskip("torch", reason="the mix parser is part of the training package")
    from tzip.training.mix import parse_entry
    entries = [parse_entry(e) for e in shlex.split(_default("MIX"))]
    assert [str(p) for p, _ in entries] == [".data/train", ".data/train-wide"]
    assert all(w and w > 0 for _, w in entries)
