"""SequenceTagger: the scikit-learn contract, training behaviour, predictions and model files."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks

import tagger
from tagger import SequenceTagger
from tagger.errors import ModelFileError
from tagger.metrics import SCORERS, SequenceScoringError, entity_f1_scorer
from tagger.text import schemes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A tiny NER task: names and places from small lexicons in a few sentence frames.
PEOPLE = ["John", "Mary", "Anna", "Peter", "Lucy", "Omar", "Chen", "Sofia"]
PLACES = [["Paris"], ["New", "York"], ["Rome"], ["Lagos"], ["San", "Diego"], ["Oslo"]]


def ner_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        person = PEOPLE[rng.integers(len(PEOPLE))]
        place = PLACES[rng.integers(len(PLACES))]
        loc_tags = ["B-LOC"] + ["I-LOC"] * (len(place) - 1)
        if rng.random() < 0.5:
            X.append([person, "lives", "in", *place, "."])
            y.append(["B-PER", "O", "O", *loc_tags, "O"])
        else:
            X.append(["we", "met", person, "in", *place])
            y.append(["O", "O", "B-PER", "O", *loc_tags])
    return X, y


SMALL = dict(hidden_size=16, word_dim=16, char_dim=8, char_hidden_size=8, shape_dim=4,
             batch_size=8, max_epochs=12, learning_rate=0.01, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X, y = ner_data(120)
    return SequenceTagger(**SMALL).fit(X, y), X, y


def test_learns_a_small_ner_task(fitted):
    model, X, y = fitted
    X_test, y_test = ner_data(40, seed=1)
    assert model.score(X_test, y_test) > 0.95
    assert model.classes_ == ["B-LOC", "B-PER", "I-LOC", "O"]
    assert model.tag_scheme_ == "IOB2" and model.tags_ == sorted(model.tags_)
    assert len(model.history_) == model.history_[-1]["epoch"] >= model.best_epoch_ >= 1
    assert {"loss", "dev_score", "seconds", "tokens_per_s"} <= set(model.history_[0])


def test_predictions_shapes_and_order(fitted):
    model, X, _ = fitted
    X_mixed = [X[0], [], ["Unseenname", "lives", "in", "Kyoto"], X[1]]
    tags = model.predict(X_mixed)
    assert [len(t) for t in tags] == [len(s) for s in X_mixed]
    proba = model.predict_proba(X_mixed)
    assert [p.shape for p in proba] == [(len(s), 4) for s in X_mixed]
    for p in proba:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # A sentence tagged alone or in a batch gets the same tags.
    assert model.predict([X[1]])[0] == tags[3]
    # The best tag by marginals agrees with Viterbi on this easy task.
    assert [model.classes_[k] for k in proba[0].argmax(1)] == tags[0]


def test_raw_strings_are_tokenized(fitted):
    model, _, _ = fitted
    assert model.predict(["John lives in New York."]) == model.predict(
        [["John", "lives", "in", "New", "York", "."]])
    assert model.predict(["John lives in New York."])[0][:1] == ["B-PER"]


def test_iob2_output_is_well_formed_and_spans_match(fitted):
    model, X, _ = fitted
    for tags in model.predict(X[:30]):
        for prev, tag in zip(["O"] + tags, tags, strict=False):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:] and prev != "O"
    spans = model.predict_spans([["Mary", "lives", "in", "New", "York", "."]])[0]
    assert [(s, e, label) for s, e, label, _ in spans] == [(0, 1, "PER"), (3, 5, "LOC")]
    assert all(0.5 < score <= 1.0 for *_, score in spans)


def test_internal_paths_read_into_user_tags_as_through_the_entities(fitted):
    model, X, _ = fitted
    assert (model.internal_scheme_, model.tag_scheme_) == ("BIOES", "IOB2")
    rng = np.random.default_rng(0)
    paths = [rng.integers(0, len(model.tags_), size=n) for n in rng.integers(1, 7, size=300)]
    paths += model._run(X[:50], marginals=False)[0]  # Viterbi paths: well-formed
    well_formed = 0
    for path in paths:
        internal = [model.tags_[k] for k in path]
        expected = schemes.convert_tags(internal, "BIOES", "IOB2")
        assert model._to_user(path) == expected, internal
        well_formed += schemes.convert_tags(expected, "IOB2", "BIOES") == internal
    assert 50 <= well_formed < len(paths)  # both ways of reading were taken


def test_span_scores_are_mean_probabilities_of_the_predicted_tags(fitted):
    model, X, _ = fitted
    tags, spans = model.predict_with_spans(X[:40])
    assert tags == model.predict(X[:40])
    column = {c: i for i, c in enumerate(model.classes_)}
    checked = 0
    for sent_tags, sent_spans, proba in zip(tags, spans, model.predict_proba(X[:40]),
                                            strict=True):
        for start, end, _, score in sent_spans:
            want = np.mean([proba[t, column[sent_tags[t]]] for t in range(start, end)])
            assert score == pytest.approx(want, rel=1e-6)
            checked += 1
    assert checked > 10


def test_same_seed_same_model_bit_for_bit():
    X, y = ner_data(40)
    a = SequenceTagger(**dict(SMALL, max_epochs=2)).fit(X, y)
    b = SequenceTagger(**dict(SMALL, max_epochs=2)).fit(X, y)
    for k in a.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k])
    c = SequenceTagger(**dict(SMALL, max_epochs=2, random_state=1)).fit(X, y)
    assert any(not np.array_equal(a.params_[k], c.params_[k]) for k in a.params_)


def test_early_stopping_keeps_the_best_epoch():
    X, y = ner_data(60)
    model = SequenceTagger(**dict(SMALL, max_epochs=30, patience=2)).fit(X, y)
    scores = [h["dev_score"] for h in model.history_]
    assert len(scores) < 30  # stopped early
    best = int(np.argmax(scores))
    assert model.best_epoch_ == model.history_[best]["epoch"]
    assert len(scores) - 1 - best == 2  # two epochs without improvement


def test_pos_tags_are_scored_by_token_accuracy():
    X = [["the", "dog", "runs"], ["a", "cat", "sleeps"], ["dogs", "run"]] * 10
    y = [["DET", "NOUN", "VERB"], ["DET", "NOUN", "VERB"], ["NOUN", "VERB"]] * 10
    model = SequenceTagger(**SMALL).fit(X, y)
    assert model.tag_scheme_ == "none"
    assert model.score(X, y) == 1.0
    with pytest.raises(ValueError, match="entity tags"):
        model.predict_spans(X)


@pytest.mark.parametrize("options", [dict(char_encoder="lstm", cell="gru"),
                                     dict(char_encoder=None, crf=False, cell="irnn"),
                                     dict(num_layers=2, bidirectional=False, cell="rnn")])
def test_other_architectures_train(options):
    X, y = ner_data(60)
    model = SequenceTagger(**dict(SMALL, **options)).fit(X, y)
    assert model.score(X, y) > 0.5
    # The work arrays reused between training batches are not kept by the fitted model.
    for stack in (model._model.network.rnn, model._model.featurizer.char_rnn):
        assert stack is None or stack.workspace.nbytes == 0


def test_partial_fit_continues_and_rejects_new_labels():
    X, y = ner_data(60)
    model = SequenceTagger(**dict(SMALL, max_epochs=1)).partial_fit(X, y)
    assert len(model.history_) == 1
    before = {k: v.copy() for k, v in model.params_.items()}
    model.partial_fit(X, y)
    assert len(model.history_) == 2
    assert any(not np.array_equal(before[k], model.params_[k]) for k in before)
    with pytest.raises(ValueError, match="B-ORG"):
        model.partial_fit([["Acme", "Inc"]], [["B-ORG", "I-ORG"]])
    declared = SequenceTagger(**dict(SMALL, max_epochs=1),
                              labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"])
    declared.fit(X, y).partial_fit([["Acme", "Inc"]], [["B-ORG", "I-ORG"]])
    assert "B-ORG" in declared.classes_


def test_bad_input_gives_clear_errors():
    model = SequenceTagger(**SMALL)
    with pytest.raises(ValueError, match=r"y\[0\] has 1 tags but X\[0\] has 2"):
        model.fit([["a", "b"]], [["O"]])
    with pytest.raises(ValueError, match="y has 1 sentences but X has 2"):
        model.fit([["a"], ["b"]], [["O"]])
    with pytest.raises(TypeError, match=r"X\[0\]\[1\] must be a string"):
        model.fit([["a", None]], [["O", "O"]])
    with pytest.raises(TypeError, match="must be a list of sequences"):
        model.fit("a b c", [["O"]])
    with pytest.raises(ValueError, match=r"y\[0\] has 2 tags but X\[0\] has 4"):
        model.fit(["a b, c"], [["O", "O"]])  # raw strings are split by the tokenizer: 4 tokens
    with pytest.raises(TypeError, match="mixes kinds"):
        model.fit([["a"], np.zeros((1, 2))], [["O"], ["O"]])
    with pytest.raises(ValueError, match="cell must be one of"):
        SequenceTagger(cell="transformer").fit([["a"]], [["O"]])
    with pytest.raises(RuntimeError, match="device=.cuda. was requested, but"):
        SequenceTagger(device="cuda").fit([["a"]], [["O"]])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SequenceTagger().predict([["a"]])


# -- scikit-learn ----------------------------------------------------------------------------


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
])
def test_sklearn_api_checks(check):
    check("SequenceTagger", SequenceTagger())


def test_clone_get_set_params_round_trip(fitted):
    model, _, _ = fitted
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "params_")
    copy.set_params(hidden_size=7, device="cpu")
    assert copy.hidden_size == 7 and model.hidden_size == 16


def test_repr_params_and_tags_without_inheriting_from_scikit_learn():
    from sklearn.base import is_classifier, is_regressor

    from tagger import SequenceClassifier

    assert repr(SequenceTagger()) == "SequenceTagger()"
    assert repr(SequenceTagger(hidden_size=7, cell="gru")) == \
        "SequenceTagger(cell='gru', hidden_size=7)"
    assert not is_classifier(SequenceTagger()) and not is_regressor(SequenceTagger())
    assert is_classifier(SequenceClassifier())
    with pytest.raises(ValueError, match="Invalid parameter 'hiden_size'"):
        SequenceTagger().set_params(hiden_size=3)
    with pytest.raises(NotFittedError, match="SequenceTagger instance is not fitted yet"):
        SequenceTagger().predict([["a"]])


def test_model_selection_with_the_project_scorers():
    X, y = ner_data(60)
    # Six epochs: the model is the moving average of the epochs' weights (average_decay),
    # which trails the first few epochs of a fast-learning run.
    scores = cross_val_score(SequenceTagger(**dict(SMALL, max_epochs=6)), X, y,
                             scoring=entity_f1_scorer, cv=KFold(2))
    assert scores.shape == (2,) and (scores > 0.3).all()
    search = GridSearchCV(SequenceTagger(**dict(SMALL, max_epochs=3)),
                          {"hidden_size": [8, 16]}, scoring=SCORERS["entity_f1"], cv=2)
    search.fit(X, y)
    assert search.best_params_["hidden_size"] in (8, 16)


@pytest.mark.parametrize("scoring", ["f1_micro", "accuracy"])
def test_scikit_learn_metric_names_raise_one_clear_error(scoring):
    # scikit-learn's metrics reject sequence targets; model selection would turn that into NaN
    # scores and a traceback per fold.
    X, y = ner_data(20)
    with pytest.raises(SequenceScoringError, match=r"tagger\.metrics\.SCORERS\['entity_f1'\]"):
        cross_val_score(SequenceTagger(**dict(SMALL, max_epochs=1)), X, y, scoring=scoring,
                        cv=KFold(2))
    with pytest.raises(SequenceScoringError, match="tagger.metrics.SCORERS"):
        GridSearchCV(SequenceTagger(**dict(SMALL, max_epochs=1)), {"hidden_size": [8]},
                     scoring=scoring, cv=2).fit(X, y)


def test_inside_a_pipeline():
    X, y = ner_data(60)
    pipe = Pipeline([("normalise", FunctionTransformer(
        lambda X: [[t.replace("0", "o") for t in s] for s in X])),
        ("tagger", SequenceTagger(**dict(SMALL, max_epochs=6)))])
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.5
    assert len(pipe.predict(X[:3])) == 3


def test_pickle_and_joblib_round_trip(fitted, tmp_path):
    model, X, _ = fitted
    again = pickle.loads(pickle.dumps(model))
    assert again.predict(X[:10]) == model.predict(X[:10])
    joblib.dump(model, tmp_path / "m.joblib")
    assert joblib.load(tmp_path / "m.joblib").predict(X[:10]) == model.predict(X[:10])


# -- model files -----------------------------------------------------------------------------


def test_save_and_load_round_trip(fitted, tmp_path):
    model, X, _ = fitted
    path = tmp_path / "ner.tagger"
    tagger.save(model, path)
    loaded = tagger.load(path)
    assert isinstance(loaded, SequenceTagger)
    assert loaded.get_params() == model.get_params()
    assert loaded.predict(X[:20]) == model.predict(X[:20])
    for a, b in zip(loaded.predict_proba(X[:5]), model.predict_proba(X[:5]), strict=True):
        np.testing.assert_array_equal(a, b)
    loaded.partial_fit(X[:10], model.predict(X[:10]))  # training can resume from the file


def test_damaged_model_files_are_refused(fitted, tmp_path):
    model, _, _ = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.tagger").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        tagger.load(tmp_path / "cut.tagger")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.tagger").write_bytes(bytes(flipped))
    with pytest.raises(ModelFileError):
        tagger.load(tmp_path / "flip.tagger")
    with pytest.raises(ModelFileError):
        tagger.load(tmp_path / "missing.tagger")


# -- real data (quick) -------------------------------------------------------------------------


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_quick_real_data_run_beats_the_majority_tag():
    from tagger.io import read_conllu

    sentences = list(read_conllu(DATA / "ud_ewt" / "dev.conllu"))
    X, y = [s.tokens for s in sentences], [s.tags for s in sentences]
    model = SequenceTagger(**dict(SMALL, hidden_size=32, word_dim=32, max_epochs=4,
                                  batch_size=16))
    model.fit(X[:1500], y[:1500], X_dev=X[1500:1700], y_dev=y[1500:1700])
    assert model.score(X[1700:], y[1700:]) > 0.8  # the most frequent tag alone gets ~0.17


def test_pretrained_embeddings_initialise_the_word_vectors(tmp_path):
    from tagger.errors import DataError
    from tagger.text.embeddings import load_word_vectors

    path = tmp_path / "vectors.txt"
    path.write_text("3 4\nparis 1 2 3 4\nzanzibar 0.5 0.5 0.5 0.5\nlives 0 0 0 1\n")
    X, y = ner_data(30)
    model = SequenceTagger(**dict(SMALL, max_epochs=1, embeddings=str(path), learning_rate=1e-9))
    model.fit(X, y)
    assert model.params_["emb.word"].shape[1] == 4  # the file's dimension wins
    assert "zanzibar" in model.vocabulary_  # pretrained words join the vocabulary
    row = model.vocabulary_.index("zanzibar")
    np.testing.assert_allclose(model.params_["emb.word"][row], 0.5, atol=1e-4)
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n")
    with pytest.raises(DataError, match=r"bad.txt:2: expected 2 numbers, found 1"):
        load_word_vectors(bad)


def test_model_file_with_wrong_array_shapes_is_refused(fitted, tmp_path):
    from tagger import persist

    model, _, _ = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    config, arrays = persist.load_model(path)
    arrays["out.W"] = arrays["out.W"][:, :2]  # consistent checksums, inconsistent shapes
    del arrays["crf.end"]
    config = {k: v for k, v in config.items() if k not in persist.CONTAINER_KEYS}
    persist.save_model(path, "SequenceTagger", config, arrays)
    with pytest.raises(ModelFileError, match="missing arrays: 'crf.end'"):
        tagger.load(path)
    arrays["crf.end"] = np.zeros(arrays["crf.start"].shape, np.float32)
    persist.save_model(path, "SequenceTagger", config, arrays)
    with pytest.raises(ModelFileError, match=r"array 'out.W' has shape \(\d+, 2\), expected"):
        tagger.load(path)


# -- numeric sequences -------------------------------------------------------------------------


def burst_data(n: int, seed: int = 0):
    """Noisy signals (two channels on an offset) with bursts of high amplitude; a burst is an
    entity (B-BURST, I-BURST), so spans are scored as for named entities."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        T = int(rng.integers(8, 25))
        x = 500 + rng.normal(0, 1, size=(T, 2))
        tags = ["O"] * T
        for _ in range(int(rng.integers(0, 3))):
            start = int(rng.integers(0, T - 2))
            length = int(rng.integers(2, 5))
            if all(t == "O" for t in tags[max(start - 1, 0): start + length + 1]):
                x[start: start + length, 0] += 6
                for t in range(start, min(start + length, T)):
                    tags[t] = "B-BURST" if t == start else "I-BURST"
        X.append(x)
        y.append(tags)
    return X, y


