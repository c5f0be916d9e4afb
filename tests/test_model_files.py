"""Estimators and their model files: what a file holds (weights only by default, optimizer and
training state on request or in checkpoints), shapes derived from the config without any
initialiser, and training resumed from each kind of file."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from test_tagger import SMALL, ner_data
from typer.testing import CliRunner

import tagger
from tagger import persist, workflows
from tagger.cli import app
from tagger.errors import ModelFileError
from tagger.estimators import SequenceClassifier, SequenceTagger
from tagger.nn.classifier import POOLINGS, ClassifierNetwork
from tagger.nn.features import NumericFeaturizer, TokenFeaturizer
from tagger.nn.model import ClassifierModel, TaggerModel
from tagger.nn.network import TaggingNetwork
from tagger.nn.recurrent import CELLS


def _featurizers():
    for char_encoder, shape_dim in itertools.product(("cnn", "lstm", None), (0, 5)):
        yield TokenFeaturizer(13, 6, 12, shape_dim, 9, char_encoder, 4, 3, 0.1)
    yield NumericFeaturizer(7)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, True), (2, False), (3, True)])
def test_param_shapes_are_the_shapes_init_params_makes(cell, layers, bidirectional):
    """The loader derives a file's arrays from ``param_shapes``; it must never drift from what
    training initialises."""
    rng = np.random.default_rng(0)
    for featurizer in _featurizers():
        for crf in (True, False):
            model = TaggerModel(featurizer, TaggingNetwork(
                featurizer.output_size, 5, cell, 4, layers, bidirectional, crf))
            made = model.init_params(rng)
            assert model.param_shapes() == {k: v.shape for k, v in made.items()}
            assert list(model.param_shapes()) == list(made)
        for pooling in POOLINGS:
            model = ClassifierModel(featurizer, ClassifierNetwork(
                featurizer.output_size, 3, cell, 4, layers, bidirectional, pooling))
            made = model.init_params(rng)
            assert model.param_shapes() == {k: v.shape for k, v in made.items()}


@pytest.fixture(scope="module")
def fitted():
    X, y = ner_data(60)
    return SequenceTagger(**dict(SMALL, max_epochs=2)).fit(X, y), X, y


def test_a_final_model_holds_the_weights_only(fitted, tmp_path):
    model, X, _ = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    header = persist.read_header(path)
    assert header.config["contents"] == "weights"
    assert set(header.arrays) == set(model.params_)
    assert header.data_bytes == sum(a.nbytes for a in model.params_.values())
    with_state = tmp_path / "full.tagger"
    model.save(with_state, optimizer_state=True)
    assert persist.read_config(with_state)["contents"] == "weights+optimizer"
    # Adam keeps two moments per parameter: the file is three times the weights.
    assert persist.read_header(with_state).data_bytes > 2.9 * header.data_bytes
    loaded = tagger.load(path)
    assert loaded.optimizer_state_ == {}
    assert loaded.predict(X[:10]) == model.predict(X[:10])


def test_a_model_file_round_trips_bit_for_bit(fitted, tmp_path):
    model, _, _ = fitted
    for optimizer_state in (False, True):
        first, second = tmp_path / "a", tmp_path / "b"
        model.save(first, optimizer_state=optimizer_state)
        tagger.load(first).save(second, optimizer_state=optimizer_state)
        assert first.read_bytes() == second.read_bytes()


def test_training_a_weights_only_model_starts_a_fresh_optimizer_and_says_so(fitted, tmp_path):
    model, X, y = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    loaded = tagger.load(path)
    with pytest.warns(UserWarning, match="no optimizer state.*fresh adam optimizer"):
        loaded.partial_fit(X[:16], y[:16])
    assert int(loaded.optimizer_state_["steps"]) == 2  # two batches of 8, counted afresh


def test_training_resumes_exactly_from_a_file_with_optimizer_state(fitted, tmp_path):
    model, X, y = fitted
    path = tmp_path / "m.tagger"
    model.save(path, optimizer_state=True)
    loaded = tagger.load(path)
    in_memory = SequenceTagger(**model.get_params())
    in_memory.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    in_memory.params_ = {k: v.copy() for k, v in model.params_.items()}
    in_memory.optimizer_state_ = {k: v.copy() for k, v in model.optimizer_state_.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fresh optimizer" warning
        loaded.partial_fit(X[:16], y[:16])
    in_memory.partial_fit(X[:16], y[:16])
    for name, value in in_memory.params_.items():
        np.testing.assert_array_equal(loaded.params_[name], value, err_msg=name)


def test_a_checkpoint_holds_optimizer_and_training_state(tmp_path):
    X, y = ner_data(40)
    path = tmp_path / "ckpt.tagger"
    workflows.train_examples("tag", X, y, X[:10], y[:10], path, dict(SMALL, max_epochs=3),
                             save_every=1, callback=lambda *a: None)
    # The final save replaced the last checkpoint: weights only.
    assert persist.read_config(path)["contents"] == "weights"

    def stop_after_two(event, info):
        if event == "epoch_end" and info["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        workflows.train_examples("tag", X, y, X[:10], y[:10], path, dict(SMALL, max_epochs=3),
                                 save_every=1, callback=stop_after_two)
    config = persist.read_config(path)
    assert config["contents"] == "checkpoint" and "training_state" in config
    assert any(name.startswith("optimizer.slot.") for name in persist.read_header(path).arrays)
    assert tagger.load(path)._resume_state["waited"] >= 0


def test_info_says_what_a_file_holds(fitted, tmp_path):
    model, _, _ = fitted
    runner = CliRunner()
    for optimizer_state, contents, words in ((False, "weights", "weights only"),
                                             (True, "weights+optimizer", "optimizer state")):
        path = tmp_path / f"{contents}.tagger"
        model.save(path, optimizer_state=optimizer_state)
        details = workflows.model_info(path)
        assert details["contents"] == contents
        assert details["parameters"] == sum(v.size for v in model.params_.values())
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 0 and words in result.stdout


def test_train_command_keeps_the_optimizer_state_on_request(tmp_path):
    runner = CliRunner()
    for flag, contents in (([], "weights"), (["--save-optimizer"], "weights+optimizer")):
        path = tmp_path / f"{contents}.tagger"
        result = runner.invoke(app, ["train", "sample-ner", "-o", str(path), "--max-epochs",
                                     "1", "--quiet", "--hidden-size", "8", *flag])
        assert result.exit_code == 0, result.output
        assert persist.read_config(path)["contents"] == contents


def test_a_custom_tokenizer_from_a_file_runs_only_when_trusted(tmp_path):
    X, y = ner_data(30)
    model = SequenceTagger(**dict(SMALL, max_epochs=1, tokenizer=r"[A-Za-z]+|\S")).fit(X, y)
    path = tmp_path / "m.tagger"
    model.save(path)
    with pytest.raises(ModelFileError, match="custom regular expression.*trust_tokenizer=True"):
        tagger.load(path)
    trusted = tagger.load(path, trust_tokenizer=True)
    assert trusted.predict(["Anna lives in Oslo."]) == model.predict(["Anna lives in Oslo."])
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(path)], input="Anna lives in Oslo .\n")
    assert result.exit_code == 1 and "--trust-tokenizer" in result.output
    result = runner.invoke(app, ["predict", str(path), "--trust-tokenizer"],
                           input="Anna lives in Oslo .\n")
    assert result.exit_code == 0, result.output


def test_a_classifier_file_round_trips(tmp_path):
    X = [["good", "film"], ["bad", "film"], ["great"], ["awful", "plot"]] * 5
    y = [1, 0, 1, 0] * 5
    model = SequenceClassifier(**dict(SMALL, max_epochs=1)).fit(X, y)
    path = tmp_path / "c.tagger"
    model.save(path)
    loaded = tagger.load(path)
    assert persist.read_config(path)["contents"] == "weights"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.classes_.tolist() == [0, 1]


# -- hostile values that pass a naive check ------------------------------------------------------


def _rewrite_config(path, edit_text) -> None:
    """Replace the config text of a model file by ``edit_text(text)``, digests recomputed as a
    forger would (so that only the loader's own checks stand in the way)."""
    import hashlib
    import json

    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    meta = header["__metadata__"]
    meta["config"] = edit_text(meta["config"])
    meta["config_sha256"] = hashlib.sha256(meta["config"].encode()).hexdigest()
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + body)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t.replace('"loss":', '"loss":NaN,"x":', 1), "not valid JSON.*NaN"),
    (lambda t: t.replace('"loss":', '"loss":1e400,"x":', 1), "not valid JSON.*1e400"),
    (lambda t: t.replace('"epoch":1,', '"epoch":"x",', 1), "history entry 1 must have epoch"),
    (lambda t: t.replace('"counts":[', '"counts":[' + "9" * 60 + ",", 1), "too large"),
    (lambda t: t.replace('"items":[', '"items":[' + "[]," * 600_000, 1), "JSON lists and objects"),
])
def test_config_values_that_would_break_later_are_refused_at_load(fitted, tmp_path, edit, match):
    model, _, _ = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    _rewrite_config(path, edit)
    with pytest.raises(ModelFileError, match=match):
        tagger.load(path)


