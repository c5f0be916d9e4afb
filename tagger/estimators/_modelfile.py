"""Estimators to model files and back, with every value from a file checked before it is used.

Loading is one validation pass before anything else: the config is checked value by value
(types, ranges, sane upper limits), the arrays the file must hold are derived from the config
alone (names, shapes and dtypes of the parameters, the optimizer's slots, a checkpoint's best
weights), and the file's array table is compared with them before any array data is read
(:func:`tagger.persist.load_model`). No initialiser runs: the parameters are the file's arrays.
Every problem is a :class:`~tagger.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import persist
from ..errors import ModelFileError
from ..nn.features import CHAR_ENCODERS
from ..nn.optim import OPTIMIZERS
from ..nn.recurrent import CELLS
from ..text.tokenize import TOKENIZERS
from ..text.vocab import PAD, UNK, Vocabulary
from ._inputs import (
    CHARS,
    LINE_OR_TAB,
    MAX_DICTIONARY_ENTRY,
    MAX_DICTIONARY_TAG,
    NUMERIC,
    SYMBOLS,
    TEXT,
)

#: Upper limits on what a model file may ask for. Far above any useful model, low enough that a
#: hostile config cannot make the loader or the first prediction allocate gigabytes.
LIMITS = {
    "width": 8192,          # hidden_size, word_dim, char_dim, char_hidden_size, shape_dim
    "layers": 32,           # num_layers
    "tags": 1024,           # a tagger's labels (its CRF keeps K x K masks)
    "classes": 1_000_000,   # a classifier's classes
    "vocabulary": 2_000_000,
    "features": 1_000_000,  # numeric inputs per step
    "history": 100_000,     # epochs recorded
    "steps": 1_000_000,     # a language model's segment length and parallel streams
    "beam": 1_000,          # a transducer's beam
    "output": 100_000,      # a transducer's longest output
    "input": 100_000,       # a transducer's longest source
    "search": 1_000_000,    # a transducer's beam x longest output (decoder rows of a search)
    "states": 2**27,        # its beam x longest source x 2 hidden_size (encoder copies, 512 MiB)
}

#: Parameter dtype of every estimator.
PARAM_DTYPE = "float32"
#: What a file holds besides the weights (``config["contents"]``).
CONTENTS = ("weights", "weights+optimizer", "checkpoint")

_BOOL_PARAMS = ("bidirectional", "crf", "lowercase", "early_stopping")
_DEVICES = ("auto", "cpu", "cuda")


class _Bad(ValueError):
    """A config value refused (turned into a ModelFileError with the path)."""


def _fail(message: str):
    raise _Bad(message)


def _int(value, name: str, low: int = 0, high: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(f"{name} must be an integer, got {str(value)[:40]!r}")
    if not low <= value <= high:
        _fail(f"{name} is {value}, outside [{low}, {high}]")
    return int(value)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(f"{name} must be a finite number, got {str(value)[:40]!r}")
    return float(value)


def _strings(value, name: str, limit: int, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list):
        _fail(f"{name} must be a list, got {type(value).__name__}")
    if len(value) > limit:
        _fail(f"{name} has {len(value)} entries, more than the limit of {limit}")
    if not allow_empty and not value:
        _fail(f"{name} is empty")
    for item in value:
        if not isinstance(item, str) or not item:
            _fail(f"{name} must hold non-empty strings, got {str(item)[:40]!r}")
    if len(set(value)) != len(value):
        _fail(f"{name} has duplicate entries")
    return list(value)


def search_size_problem(beam: int, max_output: int, max_input: int, hidden: int) -> str | None:
    """What is wrong with a transducer's search sizes, or None. Each value may be within its
    limit and their products not: a beam search runs up to beam x max_output decoder rows,
    and holds a copy of the encoder's states (max_input x 2 hidden) per hypothesis. Checked at
    fit and at load, so that every model that trains can be saved and loaded."""
    if beam * max_output > LIMITS["search"]:
        return (f"beam_size x max_output_length must be at most {LIMITS['search']:,}, got "
                f"{beam:,} x {max_output:,}")
    if beam * max_input * 2 * hidden > LIMITS["states"]:
        return (f"beam_size x max_input_length x 2 hidden_size must be at most "
                f"{LIMITS['states']:,} values, got {beam:,} x {max_input:,} x {2 * hidden:,}")
    return None


def _vocabulary(data, name: str) -> Vocabulary:
    if not isinstance(data, dict) or set(data) != {"items", "counts"}:
        _fail(f"{name} must be an object with items and counts")
    items = _strings(data["items"], f"{name} items", LIMITS["vocabulary"], allow_empty=True)
    counts = data["counts"]
    if not isinstance(counts, list) or len(counts) != len(items):
        _fail(f"{name} counts must be a list as long as its items")
    if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**53
               for c in counts):
        _fail(f"{name} counts must be non-negative integers below 2**53")
    if PAD in items or UNK in items:
        _fail(f"{name} lists a reserved entry ({PAD} or {UNK})")
    return Vocabulary(items, counts)


# ----------------------------------------------------------------------------------------------
# the config
# ----------------------------------------------------------------------------------------------


def check_params(cls, params, trust_tokenizer: bool):
    """An estimator of ``cls`` with the hyperparameters ``params`` of a file, each checked."""
    if not isinstance(params, dict):
        _fail("params must be an object")
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        _fail(f"unknown hyperparameters {unknown[:5]}")
    estimator = cls(**params)
    if "epoch_size" not in params and "epoch_size" in cls._get_param_names():
        # A file from before epoch_size was trained in whole passes, and goes on so.
        estimator.epoch_size = None
    limits = {"hidden_size": "width", "word_dim": "width", "char_dim": "width",
              "char_hidden_size": "width", "embedding_dim": "width", "num_layers": "layers",
              "bptt": "steps", "batch_size": "steps", "feature_dim": "width",
              "beam_size": "beam"}
    for name in estimator._positive_int_params:
        _int(getattr(estimator, name), name, 1, LIMITS[limits[name]] if name in limits
             else 2**31)
    if hasattr(estimator, "shape_dim"):
        _int(estimator.shape_dim, "shape_dim", 0, LIMITS["width"])
    for name in _BOOL_PARAMS:
        if hasattr(estimator, name) and not isinstance(getattr(estimator, name), bool):
            _fail(f"{name} must be true or false")
    if estimator.cell not in CELLS:
        _fail(f"cell must be one of {', '.join(CELLS)}")
    if getattr(estimator, "char_encoder", None) not in CHAR_ENCODERS:
        _fail("char_encoder must be 'cnn', 'lstm' or null")
    if estimator.optimizer not in OPTIMIZERS:
        _fail(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    for name in ("dropout", "word_dropout", "learning_rate", "lr_decay", "average_decay",
                 "validation_fraction"):
        if hasattr(estimator, name):
            _number(getattr(estimator, name), name)
    if estimator.clip_norm is not None:
        _number(estimator.clip_norm, "clip_norm")
    if getattr(estimator, "epoch_size", None) is not None:
        _int(estimator.epoch_size, "epoch_size", 1, 2**31)
    if estimator.device not in _DEVICES:
        _fail(f"device must be one of {', '.join(_DEVICES)}")
    if estimator.n_jobs is not None:
        _int(estimator.n_jobs, "n_jobs", -(2**31), 2**31)
    if estimator.random_state is not None:  # what numpy accepts as a seed
        _int(estimator.random_state, "random_state", 0, 2**32 - 1)
    _int(estimator.verbose, "verbose", 0, 100)
    if getattr(estimator, "embeddings", None) is not None and not isinstance(
            estimator.embeddings, str):
        _fail("embeddings must be a path or null")
    labels = getattr(estimator, "labels", None)
    if labels is not None:
        _strings(labels, "labels", LIMITS["tags"])
    if getattr(estimator, "class_weight", None) not in (None, "balanced"):
        # Files keep a classifier's class weights as class_weight_pairs (labels keep their type).
        _fail("class_weight must be null or 'balanced' (weights per class are "
              "class_weight_pairs)")
    tokenizer = getattr(estimator, "tokenizer", "regex")
    if not isinstance(tokenizer, str):
        _fail("tokenizer must be a string")
    if tokenizer not in TOKENIZERS and not trust_tokenizer:
        raise ModelFileError(
            f"its tokenizer is a custom regular expression ({tokenizer[:60]!r}); a pattern from a "
            f"file could take exponential time on some inputs, so it is not run unless you trust "
            f"the file: load it with trust_tokenizer=True (on the command line, "
            f"--trust-tokenizer)")
    estimator._validate_params(resolve_device=False)
    return estimator


def check_training_state(state) -> dict:
    """A checkpoint's training state, checked (as :meth:`RecurrentEstimator._train` reads it)."""
    if not isinstance(state, dict):
        _fail("training_state must be an object")
    for key in ("rng", "best_key", "best_progress", "waited", "stopped", "has_best_params"):
        if key not in state:
            _fail(f"training_state has no {key!r}")
    try:
        np.random.default_rng(0).bit_generator.state = state["rng"]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        _fail(f"training_state rng is not a generator state ({exc})")
    for key in ("best_key", "best_progress"):
        value = state[key]
        if not isinstance(value, list) or len(value) > 16:
            _fail(f"training_state {key} must be a short list of numbers")
        for item in value:
            if item is not None:  # null: no score yet
                _number(item, f"training_state {key}")
    _int(state["waited"], "training_state waited", 0, 2**31)
    for key in ("stopped", "has_best_params"):
        if not isinstance(state[key], bool):
            _fail(f"training_state {key} must be true or false")
    if not isinstance(state.get("has_average", False), bool):  # checkpoints before averaging
        _fail("training_state has_average must be true or false")
    # Where in a pass the next epoch starts (epoch_size); checkpoints from before: a new pass.
    _int(state.get("pass_batch", 0), "training_state pass_batch", 0, 2**31)
    if state.get("pass_rng") is not None:
        try:
            np.random.default_rng(0).bit_generator.state = state["pass_rng"]
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            _fail(f"training_state pass_rng is not a generator state ({exc})")
    return dict(state)