def test_tags_numeric_sequences(tmp_path):
    X, y = burst_data(150)
    X_test, y_test = burst_data(60, seed=1)
    model = SequenceTagger(**dict(SMALL, max_epochs=15)).fit(X, y)
    assert model.input_type_ == "numeric" and model.n_features_ == 2
    assert not hasattr(model, "vocabulary_")
    assert model.tag_scheme_ == "IOB2"
    assert model.score(X_test, y_test) > 0.9  # entity F1 over the bursts
    predicted = model.predict(X_test[:5])
    assert [len(p) for p in predicted] == [len(x) for x in X_test[:5]]
    path = tmp_path / "bursts.tagger"
    model.save(path)
    loaded = tagger.load(path)
    assert loaded.input_type_ == "numeric" and loaded.predict(X_test[:20]) == model.predict(
        X_test[:20])
    np.testing.assert_array_equal(loaded.feature_mean_, model.feature_mean_)
    with pytest.raises(TypeError, match="fitted on numeric sequences"):
        model.predict([["a", "b"]])
    with pytest.raises(ValueError, match="3 features per step"):
        model.predict([np.zeros((4, 3))])
    with pytest.raises(ValueError, match=r"X\[0\] holds NaN or infinity"):
        model.predict([np.full((2, 2), np.nan)])
    assert model.predict([np.zeros((0, 2))]) == [[]]  # an empty sequence gets no tags


