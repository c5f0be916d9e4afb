"""Entity metrics against seqeval (the oracle), token accuracy, and the scikit-learn scorers."""

from __future__ import annotations

import math
import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate

from tagger.errors import DataError
from tagger.metrics import (
    SCORERS,
    SequenceScoringError,
    _refuse_foreign_scorer,
    classification_report,
    entity_f1,
    entity_f1_scorer,
    entity_scores,
    token_accuracy,
    token_accuracy_scorer,
)
from tagger.text import Span, convert_tags, tags_from_spans

seqeval_metrics = pytest.importorskip(
    "seqeval.metrics", reason="seqeval (the oracle) is not installed"
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TYPES = ["PER", "LOC", "creative-work"]
SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)


# --------------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------------


def seqeval_call(func, *args, **kwargs):
    """A seqeval function in its default mode, quietly (it warns on zero division and NaN means)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return func([list(s) for s in args[0]], [list(s) for s in args[1]], **kwargs)


def assert_same_as_seqeval(y_true, y_pred, scheme=None):
    """Our report equals seqeval's, key for key and float for float (NaN there = 0.0 here)."""
    ours = entity_scores(y_true, y_pred, scheme)
    theirs = seqeval_call(seqeval_metrics.classification_report, y_true, y_pred,
                          output_dict=True)
    assert list(ours) == list(theirs)
    for name, row in theirs.items():
        for key, value in row.items():
            expected = 0.0 if isinstance(value, float) and math.isnan(value) else value
            assert ours[name][key] == expected, (name, key, ours[name][key], value)
            assert type(ours[name][key]) is (int if key == "support" else float)
    micro = ours["micro avg"]
    assert micro["precision"] == seqeval_call(seqeval_metrics.precision_score, y_true, y_pred)
    assert micro["recall"] == seqeval_call(seqeval_metrics.recall_score, y_true, y_pred)
    assert micro["f1-score"] == seqeval_call(seqeval_metrics.f1_score, y_true, y_pred)
    assert entity_f1(y_true, y_pred, scheme) == micro["f1-score"]
    return ours


# --------------------------------------------------------------------------------------------------
# Hand-written cases
# --------------------------------------------------------------------------------------------------

PAIRS = {
    "seqeval docstring": (
        [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
        [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]],
    ),
    "I- starts chunks": (
        [["O", "I-PER", "I-PER", "O", "I-LOC"]],
        [["O", "B-PER", "I-PER", "O", "I-LOC"]],
    ),
    "type change inside a chunk": (
        [["B-PER", "I-PER", "I-PER"]],
        [["B-PER", "I-LOC", "I-LOC"]],
    ),
    "hyphenated types": (
        [["B-creative-work", "I-creative-work", "O", "B-person"]],
        [["B-creative-work", "I-creative-work", "O", "B-creative-work"]],
    ),
    "BIOES": (
        [["B-PER", "I-PER", "E-PER", "S-LOC", "O"], ["S-PER", "B-LOC", "E-LOC"]],
        [["B-PER", "E-PER", "E-PER", "S-LOC", "O"], ["S-PER", "B-LOC", "I-LOC"]],
    ),
    "empty sentences": ([[], ["B-PER"], []], [[], ["B-PER"], []]),
    "gold all O": ([["O", "O"], ["O"]], [["B-PER", "O"], ["I-LOC"]]),
    "predictions all O": ([["B-PER", "O"], ["I-LOC"]], [["O", "O"], ["O"]]),
    "type only predicted": ([["B-PER", "O"]], [["B-PER", "B-LOC"]]),
    "entity across no boundary": ([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]]),
}


@pytest.mark.parametrize("pair", PAIRS.values(), ids=PAIRS.keys())
def test_entity_scores_match_seqeval_on_edge_cases(pair):
    y_true, y_pred = pair
    assert_same_as_seqeval(y_true, y_pred)
    assert classification_report(y_true, y_pred, digits=3) == seqeval_call(
        seqeval_metrics.classification_report, y_true, y_pred, digits=3)


