"""Decoder limits: how much memory decoding a block needs, against a budget.

A hostile archive must not make the decoder allocate without bound: the memory a model
block needs (caches per stream, the output matrix, the adaptive models' tables) is
estimated from the block's header and refused before anything is allocated when it
exceeds the limit: TZIP_MEMORY_LIMIT, by default half the physical memory (FORMAT.md,
"Decoder limits").
"""
from __future__ import annotations

import os
import sys
import weakref
from typing import Callable

from .errors import LimitExceeded

MEMORY_FRACTION = 0.5  # default limit: this share of the physical memory (or cgroup limit)

# the callback every coding loop reports its bytes to (tzip/api.py, tzip/codec.py)
Progress = Callable[[int], None] | None


def _state_bytes(obj) -> tuple[int, int]:
    """(host, device) bytes of the arrays and tensors in a stepper state (a state holds
    tensors only where PyTorch is loaded: it is never loaded here for them)."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")  # a state holds arrays only once loaded
    host = dev = 0
    if np is not None and isinstance(obj, np.ndarray):
        host += obj.nbytes
    elif torch is not None and isinstance(obj, torch.Tensor):
        b = obj.numel() * obj.element_size()
        if obj.device.type == "cpu":
            host += b
        else:
            dev += b
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            h, d = _state_bytes(x)
            host, dev = host + h, dev + d
    elif hasattr(obj, "__dict__"):
        return _state_bytes(list(vars(obj).values()))
    return host, dev


_SIZES: "weakref.WeakKeyDictionary[object, tuple]" = weakref.WeakKeyDictionary()


def _state_sizes(stepper) -> tuple[tuple[int, int], tuple[int, int]]:
    """(host, device) bytes of the stepper's states of one and of two streams, measured
    once per stepper (a lockstep group's estimate is asked for again as it grows). Held
    weakly: the sizes go with the stepper, which goes with the engine that built it."""
    sizes = _SIZES.get(stepper)
    if sizes is None:
        sizes = _SIZES[stepper] = (_state_bytes(stepper.new_state(1)), _state_bytes(stepper.new_state(2)))
    return sizes


def decode_memory(stepper, cfg, S: int, L: int, mixer: int) -> tuple[int, int]:
    """(host, device) bytes that decoding S streams of up to L positions with this stepper
    needs, estimated before any of it is allocated: the stepper's state per stream
    (measured on states of one and two streams) and its temporaries (attention scores
    and MLP activations of a step, a few copies each), the (S, L) int64 output matrix
    and the bytes it becomes, and the adaptive models' bytes (`mixer`: the context
    mixer's, cm.memory, or format 3's, legacy.linear.mixer_memory)."""
    (h1, d1), (h2, d2) = _state_sizes(stepper)
    work = 16 * cfg.n_head * cfg.context + 64 * cfg.d_model * cfg.mlp_mult
    if d2 > d1:  # a GPU step: its temporaries are there
        dev, host = d1 + S * (d2 - d1 + work), h1 + S * (h2 - h1)
    else:
        dev, host = 0, h1 + S * (h2 - h1 + work)
    return host + mixer + 12 * S * L, dev


def lzma_memory(coded_max: int, dict_size: int) -> int:
    """Host bytes that decoding an LZMA block of at most coded_max bytes needs: the
    decoder's dictionary (allocated whole by liblzma) and its output, twice (the pieces
    it decompresses into and the bytes they are joined into)."""
    return dict_size + 2 * (coded_max + 1)


def transform_memory(raw_len: int, utf16: bool, crlf: bool) -> int:
    """Host bytes that undoing a block's transforms (transform.from_text_block) allocates
    beyond the coded bytes it starts from, for a block of raw_len bytes whose coded bytes
    were checked to convert to raw_len (transform.text_block_length): the original; for
    UTF-16 also its converted pieces before they are joined, and one piece's copies (its
    CRs put back, its characters as a str of up to 4 bytes each, its UTF-16)."""
    if utf16:
        from .transform import PIECE
        return 2 * raw_len + 16 * PIECE
    return raw_len if crlf else 0


def physical_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower
    (None when unknown)."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(f) as fh:
                v = fh.read().strip()
        except OSError:
            continue
        if v.isdigit() and 0 < int(v) < 1 << 60:
            sizes.append(int(v))
    return min(sizes) if sizes else None


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_limit() -> int | None:
    """The most bytes a block's decoding may need: TZIP_MEMORY_LIMIT (bytes with an optional
    K, M, G or T suffix, a percentage of physical memory, or "none" or 0), by default
    MEMORY_FRACTION of physical memory. None: no limit."""
    env = os.environ.get("TZIP_MEMORY_LIMIT", "").strip()
    phys = physical_memory()
    if not env:
        return int(MEMORY_FRACTION * phys) if phys else None
    v = env.upper()
    if v in ("NONE", "UNLIMITED", "0"):  # 0: no limit, as for xz
        return None
    try:
        if v.endswith("%"):
            n = float(v[:-1]) / 100 * phys if phys else float("nan")
        else:
            v = v.removesuffix("IB").removesuffix("B")
            unit = _UNITS.get(v[-1:], 1)
            n = float(v[:-1] if v[-1:] in _UNITS else v) * unit
    except ValueError:
        n = float("nan")
    if not 1 <= n < 2.0 ** 62:  # also NaN
        raise LimitExceeded(f"TZIP_MEMORY_LIMIT={env!r}: give bytes with an optional K, M, G or "
                            f"T suffix (e.g. 8G), a share of memory (e.g. 75%), or none")
    return int(n)


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def limit_text() -> str:
    limit = memory_limit()
    return "none" if limit is None else f"{_size(limit)}, TZIP_MEMORY_LIMIT"


def check_memory(need: "int | tuple[int, int]", what: str, device=None) -> None:
    """Refuse, before allocating, a decode that needs more than memory_limit() (host), or
    more than the GPU has (need = (host, device bytes))."""
    host, dev = need if isinstance(need, tuple) else (need, 0)
    limit = memory_limit()
    if limit is not None and host > limit:
        raise LimitExceeded(
            f"{what} needs about {_size(host)} of memory, more than the limit of {_size(limit)} "
            f"(half the physical memory unless TZIP_MEMORY_LIMIT says otherwise); "
            f"set TZIP_MEMORY_LIMIT={_size_arg(host)} to allow it")
    if dev:
        import torch
        total = torch.cuda.get_device_properties(device).total_memory
        if dev > total:
            raise LimitExceeded(f"{what} needs about {_size(dev)} of GPU memory, more than the "
                                f"GPU's {_size(total)}; try --device cpu")


def _size_arg(n: int) -> str:
    """A TZIP_MEMORY_LIMIT value a little above n."""
    return f"{-(-n * 11 // 10 // (1 << 30))}G" if n >= 1 << 30 else f"{-(-n * 11 // 10 // (1 << 20))}M"


class OutputLimit:
    """An opt-in bound on what decoding an archive may produce, for services that decode
    archives they did not make (as xz --memlimit and zstd --memory bound memory): one
    archive byte can claim thousands of output bytes (FORMAT.md, "Decoder limits"), and
    a model block's bytes cost a model step each.

    max_output: the most bytes in all; max_ratio: the most output bytes per archive byte
    read so far (block records, each block counted once read). None: no bound; the
    defaults are TZIP_MAX_OUTPUT (bytes with an optional K, M, G or T suffix) and
    TZIP_MAX_RATIO. Each block's stated length is claimed before any work on it and
    refused with a one-line LimitExceeded when over; a block decodes to exactly its
    stated length or is refused, so the output never passes the bound."""

    def __init__(self, max_output: int | None = None, max_ratio: float | None = None):
        self.max_output = _env_size("TZIP_MAX_OUTPUT") if max_output is None else max_output
        self.max_ratio = _env_ratio() if max_ratio is None else max_ratio
        if self.max_output is not None and not self.max_output >= 0:
            raise ValueError(f"max_output must be a number of bytes, not {max_output!r}")
        if self.max_ratio is not None and not self.max_ratio > 0:
            raise ValueError(f"max_ratio must be above 0, not {max_ratio!r}")
        self.output = self.archive = 0

    def claim(self, raw_len: int, record_len: int) -> None:
        """Count a block of raw_len bytes stated in record_len archive bytes, or refuse it."""
        output, archive = self.output + raw_len, self.archive + record_len
        if self.max_output is not None and output > self.max_output:
            raise LimitExceeded(f"the archive states more than {self.max_output} bytes of output "
                                f"(the limit: max_output or TZIP_MAX_OUTPUT)")
        if self.max_ratio is not None and output > self.max_ratio * archive:
            raise LimitExceeded(f"the archive states {output} bytes of output for {archive} bytes of "
                                f"blocks, more than {self.max_ratio:g} per byte "
                                f"(the limit: max_ratio or TZIP_MAX_RATIO)")
        self.output, self.archive = output, archive


def _env_size(var: str) -> int | None:
    env = os.environ.get(var, "").strip()
    if not env or env.upper() in ("NONE", "UNLIMITED"):
        return None
    v = env.upper().removesuffix("IB").removesuffix("B")
    try:
        n = float(v[:-1] if v[-1:] in _UNITS else v) * _UNITS.get(v[-1:], 1)
    except ValueError:
        n = float("nan")
    if not 0 <= n < 2.0 ** 62:
        raise LimitExceeded(f"{var}={env!r}: give bytes with an optional K, M, G or T suffix "
                            f"(e.g. 100M), or none")
    return int(n)


def _env_ratio() -> float | None:
    env = os.environ.get("TZIP_MAX_RATIO", "").strip()
    if not env or env.upper() in ("NONE", "UNLIMITED"):
        return None
    try:
        n = float(env)
    except ValueError:
        n = float("nan")
    if not 0 < n < 2.0 ** 62:
        raise LimitExceeded(f"TZIP_MAX_RATIO={env!r}: give output bytes per archive byte "
                            f"(e.g. 1000), or none")
    return n