@pytest.mark.parametrize("stop_after, decay, epoch_size", [
    (1, 0.0, 20000), (3, 0.0, 20000), (3, 0.5, 20000),
    # 54 training sentences (a tenth held out) in epochs of at most 20: three a pass; stopped
    # in the middle of the first pass, and at its end
    (2, 0.5, 20), (3, 0.0, 20)])
def test_resuming_a_checkpoint_gives_the_uninterrupted_model_bit_for_bit(tmp_path, stop_after,
                                                                         decay, epoch_size):
    X, y = ner_data(60)
    options = dict(SMALL, max_epochs=5, patience=2, average_decay=decay, epoch_size=epoch_size)
    whole = SequenceTagger(**options).fit(X, y)

    class Interrupted(Exception):
        pass

    def checkpoint_then_crash(event, info):
        if event == "epoch_end":
            info["estimator"].save(tmp_path / "ckpt.tagger")
            if info["epoch"] == stop_after:
                raise Interrupted

    with pytest.raises(Interrupted):
        SequenceTagger(**options).fit(X, y, callback=checkpoint_then_crash)
    resumed = tagger.load(tmp_path / "ckpt.tagger")
    assert len(resumed.history_) == stop_after
    resumed.continue_fit(X, y)
    assert resumed.best_epoch_ == whole.best_epoch_
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in whole.history_]
    for k in whole.params_:
        np.testing.assert_array_equal(resumed.params_[k], whole.params_[k], err_msg=k)
    resumed.save(tmp_path / "final.tagger")  # a finished model carries no training state
    from tagger import persist

    assert "training_state" not in persist.read_config(tmp_path / "final.tagger")


