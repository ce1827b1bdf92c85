"""Where corpora live: $TZIP_CORPORA, ../shared/corpora beside the repo, or a cache folder."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def search_roots() -> list[Path]:
    roots = []
    if os.environ.get("TZIP_CORPORA"):
        roots.append(Path(os.environ["TZIP_CORPORA"]))
    roots.append(REPO.parent / "shared" / "corpora")
    roots.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tzip" / "corpora")
    return roots


def train_dir() -> Path:
    for r in search_roots():
        if (r / "train").is_dir():
            return r / "train"
    raise FileNotFoundError("no training corpus found; looked for train/ under "
                            + ", ".join(map(str, search_roots())) + " (set TZIP_CORPORA)")
