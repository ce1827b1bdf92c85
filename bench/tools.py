"""The compressors the suite can run, by name.

A Tool is plain data (a JSON-able `spec`), so a fresh worker process can rebuild the
same codec from it: library codecs ("python"), tzip models ("tzip") and user-given pairs
of shell commands ("shell"). A tool whose package or command is missing is kept with
available=False and a one-line note, so it is reported as skipped instead of crashing.
"""
from __future__ import annotations

import importlib
import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

PPMD_ORDER, PPMD_MEM = 16, 256 << 20
ZSTD_LONG_WINDOW_LOG = 27
BROTLI_LGWIN = 24


class UsageError(ValueError):
    """A bad tool, model or option given on the command line (exit status 2)."""


class Codec(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def decompress(self, blob: bytes) -> bytes: ...
    def warmup(self) -> None: ...


@dataclass
class Tool:
    name: str
    label: str                 # the settings, as a user of the CLI tool would write them
    kind: str                  # "python", "tzip" or "shell"
    spec: dict = field(default_factory=dict)
    available: bool = True
    note: str = ""             # why it is skipped, when it is

    def to_json(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind, "spec": self.spec,
                "available": self.available, "note": self.note or None}


@dataclass
class FuncCodec:
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]

    def warmup(self) -> None:
        self.decompress(self.compress(b"warm-up " * 16))


def _gzip() -> Codec:
    import gzip
    return FuncCodec(lambda d: gzip.compress(d, compresslevel=9, mtime=0), gzip.decompress)


def _bzip2() -> Codec:
    import bz2
    return FuncCodec(lambda d: bz2.compress(d, 9), bz2.decompress)


def _xz() -> Codec:
    import lzma
    return FuncCodec(lambda d: lzma.compress(d, lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME),
                     lzma.decompress)


def _zstd(long: bool) -> Callable[[], Codec]:
    def make() -> Codec:
        import zstandard
        if long:
            params = zstandard.ZstdCompressionParameters.from_level(
                22, window_log=ZSTD_LONG_WINDOW_LOG, enable_ldm=True)
            c = zstandard.ZstdCompressor(compression_params=params)
        else:
            c = zstandard.ZstdCompressor(level=19)
        d = zstandard.ZstdDecompressor(max_window_size=1 << ZSTD_LONG_WINDOW_LOG)
        return FuncCodec(c.compress, d.decompress)
    return make


def _brotli() -> Codec:
    import brotli
    return FuncCodec(lambda d: brotli.compress(d, quality=11, lgwin=BROTLI_LGWIN),
                     brotli.decompress)


def _ppmd() -> Codec:
    import pyppmd
    kw = dict(max_order=PPMD_ORDER, mem_size=PPMD_MEM, variant="I")
    return FuncCodec(lambda d: pyppmd.compress(d, **kw), lambda b: pyppmd.decompress(b, **kw))


# name -> (label, the package it needs or None for the standard library, factory)
BUILTINS: dict[str, tuple[str, str | None, Callable[[], Codec]]] = {
    "gzip": ("gzip -9 (zlib deflate, level 9)", None, _gzip),
    "bzip2": ("bzip2 -9", None, _bzip2),
    "xz": ("xz -9e (lzma preset 9|EXTREME, .xz)", None, _xz),
    "zstd": ("zstd -19", "zstandard", _zstd(False)),
    "zstd-long": (f"zstd --ultra -22 --long (window 2^{ZSTD_LONG_WINDOW_LOG}, LDM)",
                  "zstandard", _zstd(True)),
    "brotli": (f"brotli -q 11 -w {BROTLI_LGWIN}", "brotli", _brotli),
    "ppmd": (f"PPMd var. I (Ppmd8) order {PPMD_ORDER}, {PPMD_MEM >> 20} MiB, restart",
             "pyppmd", _ppmd),
}


