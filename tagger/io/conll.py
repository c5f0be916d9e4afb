"""CoNLL column files: one token per line, columns separated by whitespace or tabs, blank lines
between sentences (WNUT17, CoNLL-2003 and the output of most taggers)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from ..errors import DataError
from ._common import (
    Destination,
    Sentence,
    Source,
    UnwritableError,
    check_field,
    line_limit,
    numbered_lines,
    open_destination,
    sentence_label,
    source_name,
    tag_lists_for,
)

#: First column of a document-boundary line in CoNLL-2003-style files.
DOCSTART = "-DOCSTART-"

# Only ASCII spaces and tabs separate columns: str.split() would also split on no-break spaces
# and other Unicode blanks, which occur inside tokens of noisy web text.
_BLANKS = re.compile(r"[ \t]+")


def _split_columns(line: str, separator: str | None) -> list[str]:
    if separator is None:
        return _BLANKS.split(line.strip(" \t"))
    return line.split(separator)


def _resolve_column(index: int, n_columns: int, what: str, name: str, number: int) -> int:
    if not -n_columns <= index < n_columns:
        raise DataError(
            f"{what} column {index} is out of range for a line of {n_columns} columns", name, number
        )
    return index % n_columns


def read_conll(
    source: Source,
    tag_column: int = -1,
    token_column: int = 0,
    has_tags: bool = True,
    separator: str | None = None,
    max_line_length: int | None = None,
) -> Iterator[Sentence]:
    """Read sentences from a CoNLL column file, lazily.

    Blank lines end sentences (any number of them); ``-DOCSTART-`` lines are document boundaries:
    skipped, and they end the current sentence. A last sentence without a blank line after it is
    returned too. Every token line must have as many columns as the first one. Input is strict
    UTF-8; a byte-order mark at the start is dropped.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from. A path is opened lazily, on the first ``next()``.
    tag_column : int, default -1
        Column of the tag (negative counts from the end). Ignored when ``has_tags`` is False.
    token_column : int, default 0
        Column of the token.
    has_tags : bool, default True
        False for untagged input (e.g. text to tag); then ``Sentence.tags`` is None.
    separator : str or None, default None
        None splits on runs of spaces and tabs; ``"\\t"`` splits on each tab only, so that tokens
        may contain spaces.
    max_line_length : int, optional
        The longest line accepted, in characters; default
        :data:`tagger.io.MAX_LINE_LENGTH`. Longer lines are not held whole.

    Yields
    ------
    Sentence
        With ``columns`` holding every column of every token line.

    Raises
    ------
    DataError
        With file name and line: a different number of columns than the first token line, an
        empty token or tag, a column index out of range, a line over the length limit, or bytes
        that are not UTF-8.
    """
    if separator is not None and (not separator or "\n" in separator or "\r" in separator):
        raise ValueError(
            f"separator must be None or a non-empty string without line breaks, got {separator!r}"
        )
    limit = line_limit(max_line_length)
    return _read_conll(source, tag_column, token_column, has_tags, separator, limit)


def _read_conll(
    source: Source,
    tag_column: int,
    token_column: int,
    has_tags: bool,
    separator: str | None,
    limit: int,
) -> Iterator[Sentence]:
    name = source_name(source)
    n_columns = 0  # set by the first token line; every other one must match it
    first_token_line = 0
    token_index = tag_index = 0
    tokens: list[str] = []
    tags: list[str] = []
    columns: list[list[str]] = []
    start = 0
    for number, line in numbered_lines(source, limit):
        if not line.strip(" \t"):
            if tokens:
                yield Sentence(tokens, tags if has_tags else None, columns, start)
                tokens, tags, columns = [], [], []
            continue
        fields = _split_columns(line, separator)
        if fields[0] == DOCSTART:
            # Document boundaries carry no token; their column count (often 1) is not checked.
            if tokens:
                yield Sentence(tokens, tags if has_tags else None, columns, start)
                tokens, tags, columns = [], [], []
            continue
        if not n_columns:
            n_columns, first_token_line = len(fields), number
            token_index = _resolve_column(token_column, n_columns, "token", name, number)
            if has_tags:
                tag_index = _resolve_column(tag_column, n_columns, "tag", name, number)
                if tag_index == token_index:
                    raise DataError(
                        f"the token and the tag are the same column ({token_index}) in a line of "
                        f"{n_columns} column(s); for untagged input use has_tags=False",
                        name,
                        number,
                    )
        elif len(fields) != n_columns:
            raise DataError(
                f"expected {n_columns} columns (as on line {first_token_line}), "
                f"found {len(fields)}",
                name,
                number,
            )
        token = fields[token_index]
        if not token:
            raise DataError(f"empty token in column {token_index}", name, number)
        if not tokens:
            start = number
        tokens.append(token)
        columns.append(fields)
        if has_tags:
            tag = fields[tag_index]
            if not tag:
                raise DataError(f"empty tag in column {tag_index}", name, number)
            tags.append(tag)
    if tokens:
        yield Sentence(tokens, tags if has_tags else None, columns, start)


def write_conll(
    sentences: Iterable[Sentence | Sequence[str]],
    dest: Destination,
    tags: Iterable[Sequence[str]] | None = None,
    keep_columns: bool = True,
) -> int:
    """Write sentences as a tab-separated CoNLL file: one token per line, a blank line after each.

    Each line holds the sentence's input ``columns`` (or just the token when it has none, or when
    ``keep_columns`` is False), then the tag: from ``tags`` when given, else the sentence's own.
    With gold-tagged input and predicted ``tags`` this gives ``token ... gold predicted`` lines,
    as conlleval expects.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write; streamed, one sentence at a time.
    dest : path or file object
        Written as UTF-8 with ``\\n`` newlines.
    tags : iterable of tag lists, optional
        One tag list per sentence (e.g. predictions). When None, each sentence's own tags are
        written, or no tag column for sentences without tags.
    keep_columns : bool, default True
        False writes only ``token<TAB>tag``, dropping the input columns (e.g. to convert formats;
        otherwise ``write_conll(read_conll(f))`` repeats the tag column).

    Returns
    -------
    int
        Number of sentences written.

    Raises
    ------
    UnwritableError
        A value :func:`read_conll` would read back differently, naming the sentence and the value:
        empty, or holding a space, a tab or a line break (CoNLL has no escape; CoNLL-U keeps
        spaces in tokens, JSONL keeps anything), ``-DOCSTART-`` as a first column (a document
        boundary), a byte-order mark starting the file, or a line with another number of columns
        than the first. The sentence is checked whole before any of it is written, so the output
        holds exactly the sentences before it.
    ValueError
        Different numbers of sentences and tag lists, or of tokens and tags, or an empty sentence.
    """
    count = 0
    n_columns = 0  # of the first line written; read_conll requires it of every line
    with open_destination(dest) as out:
        for count, (sentence, sentence_tags) in enumerate(tag_lists_for(sentences, tags), 1):
            if not sentence.tokens:
                raise ValueError(f"sentence {count} has no tokens; CoNLL cannot represent it")
            rows = sentence.columns if keep_columns and sentence.columns is not None else None
            lines = []
            for position, token in enumerate(sentence.tokens):
                values = rows[position] if rows is not None else [token]
                what = "column" if rows is not None else "token"
                fields = [_conll_field(value, what, count, sentence.line) for value in values]
                if sentence_tags is not None:
                    fields.append(
                        _conll_field(sentence_tags[position], "tag", count, sentence.line)
                    )
                _check_line(fields, count, sentence.line, first=count == 1 and position == 0)
                n_columns = n_columns or len(fields)
                if len(fields) != n_columns:
                    raise UnwritableError(
                        f"{sentence_label(count, sentence.line)}: a line of {len(fields)} "
                        f"columns after lines of {n_columns}; read_conll needs the same number "
                        "on every line (are some sentences tagged and others not?)"
                    )
                lines.append("\t".join(fields))
            lines.append("\n")
            out.write("\n".join(lines))
    return count


_NO_ESCAPE = "CoNLL has no escape for it (CoNLL-U keeps spaces in tokens, JSONL keeps anything)"


def _conll_field(value: str, what: str, sentence_index: int, line: int) -> str:
    # The reader splits columns on runs of spaces and tabs, so a space would split a value.
    return check_field(
        value,
        what,
        sentence_index,
        forbidden=" \t\n\r",
        format_name="CoNLL",
        hint=_NO_ESCAPE,
        line=line,
    )


def _check_line(fields: list[str], sentence_index: int, line: int, first: bool) -> None:
    where = sentence_label(sentence_index, line)
    if fields[0] == DOCSTART:
        raise UnwritableError(
            f"{where}: first column {DOCSTART!r} cannot be written to CoNLL: a line "
            "starting with it reads back as a document boundary, not as a token"
        )
    if first and fields[0].startswith("\ufeff"):
        raise UnwritableError(
            f"{where}: first column {fields[0]!r} cannot be written to CoNLL: at the start "
            "of a file U+FEFF reads back as a byte-order mark, not as text"
        )
