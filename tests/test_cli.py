"""The command line, through Typer's runner and as the installed console script."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagger import __version__
from tagger.cli import app
from tagger.recipes import available_recipes

runner = CliRunner()
NER = Path(__file__).resolve().parents[1] / "data" / "sample-ner"
# Wide enough that Rich does not wrap a choice list or a usage line.
WIDE = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env=WIDE, prog_name="tagger")
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tagger {__version__}"


def test_demo_trains_both_networks_and_reports_accuracy():
    result = runner.invoke(app, ["demo", "--epochs", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("epoch  2") == 2
    assert "Held-out token accuracy: bidirectional" in result.output


def test_demo_rejects_an_unknown_cell_with_a_usage_error():
    result = runner.invoke(app, ["demo", "--cell", "transformer"])
    assert result.exit_code == 2
    assert "unknown cell 'transformer'" in result.output


def test_import_does_not_load_numba():
    code = "import sys, tagger; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_installed_console_script(tagger_command):
    out = subprocess.run([tagger_command, "--version"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0 and out.stdout.strip() == f"tagger {__version__}"


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception),
                                         ("", pytest.skip.Exception)])
def test_a_missing_command_fails_in_ci_and_skips_elsewhere(ci, outcome, monkeypatch, request):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="tagger command is not on PATH"):
        request.getfixturevalue("tagger_command")


# -- help, choices and usage errors ---------------------------------------------------------------


def test_train_help_lists_the_choices_in_tagger_and_classifier_panels():
    text = _help("train")
    for choices in ("--cell [lstm|gru|rnn|irnn]", "--char-encoder [cnn|lstm|none]",
                    "--optimizer [sgd|adam]", "--tag-scheme [auto|IOB1|IOB2|BIOES|none]",
                    "--pooling [last|mean|max|attention]"):
        option, metavar = choices.split()
        assert re.search(re.escape(option) + r"\s+" + re.escape(metavar), text), choices
    assert "BILOU" in text and "--list-recipes" in text
    shared, tagger, classifier = (text.index(f"─ {name} ") for name in (
        "Network and training options", "Tagger options", "Classifier options"))
    assert shared < text.index("--hidden-size") < tagger
    assert tagger < text.index("--crf") < text.index("--tag-scheme") < classifier
    assert classifier < text.index("--pooling") and classifier < text.index("--class-weight")
    assert "[default: 200]" in text and "[default: crf]" in text  # the estimators' own defaults


@pytest.mark.parametrize("command", ["", "train", "predict", "tag", "evaluate", "info",
                                     "convert", "demo"])
def test_help_has_plain_metavars_and_usage_lines(command):
    text = _help(*command.split())
    assert re.search(r"<[a-z][\w |\[\]]*>", text) is None  # Typer's <bool>, <str>, <path>...
    usage = next(line for line in text.splitlines() if "Usage:" in line).split("Usage: ", 1)[1]
    expected = {"": "tagger [OPTIONS] COMMAND [ARGS]...",
                "train": "tagger train [OPTIONS] [RECIPE]",
                "predict": "tagger predict [OPTIONS] MODEL [FILES]...",
                "tag": "tagger tag [OPTIONS] MODEL [FILES]...",
                "evaluate": "tagger evaluate [OPTIONS] MODEL DATA",
                "info": "tagger info [OPTIONS] MODEL",
                "convert": "tagger convert [OPTIONS] IN OUT",
                "demo": "tagger demo [OPTIONS]"}[command]
    assert usage.strip() == expected


def test_list_recipes():
    result = runner.invoke(app, ["train", "--list-recipes"])  # no --output needed
    assert result.exit_code == 0, result.output
    rows = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == available_recipes()
    assert ["sample-ner", "tag"] == rows[[r[0] for r in rows].index("sample-ner")][:2]
    assert all(len(row) == 3 for row in rows)  # every recipe has a description


@pytest.mark.parametrize("option, value", [
    ("--cell", "transformer"), ("--optimizer", "rmsprop"), ("--tag-scheme", "BILOUX"),
    ("--char-encoder", "rnn"), ("--pooling", "sum"), ("--dropout", "1.5"),
    ("--hidden-size", "0"), ("--clip-norm", "big"), ("--epoch-size", "0"),
    ("--epoch-size", "many"),
])
def test_an_invalid_estimator_option_is_a_usage_error(option, value, tmp_path):
    out = tmp_path / "m.tagger"
    result = runner.invoke(app, ["train", "--train", str(NER / "dev.conll"), "-o", str(out),
                                 option, value, "--quiet"], env=WIDE)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output and not out.exists()


@pytest.fixture
def captured_training(monkeypatch):
    """The estimator parameters ``tagger train`` hands to the workflow (which then stops)."""
    from tagger import workflows

    seen = {}

    def stop(*args, **kwargs):
        seen["params"] = next(a for a in args if isinstance(a, dict) and "random_state" in a)
        raise KeyboardInterrupt

    monkeypatch.setattr(workflows, "train", stop)
    return seen


@pytest.mark.parametrize("value, expected", [("5000", 5000), ("none", None), ("NONE", None)])
def test_epoch_size_takes_an_integer_or_none(value, expected, captured_training, tmp_path):
    result = runner.invoke(app, ["train", "--train", str(NER / "dev.conll"), "-o",
                                 str(tmp_path / "m.tagger"), "--epoch-size", value, "--quiet"])
    assert result.exit_code != 2, result.output
    assert captured_training["params"]["epoch_size"] == expected


@pytest.mark.parametrize("name", ["BILOU", "biluo", "BIOES", "iobes"])
def test_tag_scheme_accepts_spacys_name(name, captured_training, tmp_path):
    result = runner.invoke(app, ["train", "--train", str(NER / "dev.conll"), "-o",
                                 str(tmp_path / "m.tagger"), "--tag-scheme", name,
                                 "--cell", "GRU", "--quiet"])
    assert result.exit_code != 2, result.output
    # Only what was given: a recipe's parameters are not overridden by the defaults.
    assert captured_training["params"] == {"random_state": 0, "n_jobs": None, "device": "auto",
                                           "tag_scheme": "BIOES", "cell": "gru"}


def test_convert_to_bilou(tmp_path):
    result = runner.invoke(app, ["convert", str(NER / "dev.conll"), str(tmp_path / "d.conll"),
                                 "--to-scheme", "BILOU"])
    assert result.exit_code == 0, result.output
    tags = {line.split("\t")[-1][:2] for line in (tmp_path / "d.conll").read_text().splitlines()
            if line}
    assert {"S-", "E-"} <= tags


def test_running_out_of_memory_is_one_line_and_exit_code_1(capsys, monkeypatch):
    import typer

    from tagger.cli import _clear_errors

    @_clear_errors
    def command():
        raise MemoryError("Unable to allocate 2.58 GiB")

    monkeypatch.delenv("TAGGER_DEBUG", raising=False)
    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == ("error: not enough memory for this input (Unable to allocate 2.58 GiB): try "
                   "smaller inputs or batches\n")