def test_the_model_is_the_moving_average_of_the_epochs_weights():
    """average_decay: the final weights are the average of the epoch-end weights, which go on
    training; with a dev set, the scores and the best epoch are the average's."""
    X, y = ner_data(60)
    ends = []

    def keep(event, info):
        if event == "epoch_end":
            ends.append({k: v.copy() for k, v in info["estimator"].params_.items()})

    options = dict(SMALL, max_epochs=4, average_decay=0.5)
    model = SequenceTagger(**options, early_stopping=False, validation_fraction=0.0)
    model.fit(X, y, callback=keep)
    average = {k: v.copy() for k, v in ends[0].items()}
    for weights in ends[1:]:
        for k, v in average.items():
            v *= np.float32(0.5)
            v += np.float32(0.5) * weights[k]
    for k, v in model.params_.items():
        np.testing.assert_array_equal(v, average[k], err_msg=k)
    assert not np.array_equal(model.params_["out.W"], ends[-1]["out.W"])
    plain = SequenceTagger(**dict(options, average_decay=0.0), early_stopping=False,
                           validation_fraction=0.0).fit(X, y)
    for k, v in plain.params_.items():  # the same training run: only the model differs
        np.testing.assert_array_equal(v, ends[-1][k], err_msg=k)
    X_dev, y_dev = ner_data(30, seed=5)
    scored = SequenceTagger(**dict(options, max_epochs=5)).fit(X, y, X_dev=X_dev, y_dev=y_dev)
    best = scored.history_[scored.best_epoch_ - 1]["dev_score"]
    assert best == max(h["dev_score"] for h in scored.history_)
    assert scored.score(X_dev, y_dev) == pytest.approx(best, abs=1e-12)


