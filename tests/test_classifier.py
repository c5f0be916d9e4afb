"""SequenceClassifier: learning, the scikit-learn contract, numeric and text inputs, bad input,
model files."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks
from sklearn.utils.class_weight import compute_class_weight

import tagger
from tagger import SequenceClassifier
from tagger.errors import ModelFileError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

GOOD = ["great", "fine", "lovely", "superb", "moving", "funny"]
BAD = ["awful", "dull", "boring", "weak", "tedious", "clumsy"]
FILLER = ["the", "film", "was", "a", "plot", "and", "acting", "really", "quite", "story"]


def review_data(n: int, seed: int = 0, negation: bool = False):
    """Reviews whose label is set by the one sentiment word they hold (flipped by "not" when
    ``negation``), at a random position among filler words, of lengths 3 to 11."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=rng.integers(2, 10)))
        word = str(rng.choice(GOOD if label else BAD))
        if negation and rng.random() < 0.5:
            word, label = "not " + word, 1 - label
        words.insert(int(rng.integers(len(words) + 1)), word)
        X.append(" ".join(words).split())
        y.append("pos" if label else "neg")
    return X, np.array(y)


def wave_data(n: int, seed: int = 0, n_features: int = 2):
    """Numeric sequences of lengths 5..20: class 0 a slow sine, 1 a fast sine, 2 a ramp, on a
    large offset (standardisation must cope) with noise."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        k = int(rng.integers(3))
        T = int(rng.integers(5, 21))
        t = np.arange(T)[:, None] + rng.uniform(0, 6)
        signal = [np.sin(0.3 * t), np.sin(1.7 * t), (t % 7) / 3.5 - 1][k]
        X.append(1000.0 + 50 * signal + 5 * rng.normal(size=(T, n_features)))
        y.append(k)
    return X, np.array(y)


SMALL = dict(hidden_size=16, word_dim=16, char_dim=8, char_hidden_size=8, shape_dim=4,
             batch_size=8, max_epochs=15, learning_rate=0.01, random_state=0)


@pytest.fixture(scope="module")
def text_model():
    X, y = review_data(200)
    return SequenceClassifier(**SMALL).fit(X, y), X, y


@pytest.fixture(scope="module")
def numeric_model():
    X, y = wave_data(240)
    return SequenceClassifier(**SMALL).fit(X, y), X, y


def test_learns_a_text_task(text_model):
    model, _, _ = text_model
    X_test, y_test = review_data(100, seed=1)
    assert model.score(X_test, y_test) > 0.95
    assert model.classes_.tolist() == ["neg", "pos"]
    assert model.input_type_ == "text" and "great" in model.vocabulary_
    assert model.best_epoch_ >= 1 and len(model.history_) >= model.best_epoch_
    assert all(h["dev_score"] is not None for h in model.history_)  # validation_fraction split


def test_learns_a_numeric_task_with_standardisation(numeric_model):
    model, X, _ = numeric_model
    X_test, y_test = wave_data(120, seed=1)
    assert model.score(X_test, y_test) > 0.9
    assert model.classes_.tolist() == [0, 1, 2]
    assert model.input_type_ == "numeric" and model.n_features_ == 2
    steps = np.concatenate(X)
    assert np.all(np.abs(model.feature_mean_ - 1000) < 5)
    # statistics of the training part of the data (a dev share was held out)
    assert np.all(np.abs(model.feature_scale_ - steps.std(axis=0)) < 0.1 * steps.std(axis=0))


def test_negation_needs_context():
    # "not" flips the label: the word alone does not decide, the recurrence has to.
    X, y = review_data(400, negation=True)
    X_test, y_test = review_data(150, seed=1, negation=True)
    model = SequenceClassifier(**dict(SMALL, max_epochs=25)).fit(X, y)
    assert model.score(X_test, y_test) > 0.9


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "irnn"])
def test_every_pooling_and_cell_learns(pooling, cell):
    X, y = wave_data(150)
    X_test, y_test = wave_data(80, seed=1)
    model = SequenceClassifier(**dict(SMALL, cell=cell, pooling=pooling, max_epochs=12))
    assert model.fit(X, y).score(X_test, y_test) > 0.7  # chance is 1/3


def test_unidirectional_and_stacked():
    X, y = wave_data(150)
    model = SequenceClassifier(**dict(SMALL, bidirectional=False, num_layers=2, max_epochs=12))
    assert model.fit(X, y).score(*wave_data(80, seed=1)) > 0.7
    assert "rnn.1.fwd.W" in model.params_ and "rnn.0.bwd.W" not in model.params_


def test_prediction_methods_agree(text_model, numeric_model):
    model, X, _ = text_model
    proba = model.predict_proba(X[:30])
    assert proba.shape == (30, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X[:30])), proba, rtol=1e-10)
    scores = model.decision_function(X[:30])
    assert scores.shape == (30,)  # binary: one score, positive favours classes_[1]
    np.testing.assert_array_equal(model.classes_[(scores > 0).astype(int)], model.predict(X[:30]))
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), proba[:, 1], rtol=1e-6)
    multi, Xn, _ = numeric_model
    scores = multi.decision_function(Xn[:20])
    assert scores.shape == (20, 3)
    np.testing.assert_array_equal(multi.classes_[scores.argmax(axis=1)], multi.predict(Xn[:20]))
    # predictions come back in input order, whatever the batching by length
    one_by_one = np.concatenate([multi.predict(Xn[i:i + 1]) for i in range(20)])
    np.testing.assert_array_equal(one_by_one, multi.predict(Xn[:20]))


def test_raw_strings_and_tokenizers():
    X, y = review_data(200)
    texts = [" ".join(tokens) + "!" for tokens in X]
    model = SequenceClassifier(**SMALL).fit(texts, y)
    assert "!" in model.vocabulary_  # the default tokenizer splits punctuation off
    assert model.score(texts, y) > 0.9
    spaced = SequenceClassifier(**dict(SMALL, max_epochs=1, tokenizer="whitespace")).fit(texts, y)
    assert "!" not in spaced.vocabulary_
    pattern = SequenceClassifier(**dict(SMALL, max_epochs=1, tokenizer=r"[a-z]+")).fit(texts, y)
    assert "!" not in pattern.vocabulary_ and "the" in pattern.vocabulary_
    with pytest.raises(ValueError, match="not a valid regular expression"):
        SequenceClassifier(tokenizer="(unclosed").fit(texts, y)
    with pytest.raises(ValueError, match="matches the empty string"):
        SequenceClassifier(tokenizer=r"\w*").fit(texts, y)


def test_array_inputs():
    rng = np.random.default_rng(0)
    X3 = rng.normal(size=(60, 6, 3))
    y = (X3[:, :, 0].sum(axis=1) > 0).astype(int)
    model = SequenceClassifier(**dict(SMALL, max_epochs=2)).fit(X3, y)
    assert model.n_features_ == 3
    np.testing.assert_array_equal(model.predict(X3), model.predict(list(X3)))
    X2 = X3[:, :, 0]  # (n, length): univariate sequences
    model = SequenceClassifier(**dict(SMALL, max_epochs=2)).fit(X2, y)
    assert model.n_features_ == 1
    np.testing.assert_array_equal(model.predict(X2), model.predict([row for row in X2]))


def test_same_seed_same_model_bit_for_bit():
    X, y = review_data(80)
    a = SequenceClassifier(**dict(SMALL, max_epochs=3)).fit(X, y)
    b = SequenceClassifier(**dict(SMALL, max_epochs=3)).fit(X, y)
    for k in a.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k])
    c = SequenceClassifier(**dict(SMALL, max_epochs=3, random_state=1)).fit(X, y)
    assert not np.array_equal(a.params_["out.W"], c.params_["out.W"])


def test_early_stopping_on_a_dev_set():
    X, y = review_data(60)
    X_dev, y_dev = review_data(60, seed=3)
    model = SequenceClassifier(**dict(SMALL, max_epochs=40, patience=2, learning_rate=0.03))
    model.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    history = model.history_
    assert len(history) < 40  # stopped early
    # kept: the most accurate epoch, ties going to the lower log-loss
    keys = [(h["dev_score"], -h["dev_loss"]) for h in history]
    assert keys[model.best_epoch_ - 1] == max(keys)
    # stopped: `patience` epochs in which neither accuracy nor log-loss reached a new best
    last_progress = max(max(range(len(history)), key=lambda i: keys[i]),
                        min(range(len(history)), key=lambda i: history[i]["dev_loss"]))
    assert len(history) == last_progress + 1 + 2
    best = history[model.best_epoch_ - 1]
    assert model.score(X_dev, y_dev) == pytest.approx(best["dev_score"])  # best weights kept
    from sklearn.metrics import log_loss

    assert log_loss(y_dev, model.predict_proba(X_dev)) == pytest.approx(best["dev_loss"],
                                                                        rel=1e-5)
    assert all(h["seconds"] > 0 and h["tokens_per_s"] > 0 for h in model.history_)
    no_stop = SequenceClassifier(**dict(SMALL, max_epochs=3, early_stopping=False)).fit(X, y)
    assert len(no_stop.history_) == 3 and no_stop.history_[0]["dev_score"] is None


def test_validation_split_keeps_every_class_in_training():
    X, y = wave_data(60)
    y = np.where(np.arange(60) < 3, 9, y)  # a class with three examples
    model = SequenceClassifier(**dict(SMALL, max_epochs=2, validation_fraction=0.5)).fit(X, y)
    assert 9 in model.classes_


def test_partial_fit():
    X, y = review_data(120)
    model = SequenceClassifier(**SMALL)
    model.partial_fit(X[:60], y[:60])
    assert len(model.history_) == 1
    model.partial_fit(X[60:], y[60:])
    assert [h["epoch"] for h in model.history_] == [1, 2]
    with pytest.raises(ValueError, match="does not know"):
        model.partial_fit(X[:2], ["neg", "meh"])
    declared = SequenceClassifier(**SMALL).partial_fit(X[:20], y[:20],
                                                       classes=["neg", "pos", "mixed"])
    assert declared.classes_.tolist() == ["mixed", "neg", "pos"]
    declared.partial_fit([["so", "so"]], ["mixed"])
    with pytest.raises(ValueError, match="differs from the classes"):
        declared.partial_fit(X[:2], y[:2], classes=["neg", "pos"])


def test_partial_fit_makes_a_whole_pass_whatever_the_epoch_size():
    X, y = review_data(120)
    cut = SequenceClassifier(**dict(SMALL, epoch_size=25))
    whole = SequenceClassifier(**dict(SMALL, epoch_size=None))
    for part in (slice(0, 60), slice(60, 120)):
        cut.partial_fit(X[part], y[part])
        whole.partial_fit(X[part], y[part])
    assert cut.epoch_size == 25
    for k in whole.params_:
        np.testing.assert_array_equal(cut.params_[k], whole.params_[k], err_msg=k)


def test_class_and_sample_weights():
    X, y = review_data(100)
    y = np.where(np.arange(100) < 80, "neg", y)  # imbalanced
    model = SequenceClassifier(**dict(SMALL, class_weight="balanced"))
    model.classes_ = np.unique(y)
    ids = np.searchsorted(model.classes_, y)
    expected = compute_class_weight("balanced", classes=model.classes_, y=y)[ids]
    np.testing.assert_allclose(model._example_weights(ids, None), expected)
    np.testing.assert_allclose(model._example_weights(ids, np.full(100, 2.0)), 2 * expected)
    model.set_params(class_weight={"neg": 1.0, "pos": 3.0})
    np.testing.assert_allclose(model._example_weights(ids, None), np.where(ids == 1, 3.0, 1.0))
    model.set_params(class_weight={"neg": 1.0, "nope": 3.0})
    with pytest.raises(ValueError, match="class_weight"):
        model._example_weights(ids, None)
    # weighting the minority class up raises its share of predictions
    plain = SequenceClassifier(**dict(SMALL, max_epochs=2, learning_rate=0.003)).fit(X, y)
    heavy = SequenceClassifier(**dict(SMALL, max_epochs=2, learning_rate=0.003,
                                      class_weight={"neg": 1.0, "pos": 20.0})).fit(X, y)
    assert heavy.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean()
    # examples of weight zero teach nothing: their labels do not matter at all
    weights = np.where(np.arange(100) < 50, 1.0, 0.0)
    flipped = np.where(weights > 0, y, np.where(y == "pos", "neg", "pos"))
    options = dict(SMALL, max_epochs=2, early_stopping=False)
    a = SequenceClassifier(**options).fit(X, y, sample_weight=weights)
    b = SequenceClassifier(**options).fit(X, flipped, sample_weight=weights)
    c = SequenceClassifier(**options).fit(X, flipped)
    for k in a.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k])
    assert not np.array_equal(a.params_["out.W"], c.params_["out.W"])
    with pytest.raises(ValueError, match="zero everywhere"):
        SequenceClassifier(**options).fit(X, y, sample_weight=np.zeros(100))
    with pytest.raises(ValueError, match="non-negative"):
        SequenceClassifier(**options).fit(X, y, sample_weight=-np.ones(100))


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors():
    model = SequenceClassifier(**SMALL)
    X, y = review_data(10)
    with pytest.raises(ValueError, match=r"X\[1\] is an empty sequence"):
        model.fit([["a"], [], ["b"]], [0, 1, 0])
    with pytest.raises(ValueError, match=r"X\[1\] is an empty sequence"):
        model.fit([np.ones((2, 3)), np.ones((0, 3))], [0, 1])
    with pytest.raises(ValueError, match=r"X\[1\] has 2 features per step, but the sequences "
                                         r"before it have 3"):
        model.fit([np.ones((2, 3)), np.ones((4, 2))], [0, 1])
    with pytest.raises(ValueError, match=r"X\[1\] holds NaN or infinity \(nan\) at step 1"):
        model.fit([np.ones((2, 3)), [[0, 0, 0], [0, np.nan, 0]]], [0, 1])
    with pytest.raises(ValueError, match=r"NaN or infinity \(inf\)"):
        model.fit(np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="only one class"):
        model.fit(X, ["pos"] * 10)
    with pytest.raises(ValueError, match="y has 9 labels but X has 10"):
        model.fit(X, y[:9])
    with pytest.raises(ValueError, match="one label per sequence"):
        model.fit(X, [[label, label] for label in y])
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, np.linspace(0, 1, 10))  # continuous targets
    with pytest.raises(TypeError, match="mixes kinds"):
        model.fit([["a"], np.ones((2, 2))], [0, 1])
    with pytest.raises(ValueError, match="not a rectangular numeric array"):
        model.fit([np.ones((2, 2)), [[1, 2], [3]]], [0, 1])
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceClassifier(pooling="sum").fit(X, y)
    with pytest.raises(ValueError, match="class_weight must be"):
        SequenceClassifier(class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="no sequences"):
        model.fit([], [])
    with pytest.raises(ValueError, match="target y is None"):
        model.fit(X, None)
    with pytest.raises(TypeError, match="Sparse data"):
        from scipy import sparse

        model.fit(sparse.csr_matrix(np.ones((3, 3))), [0, 1, 0])
    with pytest.raises(ValueError, match="give both X_dev and y_dev"):
        model.fit(X, y, X_dev=X)
    with pytest.raises(NotFittedError):
        SequenceClassifier().predict(X)


def test_prediction_input_must_match_the_training_input(text_model, numeric_model):
    text, X, _ = text_model
    numeric, Xn, _ = numeric_model
    with pytest.raises(TypeError, match="fitted on text sequences"):
        text.predict(Xn[:2])
    with pytest.raises(TypeError, match="fitted on numeric sequences"):
        numeric.predict(X[:2])
    with pytest.raises(ValueError, match="3 features per step, but the estimator was fitted "
                                         "with 2"):
        numeric.predict([np.ones((4, 3))])
    with pytest.raises(ValueError, match="empty sequence"):
        text.predict([X[0], []])


# -- scikit-learn ----------------------------------------------------------------------------


# The checks of scikit-learn's suite that apply: its data are 2-D arrays, which the classifier
# reads as univariate sequences (n_sequences, length). Checks left out assume that the columns
# are features (n_features_in_), that training is deterministic under sample reordering or
# exactly equivalent to weighted duplication, or accept object/complex arrays.
@pytest.mark.parametrize("check", [
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimators_dtypes",
    "check_estimators_fit_returns_self", "check_estimators_unfitted",
    "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
    "check_sample_weights_list", "check_sample_weights_shape",
    "check_sample_weights_not_overwritten", "check_all_zero_sample_weights_error",
    "check_estimators_nan_inf", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_classifier_data_not_an_array",
    "check_classifiers_one_label", "check_classifiers_one_label_sample_weights",
    "check_classifiers_classes", "check_classifiers_regression_target",
    "check_supervised_y_no_nan", "check_supervised_y_2d", "check_decision_proba_consistency",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_fit1d", "check_fit2d_predict1d", "check_requires_y_none",
    "check_pipeline_consistency", "check_readonly_memmap_input",
])
def test_sklearn_estimator_checks(check):
    getattr(estimator_checks, check)(
        "SequenceClassifier", SequenceClassifier(hidden_size=8, max_epochs=3, random_state=0))


def test_clone_and_params(text_model):
    model, _, _ = text_model
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "params_")
    copy.set_params(pooling="attention")
    assert model.pooling == "max"


def test_cross_validation_grid_search_and_standard_scorers():
    X, y = review_data(150)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    small = SequenceClassifier(**SMALL)
    for scoring in ("accuracy", "f1_macro", "roc_auc"):
        scores = cross_val_score(small, X, y, scoring=scoring, cv=cv)
        # 100 training reviews a fold: over random states the folds score 0.98 on average, and
        # one fold in a dozen runs about 0.75; chance is 0.5.
        assert scores.shape == (3,) and scores.mean() > 0.85 and scores.min() > 0.7, scoring
    search = GridSearchCV(small, {"pooling": ["mean", "max"]}, scoring="roc_auc", cv=cv)
    search.fit(X, y)
    assert search.best_params_["pooling"] in ("mean", "max") and search.best_score_ > 0.75
    Xn, yn = wave_data(90)
    scores = cross_val_score(SequenceClassifier(**dict(SMALL, max_epochs=6)), np.array(
        [x[:5] for x in Xn]), yn, scoring="f1_macro", cv=cv)  # a 3-D array, sliced by CV
    assert (scores > 0.5).all()


def test_inside_a_pipeline():
    X, y = review_data(100)
    texts = [" ".join(tokens) for tokens in X]
    pipe = Pipeline([("lower", FunctionTransformer(lambda docs: [d.upper() for d in docs])),
                     ("classify", SequenceClassifier(**dict(SMALL, lowercase=False)))])
    pipe.fit(texts, y)
    assert "GREAT" in pipe[-1].vocabulary_
    assert pipe.score(texts, y) > 0.9


def test_pickle_and_joblib_round_trip(numeric_model, tmp_path):
    model, X, _ = numeric_model
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X[:10]), model.predict_proba(X[:10]))
    joblib.dump(model, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict(X[:10]),
                                  model.predict(X[:10]))


# -- model files -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["text_model", "numeric_model"])
def test_save_and_load_round_trip(which, request, tmp_path):
    model, X, y = request.getfixturevalue(which)
    path = tmp_path / "m.tagger"
    tagger.save(model, path)
    loaded = tagger.load(path)
    assert isinstance(loaded, SequenceClassifier)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.classes_.dtype.kind == model.classes_.dtype.kind
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), model.predict_proba(X[:20]))
    assert loaded.history_ == model.history_
    loaded.partial_fit(X[:10], y[:10])  # training resumes from the file


def test_saved_class_weights_keep_integer_labels(tmp_path):
    X, y = wave_data(40)
    model = SequenceClassifier(**dict(SMALL, max_epochs=1, class_weight={0: 1.0, 1: 2.0, 2: 1.5}))
    model.fit(X, y).save(tmp_path / "w.tagger")
    loaded = SequenceClassifier.load(tmp_path / "w.tagger")
    assert loaded.class_weight == {0: 1.0, 1: 2.0, 2: 1.5}


def test_function_tokenizer_cannot_be_saved(tmp_path):
    X, y = review_data(30)
    texts = [" ".join(tokens) for tokens in X]
    model = SequenceClassifier(**dict(SMALL, max_epochs=1, tokenizer=str.split)).fit(texts, y)
    with pytest.raises(ValueError, match="tokenizer is a function cannot be saved"):
        model.save(tmp_path / "f.tagger")
    assert not (tmp_path / "f.tagger").exists()


def test_a_tagger_file_is_not_a_classifier(tmp_path, numeric_model):
    model, _, _ = numeric_model
    model.save(tmp_path / "c.tagger")
    with pytest.raises(ModelFileError, match="SequenceClassifier"):
        tagger.SequenceTagger.load(tmp_path / "c.tagger")


# -- real data (quick) -------------------------------------------------------------------------


@pytest.mark.skipif(not (DATA / "sst2").is_dir(), reason="../shared/data/sst2 is absent")
def test_quick_sst2_run_beats_the_majority_class():
    from tagger.io import read_tsv

    train = list(itertools.islice(read_tsv(DATA / "sst2" / "train.tsv"), 4000))
    dev = list(read_tsv(DATA / "sst2" / "dev.tsv"))
    model = SequenceClassifier(**dict(SMALL, hidden_size=32, word_dim=32, max_epochs=3))
    model.fit([t.tokens for t in train], [t.label for t in train])
    majority = max(np.mean([t.label == "1" for t in dev]), np.mean([t.label == "0" for t in dev]))
    accuracy = model.score([t.tokens for t in dev], [t.label for t in dev])
    assert accuracy > majority + 0.05  # the majority class gets ~0.51


@pytest.mark.parametrize("which", ["text_model", "numeric_model"])
def test_predictions_do_not_depend_on_the_number_of_threads(which, request):
    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("needs at least 2 Numba threads")
    model, X, _ = request.getfixturevalue(which)
    X = list(X) * 3  # several batches of up to 256: run in parallel threads
    try:
        model.set_params(n_jobs=1)
        one = model.predict_proba(X)
        model.set_params(n_jobs=None)
        several = model.predict_proba(X)
    finally:
        model.set_params(n_jobs=None)
    np.testing.assert_array_equal(several, one)
