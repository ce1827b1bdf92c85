"""tzip: lossless text compression with a small byte-level transformer and a range coder."""
from .api import (ArchiveInfo, BlockInfo, Compressor, Decompressor, compress, compress_file,
                  compress_stream, decompress, decompress_file, decompress_stream, info)
from .errors import CorruptArchive, LimitExceeded, ModelError, TzipError, WrongModel

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "compress_stream", "decompress_stream", "compress_file",
           "decompress_file", "info", "Compressor", "Decompressor", "ArchiveInfo", "BlockInfo",
           "TzipError", "CorruptArchive", "WrongModel", "ModelError", "LimitExceeded"]
