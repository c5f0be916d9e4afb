"""SequenceTransducer: it learns string transductions (reversal; a suffix chosen by a feature)
to near-perfect exact match, beam search and n-best lists, token sequences, model files that
read back the same predictions, partial_fit, and clear errors for bad input."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from tagger import SequenceTransducer, load

ALPHABET = "abcdef"


def words(seed, n, low=2, high=6):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(low, high)))
            for _ in range(n)]


def small(**kwargs):
    defaults = dict(hidden_size=48, embedding_dim=16, feature_dim=4, dropout=0.0,
                    learning_rate=0.005, lr_decay=0.1, batch_size=32, max_epochs=40,
                    patience=8, random_state=0)
    return SequenceTransducer(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def reverser():
    X = words(0, 1200)
    X_dev = words(1, 300)
    model = small().fit(X, [x[::-1] for x in X], X_dev=X_dev, y_dev=[x[::-1] for x in X_dev])
    return model


def test_learns_to_reverse_strings(reverser):
    X_test = words(2, 300)
    assert reverser.score(X_test, [x[::-1] for x in X_test]) >= 0.99
    assert reverser.predict(["abc", "fed"]) == ["cba", "def"]
    assert reverser.best_epoch_ >= 1 and len(reverser.history_) >= reverser.best_epoch_


def test_beam_search_and_n_best(reverser):
    X_test = words(3, 50)
    greedy = reverser.predict(X_test)
    beam = reverser.set_params(beam_size=4).predict(X_test)
    reverser.set_params(beam_size=1)
    assert np.mean([b == x[::-1] for b, x in zip(beam, X_test, strict=True)]) >= 0.98
    assert np.mean([b == g for b, g in zip(beam, greedy, strict=True)]) >= 0.95
    best = reverser.predict_n_best(["abcd"], n=3)[0]
    assert len(best) == 3 and best[0][0] == "dcba"
    scores = [score for _, score in best]
    assert scores == sorted(scores, reverse=True) and len({text for text, _ in best}) == 3


def test_log_probability_is_the_score_of_the_search(reverser):
    """log_probability is the model's log-probability of an output: the beam's score without
    length normalisation, higher for the right output than for wrong ones, -inf for outputs
    the model cannot write (symbols outside its vocabulary, over max_output_length)."""
    model = reverser.set_params(length_penalty=0.0)
    try:
        best = model.predict_n_best(["abcd", "ge"], n=3)
    finally:
        model.set_params(length_penalty=reverser.get_params()["length_penalty"])
    outputs = [text for hyps in best for text, _ in hyps]
    sources = [x for x, hyps in zip(["abcd", "ge"], best, strict=True) for _ in hyps]
    scores = model.log_probability(sources, outputs)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, [score for hyps in best for _, score in hyps],
                               rtol=1e-4, atol=1e-4)
    right, wrong = model.log_probability(["abcd", "abcd"], ["dcba", "abcd"])
    assert right > wrong and right > np.log(0.5)
    long = "a" * (model.max_output_length_ + 1)
    assert np.isneginf(model.log_probability(["ab", "ab", "ab"], ["b!a", long, ""])[:2]).all()
    assert np.isfinite(model.log_probability(["ab"], [""])[0])  # the end symbol alone
    with pytest.raises(ValueError, match="X has 1 examples, y 2"):
        model.log_probability(["ab"], ["ba", "ab"])
    with pytest.raises(TypeError, match="wrap it in a list"):
        model.log_probability(["ab"], "ba")


def test_a_feature_chooses_the_suffix():
    X = words(4, 800, 2, 5)
    feats = [random.Random(i).choice(["SG", "PL", "DIM"]) for i in range(len(X))]
    suffix = {"SG": "", "PL": "s", "DIM": "let"}
    y = [x + suffix[f] for x, f in zip(X, feats, strict=True)]
    model = small(max_epochs=25).fit(X, y, features=feats)
    test = words(5, 60, 2, 5)
    for f in ("SG", "PL", "DIM"):
        assert model.score(test, [x + suffix[f] for x in test], features=[f] * 60) >= 0.95
    with pytest.raises(ValueError, match="trained with 1 feature"):
        model.predict(test)


def test_token_sequences_in_and_out_and_model_files(tmp_path):
    X = [list(w) for w in words(6, 600, 1, 4)]
    y = [[c.upper() + "1" for c in x] + ["END"] for x in X]
    model = small(max_epochs=30).fit(X, y)
    out = model.predict([["a", "b"], ["f"]])
    assert out == [["A1", "B1", "END"], ["F1", "END"]]
    path = tmp_path / "seq.tagger"
    model.save(path)
    again = load(path)
    assert isinstance(again, SequenceTransducer)
    test = [list(w) for w in words(7, 40, 1, 4)]
    assert again.predict(test) == model.predict(test)
    assert again.predict_n_best(test[:3], 2) == model.predict_n_best(test[:3], 2)
    with pytest.raises(TypeError, match="reads token sequences"):
        again.predict(["ab"])


def test_string_model_file_round_trip_and_partial_fit(reverser, tmp_path):
    path = tmp_path / "rev.tagger"
    reverser.save(path, optimizer_state=True)
    again = SequenceTransducer.load(path)
    test = words(8, 50)
    assert again.predict(test) == reverser.predict(test)
    X = words(9, 64)
    again.partial_fit(X, [x[::-1] for x in X])
    assert len(again.history_) == len(reverser.history_) + 1
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        again.partial_fit(["ab"], ["xy"])


def test_over_long_outputs_are_cut_with_a_warning(reverser):
    model = small(max_epochs=1, max_output_length=3).fit(["abcdef"] * 8, ["fedcba"] * 8)
    model.params_["out.b"][1] = -1e4  # the end symbol (id 1) is never the most probable
    with pytest.warns(UserWarning, match="reached max_output_length=3"):
        out = model.predict(["abcdef"])
    assert len(out[0]) == 3
    with pytest.warns(UserWarning, match="reached max_output_length=3"):
        assert len(model.predict_n_best(["abcdef"], 2)[0][0][0]) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reverser.predict(["abc"])  # outputs that end in time: no warning


def test_over_long_sources_are_refused_before_any_allocation(reverser):
    # The longest training word has 6 letters: the model reads sources of up to 4 * 6 + 16.
    assert reverser.max_input_length_ == 40
    assert len(reverser.predict(["ab" * 20])[0]) >= 1  # at the limit: read
    huge = "a" * 10_000_000
    for call in (lambda: reverser.predict(["abc", huge]),
                 lambda: reverser.predict_n_best([huge], 2),
                 lambda: reverser.log_probability(["abc", huge], ["cba", "a"])):
        with pytest.raises(ValueError, match=r"X\[[01]\] has 10,000,000 symbols, over this "
                                             r"model's max_input_length_ of 40"):
            call()


def test_one_long_source_does_not_pad_the_others(reverser, monkeypatch):
    """Decoding batches are padded batch by batch, longest first, with at most about
    _BATCH_SYMBOLS padded steps each: one long source makes no batch of long rows."""
    import tagger.estimators.transducer as module

    shapes = []
    greedy = reverser._model.greedy

    def spy(params, src, *args, **kwargs):
        shapes.append(src.shape)
        return greedy(params, src, *args, **kwargs)

    monkeypatch.setattr(reverser._model, "greedy", spy)
    monkeypatch.setattr(module, "_BATCH_SYMBOLS", 64)
    X = ["ab" * 20] + words(4, 40)
    out = reverser.predict(X)
    assert shapes[0] == (1, 40)  # the long one alone: 64 // 40 rows
    assert len(shapes) > 2 and all(rows * width <= 64 for rows, width in shapes)
    monkeypatch.undo()
    assert out == [reverser.predict([x])[0] for x in X]


@pytest.mark.parametrize("X, y, error, match", [
    ("abc", ["cba"], TypeError, "not one string"),
    (["abc", ""], ["cba", "x"], ValueError, r"X\[1\] is empty"),
    (["abc"], [""], ValueError, r"y\[0\] is empty"),
    (["abc", ["a", "b"]], ["x", "y"], TypeError, "mixes strings and token sequences"),
    (["abc", 3], ["x", "y"], TypeError, r"X\[1\] must be a string"),
    (["abc"], ["x", "y"], ValueError, "X has 1 examples, y 2"),
    ([], [], ValueError, "X is empty"),
])
def test_bad_training_data(X, y, error, match):
    with pytest.raises(error, match=match):
        small(max_epochs=1).fit(X, y)


@pytest.mark.parametrize("params, match", [
    ({"cell": "gru"}, "cell must be one of lstm"),
    ({"beam_size": 0}, "beam_size must be a positive integer"),
    ({"length_penalty": -1}, "length_penalty"),
    ({"max_output_length": 0}, "max_output_length"),
    ({"device": "gpu"}, "device must be 'auto', 'cpu' or 'cuda'"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        small(**params).fit(["ab"], ["ba"])


def test_cuda_without_a_gpu_is_a_clear_error():
    from tagger.kernels.backend import cuda_usable

    if cuda_usable():
        pytest.skip("a GPU is usable here (tests/cuda run the model on it)")
    with pytest.raises(RuntimeError, match="device='cuda' was requested, but"):
        small(device="cuda").fit(["ab"], ["ba"])


def test_auto_device_is_the_cpu_without_asking_for_a_gpu(monkeypatch):
    """The encoder-decoder runs faster on the CPU (see ``device``): "auto" does not even probe
    for a GPU; "cuda" in the environment still asks for one."""
    from tagger.kernels import backend

    def no_probe():
        raise AssertionError("the GPU was probed")

    monkeypatch.setattr(backend, "_probe_cuda", no_probe)
    monkeypatch.delenv("TAGGER_DEVICE", raising=False)
    assert SequenceTransducer()._resolve_device() == "cpu"
    assert backend.resolve_device("auto", auto_gpu=False) == "cpu"
    monkeypatch.setenv("TAGGER_DEVICE", "cuda")
    with pytest.raises(AssertionError, match="probed"):
        SequenceTransducer()._resolve_device()


def test_feature_checks_and_scikit_learn_contract():
    from sklearn.base import clone

    with pytest.raises(ValueError, match="different numbers of values"):
        small(max_epochs=1).fit(["ab", "cd"], ["ba", "dc"], features=[("x",), ("x", "y")])
    with pytest.raises(ValueError, match="features has 1 rows for 2 examples"):
        small(max_epochs=1).fit(["ab", "cd"], ["ba", "dc"], features=["x"])
    model = small(hidden_size=24)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(Exception, match="not fitted"):
        model.predict(["ab"])


@pytest.mark.parametrize("params, match", [
    ({"beam_size": 0}, "beam_size must be a positive integer"),
    ({"beam_size": 2.5}, "beam_size must be a positive integer"),
    ({"length_penalty": -1.0}, "length_penalty must be a finite number"),
])
def test_prediction_checks_parameters_set_after_fit(reverser, params, match):
    saved = reverser.get_params()
    reverser.set_params(**params)
    try:
        with pytest.raises(ValueError, match=match):
            reverser.predict(["abc"])
        with pytest.raises(ValueError, match=match):
            reverser.predict_n_best(["abc"], 2)
    finally:
        reverser.set_params(**saved)
    assert reverser.predict(["abc"]) == ["cba"]


def test_clear_errors_for_odd_training_input():
    X, y = ["ab", "ba"], ["ba", "ab"]
    with pytest.raises(ValueError, match=r"X\[0\] holds '<unk>', a reserved symbol"):
        small(max_epochs=1).fit([["<unk>", "a"], ["b"]], [["x"], ["y"]])
    with pytest.raises(ValueError, match=r"features\[1\] holds '<pad>', a reserved symbol"):
        small(max_epochs=1).fit(X, y, features=["N", "<pad>"])
    with pytest.raises(TypeError, match=r"features\[1\] must be a string or a tuple of strings, "
                                        r"got NoneType"):
        small(max_epochs=1).fit(X, y, features=["N", None])
    with pytest.raises(ValueError, match="X_dev is empty"):
        small(max_epochs=1).fit(X, y, X_dev=[], y_dev=[])
    with pytest.raises(ValueError, match="X_dev holds token sequences; the model's sources "
                                         "are strings"):
        small(max_epochs=1).fit(X, y, X_dev=[["a", "b"]], y_dev=["ba"])
    model = small(max_epochs=1).fit(X, y, X_dev=iter(X), y_dev=iter(y))  # generators are read
    assert len(model.history_) == 1 and model.history_[0]["dev_score"] is not None
    with pytest.raises(ValueError, match="X is empty"):
        model.partial_fit([], [])
    with pytest.raises(ValueError, match="X holds token sequences; the model's sources are "
                                         "strings"):
        model.partial_fit([["a", "b"]], ["ab"])
    with pytest.raises(TypeError, match=r"y\[0\] must be a string or a list of strings"):
        model.log_probability(["ab"], [None])


def test_an_output_is_one_line(tmp_path):
    from test_model_file_attacks import read_model, write_model

    from tagger.errors import ModelFileError

    for y in (["ab", "b\ta"], [["a"], ["x\ny"]], ["ab", "b\u2028a"]):
        X = ["ab", "ba"] if isinstance(y[0], str) else [["a"], ["b"]]
        with pytest.raises(ValueError, match=r"y\[1\] holds a tab or a line break"):
            small(max_epochs=1).fit(X, y)
    model = small(max_epochs=1, hidden_size=8).fit([["a"], ["b"]], [["x"], ["y"]])
    model.save(tmp_path / "ok.tagger")
    config, arrays = read_model(tmp_path / "ok.tagger")
    items = config["target_vocabulary"]["items"]
    items[items.index("y")] = "x\ny"
    write_model(tmp_path / "bad.tagger", config, arrays)
    with pytest.raises(ModelFileError, match="no tab or line break"):
        load(tmp_path / "bad.tagger")
