"""The commands train, predict (tag), evaluate, info and convert, through Typer's runner, and the
installed console script end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tagger
from tagger.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data"
NER = SAMPLES / "sample-ner"
REVIEWS = SAMPLES / "sample-classify"
TINY = ["--hidden-size", "16", "--word-dim", "16", "--char-dim", "8", "--char-hidden-size", "8",
        "--shape-dim", "4", "--max-epochs", "3", "--threads", "1", "--quiet"]

runner = CliRunner()


def invoke(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def ner_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("ner") / "ner.tagger"
    result = invoke("train", "--train", NER / "train.conll", "--dev", NER / "dev.conll",
                    "--output", out, *TINY)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def review_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("reviews") / "reviews.tagger"
    result = invoke("train", "--task", "classify", "--train", REVIEWS / "train.tsv",
                    "--dev", REVIEWS / "dev.tsv", "--output", out, "--pooling", "mean", *TINY)
    assert result.exit_code == 0, result.output
    return out


# -- train -------------------------------------------------------------------------------------


def test_train_writes_the_model_and_its_history(ner_model):
    model = tagger.load(ner_model)
    assert model.hidden_size == 16 and model.max_epochs == 3 and model.random_state == 0
    history = json.loads(Path(str(ner_model) + ".history.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2, 3]
    assert history["best_epoch"] == model.best_epoch_
    assert all(h["dev_score"] is not None for h in history["history"])


def test_train_options_reach_the_estimator(review_model):
    model = tagger.load(review_model)
    assert type(model).__name__ == "SequenceClassifier"
    assert model.pooling == "mean" and model.classes_.tolist() == ["negative", "positive"]


def test_train_logs_one_line_per_epoch_when_not_a_terminal(tmp_path):
    result = invoke("train", "--train", NER / "dev.conll", "--output", tmp_path / "m.tagger",
                    *[a for a in TINY if a != "--quiet"], "--max-epochs", "2",
                    "--no-early-stopping", "--crf")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "tokens/s" in lines[0] and "loss" in lines[0]


def test_train_from_a_recipe_with_checkpoints_and_resume(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('task = "tag"\ntrain = "sample-ner/dev.conll"\n'
                      '[params]\nmax_epochs = 2\nhidden_size = 8\nword_dim = 8\n'
                      'char_encoder = "cnn"\nchar_dim = 4\nchar_hidden_size = 4\n')
    out = tmp_path / "r.tagger"
    result = invoke("train", recipe, "--data-dir", SAMPLES, "--output", out, "--save-every", "1",
                    "--threads", "1", "--quiet")
    assert result.exit_code == 0, result.output
    first = tagger.load(out)
    assert first.hidden_size == 8 and len(first.history_) == 2
    more = tmp_path / "more.tagger"  # onto itself, a run that beats nothing leaves it as it is
    result = invoke("train", recipe, "--data-dir", SAMPLES, "--output", more, "--resume", out,
                    "--max-epochs", "4", "--threads", "1", "--quiet")
    assert result.exit_code == 0, result.output
    resumed = tagger.load(more)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    assert resumed.history_[:2] == first.history_


def test_train_errors(tmp_path):
    result = invoke("train", "--output", tmp_path / "m.tagger")
    assert result.exit_code == 2 and "give a recipe or --train" in result.output
    result = invoke("train", "--train", tmp_path / "missing.conll", "--output", tmp_path / "m")
    assert result.exit_code == 1 and "missing.conll: no such file" in result.output
    bad = tmp_path / "bad.conll"
    bad.write_text("a\tO\nb\tO\textra\n")
    result = invoke("train", "--train", bad, "--output", tmp_path / "m.tagger")
    assert result.exit_code == 1 and "bad.conll:2:" in result.output
    assert "Traceback" not in result.output
    result = invoke("train", "nonexistent-recipe", "--output", tmp_path / "m.tagger")
    assert result.exit_code == 1 and "no recipe named 'nonexistent-recipe'" in result.output
    assert "sample-ner" in result.output  # the known ones are listed
    result = invoke("train", "--train", NER / "dev.conll", "--output", tmp_path / "m.tagger",
                    "--cell", "transformer", "--quiet")
    assert result.exit_code == 2 and "'transformer' is not one of lstm, gru" in result.output
    result = invoke("train", "--train", NER / "dev.conll", "--output", tmp_path / "m.tagger",
                    "--hidden-size", "many")
    assert result.exit_code == 2
    assert not (tmp_path / "m.tagger").exists()


# -- predict -----------------------------------------------------------------------------------


def test_predict_raw_text_from_stdin_as_jsonl(ner_model):
    text = "Maria Lopez flew to Paris on Monday .\n\nThe Northwind Labs office is in Oslo .\n"
    result = invoke("predict", ner_model, "--output-format", "jsonl", input=text)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2  # the blank line is not a sentence
    first = records[0]
    assert list(first) == ["text", "tokens", "pred_tags", "spans"]
    assert first["text"] == "Maria Lopez flew to Paris on Monday ."
    assert first["tokens"][0] == "Maria"
    assert len(first["pred_tags"]) == len(first["tokens"])
    for span in first["spans"]:
        assert set(span) == {"start", "end", "label", "score", "start_char", "end_char"}
        assert 0 < span["score"] <= 1
        assert first["pred_tags"][span["start"]] == "B-" + span["label"]
        assert first["text"][span["start_char"]:span["end_char"]] == " ".join(
            first["tokens"][span["start"]:span["end"]])


def test_tagging_from_a_model_file_does_not_import_scikit_learn(ner_model, tmp_path):
    # scikit-learn's import costs about 0.8 s of every start; tagging does not need it.
    code = ("import sys\n"
            "from tagger.cli import main\n"
            "sys.argv = ['tagger', 'predict', sys.argv[1], '-o', sys.argv[2]]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code, str(ner_model), str(tmp_path / "o.conll")],
                         input="Anna lives in Rome .\n", capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert out.stdout.strip() == "[]"
    assert len((tmp_path / "o.conll").read_text().split("\n\n")[0].splitlines()) == 5


def test_predict_conll_file_keeps_the_input_columns(ner_model, tmp_path):
    result = invoke("tag", ner_model, NER / "dev.conll")  # the alias; CoNLL from the extension
    assert result.exit_code == 0, result.output
    blocks = [b for b in result.stdout.split("\n\n") if b.strip()]
    assert len(blocks) == 300
    first = blocks[0].splitlines()[0].split("\t")
    gold = (NER / "dev.conll").read_text().splitlines()[0].split("\t")
    assert first[:2] == gold and len(first) == 3  # token, gold, predicted: ready for conlleval
    out = tmp_path / "pred.conll"
    result = invoke("predict", ner_model, NER / "dev.conll", NER / "dev.conll", "-o", out)
    assert result.exit_code == 0 and "wrote 600 record(s)" in result.output
    assert out.read_text().count("\n\n") == 600


def test_predict_classifier_outputs(review_model, tmp_path):
    texts = "a delightful kettle , truly great .\nthe battery is awful .\n"
    result = invoke("predict", review_model, input=texts)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["pred_label"] in ("negative", "positive") for r in records] == [True, True]
    assert abs(sum(records[0]["proba"].values()) - 1) < 1e-5
    result = invoke("predict", review_model, "--output-format", "tsv", input=texts)
    assert result.stdout.splitlines()[1].endswith("\tthe battery is awful .")
    result = invoke("predict", review_model, "--output-format", "conll", input=texts)
    assert result.exit_code == 1 and "CoNLL output is for taggers" in result.output


def test_predict_on_error_skip_reports_the_bad_records(ner_model, tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_text('{"tokens": ["Anna", "works"]}\n{"tokens": [}\n'
                    '{"tokens": ["in", "Rome"]}\n{"words": []}\n')
    result = invoke("predict", ner_model, data)
    assert result.exit_code == 1 and "mixed.jsonl:2:" in result.output
    result = invoke("predict", ner_model, data, "--on-error", "skip",
                    "--output-format", "jsonl")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
    assert "skipped 2 malformed record(s)" in result.stderr
    assert "mixed.jsonl:2:" in result.stderr and "mixed.jsonl:4:" in result.stderr


def test_predict_errors(ner_model, tmp_path):
    result = invoke("predict", tmp_path / "none.tagger", input="a\n")
    assert result.exit_code == 1 and "none.tagger" in result.output
    broken = tmp_path / "broken.tagger"
    broken.write_bytes(Path(ner_model).read_bytes()[:500])
    result = invoke("predict", broken, input="a\n")
    assert result.exit_code == 1 and "broken.tagger" in result.output
    result = invoke("predict", ner_model, tmp_path / "x.docx")
    assert result.exit_code == 1 and "cannot tell the format" in result.output
    result = invoke("predict", ner_model, "--on-error", "ignore", input="a\n")
    assert result.exit_code == 2
    result = invoke("predict", ner_model, "--device", "cuda", input="a\n")
    assert result.exit_code == 1 and "device='cuda'" in result.output
    result = invoke("predict", ner_model, "--device", "tpu", input="a\n")
    assert result.exit_code == 1 and "device must be one of" in result.output
    assert "Traceback" not in result.output


# -- evaluate, info, convert ---------------------------------------------------------------------


def test_evaluate_table_and_json(ner_model, review_model):
    result = invoke("evaluate", ner_model, NER / "dev.conll")
    assert result.exit_code == 0, result.output
    assert "entity micro F1" in result.stdout and "PER" in result.stdout
    result = invoke("evaluate", ner_model, NER / "dev.conll", "--json")
    report = json.loads(result.stdout)
    model = tagger.load(ner_model)
    from sklearn.metrics import classification_report

    from tagger import metrics
    from tagger.io import read_conll, read_tsv
    from tagger.text import spans_from_tags

    sentences = list(read_conll(NER / "dev.conll"))
    gold = [s.tags for s in sentences]
    predicted = model.predict([s.tokens for s in sentences])
    # Every per-type figure, exactly: gold and predicted swapped would exchange precision and
    # recall and count the predicted entities as the support.
    expected = metrics.entity_scores(gold, predicted, scheme=model.tag_scheme_)
    assert report["entities"] == expected
    assert metrics.entity_scores(predicted, gold, scheme=model.tag_scheme_) != expected
    assert report["token_accuracy"] == metrics.token_accuracy(gold, predicted)
    assert report["n_examples"] == 300 and set(report["entities"]) >= {"PER", "LOC", "ORG"}
    assert sum(row["support"] for name, row in report["entities"].items()
               if not name.endswith(" avg")) == sum(
        len(spans_from_tags(tags, model.tag_scheme_)) for tags in gold)
    result = invoke("evaluate", review_model, REVIEWS / "dev.tsv", "--json")
    report = json.loads(result.stdout)
    model = tagger.load(review_model)
    texts = list(read_tsv(REVIEWS / "dev.tsv"))
    gold = [t.label for t in texts]
    predicted = [str(p) for p in model.predict([t.tokens for t in texts])]
    assert report["accuracy"] == np.mean([g == p for g, p in zip(gold, predicted, strict=True)])
    labels = [str(c) for c in model.classes_]
    table = classification_report(gold, predicted, labels=labels, output_dict=True,
                                  zero_division=0)
    assert report["classes"] == {name: row for name, row in table.items()
                                 if isinstance(row, dict)}
    swapped = classification_report(predicted, gold, labels=labels, output_dict=True,
                                     zero_division=0)
    assert swapped != table  # the comparison above can tell the two sides apart


def test_info(ner_model):
    result = invoke("info", ner_model, "--json")
    assert result.exit_code == 0, result.output
    details = json.loads(result.stdout)
    model = tagger.load(ner_model)
    assert details["kind"] == "SequenceTagger" and details["checksums"] == "ok"
    assert details["parameters"] == sum(v.size for v in model.params_.values())
    assert details["labels"] == model.classes_
    assert details["vocabulary_size"] == len(model.vocabulary_)
    assert details["hyperparameters"]["hidden_size"] == 16
    assert "library version" in invoke("info", ner_model).stdout


def test_convert_round_trips_formats_and_schemes(tmp_path):
    source = NER / "dev.conll"
    result = invoke("convert", source, tmp_path / "dev.jsonl")
    assert result.exit_code == 0 and "wrote 300 sentence(s)" in result.output
    invoke("convert", tmp_path / "dev.jsonl", tmp_path / "dev.bioes.conll", "--to-scheme", "BIOES")
    bioes = (tmp_path / "dev.bioes.conll").read_text()
    assert "\tS-" in bioes or "\tE-" in bioes
    invoke("convert", tmp_path / "dev.bioes.conll", tmp_path / "back.conll", "--to-scheme", "IOB2")
    assert (tmp_path / "back.conll").read_text() == source.read_text()
    result = invoke("convert", source, tmp_path / "out.conllu")
    assert result.exit_code == 0 and (tmp_path / "out.conllu").read_text().startswith("1\t")
    result = invoke("convert", source, tmp_path / "out.txt")
    assert result.exit_code == 1 and "cannot tell the format" in result.output
    assert not (tmp_path / "out.txt").exists()


# -- the installed command ------------------------------------------------------------------------


def test_installed_command_end_to_end(tmp_path, tagger_command):
    env = dict(os.environ, COLUMNS="100")
    model = tmp_path / "sample.tagger"
    train = subprocess.run(["tagger", "train", "sample-ner", "--data-dir", str(SAMPLES),
                            "--output", str(model), "--max-epochs", "2", "--hidden-size", "16"],
                           capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert train.returncode == 0, train.stderr
    assert "recipe sample-ner" in train.stderr and train.stderr.count("epoch") >= 2
    tagged = subprocess.run(["tagger", "predict", str(model), "--output-format", "jsonl"],
                            input="Anna Smith visited Berlin .\n", capture_output=True, text=True,
                            env=env, check=False)
    assert tagged.returncode == 0, tagged.stderr
    assert json.loads(tagged.stdout)["tokens"] == ["Anna", "Smith", "visited", "Berlin", "."]

    def run(*args, **kwargs):
        return subprocess.run(["tagger", *map(str, args)], capture_output=True, text=True,
                              env=env, check=False, **kwargs)

    predicted = run("predict", model, NER / "dev.conll", "-o", tmp_path / "dev.pred.conll")
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "dev.pred.conll").read_text().count("\n\n") == 300
    scored = run("evaluate", model, NER / "dev.conll", "--json")
    assert scored.returncode == 0 and "micro avg" in json.loads(scored.stdout)["entities"]
    assert run("convert", NER / "dev.conll", tmp_path / "dev.jsonl").returncode == 0
    assert run("convert", tmp_path / "dev.jsonl", tmp_path / "back.conll").returncode == 0
    assert (tmp_path / "back.conll").read_text() == (NER / "dev.conll").read_text()
    bad = tmp_path / "bad.conll"
    bad.write_text("a\tO\n\nb\tO\tX\nc\tO\n")
    malformed = run("evaluate", model, bad)
    assert malformed.returncode == 1
    assert malformed.stderr.splitlines()[-1].startswith("error: ")
    assert f"{bad}:3: expected 2 columns" in malformed.stderr
    assert "Traceback" not in malformed.stderr
    missing = subprocess.run(["tagger", "info", str(tmp_path / "nope.tagger")],
                             capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 1 and missing.stderr.splitlines()[-1].startswith("error: ")
    assert "Traceback" not in missing.stderr
    usage = subprocess.run(["tagger", "predict"], capture_output=True, text=True, env=env,
                           check=False)
    assert usage.returncode == 2


def test_predict_a_folder_streams_batch_by_batch(ner_model, tmp_path):
    from tagger import workflows

    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("Anna lives in Rome .\nPeter works at Bluefield Bank .\n")
    (folder / "a.txt").write_text("Omar met Lucy in Lagos .\n")
    (folder / "sub" / "c.txt").write_text("Chen visited Oslo .\n")
    (folder / "notes.md").write_text("ignored: unknown extension\n")
    result = invoke("predict", ner_model, folder, "--output-format", "jsonl")
    assert result.exit_code == 0, result.output
    tokens = [json.loads(line)["tokens"][0] for line in result.stdout.splitlines()]
    assert tokens == ["Omar", "Anna", "Peter", "Chen"]  # files in sorted order, lines in order

    class Recorder:
        """An output that remembers how many lines had been written at each flush."""

        def __init__(self):
            self.lines, self.flushes = 0, []

        def write(self, text):
            self.lines += text.count("\n")

        def flush(self):
            self.flushes.append(self.lines)

    out = Recorder()
    model = tagger.load(ner_model)
    count = workflows.predict_files(model, [str(NER / "dev.conll")], out, batch_size=64,
                                    output_format="jsonl")
    assert count == 300 and out.flushes == [64, 128, 192, 256, 300]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("predict", ner_model, empty)
    assert result.exit_code == 1 and "no input files in the folder" in result.output


def test_progress_bar_on_a_terminal_does_not_disturb_training(tmp_path):
    from tagger.cli import TrainingProgress
    from tagger.workflows import train

    events = []
    progress = TrainingProgress(live=True)

    def callback(event, info):
        events.append(event)
        progress(event, info)

    model = train("tag", NER / "dev.conll", output=tmp_path / "m.tagger", callback=callback,
                  params={"hidden_size": 8, "word_dim": 8, "char_encoder": None,
                          "max_epochs": 2, "early_stopping": False, "n_jobs": 1})
    assert events.count("epoch_start") == 2 and events.count("epoch_end") == 2
    assert events.count("batch") == 2 * -(-300 // model.batch_size)


def test_every_shipped_recipe_loads_and_the_digits_recipe_trains(tmp_path):
    from tagger.recipes import available_recipes, load_recipe

    names = available_recipes()
    assert {"sample-ner", "sample-classify", "ner-wnut17", "pos-ud-ewt", "sentiment-sst2",
            "digits"} <= set(names)
    for name in ("sample-ner", "sample-classify", "digits"):
        recipe = load_recipe(name)
        assert recipe.task in ("tag", "classify") and recipe.description
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        for name in ("ner-wnut17", "pos-ud-ewt", "sentiment-sst2"):
            assert load_recipe(name, shared).train.is_file()
    result = invoke("train", "ner-wnut17", "--data-dir", tmp_path, "--output", tmp_path / "m")
    assert result.exit_code == 1 and "not in the data directory" in result.output
    out = tmp_path / "digits.tagger"
    result = invoke("train", "digits", "--output", out, "--max-epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    model = tagger.load(out)
    assert model.input_type_ == "numeric" and model.n_features_ == 8 and len(model.history_) == 3


def test_the_package_ships_its_recipes_and_sample_corpora(tmp_path):
    # Laid out as pyproject.toml installs it, the package finds its recipes and their data from
    # any directory (a wheel holds tagger/pipelines and tagger/data).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, mapping = config["packages"], config["package-dir"]
    found = {".".join(p.relative_to(ROOT).parent.parts)
             for p in (ROOT / "tagger").rglob("__init__.py")}
    assert set(packages) == found | set(mapping)  # no package of tagger/ left out
    site = tmp_path / "site"
    for package in packages:
        source = ROOT / mapping.get(package, package.replace(".", "/"))
        target = site / package.replace(".", "/")
        files = list(source.glob("*.py"))
        for pattern in config["package-data"].get(package, []):
            files += source.glob(pattern)
        for file in files:
            (target / file.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target / file.relative_to(source))
    assert ({p.name for p in (site / "tagger" / "pipelines").glob("*.toml")}
            == {p.name for p in (ROOT / "pipelines").glob("*.toml")})
    for corpus in ("sample-ner", "sample-classify"):
        for file in (SAMPLES / corpus).iterdir():
            assert (site / "tagger" / "data" / corpus / file.name).read_bytes() == \
                file.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("from tagger.recipes import load_recipe\n"
            "for name in ('sample-ner', 'sample-classify'):\n"
            "    recipe = load_recipe(name)\n"
            "    print(recipe.path, recipe.train, recipe.dev)\n")
    env = {k: v for k, v in os.environ.items() if k != "TAGGER_DATA_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=elsewhere, env=dict(env, PYTHONPATH=str(site)), check=False)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        for path in map(Path, line.split()):
            assert path.is_file() and path.resolve().is_relative_to(site.resolve()), path


def test_recipes_run_from_python(tmp_path):
    from tagger.workflows import train_recipe

    model = train_recipe("sample-classify", tmp_path / "c.tagger",
                         params={"max_epochs": 2, "hidden_size": 8, "char_encoder": None})
    assert model.max_epochs == 2 and model.hidden_size == 8 and len(model.history_) == 2
    assert (tmp_path / "c.tagger.history.json").is_file()


def test_html_views(ner_model, review_model, tmp_path):
    result = invoke("predict", ner_model, "--output-format", "html",
                    input="Maria Lopez flew to Paris .\nNothing here <b>at all</b> .\n")
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('<p class="sentence">') == 2
    assert "&lt;" in page and "<b>" not in page  # input text is escaped
    result = invoke("predict", review_model, "--output-format", "html",
                    input="a great kettle .\n")
    assert result.exit_code == 0 and "positive" in result.stdout
    report = tmp_path / "report.html"
    result = invoke("evaluate", ner_model, NER / "dev.conll", "--report", report)
    assert result.exit_code == 0, result.output
    html_text = report.read_text()
    assert html_text.count("<svg") >= 3  # per-type bars, loss curve, dev-score curve
    assert "PER" in html_text and "LOC" in html_text and "<script" not in html_text


_LOADS_AFTER_WARM_UP = """
import sys
from numba.core.registry import CPUDispatcher
from tagger import load
from tagger.io import read_conll
from tagger.kernels import crf_cpu, gemm_cpu, ops_cpu, optim_cpu, pool_cpu, rnn_cpu
from tagger.workflows import warm_up