# Command-line compressors run when their binary is on PATH, reported as skipped otherwise
# (like a builtin whose package is missing): name -> (label, compress, decompress). paq8px
# is GPL and slow (tens of KB/s at -8); the bench only runs the binary, never builds it.
SHELL_BUILTINS: dict[str, tuple[str, str, str]] = {
    "paq8px": ("paq8px -8 (the binary on PATH)", "paq8px -8 {in} {out}", "paq8px -d {in} {out}"),
}


def builtin(name: str) -> Tool:
    """A tool of BUILTINS or SHELL_BUILTINS by name, available=False (with a note saying
    why) where its package or binary is missing."""
    if name in SHELL_BUILTINS:
        label, compress, decompress = SHELL_BUILTINS[name]
        tool = shell_tool(name, compress, decompress)
        tool.label = label
        return tool
    label, package, _ = BUILTINS[name]
    tool = Tool(name, label, "python", {"builtin": name})
    if package is not None:
        try:
            importlib.import_module(package)
        except ImportError:
            tool.available = False
            tool.note = (f"skipped {name}: Python package '{package}' is not installed "
                         f"(pip install {package}, or pip install -e '.[bench]')")
    return tool


class TzipCodec:
    """tzip through its library API; the model is named in the archive and checked, and so
    is the window (format 7), which the archive carries to the decoder, as it does the
    format (None: the one the model and window give)."""

    def __init__(self, model: str, device: str, window: int | None = None, format: int | None = None):
        import tzip
        self._tzip, self.model, self.device, self.window, self.format = tzip, model, device, window, format
        self._c = self._d = None

    def compress(self, data: bytes) -> bytes:
        if self._c is None:
            self._c = self._tzip.Compressor(self.model, device=self.device, window=self.window,
                                            format=self.format)
        return self._c.compress(data)

    def decompress(self, blob: bytes) -> bytes:
        if self._d is None:
            self._d = self._tzip.Decompressor(self.model, device=self.device)
        return self._d.decompress(blob)

    def warmup(self) -> None:
        """Loads the model, builds the engine and its plan's backends and, where numba is
        installed, loads the compiled loops (every block takes them: tzip/engine/plan.py),
        so timings are of coding alone, in a warm process. A command-line run pays the
        loading once per process."""
        self.decompress(self.compress(b"warm-up text for the model\n" * 64))


# tzip levels benched under a name of their own, by tool name -> the model spec
# tzip.compress takes (tzip -1 codes with the context mixer alone: tzip/cm/alone.py; -2
# and -4 run tzip-small over a window, LEVEL_WINDOWS; -8 writes format 12, LEVEL_FORMATS,
# and tzip-8r6, tzip-8r5, tzip-8r4 and tzip-8r3 what 0.7's, 0.6's, 0.5's and 0.4's -8
# wrote, formats 11, 10, 9 and 8); the other
# levels run a model over its whole context and are benched by its name (tzip-small for -6
# and -7, tzip-large for -9)
LEVELS = {"tzip-1": "none", "tzip-2": "tzip-small", "tzip-4": "tzip-small", "tzip-8": "tzip-small",
          "tzip-8r6": "tzip-small", "tzip-8r5": "tzip-small", "tzip-8r4": "tzip-small", "tzip-8r3": "tzip-small"}
LEVEL_WINDOWS = {"tzip-2": 64, "tzip-4": 128}
LEVEL_FORMATS = {"tzip-8": 12, "tzip-8r6": 11, "tzip-8r5": 10, "tzip-8r4": 9, "tzip-8r3": 8}
LEVEL_LABELS = {"tzip-1": "tzip -1: the context mixer alone, no transformer",
                "tzip-2": "tzip -2: tzip-small over a window of 64",
                "tzip-4": "tzip -4: tzip-small over a window of 128",
                "tzip-8": "tzip -8: tzip-small, the context mixer's revision 7 (format 12)",
                "tzip-8r6": "tzip -8 of 0.7: tzip-small, the context mixer's revision 6 (format 11)",
                "tzip-8r5": "tzip -8 of 0.6: tzip-small, the context mixer's revision 5 (format 10)",
                "tzip-8r4": "tzip -8 of 0.5: tzip-small, the context mixer's revision 4 (format 9)",
                "tzip-8r3": "tzip -8 of 0.4: tzip-small, the context mixer's revision 3 (format 8)"}


