"""Tab-separated labeled texts for sequence classification (SST-2 / GLUE style)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..errors import DataError
from ._common import (
    Destination,
    LabeledText,
    Source,
    UnwritableError,
    check_field,
    line_limit,
    numbered_lines,
    open_destination,
    source_name,
)


def _column_index(column: int | str, header: list[str] | None, what: str, name: str) -> int:
    if isinstance(column, str):
        # read_tsv has already refused names without a header.
        assert header is not None
        if column not in header:
            raise DataError(
                f"no {what} column {column!r} in the header (columns: {', '.join(header)})", name, 1
            )
        return header.index(column)
    return column


def read_tsv(
    source: Source,
    text_column: int | str = -1,
    label_column: int | str = 0,
    header: bool = True,
    max_line_length: int | None = None,
) -> Iterator[LabeledText]:
    """Read labeled texts from a tab-separated file, lazily, one text per line.

    The text is split on whitespace into tokens (SST-2 is already tokenized). Quotes have no
    special meaning (GLUE files are written without quoting). Blank lines are skipped.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from. A path is opened lazily, on the first ``next()``.
    text_column : int or str, default -1
        Column of the text: an index (negative counts from the end) or, with a header, a name.
    label_column : int or str, default 0
        Column of the label, likewise.
    header : bool, default True
        Whether the first line names the columns (it is not a text).
    max_line_length : int, optional
        The longest line accepted, in characters; default :data:`tagger.io.MAX_LINE_LENGTH`.

    Yields
    ------
    LabeledText

    Raises
    ------
    DataError
        With file name and line: a line with another number of columns than the header (or the
        first line), a column name or index that does not exist, an empty label or text, a line
        over the length limit, or bytes that are not UTF-8.
    """
    for column in (text_column, label_column):
        if not isinstance(column, (int, str)) or isinstance(column, bool):
            raise TypeError(f"a column is given by index or name, got {column!r}")
        if isinstance(column, str) and not header:
            raise ValueError(f"column {column!r} is a name, which needs header=True")
    limit = line_limit(max_line_length)
    return _read_tsv(source, text_column, label_column, header, limit)


def _read_tsv(
    source: Source, text_column: int | str, label_column: int | str, header: bool, limit: int
) -> Iterator[LabeledText]:
    name = source_name(source)
    n_columns = 0  # from the header or the first line; every line must match it
    text_index = label_index = 0
    for number, line in numbered_lines(source, limit):
        if not line.strip():
            continue
        fields = line.split("\t")
        if not n_columns:
            n_columns = len(fields)
            names = fields if header else None
            text_index = _column_index(text_column, names, "text", name)
            label_index = _column_index(label_column, names, "label", name)
            for index, what in ((text_index, "text"), (label_index, "label")):
                if not -n_columns <= index < n_columns:
                    raise DataError(
                        f"{what} column {index} is out of range for {n_columns} columns",
                        name,
                        number,
                    )
            if text_index % n_columns == label_index % n_columns:
                raise DataError("the text and the label are the same column", name, number)
            if header:
                continue
        elif len(fields) != n_columns:
            raise DataError(f"expected {n_columns} columns, found {len(fields)}", name, number)
        label = fields[label_index].strip()
        if not label:
            raise DataError("empty label", name, number)
        tokens = fields[text_index].split()
        if not tokens:
            raise DataError("empty text", name, number)
        yield LabeledText(tokens, label, number)


def write_tsv(
    texts: Iterable[LabeledText],
    dest: Destination,
    labels: Iterable[str] | None = None,
    header: bool = True,
) -> int:
    """Write labeled texts as ``label<TAB>text`` lines, as :func:`read_tsv` reads them by default.

    The text is the tokens joined by single spaces.

    Parameters
    ----------
    texts : iterable of LabeledText
        What to write; streamed, one text at a time.
    dest : path or file object
        Written as UTF-8 with ``\\n`` newlines.
    labels : iterable of str, optional
        One label per text (e.g. predictions), instead of the texts' own.
    header : bool, default True
        Whether to start with the header line ``label<TAB>text``.

    Returns
    -------
    int
        Number of texts written.

    Raises
    ------
    UnwritableError
        A value :func:`read_tsv` would read back differently, naming the text and the value: an
        empty text or token, a token holding whitespace (the text is split on it), a label that
        is empty, holds a tab or a line break, or starts or ends with whitespace (labels are
        stripped). Checked before anything of the text is written.
    ValueError
        Different numbers of texts and labels.
    """
    label_iterator = iter(labels) if labels is not None else None
    count = 0
    with open_destination(dest) as out:
        if header:
            out.write("label\ttext\n")
        for count, text in enumerate(texts, 1):
            label = text.label if label_iterator is None else next(label_iterator, None)
            if label is None:
                raise ValueError(f"labels has fewer labels than texts ({count - 1})")
            out.write(_tsv_line(text, label, count, first=count == 1 and not header))
        if label_iterator is not None and next(label_iterator, None) is not None:
            raise ValueError(f"labels has more labels than texts ({count})")
    return count


def _tsv_line(text: LabeledText, label: str, index: int, first: bool) -> str:
    where = f"text {index}" + (f" (line {text.line})" if text.line else "")
    label = check_field(label, "label", index, format_name="TSV", line=text.line)
    if label != label.strip() or (first and label.startswith("\ufeff")):
        raise UnwritableError(
            f"{where}: label {label!r} cannot be written to TSV: labels are read stripped of "
            "whitespace (and a byte-order mark at the start of a file)"
        )
    if not text.tokens:
        raise UnwritableError(f"{where}: an empty text cannot be written to TSV")
    for token in _tokens(text.tokens, where):
        if not token or any(character.isspace() for character in token):
            raise UnwritableError(
                f"{where}: token {token!r} cannot be written to TSV: the text is split on "
                "whitespace into tokens, and TSV has no escape for it (JSONL keeps anything)"
            )
        check_field(token, "token", index, format_name="TSV", line=text.line)
    return f"{label}\t{' '.join(text.tokens)}\n"


def _tokens(tokens: Sequence[str], where: str) -> Sequence[str]:
    if isinstance(tokens, str):
        # " ".join("word") would silently write one character per token.
        raise TypeError(f"{where}: tokens is a str; a text is a list of tokens")
    return tokens