def test_average_decay_is_checked():
    for bad in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="average_decay must be a number in"):
            SequenceTagger(**dict(SMALL, average_decay=bad)).fit(*ner_data(5))


def test_a_corpus_of_more_than_epoch_size_sentences_has_several_epochs_a_pass():
    """A corpus larger than epoch_size is cut into epochs of a pass each (here 60 sentences in
    batches of 8, three epochs of about 20 a pass), each scored at its end."""
    X, y = ner_data(60)
    X_dev, y_dev = ner_data(20, seed=5)
    batches = []

    def hear(event, info):
        if event == "epoch_start":
            batches.append(info["n_batches"])

    model = SequenceTagger(**dict(SMALL, max_epochs=6, epoch_size=20, early_stopping=False))
    model.fit(X, y, X_dev=X_dev, y_dev=y_dev, callback=hear)
    assert batches == [2, 3, 3, 2, 3, 3]
    assert len(model.history_) == 6 and all(h["dev_score"] is not None for h in model.history_)
    for bad in (0, -5, 2.5, True, "100"):
        for train in ("fit", "partial_fit"):
            with pytest.raises(ValueError, match="epoch_size must be a positive integer or "):
                getattr(SequenceTagger(**dict(SMALL, epoch_size=bad)), train)(*ner_data(5))


