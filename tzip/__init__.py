"""tzip: lossless text compression with a small byte-level transformer and a range coder.

`import tzip` is cheap: PyTorch and the engine load when a model is first needed."""
from __future__ import annotations

from .errors import CorruptArchive, LimitExceeded, ModelError, TzipError, WrongModel

__version__ = "0.8.0"
__all__ = ["compress", "decompress", "compress_stream", "decompress_stream", "compress_file",
           "decompress_file", "info", "open", "TzipFile", "TzipCompressor", "TzipDecompressor",
           "Compressor", "Decompressor", "ArchiveInfo", "BlockInfo", "set_threads",
           "TzipError", "CorruptArchive", "WrongModel", "ModelError", "LimitExceeded"]

_FROM = {
    **{n: "api" for n in ("compress", "decompress", "compress_stream", "decompress_stream",
                          "compress_file", "decompress_file", "info", "Compressor",
                          "Decompressor", "ArchiveInfo", "BlockInfo")},
    **{n: "tzfile" for n in ("open", "TzipFile", "TzipCompressor", "TzipDecompressor")},
    "set_threads": "threads",
}


def __getattr__(name: str):
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'tzip' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
