"""Tagging inside data pipelines: lazy, batched, in input order, constant memory.

>>> from tagger import load
>>> from tagger.stream import tag_stream
>>> model = load("ner.tagger")
>>> for result in tag_stream(model, open("sentences.txt")):   # raw lines, or token lists
...     print(result["spans"])

:func:`tag_series` does the same for a pandas column: a column of texts in, a column of spans,
tags or labels out, on the same index.

Each input item is a raw string (split by the model's tokenizer), a list of tokens, or a dict
as a JSONL line holds it (``{"text": ...}`` or ``{"tokens": [...]}``, with any other keys).
For a string or a token list the result is a dict: ``tokens``, ``tags`` and ``spans``
(``start``, ``end`` exclusive, ``label``, ``score``, and for a string ``start_char`` and
``end_char``, where the entity lies in it) for a tagger; ``tokens``, ``label`` and ``proba``
for a classifier. For a dict it is what ``tagger predict`` writes for a JSONL line: a copy of
the dict, every key kept, with the predictions under keys of their own (``pred_tags`` and
``spans``, or ``pred_label`` and ``proba``; ``tokens`` added for raw text; see
:func:`tagger.workflows.prediction_record`). The input is read
a few batches at a time (``workflows.READ_AHEAD``, sorted by length together for little
padding), so an endless iterator works; results come out in input order, one per item (a blank
string gives empty tokens and tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from .records import Record, object_record, text_record


def _records(model, items: Iterable) -> Iterator[Record]:
    tokenizer = model._tokenizer
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            # A line read from a file ends in its newline: not part of the text.
            yield text_record(item.rstrip("\r\n"), number, "<stream>", tokenizer)
        elif isinstance(item, (list, tuple)):
            yield Record(list(item), number, "<stream>")
        elif isinstance(item, Mapping):
            yield object_record(dict(item), number, "<stream>", tokenizer)
        else:
            raise TypeError(f"item {number} must be a string, a list of tokens or a dict, got "
                            f"{type(item).__name__}")


def tag_stream(model, items: Iterable, batch_size: int = 256,
               n_jobs: int | None = None, lemmatizer=None) -> Iterator[dict]:
    """Predictions for ``items``, lazily, batch by batch, in input order.

    Parameters
    ----------
    model : SequenceTagger or SequenceClassifier
        A fitted text model.
    items : iterable of str, of token lists or of dicts
        The inputs (any iterable: a file, a generator, a list).
    batch_size : int
        Items per batch.
    n_jobs : int, optional
        CPU threads for the duration of each batch (restored afterwards); the model's own
        ``n_jobs`` when omitted.
    lemmatizer : Lemmatizer, optional
        Run on each batch after a UPOS tagger: every result also has ``"lemmas"`` (JSON
        records: ``"pred_lemmas"``), one per token.

    Yields
    ------
    dict
        One result per item (see the module docstring).
    """
    from .workflows import predict_records, prediction_record

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if getattr(model, "input_type_", "text") != "text":
        raise TypeError("tag_stream reads text; this model was fitted on numeric sequences "
                        "(call its predict method on them)")
    saved = model.n_jobs
    if n_jobs is not None:
        model.n_jobs = n_jobs
    try:
        for record, prediction in predict_records(model, _records(model, items), batch_size,
                                                  lemmatizer=lemmatizer):
            if record.fields is not None:
                yield prediction_record(record, prediction)
            else:
                yield {"tokens": record.tokens, **prediction}
    finally:
        model.n_jobs = saved


_FIELDS = ("spans", "tags", "label", "proba", "all")


def tag_series(model, series, field: str = "spans", batch_size: int = 256,
               n_jobs: int | None = None):
    """A pandas column of texts (or token lists) in, a column of results out.

    Parameters
    ----------
    model : SequenceTagger or SequenceClassifier
        A fitted text model.
    series : pandas.Series
        The inputs; missing values (None, NaN) give None.
    field : {"spans", "tags", "label", "proba", "all"}
        Which part of each result to keep ("spans" and "tags" for a tagger, "label" and
        "proba" for a classifier; "all" keeps the whole result dict).
    batch_size, n_jobs
        As for :func:`tag_stream`.

    Returns
    -------
    pandas.Series
        On the input's index, named ``field``.
    """
    import pandas as pd

    if field not in _FIELDS:
        raise ValueError(f"field must be one of {', '.join(_FIELDS)}, got {field!r}")
    present = series.notna().to_numpy()
    values = series[present].tolist()
    results = iter(tag_stream(model, values, batch_size, n_jobs))
    out = []
    for ok in present:
        if not ok:
            out.append(None)
            continue
        result = next(results)
        if field != "all" and field not in result:
            raise ValueError(f"this model's results have no {field!r}; they have "
                             f"{', '.join(k for k in result if k != 'tokens')}")
        out.append(result if field == "all" else result[field])
    return pd.Series(out, index=series.index, name=field, dtype=object)