def test_partial_fit_makes_a_whole_pass_whatever_the_epoch_size():
    """partial_fit trains on every sentence it is given, first call and later ones: with an
    epoch_size under the data's size it gives the model of whole passes."""
    X, y = ner_data(60)
    cut = SequenceTagger(**dict(SMALL, epoch_size=10))
    whole = SequenceTagger(**dict(SMALL, epoch_size=None))
    for _ in range(2):
        cut.partial_fit(X, y)
        whole.partial_fit(X, y)
    assert cut.epoch_size == 10  # the parameter is given back after the first call
    for k in whole.params_:
        np.testing.assert_array_equal(cut.params_[k], whole.params_[k], err_msg=k)


def test_a_sequence_of_100000_tokens_is_tagged(fitted):
    model, _, _ = fitted
    long = ["John", "lives", "in", "Paris", "."] * 20_000
    tags = model.predict([long, ["Mary"]])
    assert len(tags[0]) == 100_000 and len(tags[1]) == 1
    # Read as a short text of the same kind is: at its start, in its middle (a periodic text's
    # states settle within a few periods) and at its end, nothing drifts over 100,000 steps.
    short = model.predict([long[:45]])[0]
    assert tags[0][0] == "B-PER"
    assert tags[0][:5] == short[:5] and tags[0][-5:] == short[-5:]
    assert tags[0][50_000:50_005] == short[20:25]
    X, y = ner_data(20)
    grown = SequenceTagger(**dict(SMALL, max_epochs=1)).fit(X + [long], y + [
        ["B-PER", "O", "O", "B-LOC", "O"] * 20_000])  # and trained on
    assert np.isfinite(grown.history_[0]["loss"])