def restore_from_config(cls, config: dict, trust_tokenizer: bool = False):
    """The estimator a file's config describes, without parameters, and its word width."""
    estimator = check_params(cls, config.get("params"), trust_tokenizer)
    kind = config.get("input_type", TEXT)  # files from before numeric inputs: text
    estimator.input_type_ = kind
    if kind == NUMERIC:
        n = estimator.n_features_ = _int(config.get("n_features"), "n_features", 1,
                                         LIMITS["features"])
        stats = []
        for key in ("feature_mean", "feature_scale"):
            values = config.get(key)
            if not isinstance(values, list) or len(values) != n:
                _fail(f"{key} must be a list of n_features numbers")
            stats.append(np.array([_number(v, key) for v in values], dtype=np.float64))
        if not (stats[1] > 0).all():
            _fail("feature_scale must be positive")
        estimator.feature_mean_, estimator.feature_scale_ = stats
        word_dim = 0
    elif kind == CHARS:
        vocabulary = _vocabulary(config.get("vocabulary"), "vocabulary")
        if any(len(item) != 1 for item in vocabulary.items[2:]):
            _fail("a character vocabulary must hold single characters")
        estimator.vocabulary_ = vocabulary
        word_dim = 0
    elif kind == SYMBOLS:
        estimator.vocabulary_ = _vocabulary(config.get("vocabulary"), "vocabulary")
        word_dim = 0
    elif kind == TEXT:
        estimator.vocabulary_ = _vocabulary(config.get("vocabulary"), "vocabulary")
        chars = config.get("char_vocabulary")
        if (chars is None) != (estimator.char_encoder is None):
            _fail("char_vocabulary must be given exactly when there is a character encoder")
        estimator.char_vocabulary_ = (_vocabulary(chars, "char_vocabulary") if chars is not None
                                      else None)
        word_dim = _int(config.get("word_dim"), "word_dim", 1, LIMITS["width"])
    else:
        _fail(f"unknown input type {str(kind)[:20]!r}")
    estimator.history_ = _history(config.get("history"))
    estimator.best_epoch_ = _int(config.get("best_epoch"), "best_epoch", 0,
                                 len(estimator.history_))
    estimator._restore_task(config)
    return estimator, word_dim


