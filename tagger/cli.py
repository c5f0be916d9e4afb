"""The ``tagger`` command line (Typer). Each command is a thin layer over a function of
:mod:`tagger.workflows`; errors become one line on standard error and exit code 1 (2 for usage
errors), never a traceback.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import typer

from ._version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sequence tagging and classification with Numba-compiled recurrent networks.",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tagger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Sequence tagging and classification with Numba-compiled recurrent networks."""


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _clear_errors(command):
    """Turn the errors a user can cause into one line on stderr and exit code 1 (with
    ``TAGGER_DEBUG=1`` in the environment, the traceback instead)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from .errors import TaggerError

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (`tagger predict ... | head`)
            sys.stderr.close()
            raise typer.Exit(1) from None
        except (TaggerError, ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
            if os.environ.get("TAGGER_DEBUG"):
                raise  # the whole traceback, for bug reports
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}")

    return wrapper


# ----------------------------------------------------------------------------------------------
# estimator parameters as options
# ----------------------------------------------------------------------------------------------

def _parameter_docs() -> dict[str, str]:
    """First sentence of each estimator parameter's description, from the numpydoc."""
    from .estimators import SequenceClassifier, SequenceTagger

    docs: dict[str, str] = {}
    for cls in (SequenceTagger, SequenceClassifier):
        text = inspect.getdoc(cls) or ""
        section = text.split("Parameters\n----------\n", 1)[-1].split("\n\nAttributes", 1)[0]
        names: list[str] = []
        lines: list[str] = []
        for line in [*section.splitlines(), "end : "]:
            match = re.match(r"^(\w+(?:, \w+)*) : ", line)
            if match:
                description = " ".join(lines).replace("``", "")
                sentence = re.split(r"(?<=[.)])\s", description, maxsplit=1)[0]
                for name in names:
                    docs.setdefault(name, sentence)
                names, lines = match.group(1).split(", "), []
            elif line.strip():
                lines.append(line.strip())
    return docs


#: Parameters whose default is None, with the type their option takes.
_NONE_DEFAULT_TYPES = {"embeddings": str, "labels": str, "n_jobs": int, "random_state": int,
                       "class_weight": str, "clip_norm": float}
#: Options that mean None when given as "none".
_NONE_WORDS = {"char_encoder", "clip_norm", "class_weight"}
#: Parameters the command line sets in its own way.
_OWN_OPTIONS = {"verbose", "device", "n_jobs", "random_state"}


def _estimator_parameters() -> dict[str, tuple[type, Any]]:
    from .estimators import SequenceClassifier, SequenceTagger

    params: dict[str, tuple[type, Any]] = {}
    for cls in (SequenceTagger, SequenceClassifier):
        for name, default in cls().get_params().items():
            if name in _OWN_OPTIONS or name in params:
                continue
            kind = _NONE_DEFAULT_TYPES.get(name, type(default))
            if name in _NONE_WORDS or name in ("char_encoder", "tokenizer"):
                kind = str
            params[name] = (kind, default)
    return params


def _convert_param(name: str, value: Any) -> Any:
    if isinstance(value, str) and name in _NONE_WORDS and value.lower() == "none":
        return None
    if name == "clip_norm" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise typer.BadParameter(f"--clip-norm must be a number or none, got {value!r}",
                                     param_hint="--clip-norm") from None
    if name == "labels" and isinstance(value, str):
        return [label for label in value.split(",") if label]
    if name == "class_weight" and isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--class-weight is not a JSON object: {exc}") from None
    return value


