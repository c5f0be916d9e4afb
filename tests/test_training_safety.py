"""Training never destroys good work: going on from a model keeps it unless an epoch beats it,
divergence stops training with the best weights, an interruption saves them, and numeric inputs
out of range are refused with a clear error instead of turning into infinities."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_tagger import SMALL, ner_data
from typer.testing import CliRunner

import tagger
from tagger import SequenceClassifier, SequenceTagger, workflows
from tagger.cli import TrainingProgress, app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data"
# The sample corpus's small file with a held-out tenth for early stopping: a second per run.
RECIPE = ('task = "tag"\ntrain = "sample-ner/dev.conll"\n[params]\nmax_epochs = 8\n'
          'hidden_size = 16\nword_dim = 16\nchar_dim = 8\nchar_hidden_size = 8\n'
          'learning_rate = 0.02\n')

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def copy_of(params: dict) -> dict:
    return {k: v.copy() for k, v in params.items()}


def assert_same_weights(params: dict, expected: dict) -> None:
    assert params.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)


@pytest.fixture(scope="module")
def data():
    X, y = ner_data(120)
    X_dev, y_dev = ner_data(40, seed=1)
    return X, y, X_dev, y_dev


@pytest.fixture(scope="module")
def good_file(data, tmp_path_factory):
    """A tagger trained with a development set, saved as a final model (weights only)."""
    X, y, X_dev, y_dev = data
    path = tmp_path_factory.mktemp("good") / "good.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=6)).fit(X, y, X_dev, y_dev).save(path)
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "small.toml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def good_cli_model(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "good.tagger"
    result = invoke("train", recipe, "--data-dir", SAMPLES, "-o", out, "--threads", "1",
                    "--quiet")
    assert result.exit_code == 0, result.output
    return out


# -- 1. resuming keeps the file's best score -------------------------------------------------


@pytest.mark.filterwarnings("ignore:the model has no optimizer state")
def test_going_on_from_a_model_keeps_its_weights_unless_an_epoch_beats_them(data, good_file):
    X, y, X_dev, y_dev = data
    model = tagger.load(good_file)
    before, best, n = copy_of(model.params_), model.best_epoch_, len(model.history_)
    best_score = model.history_[best - 1]["dev_score"]
    model.set_params(learning_rate=3.0, max_epochs=n + 3)  # far too high: every epoch is worse
    model.continue_fit(X, y, X_dev, y_dev)
    assert len(model.history_) > n
    assert all(h["dev_score"] < best_score for h in model.history_[n:])
    assert model.best_epoch_ == best
    assert_same_weights(model.params_, before)
    assert model.score(X_dev, y_dev) == pytest.approx(best_score)


@pytest.mark.filterwarnings("ignore:the model has no optimizer state")
def test_resuming_onto_the_same_file_never_replaces_a_better_model(recipe, good_cli_model,
                                                                   tmp_path):
    history = workflows.history_path(good_cli_model)
    saved = good_cli_model.read_bytes(), history.read_bytes()
    good = tagger.load(good_cli_model)
    best_score = good.history_[good.best_epoch_ - 1]["dev_score"]
    common = ("train", recipe, "--data-dir", SAMPLES, "--resume", good_cli_model,
              "--max-epochs", "11", "--threads", "1", "--quiet")
    # A learning rate that spoils the model without diverging: the run ends normally.
    result = invoke(*common, "-o", good_cli_model, "--learning-rate", "1")
    assert result.exit_code == 0, result.output
    assert (f"no epoch beat the resumed model (epoch {good.best_epoch_}, dev score "
            f"{best_score:.4f}): left {good_cli_model} unchanged") in result.output
    assert (good_cli_model.read_bytes(), history.read_bytes()) == saved
    # Another output gets the better of the two: here the resumed weights, with the new epochs.
    other = tmp_path / "other.tagger"
    result = invoke(*common, "-o", other, "--learning-rate", "1")
    assert result.exit_code == 0, result.output
    assert "no epoch beat the resumed model" in result.output
    assert "the output holds its weights" in result.output
    written = tagger.load(other)
    assert written.best_epoch_ == good.best_epoch_ and len(written.history_) > len(good.history_)
    assert_same_weights(written.params_, good.params_)
    # The command: it now stops as diverged, and the file is as it was.
    result = invoke(*common, "-o", good_cli_model, "--learning-rate", "1e6")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: training diverged")
    assert f"left {good_cli_model} unchanged" in lines[0]
    assert (good_cli_model.read_bytes(), history.read_bytes()) == saved
    # Diverging onto another output writes the best so far there: the resumed weights.
    result = invoke(*common, "-o", tmp_path / "diverged.tagger", "--learning-rate", "1e6")
    assert result.exit_code == 1
    assert (f"saved the best model so far (epoch {good.best_epoch_}) to "
            f"{tmp_path / 'diverged.tagger'}") in result.output
    assert_same_weights(tagger.load(tmp_path / "diverged.tagger").params_, good.params_)


@pytest.mark.filterwarnings("ignore:the model has no optimizer state")
def test_resuming_without_early_stopping_needs_a_better_dev_score(recipe, tmp_path):
    # Without early stopping the run keeps its last epoch: a later epoch, not a better one.
    blocks = (SAMPLES / "sample-ner" / "dev.conll").read_text().strip().split("\n\n")
    train, dev = tmp_path / "train.conll", tmp_path / "dev.conll"
    train.write_text("\n\n".join(blocks[: len(blocks) * 9 // 10]) + "\n\n")
    dev.write_text("\n\n".join(blocks[len(blocks) * 9 // 10:]) + "\n\n")
    model = tmp_path / "a.tagger"
    files = ("train", recipe, "--data-dir", SAMPLES, "--train", train, "--dev", dev,
             "--threads", "1", "--quiet")
    result = invoke(*files, "-o", model)
    assert result.exit_code == 0, result.output
    history = workflows.history_path(model)
    saved = model.read_bytes(), history.read_bytes()
    good = tagger.load(model)
    best_score = good.history_[good.best_epoch_ - 1]["dev_score"]
    last = len(good.history_) + 3
    common = (*files, "--resume", model, "--max-epochs", last, "--no-early-stopping",
              "--learning-rate", "1")
    resumed = f"the resumed model (epoch {good.best_epoch_}, dev score {best_score:.4f})"
    # Checkpoints of every epoch wait for a better score too.
    result = invoke(*common, "-o", model, "--save-every", "1")
    assert result.exit_code == 0, result.output
    found = re.search(rf"epoch {last} \(dev score ([0-9.]+)\) did not beat "
                      rf"{re.escape(resumed)}: left {re.escape(str(model))} unchanged",
                      result.output)
    assert found, result.output
    assert float(found[1]) < best_score and "with dev score" not in result.output
    assert (model.read_bytes(), history.read_bytes()) == saved
    # Another output gets the last epoch, as asked, and the message says so.
    other = tmp_path / "last.tagger"
    result = invoke(*common, "-o", other)
    assert result.exit_code == 0, result.output
    assert f"did not beat {resumed}: the output holds the weights of epoch {last}" in \
        result.output
    assert tagger.load(other).best_epoch_ == last


# -- 2. divergence ----------------------------------------------------------------------------


def test_a_huge_learning_rate_stops_as_diverged(data):
    X, y, _, _ = data
    with pytest.raises(FloatingPointError, match="^training diverged in epoch 1: the mean loss .* "
                                                 "over 100 times that of a uniform guess"):
        SequenceTagger(**dict(SMALL, learning_rate=1e6)).fit(X, y)
    labels = ["travel" if "Paris" in s or "Rome" in s else "home" for s in X]
    with pytest.raises(FloatingPointError, match="^training diverged in epoch 1"):
        SequenceClassifier(hidden_size=8, word_dim=8, char_encoder=None, max_epochs=3,
                           learning_rate=1e6, random_state=0).fit(X, labels)


@pytest.mark.filterwarnings("ignore:the model has no optimizer state")
def test_divergence_keeps_the_best_weights_so_far(data, good_file):
    X, y, X_dev, y_dev = data
    model = tagger.load(good_file)
    before, best = copy_of(model.params_), model.best_epoch_
    model.set_params(learning_rate=1e6, max_epochs=len(model.history_) + 3)
    with pytest.raises(FloatingPointError,
                       match=f"^training diverged.*the weights are those of epoch {best}, the "
                             f"best so far"):
        model.continue_fit(X, y, X_dev, y_dev)
    assert model.best_epoch_ == best
    assert_same_weights(model.params_, before)


@pytest.mark.filterwarnings("ignore:the model has no optimizer state")
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_last_step_that_overflows_the_weights_is_caught(data, good_file):
    X, y, _, _ = data
    model = tagger.load(good_file)
    before = copy_of(model.params_)
    model.set_params(learning_rate=1e300)  # one step, the epoch's last, makes them infinite
    with pytest.raises(FloatingPointError, match="^training diverged in epoch .* overflowed"):
        model.partial_fit(X[:4], y[:4])
    assert_same_weights(model.params_, before)


def test_the_command_reports_divergence_on_one_line_and_writes_nothing(recipe, tmp_path):
    out = tmp_path / "m.tagger"
    result = invoke("train", recipe, "--data-dir", SAMPLES, "-o", out, "--learning-rate", "1e6",
                    "--threads", "1", "--quiet")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith(
        "error: training diverged in epoch 1")
    assert "no epoch had finished; nothing saved" in result.output
    assert not out.exists()


# -- 3. interruptions -------------------------------------------------------------------------


@pytest.mark.parametrize("early_stopping", [True, False], ids=["best-epoch", "last-epoch"])
@pytest.mark.parametrize("decay", [0.0, 0.5], ids=["weights", "averaged"])
def test_an_interrupted_fit_holds_the_best_epochs_weights(data, early_stopping, decay):
    """The best epoch's model: its weights, or with average_decay the moving average of the
    epoch-end weights up to it."""
    X, y, X_dev, y_dev = data
    kept, average = {}, {}

    def callback(event, info):
        if event == "epoch_end":
            weights = info["estimator"].params_
            for k, v in weights.items():
                average[k] = v.copy() if k not in average else (
                    np.float32(decay) * average[k] + np.float32(1 - decay) * v)
            if info["best_epoch"] == info["epoch"]:
                kept.update(epoch=info["epoch"], params=copy_of(average))
        if event == "batch" and info["epoch"] == 4 and info["batch"] == 3:
            raise KeyboardInterrupt

    model = SequenceTagger(**dict(SMALL, learning_rate=0.05, early_stopping=early_stopping,
                                  average_decay=decay))
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, X_dev, y_dev, callback=callback)
    assert len(model.history_) == 3
    assert model.best_epoch_ == kept["epoch"] <= 3
    if not early_stopping:
        assert kept["epoch"] == 3
    assert_same_weights(model.params_, kept["params"])


def test_an_interruption_keeps_a_checkpoint_of_the_last_epoch(data, tmp_path):
    X, y, X_dev, y_dev = data
    out = tmp_path / "m.tagger"

    def stop_in_epoch_3(event, info):
        if event == "batch" and info["epoch"] == 3 and info["batch"] == 2:
            raise KeyboardInterrupt

    for save_every, expected in (
            (2, f"interrupted: {out} holds the checkpoint of epoch 2"),  # resumes exactly
            (3, "interrupted: saved the best model so far (epoch ")):  # the last one is older
        with pytest.raises(workflows.TrainingInterrupted, match=f"^{re.escape(expected)}"):
            workflows.train_examples("tag", X, y, X_dev, y_dev, out, SMALL,
                                     save_every=save_every, callback=stop_in_epoch_3)
        contents = tagger.persist.read_config(out)["contents"]
        assert contents == ("checkpoint" if save_every == 2 else "weights")
        out.unlink()


def interrupt_at(monkeypatch, epoch: int, batch: int) -> None:
    """Make the command's progress display raise KeyboardInterrupt (as Ctrl-C or SIGTERM would)
    at a given batch."""
    shown = TrainingProgress.__call__

    def call(self, event, info):
        shown(self, event, info)
        if event == "batch" and info["epoch"] == epoch and info["batch"] == batch:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingProgress, "__call__", call)


def test_the_command_saves_the_best_model_when_interrupted(recipe, tmp_path, monkeypatch):
    out = tmp_path / "m.tagger"
    interrupt_at(monkeypatch, 3, 2)
    result = invoke("train", recipe, "--data-dir", SAMPLES, "-o", out, "--threads", "1",
                    "--quiet")
    assert result.exit_code == 130, result.output
    model = tagger.load(out)
    assert len(model.history_) == 2 and model.best_epoch_ in (1, 2)
    assert (f"interrupted: saved the best model so far (epoch {model.best_epoch_}) to {out}"
            in result.output)
    assert workflows.history_path(out).exists()


def test_an_interruption_before_any_epoch_saves_nothing(recipe, tmp_path, monkeypatch):
    out = tmp_path / "m.tagger"
    interrupt_at(monkeypatch, 1, 2)
    result = invoke("train", recipe, "--data-dir", SAMPLES, "-o", out, "--threads", "1",
                    "--quiet")
    assert result.exit_code == 130, result.output
    assert "interrupted: no epoch had finished; nothing saved" in result.output
    assert not out.exists() and not workflows.history_path(out).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_training_saves_the_best_model(recipe, tmp_path):
    out = tmp_path / "m.tagger"
    env = {**os.environ, "TAGGER_DATA_DIR": str(SAMPLES)}
    command = [sys.executable, "-m", "tagger.cli", "train", str(recipe), "-o", str(out),
               "--max-epochs", "1000", "--patience", "1000", "--threads", "1"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        seen = []
        for line in process.stderr:  # one log line per epoch (not a terminal)
            seen.append(line)
            if line.startswith("epoch   2"):
                process.send_signal(signal.SIGTERM)
                break
        rest = process.stderr.read()
        code = process.wait(timeout=120)
    assert code == 130, "".join(seen) + rest
    model = tagger.load(out)
    assert len(model.history_) >= 2
    assert (f"interrupted: saved the best model so far (epoch {model.best_epoch_}) to {out}"
            in rest)


# -- 4. numeric inputs ------------------------------------------------------------------------


def numeric_data(n: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(int(rng.integers(3, 8)), 2)) for _ in range(n)]
    return X, [i % 2 for i in range(n)]


def test_fit_refuses_features_whose_statistics_overflow():
    X, y = numeric_data()
    X[3][2, 1] = 1e200  # its square is infinite: the scale would be too, the feature zeroed
    with pytest.raises(ValueError, match=r"^feature 1 of X cannot be standardised: its values "
                                         r"reach 1e\+200"):
        # No held-out split: the example with the huge value stays in the training data.
        SequenceClassifier(hidden_size=4, max_epochs=1, early_stopping=False,
                           random_state=0).fit(X, y)
    # A near-constant feature keeps scale 1: its standardised values are beyond float32.
    X, y = numeric_data()
    for x in X:
        x[:, 0] = 1e60
    X[5][1, 0] = 1e60 * (1 + 1e-13)
    with pytest.raises(ValueError, match=r"has the value 1e\+60 at step \d+, feature 0: .* beyond "
                                         r"float32 range"):
        SequenceTagger(hidden_size=4, max_epochs=1).fit(X, [["a"] * len(x) for x in X])


def test_prediction_refuses_values_beyond_the_network_range():
    X, y = numeric_data()
    model = SequenceClassifier(hidden_size=4, max_epochs=1, random_state=0).fit(X, y)
    bad = [x.copy() for x in X[:3]]
    bad[1][0, 0] = 1e39  # finite in float64, infinite in float32: NaN probabilities
    for method in (model.predict, model.predict_proba):
        with pytest.raises(ValueError, match=r"^X\[1\] has the value 1e\+39 at step 0, "
                                             r"feature 0: .*beyond float32 range"):
            method(bad)
    with pytest.raises(ValueError, match=r"^X_dev\[1\] has the value 1e\+39"):
        SequenceClassifier(hidden_size=4, max_epochs=1).fit(X, y, X_dev=bad, y_dev=[0, 1, 0])
    assert np.isfinite(model.predict_proba(X[:3])).all()  # ordinary values are fine
