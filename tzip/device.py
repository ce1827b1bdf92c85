"""Which device runs the model, decided without loading PyTorch where the answer is known.

A device is a name, "cpu", "cuda" or "cuda:N", that knows its type and index. It is a
str, so PyTorch takes it wherever it takes a device, and a torch.device given by a caller
becomes one through str(). "auto" means a CUDA GPU when PyTorch sees one, else the CPU.
Asking PyTorch costs its import (seconds of start-up); on a machine without any GPU
driver the answer is known without it, so a CPU-only machine never loads PyTorch to find
out (and the CPU backends never load it at all).
"""
from __future__ import annotations

import os
import re
import sys

from .errors import ModelError

_NAME = re.compile(r"cpu|cuda(:[0-9]+)?")
# files a GPU driver that PyTorch could use leaves on Linux: NVIDIA's, ROCm's, WSL2's
DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


class Device(str):
    """A device name: Device("cuda:1").type == "cuda", .index == 1."""

    @property
    def type(self) -> str:
        return self.partition(":")[0]

    @property
    def index(self) -> int | None:
        i = self.partition(":")[2]
        return int(i) if i else None


def torch_installed() -> bool:
    """Whether PyTorch is installed (an extra: pip install 'tzip[torch]'), without loading it."""
    import importlib.util
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def need_torch(what: str) -> None:
    """ModelError (one line) when `what` needs PyTorch and it is not installed."""
    if not torch_installed():
        raise ModelError(f"{what} needs PyTorch, which is not installed: pip install 'tzip[torch]'")


def gpu_possible() -> bool:
    """False when PyTorch certainly sees no GPU (no driver, none visible, macOS); True when
    only PyTorch can tell."""
    if "torch" in sys.modules:
        return True  # already paid for: ask it
    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return False
    if sys.platform == "darwin":
        return False  # PyTorch has no CUDA on macOS
    if sys.platform.startswith("linux"):
        return any(os.path.exists(p) for p in DRIVER_FILES)
    return True


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU; PyTorch is loaded only where one may exist."""
    if not gpu_possible() or not torch_installed():
        return False
    from . import threads
    threads.before_torch()
    import torch
    return torch.cuda.is_available()


def resolve(device: object = "auto") -> Device:
    """The device that "auto", "cpu", "cuda" or "cuda:N" (or a torch.device) names here;
    ModelError (one line) for a GPU that is not there or a name that is not a device."""
    name = str(device)
    if name == "auto":
        return Device("cuda" if cuda_available() else "cpu")
    if not _NAME.fullmatch(name):
        raise ModelError(f"unknown device {name!r} (use auto, cpu or cuda)")
    if name.startswith("cuda"):
        need_torch(f"--device {name}")
    if name.startswith("cuda") and not cuda_available():
        raise ModelError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    return Device(name)
