"""Records shared by the readers and writers, and strict UTF-8 line reading with line numbers."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from ..errors import DataError

#: What a reader accepts: a path, an open text or binary file, or any iterable of lines.
Source = str | os.PathLike | IO[str] | IO[bytes] | Iterable[str] | Iterable[bytes]
#: What a writer accepts: a path, or an open text or binary file.
Destination = str | os.PathLike | IO[str] | IO[bytes]

_UTF8_BOM = b"\xef\xbb\xbf"
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence (or tweet, or sequence) read from a file.

    Parameters
    ----------
    tokens : list of str
        The tokens, in order.
    tags : list of str or None
        One tag per token, or None when the input has no tags.
    columns : list of list of str or None
        Every input column of every token (token and tag included), kept so that a writer can
        echo them next to a predicted tag; None for formats without columns (JSONL).
    line : int
        1-based line number where the sentence starts, for error messages (0 if unknown).
    meta : dict
        Sentence-level data: CoNLL-U ``# key = value`` comments, extra JSONL keys; often empty.
    """

    tokens: list[str]
    tags: list[str] | None = None
    columns: list[list[str]] | None = None
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A record whose parallel lists disagree would fail much later, far from its cause.
        if self.tags is not None and len(self.tags) != len(self.tokens):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.tags)} tags")
        if self.columns is not None and len(self.columns) != len(self.tokens):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.columns)} column rows")

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True, slots=True)
class LabeledText:
    """One labeled text for sequence classification (e.g. a line of SST-2).

    Parameters
    ----------
    tokens : list of str
        The text split on whitespace.
    label : str
        The class label as written in the file.
    line : int
        1-based line number of the text in its file.
    """

    tokens: list[str]
    label: str
    line: int = 0


def source_name(source: Any) -> str:
    """Name of a source for error messages: the path, a file object's ``.name``, or ``<stream>``.

    Parameters
    ----------
    source : path or file object or iterable of lines
        What a reader was given.

    Returns
    -------
    str
    """
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    name = getattr(source, "name", None)
    # Files opened on a descriptor have an int name, which says nothing to a user.
    return name if isinstance(name, str) else "<stream>"


