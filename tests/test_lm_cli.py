"""The command line of the character language model: train --task lm, info, evaluate, generate,
and the refusals (predict, a tagger given to generate, options of the wrong task, bad text)."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tagger
from tagger.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NER = ROOT / "data" / "sample-ner"
TINY = ["--hidden-size", "16", "--embedding-dim", "8", "--bptt", "20", "--batch-size", "4",
        "--max-epochs", "2", "--threads", "1"]
# Wide enough that Rich does not wrap a usage line or an error box.
WIDE = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=WIDE, prog_name="tagger")


def _lines(seed: int, n: int) -> str:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "é"]
    return "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + "\n"
                   for _ in range(n))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    (folder / "train.txt").write_text(_lines(0, 80), encoding="utf-8")
    # A blank line is text too: it is kept (the model reads the lines joined by newlines).
    (folder / "dev.txt").write_text(_lines(1, 8) + "\n" + _lines(2, 4), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def lm_file(corpus) -> tuple[Path, str]:
    out = corpus / "lm.tagger"
    result = invoke("train", "--task", "lm", "--train", corpus / "train.txt", "--dev",
                    corpus / "dev.txt", "-o", out, *TINY)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def ner_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ner") / "ner.tagger"
    result = invoke("train", "--train", NER / "dev.conll", "-o", out, "--hidden-size", "8",
                    "--word-dim", "8", "--char-encoder", "none", "--max-epochs", "1",
                    "--threads", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return out


# -- train ----------------------------------------------------------------------------------------


def test_train_writes_the_model_and_its_history_and_reports_chars(lm_file):
    out, output = lm_file
    model = tagger.load(out)
    assert type(model).__name__ == "CharLanguageModel"
    assert (model.hidden_size, model.embedding_dim, model.bptt, model.batch_size) == (16, 8, 20, 4)
    assert len(model.history_) == 2 and all(e["dev_score"] is not None for e in model.history_)
    history = json.loads(out.with_name(out.name + ".history.json").read_text())
    assert history["best_epoch"] == model.best_epoch_ and len(history["history"]) == 2
    epochs = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("chars/s" in line and "tokens/s" not in line
                                    for line in epochs)
    assert all("nats/char" in line and "bits/char" in line for line in epochs)
    best = model.history_[model.best_epoch_ - 1]["dev_score"]
    end = next(line for line in output.splitlines() if line.startswith("wrote "))
    assert f"dev {-best:.4f} nats/char, {-best / math.log(2):.3f} bits/char" in end


def test_train_lm_without_dev_and_with_the_language_model_options(corpus, tmp_path):
    out = tmp_path / "back.tagger"
    result = invoke("train", "--task", "lm", "--train", corpus / "train.txt", "-o", out,
                    *TINY, "--direction", "backward", "--cell", "GRU", "--min-char-count", "2",
                    "--quiet")
    assert result.exit_code == 0, result.output
    model = tagger.load(out)
    assert (model.direction, model.cell, model.min_char_count) == ("backward", "gru", 2)
    assert all(e["dev_score"] is None for e in model.history_)


def test_help_shows_the_language_model_panel_and_generate():
    text = invoke("train", "--help").output
    panel = text.index("─ Language model options ")
    assert text.index("─ Classifier options ") < panel
    for option in ("--embedding-dim", "--direction", "--bptt", "--min-char-count"):
        assert text.index(option) > panel, option
    assert re.search(r"--direction\s+\[forward\|backward\]", text)
    usage = invoke("generate", "--help").output
    assert "tagger generate [OPTIONS] MODEL" in usage
    for option in ("--prefix", "--length", "--temperature", "--top-k", "--seed"):
        assert option in usage


# -- info, evaluate, generate ---------------------------------------------------------------------


def test_info_describes_the_language_model(lm_file):
    out, _ = lm_file
    model = tagger.load(out)
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "CharLanguageModel" in text and "labels" not in text.split("hyperparameters")[0]
    for key, value in (("cell", "lstm"), ("num layers", "1"), ("hidden size", "16"),
                       ("embedding dim", "8"), ("direction", "forward"),
                       ("vocabulary size", str(len(model.vocabulary_)))):
        assert re.search(rf"^  {key}\s+{value}$", text, re.M), key
    best = model.history_[model.best_epoch_ - 1]["dev_score"]
    assert f"best dev bits/char     {-best / math.log(2):.4f}" in text
    assert re.search(r"^  contents\s+weights only", text, re.M)
    # The newline of the vocabulary is escaped, never printed raw; é is printable and kept.
    characters = next(line for line in text.splitlines() if "characters" in line)
    assert "\\n" in characters and "é" in characters
    details = json.loads(invoke("info", out, "--json").output)
    assert details["language_model"]["direction"] == "forward"
    assert "\n" in details["language_model"]["characters"]


def test_evaluate_agrees_with_score(lm_file, corpus):
    out, _ = lm_file
    model = tagger.load(out)
    dev = corpus / "dev.txt"
    texts = dev.read_text(encoding="utf-8").split("\n")[:-1]
    expected = model.score(texts)
    result = invoke("evaluate", out, dev, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["characters"] == sum(len(t) + 1 for t in texts)
    assert report["log_likelihood"] == pytest.approx(expected, rel=1e-9)
    assert report["bits_per_char"] == pytest.approx(model.bits_per_char(texts), rel=1e-9)
    assert report["perplexity"] == pytest.approx(model.perplexity(texts), rel=1e-9)
    # The dev score the training recorded for its best epoch is this same figure.
    assert model.history_[model.best_epoch_ - 1]["dev_score"] == pytest.approx(expected)
    text = invoke("evaluate", out, dev).output
    assert f"characters scored      {report['characters']:,}" in text
    assert f"log-likelihood         {expected:.4f} nats/char" in text
    assert f"bits per character     {report['bits_per_char']:.4f}" in text
    assert f"perplexity             {report['perplexity']:.4f}" in text


def test_generate_is_reproducible_with_a_seed(lm_file):
    out, _ = lm_file
    vocabulary = set(tagger.load(out).vocabulary_.items[2:])
    first = invoke("generate", out, "--prefix", "the ", "--length", "40", "--seed", "3")
    second = invoke("generate", out, "--prefix", "the ", "--length", "40", "--seed", "3")
    other = invoke("generate", out, "--prefix", "the ", "--length", "40", "--seed", "4")
    for result in (first, second, other):
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("the ") and result.stdout.endswith("\n")
        generated = result.stdout[len("the "):-1]
        assert len(generated) == 40 and set(generated) <= vocabulary
    assert first.stdout == second.stdout
    assert other.stdout != first.stdout  # 40 draws from a 2-epoch model: never all the same


def test_generate_greedy_and_top_k(lm_file):
    out, _ = lm_file
    greedy = [invoke("generate", out, "--length", "25", "--temperature", "0", "--seed", str(s))
              for s in (1, 2)]
    assert all(r.exit_code == 0 for r in greedy), greedy[0].output
    assert greedy[0].stdout == greedy[1].stdout  # the most probable character: no draw at all
    assert len(greedy[0].stdout) == 26
    top = invoke("generate", out, "--length", "10", "--top-k", "1", "--seed", "5")
    assert top.exit_code == 0 and len(top.stdout) == 11
    empty = invoke("generate", out, "--prefix", "on", "--length", "0")
    assert empty.exit_code == 0 and empty.stdout == "on\n"


@pytest.mark.parametrize("option, value", [("--temperature", "-1"), ("--temperature", "nan"),
                                           ("--length", "-3"), ("--top-k", "0"),
                                           ("--seed", "-1")])
def test_generate_refuses_bad_values(lm_file, option, value):
    out, _ = lm_file
    result = invoke("generate", out, option, value)
    assert result.exit_code == 2, result.output
    assert option in result.output


# -- refusals -------------------------------------------------------------------------------------


def test_generate_on_cuda_without_a_gpu_is_one_error_line(lm_file):
    from tagger.kernels.backend import cuda_usable

    if cuda_usable():
        pytest.skip("a GPU is usable here")
    out, _ = lm_file
    result = invoke("generate", out, "--device", "cuda", "--length", "5")
    assert result.exit_code == 1, result.output
    assert "error: device='cuda' was requested, but" in result.output
    assert "Traceback" not in result.output


def test_generate_refuses_a_tagger(ner_file):
    result = invoke("generate", ner_file)
    assert result.exit_code == 1
    assert "error: this model is a SequenceTagger, not a language model" in result.output
    assert "--task lm" in result.output


def test_predict_refuses_a_language_model(lm_file, corpus):
    out, _ = lm_file
    result = invoke("predict", out, corpus / "dev.txt")
    assert result.exit_code == 1
    assert "language model" in result.output and "tagger generate" in result.output
    assert "tagger evaluate" in result.output and "Traceback" not in result.output
    written = corpus / "never.conll"
    result = invoke("predict", out, corpus / "dev.txt", "-o", written)
    assert result.exit_code == 1 and not written.exists()


def test_evaluate_refuses_a_report_for_a_language_model(lm_file, corpus, tmp_path):
    out, _ = lm_file
    page = tmp_path / "r.html"
    result = invoke("evaluate", out, corpus / "dev.txt", "--report", page)
    assert result.exit_code == 2 and "--report" in result.output and not page.exists()


def test_missing_training_file(tmp_path):
    result = invoke("train", "--task", "lm", "--train", tmp_path / "nope.txt", "-o",
                    tmp_path / "m.tagger", "--quiet")
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nope.txt'}: no such file" in result.output


def test_malformed_utf8_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nanother\nbro\xffken\n")
    out = tmp_path / "m.tagger"
    result = invoke("train", "--task", "lm", "--train", bad, "-o", out, *TINY, "--quiet")
    assert result.exit_code == 1
    assert f"error: {bad}:3: not valid UTF-8" in result.output and not out.exists()
    result = invoke("train", "--task", "lm", "--train", NER / "dev.conll", "--dev", bad, "-o",
                    out, *TINY, "--quiet")
    assert result.exit_code == 1 and f"{bad}:3:" in result.output and not out.exists()


def test_evaluate_malformed_utf8_and_missing_file(lm_file, tmp_path):
    out, _ = lm_file
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xc3\n")
    result = invoke("evaluate", out, bad)
    assert result.exit_code == 1 and f"{bad}:1: not valid UTF-8" in result.output
    result = invoke("evaluate", out, tmp_path / "none.txt")
    assert result.exit_code == 1 and "no such file" in result.output


@pytest.mark.parametrize("args, message", [
    (["--task", "tag", "--bptt", "5"], "--bptt is an option of --task lm only"),
    (["--task", "classify", "--direction", "backward", "--bptt", "3"],
     "--bptt, --direction are options of --task lm only"),
    (["--task", "lm", "--crf"], "--task lm (a character language model) has no option --crf"),
    (["--task", "lm", "--word-dim", "8", "--pooling", "max"],
     "has no option --pooling, --word-dim"),
    (["--task", "lm", "--resume", "x.tagger"], "--resume is not supported with --task lm"),
    (["--task", "lm", "--save-every", "1"], "--save-every is not supported with --task lm"),
    (["--task", "lm", "--format", "conll"], "--task lm reads raw text"),
    (["--task", "lm", "--cell", "rnn"], "cell must be one of lstm, gru"),
    (["--task", "lm", "--bptt", "0"], "bptt must be a positive integer"),
    (["--task", "lm", "--direction", "sideways"], "'sideways' is not one of forward, backward"),
    (["--task", "lmx"], "--task must be one of tag, classify, lm, transduce"),
])
def test_options_of_the_wrong_task_are_usage_errors(args, message, corpus, tmp_path):
    out = tmp_path / "m.tagger"
    result = invoke("train", "--train", corpus / "train.txt", "-o", out, *args, "--quiet")
    assert result.exit_code == 2, result.output
    assert message in result.output and not out.exists()


# -- the recipe -----------------------------------------------------------------------------------


def test_the_shakespeare_recipe_is_listed():
    result = invoke("train", "--list-recipes")
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("lm-shakespeare"))
    assert row.split()[1] == "lm"


@pytest.mark.skipif(not (SHARED / "tinyshakespeare" / "train.txt").is_file(),
                    reason="the shared data folder (../shared/data) is not here")
def test_the_shakespeare_recipe_resolves_its_file_and_holds_out_the_tail():
    from tagger.recipes import load_recipe
    from tagger.workflows import read_text_lines, split_tail

    recipe = load_recipe("lm-shakespeare", SHARED)
    assert recipe.task == "lm" and recipe.dev is None and recipe.dev_fraction == 0.05
    assert recipe.train == SHARED / "tinyshakespeare" / "train.txt"
    lines = read_text_lines(recipe.train)
    train, dev = split_tail(lines, recipe.dev_fraction)
    assert train + dev == lines and len(dev) == round(0.05 * len(lines))
    # The recipe's own data_dir finds the same file from the repository.
    assert load_recipe("lm-shakespeare").train.resolve() == recipe.train.resolve()


def test_recipe_dev_fraction_reaches_the_training(tmp_path, corpus, monkeypatch):
    from tagger import workflows

    (tmp_path / "lm.toml").write_text(
        'task = "lm"\ntrain = "train.txt"\ndev_fraction = 0.25\n[params]\nmax_epochs = 1\n')
    seen = {}

    def fake(task, X, y, X_dev, *args, **kwargs):
        seen.update(task=task, X=X, X_dev=X_dev)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflows, "train_examples", fake)
    result = invoke("train", tmp_path / "lm.toml", "--data-dir", corpus, "-o",
                    tmp_path / "m.tagger", "--quiet")
    assert result.exit_code == 130, result.output
    lines = (corpus / "train.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert seen["task"] == "lm" and seen["X"] == lines[:60] and seen["X_dev"] == lines[60:]
    # A --dev file replaces the held-out tail.
    invoke("train", tmp_path / "lm.toml", "--data-dir", corpus, "--dev", corpus / "dev.txt",
           "-o", tmp_path / "m.tagger", "--quiet")
    assert seen["X"] == lines and len(seen["X_dev"]) == 13


@pytest.mark.parametrize("body, message", [
    ('task = "tag"\ntrain = "train.txt"\ndev_fraction = 0.1\n', "dev_fraction is for language"),
    ('task = "lm"\ntrain = "train.txt"\ndev = "dev.txt"\ndev_fraction = 0.1\n', "not both"),
    ('task = "lm"\ntrain = "train.txt"\ndev_fraction = 1.5\n', "between 0 and 1"),
])
def test_bad_dev_fraction_in_a_recipe(body, message, tmp_path, corpus):
    (tmp_path / "r.toml").write_text(body)
    result = invoke("train", tmp_path / "r.toml", "--data-dir", corpus, "-o",
                    tmp_path / "m.tagger", "--quiet")
    assert result.exit_code == 1 and message in result.output


def test_live_progress_of_a_language_model_says_chars(corpus, tmp_path, capsys):
    from tagger.cli import TrainingProgress
    from tagger.workflows import train

    events = []
    progress = TrainingProgress(live=True, language_model=True)

    def callback(event, info):
        events.append(event)
        progress(event, info)

    model = train("lm", corpus / "train.txt", corpus / "dev.txt", tmp_path / "m.tagger",
                  params={"hidden_size": 8, "embedding_dim": 4, "bptt": 20, "batch_size": 4,
                          "max_epochs": 1, "n_jobs": 1}, callback=callback)
    assert events[0] == "epoch_start" and events[-2:] == ["epoch_end", "output"]
    assert events.count("batch") >= 1 and model.best_epoch_ == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("epoch "))
    assert "chars/s" in line and "bits/char" in line