def test_classifier_labels_and_weights_from_a_file_are_checked(tmp_path):
    X = [["good", "film"], ["bad", "film"]] * 5
    model = SequenceClassifier(**dict(SMALL, max_epochs=1), class_weight={0: 1.0, 1: 2.0})
    model.fit(X, [1, 0] * 5)
    path = tmp_path / "c.tagger"
    model.save(path)
    assert tagger.load(path).class_weight == {0: 1.0, 1: 2.0}
    for old, new, match in (('"class_weight_pairs":[[0,1.0]', '"class_weight_pairs":[[true,1.0]',
                             "class_weight_pairs"),
                            ('[1,2.0]]', '[1,-1e30]]', "positive"),
                            ('"classes":[0,1]', '"classes":[0,' + str(2**70) + "]", "64 bits"),
                            ('"class_weight":null', '"class_weight":{"0":"heavy"}',
                             "class_weight must be")):
        model.save(path)
        _rewrite_config(path, lambda t, old=old, new=new: t.replace(old, new, 1))
        with pytest.raises(ModelFileError, match=match):
            tagger.load(path)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    import os

    path = tmp_path / "fifo.tagger"
    os.mkfifo(path)
    with pytest.raises(ModelFileError, match="not a regular file"):
        tagger.load(path)


def test_info_escapes_control_characters_from_the_file(fitted, tmp_path):
    model, _, _ = fitted
    path = tmp_path / "m.tagger"
    model.save(path)
    _rewrite_config(path, lambda t: t.replace('-LOC"', '-LOC\\u001b]0;pwned\\u0007"'))
    text = workflows.format_info(workflows.model_info(path))
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;pwned\\x07" in text


def test_a_checkpoint_before_any_dev_score_saves_and_resumes(tmp_path):
    """Early stopping off and no dev set: the best score is "none yet" (-inf in memory, null in
    the file, which holds standard JSON only)."""
    X, y = ner_data(30)
    path = tmp_path / "ckpt.tagger"

    def stop_after_two(event, info):
        if event == "epoch_end" and info["epoch"] == 2:
            raise KeyboardInterrupt

    params = dict(SMALL, max_epochs=3, early_stopping=False)
    with pytest.raises(KeyboardInterrupt):
        workflows.train_examples("tag", X, y, None, None, path, params, save_every=1,
                                 callback=stop_after_two)
    config = persist.read_config(path)
    assert config["contents"] == "checkpoint"
    assert config["training_state"]["best_key"] == [None]
    model = tagger.load(path)
    model.continue_fit(X, y)
    assert len(model.history_) == 3
