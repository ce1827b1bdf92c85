"""The machine and software a run used, recorded with its numbers (speeds mean little
without them)."""
from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("tzip", "torch", "numpy", "constriction", "zstandard", "brotli", "pyppmd",
            "matplotlib")
ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The CUDA GPU PyTorch sees, if any (None without torch or without a GPU)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def versions() -> dict[str, str | None]:
    """Python's and the packages' versions; tzip's from the code that runs (an editable
    install's metadata keeps the version it was installed at)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if "tzip" in out:
        import tzip
        out["tzip"] = tzip.__version__
    return out


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(argv: list[str]) -> dict:
    now = datetime.now(timezone.utc).astimezone()
    return {
        "date": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "versions": versions(),
        "git_commit": git_commit(),
        "command": "python -m bench " + shlex.join(argv),
    }