def restore_transducer(estimator, config: dict) -> None:
    """A transducer's own config (see :meth:`SequenceTransducer._task_config`), checked."""
    kind = config.get("target_type")
    if kind not in (CHARS, SYMBOLS):
        _fail("target_type must be 'chars' or 'symbols'")
    estimator.target_type_ = kind
    target = _vocabulary(config.get("target_vocabulary"), "target_vocabulary")
    if len(target) < 3:
        _fail("target_vocabulary is empty")
    if kind == CHARS and any(len(item) != 1 for item in target.items[2:]):
        _fail("a character target vocabulary must hold single characters")
    if any(LINE_OR_TAB.search(item) for item in target.items[2:]):
        _fail("target_vocabulary symbols must hold no tab or line break (an output is one "
              "line)")
    estimator.target_vocabulary_ = target
    features = config.get("feature_vocabularies")
    if not isinstance(features, list) or len(features) > 64:
        _fail("feature_vocabularies must be a list of at most 64 vocabularies")
    estimator.feature_vocabularies_ = [_vocabulary(v, f"feature_vocabularies[{i}]")
                                       for i, v in enumerate(features)]
    estimator.max_output_length_ = _int(config.get("max_output_length"), "max_output_length",
                                        1, LIMITS["output"])
    # Files written before the source limit was kept: one in scale with the outputs.
    estimator.max_input_length_ = _int(
        config.get("max_input_length", min(4 * estimator.max_output_length_ + 16,
                                           LIMITS["input"])),
        "max_input_length", 1, LIMITS["input"])
    if estimator.max_output_length is not None:
        _int(estimator.max_output_length, "max_output_length", 1, LIMITS["output"])
    _number(estimator.length_penalty, "length_penalty")
    # Each value may be within its limit and their products not: a beam search runs up to
    # beam x max_output_length decoder rows, and holds a copy of the encoder's states
    # (max_input_length x 2 hidden_size) per hypothesis.
    problem = search_size_problem(estimator.beam_size, estimator.max_output_length_,
                                  estimator.max_input_length_, estimator.hidden_size)
    if problem:
        _fail(problem)


