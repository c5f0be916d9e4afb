"""Records shared by the readers and writers, and strict UTF-8 line reading with line numbers."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from ..errors import DataError, TaggerError

#: What a reader accepts: a path, an open text or binary file, or any iterable of lines.
Source = str | os.PathLike | IO[str] | IO[bytes] | Iterable[str] | Iterable[bytes]
#: What a writer accepts: a path, or an open text or binary file.
Destination = str | os.PathLike | IO[str] | IO[bytes]

#: The longest line a reader accepts, in characters (line ending excluded), unless told otherwise:
#: far beyond any sentence or document line, yet a bound on what one line can cost (a binary file
#: or ``/dev/zero`` read as text would otherwise be held whole).
MAX_LINE_LENGTH = 1 << 20

_UTF8_BOM = b"\xef\xbb\xbf"
# Lines are read at most this many bytes (or characters) at a time.
_READ_CHUNK = 1 << 16
_UTF8_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
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


def _too_long(limit: int, name: str, number: int) -> DataError:
    return DataError(
        f"line longer than {limit:,} characters (raise the limit with max_line_length, or "
        "--max-line-length on the command line)",
        name,
        number,
    )


def _n_chars(piece: bytes | str) -> int:
    """Characters in a piece of a line (UTF-8 continuation bytes are not counted)."""
    if isinstance(piece, str) or piece.isascii():
        return len(piece)
    return len(piece.translate(None, _UTF8_CONTINUATION_BYTES))


def line_limit(max_line_length: int | None) -> int:
    """The line length limit to apply: ``max_line_length``, or :data:`MAX_LINE_LENGTH` if None.

    Raises
    ------
    ValueError
        A limit that is not a positive int.
    """
    limit = MAX_LINE_LENGTH if max_line_length is None else max_line_length
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"max_line_length must be a positive int, got {limit!r}")
    return limit


def _bounded_lines(
    read_line: Callable[[int], bytes | str], limit: int
) -> Iterator[bytes | str | None]:
    """Lines of a file object read ``_READ_CHUNK`` code units at a time, each with its ending.

    A line known to hold more than ``limit`` characters is given as None as soon as that is
    known, and the rest of it is read and dropped when the next line is asked for: no more than
    the limit (and one chunk) is ever held, even for an endless line (``/dev/zero``).
    """
    # Slack for what is not text of the line: a "\r\n" ending and a byte-order mark; the exact
    # length is checked once the line is decoded.
    held_limit = limit + 3
    while True:
        piece = read_line(_READ_CHUNK)
        if not piece:
            return
        newline = b"\n" if isinstance(piece, bytes) else "\n"
        if len(piece) <= held_limit and (len(piece) < _READ_CHUNK or piece.endswith(newline)):
            yield piece  # a whole line in one read, and short enough: the usual case
            continue
        # A line of several reads (or of many bytes), gathered until it is over the limit.
        pieces: list[Any] | None = []
        chars = 0
        while True:
            if pieces is not None:
                chars += _n_chars(piece)
                pieces.append(piece)
                if chars > held_limit:
                    pieces = None  # dropped; the rest of the line is read and dropped too
                    yield None
            if len(piece) < _READ_CHUNK or piece.endswith(newline):
                break
            piece = read_line(_READ_CHUNK)
            if not piece:
                break
        if pieces is not None:
            yield piece[:0].join(pieces)


def numbered_line_items(
    source: Source, max_line_length: int | None = None, name: str | None = None
) -> Iterator[tuple[int, str | DataError]]:
    """Yield ``(line_number, line or error)`` lazily: like :func:`numbered_lines`, but a line that
    cannot be read is given as its :class:`DataError` and reading goes on at the next line.

    This is what lets a caller skip exactly one malformed line (or the record holding it) and
    carry on: a generator that has raised cannot be resumed. Bytes that are not UTF-8 and lines
    over the length limit are errors of their own line, in a path or a binary file object; in a
    text file object a decoding error ends the reading (the decoder works in blocks, so it cannot
    tell where the next good line starts), and so does one in any other iterable.

    Parameters
    ----------
    source : path or file object or iterable of lines
        Where to read from; line numbers count from where reading starts.
    max_line_length : int, optional
        The longest line accepted, in characters (line ending excluded); default
        :data:`MAX_LINE_LENGTH`. File objects are read in chunks, so a longer line is never held
        whole.
    name : str, optional
        The source's name in errors; by default its path or ``.name``.

    Yields
    ------
    tuple of (int, str or DataError)
        1-based line number, and the line without its ``\\n`` or ``\\r\\n``, or the error that
        makes it unreadable (with file name and line number).
    """
    limit = line_limit(max_line_length)
    name = source_name(source) if name is None else name
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as binary_file:
            yield from _line_items(binary_file, limit, name)
    else:
        yield from _line_items(source, limit, name)


def _line_items(source: Any, limit: int, name: str) -> Iterator[tuple[int, str | DataError]]:
    read_line = getattr(source, "readline", None)
    if callable(read_line):
        lines: Iterator[Any] = _bounded_lines(read_line, limit)
    else:
        lines = iter(source)
    number = 0
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError:
            yield (
                number + 1,
                DataError(
                    "not valid UTF-8 at or after this line (pass a path or a binary stream such as "
                    "sys.stdin.buffer for the exact line)",
                    name,
                    number + 1,
                ),
            )
            return
        number += 1
        if line is None:
            yield number, _too_long(limit, name, number)
            continue
        try:
            if isinstance(line, bytes):
                text = _decode_line(line, number, name)
            elif isinstance(line, str):
                text = _check_text_line(line, number, name)
            else:
                raise TypeError(
                    f"{name}: expected lines of str or bytes, got {type(line).__name__}"
                )
        except DataError as error:
            yield number, error
            continue
        if len(text) > limit:
            yield number, _too_long(limit, name, number)
            continue
        yield number, text


def numbered_lines(source: Source, max_line_length: int | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` pairs lazily, without line endings, decoding UTF-8 strictly.

    Paths are opened in binary and decoded one line at a time, so that invalid UTF-8 is reported
    at its exact line. Binary file objects are read the same way; text file objects and other
    iterables of lines are taken as they come (a text file's decoder works in blocks, so its
    errors can only be placed at or after the line reported). A UTF-8 byte-order mark at the start
    is dropped. File objects are read in bounded chunks, so that a line over the limit is reported
    without being held whole. A file opened from a path is closed when the generator ends or is
    closed; a file object passed in is left open.

    Parameters
    ----------
    source : path or file object or iterable of lines
        Where to read from; line numbers count from where reading starts.
    max_line_length : int, optional
        The longest line accepted, in characters (line ending excluded); default
        :data:`MAX_LINE_LENGTH`.

    Yields
    ------
    tuple of (int, str)
        1-based line number and the line without its ``\\n`` or ``\\r\\n``.

    Raises
    ------
    DataError
        Bytes that are not valid UTF-8, or a line longer than the limit, with file name and line
        number.
    """
    for number, line in numbered_line_items(source, max_line_length):
        if isinstance(line, DataError):
            raise line
        yield number, line


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


