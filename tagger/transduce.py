"""Command-line jobs of a :class:`~tagger.SequenceTransducer` (spelling to pronunciation, say):
read pairs from TSV, score a model on them, and transduce lines of text.

Pairs file (``--task transduce``, ``tagger evaluate``): UTF-8 TSV without a header, one example
per line, ``source<TAB>target``, then the example's features if the model takes any (one
column each). A column is read as characters, unless one of its cells holds a space: then the
whole column is read as space-separated tokens (``cat<TAB>K AE1 T`` pairs a spelling with
phones). A training file decides so for itself, and its development file is read the same way;
``tagger evaluate`` reads a file as the model reads and writes (a one-phone ``a<TAB>AH0`` is one
token for a model of phones). Blank lines (empty or spaces only) are skipped; any other line
with too few or too many columns, or an empty cell, is an error with file name and line
number.

Prediction (``tagger predict``) reads lines: the source, then a tab and its features if the
model takes any; it writes ``source<TAB>output`` per line, an output of tokens joined by spaces,
and copies blank lines as they are, so that output line N answers input line N.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TextIO

from .errors import DataError, TaggerError


def is_transducer(model) -> bool:
    """Whether ``model`` is a :class:`~tagger.SequenceTransducer` (a lemmatizer included)."""
    from .estimators import SequenceTransducer

    return isinstance(model, SequenceTransducer)


def _column(cells: list[str], tokens: bool | None = None) -> list:
    """A column of cells: token lists when ``tokens`` (or, when it is None, when any cell
    holds a space), else strings."""
    if tokens is None:
        tokens = any(" " in cell for cell in cells)
    return [cell.split() for cell in cells] if tokens else cells


def read_pairs(path: str | os.PathLike, n_features: int | None = None,
               max_line_length: int | None = None,
               tokens: tuple[bool | None, bool | None] = (None, None)
               ) -> tuple[list, list, list | None]:
    """Sources, targets and features (None without feature columns) of a pairs file.

    Parameters
    ----------
    path : path
        The TSV file (see the module docstring).
    n_features : int, optional
        Feature columns each line must have (a fitted model's); None takes what the first
        line has and requires the same of every other.
    max_line_length : int, optional
        The longest line accepted, in characters.
    tokens : pair of bool or None
        Whether the source and the target columns are read as space-separated tokens (True)
        or as characters (False), as a fitted model or a training file's columns say; None
        decides from the column (tokens when a cell holds a space).

    Raises
    ------
    DataError
        A missing file, a line with the wrong number of columns or an empty cell, bytes that
        are not UTF-8, or a file without examples (file name and line number where there is
        one).
    """
    from .io._common import numbered_lines

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("no such file" if not os.path.exists(path) else "not a file", path)
    sources, targets, features = [], [], []
    width = None if n_features is None else 2 + n_features
    for number, line in numbered_lines(path, max_line_length):
        if _blank(line):
            continue
        cells = line.split("\t")
        if width is None:
            width = len(cells)
        if len(cells) != width or width < 2:
            expected = "source<TAB>target" + ("" if width is None or width <= 2 else
                                              f" and {width - 2} feature column(s)")
            raise DataError(f"expected {expected}, got {len(cells)} column(s)", path, number)
        if not all(cell.strip() for cell in cells):
            raise DataError("an empty cell: sources, targets and features must be non-empty",
                            path, number)
        sources.append(cells[0])
        targets.append(cells[1])
        if width > 2:
            features.append(tuple(cells[2:]) if width > 3 else cells[2])
    if not sources:
        raise DataError("no examples: expected lines of source<TAB>target", path)
    return (_column(sources, tokens[0]), _column(targets, tokens[1]),
            (features if width > 2 else None))


def _blank(line: str) -> bool:
    """A line without any cell: empty or spaces only (a tab makes cells, empty ones an
    error)."""
    return not line.strip() and "\t" not in line


def _render(output) -> str:
    return output if isinstance(output, str) else " ".join(output)


def evaluate(model, path, max_line_length: int | None = None) -> dict:
    """Scores of a transducer on a pairs file.

    Returns
    -------
    dict
        ``task`` ("transduce"), ``file``, ``n_examples``; ``accuracy``: exact match;
        ``symbol_error_rate``: edit distance to the target over the target's length, summed
        over the examples (characters, or tokens such as phones); ``confusions``: the most
        frequent (gold, predicted, count) mistakes.
    """
    from collections import Counter

    from .metrics import edit_distance

    n_features = len(model.feature_vocabularies_)
    X, y, features = read_pairs(path, n_features, max_line_length,
                                (model.input_type_ != "chars", model.target_type_ != "chars"))
    predicted = model.predict(X, features=features)
    errors = sum(edit_distance(p, t) for p, t in zip(predicted, y, strict=True))
    length = sum(len(t) for t in y)
    mistakes = Counter((_render(t), _render(p)) for p, t in zip(predicted, y, strict=True)
                       if list(p) != list(t))
    return {"task": "transduce", "file": os.fspath(path), "n_examples": len(X),
            "accuracy": sum(list(p) == list(t) for p, t in zip(predicted, y, strict=True))
            / len(X),
            "symbol_error_rate": errors / max(length, 1),
            "confusions": [{"gold": g, "predicted": p, "count": n}
                           for (g, p), n in mistakes.most_common(10)]}


def predict_lines(model, lines: Iterable[tuple[int, str]], out: TextIO, source: str,
                  batch_size: int = 256) -> int:
    """Transduce numbered lines (see the module docstring) and write ``source<TAB>output``
    lines to ``out``, flushing batch by batch. Returns the examples written.

    Raises
    ------
    DataError
        A line without the model's feature columns, or with features it never saw, with the
        source name and line number.
    """
    n_features = len(model.feature_vocabularies_)
    tokens = model.input_type_ != "chars"
    written = 0
    batch: list[tuple[int, str]] = []

    def flush() -> None:
        nonlocal written
        examples = [(number, line) for number, line in batch if not _blank(line)]
        sources, feats = [], []
        for number, line in examples:
            cells = line.split("\t")
            if len(cells) != 1 + n_features or not all(c.strip() for c in cells):
                want = "a source" + (f" and {n_features} feature column(s)" if n_features
                                     else " (no tab: this model takes no features)")
                raise DataError(f"expected {want}, got {len(cells)} non-empty column(s)"
                                if all(c.strip() for c in cells) else
                                "an empty cell", source, number)
            sources.append(cells[0].split() if tokens else cells[0])
            if len(sources[-1]) > model.max_input_length_:
                raise DataError(f"the source has {len(sources[-1]):,} symbols, over the "
                                f"model's max_input_length_ of {model.max_input_length_:,}",
                                source, number)
            if n_features:
                feats.append(tuple(cells[1:]) if n_features > 1 else cells[1])
        try:
            outputs = iter(model.predict(sources, features=feats if n_features else None)
                           if sources else [])
        except ValueError as exc:  # unknown features
            first = examples[0][0] if examples else 0
            raise DataError(f"{exc} (in the batch from line {first})", source, first) from None
        for _, line in batch:
            if not _blank(line):
                out.write(f"{line.split(chr(9))[0]}\t{_render(next(outputs))}\n")
                written += 1
            else:
                out.write(line + "\n")
        out.flush()
        batch.clear()

    for item in lines:
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    return written


def predict_paths(model, paths: list[str], out: TextIO, batch_size: int = 256,
                  max_line_length: int | None = None) -> int:
    """:func:`predict_lines` over files (``"-"``: standard input), in order."""
    from .records import _lines

    if not is_transducer(model):
        raise TaggerError(f"this is a {type(model).__name__}, not a transducer")

    def checked(items):
        for number, line in items:
            if isinstance(line, DataError):
                raise line
            yield number, line

    count = 0
    for path in paths:
        items, name = _lines(path, max_line_length)
        count += predict_lines(model, checked(items), out, name, batch_size)
    return count


def describe(report: dict[str, Any]) -> list[str]:
    """Lines of :func:`format_report` for a transducer's scores."""
    lines = [f"{report['n_examples']} examples  exact match {report['accuracy']:.4f}  "
             f"symbol error rate {report['symbol_error_rate']:.4f}"]
    if report["confusions"]:
        lines.append("most frequent mistakes (gold -> predicted):")
        lines += [f"  {c['gold']} -> {c['predicted']}  {c['count']}"
                  for c in report["confusions"]]
    return lines