def restore_lemmatizer(estimator, config: dict) -> None:
    """A lemmatizer's dictionary (see :meth:`Lemmatizer._task_config`), checked."""
    uses = config.get("uses_upos")
    if not isinstance(uses, bool):
        _fail("uses_upos must be true or false")
    if len(estimator.feature_vocabularies_) != (1 if uses else 0):
        _fail("uses_upos must be true exactly when the transducer has one feature, false when "
              "it has none")
    if estimator.input_type_ != CHARS or estimator.target_type_ != CHARS:
        _fail("a lemmatizer's transducer must read and write strings (input_type and "
              "target_type 'chars')")
    rows = config.get("pair_lemmas")
    if not isinstance(rows, list) or len(rows) > LIMITS["vocabulary"]:
        _fail(f"pair_lemmas must be a list of at most {LIMITS['vocabulary']:,} entries")
    pairs = {}
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            _fail("pair_lemmas entries must be [form, tag, lemma]")
        form, tag, lemma = row
        for value, name in ((form, "form"), (lemma, "lemma")):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_DICTIONARY_ENTRY or \
                    LINE_OR_TAB.search(value):
                _fail(f"a pair_lemmas {name} must be a string of 1 to 1000 characters without "
                      f"tabs or line breaks")
        if (tag is None) == uses or (tag is not None and (
                not isinstance(tag, str) or not 0 < len(tag) <= MAX_DICTIONARY_TAG
                or LINE_OR_TAB.search(tag))):
            _fail("a pair_lemmas tag must be a short string with UPOS (no tabs or line breaks), "
                  "null without")
        if (form, tag) in pairs:
            _fail(f"pair_lemmas repeats the pair {[form[:40], tag]}")
        pairs[(form, tag)] = lemma
    estimator.pair_lemmas_ = pairs
    estimator.uses_upos_ = uses