class UnwritableError(TaggerError, ValueError):
    """A value a writer refuses because the file would read back differently: a token or tag
    that is empty, or holds a character the format cannot hold (CoNLL: a space, a tab or a line
    break). Raised before anything of the sentence holding it is written."""


_CHARACTER_NAMES = {"\t": "a tab", "\n": "a line break", "\r": "a carriage return", " ": "a space"}


def sentence_label(sentence_index: int, line: int = 0) -> str:
    """``"sentence 3"``, or ``"sentence 3 (line 12)"`` when the line it was read from is known."""
    return f"sentence {sentence_index}" + (f" (line {line})" if line else "")


def check_field(
    value: str,
    what: str,
    sentence_index: int,
    *,
    forbidden: str = "\t\n\r",
    format_name: str = "a line-based file",
    hint: str = "",
    line: int = 0,
    allow_empty: bool = False,
) -> str:
    """Refuse a value that would not read back as itself: empty, holding one of ``forbidden``,
    or holding a lone surrogate (which has no UTF-8 encoding).

    Parameters
    ----------
    value : str
        A token, tag or column value about to be written.
    what : str
        What it is, for the message.
    sentence_index : int
        1-based index of the sentence being written.
    forbidden : str, default tab, line feed and carriage return
        Characters the format cannot hold in a value.
    format_name : str
        The format, for the message.
    hint : str
        Appended to the message (what to do instead).
    line : int
        The line the sentence was read from, for the message (0: unknown).
    allow_empty : bool, default False
        Whether an empty value reads back as itself.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    UnwritableError
        Naming the sentence and the offending value.
    TypeError
        A value that is not a str.
    """
    if not isinstance(value, str):
        raise TypeError(f"{sentence_label(sentence_index, line)}: {what} {value!r} is not a str")
    reason = ""
    if not value:
        reason = "" if allow_empty else "it is empty"
    elif any(character in value for character in forbidden):
        found = next(character for character in forbidden if character in value)
        reason = f"it holds {_CHARACTER_NAMES.get(found, repr(found))}"
    elif not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            reason = "it holds a lone surrogate, which has no UTF-8 encoding"
    if reason:
        raise UnwritableError(
            f"{sentence_label(sentence_index, line)}: {what} {value!r} cannot be written to "
            f"{format_name}: {reason}" + (f"; {hint}" if hint else "")
        )
    return value
