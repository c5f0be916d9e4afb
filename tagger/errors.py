"""The project's own exceptions. Each says what is wrong and, for data, where."""

from __future__ import annotations


class TaggerError(Exception):
    """Base class of every error raised on purpose by tagger."""


class DataError(TaggerError, ValueError):
    """Malformed input data, located by file name and line number when they are known.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str, optional
        The file (or ``<stdin>``).
    line : int, optional
        1-based line number.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)


class ModelFileError(TaggerError, ValueError):
    """A model file that cannot be loaded: missing, truncated, corrupted, tampered or too new."""
