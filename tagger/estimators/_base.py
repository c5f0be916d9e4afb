"""What the tagger and the classifier share: parameter checks, inputs (text with vocabularies and
character features, or standardised numeric sequences), the training loop with early stopping,
device selection and model files.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import sys
import time
import warnings

import numpy as np

from .. import _config
from ..kernels._jit import compile_seconds
from ..nn.features import CHAR_ENCODERS, NumericFeaturizer, TokenFeaturizer
from ..nn.optim import OPTIMIZERS, decayed_learning_rate, make_optimizer
from ..nn.recurrent import CELLS
from ..nn.training import EpochBatches, apply_gradients, thread_limit
from ..text.embeddings import load_word_vectors
from ..text.tokenize import make_tokenizer
from ..text.vocab import SHAPES, Vocabulary
from ._encoding import SentenceEncoder
from ._inputs import NUMERIC, TEXT, NumericEncoder, check_sequences, n_features_of
from ._modelfile import load_estimator, save_estimator
from ._protocol import EstimatorBase, check_is_fitted

#: Training stops as diverged when an epoch's mean loss is over this many times the loss of a
#: uniform guess. A fixed reference, not the first epoch's loss: at a learning rate far too
#: high the loss explodes from the second batch on, so the first epoch's mean is already huge;
#: and no model that learns anything does a hundred times worse than guessing.
_DIVERGENCE_FACTOR = 100.0

#: Fitted attributes that describe the inputs (written to and read from model files).
_INPUT_ATTRIBUTES = ("input_type_", "vocabulary_", "char_vocabulary_", "n_features_",
                     "feature_mean_", "feature_scale_")


def _moving_average(average: dict | None, params: dict, decay: float) -> dict:
    """``decay * average + (1 - decay) * params``, in place (a copy of ``params`` the first
    time), in the parameters' dtype."""
    if average is None:
        return {k: v.copy() for k, v in params.items()}
    for k, v in average.items():
        p = params[k]
        v *= p.dtype.type(decay)
        v += p.dtype.type(1.0 - decay) * p
    return average