def test_entity_scores_known_values():
    y_true, y_pred = PAIRS["seqeval docstring"]
    scores = entity_scores(y_true, y_pred)
    assert scores["MISC"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert scores["PER"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 1}
    for avg in ("micro avg", "macro avg", "weighted avg"):
        assert scores[avg] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    assert entity_f1([["B-X", "I-X", "O", "B-Y"]], [["B-X", "I-X", "O", "O"]]) == pytest.approx(
        2 / 3)


def test_no_entities_anywhere_scores_zero():
    # seqeval's macro average is NaN here (mean of nothing) and its text report crashes; ours
    # reports zeros and prints the averages.
    y = [["O", "O"], []]
    scores = entity_scores(y, y)
    assert list(scores) == ["micro avg", "macro avg", "weighted avg"]
    for row in scores.values():
        assert row == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert math.isnan(seqeval_call(seqeval_metrics.classification_report, y, y,
                                   output_dict=True)["macro avg"]["f1-score"])
    report = classification_report(y, y)
    assert "weighted avg" in report and "0.00" in report


def test_scheme_argument_and_errors():
    y_true, y_pred = PAIRS["BIOES"]
    assert entity_scores(y_true, y_pred, "BIOES") == entity_scores(y_true, y_pred)
    assert entity_scores(y_true, y_pred, "iob2") == entity_scores(y_true, y_pred)
    with pytest.raises(DataError, match="token_accuracy"):
        entity_scores([["NOUN", "VERB"]], [["NOUN", "NOUN"]])
    with pytest.raises(DataError, match="y_pred sentence 1, tag 0"):
        entity_scores([["B-X"], ["O"]], [["B-X"], ["<pad>"]])
    assert entity_scores(y_true, y_pred, "BILOU") == entity_scores(y_true, y_pred)  # spaCy's name
    with pytest.raises(ValueError, match="unknown tag scheme"):
        entity_scores([["B-X"]], [["B-X"]], scheme="BILOUX")
    with pytest.raises(DataError, match="sentence 0: y_true has 2 tags but y_pred has 1"):
        entity_f1([["B-X", "O"]], [["B-X"]])


# --------------------------------------------------------------------------------------------------
# Random tag sequences (hypothesis)
# --------------------------------------------------------------------------------------------------


@st.composite
def true_pred_pairs(draw):
    """Gold and predicted sentences of equal lengths, any prefixes B/I/O/E/S, 2-3 types."""
    types = TYPES[: draw(st.integers(2, 3))]
    tag = st.one_of(
        st.just("O"),
        st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BIES"), st.sampled_from(types)),
    )
    lengths = draw(st.lists(st.integers(0, 10), min_size=1, max_size=5))
    y_true = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    y_pred = [draw(st.lists(tag, min_size=n, max_size=n)) for n in lengths]
    return y_true, y_pred


@SETTINGS
@given(true_pred_pairs(), st.sampled_from([None, "IOB1", "IOB2", "BIOES"]))
def test_entity_scores_match_seqeval_on_random_tags(pair, scheme):
    y_true, y_pred = pair
    assert_same_as_seqeval(y_true, y_pred, scheme)


@SETTINGS
@given(true_pred_pairs())
def test_report_text_matches_seqeval_on_random_tags(pair):
    y_true, y_pred = pair
    if len(entity_scores(y_true, y_pred)) == 3:
        return  # no entity type at all: seqeval cannot print that report (tested above)
    assert classification_report(y_true, y_pred) == seqeval_call(
        seqeval_metrics.classification_report, y_true, y_pred)


# --------------------------------------------------------------------------------------------------
# The WNUT17 dev set as oracle input
# --------------------------------------------------------------------------------------------------


def read_two_column_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """token<TAB>tag lines, a blank line between sentences."""
    sentences, tags, tokens, labels = [], [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append(tokens)
                tags.append(labels)
            tokens, labels = [], []
            continue
        token, label = line.split("\t")
        tokens.append(token)
        labels.append(label)
    if tokens:
        sentences.append(tokens)
        tags.append(labels)
    return sentences, tags


@pytest.fixture(scope="module")
def wnut_dev():
    path = DATA / "wnut17" / "dev.conll"
    if not path.exists():
        pytest.skip(f"shared data folder absent: {path} not found")
    sentences, tags = read_two_column_conll(path)
    assert len(sentences) == 1009  # the published dev split
    return tags


def corrupt(tags: list[list[str]], rate: float, seed: int) -> list[list[str]]:
    """Tagger-like errors: wrong type, B/I swapped, missed, invented, and stray E-/S- prefixes."""
    rng = np.random.default_rng(seed)
    types = sorted({t[2:] for seq in tags for t in seq if t != "O"})
    out = []
    for seq in tags:
        new = list(seq)
        for i, tag in enumerate(seq):
            if rng.random() >= rate:
                continue
            kind = rng.integers(5)
            type_ = types[rng.integers(len(types))]
            if kind == 0:
                new[i] = "O"
            elif kind == 1 and tag != "O":
                new[i] = ("I-" if tag[0] == "B" else "B-") + tag[2:]
            elif kind == 2 and tag != "O":
                new[i] = tag[:2] + type_
            elif kind == 3:
                new[i] = "BIES"[rng.integers(4)] + "-" + type_
            else:
                new[i] = ("B-" if rng.random() < 0.5 else "I-") + type_
        out.append(new)
    return out


def test_wnut_dev_gold_against_itself(wnut_dev):
    scores = assert_same_as_seqeval(wnut_dev, wnut_dev)
    assert scores["micro avg"]["f1-score"] == 1.0
    # Well-formed IOB2: one B- per entity.
    assert scores["micro avg"]["support"] == sum(t[0] == "B" for seq in wnut_dev for t in seq)
    assert set(scores) - {"micro avg", "macro avg", "weighted avg"} == {
        "corporation", "creative-work", "group", "location", "person", "product"}


@pytest.mark.parametrize(("rate", "seed"), [(0.02, 0), (0.1, 1), (0.3, 2), (0.9, 3)])
def test_wnut_dev_corrupted_matches_seqeval(wnut_dev, rate, seed):
    y_pred = corrupt(wnut_dev, rate, seed)
    scores = assert_same_as_seqeval(wnut_dev, y_pred)
    assert 0.0 < scores["micro avg"]["f1-score"] < 1.0
    assert classification_report(wnut_dev, y_pred, digits=4) == seqeval_call(
        seqeval_metrics.classification_report, wnut_dev, y_pred, digits=4)
    assert token_accuracy(wnut_dev, y_pred) == seqeval_call(
        seqeval_metrics.accuracy_score, wnut_dev, y_pred)


@pytest.mark.parametrize("scheme", ["IOB1", "BIOES"])
def test_wnut_dev_in_other_schemes(wnut_dev, scheme):
    """Converted gold and predictions: same entities, so the same scores, still equal to seqeval."""
    y_pred = corrupt(wnut_dev, 0.1, 7)
    gold = [convert_tags(seq, "IOB2", scheme) for seq in wnut_dev]
    pred = [convert_tags(seq, "IOB2", scheme) for seq in y_pred]
    assert assert_same_as_seqeval(gold, pred, scheme) == entity_scores(wnut_dev, y_pred)


# --------------------------------------------------------------------------------------------------
# Token accuracy
# --------------------------------------------------------------------------------------------------


def test_token_accuracy_values():
    y_true = [["O", "B-X", "I-X"], [], ["NOUN"]]
    y_pred = [["O", "B-X", "O"], [], ["VERB"]]
    assert token_accuracy(y_true, y_pred) == 0.5
    assert token_accuracy([[]], [[]]) == 0.0
    assert token_accuracy(np.array([["A", "B"]]), [["A", "A"]]) == 0.5  # any sequence types


def test_token_accuracy_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="sentence 1: y_true has 2 tags but y_pred has 3"):
        token_accuracy([["O"], ["O", "O"]], [["O"], ["O", "O", "O"]])
    with pytest.raises(DataError, match="y_true has 2 sentences but y_pred has 1"):
        token_accuracy([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError):  # DataError is a ValueError, as sklearn users expect
        token_accuracy([["O"]], [[]])
    with pytest.raises(TypeError, match="list of tag sequences"):
        token_accuracy(["O", "O"], ["O", "O"])


# --------------------------------------------------------------------------------------------------
# scikit-learn scorers
# --------------------------------------------------------------------------------------------------


class LexiconTagger(BaseEstimator):
    """Tags each word with its most frequent training tag; unseen words get ``unknown``."""

    def __init__(self, unknown="O"):
        self.unknown = unknown

    def fit(self, X, y):
        counts: dict[str, Counter] = {}
        for tokens, tags in zip(X, y, strict=True):
            for word, tag in zip(tokens, tags, strict=True):
                counts.setdefault(word, Counter())[tag] += 1
        self.lexicon_ = {word: c.most_common(1)[0][0] for word, c in counts.items()}
        return self

    def predict(self, X):
        return [[self.lexicon_.get(w, self.unknown) for w in tokens] for tokens in X]


def toy_corpus(n: int = 60, seed: int = 0):
    """Sentences whose entity words are partly ambiguous and partly unseen, so scores are
    strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    words = {"PER": ["ann", "bob", "cy", "may"], "LOC": ["rome", "oslo", "may", "nice"]}
    filler = ["the", "a", "went", "to", "nice", "saw"]
    X, y = [], []
    for _ in range(n):
        length = int(rng.integers(3, 9))
        spans, pos = [], int(rng.integers(0, 2))
        while pos < length - 1:
            size = int(rng.integers(1, 3))
            spans.append(Span(pos, pos + size, ["PER", "LOC"][rng.integers(2)]))
            pos += size + int(rng.integers(0, 3))
        tags = tags_from_spans(spans, length, "IOB2")
        tokens = [filler[rng.integers(len(filler))] for _ in range(length)]
        for s in spans:
            for i in range(s.start, s.end):
                pool = words[s.label] + [f"w{rng.integers(1000)}"]  # sometimes never seen
                tokens[i] = pool[rng.integers(len(pool))]
        X.append(tokens)
        y.append(tags)
    return X, y


def manual_cv(estimator, X, y, metric, n_splits=3):
    scores = []
    for train, test in KFold(n_splits).split(X):
        model = estimator.fit([X[i] for i in train], [y[i] for i in train])
        scores.append(metric([y[i] for i in test], model.predict([X[i] for i in test])))
    return np.array(scores)


@pytest.mark.parametrize(
    ("scorer", "metric", "oracle"),
    [
        (entity_f1_scorer, entity_f1, "f1_score"),
        (token_accuracy_scorer, token_accuracy, "accuracy_score"),
    ],
)
def test_scorers_in_cross_val_score(scorer, metric, oracle):
    X, y = toy_corpus()
    got = cross_val_score(LexiconTagger(), X, y, scoring=scorer, cv=3)
    expected = manual_cv(LexiconTagger(), X, y, metric)
    np.testing.assert_array_equal(got, expected)
    oracle_scores = manual_cv(
        LexiconTagger(), X, y, lambda t, p: seqeval_call(getattr(seqeval_metrics, oracle), t, p))
    np.testing.assert_array_equal(got, oracle_scores)
    assert np.all((got > 0) & (got < 1))


def test_scorers_by_name_and_multimetric():
    X, y = toy_corpus()
    assert set(SCORERS) == {"entity_f1", "token_accuracy"}
    results = cross_validate(LexiconTagger(), X, y, scoring=SCORERS, cv=3)
    np.testing.assert_array_equal(results["test_entity_f1"],
                                  manual_cv(LexiconTagger(), X, y, entity_f1))
    np.testing.assert_array_equal(results["test_token_accuracy"],
                                  manual_cv(LexiconTagger(), X, y, token_accuracy))


def test_grid_search_with_entity_f1_scorer():
    X, y = toy_corpus()
    search = GridSearchCV(LexiconTagger(), {"unknown": ["O", "B-LOC", "B-PER"]},
                          scoring=entity_f1_scorer, cv=3)
    search.fit(X, y)
    for params, mean in zip(search.cv_results_["params"],
                            search.cv_results_["mean_test_score"], strict=True):
        assert mean == pytest.approx(
            manual_cv(LexiconTagger(**params), X, y, entity_f1).mean(), abs=1e-15)
    best = max(search.cv_results_["params"],
               key=lambda p: manual_cv(LexiconTagger(**p), X, y, entity_f1).mean())
    assert search.best_params_ == best
    assert search.score(X, y) == entity_f1(y, search.best_estimator_.predict(X))


def test_scorers_pickle():
    # joblib ships scorers to worker processes (n_jobs > 1).
    for scorer in SCORERS.values():
        assert pickle.loads(pickle.dumps(scorer))._score_func is scorer._score_func


class GuardedLexiconTagger(LexiconTagger):
    """A tagger that, as SequenceTagger does, refuses scikit-learn's own metric scorers."""

    def predict(self, X):
        _refuse_foreign_scorer()
        return super().predict(X)


@pytest.mark.parametrize("scoring", ["f1_micro", "accuracy", make_scorer(
    __import__("sklearn.metrics", fromlist=["f1_score"]).f1_score, average="macro")])
def test_scikit_learn_metrics_on_tag_sequences_raise_one_error(scoring):
    X, y = toy_corpus()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one "Scoring failed" warning per fold
        with pytest.raises(SequenceScoringError, match=r"tagger\.metrics\.SCORERS"):
            cross_val_score(GuardedLexiconTagger(), X, y, scoring=scoring, cv=3)
    # Unguarded, scikit-learn gives NaN scores.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(cross_val_score(LexiconTagger(), X, y, scoring=scoring, cv=3)).all()


def test_the_projects_and_the_users_scorers_pass_the_guard():
    X, y = toy_corpus()
    got = cross_val_score(GuardedLexiconTagger(), X, y, scoring=SCORERS["entity_f1"], cv=3)
    np.testing.assert_array_equal(got, manual_cv(LexiconTagger(), X, y, entity_f1))
    flat = make_scorer(lambda t, p: token_accuracy(t, p))  # the user's own function
    assert np.isfinite(cross_val_score(GuardedLexiconTagger(), X, y, scoring=flat, cv=3)).all()
    assert GuardedLexiconTagger().fit(X, y).predict(X[:2])  # outside any scorer
