"""The console scripts `tzip` and `tzcat` (pyproject.toml): tzip.cli's commands, with a
Ctrl-C that arrives while they are still being imported ending as one quiet line and exit
130, as it does later on."""
from __future__ import annotations

import sys


def _interrupted() -> None:
    sys.stderr.write("tzip: interrupted\n")
    sys.exit(130)


def tzip() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        _interrupted()
    main(prog_name="tzip")


def tzcat() -> None:
    try:
        from .cli import tzcat as run
    except KeyboardInterrupt:
        _interrupted()
    run()