class RecurrentEstimator(EstimatorBase):
    """Base class of :class:`SequenceTagger` and :class:`SequenceClassifier` (not for direct use).

    Subclasses define ``_kind`` (the model-file kind), ``_positive_int_params``, and the hooks
    ``_validate_task_params``, ``_network_for``, ``_batch_loss``, ``_dev_score``,
    ``_task_config`` and ``_restore_task``.
    """

    _kind = ""
    _positive_int_params = ("hidden_size", "num_layers", "word_dim", "char_dim",
                            "char_hidden_size", "min_word_count", "max_epochs", "batch_size",
                            "patience")
    _allow_empty = True  # whether an example may have no steps

    # ------------------------------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------------------------------

    def _check_training_params(self, cells) -> None:
        """The checks every recurrent estimator shares: the positive integers, the cell (one of
        ``cells``), dropout, the optimizer and its learning rate."""
        for name in self._positive_int_params:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.cell not in cells:
            raise ValueError(f"cell must be one of {', '.join(cells)}, got {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if not self.learning_rate > 0 or not self.lr_decay >= 0:
            raise ValueError("learning_rate must be positive and lr_decay non-negative")
        decay = getattr(self, "average_decay", 0.0)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"average_decay must be a number in [0, 1), got {decay!r}")
        self._check_epoch_size()

    def _check_epoch_size(self) -> None:
        """``epoch_size`` (where the estimator has it) a positive integer or None."""
        size = getattr(self, "epoch_size", None)
        if size is not None and (not isinstance(size, (int, np.integer)) or
                                 isinstance(size, bool) or size < 1):
            raise ValueError(f"epoch_size must be a positive integer or None, got {size!r}")

    def _check_clip_and_stopping(self) -> None:
        """``clip_norm`` positive or None, ``early_stopping`` a bool (the estimators with their
        own epoch loop, :meth:`_train_epochs`)."""
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {self.clip_norm!r}")
        if not isinstance(self.early_stopping, bool):
            raise ValueError(f"early_stopping must be True or False, got "
                             f"{self.early_stopping!r}")

    def _validate_params(self, resolve_device: bool = True) -> None:
        self._check_training_params(CELLS)
        if self.char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"char_encoder must be 'cnn', 'lstm' or None, got "
                             f"{self.char_encoder!r}")
        if not isinstance(self.shape_dim, (int, np.integer)) or self.shape_dim < 0:
            raise ValueError(f"shape_dim must be a non-negative integer, got {self.shape_dim!r}")
        if not self.word_dropout >= 0:
            raise ValueError(f"word_dropout must be non-negative, got {self.word_dropout!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got "
                             f"{self.validation_fraction!r}")
        make_tokenizer(self.tokenizer)
        self._validate_task_params()
        if resolve_device:
            self._resolve_device()

    def _validate_task_params(self) -> None:
        """Checks of the subclass's own parameters."""

    def _resolve_device(self) -> str:
        """"cpu" or "cuda" (see :func:`tagger.kernels.backend.resolve_device`)."""
        from ..kernels.backend import resolve_device

        return resolve_device(self.device)

    def _seed(self) -> int:
        """A seed drawn from ``random_state`` as scikit-learn's ``check_random_state`` reads it
        (None: NumPy's global generator; an int; a ``RandomState``), without importing
        scikit-learn (about a second at the start of every training)."""
        state = self.random_state
        if state is None or state is np.random:
            generator = np.random.mtrand._rand
        elif isinstance(state, numbers.Integral):
            generator = np.random.RandomState(state)
        elif isinstance(state, np.random.RandomState):
            generator = state
        else:
            raise ValueError(f"random_state={state!r} cannot be used to seed a "
                             f"numpy.random.RandomState instance (use None, an int or a "
                             f"RandomState)")
        return int(generator.randint(np.iinfo(np.int32).max))

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------

    @property
    def _tokenizer(self):
        """Splits raw strings given as X into tokens (the ``tokenizer`` parameter)."""
        return make_tokenizer(getattr(self, "tokenizer", "regex"))

    def _check_new_X(self, X, name: str = "X"):
        """Checked training examples and their kind ("text" or "numeric")."""
        return check_sequences(X, name, self._tokenizer, allow_empty=self._allow_empty)

    def _check_X(self, X, name: str = "X") -> list:
        """Checked examples of the kind (and width) seen in ``fit``."""
        _, examples = check_sequences(X, name, self._tokenizer, self.input_type_,
                                      allow_empty=self._allow_empty)
        if self.input_type_ == NUMERIC:
            self._encoder.check_features(examples, name)
        return examples

    def _setup_inputs(self, kind: str, X: list):
        """Learn what the inputs need (vocabularies, or feature statistics); the pretrained
        vectors to load, if any."""
        for attr in _INPUT_ATTRIBUTES:
            self.__dict__.pop(attr, None)
        self.input_type_ = kind
        if kind == NUMERIC:
            n = n_features_of(X)
            if n == 0:
                raise ValueError("X has no steps to learn from")
            stats = NumericEncoder.fit(X)
            self.n_features_ = n
            self.feature_mean_, self.feature_scale_ = stats.mean, stats.scale
            return None
        self.vocabulary_, self.char_vocabulary_, vectors = self._build_vocabularies(X)
        return vectors

    def _build_vocabularies(self, X: list[list[str]]):
        lower = self.lowercase
        words = Vocabulary.build((t.lower() if lower else t for s in X for t in s),
                                 min_count=self.min_word_count)
        vectors = None
        if self.embeddings is not None:
            pre_words, pre_vectors = load_word_vectors(self.embeddings)
            extra = [w for w in pre_words if (w.lower() if lower else w) not in words]
            extra = list(dict.fromkeys(w.lower() if lower else w for w in extra))
            words = Vocabulary(words.items[2:] + extra, words.counts[2:] + [0] * len(extra))
            vectors = (pre_words, pre_vectors)
        chars = None
        if self.char_encoder is not None:
            chars = Vocabulary.build(c for s in X for t in s for c in t)
        return words, chars, vectors

    def _load_vectors(self, table: np.ndarray, words: list[str], vectors: np.ndarray) -> None:
        """Copy pretrained vectors into the rows of the words they name (first match wins)."""
        done = set()
        for word, vector in zip(words, vectors, strict=True):
            key = word.lower() if self.lowercase else word
            row = self.vocabulary_.index(key)
            if row > 1 and row not in done:
                table[row] = vector
                done.add(row)

    def _featurizer_for(self, word_dim: int):
        if self.input_type_ == NUMERIC:
            return NumericFeaturizer(self.n_features_)
        chars = self.char_vocabulary_
        return TokenFeaturizer(
            len(self.vocabulary_), word_dim, len(SHAPES), self.shape_dim,
            len(chars) if chars is not None else 0, self.char_encoder, self.char_dim,
            self.char_hidden_size, self.dropout, self._context())

    def _context(self):
        """Features computed from a sentence's text by other models (the tagger's contextual
        character embeddings), or None."""
        return None

    def _model_for(self, word_dim: int, resolve_device: bool = True):
        featurizer = self._featurizer_for(word_dim)
        model = self._network_for(featurizer)
        if resolve_device:
            model.set_device(self._resolve_device())
        return model

    def _word_dim(self) -> int:
        params = self.__dict__.get("params_")
        if params is not None and "emb.word" in params:
            return int(params["emb.word"].shape[1])
        return self.word_dim

    @property
    def _model(self):
        model = self.__dict__.get("_model_cache")
        if model is None:
            model = self.__dict__["_model_cache"] = self._model_for(self._word_dim())
        else:
            device = self._resolve_device()  # set_params(device=...) moves a fitted model
            if model.device != device:
                model.set_device(device)
        return model

    @property
    def _encoder(self):
        encoder = self.__dict__.get("_encoder_cache")
        if encoder is None:
            if self.input_type_ == NUMERIC:
                encoder = NumericEncoder(self.feature_mean_, self.feature_scale_)
            else:
                encoder = SentenceEncoder(
                    self.vocabulary_, self.char_vocabulary_, self.lowercase,
                    keep_tokens=self._context() is not None,
                    longest_words_first=getattr(self, "char_encoder", None) == "lstm")
            self.__dict__["_encoder_cache"] = encoder
        return encoder

    # Caches and GPU state that copies, pickles and refits never carry along.
    _transient = ("_model_cache", "_encoder_cache", "_local_tags_cache", "_device_params_cache",
                  "_live_device_params")

    def __getstate__(self):
        state = super().__getstate__()
        for attr in self._transient:
            state.pop(attr, None)
        return state

    def _forget_fit(self) -> None:
        for attr in (*self._transient, "params_"):
            self.__dict__.pop(attr, None)

    def _init_network(self, rng: np.random.Generator, vectors) -> None:
        """Fresh parameters (pretrained vectors loaded) and an optimizer."""
        word_dim = vectors[1].shape[1] if vectors is not None else self.word_dim
        model = self._model_for(word_dim)
        self.__dict__["_model_cache"] = model
        params = model.init_params(rng)
        if vectors is not None:
            self._load_vectors(params["emb.word"], *vectors)
        self.params_ = params
        self.history_ = []
        self.best_epoch_ = 0

    @staticmethod
    def _split_dev(X: list, y: list, fraction: float, rng: np.random.Generator,
                   stratify: np.ndarray | None = None):
        """Hold out a random ``fraction`` of the examples (per class when ``stratify`` is given,
        so that every class keeps training examples)."""
        n = len(X)
        if stratify is None:
            order = rng.permutation(n)
            n_dev = max(1, int(round(fraction * n)))
            dev = order[:n_dev]
        else:
            dev = []
            for c in np.unique(stratify):
                members = rng.permutation(np.flatnonzero(stratify == c))
                n_dev = int(round(fraction * len(members)))
                dev.extend(members[: min(n_dev, len(members) - 1)])
            dev = np.array(dev, dtype=np.int64)
        is_dev = np.zeros(n, bool)
        is_dev[dev] = True
        dev_idx, train_idx = np.flatnonzero(is_dev), np.flatnonzero(~is_dev)
        return ([X[i] for i in train_idx], [y[i] for i in train_idx],
                [X[i] for i in dev_idx], [y[i] for i in dev_idx], train_idx)

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def _train(self, X, targets, X_dev, y_dev, epochs: int, rng: np.random.Generator,
               early_stop: bool, callback=None, resume: dict | None = None,
               score_start: bool = False, whole_passes: bool = False) -> None:
        """Epochs of mini-batch training, a history entry per epoch, early stopping on the
        development score (the best epoch's weights are kept).

        ``callback(event, info)``, when given, hears ``"epoch_start"`` (``epoch``,
        ``n_batches``), ``"batch"`` (``epoch``, ``batch``, ``n_batches``, ``loss``, ``tokens``)
        and ``"epoch_end"`` (the epoch's history entry plus ``best_epoch`` and ``estimator``, in
        a state that :meth:`save` can write as a checkpoint: it then also holds the random
        generator and the early-stopping state, so that :meth:`continue_fit` from it gives the
        same model as an uninterrupted run). ``resume`` is that state, read back. With
        ``score_start`` (going on from a model file without that state), the starting weights
        are scored on the development data first and stay the best ones (``best_epoch_``
        unchanged) unless an epoch beats them. An epoch is a part of a pass over ``X`` when it
        holds more than ``epoch_size`` examples, unless ``whole_passes`` (``partial_fit``).

        Training diverges when a loss or gradient is not finite, or when an epoch's mean loss
        is over ``_DIVERGENCE_FACTOR`` times the loss of a uniform guess on the same examples
        (see :meth:`_chance_loss`): the error is a ``FloatingPointError`` whose message starts
        with "training diverged". On that error and on ``KeyboardInterrupt``, the weights are
        those of ``best_epoch_`` (the best epoch so far, with early stopping; else the last
        finished one), or those training started from when it had finished none (for a new
        model, ``best_epoch_`` is then 0: there is nothing worth keeping).

        On the GPU, the parameters and the optimizer state live on the device during training
        and ``params_`` is brought up to date at the end of every epoch (and when training ends
        or fails): a ``"batch"`` callback sees the weights of the last epoch's end.
        """
        params, encoder = self.params_, self._encoder
        encoded = [encoder.encode(s) for s in X]
        lengths = [len(s) for s in X]
        first_epoch = len(self.history_)
        last_epoch = first_epoch + epochs
        best_score, best_params, waited = (-math.inf,), None, 0
        best_progress: tuple = ()
        # An epoch is a pass over the data or, for a corpus of more than epoch_size examples, a
        # part of one (see EpochBatches).
        epochs_plan = EpochBatches(lengths, self.batch_size,
                                   None if whole_passes else getattr(self, "epoch_size", None))
        # The moving average of the weights at each epoch's end (average_decay), which the dev
        # score, the best epoch and the final model read; training goes on from the weights.
        decay = float(getattr(self, "average_decay", 0.0) or 0.0)
        average = None
        if resume is not None:
            rng.bit_generator.state = resume["rng"]
            # Model files hold standard JSON: "no score yet" (-inf) is stored as null.
            best_score = tuple(-math.inf if v is None else v for v in resume["best_key"])
            best_progress = tuple(-math.inf if v is None else v
                                  for v in resume["best_progress"])
            waited = int(resume["waited"])
            best_params = resume.get("best_params")
            epochs_plan.restore(resume.get("pass_rng"), int(resume.get("pass_batch", 0)))
            average = resume.get("average") if decay else None
        # What an interruption or a divergence falls back on: the weights of best_epoch_. A new
        # model's starting weights are random, so they are not copied; a trained model's are.
        kept = best_params
        if kept is None and (first_epoch > 0 or score_start):
            kept = {k: v.copy() for k, v in params.items()}
        has_dev = X_dev is not None and len(X_dev) > 0
        trainer = self._resident_trainer()
        ahead = None
        if trainer is None and self._model.device == "cpu":
            # On a new machine, a second process compiles the kernels of the first step and of
            # the development scoring from the last to the first while this one compiles from
            # the first (see tagger.kernels.ahead).
            from ..kernels import ahead as compile_ahead

            ahead = compile_ahead.start(functools.partial(
                self._rehearse, X, encoded, lengths, targets, X_dev if has_dev else None, y_dev))
        try:
            with thread_limit(self.n_jobs), self._workspaces_released(), \
                    self._resident_training(trainer):
                if score_start and early_stop and has_dev:
                    # The weights trained so far are the ones to beat (a reset best score let
                    # a worse first epoch replace them).
                    _, best_score, best_progress, _ = self._dev_score(X_dev, y_dev)
                    best_params = kept
                for epoch in range(first_epoch + 1, last_epoch + 1):
                    lr = decayed_learning_rate(self.learning_rate, self.lr_decay, epoch - 1)
                    self._optimizer.learning_rate = lr
                    start, total_loss, n_tokens, chance = time.perf_counter(), 0.0, 0, 0.0
                    compiled_before = compile_seconds()
                    batches = epochs_plan.next_epoch(rng)
                    # The mean loss per example of the epoch (a whole pass counts the empty
                    # examples too, whose loss is 0).
                    examples = len(X) if epochs_plan.parts == 1 else sum(map(len, batches))
                    if callback is not None:
                        callback("epoch_start", {"epoch": epoch, "n_batches": len(batches)})
                    for number, idx in enumerate(batches, 1):
                        batch = encoder.batch([X[i] for i in idx], [encoded[i] for i in idx],
                                              rng, self.word_dropout)
                        try:
                            if trainer is None:
                                loss, grads = self._batch_loss(batch, idx, targets, rng)
                                apply_gradients(params, grads, loss, self._optimizer,
                                                self.clip_norm)
                            else:
                                loss = trainer.step(batch,
                                                    self._batch_targets(batch, idx, targets),
                                                    rng, self.clip_norm)
                        except FloatingPointError as exc:
                            raise FloatingPointError(
                                f"training diverged in epoch {epoch}: {exc}") from None
                        total_loss += loss * len(idx)
                        chance += self._chance_loss(batch, idx, targets)
                        n_tokens += batch.n_tokens
                        if callback is not None:
                            callback("batch", {"epoch": epoch, "batch": number,
                                               "n_batches": len(batches), "loss": loss,
                                               "tokens": batch.n_tokens})
                    if total_loss > _DIVERGENCE_FACTOR * chance:
                        raise FloatingPointError(
                            f"training diverged in epoch {epoch}: the mean loss "
                            f"{total_loss / examples:.4g} is over {_DIVERGENCE_FACTOR:g} times "
                            f"that of a uniform guess ({chance / examples:.4g})")
                    if trainer is not None:
                        trainer.download()  # the host copies serve the dev score and checkpoints
                    # Each loss is checked before its step, so the epoch's last step could
                    # overflow the weights unseen.
                    overflowed = next((k for k, v in params.items() if not np.isfinite(v).all()),
                                      None)
                    if overflowed is not None:
                        raise FloatingPointError(f"training diverged in epoch {epoch}: the "
                                                 f"weights {overflowed} overflowed")
                    if decay:
                        average = _moving_average(average, params, decay)
                    seconds = time.perf_counter() - start
                    # The first epoch on a new machine compiles the kernels: that is not training
                    # speed, so throughput leaves it out (it is in the history on its own).
                    compiling = min(compile_seconds() - compiled_before, seconds)
                    speed = n_tokens / max(seconds - compiling, 1e-9)
                    dev_score = dev_key = None
                    dev_extra: dict = {}
                    progress: tuple = ()
                    if has_dev:
                        # dev_key picks the weights kept; a new best of dev_key or of any measure
                        # in progress resets the patience; dev_extra joins the history.
                        with self._scored_weights(average, trainer):
                            dev_score, dev_key, progress, dev_extra = self._dev_score(X_dev,
                                                                                      y_dev)
                    self.history_.append({
                        "epoch": epoch, "loss": total_loss / max(examples, 1),
                        "dev_score": dev_score, **dev_extra, "seconds": seconds,
                        "compile_seconds": compiling, "tokens_per_s": speed,
                        "learning_rate": lr})
                    if self.verbose:
                        dev = "" if dev_score is None else f"  dev {dev_score:.4f}"
                        print(f"epoch {epoch:3d}  loss {self.history_[-1]['loss']:.4f}{dev}  "
                              f"{seconds:.1f}s  {speed:,.0f} "
                              f"{'tokens' if self.input_type_ == TEXT else 'steps'}/s",
                              file=sys.stderr)
                    stop = False
                    model_weights = average if average is not None else params
                    if dev_score is None or not early_stop:
                        self.best_epoch_ = epoch
                        # The last epoch's weights stay in params: no copy needed.
                        kept = ({k: v.copy() for k, v in model_weights.items()}
                                if epoch < last_epoch or average is not None else None)
                    else:
                        best_score, best_progress, waited, stop = self._early_stopping_step(
                            epoch, dev_key, progress, best_score, best_progress, waited)
                        if self.best_epoch_ == epoch:
                            best_params = kept = {k: v.copy() for k, v in model_weights.items()}
                    if callback is not None:
                        self.optimizer_state_ = self._optimizer.state_dict()
                        self._checkpoint_state = {
                            "rng": rng.bit_generator.state, "best_key": list(best_score),
                            "best_progress": list(best_progress), "waited": waited,
                            "best_params": best_params, "stopped": stop, "average": average,
                            "pass_rng": epochs_plan.pass_state,
                            "pass_batch": epochs_plan.position}
                        try:
                            callback("epoch_end", {**self.history_[-1],
                                                   "best_epoch": self.best_epoch_,
                                                   "estimator": self})
                        finally:
                            self.__dict__.pop("_checkpoint_state", None)
                    if stop:
                        break
        except (KeyboardInterrupt, FloatingPointError) as exc:
            if kept is not None:
                for k, v in kept.items():
                    params[k][...] = v
            self.__dict__.pop("_device_params_cache", None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            if self.best_epoch_ > 0:
                kept_note = f"the weights are those of epoch {self.best_epoch_}, the best so far"
            else:
                kept_note = "no epoch had finished, so no weights are worth keeping"
            raise FloatingPointError(f"{exc}; {kept_note} (try a lower learning_rate or a "
                                     f"clip_norm)") from None
        finally:
            if ahead is not None:
                compile_ahead.finish(ahead)
        final = best_params if best_params is not None else (
            kept if average is not None else None)
        if final is not None:
            for k, v in final.items():
                params[k][...] = v
        self.__dict__.pop("_device_params_cache", None)

    @contextlib.contextmanager
    def _scored_weights(self, average: dict | None, trainer):
        """While the block runs, predictions use ``average`` (when not None) instead of the
        weights being trained: on the CPU they are swapped into ``params_`` and back, on the
        GPU a device copy of them stands in for the trainer's."""
        if average is None:
            yield
            return
        if trainer is not None:
            live = self.__dict__.get("_live_device_params")
            self.__dict__["_live_device_params"] = self._model.prediction_params(average)
            try:
                yield
            finally:
                self.__dict__["_live_device_params"] = live
            return
        params = self.params_
        trained = {k: v.copy() for k, v in params.items()}
        for k, v in average.items():
            params[k][...] = v
        try:
            yield
        finally:
            for k, v in trained.items():
                params[k][...] = v

    def _rehearse(self, X, encoded, lengths, targets, X_dev, y_dev) -> None:
        """What :mod:`tagger.kernels.ahead` records the kernels of (their calls, not their
        results): a training step on a few examples, then the development scoring, as
        :meth:`_train` runs them."""
        rng = np.random.default_rng(0)
        idx = [i for i in range(len(X)) if lengths[i] > 0][:16]
        if idx:
            batch = self._encoder.batch([X[i] for i in idx], [encoded[i] for i in idx], rng,
                                        self.word_dropout)
            loss, grads = self._batch_loss(batch, idx, targets, rng)
            with contextlib.suppress(Exception):  # the kernels' results are never computed
                apply_gradients(self.params_, grads, 0.0, self._optimizer, self.clip_norm)
        if X_dev is not None:
            self._dev_score(X_dev, y_dev)

    def _chance_loss(self, batch, idx, targets) -> float:
        """The loss of a uniform guess over the outputs on a batch, summed over its examples:
        the scale that :meth:`_train` tells divergence by. A tagger's loss adds up over the
        tokens, so it is ``log(n_tags)`` per token (a CRF's transition constraints make the
        true figure lower, which only makes the test more lenient)."""
        return batch.n_tokens * math.log(max(self.params_["out.b"].shape[0], 2))

    def _resident_trainer(self):
        """On the GPU (with resident execution on), the trainer that keeps the parameters and the
        optimizer state on the device during training; else None."""
        model = self._model
        if model.device != "cuda" or not _config.CUDA_RESIDENT:
            return None
        from ..nn.resident import ResidentTrainer

        return ResidentTrainer(model, self.params_, self._optimizer)

    @contextlib.contextmanager
    def _resident_training(self, trainer):
        """While ``trainer`` trains, predictions (the dev score) use its device parameters; on
        the way out, however it is taken, its values come back to the host (after a diverged
        step, those before it)."""
        self.__dict__.pop("_device_params_cache", None)  # the parameters are about to change
        if trainer is None:
            yield
            return
        self.__dict__["_live_device_params"] = trainer.device_params
        try:
            yield
        finally:
            self.__dict__.pop("_live_device_params", None)
            trainer.download()

    def _prediction_params(self):
        """The parameters that prediction runs with: on the GPU, a device copy of ``params_``
        (during training the trainer's own, which the dev score reads; after it one made on the
        first prediction and kept until the next training, refit or device change: in-place
        edits of ``params_`` are not seen until then), else ``params_``."""
        model = self._model
        if model.device != "cuda" or not _config.CUDA_RESIDENT:
            return self.params_
        live = self.__dict__.get("_live_device_params")
        if live is not None:
            return live
        cached = self.__dict__.get("_device_params_cache")
        if cached is not None and cached[0] is self.params_ and cached[1] is model:
            return cached[2]
        device_params = model.prediction_params(self.params_)
        self.__dict__["_device_params_cache"] = (self.params_, model, device_params)
        return device_params

    @contextlib.contextmanager
    def _workspaces_released(self):
        """Training reuses the recurrent layers' work arrays from batch to batch; a fitted model
        keeps none of them. The frozen features it computes the same way every epoch are kept
        meanwhile (:meth:`~tagger.nn.model.TaggerModel.hold_features`)."""
        hold = getattr(self._model, "hold_features", None)
        if hold is not None:
            hold()
        try:
            yield
        finally:
            self._model.release_workspaces()

    def _train_epochs(self, epochs: int, early_stop: bool, callback, n_batches: int,
                      train_epoch, dev_score, chance: float, speed, describe) -> None:
        """The epoch loop of the estimators that train on one kind of step (the language
        model, the transducer): the learning-rate schedule, the divergence check, the history
        and verbose line, early stopping on the dev score with the best epoch's weights kept,
        the callback's epoch events; on divergence or Ctrl-C the best weights so far are put
        back (the same file is never left with worse ones).

        Parameters
        ----------
        epochs : int
            Epochs to run after those of ``history_``.
        early_stop : bool
            Stop after ``patience`` epochs without a better dev score, and keep the best.
        callback : callable or None
            Hears ``"epoch_start"`` and ``"epoch_end"`` here (``train_epoch`` sends
            ``"batch"``).
        n_batches : int
            Batches per epoch, for ``"epoch_start"``.
        train_epoch : callable
            ``train_epoch(epoch) -> mean loss``; raises FloatingPointError on a non-finite
            step.
        dev_score : callable or None
            ``dev_score() -> float`` (greater is better) after each epoch.
        chance : float
            The loss of a uniform guess: an epoch's mean loss over ``_DIVERGENCE_FACTOR`` times
            it is divergence.
        speed : callable
            ``speed(seconds) -> dict``: throughput entries of the history, from the epoch's
            seconds without compiling.
        describe : callable
            ``describe(entry) -> str``: the middle of the verbose line.
        """
        params = self.params_
        first_epoch = len(self.history_)
        best_score, best_progress, waited = (-math.inf,), (), 0
        kept = {k: v.copy() for k, v in params.items()} if first_epoch else None
        best_params = None
        try:
            with thread_limit(self.n_jobs):
                for epoch in range(first_epoch + 1, first_epoch + epochs + 1):
                    lr = decayed_learning_rate(self.learning_rate, self.lr_decay, epoch - 1)
                    self._optimizer.learning_rate = lr
                    start, compiled_before = time.perf_counter(), compile_seconds()
                    if callback is not None:
                        callback("epoch_start", {"epoch": epoch, "n_batches": n_batches})
                    try:
                        mean_loss = train_epoch(epoch)
                    except FloatingPointError as exc:
                        raise FloatingPointError(
                            f"training diverged in epoch {epoch}: {exc}") from None
                    if mean_loss > _DIVERGENCE_FACTOR * chance:
                        raise FloatingPointError(
                            f"training diverged in epoch {epoch}: the mean loss "
                            f"{mean_loss:.4g} is over {_DIVERGENCE_FACTOR:g} times that of a "
                            f"uniform guess ({chance:.4g})")
                    seconds = time.perf_counter() - start
                    compiling = min(compile_seconds() - compiled_before, seconds)
                    score = dev_score() if dev_score is not None else None
                    self.history_.append({
                        "epoch": epoch, "loss": mean_loss, "dev_score": score,
                        "seconds": seconds, "compile_seconds": compiling,
                        **speed(max(seconds - compiling, 1e-9)), "learning_rate": lr})
                    if self.verbose:
                        print(f"epoch {epoch:3d}  loss {mean_loss:.4f}"
                              f"{describe(self.history_[-1])}", file=sys.stderr)
                    stop = False
                    if score is None or not early_stop:
                        self.best_epoch_ = epoch
                        kept = None
                    else:
                        best_score, best_progress, waited, stop = self._early_stopping_step(
                            epoch, (score,), (), best_score, best_progress, waited)
                        if self.best_epoch_ == epoch:
                            best_params = kept = {k: v.copy() for k, v in params.items()}
                    if callback is not None:
                        callback("epoch_end", {**self.history_[-1],
                                               "best_epoch": self.best_epoch_,
                                               "estimator": self})
                    if stop:
                        break
        except (KeyboardInterrupt, FloatingPointError) as exc:
            if kept is not None:
                for k, v in kept.items():
                    params[k][...] = v
            if isinstance(exc, KeyboardInterrupt):
                raise
            note = (f"the weights are those of epoch {self.best_epoch_}, the best so far"
                    if self.best_epoch_ > 0 else "no epoch had finished")
            raise FloatingPointError(f"{exc}; {note} (try a lower learning_rate or a "
                                     f"clip_norm)") from None
        if best_params is not None:
            for k, v in best_params.items():
                params[k][...] = v

    def _early_stopping_step(self, epoch, dev_key, progress, best_score, best_progress, waited):
        """Book-keeping of early stopping after an epoch: the new bests, the patience count, and
        whether to stop. A better ``dev_key`` makes this epoch the best one."""
        if len(best_progress) != len(progress):  # the first evaluation
            best_progress = tuple(-math.inf for _ in progress)
        improved = [p > b for p, b in zip(progress, best_progress, strict=True)]
        best_progress = tuple(max(p, b) for p, b in zip(progress, best_progress,
                                                        strict=True))
        if dev_key > best_score:
            best_score, waited, self.best_epoch_ = dev_key, 0, epoch
        elif any(improved):
            waited = 0
        else:
            waited += 1
        return best_score, best_progress, waited, waited >= self.patience

    def _train_more(self, X, targets, rng: np.random.Generator, X_dev=None, y_dev=None,
                    epochs: int = 1, early_stop: bool = False, callback=None,
                    resume: dict | None = None, score_start: bool = False,
                    whole_passes: bool = False) -> None:
        """More epochs from the saved optimizer state (``partial_fit``, ``continue_fit``); a
        fresh optimizer, with a warning, when there is none (a model file saved without it).
        ``resume``, ``score_start`` and ``whole_passes``: see :meth:`_train`."""
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        state = getattr(self, "optimizer_state_", None)
        if state:
            self._optimizer.load_state_dict(state)
        else:
            warnings.warn(f"the model has no optimizer state (saved without it): training "
                          f"continues with a fresh {self.optimizer} optimizer", UserWarning,
                          stacklevel=3)
        try:
            self._train(X, targets, X_dev, y_dev, epochs, rng, early_stop, callback, resume,
                        score_start, whole_passes)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer

    def _train_new(self, X, targets, X_dev, y_dev, rng: np.random.Generator,
                   callback=None) -> None:
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        try:
            self._train(X, targets, X_dev, y_dev, self.max_epochs, rng,
                        early_stop=self.early_stopping, callback=callback)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer

    def _continue(self, X, targets, X_dev, y_dev, callback) -> None:
        """The epochs left to ``max_epochs``, from a checkpoint's exact training state when the
        estimator was loaded from one (the same model as an uninterrupted run), else afresh,
        with the weights it has as the best so far: an epoch replaces them only by beating
        their development score."""
        resume = self.__dict__.pop("_resume_state", None)
        epochs = self.max_epochs - len(self.history_)
        if resume is not None and (resume.get("stopped") or epochs <= 0):
            # That run had ended (early stopping, or its last epoch): what remained was to
            # keep the best epoch's weights.
            for k, v in (resume.get("best_params") or {}).items():
                self.params_[k][...] = v
            return
        if epochs <= 0:
            return
        rng = np.random.default_rng(self._seed() + len(self.history_))
        self._train_more(X, targets, rng, X_dev, y_dev, epochs, self.early_stopping, callback,
                         resume, score_start=resume is None)

    def _first_partial_fit(self, fit, *args, **kwargs):
        """``partial_fit`` on an unfitted estimator: one whole pass of ``fit`` over the data
        given (whatever ``epoch_size``), without early stopping."""
        self._check_epoch_size()  # checked here: fit sees None
        saved = self.max_epochs, self.early_stopping, self.epoch_size
        self.max_epochs, self.early_stopping, self.epoch_size = 1, False, None
        try:
            return fit(*args, **kwargs)
        finally:
            self.max_epochs, self.early_stopping, self.epoch_size = saved

    def _batches(self, X: list, device: str = "cpu"):
        """Prediction batches: indices of non-empty examples, longest first (little padding)."""
        size = _config.PREDICT_BATCH_CPU if device == "cpu" else _config.PREDICT_BATCH_GPU
        order = [i for i in np.argsort([-len(s) for s in X], kind="stable") if len(X[i])]
        for k in range(0, len(order), size):
            yield order[k: k + size]

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _saveable_params(self) -> dict:
        if callable(self.tokenizer):
            raise ValueError(f"a {type(self).__name__} whose tokenizer is a function cannot be "
                             f"saved to a model file (it would have to store code); use "
                             f"'regex', 'whitespace' or a regular expression")
        params = self.get_params()
        if not isinstance(params["random_state"], (int, np.integer, type(None))):
            params["random_state"] = None  # a generator object cannot go into a JSON file
        return params

    def save(self, path, optimizer_state: bool = False) -> None:
        """Write the fitted estimator to one safe model file (no pickle; atomic).

        Parameters
        ----------
        path : str or os.PathLike
            The model file.
        optimizer_state : bool
            Also store the optimizer's state (Adam's moments: twice the weights' size), so that
            :meth:`partial_fit` after :meth:`load` continues exactly. Without it, training a
            loaded model starts a fresh optimizer. A checkpoint written from a training
            callback always holds it, with the training state.
        """
        check_is_fitted(self, "params_")
        save_estimator(self, path, optimizer_state)

    @classmethod
    def load(cls, path, trust_tokenizer: bool = False):
        """Read an estimator written by :meth:`save`; never executes code from the file.

        The file is validated before anything is built from it: every config value, and every
        array's name, shape and dtype against what the config implies, before any array data
        is read; weights must be finite.

        Parameters
        ----------
        path : str or os.PathLike
            The model file.
        trust_tokenizer : bool
            Accept a custom regular expression as the tokenizer. A pattern can take exponential
            time on some inputs (``(a+)+b``), so one from a file is refused unless you trust
            the file's author; the built-in tokenizers always load.

        Raises
        ------
        ModelFileError
            Whatever is wrong with the file, in one line naming it.
        """
        return load_estimator(cls, path, trust_tokenizer)
