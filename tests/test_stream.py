"""tagger.stream: lazy batched tagging in input order, for data pipelines."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from test_tagger import SMALL, ner_data

from tagger import SequenceClassifier, SequenceTagger
from tagger.stream import tag_stream
from tagger.workflows import READ_AHEAD


@pytest.fixture(scope="module")
def tagger_model():
    X, y = ner_data(80)
    return SequenceTagger(**dict(SMALL, max_epochs=6)).fit(X, y)


def test_results_equal_predict_in_input_order(tagger_model):
    X, _ = ner_data(37, seed=2)
    results = list(tag_stream(tagger_model, X, batch_size=5))
    assert [r["tokens"] for r in results] == X
    assert [r["tags"] for r in results] == tagger_model.predict(X)
    spans = tagger_model.predict_spans(X)
    assert [[(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in results] == [
        [(a, b, c) for a, b, c, _ in row] for row in spans]


def test_raw_strings_and_blank_items(tagger_model):
    results = list(tag_stream(tagger_model, ["John lives in Paris.\n", "", "Mary"]))
    assert results[0]["tokens"] == ["John", "lives", "in", "Paris", "."]
    assert results[1] == {"tokens": [], "tags": [], "spans": []}
    assert len(results) == 3


def test_reads_lazily_from_an_endless_iterator(tagger_model):
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield ["Anna", "lives", "in", "Rome"] if i % 2 else ["we", "met", "John"]

    first = list(itertools.islice(tag_stream(tagger_model, endless(), batch_size=8), 10))
    assert len(first) == 10 and first[0]["tags"] == tagger_model.predict([["we", "met", "John"]])[0]
    assert len(pulled) == 8 * READ_AHEAD  # one read of a few batches, not the endless input


def test_classifier_stream_and_thread_count_restored():
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "awful"]
    X = [[str(w) for w in rng.choice(words, size=4)] for _ in range(60)]
    y = ["pos" if sum(w in ("good", "fine") for w in x) >= 2 else "neg" for x in X]
    model = SequenceClassifier(hidden_size=8, word_dim=8, char_encoder=None, max_epochs=3,
                               random_state=0).fit(X, y)
    before = numba.get_num_threads()
    results = list(tag_stream(model, X[:7], batch_size=3, n_jobs=1))
    assert [r["label"] for r in results] == model.predict(X[:7]).tolist()
    assert all(abs(sum(r["proba"].values()) - 1) < 1e-5 for r in results)
    assert numba.get_num_threads() == before and model.n_jobs is None


def test_bad_items_and_arguments(tagger_model):
    with pytest.raises(TypeError, match="item 2 must be a string, a list of tokens or a dict"):
        list(tag_stream(tagger_model, [["a"], 3]))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        list(tag_stream(tagger_model, [["a"]], batch_size=0))


def test_pandas_column_in_column_out(tagger_model):
    pd = pytest.importorskip("pandas")
    from tagger.stream import tag_series

    texts = pd.Series(["John lives in Paris .", None, "we met Mary"], index=[10, 20, 30])
    spans = tag_series(tagger_model, texts)
    assert list(spans.index) == [10, 20, 30] and spans.name == "spans"
    assert spans[20] is None
    assert [s["label"] for s in spans[10]] == [s[2] for s in tagger_model.predict_spans(
        [["John", "lives", "in", "Paris", "."]])[0]]
    tags = tag_series(tagger_model, texts, "tags")
    assert tags[30] == tagger_model.predict([["we", "met", "Mary"]])[0]
    with pytest.raises(ValueError, match="results have no 'label'"):
        tag_series(tagger_model, texts, "label")
    with pytest.raises(ValueError, match="field must be one of"):
        tag_series(tagger_model, texts, "everything")