def test_divergence_stops_with_a_clear_message_and_finite_weights():
    X, y = ner_data(30)
    model = SequenceTagger(**dict(SMALL, learning_rate=1e30, clip_norm=None, max_epochs=3))
    with pytest.raises(FloatingPointError, match="training diverged in epoch .*learning_rate"):
        model.fit(X, y)
    assert all(np.isfinite(v).all() for v in model.params_.values())  # the last good weights


def test_predictions_do_not_depend_on_the_number_of_threads(fitted):
    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("needs at least 2 Numba threads")
    model, _, _ = fitted
    X = ner_data(700, seed=3)[0] + [[]]  # three batches of up to 256: run in parallel threads
    try:
        model.set_params(n_jobs=1)
        one = (model.predict(X), model.predict_proba(X), model.predict_with_spans(X))
        model.set_params(n_jobs=None)
        several = (model.predict(X), model.predict_proba(X), model.predict_with_spans(X))
    finally:
        model.set_params(n_jobs=None)
    assert several[0] == one[0] and several[2] == one[2]
    assert len(several[1]) == len(X)
    for a, b in zip(several[1], one[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_state_is_read_as_scikit_learn_reads_it():
    """The training seed comes from random_state as sklearn's check_random_state reads it (an
    int, a RandomState, None for NumPy's global generator), and anything else is refused."""
    from sklearn.utils import check_random_state

    top = np.iinfo(np.int32).max
    for state in (0, 7, np.int64(3)):
        assert SequenceTagger(random_state=state)._seed() == \
            check_random_state(state).randint(top)
    ours, theirs = np.random.RandomState(5), np.random.RandomState(5)
    assert SequenceTagger(random_state=ours)._seed() == theirs.randint(top)
    saved = np.random.get_state()  # noqa: NPY002 - None means NumPy's global generator
    try:
        np.random.seed(11)  # noqa: NPY002
        expected = np.random.randint(top)  # noqa: NPY002
        np.random.seed(11)  # noqa: NPY002
        assert SequenceTagger(random_state=None)._seed() == expected
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    with pytest.raises(ValueError, match="random_state='seven' cannot be used"):
        SequenceTagger(random_state="seven")._seed()
