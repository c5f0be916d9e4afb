"""Tab-separated labeled texts for sequence classification (SST-2 / GLUE style)."""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import DataError
from ._common import LabeledText, Source, numbered_lines, source_name


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

    Yields
    ------
    LabeledText

    Raises
    ------
    DataError
        With file name and line: a line with another number of columns than the header (or the
        first line), a column name or index that does not exist, an empty label or text, or bytes
        that are not UTF-8.
    """
    for column in (text_column, label_column):
        if not isinstance(column, (int, str)) or isinstance(column, bool):
            raise TypeError(f"a column is given by index or name, got {column!r}")
        if isinstance(column, str) and not header:
            raise ValueError(f"column {column!r} is a name, which needs header=True")
    return _read_tsv(source, text_column, label_column, header)


def _read_tsv(
    source: Source, text_column: int | str, label_column: int | str, header: bool
) -> Iterator[LabeledText]:
    name = source_name(source)
    n_columns = 0  # from the header or the first line; every line must match it
    text_index = label_index = 0
    for number, line in numbered_lines(source):
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
