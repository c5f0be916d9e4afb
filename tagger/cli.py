"""The ``tagger`` command line (Typer). Each command is a thin layer over a function of
:mod:`tagger.workflows`; errors become one line on standard error and exit code 1 (2 for usage
errors), never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from ._version import __version__

# ----------------------------------------------------------------------------------------------
# help layout
# ----------------------------------------------------------------------------------------------


#: Click's names of the value types, for Typer's.
_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "bool": "BOOLEAN"}


class _Option(TyperOption):
    """An option shown as ``--name VALUE`` (its metavar, else click's name of its type: TEXT,
    INTEGER, FLOAT, PATH), and a flag as its name alone, where Typer prints ``<str>`` and
    ``<bool>``."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        if self.is_flag:
            return None
        if self.metavar is not None:
            return self.metavar
        shown = super().display_type_rich(ctx) or ""
        # Ranges go by their number type: Typer prints the range itself beside it.
        kind = shown.strip("<>").split()[0] if shown.strip("<>") else "str"
        return _TYPE_NAMES.get(kind, kind.upper())


class _Argument(TyperArgument):
    """An argument shown by its name alone, and in the usage line as click writes it
    (``MODEL [FILES]...``, not ``{MODEL} [[FILES]...]...``)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def get_usage_pieces(self, ctx: typer.Context) -> list[str]:
        name = self.metavar or self.name.upper()
        if not self.required:
            name = f"[{name}]"
        return [name + ("..." if self.nargs != 1 else "")]


def _plain_help(params: list) -> None:
    """Give Typer's parameters the help display above (their behaviour is unchanged)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument


class _PlainHelp:
    """Help that reads ``--cell [lstm|gru|rnn|irnn]`` and ``--crf / --no-crf`` (a mixin of the
    command and group classes below)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self.params)

    def get_help_option(self, ctx: typer.Context):
        option = super().get_help_option(ctx)
        _plain_help([option])
        return option


class _Command(_PlainHelp, TyperCommand):
    """A command with the plain help display."""


class _Group(_PlainHelp, TyperGroup):
    """The ``tagger`` group, with the same help display as its commands."""


app = typer.Typer(
    cls=_Group,
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
        except MemoryError as exc:
            if os.environ.get("TAGGER_DEBUG"):
                raise
            _fail(f"not enough memory for this input{f' ({exc})' if str(exc) else ''}: try "
                  f"smaller inputs or batches")

    return wrapper


# ----------------------------------------------------------------------------------------------
# estimator parameters as options
# ----------------------------------------------------------------------------------------------

def _estimator_classes() -> tuple[type, ...]:
    """The estimators whose parameters are options of ``tagger train``: the tagger, the
    classifier, the character language model (in the order of their help panels)."""
    from .estimators import CharLanguageModel, SequenceClassifier, SequenceTagger

    return SequenceTagger, SequenceClassifier, CharLanguageModel


def _parameter_docs() -> dict[str, str]:
    """First sentence of each estimator parameter's description, from the numpydoc."""
    docs: dict[str, str] = {}
    for cls in _estimator_classes():
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
_NONE_WORDS = {"char_encoder", "clip_norm", "class_weight", "epoch_size"}
#: Parameters the command line sets in its own way.
_OWN_OPTIONS = {"verbose", "device", "n_jobs", "random_state", "char_lm"}


def _estimator_parameters() -> dict[str, tuple[type, Any]]:
    params: dict[str, tuple[type, Any]] = {}
    for cls in _estimator_classes():
        for name, default in cls().get_params().items():
            if name in _OWN_OPTIONS or name in params:
                continue
            kind = _NONE_DEFAULT_TYPES.get(name, type(default))
            if name in _NONE_WORDS or name in ("char_encoder", "tokenizer"):
                kind = str
            params[name] = (kind, default)
    return params


#: Options that take "none" or a number: the number's type, and what to call it in an error.
_NUMBER_OR_NONE = {"clip_norm": (float, "a number"), "epoch_size": (int, "an integer")}


def _convert_param(name: str, value: Any) -> Any:
    if isinstance(value, str) and name in _NONE_WORDS and value.lower() == "none":
        return None
    if name in _NUMBER_OR_NONE and isinstance(value, str):
        kind, what = _NUMBER_OR_NONE[name]
        flag = "--" + name.replace("_", "-")
        try:
            return kind(value)
        except ValueError:
            raise typer.BadParameter(f"{flag} must be {what} or none, got {value!r}",
                                     param_hint=flag) from None
    if name == "labels" and isinstance(value, str):
        return [label for label in value.split(",") if label]
    if name == "class_weight" and isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--class-weight is not a JSON object: {exc}") from None
    return value