def _decode_line(raw: bytes, number: int, name: str) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if number == 1 and raw.startswith(_UTF8_BOM):
        # Editors on Windows often start UTF-8 files with a BOM; it is not part of the first token.
        raw = raw[len(_UTF8_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 1].hex()
        raise DataError(
            f"not valid UTF-8: byte 0x{bad} at byte {error.start + 1} of the line", name, number
        ) from None


def _check_text_line(line: str, number: int, name: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    if number == 1 and line.startswith("\ufeff"):
        line = line[1:]
    # A text stream decoded with errors="surrogateescape" (stdin in a C locale) turns bad bytes
    # into lone surrogates; catch them here rather than when a writer fails to encode them.
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DataError(
                f"not valid UTF-8: undecodable character at column {error.start + 1}", name, number
            ) from None
    return line


def numbered_lines(source: Source) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` pairs lazily, without line endings, decoding UTF-8 strictly.

    Paths are opened in binary and decoded one line at a time, so that invalid UTF-8 is reported
    at its exact line. Binary file objects are read the same way; text file objects and other
    iterables of lines are taken as they come (a text file's decoder works in blocks, so its
    errors can only be placed at or after the line reported). A UTF-8 byte-order mark at the start
    is dropped. A file opened from a path is closed when the generator ends or is closed; a file
    object passed in is left open.

    Parameters
    ----------
    source : path or file object or iterable of lines
        Where to read from; line numbers count from where reading starts.

    Yields
    ------
    tuple of (int, str)
        1-based line number and the line without its ``\\n`` or ``\\r\\n``.

    Raises
    ------
    DataError
        Bytes that are not valid UTF-8, with file name and line number.
    """
    name = source_name(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as binary_file:
            for number, raw in enumerate(binary_file, start=1):
                yield number, _decode_line(raw, number, name)
        return
    number = 0
    lines = iter(source)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise DataError(
                "not valid UTF-8 at or after this line (pass a path or a binary stream such as "
                "sys.stdin.buffer for the exact line)",
                name,
                number + 1,
            ) from None
        number += 1
        if isinstance(line, bytes):
            yield number, _decode_line(line, number, name)
        elif isinstance(line, str):
            yield number, _check_text_line(line, number, name)
        else:
            raise TypeError(f"{name}: expected lines of str or bytes, got {type(line).__name__}")


@contextmanager
def open_destination(dest: Destination) -> Iterator[TextIO]:
    """Open a writer's destination as UTF-8 text with ``\\n`` newlines.

    Parameters
    ----------
    dest : path or file object
        A path is created or truncated and closed afterwards; a binary file object (such as
        ``sys.stdout.buffer``) is wrapped in UTF-8 and flushed; a text file object is used as is.

    Yields
    ------
    TextIO
    """
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "w", encoding="utf-8", newline="\n") as text_file:
            yield text_file
    elif isinstance(dest, (io.RawIOBase, io.BufferedIOBase)):
        wrapper = io.TextIOWrapper(dest, encoding="utf-8", newline="\n")
        try:
            yield wrapper
        finally:
            wrapper.flush()
            # Detach so that the caller's binary file stays open when the wrapper is collected.
            wrapper.detach()
    else:
        yield dest  # type: ignore[misc]


def tag_lists_for(
    sentences: Iterable[Sentence | Sequence[str]], tags: Iterable[Sequence[str]] | None
) -> Iterator[tuple[Sentence, Sequence[str] | None]]:
    """Pair each sentence with the tags to write: from ``tags`` if given, else its own.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write; a plain list of tokens is taken as a sentence without tags.
    tags : iterable of tag lists, optional
        One tag list per sentence (predictions), overriding the sentences' own tags.

    Yields
    ------
    tuple of (Sentence, tag list or None)

    Raises
    ------
    ValueError
        Different numbers of sentences and tag lists, or of tokens and tags in a sentence.
    """
    tag_iterator = iter(tags) if tags is not None else None
    index = 0
    for index, item in enumerate(sentences, start=1):
        if isinstance(item, str):
            # list("word") would silently write one character per line.
            raise TypeError(f"sentence {index} is a str; a sentence is a list of tokens")
        sentence = item if isinstance(item, Sentence) else Sentence(tokens=list(item))
        if tag_iterator is None:
            sentence_tags = sentence.tags
        else:
            sentence_tags = next(tag_iterator, _MISSING)
            if sentence_tags is _MISSING:
                raise ValueError(f"tags has fewer tag lists than sentences ({index - 1})")
        if sentence_tags is not None and len(sentence_tags) != len(sentence.tokens):
            where = f" (line {sentence.line})" if sentence.line else ""
            raise ValueError(
                f"sentence {index}{where} has {len(sentence.tokens)} tokens "
                f"but {len(sentence_tags)} tags"
            )
        yield sentence, sentence_tags
    if tag_iterator is not None and next(tag_iterator, _MISSING) is not _MISSING:
        raise ValueError(f"tags has more tag lists than sentences ({index})")


def check_field(value: str, what: str, sentence_index: int) -> str:
    """Refuse a value that would break a line-based file: empty, or holding a tab or newline.

    Parameters
    ----------
    value : str
        A token, tag or column value about to be written.
    what : str
        What it is, for the message.
    sentence_index : int
        1-based index of the sentence being written.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        With the sentence index and the offending value.
    """
    if not isinstance(value, str):
        raise TypeError(f"sentence {sentence_index}: {what} {value!r} is not a str")
    if not value or "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(
            f"sentence {sentence_index}: {what} {value!r} cannot be written "
            "(empty, or holds a tab or line break)"
        )
    return value
