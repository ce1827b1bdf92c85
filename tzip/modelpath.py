"""Where models are found, without importing torch (so `tzip models`, `tzip --help` and
`import tzip` stay fast).

Search path, first match wins:

1. $TZIP_MODELS (one folder, or several separated by os.pathsep)
2. the per-user folder: platformdirs' user data folder for tzip when platformdirs is
   installed, else $XDG_DATA_HOME/tzip/models (~/.local/share/tzip/models)
3. the models shipped with the package: package data `tzip._models` in an installed
   wheel (the repository's top-level models/ folder, mapped in pyproject.toml), or that
   folder itself in a source checkout or an editable install
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent  # the source checkout, when tzip runs from one


def user_dir() -> Path:
    """The per-user models folder (it need not exist)."""
    try:
        import platformdirs
        return Path(platformdirs.user_data_dir("tzip", appauthor=False)) / "models"
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        return Path(base) / "tzip" / "models"


def shipped_dir() -> Path | None:
    """The folder of the models that came with this tzip."""
    installed = PACKAGE / "_models"  # pip install ., a wheel, pipx
    if installed.is_dir():
        return installed
    source = REPO / "models"  # a source checkout (PYTHONPATH) or an editable install
    if (REPO / "pyproject.toml").is_file() and source.is_dir():
        return source
    try:  # any other installer's layout that still has the package data on disk
        from importlib.resources import files
        for entry in files("tzip._models").iterdir():
            if entry.name.endswith(".npz"):
                return Path(str(entry)).parent
    except (ImportError, OSError, TypeError):
        pass
    return None


def env_dirs() -> list[Path]:
    value = os.environ.get("TZIP_MODELS", "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def search_path() -> list[Path]:
    """Every folder models are looked for in, first match first (existing or not)."""
    dirs = env_dirs() + [user_dir()]
    shipped = shipped_dir()
    if shipped is not None:
        dirs.append(shipped)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def primary_dir() -> Path:
    """The one folder of the older single-folder lookup: $TZIP_MODELS (its first folder)
    when set, else the shipped models' folder."""
    env = env_dirs()
    if env:
        return env[0]
    return shipped_dir() or REPO / "models"


def model_files() -> dict[str, Path]:
    """Every model on the search path by name (a name found twice: the first one)."""
    found: dict[str, Path] = {}
    for d in search_path():
        try:
            paths = sorted(d.glob("*.npz")) if d.is_dir() else []
        except OSError:
            continue
        for p in paths:
            found.setdefault(p.stem, p)
    return found


def model_file(name: str) -> Path | None:
    """The file of the model called name on the search path, or None. Only plain names
    are looked up (no folders, no hidden files)."""
    if not name or name.startswith(".") or "/" in name or os.sep in name or "\0" in name:
        return None
    return model_files().get(name)


_WEIGHTS = ("wqkv", "wo", "w1", "w2")


def _is_weight(key: str) -> bool:
    return key == "head" or key.split(".")[-1] in _WEIGHTS


def _scan(path: Path) -> tuple[dict, bytes, int]:
    """(metadata, IntModel.digest, weight count) of a model file, read one array at a time
    with numpy alone: the digest is the sha256 over the numeric metadata and the arrays in
    the form IntModel stores them (int8 weights; any other int8 array as IntModel.load
    holds it, float32)."""
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes())
        numeric = {"config": meta["config"], "shifts": meta["shifts"], "format": meta["format"]}
        h = hashlib.sha256(json.dumps(numeric, sort_keys=True).encode())
        params = 0
        for k in sorted(f for f in z.files if f != "__meta__"):
            a = z[k]
            if a.dtype == np.int8 and not _is_weight(k):
                a = a.astype(np.float32)
            h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
            if _is_weight(k):
                params += a.size
    return meta, h.digest(), params


def file_digest(path: Path) -> bytes:
    """IntModel.digest of a model file, without building the model (or importing torch)."""
    return _scan(path)[1]


def summary(path: Path) -> dict:
    """Name, parameters, context, id and format of a model file, read with numpy alone."""
    meta, digest, params = _scan(path)
    return {"name": meta.get("name", path.stem), "params": params,
            "context": meta["config"].get("context"), "id": digest.hex(), "path": path,
            "format": meta["format"]}
