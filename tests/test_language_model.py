"""CharLanguageModel: training by truncated BPTT on text, scores, generation, model files."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tagger
from tagger import CharLanguageModel
from tagger.errors import ModelFileError
from tagger.persist import CONTAINER_KEYS, load_model, save_model

PATTERN = "abcabd "
TEXT = [PATTERN * 30] * 12


def small(**params) -> CharLanguageModel:
    defaults = dict(hidden_size=32, embedding_dim=8, bptt=20, batch_size=4, max_epochs=12,
                    learning_rate=0.01, random_state=0)
    return CharLanguageModel(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted() -> CharLanguageModel:
    return small().fit(TEXT, X_dev=[PATTERN * 10])


def test_learns_a_repeating_text_and_scores_it(fitted):
    # Inside a line every character follows from the two before it: near-zero loss there.
    assert fitted.history_[0]["loss"] > 0.3
    assert fitted.history_[-1]["loss"] < 0.05
    line = [PATTERN * 20]
    score = fitted.score(line)
    assert -0.1 < score < 0
    assert fitted.bits_per_char(line) == pytest.approx(-score / math.log(2))
    assert fitted.perplexity(line) == pytest.approx(math.exp(-score))
    # An unlikely text scores far lower.
    assert fitted.score(["dddd cccc bbbb"]) < score - 1.0


def test_score_is_the_mean_log_likelihood_of_every_character_and_end_of_line(fitted):
    texts = ["abcabd abc", "cab"]
    ids = fitted.vocabulary_.encode("\nabcabd abc\ncab\n")
    model = fitted._model
    total, n, _ = model.log_likelihood(fitted.params_, ids[None, :-1], ids[None, 1:], None)
    assert n == len("abcabd abc") + len("cab") + 2
    assert fitted.score(texts) == pytest.approx(total / n, rel=1e-12)


def test_unknown_characters_are_read_as_the_unknown_symbol(fitted):
    assert "z" not in fitted.vocabulary_
    assert math.isfinite(fitted.score(["abz"]))


def test_a_fixed_seed_gives_the_same_model():
    a = small(max_epochs=2).fit(TEXT)
    b = small(max_epochs=2).fit(TEXT)
    assert a.params_.keys() == b.params_.keys()
    for name in a.params_:
        np.testing.assert_array_equal(a.params_[name], b.params_[name])


def test_early_stopping_keeps_the_best_development_epoch():
    dev = ["abcabd abcabd", "dcba dcba"]
    model = small(max_epochs=6, patience=2).fit(TEXT, X_dev=dev)
    best = model.history_[model.best_epoch_ - 1]["dev_score"]
    assert best == max(h["dev_score"] for h in model.history_)
    assert model.score(dev) == pytest.approx(best, rel=1e-9)


def test_backward_model_reads_the_text_from_the_right():
    model = small(direction="backward", max_epochs=2).fit(TEXT)
    texts = ["abcabd ab", "ca"]
    ids = model.vocabulary_.encode("\nabcabd ab\nca\n"[::-1])
    total, n, _ = model._model.log_likelihood(model.params_, ids[None, :-1], ids[None, 1:],
                                              None)
    assert model.score(texts) == pytest.approx(total / n, rel=1e-12)


def test_partial_fit_adds_one_epoch_and_keeps_the_vocabulary():
    model = small().partial_fit(TEXT)
    assert len(model.history_) == 1
    vocabulary = model.vocabulary_
    loss_before = model.score(TEXT)
    model.partial_fit(TEXT + ["xyz"])
    assert len(model.history_) == 2
    assert model.vocabulary_ is vocabulary and "x" not in vocabulary
    assert model.score(TEXT) > loss_before


def test_divergence_is_a_clear_error():
    with pytest.raises(FloatingPointError, match="diverged"):
        small(learning_rate=1e6, clip_norm=None, max_epochs=3).fit(TEXT)


@pytest.mark.parametrize("X, error, match", [
    ("abc abc", TypeError, "not one string"),
    (["abc", 3], TypeError, r"X\[1\] is a int"),
    (["", ""], ValueError, "no characters"),
    (None, TypeError, "list of strings"),
])
def test_bad_training_text(X, error, match):
    with pytest.raises(error, match=match):
        small().fit(X)


@pytest.mark.parametrize("params, match", [
    ({"cell": "rnn"}, "cell must be one of lstm, gru"),
    ({"direction": "sideways"}, "direction"),
    ({"device": "tpu"}, "device must be 'auto', 'cpu' or 'cuda'"),
    ({"bptt": 0}, "bptt must be a positive integer"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        small(**params).fit(TEXT)


def test_cuda_without_a_gpu_is_a_clear_error():
    from tagger.kernels.backend import cuda_usable

    if cuda_usable():
        pytest.skip("a GPU is usable here (tests/cuda run the model on it)")
    with pytest.raises(RuntimeError, match="device='cuda' was requested, but"):
        small(device="cuda").fit(TEXT)


def test_scikit_learn_contract():
    from sklearn.base import clone

    model = small(hidden_size=48)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert "hidden_size=48" in repr(model)
    with pytest.raises(Exception, match="not fitted"):
        model.score(TEXT)


def test_model_file_round_trip(fitted, tmp_path):
    path = tmp_path / "lm.tagger"
    fitted.save(path)
    loaded = tagger.load(path)
    assert isinstance(loaded, CharLanguageModel)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.vocabulary_ == fitted.vocabulary_
    assert loaded.history_ == fitted.history_ and loaded.best_epoch_ == fitted.best_epoch_
    for name, value in fitted.params_.items():
        np.testing.assert_array_equal(loaded.params_[name], value)
    assert loaded.score(["abcabd abc"]) == fitted.score(["abcabd abc"])
    assert CharLanguageModel.load(path).score(["cab"]) == fitted.score(["cab"])


def test_model_file_with_a_vocabulary_of_words_is_refused(fitted, tmp_path):
    path = tmp_path / "lm.tagger"
    fitted.save(path)
    config, arrays = load_model(path)
    config["vocabulary"]["items"][0] = "ab"
    bad = tmp_path / "bad.tagger"
    save_model(bad, config["kind"], {k: v for k, v in config.items() if k not in CONTAINER_KEYS},
               arrays)
    with pytest.raises(ModelFileError, match="single characters"):
        tagger.load(bad)


def test_a_tagger_file_is_not_a_language_model(tmp_path):
    tagger_model = tagger.SequenceTagger(hidden_size=8, word_dim=8, char_encoder=None,
                                         max_epochs=1, random_state=0)
    tagger_model.fit([["a", "b"], ["b", "a"]], [["X", "Y"], ["Y", "X"]])
    path = tmp_path / "tagger.tagger"
    tagger_model.save(path)
    with pytest.raises(ModelFileError, match="CharLanguageModel"):
        CharLanguageModel.load(path)


# ----------------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------------


def test_greedy_generation_continues_the_pattern(fitted):
    text = fitted.sample("abcab", n_chars=14, temperature=0)
    assert text == "abcab" + "d abcabd abcab"


def test_sampling_with_a_seed_is_deterministic(fitted):
    a = fitted.sample("ab", 200, temperature=1.5, random_state=3)
    b = fitted.sample("ab", 200, temperature=1.5, random_state=3)
    c = fitted.sample("ab", 200, temperature=1.5, random_state=4)
    assert a == b and a != c
    assert a.startswith("ab") and len(a) == 202
    assert set(a) <= set("abcd \n")  # never the padding or unknown symbols


def test_top_1_is_greedy(fitted):
    assert fitted.sample("abc", 30, temperature=2.0, top_k=1, random_state=1) == \
        fitted.sample("abc", 30, temperature=0)


def test_backward_generation_ends_with_the_prefix():
    model = small(direction="backward").fit(TEXT)
    text = model.sample("abd", n_chars=11, temperature=0)
    assert text.endswith("abd") and len(text) == 14
    assert text == "abd abcabd abd"[-14:] or text.endswith(" abcabd abd")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_chars": -1}, "n_chars"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"random_state": "seed"}, "random_state"),
    ({"prefix": 5}, "prefix"),
])
def test_bad_sampling_arguments(fitted, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fitted.sample(**kwargs)