def _with_estimator_options(command):
    """Add an option for every estimator parameter to ``command`` (collected into ``params``)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "params"]
    docs = _parameter_docs()
    extra = []
    for name, (kind, default) in _estimator_parameters().items():
        flag = "--" + name.replace("_", "-")
        help_text = docs.get(name, "")
        flags = f"{flag}/--no-{name.replace('_', '-')}" if kind is bool else flag
        option = typer.Option(None, flags, help=help_text, show_default=str(default),
                              rich_help_panel="Estimator parameters")
        annotation = bool | None if kind is bool else (kind | None)
        extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                       annotation=annotation))
    names = {p.name for p in extra}

    @functools.wraps(command)
    def wrapper(**kwargs):
        params = {name: _convert_param(name, kwargs.pop(name)) for name in names
                  if kwargs.get(name) is not None}
        for name in names:
            kwargs.pop(name, None)
        return command(params=params, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + extra)
    return wrapper


# ----------------------------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------------------------

class TrainingProgress:
    """A progress bar per epoch (tokens/s, loss, dev score) on a terminal; a log line per epoch
    otherwise. Used as the estimators' ``callback``."""

    def __init__(self, quiet: bool = False, live: bool | None = None):
        self.quiet = quiet
        self.live = sys.stderr.isatty() if live is None else live
        self._progress = None
        self._task = None
        self._loss = 0.0
        self._tokens = 0
        self._batches = 0
        self._started = time.perf_counter()
        self._last_dev = "-"

    def __call__(self, event: str, info: dict) -> None:
        if self.quiet:
            return
        if event == "epoch_start":
            self._loss, self._tokens, self._batches = 0.0, 0, 0
            self._started = time.perf_counter()
            if self.live:
                self._start_bar(info)
        elif event == "batch":
            self._loss += info["loss"]
            self._batches += 1
            self._tokens += info["tokens"]
            if self._progress is not None:
                elapsed = max(time.perf_counter() - self._started, 1e-9)
                self._progress.update(self._task, advance=1,
                                      loss=f"{self._loss / self._batches:.4f}",
                                      rate=f"{self._tokens / elapsed:,.0f}")
        elif event == "epoch_end":
            if info.get("dev_score") is not None:
                self._last_dev = f"{info['dev_score']:.4f}"
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            dev = "" if info.get("dev_score") is None else f"  dev {info['dev_score']:.4f}"
            best = "  *" if info.get("best_epoch") == info["epoch"] and dev else ""
            typer.echo(f"epoch {info['epoch']:3d}  loss {info['loss']:.4f}{dev}  "
                       f"{info['seconds']:.1f}s  {info['tokens_per_s']:,.0f} tokens/s{best}",
                       err=True)

    def _start_bar(self, info: dict) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn(f"epoch {info['epoch']:3d}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tokens/s"),
            TextColumn(f"last dev {self._last_dev}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task("train", total=info["n_batches"], loss="-",
                                             rate="-")
        self._progress.start()


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------

