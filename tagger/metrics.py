"""Evaluation: entity-level P/R/F1 (seqeval-compatible), token accuracy, scikit-learn scorers.

Entity scores are computed the way seqeval 1.2.2's default (conlleval-compatible) mode computes
them: entities are read by :func:`tagger.text.schemes.spans_from_tags`, an entity counts as found
when its type, start and end all match, and the per-type, micro, macro and weighted averages use
the same formulas, so the numbers are identical. Undefined ratios (nothing predicted, nothing to
find) are 0.0 and no warning is emitted.

The scorers work on list-of-list targets, where scikit-learn's built-in string scorers fail: they
call ``estimator.predict(X)`` and compare its list of tag lists to ``y``. A tagger scored by one of
scikit-learn's own metrics (``scoring="f1_micro"``) raises :class:`SequenceScoringError`, which
names these scorers, instead of scikit-learn's NaN score and a traceback per fold.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from tagger.errors import DataError
from tagger.text.schemes import detect_scheme, normalize_scheme, spans_from_tags

__all__ = [
    "SCORERS",  # noqa: F822 (made on first use, see __getattr__)
    "SequenceScoringError",
    "classification_report",
    "edit_distance",
    "entity_f1",
    "entity_f1_scorer",  # noqa: F822
    "entity_scores",
    "token_accuracy",
    "token_accuracy_scorer",  # noqa: F822
]

_AVERAGES = ("micro avg", "macro avg", "weighted avg")


def _check_pairs(y_true: Sequence[Sequence[str]],
                 y_pred: Sequence[Sequence[str]]) -> tuple[list, list]:
    """Both sides as lists of sentences, with the same number of tags sentence by sentence."""
    checked = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        y = None if isinstance(y, str) else list(y)
        # A flat list of tags would be read string by string, character by character.
        if y is None or any(isinstance(seq, str) for seq in y):
            raise TypeError(f"{name} must be a list of tag sequences (one per sentence)")
        checked.append(y)
    y_true, y_pred = checked
    if len(y_true) != len(y_pred):
        raise DataError(f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}")
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise DataError(f"sentence {i}: y_true has {len(t)} tags but y_pred has {len(p)}")
    return y_true, y_pred


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, 0.0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    nonzero = denominator != 0
    out[nonzero] = numerator[nonzero] / denominator[nonzero]
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    # Same expression and order of operations as seqeval (2 * p * r / (p + r)), so the floats
    # match bit for bit, not just approximately.
    denom = precision + recall
    denom[denom == 0.0] = 1.0
    return 2.0 * precision * recall / denom


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                  scheme: str | None = None) -> dict[str, dict[str, float | int]]:
    """Entity-level precision, recall, F1 and support, per type and averaged.

    Identical to seqeval's ``classification_report(y_true, y_pred, output_dict=True)`` in its
    default mode, except that undefined values are 0.0 (seqeval gives NaN for the macro average
    when neither side has any entity).

    Parameters
    ----------
    y_true, y_pred : sequence of sequences of str
        Gold and predicted tags, one sequence per sentence, of equal lengths.
    scheme : str, optional
        ``"IOB1"``, ``"IOB2"`` or ``"BIOES"``; detected from ``y_true`` when omitted. The entity
        reading is the same for the three (lenient, as conlleval), so this mainly validates.

    Returns
    -------
    dict
        ``{type: {"precision", "recall", "f1-score", "support"}}`` for every entity type found in
        either side (sorted), then the same for ``"micro avg"``, ``"macro avg"`` and
        ``"weighted avg"``. Scores are floats, supports ints (gold entities).

    Raises
    ------
    DataError
        On length mismatches, tags that are not entity tags, or a scheme without entities
        (``"none"``: use :func:`token_accuracy` for such tags).
    """
    y_true, y_pred = _check_pairs(y_true, y_pred)
    scheme = detect_scheme(y_true) if scheme is None else normalize_scheme(scheme)
    if scheme == "none":
        raise DataError(
            "the gold tags are not entity tags (no IOB1/IOB2/BIOES scheme); entity scores are "
            "undefined, use token_accuracy instead"
        )

    # Entities as (sentence, start, end) sets per type; sets because seqeval counts distinct
    # entities (they cannot repeat within one reading anyway).
    gold: dict[str, set[tuple[int, int, int]]] = {}
    pred: dict[str, set[tuple[int, int, int]]] = {}
    for side, sequences, name in ((gold, y_true, "y_true"), (pred, y_pred, "y_pred")):
        for i, tags in enumerate(sequences):
            try:
                spans = spans_from_tags(tags, scheme)
            except DataError as err:
                raise DataError(f"{name} sentence {i}, {err.message}") from None
            for start, end, label in spans:
                side.setdefault(label, set()).add((i, start, end))

    types = sorted(gold.keys() | pred.keys())
    true_sum = np.array([len(gold.get(t, ())) for t in types], dtype=np.int64)
    pred_sum = np.array([len(pred.get(t, ())) for t in types], dtype=np.int64)
    tp_sum = np.array([len(gold.get(t, set()) & pred.get(t, set())) for t in types],
                      dtype=np.int64)

    precision = _divide(tp_sum, pred_sum)
    recall = _divide(tp_sum, true_sum)
    f1 = _f1(precision, recall)

    report: dict[str, dict[str, float | int]] = {}
    for k, name in enumerate(types):
        report[name] = _row(precision[k], recall[k], f1[k], true_sum[k])

    support = int(true_sum.sum())
    micro_p = _divide(tp_sum.sum(keepdims=True), pred_sum.sum(keepdims=True))
    micro_r = _divide(tp_sum.sum(keepdims=True), true_sum.sum(keepdims=True))
    report["micro avg"] = _row(micro_p[0], micro_r[0], _f1(micro_p, micro_r)[0], support)

    if types:
        report["macro avg"] = _row(np.mean(precision), np.mean(recall), np.mean(f1), support)
    else:
        report["macro avg"] = _row(0.0, 0.0, 0.0, 0)
    if support > 0:
        report["weighted avg"] = _row(np.average(precision, weights=true_sum),
                                      np.average(recall, weights=true_sum),
                                      np.average(f1, weights=true_sum), support)
    else:
        # No gold entity: every weight is zero, so the weighted average is undefined (seqeval: 0).
        report["weighted avg"] = _row(0.0, 0.0, 0.0, 0)
    return report


def _row(precision: float, recall: float, f1: float, support: int) -> dict[str, float | int]:
    return {"precision": float(precision), "recall": float(recall), "f1-score": float(f1),
            "support": int(support)}


def entity_f1(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
              scheme: str | None = None) -> float:
    """Micro-averaged entity F1 (seqeval's default ``f1_score``).

    Parameters
    ----------
    y_true, y_pred : sequence of sequences of str
        Gold and predicted tags, one sequence per sentence.
    scheme : str, optional
        Tag scheme; detected from ``y_true`` when omitted.

    Returns
    -------
    float
        F1 over all entities, 0.0 when there are no gold and no predicted entities.
    """
    return entity_scores(y_true, y_pred, scheme)["micro avg"]["f1-score"]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (strings, or lists of tokens such as phones):
    the fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    a, b = list(a), list(b)
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def token_accuracy(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    """Fraction of tokens whose predicted tag equals the gold tag, over all sentences.

    Parameters
    ----------
    y_true, y_pred : sequence of sequences of str
        Gold and predicted tags (or any labels), one sequence per sentence.

    Returns
    -------
    float
        Correct tokens over all tokens; 0.0 when there are no tokens.

    Raises
    ------
    DataError
        If the number of sentences differs, or a sentence's gold and predicted tags differ in
        length (the message names the sentence index).
    """
    y_true, y_pred = _check_pairs(y_true, y_pred)
    correct = total = 0
    for t, p in zip(y_true, y_pred, strict=True):
        correct += sum(a == b for a, b in zip(t, p, strict=True))
        total += len(t)
    return correct / total if total else 0.0


def classification_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                          scheme: str | None = None, digits: int = 2) -> str:
    """A printable table of :func:`entity_scores` (the layout of seqeval's report).

    Parameters
    ----------
    y_true, y_pred : sequence of sequences of str
        Gold and predicted tags, one sequence per sentence.
    scheme : str, optional
        Tag scheme; detected from ``y_true`` when omitted.
    digits : int, default 2
        Decimals of the scores.

    Returns
    -------
    str
        One line per entity type, then the micro, macro and weighted averages.
    """
    scores = entity_scores(y_true, y_pred, scheme)
    types = [name for name in scores if name not in _AVERAGES]
    width = max([len("weighted avg"), digits, *map(len, types)])
    row_fmt = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}"
    header = ("{:>{width}s} " + " {:>9}" * 4).format(
        "", "precision", "recall", "f1-score", "support", width=width)

    def line(name: str) -> str:
        s = scores[name]
        return row_fmt.format(name, s["precision"], s["recall"], s["f1-score"], s["support"],
                              width=width, digits=digits)

    rows = [line(name) for name in types] + [""] + [line(name) for name in _AVERAGES] + [""]
    return header + "\n\n" + "\n".join(rows)


class SequenceScoringError(BaseException):
    """One of scikit-learn's own metrics was asked to score tag sequences.

    It derives from BaseException, not Exception, on purpose: scikit-learn's model selection
    (``cross_val_score``, ``GridSearchCV``) turns any Exception raised while scoring into a NaN
    score and a warning with a traceback per fold, so a mistake in ``scoring`` would otherwise
    go by as NaN results; this one stops the search with one message.
    """


def _is_tag_sequences(y) -> bool:
    """Whether ``y`` is a list of per-sentence sequences (not a flat list of labels)."""
    if isinstance(y, (str, bytes)) or not isinstance(y, (Sequence, np.ndarray)) or not len(y):
        return False
    first = y[0]
    return isinstance(first, (Sequence, np.ndarray)) and not isinstance(first, (str, bytes))


def _refuse_foreign_scorer(depth: int = 12) -> None:
    """Stop a scikit-learn metric scorer that is about to score a tagger's predictions.

    Called by a tagger's ``predict``/``predict_proba``: when the caller, up to ``depth`` frames
    above, is a scikit-learn scorer of one of scikit-learn's metrics (``scoring="f1_micro"``,
    ``make_scorer(f1_score)``) and its targets are tag sequences, the metric cannot score them
    (scikit-learn rejects sequences of sequences), so fail now with the scorers that can.
    Scorers of other functions (this module's, the user's own) are left alone.

    Raises
    ------
    SequenceScoringError
        Naming :data:`SCORERS`.
    """
    if "sklearn.metrics._scorer" not in sys.modules:  # no scorer can be running
        return
    frame = sys._getframe(1)
    for _ in range(depth):
        frame = frame.f_back
        if frame is None:
            return
        # The scorer's own _score (with the targets), not its helpers around the call.
        if frame.f_globals.get("__name__") != "sklearn.metrics._scorer" or \
                "y_true" not in frame.f_code.co_varnames:
            continue
        scorer = frame.f_locals.get("self")
        metric = getattr(scorer, "_score_func", None)
        if (getattr(metric, "__module__", "") or "").startswith("sklearn.") and \
                _is_tag_sequences(frame.f_locals.get("y_true")):
            name = getattr(metric, "__name__", "a scikit-learn metric")
            raise SequenceScoringError(
                f"scikit-learn's scorer of {name} cannot score tag sequences (it would give NaN "
                "for every fold); use the scorers of tagger.metrics.SCORERS: "
                "scoring=tagger.metrics.SCORERS['entity_f1'] (or 'token_accuracy'), or "
                "scoring=tagger.metrics.SCORERS for both")
        return


# The scorers are made on first use (PEP 562): importing scikit-learn costs about 0.8 s, which
# the command line does not pay when it only tags.
_SCORER_METRICS = {"entity_f1_scorer": entity_f1, "token_accuracy_scorer": token_accuracy}


def __getattr__(name: str):
    """``entity_f1_scorer`` and ``token_accuracy_scorer`` (scikit-learn scorers of
    ``estimator.predict(X)`` against ``y``), and ``SCORERS``, the project's scorers by name
    (``scoring=SCORERS["entity_f1"]``, the command line)."""
    if name in _SCORER_METRICS:
        from sklearn.metrics import make_scorer

        value = make_scorer(_SCORER_METRICS[name])
    elif name == "SCORERS":
        value = {key: globals().get(f"{key}_scorer") or __getattr__(f"{key}_scorer")
                 for key in ("entity_f1", "token_accuracy")}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