def _history(history) -> list[dict]:
    """A file's training history, checked: what reports and resumed training read from it."""
    if not isinstance(history, list) or len(history) > LIMITS["history"]:
        _fail(f"history must be a list of at most {LIMITS['history']:,} epochs")
    for number, entry in enumerate(history, 1):
        if not isinstance(entry, dict) or len(entry) > 64:
            _fail(f"history entry {number} must be an object of a few measures")
        if entry.get("epoch") != number or isinstance(entry.get("epoch"), bool):
            _fail(f"history entry {number} must have epoch {number}")
        for key, value in entry.items():
            # Numbers are finite (the reader refuses NaN and infinities); strings are short.
            if not (value is None or isinstance(value, (bool, int, float))
                    or (isinstance(value, str) and len(value) <= 200)):
                _fail(f"history entry {number}: {key[:40]!r} must be a number, a short text "
                      f"or null")
    return list(history)


def contents_of(config: dict) -> str:
    """What a file holds besides the weights (format-1 files always held optimizer state)."""
    contents = config.get("contents")
    if contents is None:
        return "checkpoint" if "training_state" in config else "weights+optimizer"
    if contents not in CONTENTS:
        _fail(f"contents must be one of {', '.join(CONTENTS)}")
    if (contents == "checkpoint") != ("training_state" in config):
        _fail("only a checkpoint has a training_state")
    return contents


def expected_arrays(estimator, model, config: dict) -> dict:
    """Every array the file must (or may) hold, from the config alone: the parameters, the
    optimizer's slots, a checkpoint's best weights."""
    shapes = model.param_shapes()
    expected = {name: (shape, PARAM_DTYPE) for name, shape in shapes.items()}
    contents = contents_of(config)
    if contents != "weights":
        legacy = config.get("format_version", persist.FORMAT_VERSION) < 2
        prefixes = ("m.", "v.") if estimator.optimizer == "adam" else ("",)
        for prefix in prefixes:
            for name, shape in shapes.items():
                # Slots are made on a parameter's first update; a file may lack some.
                expected[f"optimizer.slot.{prefix}{name}"] = (shape, PARAM_DTYPE, False)
        expected["optimizer.steps"] = ((), "int64", not legacy)
    if contents == "checkpoint":
        state = check_training_state(config["training_state"])
        for name, shape in shapes.items():
            expected[f"best.{name}"] = (shape, PARAM_DTYPE, state["has_best_params"])
            expected[f"average.{name}"] = (shape, PARAM_DTYPE, state.get("has_average", False))
    return expected


# ----------------------------------------------------------------------------------------------
# loading and saving
# ----------------------------------------------------------------------------------------------


