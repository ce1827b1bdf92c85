"""Finding and loading models: installed ones by name (tzip/modelpath.py has the search
path: $TZIP_MODELS, the per-user folder, the models shipped with the package), or any .npz
by path."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from .. import modelpath
from ..errors import ModelError
from .intmodel import IntModel, ModelFileError

REPO = modelpath.REPO
CPU_DEFAULT, GPU_DEFAULT = "tzip-small", "tzip-large"


def models_dir() -> Path:
    """$TZIP_MODELS (its first folder) when set, else the shipped models' folder."""
    return modelpath.primary_dir()


def available() -> list[str]:
    """Names of the models on the whole search path (modelpath.search_path())."""
    return sorted(modelpath.model_files())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return torch.device(device)


def default_name(device: torch.device) -> str:
    """The GPU model when a GPU runs it and it is installed, else the CPU model."""
    names = available()
    if device.type == "cuda" and GPU_DEFAULT in names:
        return GPU_DEFAULT
    return CPU_DEFAULT


@lru_cache(maxsize=8)
def _load_path(path: str, mtime: float) -> IntModel:
    return IntModel.load(Path(path))


def load(spec: "str | Path | IntModel | None", device: torch.device | None = None) -> IntModel:
    """A model from an IntModel, a path to an .npz, or a name in models_dir()."""
    if isinstance(spec, IntModel):
        return spec
    if spec is None:
        spec = default_name(device or torch.device("cpu"))
    p = Path(spec)
    if not p.is_file():
        p = models_dir() / f"{spec}.npz"
        if not p.is_file():
            have = ", ".join(available()) or "none"
            raise ModelError(f"model {str(spec)!r} not found (installed in {models_dir()}: {have})")
    try:
        return _load_path(str(p.resolve()), p.stat().st_mtime)
    except ModelFileError as e:
        raise ModelError(str(e)) from None


def find(name: str, digest: bytes) -> IntModel:
    """The installed model with this digest (tried by name first)."""
    candidates = [name] + [n for n in available() if n != name]
    for n in candidates:
        path = models_dir() / f"{n}.npz"
        if path.exists():
            try:
                m = load(path)
            except ModelError:
                continue
            if m.digest.startswith(digest):
                return m
    raise ModelError(f"this archive was made with model {name!r} (id {digest.hex()[:16]}), "
                     f"which is not installed in {models_dir()}; pass --model PATH")
