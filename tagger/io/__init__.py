"""Readers and writers for tagged text: CoNLL, CoNLL-U, JSON Lines and labeled TSV.

Readers are lazy generators over a path or an open file (constant memory, for streaming large
files; a line longer than ``max_line_length``, by default :data:`MAX_LINE_LENGTH` characters, is
an error and is never held whole); every malformed input raises :class:`tagger.errors.DataError`
with file name and line. Writers stream to a path or an open file as UTF-8 with ``\\n`` newlines,
and never write what their reader would read back differently: a value the format cannot hold
(a token with a space in CoNLL, a tab or line break in CoNLL-U...) raises
:class:`UnwritableError`, naming the sentence and the value, before anything of its sentence is
written. None of the formats is given an escape syntax of its own: other tools would not read it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..errors import DataError
from ._common import (
    MAX_LINE_LENGTH,
    Destination,
    LabeledText,
    Sentence,
    Source,
    UnwritableError,
    source_name,
)
from .conll import read_conll, write_conll
from .conllu import UPOS_TAGS, is_entity_tagging, read_conllu, write_conllu
from .jsonl import read_jsonl, write_jsonl
from .tsv import read_tsv, write_tsv

#: File extension of each format, as ``detect_format`` reads them.
EXTENSIONS = {".conll": "conll", ".conllu": "conllu", ".jsonl": "jsonl", ".tsv": "tsv"}
#: Reader of each format (``tsv`` yields LabeledText, the others Sentence).
READERS: dict[str, Callable[..., Iterator[Any]]] = {
    "conll": read_conll,
    "conllu": read_conllu,
    "jsonl": read_jsonl,
    "tsv": read_tsv,
}
#: Writer of each format of tagged sentences.
WRITERS: dict[str, Callable[..., int]] = {
    "conll": write_conll,
    "conllu": write_conllu,
    "jsonl": write_jsonl,
}

__all__ = [
    "EXTENSIONS",
    "MAX_LINE_LENGTH",
    "READERS",
    "UPOS_TAGS",
    "WRITERS",
    "LabeledText",
    "Sentence",
    "UnwritableError",
    "detect_format",
    "is_entity_tagging",
    "read_conll",
    "read_conllu",
    "read_jsonl",
    "read_sentences",
    "read_tsv",
    "write_conll",
    "write_conllu",
    "write_jsonl",
    "write_sentences",
    "write_tsv",
]


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of a file from its extension.

    Parameters
    ----------
    path : str or PathLike
        A file name; only its extension is looked at (case-insensitive).

    Returns
    -------
    str
        ``"conll"``, ``"conllu"``, ``"jsonl"`` or ``"tsv"``.

    Raises
    ------
    DataError
        An unknown extension (``.txt`` is one: its layout cannot be guessed), listing the known
        ones.
    """
    extension = os.path.splitext(os.fsdecode(path))[1].lower()
    try:
        return EXTENSIONS[extension]
    except KeyError:
        known = ", ".join(EXTENSIONS)
        raise DataError(
            f"cannot tell the format from the extension {extension or '(none)'!r}; known "
            f"extensions: {known} (or name the format)",
            os.fsdecode(path),
        ) from None


def _format_of(source: Any, format: str | None) -> str:
    if format is None:
        if isinstance(source, (str, os.PathLike)):
            return detect_format(source)
        name = source_name(source)
        if name.startswith("<"):
            raise DataError("cannot tell the format of a stream; name the format", name)
        return detect_format(name)
    if format not in READERS:
        raise DataError(f"unknown format {format!r}; known formats: {', '.join(READERS)}")
    return format


def read_sentences(
    source: Source, format: str | None = None, **options: Any
) -> Iterator[Sentence] | Iterator[LabeledText]:
    """Read a file in any supported format, lazily.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from.
    format : {"conll", "conllu", "jsonl", "tsv"}, optional
        The format; by default detected from the extension of the path (or the file's name).
    **options
        Passed to the format's reader (e.g. ``tag_column`` for CoNLL, ``tag_field`` for CoNLL-U).

    Returns
    -------
    iterator of Sentence, or of LabeledText for ``"tsv"``

    Raises
    ------
    DataError
        Unknown format or extension; malformed input (when iterated).
    """
    return READERS[_format_of(source, format)](source, **options)


def write_sentences(
    sentences: Iterable[Sentence | Sequence[str]],
    dest: Destination,
    format: str | None = None,
    tags: Iterable[Sequence[str]] | None = None,
    **options: Any,
) -> int:
    """Write tagged sentences in any supported sentence format.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write.
    dest : path or file object
        Where to write.
    format : {"conll", "conllu", "jsonl"}, optional
        The format; by default detected from the extension of the path (or the file's name).
    tags : iterable of tag lists, optional
        One tag list per sentence, instead of the sentences' own tags.
    **options
        Passed to the format's writer (e.g. ``tag_field`` for CoNLL-U).

    Returns
    -------
    int
        Number of sentences written.

    Raises
    ------
    DataError
        Unknown format or extension, or ``"tsv"`` (labeled texts, not tagged sentences).
    """
    chosen = _format_of(dest, format)
    if chosen not in WRITERS:
        raise DataError(f"cannot write tagged sentences as {chosen!r}; use one of {list(WRITERS)}")
    return WRITERS[chosen](sentences, dest, tags=tags, **options)
