"""Reading input records one by one, for prediction over streams of any size.

A record is one unit of prediction: a sentence of a CoNLL or CoNLL-U file (a block of lines up to
a blank line), a line of JSONL, of TSV or of raw text. Records are parsed one at a time by the
format's reader, so that memory stays constant on any input, and so that with ``on_error="skip"``
a malformed record is reported and skipped while the stream goes on (a reader that raised cannot
resume; one record's lines given to a fresh reader can).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import DataError
from .io import read_conll, read_conllu, read_jsonl
from .io._common import numbered_lines

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
        The raw text (raw-text and TSV input).
    gold : list of str or str or None
        Tags (or the label) the input carries, if any.
    meta : dict
        CoNLL-U comments, extra JSONL keys.
    """

    tokens: list[str]
    line: int
    source: str
    columns: list[list[str]] | None = None
    text: str | None = None
    gold: list[str] | str | None = None
    meta: dict = field(default_factory=dict)


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


def _lines(path: str):
    if path == "-":
        return numbered_lines(sys.stdin.buffer), "<stdin>"
    if not os.path.exists(path):
        raise DataError("no such file", path)
    if os.path.isdir(path):
        raise DataError("is a directory, not a file", path)
    return numbered_lines(path), path


def _relocated(error: DataError, name: str, first_line: int) -> DataError:
    """An error raised by a reader on one record, placed in the whole file."""
    line = first_line + (error.line - 1 if error.line else 0)
    return DataError(error.message, name, line)


def iter_records(path: str, fmt: str, tokenizer=None, on_error: str = "stop",
                 errors: ReadErrors | None = None, tsv_text_column: int = -1,
                 tsv_label_column: int | None = None, tsv_header: bool = False,
                 ) -> Iterator[Record]:
    """Yield the records of one file (``"-"``: standard input), lazily.

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

    Raises
    ------
    DataError
        File missing or malformed (with file name and line), unless skipped.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    tokenizer = tokenizer or str.split
    errors = errors if errors is not None else ReadErrors()
    lines, name = _lines(path)

    def fail(error: DataError) -> None:
        if on_error == "stop":
            raise error
        errors.skipped.append(error)

    if fmt in ("conll", "conllu"):
        yield from _block_records(lines, name, fmt, fail)
        return
    header_pending = fmt == "tsv" and tsv_header
    while True:
        try:
            item = next(lines, None)
        except DataError as exc:  # undecodable bytes: the reader lost its place in the file
            fail(exc)
            return
        if item is None:
            return
        number, line = item
        if header_pending:
            header_pending = False
            continue
        if fmt == "text":
            text = line.strip()
            if text:  # blank lines separate nothing and are not sentences
                yield Record(tokenizer(text), number, name, text=text)
        elif fmt == "jsonl":
            if not line.strip():
                continue
            try:
                sentence = next(read_jsonl([line]))
            except DataError as exc:
                fail(_relocated(exc, name, number))
                continue
            yield Record(sentence.tokens, number, name, gold=sentence.tags, meta=sentence.meta)
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
            yield Record(tokenizer(text), number, name, text=text, gold=gold)


def _block_records(lines, name: str, fmt: str, fail) -> Iterator[Record]:
    """CoNLL and CoNLL-U: one record per block of lines up to a blank line."""
    reader = read_conll if fmt == "conll" else read_conllu
    block: list[str] = []
    first = 0
    while True:
        try:
            item = next(lines, None)
        except DataError as exc:
            fail(exc)
            return
        if item is not None and item[1].strip():
            if not block:
                first = item[0]
            block.append(item[1])
            continue
        if block:
            try:
                sentences = list(reader(block, **({"has_tags": False} if fmt == "conll" and
                                                  _single_column(block) else {})))
            except DataError as exc:
                fail(_relocated(exc, name, first))
                sentences = []
            for sentence in sentences:
                yield Record(sentence.tokens, first, name, columns=sentence.columns,
                             gold=sentence.tags, meta=sentence.meta)
            block = []
        if item is None:
            return


def _single_column(block: list[str]) -> bool:
    # Unlabelled CoNLL input (one token per line) has no tag column to read.
    first = next((line for line in block if not line.startswith("-DOCSTART-")), "")
    return len(first.split("\t") if "\t" in first else first.split()) == 1