@app.command()
@_with_estimator_options
@_clear_errors
def train(
    recipe: str = typer.Argument(None, metavar="[RECIPE]",
                                 help="A pipeline recipe: a name from pipelines/ (e.g. "
                                      "sample-ner) or a .toml file."),
    train_file: Path = typer.Option(None, "--train", help="Training data file."),
    dev_file: Path = typer.Option(None, "--dev", help="Development data (early stopping)."),
    data_format: str = typer.Option(None, "--format", help="conll, conllu, jsonl or tsv.",
                                    show_default="from the extension"),
    task: str = typer.Option(None, "--task", help="tag or classify.", show_default="tag"),
    tag_column: int = typer.Option(None, help="CoNLL column of the tags.",
                                   show_default="-1, the last"),
    label_column: int = typer.Option(None, help="TSV column of the labels.", show_default="0"),
    text_column: int = typer.Option(None, help="TSV column of the texts.", show_default="-1"),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write."),
    data_dir: Path = typer.Option(None, envvar="TAGGER_DATA_DIR",
                                  help="Where a recipe's data files are."),
    save_every: int = typer.Option(None, min=1,
                                   help="Also write the model every N epochs (checkpoints)."),
    resume: Path = typer.Option(None, help="Go on from a checkpoint written by --save-every: "
                                           "the same model as an uninterrupted run."),
    save_optimizer: bool = typer.Option(
        False, "--save-optimizer",
        help="Keep the optimizer state in the final model (three times the size), so that "
             "--resume from it continues exactly; checkpoints always keep it."),
    trust_tokenizer: bool = typer.Option(
        False, "--trust-tokenizer",
        help="Accept a custom tokenizer pattern in the --resume file."),
    seed: int = typer.Option(0, help="Random seed (the same seed gives the same model)."),
    threads: int = typer.Option(None, min=1, help="CPU threads.", show_default="all"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    params: dict = None,
) -> None:
    """Train a tagger or classifier from data files or a pipeline recipe.

    The model is written to --output, its training history beside it (MODEL.history.json).
    """
    from . import workflows
    from .recipes import load_recipe

    columns: dict[str, int] = {}
    dataset = None
    if recipe is not None:
        loaded = load_recipe(recipe, data_dir)
        dataset = loaded.dataset
        task = task or loaded.task
        train_file = train_file or loaded.train
        dev_file = dev_file or loaded.dev
        data_format = data_format or loaded.format
        columns = loaded.columns
        params = {**loaded.params, **(params or {})}
        if not quiet:
            typer.echo(f"recipe {loaded.name}: {loaded.description}", err=True)
    if train_file is None and dataset is None:
        _fail("give a recipe or --train", 2)
    task = task or "tag"
    if task not in workflows.TASKS:
        _fail(f"--task must be tag or classify, got {task!r}", 2)
    params = {"random_state": seed, "n_jobs": threads, "device": device, **(params or {})}
    if train_file is None:
        examples = workflows.DATASETS[dataset]()
        model = workflows.train_examples(task, *examples, output, params, save_every, resume,
                                         TrainingProgress(quiet), save_optimizer,
                                         trust_tokenizer)
    else:
        model = workflows.train(
            task, train_file, dev_file, output, params, data_format,
            tag_column if tag_column is not None else columns.get("tag_column", -1),
            label_column if label_column is not None else columns.get("label_column", 0),
            text_column if text_column is not None else columns.get("text_column", -1),
            save_every, resume, TrainingProgress(quiet), save_optimizer, trust_tokenizer)
    if not quiet:
        best = model.history_[model.best_epoch_ - 1] if model.history_ else {}
        dev = best.get("dev_score")
        score = "" if dev is None else f", dev score {dev:.4f}"
        typer.echo(f"wrote {output} (best epoch {model.best_epoch_}{score}) and "
                   f"{workflows.history_path(output)}", err=True)


_TRUST_HELP = ("Run a custom tokenizer pattern stored in the model (a regular expression can "
               "take exponential time: trust the file's author).")


def _load_model(path: Path, device: str = "auto", threads: int | None = None,
                trust_tokenizer: bool = False):
    from .estimators import load

    model = load(path, trust_tokenizer=trust_tokenizer)
    model.set_params(device=device, n_jobs=threads)
    model._validate_params()
    return model


@app.command()
@_clear_errors
def evaluate(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    data: Path = typer.Argument(..., help="Labeled data to score the model on."),
    data_format: str = typer.Option(None, "--format", help="conll, conllu, jsonl or tsv."),
    tag_column: int = typer.Option(-1, help="CoNLL column of the gold tags."),
    label_column: int = typer.Option(0, help="TSV column of the gold labels."),
    text_column: int = typer.Option(-1, help="TSV column of the texts."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
    report_file: Path = typer.Option(None, "--report",
                                     help="Also write a self-contained HTML page: scores, "
                                          "per-type bars and the learning curves."),
    threads: int = typer.Option(None, min=1, help="CPU threads.", show_default="all"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    trust_tokenizer: bool = typer.Option(False, "--trust-tokenizer", help=_TRUST_HELP),
) -> None:
    """Score a model on labeled data: per-type precision/recall/F1 or accuracy, confusions."""
    from . import workflows

    model = _load_model(model_file, device, threads, trust_tokenizer)
    report = workflows.evaluate(model, data, data_format, tag_column, label_column, text_column)
    if report_file is not None:
        workflows.write_report(model, report, report_file,
                               title=f"{model_file.name} on {Path(data).name}")
        typer.echo(f"wrote {report_file}", err=True)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        typer.echo(workflows.format_report(report))


@app.command()
@_clear_errors
def predict(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    inputs: list[str] = typer.Argument(None, metavar="[FILES]...",
                                       help="Input files; none or '-' reads standard input."),
    data_format: str = typer.Option(None, "--format",
                                    help="Input: text (a sentence or document per line), conll, "
                                         "conllu, jsonl or tsv.",
                                    show_default="from the extension; text for standard input"),
    output_format: str = typer.Option(None, "--output-format",
                                      help="conll, jsonl or html for a tagger; jsonl, tsv or "
                                           "html for a classifier.",
                                      show_default="conll for a tagger, jsonl for a classifier"),
    output: Path = typer.Option(None, "--output", "-o", help="Output file.",
                                show_default="standard output"),
    batch_size: int = typer.Option(256, min=1, help="Records per batch (eight batches are read "
                                                    "at a time and sorted by length)."),
    text_column: int = typer.Option(-1, help="TSV column of the texts."),
    on_error: str = typer.Option("stop", help="stop at a malformed record, or skip it (and "
                                              "report it on stderr)."),
    threads: int = typer.Option(None, min=1, help="CPU threads.", show_default="all"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    engine: str = typer.Option("local", help="local (this process) or dask (one output file "
                                             "per input file, in --output-dir)."),
    scheduler: str = typer.Option("local", help="With --engine dask: a scheduler address, or "
                                                "local for a cluster on this machine."),
    workers: int = typer.Option(2, min=1, help="With --engine dask --scheduler local: worker "
                                               "processes."),
    output_dir: Path = typer.Option(None, help="With --engine dask: where the outputs go."),
    trust_tokenizer: bool = typer.Option(False, "--trust-tokenizer", help=_TRUST_HELP),
) -> None:
    """Tag or classify text: files or standard input, streamed batch by batch to the output."""
    from . import workflows
    from .records import ReadErrors

    if on_error not in ("stop", "skip"):
        _fail(f"--on-error must be stop or skip, got {on_error!r}", 2)
    if engine not in ("local", "dask"):
        _fail(f"--engine must be local or dask, got {engine!r}", 2)
    if engine == "dask":
        _predict_on_dask(model_file, inputs or [], output_dir, scheduler, workers, data_format,
                         output_format, batch_size, on_error, trust_tokenizer)
        return
    model = _load_model(model_file, device, threads, trust_tokenizer)
    paths = inputs or ["-"]
    errors = ReadErrors()
    tmp = None
    if output is None:
        out = sys.stdout
    else:
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        out = open(tmp, "w", encoding="utf-8", newline="\n")
    # The throughput report (with -o) keeps kernel loading out of its time; to standard output,
    # kernels load as the input needs them (one sentence loads only those of its own path).
    stats: dict | None = {} if output is not None else None
    try:
        count = workflows.predict_files(model, paths, out, data_format, output_format,
                                        batch_size, on_error, errors, text_column, stats)
        if tmp is not None:
            out.close()
            os.replace(tmp, output)
            tmp = None
    finally:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
    if errors.count:
        typer.echo(f"skipped {errors.count} malformed record(s):", err=True)
        for error in errors.skipped[:20]:
            typer.echo(f"  {error}", err=True)
        if errors.count > 20:
            typer.echo(f"  ... and {errors.count - 20} more", err=True)
    if output is not None:
        rate = stats["tokens"] / stats["seconds"] if stats["seconds"] > 0 else 0.0
        typer.echo(f"wrote {count} record(s) to {output}: {stats['tokens']:,} tokens in "
                   f"{stats['seconds']:.2f} s ({rate:,.0f} tokens/s)", err=True)


app.command("tag", help="Alias of predict.")(predict)


def _predict_on_dask(model_file, inputs, output_dir, scheduler, workers, data_format,
                     output_format, batch_size, on_error, trust_tokenizer=False) -> None:
    import glob

    try:
        from distributed import Client

        from .distributed import local_cluster, tag_files
    except ImportError:
        _fail("--engine dask needs Dask: pip install 'tagger[dask]'")
    if output_dir is None:
        _fail("--engine dask writes one file per input: give --output-dir", 2)
    paths = []
    for pattern in inputs:  # quoted patterns ('corpus/*.txt') are expanded here
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            _fail(f"{pattern}: no file matches")
        paths.extend(matches)
    if not paths:
        _fail("--engine dask needs input files", 2)
    cluster = local_cluster(workers, dashboard_address=None) if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            results = tag_files(str(model_file), paths, output_dir, client, data_format,
                                output_format, batch_size, on_error, trust_tokenizer)
    finally:
        if cluster is not None:
            cluster.close()
    skipped = [s for r in results for s in r["skipped"]]
    for message in skipped[:20]:
        typer.echo(f"  skipped: {message}", err=True)
    typer.echo(f"wrote {len(results)} file(s), {sum(r['records'] for r in results)} record(s), "
               f"to {output_dir}" + (f"; skipped {len(skipped)} malformed record(s)"
                                     if skipped else ""), err=True)


@app.command()
@_clear_errors
def info(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """What a model file holds: versions, hyperparameters, labels, sizes, checksum status."""
    from . import workflows

    details = workflows.model_info(model_file)
    typer.echo(json.dumps(details, indent=1) if as_json else workflows.format_info(details))


@app.command()
@_clear_errors
def convert(
    source: Path = typer.Argument(..., metavar="IN", help="Input file."),
    dest: Path = typer.Argument(..., metavar="OUT", help="Output file."),
    from_format: str = typer.Option(None, "--from", help="conll, conllu or jsonl.",
                                    show_default="from the extension"),
    to_format: str = typer.Option(None, "--to", help="conll, conllu or jsonl.",
                                  show_default="from the extension"),
    from_scheme: str = typer.Option(None, help="Tag scheme of the input.",
                                    show_default="detected"),
    to_scheme: str = typer.Option(None, help="IOB1, IOB2 or BIOES.",
                                  show_default="the input's"),
) -> None:
    """Convert between CoNLL, CoNLL-U and JSONL, and between the tag schemes IOB1/IOB2/BIOES."""
    from . import workflows

    count = workflows.convert(source, dest, from_format, to_format, from_scheme, to_scheme)
    typer.echo(f"wrote {count} sentence(s) to {dest}", err=True)


@app.command()
def demo(
    epochs: int = typer.Option(8, min=1, help="Training epochs."),
    cell: str = typer.Option("lstm", help="Recurrent cell: lstm, gru, rnn or irnn."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(None, min=1, help="CPU threads (default: all)."),
) -> None:
    """Train a BiLSTM-CRF on a built-in task that needs right context, beside a forward-only one."""
    from .demo import train_lookahead
    from .nn.recurrent import CELLS

    if cell not in CELLS:
        _fail(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}", 2)
    typer.echo("Task: tag every symbol with the symbol two steps later (needs right context).")
    typer.echo(f"Bidirectional {cell.upper()} + CRF (the first epoch includes compiling kernels):")
    bi = train_lookahead(True, cell, epochs=epochs, seed=seed, threads=threads, log=typer.echo)
    typer.echo(f"Forward-only {cell.upper()} + CRF:")
    uni = train_lookahead(False, cell, epochs=epochs, seed=seed, threads=threads, log=typer.echo)
    typer.echo(f"Held-out token accuracy: bidirectional {bi:.2%}, forward-only {uni:.2%}")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Entry point of the ``tagger`` console script."""
    import warnings

    warnings.formatwarning = _one_line_warning
    app()


if __name__ == "__main__":
    main()
