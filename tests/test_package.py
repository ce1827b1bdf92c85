"""The package as users install it: every module and the shipped models in the wheel,
found from an installed copy with no source tree around (issue 20: a `pip install .`
used to find no model)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tzip
from tzip import modelpath

REPO = Path(__file__).resolve().parent.parent

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed_and_the_models_are_package_data():
    st = _pyproject()["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "tzip").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert set(st["packages"]) == on_disk | {"tzip._models"}
    assert st["package-dir"] == {"tzip._models": "models"}
    assert set(st["package-data"]["tzip._models"]) >= {"*.npz", "*.md"}
    assert {"tzip-small.npz", "tzip-large.npz"} <= {p.name for p in (REPO / "models").iterdir()}
    scripts = _pyproject()["project"]["scripts"]
    assert scripts == {"tzip": "tzip.entry:tzip", "tzcat": "tzip.entry:tzcat"}


def test_torch_is_an_extra_not_a_dependency():
    """pip install tzip on a CPU machine brings no PyTorch (the index's default torch build
    drags in about 3 GB of CUDA packages); the GPU, training and the torch reference engine
    come with tzip[torch] (or tzip[gpu])."""
    project = _pyproject()["project"]
    names = {d.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
             for d in project["dependencies"]}
    assert names == {"numpy", "numba", "constriction", "click", "tqdm"}
    extras = project["optional-dependencies"]
    assert extras["torch"] == extras["gpu"] == ["torch>=2.4"]
    assert {"pytest", "hypothesis"} <= {d.split(">")[0] for d in extras["test"]}


def test_markers_are_registered():
    markers = " ".join(_pyproject()["tool"]["pytest"]["ini_options"]["markers"])
    for m in ("slow:", "gpu:", "bench:"):
        assert m in markers


@pytest.mark.skipif(not os.environ.get("TZIP_TEST_INSTALLED"), reason="CI's installed-wheel run")
def test_the_installed_package_is_under_test():
    """.ci/run installs the wheel and sets TZIP_TEST_INSTALLED: the tests must not have
    picked up the source tree."""
    here = Path(tzip.__file__).resolve()
    assert REPO not in here.parents, here
    assert modelpath.shipped_dir() == here.parent / "_models"
    assert {"tzip-small", "tzip-large"} <= set(modelpath.model_files())


def _build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the source (so no build/ folder lands in the tree)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "tzip", src / "tzip", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "models").mkdir()
    for p in (REPO / "models").iterdir():
        if p.is_file():
            shutil.copy(p, src / "models" / p.name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)]
    try:
        import setuptools  # noqa: F401
        cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("tzip-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_ships_models_and_works_installed(tmp_path, text):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for n in ("tzip/_models/tzip-small.npz", "tzip/_models/tzip-large.npz", "tzip/_models/tzip-small.md",
              "tzip/engine/compiled/step.py", "tzip/legacy/mixing/compiled.py", "tzip/model/registry.py",
              "tzip/modelpath.py", "tzip/cli.py"):
        assert n in names, n
    assert not any("/logs/" in n for n in names)
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    torch = [line for line in requires if line.split()[1].lower().startswith("torch")]
    assert torch and all("extra ==" in line for line in torch), requires  # only with [torch]/[gpu]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    away = tmp_path / "elsewhere"  # no source tree here, nor above
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TZIP_MODELS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), XDG_DATA_HOME=str(tmp_path / "xdg"))

    def tz(*args, input=None):
        return subprocess.run([sys.executable, "-m", "tzip", *args], input=input, cwd=away, env=env,
                              capture_output=True, timeout=300)
    p = tz("models")
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "tzip-small" in out and "tzip-large" in out and str(target / "tzip" / "_models") in out
    c = tz("-c", "-", input=text[:2000])  # the shipped default model, found by name
    assert c.returncode == 0 and c.stdout[:4] == b"\x89TZP", c.stderr
    d = tz("-d", input=c.stdout)
    assert d.returncode == 0 and d.stdout == text[:2000], d.stderr