#: Help panels of the estimator options: the parameters shared by the estimators, then each
#: one's own.
_PANELS = ("Network and training options", "Tagger options", "Classifier options",
           "Language model options")


def _choices() -> dict[str, tuple[str, ...]]:
    """The values of the estimator parameters that take one of a few (as typed on the command
    line: "none" for None)."""
    from .estimators.language_model import DIRECTIONS
    from .nn.classifier import POOLINGS
    from .nn.features import CHAR_ENCODERS
    from .nn.optim import OPTIMIZERS
    from .nn.recurrent import CELLS
    from .text.schemes import SCHEMES

    return {"cell": tuple(CELLS), "optimizer": tuple(OPTIMIZERS), "pooling": tuple(POOLINGS),
            "char_encoder": tuple("none" if c is None else c for c in CHAR_ENCODERS),
            "tag_scheme": ("auto", *SCHEMES), "direction": tuple(DIRECTIONS)}


#: What the estimator options whose type alone says too little take.
_METAVARS = {"clip_norm": "FLOAT|none", "epoch_size": "INTEGER|none",
             "class_weight": "balanced|JSON|none",
             "labels": "LABEL,...", "embeddings": "PATH"}
#: Help of the options whose docstring's first sentence does not stand alone.
_HELP = {"direction": "Read the text from left to right, or from right to left (a backward "
                      "model predicts each character from those after it)."}
#: Said after the --tag-scheme help: the other names the option takes.
_SCHEME_ALIASES = " Also BIO for IOB2; IOBES, and BILUO or BILOU (spaCy's name), for BIOES."


def _checked_choice(name: str, value: Any, choices: tuple[str, ...]) -> Any:
    """``value`` of a choice option in its canonical spelling, or a usage error (exit 2)."""
    if not isinstance(value, str):
        return value
    if name == "tag_scheme":
        from .text.schemes import normalize_scheme

        if value.lower() == "auto":
            return "auto"
        try:
            return normalize_scheme(value)
        except ValueError:
            pass
    elif value.lower() in choices:
        return value.lower()
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}",
                             param_hint="--" + name.replace("_", "-"))


def _check_estimator_params(params: dict[str, Any], classes: tuple[type, ...] | None = None,
                            ) -> None:
    """Check the values given on the command line with the estimators' own checks (by default
    the tagger's and the classifier's; the language model's once the task is known to be
    "lm"), so that a bad value is a usage error (exit 2) before any data is read."""
    from .estimators import SequenceClassifier, SequenceTagger

    for cls in classes or (SequenceTagger, SequenceClassifier):
        known = cls().get_params()
        try:
            cls(**{k: v for k, v in params.items() if k in known})._validate_params(
                resolve_device=False)
        except (ValueError, TypeError) as exc:
            # The estimators' messages start with the parameter's name.
            name = next((n for n in params if str(exc).startswith(n)), None)
            hint = None if name is None else "--" + name.replace("_", "-")
            raise typer.BadParameter(str(exc), param_hint=hint) from None