def loaded():
    return {(module.__name__, name, str(sig))
            for module in (crf_cpu, gemm_cpu, ops_cpu, optim_cpu, pool_cpu, rnn_cpu)
            for name, value in vars(module).items() if isinstance(value, CPUDispatcher)
            for sig in value.signatures}

model = load(sys.argv[1]).set_params(n_jobs=None)  # all threads: batches run in parallel
sentences = [s.tokens for s in read_conll(sys.argv[2])]  # several batches, varied lengths
spans = sys.argv[3] == "spans"
warm_up(model, spans)
before = loaded()
if spans:
    model.predict_with_spans(sentences)
model.predict(sentences)
model.predict(sentences[:20])
print(len(before), sorted(loaded() - before))
"""


@pytest.mark.parametrize("spans", ["spans", "tags"])
def test_warm_up_loads_every_kernel_that_prediction_runs(ner_model, spans):
    # Kernels loaded (or compiled) while the input is tagged would count in `tagger predict`'s
    # own time, and on Dask workers outside the compile-cache lock.
    out = subprocess.run([sys.executable, "-c", _LOADS_AFTER_WARM_UP, str(ner_model),
                          str(NER / "dev.conll"), spans], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    count, added = out.stdout.split(" ", 1)
    assert int(count) > 0 and added.strip() == "[]"