def load_estimator(cls, path, trust_tokenizer: bool = False):
    """Read an estimator of ``cls`` written by :func:`save_estimator` (see
    :meth:`RecurrentEstimator.load`)."""
    path_text = str(path)
    built = {}

    def expect(config: dict) -> dict:
        try:
            estimator, word_dim = restore_from_config(cls, config, trust_tokenizer)
            # The network's layer objects hold configuration only: nothing is initialised.
            model = estimator._model_for(word_dim, resolve_device=False)
            expected = expected_arrays(estimator, model, config)
        except ModelFileError as exc:
            raise ModelFileError(f"{path_text}: {exc}") from None
        except (_Bad, KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise ModelFileError(f"{path_text}: invalid model configuration: "
                                 f"{str(exc)[:300]}") from None
        built.update(estimator=estimator, model=model, contents=contents_of(config),
                     config=config)
        return expected

    _, arrays = persist.load_model(path, kind=cls._kind, expected=expect)
    estimator, model, config = built["estimator"], built["model"], built["config"]
    shapes = model.param_shapes()
    estimator.params_ = {name: arrays[name] for name in shapes}
    state = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    if state:
        try:
            _check_optimizer_state(estimator.optimizer, state)
        except _Bad as exc:
            raise ModelFileError(f"{path_text}: invalid optimizer state: {exc}") from None
    estimator.optimizer_state_ = state
    if built["contents"] == "checkpoint":
        best = {name: arrays[f"best.{name}"] for name in shapes if f"best.{name}" in arrays}
        average = {name: arrays[f"average.{name}"] for name in shapes
                   if f"average.{name}" in arrays}
        estimator._resume_state = dict(config["training_state"], best_params=best or None,
                                       average=average or None)
    estimator.__dict__["_model_cache"] = model
    return estimator


def _check_optimizer_state(optimizer: str, state: dict) -> None:
    steps = state.get("steps")
    if steps is None:
        _fail("no step count")
    _int(int(steps), "steps", 0, 2**53)
    if optimizer == "adam":
        names = {k[len("slot.m."):] for k in state if k.startswith("slot.m.")}
        if names != {k[len("slot.v."):] for k in state if k.startswith("slot.v.")}:
            _fail("Adam's first and second moments name different parameters")
        if any(not (v >= 0).all() for k, v in state.items() if k.startswith("slot.v.")):
            _fail("Adam's second moments must be non-negative")


def save_estimator(estimator, path, optimizer_state: bool) -> None:
    """Write a fitted estimator (see :meth:`RecurrentEstimator.save`)."""
    config = {"params": estimator._saveable_params(), "input_type": estimator.input_type_,
              "history": estimator.history_, "best_epoch": estimator.best_epoch_}
    if estimator.input_type_ in (CHARS, SYMBOLS):
        config.update(vocabulary=estimator.vocabulary_.to_dict())
    elif estimator.input_type_ == NUMERIC:
        config.update(n_features=estimator.n_features_,
                      feature_mean=[float(v) for v in estimator.feature_mean_],
                      feature_scale=[float(v) for v in estimator.feature_scale_])
    else:
        config.update(
            vocabulary=estimator.vocabulary_.to_dict(),
            char_vocabulary=(estimator.char_vocabulary_.to_dict()
                             if estimator.char_vocabulary_ is not None else None),
            word_dim=int(estimator.params_["emb.word"].shape[1]))
    config.update(estimator._task_config())
    arrays = dict(estimator.params_)
    state = estimator.__dict__.get("_checkpoint_state")
    contents = "checkpoint" if state is not None else (
        "weights+optimizer" if optimizer_state else "weights")
    if contents != "weights":
        optimizer = getattr(estimator, "optimizer_state_", None) or {}
        if not optimizer:
            warnings.warn("the estimator has no optimizer state to save (it was loaded from a "
                          "file without one); the file will hold the weights only", stacklevel=3)
            contents = "weights"
        arrays.update({f"optimizer.{k}": v for k, v in optimizer.items()})
    config["contents"] = contents
    if contents == "checkpoint":  # written during training
        config["training_state"] = {k: v for k, v in state.items()
                                    if k not in ("best_params", "average")}
        for key in ("best_key", "best_progress"):  # standard JSON: no score yet is null
            config["training_state"][key] = [
                None if isinstance(v, float) and math.isinf(v) and v < 0 else v
                for v in config["training_state"][key]]
        config["training_state"]["has_best_params"] = state["best_params"] is not None
        if state["best_params"] is not None:
            arrays.update({f"best.{k}": v for k, v in state["best_params"].items()})
        average = state.get("average")
        config["training_state"]["has_average"] = average is not None
        if average is not None:
            arrays.update({f"average.{k}": v for k, v in average.items()})
    persist.save_model(path, estimator._kind, config, arrays)