def tzip_tool(model: str, device: str) -> Tool:
    """A tzip model by name or .npz path, or a level of LEVELS by its tool name."""
    if model in LEVELS:
        spec = {"tzip": LEVELS[model], "device": device}
        if model in LEVEL_WINDOWS:
            spec["window"] = LEVEL_WINDOWS[model]
        if model in LEVEL_FORMATS:
            spec["format"] = LEVEL_FORMATS[model]
        return Tool(model, f"{LEVEL_LABELS[model]}, device {device}", "tzip", spec)
    return Tool(Path(model).stem if model.endswith(".npz") else model,
                f"tzip, model {Path(model).stem}, device {device}", "tzip",
                {"tzip": model, "device": device})


def make_codec(spec: dict) -> Codec:
    """The codec a python or tzip Tool's spec describes (shell tools have none)."""
    if "builtin" in spec:
        return BUILTINS[spec["builtin"]][2]()
    if "tzip" in spec:
        return TzipCodec(spec["tzip"], spec["device"], spec.get("window"), spec.get("format"))
    raise ValueError(f"no in-process codec for tool spec {spec!r}")


def shell_tool(name: str, compress: str, decompress: str) -> Tool:
    """A pair of shell commands; {in} and {out} are replaced by quoted temp file paths."""
    if not name or not compress.strip() or not decompress.strip():
        raise UsageError(f"tool {name or '?'}: needs a name and two non-empty commands")
    for cmd in (compress, decompress):
        if "{in}" not in cmd or "{out}" not in cmd:
            raise UsageError(f"tool {name}: command {cmd!r} must use both {{in}} and {{out}}")
    tool = Tool(name, f"{compress.strip()} / {decompress.strip()}", "shell",
                {"compress": compress.strip(), "decompress": decompress.strip()})
    for cmd in (compress, decompress):
        try:
            prog = shlex.split(cmd)[0]
        except (ValueError, IndexError):
            raise UsageError(f"tool {name}: cannot parse command {cmd!r}") from None
        if shutil.which(prog) is None and not Path(prog).is_file():
            tool.available = False
            tool.note = f"skipped {name}: command '{prog}' not found on PATH"
            break
    return tool


def parse_tool_arg(arg: str) -> Tool:
    """--tool 'NAME=COMPRESS_CMD;DECOMPRESS_CMD'."""
    name, eq, cmds = arg.partition("=")
    parts = cmds.split(";")
    if not eq or len(parts) != 2:
        raise UsageError(f"--tool {arg!r}: expected 'NAME=COMPRESS_CMD;DECOMPRESS_CMD' with "
                         "exactly one ';' (use --tools-config FILE.json for commands that "
                         "contain ';')")
    return shell_tool(name.strip(), parts[0], parts[1])


def load_tools_config(path: Path) -> list[Tool]:
    """A JSON object: {"NAME": {"compress": CMD, "decompress": CMD}, ...}; a value may
    also be one 'COMPRESS_CMD;DECOMPRESS_CMD' string. It may be wrapped in {"tools": ...}."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--tools-config {path}: {e}") from None
    if isinstance(cfg, dict) and isinstance(cfg.get("tools"), dict):
        cfg = cfg["tools"]
    if not isinstance(cfg, dict):
        raise UsageError(f"--tools-config {path}: expected a JSON object of NAME: commands")
    tools = []
    for name, v in cfg.items():
        if isinstance(v, str):
            tools.append(parse_tool_arg(f"{name}={v}"))
        elif isinstance(v, dict) and {"compress", "decompress"} <= set(v):
            tools.append(shell_tool(name, v["compress"], v["decompress"]))
        else:
            raise UsageError(f"--tools-config {path}: tool {name!r} needs 'compress' and "
                             "'decompress' commands")
    return tools
