"""Errors tzip reports to users; the CLI prints their message on one line and exits 1."""


class TzipError(Exception):
    """Base class of every error meant for the user."""


class CorruptArchive(TzipError):
    """Not a tzip archive, or a damaged or truncated one."""


class WrongModel(TzipError):
    """The archive needs a different model from the one given."""


class ModelError(TzipError):
    """A model that cannot be found or loaded."""


class LimitExceeded(TzipError):
    """Decoding an archive would take more memory than this decoder allows (FORMAT.md,
    "Decoder limits"); the message says what it needs and how to allow it."""
