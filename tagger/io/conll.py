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
    check_field,
    numbered_lines,
    open_destination,
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

    Yields
    ------
    Sentence
        With ``columns`` holding every column of every token line.

    Raises
    ------
    DataError
        With file name and line: a different number of columns than the first token line, an
        empty token or tag, a column index out of range, or bytes that are not UTF-8.
    """
    if separator is not None and (not separator or "\n" in separator or "\r" in separator):
        raise ValueError(
            f"separator must be None or a non-empty string without line breaks, got {separator!r}"
        )
    return _read_conll(source, tag_column, token_column, has_tags, separator)


def _read_conll(
    source: Source, tag_column: int, token_column: int, has_tags: bool, separator: str | None
) -> Iterator[Sentence]:
    name = source_name(source)
    n_columns = 0  # set by the first token line; every other one must match it
    first_token_line = 0
    token_index = tag_index = 0
    tokens: list[str] = []
    tags: list[str] = []
    columns: list[list[str]] = []
    start = 0
    for number, line in numbered_lines(source):
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
    ValueError
        Different numbers of sentences and tag lists, or of tokens and tags, or a value that is
        empty or contains a tab or line break, or an empty sentence (they could not be read back).
        A first column ``-DOCSTART-`` is written as is, and read back as a document boundary.
    """
    count = 0
    with open_destination(dest) as out:
        for count, (sentence, sentence_tags) in enumerate(tag_lists_for(sentences, tags), 1):
            if not sentence.tokens:
                raise ValueError(f"sentence {count} has no tokens; CoNLL cannot represent it")
            rows = sentence.columns if keep_columns and sentence.columns is not None else None
            lines = []
            for position, token in enumerate(sentence.tokens):
                fields = (
                    [check_field(value, "column", count) for value in rows[position]]
                    if rows is not None
                    else [check_field(token, "token", count)]
                )
                if sentence_tags is not None:
                    fields.append(check_field(sentence_tags[position], "tag", count))
                lines.append("\t".join(fields))
            lines.append("\n")
            out.write("\n".join(lines))
    return count
