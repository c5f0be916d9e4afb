"""Reading input records one by one, for prediction over streams of any size.

A record is one unit of prediction: a sentence of a CoNLL or CoNLL-U file (a block of lines up to
a blank line), a line of JSONL, of TSV or of raw text. Records are parsed one at a time by the
format's reader, so that memory stays constant on any input, and so that with ``on_error="skip"``
a malformed record is reported and skipped while the stream goes on (a reader that raised cannot
resume; one record's lines given to a fresh reader can).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from .errors import DataError
from .io import read_conll, read_conllu, read_jsonl
from .io._common import numbered_line_items
from .io.jsonl import _string_list
from .text.tokenize import Offsets, make_offset_tokenizer

_CONLL_BLANKS = re.compile(r"[ \t]+")

#: Input formats of ``tagger predict`` and the file extensions that imply them.
INPUT_FORMATS = ("text", "conll", "conllu", "jsonl", "tsv")
INPUT_EXTENSIONS = {".txt": "text", ".conll": "conll", ".conllu": "conllu", ".jsonl": "jsonl",
                    ".tsv": "tsv"}


@dataclass
class Record:
    """One input record.

    Attributes
    ----------
    tokens : list of str
        Its tokens (for raw text and TSV: from the model's tokenizer; may be empty).
    line : int
        1-based line where it starts in its file.
    source : str
        The file name, or ``<stdin>``.
    columns : list of list of str or None
        CoNLL/CoNLL-U input columns of each token, echoed in CoNLL output.
    text : str or None
        The raw text (raw-text lines, ``{"text": ...}`` objects and TSV input), as read: a text
        line without its line ending, leading and trailing spaces kept.
    gold : list of str or str or None
        Tags (or the label) the input carries, if any.
    meta : dict
        CoNLL-U comments, extra JSONL keys.
    fields : dict or None
        The input object of a JSONL record, every key in its order: JSONL output gives it back
        with the predictions added.
    raw : str or None
        The input as read, without line endings. For a JSONL record its line: JSONL output
        writes it back as it is, with the predictions added before its closing brace, so that
        nothing of the input is re-encoded (numbers such as ``1.0e5`` or ``1e400``, escapes,
        repeated keys). For a CoNLL-U sentence its lines joined by ``\n``, comments, multiword
        tokens and empty nodes included: CoNLL-U output writes them back with the predicted
        tags. None otherwise, and for objects given in memory (:func:`tagger.stream.tag_stream`).
    tokenizer : callable or None
        The function that split ``text`` into the tokens, which :attr:`offsets` asks again.
    """

    tokens: list[str]
    line: int
    source: str
    columns: list[list[str]] | None = None
    text: str | None = None
    gold: list[str] | str | None = None
    meta: dict = field(default_factory=dict)
    fields: dict | None = None
    raw: str | None = field(default=None, repr=False)
    tokenizer: Callable[[str], list[str]] | None = field(default=None, repr=False, compare=False)

    @property
    def offsets(self) -> Offsets | None:
        """Where each token lies in ``text`` (``text[start:end]`` is the token) when the tokens
        were split from it; None otherwise, or for a tokenizer function that changes its tokens.

        Found on first use, not when the record is read: most outputs never need them, and
        finding them costs about as much again as splitting the text.
        """
        if "_offsets" not in self.__dict__:
            offsets = None
            if self.text is not None and self.tokenizer is not None:
                tokens, offsets = make_offset_tokenizer(self.tokenizer)(self.text)
                if tokens != self.tokens:
                    offsets = None
            self.__dict__["_offsets"] = offsets
        return self.__dict__["_offsets"]


@dataclass
class ReadErrors:
    """Records skipped under ``on_error="skip"``: their count and where they were."""

    skipped: list[DataError] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.skipped)


def input_format(path: str, given: str | None) -> str:
    """The format named, or implied by the extension of ``path``; raw text for standard input."""
    if given is not None:
        if given not in INPUT_FORMATS:
            raise DataError(f"unknown input format {given!r}; known: {', '.join(INPUT_FORMATS)}")
        return given
    if path == "-":
        return "text"
    extension = os.path.splitext(path)[1].lower()
    if extension not in INPUT_EXTENSIONS:
        raise DataError(f"cannot tell the format from the extension {extension or '(none)'!r}; "
                        f"known: {', '.join(INPUT_EXTENSIONS)} (or give --format)", path)
    return INPUT_EXTENSIONS[extension]


def text_record(text: str, line: int, source: str,
                tokenizer: Callable[[str], list[str]]) -> Record:
    """A record of raw text, split by ``tokenizer`` (a function from a string to its tokens)."""
    return Record(tokenizer(text), line, source, text=text, tokenizer=tokenizer)


def object_record(obj: dict, line: int, source: str,
                  tokenizer: Callable[[str], list[str]]) -> Record:
    """A record of one JSON object (a JSONL line, or a dict given to :func:`tag_stream`).

    An object with ``"tokens"`` (a list of non-empty strings, with optional gold ``"tags"``,
    one per token) is taken as it is; one with ``"text"`` and no ``"tokens"`` is raw text,
    split by ``tokenizer``. Every key is kept in ``fields``.

    Raises
    ------
    DataError
        Neither key, or one of the wrong type, placed at ``source`` and ``line``.
    """
    if "tokens" not in obj:
        text = obj.get("text")
        if "text" not in obj:
            raise DataError('no "tokens" key (a list of tokens) or "text" key (a string the '
                            "model's tokenizer splits)", source, line)
        if not isinstance(text, str):
            raise DataError(f'"text" must be a string, got {type(text).__name__}', source, line)
        record = text_record(text, line, source, tokenizer)
        record.fields = obj
        record.meta = {key: value for key, value in obj.items() if key != "text"}
        return record
    tokens = _string_list(obj["tokens"], "tokens", source, line)
    if not tokens:
        raise DataError('"tokens" is empty', source, line)
    tags = obj.get("tags")
    if tags is not None:
        tags = _string_list(tags, "tags", source, line)
        if len(tags) != len(tokens):
            raise DataError(f"{len(tokens)} tokens but {len(tags)} tags", source, line)
    meta = {key: value for key, value in obj.items() if key not in ("tokens", "tags")}
    return Record(tokens, line, source, gold=tags, meta=meta, fields=obj)


class _NotJSON(ValueError):
    """A constant Python's JSON parser accepts but JSON has not: ``NaN``, ``Infinity``."""


def _refuse_constant(name: str):
    raise _NotJSON(name)


def _jsonl_record(line: str, number: int, name: str, tokenizer) -> Record:
    try:
        obj = json.loads(line, parse_constant=_refuse_constant)
    except _NotJSON as exc:
        raise DataError(f"{exc} is not JSON (JSON has no NaN or infinity: write null or a "
                        f"string)", name, number) from None
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        try:  # the training reader's own words for what is not a JSON object
            next(read_jsonl([line]))
        except DataError as exc:
            raise _relocated(exc, name, number) from None
        raise DataError("expected a JSON object", name, number)
    record = object_record(obj, number, name, tokenizer)
    record.raw = line
    return record


def _lines(path: str, max_line_length: int | None = None):
    """The ``(number, line or DataError)`` items of a file or of standard input, and its name."""
    if path == "-":
        # A process started with file descriptor 0 closed has no sys.stdin at all.
        if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
            raise DataError("standard input is closed; give input files", "<stdin>")
        return numbered_line_items(sys.stdin.buffer, max_line_length, "<stdin>"), "<stdin>"
    if not os.path.exists(path):
        raise DataError("no such file", path)
    if os.path.isdir(path):
        raise DataError("is a directory, not a file", path)
    return numbered_line_items(path, max_line_length), path


def _relocated(error: DataError, name: str, first_line: int) -> DataError:
    """An error raised by a reader on one record, placed in the whole file."""
    line = first_line + (error.line - 1 if error.line else 0)
    return DataError(error.message, name, line)


def iter_records(path: str, fmt: str, tokenizer=None, on_error: str = "stop",
                 errors: ReadErrors | None = None, tsv_text_column: int = -1,
                 tsv_label_column: int | None = None, tsv_header: bool = False,
                 max_line_length: int | None = None) -> Iterator[Record]:
    """Yield the records of one file (``"-"``: standard input), lazily.

    A malformed record is exactly one line (text, JSONL, TSV) or one block of lines up to a blank
    line (CoNLL, CoNLL-U), whatever is wrong in it: bytes that are not UTF-8, a line over the
    length limit, bad content. With ``on_error="skip"`` it is noted in ``errors`` and reading
    goes on at the next record, so that records in = records yielded + ``errors.count``.

    Parameters
    ----------
    path : str
        A file, or ``"-"`` for standard input.
    fmt : {"text", "conll", "conllu", "jsonl", "tsv"}
        Input format.
    tokenizer : callable, optional
        Splits raw text (text and TSV input) into tokens; default: whitespace.
    on_error : {"stop", "skip"}
        Raise on the first malformed record, or skip it and note it in ``errors``.
    errors : ReadErrors, optional
        Receives skipped records.
    tsv_text_column, tsv_label_column : int
        Columns of the text and of the gold label in TSV input.
    tsv_header : bool
        Whether the TSV input starts with a header line.
    max_line_length : int, optional
        The longest line accepted, in characters; default :data:`tagger.io.MAX_LINE_LENGTH`.
        Longer lines are never held whole.

    Raises
    ------
    DataError
        File missing or malformed (with file name and line), unless skipped.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    tokenizer = tokenizer or str.split
    errors = errors if errors is not None else ReadErrors()
    lines, name = _lines(path, max_line_length)

    def fail(error: DataError) -> None:
        if on_error == "stop":
            raise error
        errors.skipped.append(error)

    if fmt in ("conll", "conllu"):
        yield from _block_records(lines, name, fmt, fail, max_line_length)
        return
    header_pending = fmt == "tsv" and tsv_header
    for number, line in lines:
        if isinstance(line, DataError):  # undecodable or too long: this line alone is bad
            header_pending = False
            fail(line)
            continue
        if header_pending:
            header_pending = False
            continue
        if fmt == "text":
            # The line as it is (offsets point into it); blank lines are not sentences.
            if line.strip():
                yield text_record(line, number, name, tokenizer)
        elif fmt == "jsonl":
            if not line.strip():
                continue
            try:
                record = _jsonl_record(line, number, name, tokenizer)
            except DataError as exc:
                fail(exc)
                continue
            yield record
        else:  # tsv
            if not line.strip():
                continue
            cells = line.split("\t")
            try:
                text = cells[tsv_text_column]
                gold = cells[tsv_label_column] if tsv_label_column is not None else None
            except IndexError:
                wanted = [c for c in (tsv_text_column, tsv_label_column) if c is not None]
                fail(DataError(f"expected columns {wanted} but the line has {len(cells)} "
                               f"tab-separated columns", name, number))
                continue
            record = text_record(text, number, name, tokenizer)
            record.gold = gold
            yield record


def _block_records(lines, name: str, fmt: str, fail,
                   max_line_length: int | None = None) -> Iterator[Record]:
    """CoNLL and CoNLL-U: one record per block of lines up to a blank line; a block holding a
    line that cannot be read (not UTF-8, too long) is one malformed record."""
    reader = read_conll if fmt == "conll" else read_conllu
    # Blank as the reader sees it: CoNLL columns may hold any blank but ASCII spaces and tabs.
    strip = " \t" if fmt == "conll" else None
    block: list[str] = []
    bad: DataError | None = None  # the first unreadable line of the block
    first = 0
    for item in chain(lines, [None]):
        if item is not None and (isinstance(item[1], DataError) or item[1].strip(strip)):
            if not block and bad is None:
                first = item[0]
            if isinstance(item[1], DataError):
                bad = bad or item[1]
            else:
                block.append(item[1])
            continue
        if bad is not None:
            fail(bad)
        elif block:
            options = {"has_tags": False} if fmt == "conll" and _single_column(block) else {}
            try:
                sentences = list(reader(block, max_line_length=max_line_length, **options))
            except DataError as exc:
                fail(_relocated(exc, name, first))
                sentences = []
            # A CoNLL-U block is one sentence: its lines are kept for CoNLL-U output.
            raw = "\n".join(block) if fmt == "conllu" and len(sentences) == 1 else None
            for sentence in sentences:
                yield Record(sentence.tokens, first, name, columns=sentence.columns,
                             gold=sentence.tags, meta=sentence.meta, raw=raw)
        block, bad = [], None


def _single_column(block: list[str]) -> bool:
    # Unlabelled CoNLL input (one token per line) has no tag column to read. Columns are split as
    # read_conll splits them: on ASCII spaces and tabs only.
    first = next((line for line in block if not line.startswith("-DOCSTART-")), "")
    return len(_CONLL_BLANKS.split(first.strip(" \t"))) == 1