def _with_estimator_options(command):
    """Add an option for every estimator parameter to ``command``: the values given on the
    command line, checked (a bad one exits 2), are collected into ``params``; the defaults shown
    are the estimators' own (the tagger's, for the options all of them have)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "params"]
    docs = _parameter_docs()
    choices = _choices()
    tagger, classifier, _ = _estimator_classes()
    tagger_params, classifier_params = set(tagger().get_params()), set(classifier().get_params())
    extra = []
    for name, (kind, default) in _estimator_parameters().items():
        flag = "--" + name.replace("_", "-")
        help_text = _HELP.get(name, docs.get(name, "")) + (
            _SCHEME_ALIASES if name == "tag_scheme" else "")
        flags = f"{flag}/--no-{name.replace('_', '-')}" if kind is bool else flag
        panel = _PANELS[0 if name in tagger_params and name in classifier_params
                        else 1 if name in tagger_params
                        else 2 if name in classifier_params else 3]
        metavar = f"[{'|'.join(choices[name])}]" if name in choices else _METAVARS.get(name)
        shown = "none" if default is None and name in _NONE_WORDS else default
        option = typer.Option(shown, flags, help=help_text, metavar=metavar,
                              show_default=shown is not None, rich_help_panel=panel)
        annotation = kind if shown is not None else (kind | None)
        extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                       annotation=annotation))
    names = {p.name for p in extra}
    # The command's context, to tell the values given from the defaults.
    context = inspect.Parameter("_estimator_options_context", inspect.Parameter.KEYWORD_ONLY,
                                annotation=typer.Context)

    @functools.wraps(command)
    def wrapper(**kwargs):
        ctx = kwargs.pop(context.name)
        # Only the values given on the command line: a recipe's own parameters give way to
        # those, not to the estimators' defaults.
        given = {name: kwargs[name] for name in names
                 if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}
        params = {}
        for name, value in given.items():
            if name in choices:
                value = _checked_choice(name, value, choices[name])
            params[name] = _convert_param(name, value)
        _check_estimator_params(params)
        for name in names:
            kwargs.pop(name, None)
        return command(params=params, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *extra, context])
    return wrapper


# ----------------------------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------------------------

def dev_per_char(log_likelihood: float, short: bool = False) -> str:
    """A language model's development score (mean log-likelihood per character) as the
    cross-entropy it is: ``1.2345 nats/char (1.781 bits/char)``, or ``1.781 bits/char``."""
    bits = -log_likelihood / math.log(2)
    if short:
        return f"{bits:.3f} bits/char"
    return f"{-log_likelihood:.4f} nats/char ({bits:.3f} bits/char)"


class TrainingProgress:
    """A progress bar per epoch (tokens/s, loss, dev score) on a terminal; a log line per epoch
    otherwise. Used as the estimators' ``callback``.

    For a language model (``language_model=True``) the rate is in characters per second and the
    development score (a mean log-likelihood) is shown as nats and bits per character.
    """

    def __init__(self, quiet: bool = False, live: bool | None = None,
                 language_model: bool = False, unit: str | None = None):
        self.quiet = quiet
        self.language_model = language_model
        self.unit = unit or ("chars" if language_model else "tokens")
        self.live = sys.stderr.isatty() if live is None else live
        self._progress = None
        self._task = None
        self._loss = 0.0
        self._tokens = 0
        self._batches = 0
        self._started = time.perf_counter()
        self._last_dev = "-"
        self._compiled_at_start = 0.0
        self._said_compiling = False

    def _compiling(self, started: bool) -> None:
        """Told by the kernels' compile clock (from the compiling thread): say once why the
        first epoch on a new machine stands still."""
        if started and not self._said_compiling:
            self._said_compiling = True
            message = ("compiling kernels (once per machine: later runs load them in under a "
                       "second)...")
            progress = self._progress
            if progress is not None:
                progress.console.print(message)
                progress.update(self._task, rate="compiling")
            else:
                typer.echo(message, err=True)

    def _training_seconds(self) -> float:
        """Seconds since the epoch started, less those spent compiling kernels."""
        from .kernels._jit import compile_seconds

        compiling = compile_seconds() - self._compiled_at_start
        return max(time.perf_counter() - self._started - compiling, 1e-9)

    def __call__(self, event: str, info: dict) -> None:
        if self.quiet:
            return
        if event == "epoch_start":
            from .kernels._jit import compile_seconds, on_compile

            self._loss, self._tokens, self._batches = 0.0, 0, 0
            self._started = time.perf_counter()
            self._compiled_at_start = compile_seconds()
            if self.live:
                self._start_bar(info)
            if info["epoch"] == 1 or not self._said_compiling:
                on_compile(self._compiling)
        elif event == "batch":
            self._loss += info["loss"]
            self._batches += 1
            self._tokens += info["tokens"]
            if self._progress is not None:
                elapsed = self._training_seconds()
                self._progress.update(self._task, advance=1,
                                      loss=f"{self._loss / self._batches:.4f}",
                                      rate=f"{self._tokens / elapsed:,.0f}")
        elif event == "epoch_end":
            from .kernels._jit import remove_on_compile

            remove_on_compile(self._compiling)
            score = info.get("dev_score")
            if score is not None:
                self._last_dev = (dev_per_char(score, short=True) if self.language_model
                                  else f"{score:.4f}")
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            dev = "" if score is None else "  dev " + (
                dev_per_char(score) if self.language_model else f"{score:.4f}")
            best = "  *" if info.get("best_epoch") == info["epoch"] and dev else ""
            compiling = info.get("compile_seconds") or 0.0
            compiled = f" ({compiling:.1f}s compiling)" if compiling >= 0.5 else ""
            rate = info.get(f"{self.unit}_per_s", 0.0)
            typer.echo(f"epoch {info['epoch']:3d}  loss {info['loss']:.4f}{dev}  "
                       f"{info['seconds']:.1f}s{compiled}  {rate:,.0f} "
                       f"{self.unit}/s{best}", err=True)

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
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} " + self.unit + "/s"),
            TextColumn(f"last dev {self._last_dev}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task("train", total=info["n_batches"], loss="-",
                                             rate="-")
        self._progress.start()


# ----------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------


def _list_recipes(value: bool) -> None:
    """``--list-recipes``: the recipes a name finds, with their task and description."""
    if value:
        from .recipes import recipe_summaries

        summaries = recipe_summaries()
        width = max((len(name) for name, _, _ in summaries), default=0)
        for name, task, description in summaries:
            typer.echo(f"{name:<{width}}  {task:<8}  {description}".rstrip())
        raise typer.Exit()

@app.command(cls=_Command)
@_with_estimator_options
@_clear_errors
def train(
    recipe: str = typer.Argument(None, metavar="RECIPE",
                                 help="A pipeline recipe: a name (--list-recipes lists them) "
                                      "or a .toml file."),
    list_recipes: bool = typer.Option(False, "--list-recipes", callback=_list_recipes,
                                      is_eager=True, help="List the recipes and exit."),
    train_file: Path = typer.Option(None, "--train", help="Training data file."),
    dev_file: Path = typer.Option(None, "--dev", help="Development data (early stopping)."),
    data_format: str = typer.Option(None, "--format",
                                    help="conll, conllu, jsonl or tsv; text for --task lm.",
                                    show_default="from the extension"),
    task: str = typer.Option(None, "--task",
                             help="tag, classify, lm: a character language model on raw text "
                                  "(UTF-8, one document or line per line), whose options not "
                                  "given default to tagger.CharLanguageModel's own values, or "
                                  "transduce: an encoder-decoder on TSV pairs "
                                  "(source<TAB>target, e.g. spelling and phones), with "
                                  "tagger.SequenceTransducer's defaults, or lemma: a "
                                  "lemmatizer on CoNLL-U (FORM, UPOS, LEMMA).",
                             show_default="tag"),
    tag_column: int = typer.Option(None, help="CoNLL column of the tags.",
                                   show_default="-1, the last"),
    label_column: int = typer.Option(None, help="TSV column of the labels.", show_default="0"),
    text_column: int = typer.Option(None, help="TSV column of the texts.", show_default="-1"),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write."),
    data_dir: Path = typer.Option(None, envvar="TAGGER_DATA_DIR",
                                  help="Where a recipe's data files are."),
    save_every: int = typer.Option(None, min=1,
                                   help="Also write the model every N epochs (checkpoints)."),
    char_lm: tuple[Path, Path] | None = typer.Option(
        None, "--char-lm", metavar="FWD BWD",
        help="Contextual character embeddings for a tagger: a forward and a backward "
             "character language model file (from tagger train --task lm; the second one "
             "trained to read backward); the tagger's model file keeps them."),
    resume: Path = typer.Option(None, help="Go on from a model file: from a checkpoint "
                                           "(--save-every), the same model as an "
                                           "uninterrupted run; from a final model, its "
                                           "weights stay unless an epoch beats their dev "
                                           "score."),
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
    """Train a tagger, classifier, character language model or transducer from data files or
    a pipeline recipe.

    The model is written to --output, its training history beside it (MODEL.history.json).
    """
    from . import workflows
    from .recipes import load_recipe

    columns: dict[str, int] = {}
    dataset = dev_fraction = None
    given = dict(params or {})  # the estimator options given on the command line
    if recipe is not None:
        loaded = load_recipe(recipe, data_dir)
        dataset = loaded.dataset
        task = task or loaded.task
        train_file = train_file or loaded.train
        # A --dev file replaces the recipe's development text, held-out tail included.
        dev_fraction = loaded.dev_fraction if dev_file is None else None
        dev_file = dev_file or loaded.dev
        data_format = data_format or loaded.format
        columns = loaded.columns
        params = {**loaded.params, **(params or {})}
        if not quiet:
            typer.echo(f"recipe {loaded.name}: {loaded.description}", err=True)
    if train_file is None and dataset is None:
        _fail("give a recipe or --train", 2)
    # Before any data is read: the model and its history must not land on a file read here.
    # The model may be the --resume file (a model continued in place), its history may not.
    read = {"training data": [train_file], "development data": [dev_file],
            "recipe": [loaded.path if recipe is not None else None],
            "language model": list(char_lm or ())}
    _refuse_overwriting(output, read)
    _refuse_overwriting(workflows.history_path(output), {**read, "resumed model": [resume]},
                        "history file", "output")
    task = task or "tag"
    if task not in workflows.TASKS:
        _fail(f"--task must be one of {', '.join(workflows.TASKS)}, got {task!r}", 2)
    _check_task_options(task, given)
    if task == "lm":
        refused = [flag for flag, value in (("--resume", resume), ("--save-every", save_every),
                                            ("--tag-column", tag_column),
                                            ("--label-column", label_column),
                                            ("--text-column", text_column)) if value is not None]
        if refused:
            _fail(f"{refused[0]} is not supported with --task lm"
                  + (" yet" if refused[0] in ("--resume", "--save-every") else
                     " (a language model reads raw text, one document or line per line)"), 2)
        if data_format not in (None, "text"):
            _fail(f"--task lm reads raw text (--format text), not {data_format}", 2)
    if char_lm is not None:
        if task != "tag":
            _fail(f"--char-lm is an option of --task tag only, not --task {task}", 2)
        params = {**(params or {}), "char_lm": tuple(str(p) for p in char_lm)}
    params = {"random_state": seed, "n_jobs": threads, "device": device, **(params or {})}
    if task in ("transduce", "lemma"):
        refused = [flag for flag, value in (("--resume", resume), ("--tag-column", tag_column),
                                            ("--label-column", label_column),
                                            ("--text-column", text_column)) if value is not None]
        if refused:
            _fail(f"{refused[0]} is not supported with --task {task}"
                  + (" yet" if refused[0] == "--resume" else
                     " (a transducer reads TSV pairs: source<TAB>target)" if task == "transduce"
                     else " (a lemmatizer reads CoNLL-U: FORM, UPOS, LEMMA)"), 2)
    progress = TrainingProgress(quiet, language_model=task == "lm",
                                unit="symbols" if task in ("transduce", "lemma") else None)
    outcome: dict = {"written": True, "message": None}

    def on_event(event: str, info: dict) -> None:
        if event == "output":
            outcome.update(info)
        else:
            progress(event, info)

    def stop_progress() -> None:
        # A live bar left running would garble the message below and hide the cursor.
        bar = getattr(progress, "_progress", None)
        if bar is not None:
            bar.stop()
            progress._progress = None

    try:
        if train_file is None:
            examples = workflows.DATASETS[dataset]()
            model = workflows.train_examples(task, *examples, output, params, save_every,
                                             resume, on_event, save_optimizer, trust_tokenizer)
        else:
            model = workflows.train(
                task, train_file, dev_file, output, params, data_format,
                tag_column if tag_column is not None else columns.get("tag_column", -1),
                label_column if label_column is not None else columns.get("label_column", 0),
                text_column if text_column is not None else columns.get("text_column", -1),
                save_every, resume, on_event, save_optimizer, trust_tokenizer, dev_fraction)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM: what was saved, then the usual 130
        stop_progress()
        typer.echo(str(exc) or "interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception:
        stop_progress()
        raise
    if outcome["message"]:  # what became of a resumed model: said even with --quiet
        typer.echo(outcome["message"], err=True)
    if not outcome["written"]:
        return
    if not quiet:
        best = model.history_[model.best_epoch_ - 1] if model.history_ else {}
        dev = best.get("dev_score")
        score = ("" if dev is None
                 else f", dev {-dev:.4f} nats/char, {-dev / math.log(2):.3f} bits/char"
                 if task == "lm" else f", dev score {dev:.4f}")
        typer.echo(f"wrote {output} (best epoch {model.best_epoch_}{score}) and "
                   f"{workflows.history_path(output)}", err=True)


def _check_task_options(task: str, given: dict[str, Any]) -> None:
    """Refuse, as a usage error (exit 2), estimator options that the task's estimator does not
    have: a tagger's or classifier's with ``--task lm``, a language model's with the others;
    check the values given for a language model with its own checks."""
    from .estimators import (
        CharLanguageModel,
        SequenceClassifier,
        SequenceTagger,
        SequenceTransducer,
    )

    lm_params = set(CharLanguageModel().get_params())
    if task in ("transduce", "lemma"):
        known = set(SequenceTransducer().get_params())
        wrong = sorted(name for name in given if name not in known)
        if wrong:
            flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
            name = "SequenceTransducer" if task == "transduce" else "Lemmatizer"
            _fail(f"--task {task} (tagger.{name}) has no option {flags}", 2)
        return
    if task == "lm":
        wrong = sorted(name for name in given if name not in lm_params)
    else:
        others = set(SequenceTagger().get_params()) | set(SequenceClassifier().get_params())
        wrong = sorted(name for name in given if name not in others)
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        if task == "lm":
            _fail(f"--task lm (a character language model) has no option {flags}", 2)
        _fail(f"{flags} {'is an option' if len(wrong) == 1 else 'are options'} of --task lm "
              f"only (see Language model options)", 2)
    if task == "lm":
        _check_estimator_params(given, (CharLanguageModel,))


_TRUST_HELP = ("Run a custom tokenizer pattern stored in the model (a regular expression can "
               "take exponential time: trust the file's author).")


def _load_model(path: Path, device: str = "auto", threads: int | None = None,
                trust_tokenizer: bool = False):
    from .estimators import load

    model = load(path, trust_tokenizer=trust_tokenizer)
    model.set_params(device=device, n_jobs=threads)
    model._validate_params()
    return model


def _refuse_overwriting(output: str | os.PathLike, protected: dict[str, list],
                        what: str = "output", instead: str = "output") -> None:
    """Stop before anything is read when an output is a file the command reads, by any name.

    Parameters
    ----------
    output : path
        A file the command writes.
    protected : dict
        What each kind of file read is called ("input", "model", "training data"), to its
        paths (None for an option not given).
    what, instead : str
        What ``output`` is, and what to choose instead, for the message.

    Raises
    ------
    DataError
        Naming the output and the file it would destroy; also an output that cannot be a file
        (a folder, a socket: see :func:`tagger._atomic.check_output`).
    """
    from ._atomic import check_output, same_file_as
    from .errors import DataError

    check_output(output)
    for kind, paths in protected.items():
        source = same_file_as(output, [path for path in paths if path is not None])
        if source is not None:
            raise DataError(f"the {what} is the {kind} file {source}: writing it would destroy "
                            f"the {kind}; choose another {instead}", os.fspath(output))


@app.command(cls=_Command)
@_clear_errors
def evaluate(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    data: Path = typer.Argument(..., metavar="DATA",
                                help="Labeled data to score the model on (raw text for a "
                                     "language model)."),
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
    """Score a model on labeled data: per-type precision/recall/F1 or accuracy, confusions.

    For a language model, DATA is raw text: characters scored, log-likelihood in nats per
    character, bits per character, perplexity. For a transducer, TSV pairs: exact match and
    symbol error rate; for a lemmatizer, CoNLL-U: lemma accuracy given the gold UPOS.
    """
    from . import workflows

    if report_file is not None:
        _refuse_overwriting(report_file, {"model": [model_file], "data": [data]}, "report",
                            "report file")
    model = _load_model(model_file, device, threads, trust_tokenizer)
    from .transduce import is_transducer

    if report_file is not None and (workflows.is_language_model(model) or is_transducer(model)):
        _fail(f"--report is for taggers and classifiers; a "
              f"{'language model' if workflows.is_language_model(model) else 'transducer'}'s "
              f"scores are the lines printed (or --json)", 2)
    report = workflows.evaluate(model, data, data_format, tag_column, label_column, text_column)
    if report_file is not None:
        workflows.write_report(model, report, report_file,
                               title=f"{model_file.name} on {Path(data).name}")
        typer.echo(f"wrote {report_file}", err=True)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        typer.echo(workflows.format_report(report))


@app.command(cls=_Command)
@_clear_errors
def predict(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    inputs: list[str] = typer.Argument(None, metavar="FILES",
                                       help="Input files; none or '-' reads standard input."),
    data_format: str = typer.Option(None, "--format",
                                    help="Input: text (a sentence or document per line), conll, "
                                         "conllu, jsonl or tsv.",
                                    show_default="from the extension; text for standard input"),
    output_format: str = typer.Option(None, "--output-format",
                                      help="conll, conllu, jsonl or html for a tagger; jsonl, "
                                           "tsv or html for a classifier.",
                                      show_default="conllu for a tagger on CoNLL-U input, else "
                                                   "conll; jsonl for a classifier"),
    output: Path = typer.Option(None, "--output", "-o",
                                help="Output file, written whole or not at all (never one of "
                                     "the inputs).",
                                show_default="standard output"),
    batch_size: int = typer.Option(256, min=1, help="Records per batch (eight batches are read "
                                                    "at a time and sorted by length)."),
    text_column: int = typer.Option(-1, help="TSV column of the texts."),
    on_error: str = typer.Option("stop", help="stop at a malformed record, or skip it (and "
                                              "report it on stderr)."),
    max_line_length: int = typer.Option(None, min=1, help="Longest input line, in characters; "
                                                          "a longer one is a malformed record.",
                                        show_default="1048576"),
    threads: int = typer.Option(None, min=1, help="CPU threads.", show_default="all"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    engine: str = typer.Option("local", help="local (this process) or dask (one output file "
                                             "per input file, in --output-dir)."),
    scheduler: str = typer.Option("local", help="With --engine dask: a scheduler address, or "
                                                "local for a cluster on this machine."),
    workers: int = typer.Option(2, min=1, help="With --engine dask --scheduler local: worker "
                                               "processes."),
    output_dir: Path = typer.Option(None, help="With --engine dask: where the outputs go (not "
                                               "a folder of input files)."),
    trust_tokenizer: bool = typer.Option(False, "--trust-tokenizer", help=_TRUST_HELP),
    lemmatizer_file: Path = typer.Option(
        None, "--lemmatizer", metavar="LEMMA_MODEL",
        help="A Lemmatizer run after the model (a UPOS tagger) on its tags: CoNLL-U output gets "
             "UPOS and LEMMA filled, JSONL pred_lemmas, CoNLL a lemma column."),
) -> None:
    """Tag or classify text, or transduce lines: files or standard input, streamed batch by
    batch to the output."""
    from . import workflows
    from ._atomic import atomic_output
    from .records import ReadErrors

    if on_error not in ("stop", "skip"):
        _fail(f"--on-error must be stop or skip, got {on_error!r}", 2)
    if engine not in ("local", "dask"):
        _fail(f"--engine must be local or dask, got {engine!r}", 2)
    if engine == "dask" and lemmatizer_file is not None:
        _fail("--lemmatizer runs with --engine local", 2)
    if engine == "dask":
        _predict_on_dask(model_file, inputs or [], output_dir, scheduler, workers, data_format,
                         output_format, batch_size, on_error, trust_tokenizer)
        return
    if output is None and sys.stdout is None:  # started with file descriptor 1 closed
        _fail("standard output is closed; give --output FILE")
    paths = inputs or ["-"]
    if output is not None:
        _refuse_overwriting(output, {"model": [model_file, *([lemmatizer_file]
                                                             if lemmatizer_file else [])],
                                     "input": workflows.expand_inputs(paths, data_format)})
    model = _load_model(model_file, device, threads, trust_tokenizer)
    from .transduce import is_transducer

    if is_transducer(model) and type(model).__name__ != "Lemmatizer":
        _predict_transductions(model, paths, output, data_format, output_format,
                               lemmatizer_file, on_error, batch_size, max_line_length)
        return
    lemmatizer = None
    if lemmatizer_file is not None:
        lemmatizer = _load_model(lemmatizer_file, "cpu", threads)
        workflows.check_lemmatizer(model, lemmatizer)
    errors = ReadErrors()
    # The throughput report (with -o) keeps kernel loading out of its time; to standard output,
    # kernels load as the input needs them (one sentence loads only those of its own path).
    stats: dict | None = {} if output is not None else None
    with contextlib.ExitStack() as stack:
        # -o: a hidden temporary renamed over the output at the end, removed on any failure
        # (a malformed record, a full disk, Ctrl-C, SIGTERM): never a partial output file.
        out = sys.stdout if output is None else stack.enter_context(atomic_output(output))
        count = workflows.predict_files(model, paths, out, data_format, output_format,
                                        batch_size, on_error, errors, text_column, stats,
                                        max_line_length=max_line_length,
                                        lemmatizer=lemmatizer)
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


app.command("tag", cls=_Command, help="Alias of predict.")(predict)


def _predict_transductions(model, paths, output, data_format, output_format, lemmatizer_file,
                           on_error, batch_size, max_line_length) -> None:
    """``tagger predict`` with a transducer: lines in, ``source<TAB>output`` lines out (see
    :mod:`tagger.transduce`)."""
    from . import transduce
    from ._atomic import atomic_output

    refused = [flag for flag, value in (
        ("--format", data_format not in (None, "text") and data_format),
        ("--output-format", output_format not in (None, "tsv") and output_format),
        ("--lemmatizer", lemmatizer_file), ("--on-error skip", on_error == "skip"))
        if value]
    if refused:
        _fail(f"{refused[0]} does not apply to a transducer: it reads lines (a source, then "
              f"its features after tabs) and writes source<TAB>output lines", 2)
    with contextlib.ExitStack() as stack:
        out = sys.stdout if output is None else stack.enter_context(atomic_output(output))
        start = time.perf_counter()
        count = transduce.predict_paths(model, paths, out, batch_size, max_line_length)
    if output is not None:
        seconds = time.perf_counter() - start
        typer.echo(f"wrote {count} example(s) to {output} in {seconds:.2f} s", err=True)


def _predict_on_dask(model_file, inputs, output_dir, scheduler, workers, data_format,
                     output_format, batch_size, on_error, trust_tokenizer=False) -> None:
    import glob

    try:
        from distributed import Client

        from .distributed import check_output_dir, local_cluster, tag_files
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
    check_output_dir(paths, output_dir, data_format)  # before a cluster is started for nothing
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


@app.command(cls=_Command)
@_clear_errors
def generate(
    model_file: Path = typer.Argument(..., metavar="MODEL",
                                      help="A language model file (tagger train --task lm)."),
    prefix: str = typer.Option("", help="Text to continue (printed first)."),
    length: int = typer.Option(500, min=0, help="Characters to generate."),
    temperature: float = typer.Option(1.0, min=0.0,
                                      help="Below 1 more conservative, above 1 more varied; 0 "
                                           "takes the most probable character every time."),
    top_k: int = typer.Option(None, "--top-k", min=1,
                              help="Draw among the K most probable characters only.",
                              show_default="all"),
    seed: int = typer.Option(None, min=0, help="Random seed (the same seed gives the same "
                                               "text).", show_default="random"),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(None, min=1, help="CPU threads.", show_default="all"),
) -> None:
    """Write text with a character language model: the prefix and what follows it."""
    from . import workflows

    if not math.isfinite(temperature):
        _fail(f"--temperature must be a finite number >= 0, got {temperature}", 2)
    model = _load_model(model_file, device, threads)
    text = workflows.generate(model, prefix, length, temperature, top_k, seed)
    if sys.stdout is None:  # started with file descriptor 1 closed
        _fail("standard output is closed")
    typer.echo(text)


@app.command(cls=_Command)
@_clear_errors
def info(
    model_file: Path = typer.Argument(..., metavar="MODEL", help="A model file."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """What a model file holds: versions, hyperparameters, labels, sizes, checksum status."""
    from . import workflows

    details = workflows.model_info(model_file)
    typer.echo(json.dumps(details, indent=1) if as_json else workflows.format_info(details))


@app.command(cls=_Command)
@_clear_errors
def convert(
    source: Path = typer.Argument(..., metavar="IN", help="Input file."),
    dest: Path = typer.Argument(..., metavar="OUT",
                                help="Output file, written whole or not at all; IN itself "
                                     "converts in place."),
    from_format: str = typer.Option(None, "--from", help="conll, conllu or jsonl.",
                                    show_default="from the extension"),
    to_format: str = typer.Option(None, "--to", help="conll, conllu or jsonl.",
                                  show_default="from the extension"),
    from_scheme: str = typer.Option(None, metavar="[IOB1|IOB2|BIOES]",
                                    help="Tag scheme of the input." + _SCHEME_ALIASES,
                                    show_default="detected"),
    to_scheme: str = typer.Option(None, metavar="[IOB1|IOB2|BIOES]",
                                  help="Tag scheme of the output." + _SCHEME_ALIASES,
                                  show_default="the input's"),
) -> None:
    """Convert between CoNLL, CoNLL-U and JSONL, and between the tag schemes IOB1/IOB2/BIOES."""
    from . import workflows

    count = workflows.convert(source, dest, from_format, to_format, from_scheme, to_scheme)
    typer.echo(f"wrote {count} sentence(s) to {dest}", err=True)


@app.command(cls=_Command)
def demo(
    epochs: int = typer.Option(8, min=1, help="Training epochs."),
    cell: str = typer.Option("lstm", metavar="[lstm|gru|rnn|irnn]", help="Recurrent cell."),
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


def _interrupt_on_sigterm() -> None:
    """Handle SIGTERM as Ctrl-C: raise KeyboardInterrupt in the main thread, so that the same
    clean-up runs (temporary files removed, never a partial output) and the exit code is 130.

    Later SIGTERMs are ignored while the first unwinds, so that a supervisor repeating it cannot
    cut the clean-up short (SIGKILL still ends the process).
    """
    import signal

    def interrupt(signum, frame):
        # A no-op handler rather than SIG_IGN, which processes started later would inherit.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        raise KeyboardInterrupt

    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    """Entry point of the ``tagger`` console script.

    Ctrl-C and SIGTERM both stop a command with exit code 130 (one code for "interrupted", which
    also lets ``tagger train`` treat them alike), after the clean-up of an interrupted command.
    """
    import warnings

    warnings.formatwarning = _one_line_warning
    _interrupt_on_sigterm()
    try:
        app()
    except KeyboardInterrupt:  # before or after the command itself (Typer handles it within)
        sys.exit(130)


if __name__ == "__main__":
    main()
