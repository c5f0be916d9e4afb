"""Pretrained word vectors in the word2vec/GloVe text format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError


def load_word_vectors(path: str | Path, dtype=np.float32) -> tuple[list[str], np.ndarray]:
    """Read a word2vec or GloVe text file: one ``word v1 v2 ... vd`` line per word.

    A word2vec header line (``count dim``) is recognised and skipped. Every vector must have the
    same dimension; the first occurrence of a repeated word wins.

    Parameters
    ----------
    path : str or Path
        The file (UTF-8).
    dtype : numpy dtype
        Dtype of the returned matrix.

    Returns
    -------
    words : list of str
    vectors : ndarray (len(words), dim)

    Raises
    ------
    DataError
        For an unreadable file or a malformed line, naming the file and the line.
    """
    path = str(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim = None
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read word vectors: {exc.strerror}", path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError("not valid UTF-8", path, number) from None
            if not line.strip():
                continue
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: vocabulary size and dimension
            if len(parts) < 2:
                raise DataError("expected a word followed by its vector", path, number)
            try:
                vector = np.asarray(parts[1:], dtype=np.float64)
            except ValueError:
                raise DataError("vector entries must be numbers", path, number) from None
            if dim is None:
                dim = len(vector)
            elif len(vector) != dim:
                raise DataError(f"expected {dim} numbers, found {len(vector)}", path, number)
            if not np.isfinite(vector).all():
                raise DataError("vector has a NaN or infinite entry", path, number)
            if parts[0] in seen:
                continue
            seen.add(parts[0])
            words.append(parts[0])
            rows.append(vector)
    if not words:
        raise DataError("no word vectors found", path)
    return words, np.stack(rows).astype(dtype)
