"""SequenceClassifier: a recurrent sequence-to-label classifier with the scikit-learn API."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..nn.classifier import POOLINGS, ClassifierNetwork
from ..nn.model import ClassifierModel
from ..nn.training import run_batches, thread_limit
from ._base import RecurrentEstimator
from ._protocol import check_is_fitted

_KIND = "SequenceClassifier"


class SequenceClassifier(RecurrentEstimator):
    """A recurrent sequence classifier: (bi)RNN over the sequence, pooled over time, softmax.

    X is a list of texts (token lists, or raw strings that ``tokenizer`` splits) or a list of
    numeric sequences: float arrays of shape (length, n_features) such as sensor traces, time
    series or the rows of an image, standardised with statistics learned in ``fit``. A 3-D array
    (n, length, n_features) and a 2-D array (n, length) of univariate sequences are accepted too.
    y holds one label per sequence (strings or integers; two classes or more).

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "irnn"}
        Recurrent cell ("irnn": ReLU recurrence with identity initialisation).
    hidden_size : int
        State width per direction.
    num_layers : int
        Stacked recurrent layers.
    bidirectional : bool
        Read sequences in both directions.
    pooling : {"last", "mean", "max", "attention"}
        How the hidden states become one vector: the final state of each direction, their
        mean over the valid steps, their element-wise maximum, or an attention-weighted sum
        (a learned score per step, softmax over the valid steps).
    word_dim : int
        Word embedding width (text).
    char_encoder : {"cnn", "lstm", None}
        Character features per word (text).
    char_dim, char_hidden_size : int
        Character embedding width; CNN filters or character LSTM width per direction.
    shape_dim : int
        Width of the word-shape embedding; 0 disables it.
    lowercase : bool
        Look words up in lower case.
    min_word_count : int
        Training words seen fewer times are unknown.
    word_dropout : float
        Word dropout strength alpha: a training word seen c times is replaced by the unknown
        word with probability alpha / (alpha + c); 0 disables it.
    embeddings : str or None
        Path of a word2vec/GloVe text file whose vectors initialise the word embeddings.
    tokenizer : str or callable
        How raw strings become tokens: "regex" (words, numbers and single punctuation marks),
        "whitespace", another regular expression whose matches are the tokens, or a function
        (a model with a function for a tokenizer cannot be saved to a file).
    dropout : float
        Dropout on the token vectors, between recurrent layers and on the pooled vector.
    optimizer : {"adam", "sgd"}
        Optimizer.
    learning_rate : float
        Initial learning rate.
    lr_decay : float
        Learning rate at epoch e is ``learning_rate / (1 + lr_decay * e)``.
    average_decay : float
        The model is a moving average of the weights at the end of each epoch: after epoch
        ``e``, ``average = average_decay * average + (1 - average_decay) * weights``. The
        development score, the best epoch and the final weights are those of the average;
        training goes on from the weights themselves. 0 turns it off (the model is the last
        epoch's weights). Default 0.5: SST-2 dev accuracy 85.59 against 85.24 without it
        (mean of seeds 0-2, ``benchmarks/bench_regime.py --corpus sst2``).
    max_epochs : int
        Training epochs at most.
    batch_size : int
        Sequences per batch (batches group sequences of similar length).
    epoch_size : int or None
        About how many sequences an epoch holds. A training set of more is read in shuffled
        passes, each cut into ``ceil(sequences / epoch_size)`` epochs (empty sequences not
        counted) of whole batches, as many alike as can be, so that a large corpus is scored
        on the development set, averaged and early-stopped several times a pass;
        ``max_epochs``, ``patience``, ``lr_decay`` and ``average_decay`` count these epochs.
        None: an epoch is a pass. (:meth:`partial_fit` always makes one whole pass.) Default
        20000: SST-2's 67,349 training phrases make four epochs a pass, and with
        ``patience=10`` its dev accuracy is 86.17 against 85.66 in whole passes with a patience
        of 5 (mean of seeds 0-4, higher on every seed), in less training (6.4 passes against
        8.8; ``benchmarks/bench_regime.py``).
    clip_norm : float or None
        Gradients are scaled to this global L2 norm at most.
    early_stopping : bool
        Keep the epoch with the best development accuracy (ties: the lower log-loss) and stop
        after ``patience`` epochs in which neither the accuracy nor the log-loss improved. The
        development set is ``X_dev``/``y_dev`` or, without them, a stratified
        ``validation_fraction`` of the training data.
    patience : int
        Epochs without improvement before stopping. Default 10, with ``epoch_size``: on SST-2,
        two and a half passes; 5 stopped one seed of five after 2.5 passes, at 85.09.
    validation_fraction : float
        Share of the training data held out when early stopping has no ``X_dev``.
    class_weight : dict, "balanced" or None
        Weight of each class in the loss ("balanced": inversely proportional to its frequency).
    device : {"auto", "cpu", "cuda"}
        Where training and prediction run: "cuda" on the GPU (the ``[cuda]`` extra and a
        usable GPU; else an error saying why), "cpu" on the CPU kernels, "auto" the GPU when
        one is usable, else the CPU (see :func:`tagger.kernels.backend.resolve_device`; the
        ``TAGGER_DEVICE`` environment variable overrides it).
    n_jobs : int or None
        CPU threads (None: all).
    random_state : int, RandomState or None
        Seed; the same seed gives the same model bit for bit on the CPU.
    verbose : int
        1 prints a line per epoch to standard error.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba``'s columns.
    input_type_ : {"text", "numeric"}
        What the classifier was fitted on.
    vocabulary_, char_vocabulary_ : Vocabulary
        Word and character vocabularies (text).
    n_features_ : int
        Values per step (numeric).
    feature_mean_, feature_scale_ : ndarray (n_features_,)
        Standardisation statistics (numeric).
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``dev_score`` (accuracy), ``dev_loss`` (log-loss),
        ``seconds``, ``tokens_per_s``, ``learning_rate``.
    best_epoch_ : int
        The epoch whose weights were kept.
    params_ : dict of ndarray
        Network weights.
    """

    _kind = _KIND
    _estimator_type = "classifier"
    _allow_empty = False

    def __init__(self, cell="lstm", hidden_size=128, num_layers=1, bidirectional=True,
                 pooling="max", word_dim=100, char_encoder="cnn", char_dim=30,
                 char_hidden_size=50, shape_dim=16, lowercase=True, min_word_count=1,
                 word_dropout=0.25, embeddings=None, tokenizer="regex", dropout=0.5,
                 optimizer="adam", learning_rate=2e-3, lr_decay=0.05, average_decay=0.5,
                 max_epochs=30, batch_size=32, epoch_size=20000, clip_norm=5.0,
                 early_stopping=True, patience=10, validation_fraction=0.1, class_weight=None,
                 device="auto", n_jobs=None, random_state=None, verbose=0):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.word_dim = word_dim
        self.char_encoder = char_encoder
        self.char_dim = char_dim
        self.char_hidden_size = char_hidden_size
        self.shape_dim = shape_dim
        self.lowercase = lowercase
        self.min_word_count = min_word_count
        self.word_dropout = word_dropout
        self.embeddings = embeddings
        self.tokenizer = tokenizer
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.average_decay = average_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.epoch_size = epoch_size
        self.clip_norm = clip_norm
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------------------------------

    def _validate_task_params(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got "
                             f"{self.pooling!r}")
        cw = self.class_weight
        if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")

    def _network_for(self, featurizer) -> ClassifierModel:
        network = ClassifierNetwork(featurizer.output_size, len(self.classes_), self.cell,
                                    self.hidden_size, self.num_layers, self.bidirectional,
                                    self.pooling, self.dropout)
        return ClassifierModel(featurizer, network)

    def _check_y(self, y, n: int, name: str = "y") -> np.ndarray:
        if y is None:
            raise ValueError(f"the classifier requires {name} to be passed, but the target "
                             f"{name} is None")
        if isinstance(y, (str, bytes)) or not (hasattr(y, "__len__") or hasattr(y, "__array__")):
            raise TypeError(f"{name} must be a list of labels, got {type(y).__name__}")
        from sklearn.exceptions import DataConversionWarning
        from sklearn.utils.multiclass import check_classification_targets

        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(f"A column-vector {name} was passed when a 1d array was expected",
                          DataConversionWarning, stacklevel=3)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"{name} must hold one label per sequence (a 1-D list), got an "
                             f"array of shape {y.shape}")
        if len(y) != n:
            raise ValueError(f"{name} has {len(y)} labels but X has {n} sequences")
        check_classification_targets(y)
        return y

    def _label_ids(self, y: np.ndarray, name: str = "y") -> np.ndarray:
        try:
            ids = np.searchsorted(self.classes_, y)
            ids = np.minimum(ids, len(self.classes_) - 1)
            unknown = np.asarray(self.classes_[ids] != y, dtype=bool)
        except TypeError:  # labels of another type than the classes (strings vs numbers)
            ids = np.zeros(len(y), np.int64)
            unknown = np.ones(len(y), bool)
        if unknown.any():
            raise ValueError(f"{name} holds labels the classifier does not know: "
                             f"{sorted(set(np.asarray(y)[unknown].tolist()))}; give every class "
                             f"to the first partial_fit with classes=[...]")
        return ids.astype(np.int64)

    def _example_weights(self, ids: np.ndarray, sample_weight) -> np.ndarray:
        weights = np.ones(len(ids))
        if self.class_weight is not None:
            from sklearn.utils.class_weight import compute_class_weight

            try:
                per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                                 y=self.classes_[ids])
            except ValueError as exc:
                raise ValueError(f"class_weight: {exc}") from None
            weights = per_class[ids]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != ids.shape:
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected "
                                 f"{ids.shape}")
            if not np.isfinite(sample_weight).all() or (sample_weight < 0).any():
                raise ValueError("sample_weight must be finite and non-negative")
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight is zero everywhere: there is nothing to learn")
            weights = weights * sample_weight
        return weights

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def fit(self, X, y, X_dev=None, y_dev=None, sample_weight=None, callback=None):
        """Train on sequences ``X`` with labels ``y``.

        Parameters
        ----------
        X : list of token lists, list of str, list of ndarray (length, n_features), or ndarray
            The sequences.
        y : array-like (n,)
            One label per sequence.
        X_dev, y_dev : optional
            Development data for early stopping (else a ``validation_fraction`` split).
        sample_weight : array-like (n,), optional
            Weight of each training sequence in the loss.
        callback : callable, optional
            ``callback(event, info)`` hears training progress: ``"epoch_start"``, ``"batch"``
            and ``"epoch_end"`` events (for progress bars and checkpoints).

        Returns
        -------
        self
        """
        return self._fit(X, y, X_dev, y_dev, sample_weight, callback)

    def _fit(self, X, y, X_dev=None, y_dev=None, sample_weight=None, callback=None,
             classes=None):
        """:meth:`fit`; with ``classes`` (the first ``partial_fit``), y may show only some of
        the classes."""
        self._validate_params()
        kind, X = self._check_new_X(X)
        if not len(X):
            raise ValueError("X holds no sequences to learn from")
        y = self._check_y(y, len(X))
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError("classes must name at least two classes")
        else:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs "
                                 f"at least two")
        if (X_dev is None) != (y_dev is None):
            raise ValueError("give both X_dev and y_dev, or neither")
        rng = np.random.default_rng(self._seed())
        self._forget_fit()
        self.classes_ = classes
        ids = self._label_ids(y)
        weights = self._example_weights(ids, sample_weight)
        if X_dev is not None:
            dev_kind, X_dev = self._check_new_X(X_dev, "X_dev")
            if dev_kind != kind:
                raise TypeError(f"X holds {kind} sequences but X_dev holds {dev_kind} sequences")
        X, ids, weights, X_dev, dev_ids = self._development_split(X, ids, weights, X_dev, y_dev,
                                                                  rng)
        vectors = self._setup_inputs(kind, X)
        if X_dev is not None and kind == "numeric":
            self._encoder.check_features(X_dev, "X_dev")
        self._init_network(rng, vectors)
        self._train_new(X, (ids, weights), X_dev, dev_ids, rng, callback)
        return self

    def _development_split(self, X, ids, weights, X_dev, y_dev, rng):
        """The development set: given, or a stratified ``validation_fraction`` of X."""
        if X_dev is not None:
            dev_ids = self._label_ids(self._check_y(y_dev, len(X_dev), "y_dev"), "y_dev")
        elif self.early_stopping and self.validation_fraction > 0:
            targets = list(zip(ids, weights, strict=True))
            X, targets, X_dev, dev_targets, _ = self._split_dev(
                X, targets, self.validation_fraction, rng, stratify=ids)
            ids = np.array([t[0] for t in targets], dtype=np.int64)
            weights = np.array([t[1] for t in targets])
            dev_ids = np.array([t[0] for t in dev_targets], dtype=np.int64)
        else:
            dev_ids = None
        return X, ids, weights, X_dev, dev_ids

    def continue_fit(self, X, y, X_dev=None, y_dev=None, sample_weight=None, callback=None):
        """Go on training a fitted classifier for the epochs left to ``max_epochs``, with early
        stopping as in :meth:`fit`. From a checkpoint written during :meth:`fit` (a ``callback``
        that saves, as ``tagger train --save-every`` does), given the same data, the result is
        the model of an uninterrupted run, bit for bit; otherwise training goes on afresh (new
        random draws, the patience count from zero). Without ``X_dev``, the same
        ``validation_fraction`` split as ``fit`` is drawn again.

        Returns
        -------
        self
        """
        check_is_fitted(self, "params_")
        self._validate_params()
        X = self._check_X(X)
        ids = self._label_ids(self._check_y(y, len(X)))
        weights = self._example_weights(ids, sample_weight)
        if (X_dev is None) != (y_dev is None):
            raise ValueError("give both X_dev and y_dev, or neither")
        if X_dev is not None:
            X_dev = self._check_X(X_dev, "X_dev")
        split_rng = np.random.default_rng(self._seed())
        X, ids, weights, X_dev, dev_ids = self._development_split(X, ids, weights, X_dev, y_dev,
                                                                  split_rng)
        self._continue(X, (ids, weights), X_dev, dev_ids, callback)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One more pass over all of ``X``, ``y`` (whatever ``epoch_size``); on an unfitted
        classifier, a first pass of training, with ``classes`` (every label the classifier
        will ever see) when ``y`` does not show them all.

        Returns
        -------
        self
        """
        if not hasattr(self, "params_"):
            return self._first_partial_fit(self._fit, X, y, sample_weight=sample_weight,
                                           classes=classes)
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(classes)} differs from the classes of the first "
                             f"partial_fit, {self.classes_.tolist()}")
        self._validate_params()
        X = self._check_X(X)
        ids = self._label_ids(self._check_y(y, len(X)))
        weights = self._example_weights(ids, sample_weight)
        rng = np.random.default_rng(self._seed() + len(self.history_))
        self._train_more(X, (ids, weights), rng, whole_passes=True)
        return self

    def _batch_targets(self, batch, idx, targets) -> tuple:
        ids, weights = targets
        return ids[idx], weights[idx]

    def _batch_loss(self, batch, idx, targets, rng):
        labels, weights = self._batch_targets(batch, idx, targets)
        return self._model.loss_and_grads(self.params_, batch, labels, rng, weights)

    def _chance_loss(self, batch, idx, targets) -> float:
        # One cross-entropy per sequence, whatever its length, weighted as in the loss.
        _, weights = self._batch_targets(batch, idx, targets)
        return float(weights.sum()) * math.log(len(self.classes_))

    def _dev_score(self, X_dev, dev_ids) -> tuple[float, tuple, tuple, dict]:
        log_proba = self._log_proba(X_dev)
        accuracy = float(np.mean(log_proba.argmax(axis=1) == dev_ids))
        log_loss = float(-np.mean(log_proba[np.arange(len(dev_ids)), dev_ids]))
        # The weights kept are those of the most accurate epoch (ties: the lower log-loss), but
        # training goes on while either measure improves: on a small development set accuracy
        # moves in coarse steps and stalls early by chance, while the log-loss still falls; on
        # a large one the log-loss rises early from overconfidence while accuracy still climbs.
        return accuracy, (accuracy, -log_loss), (-log_loss,), {"dev_loss": log_loss}

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------

    def _logits(self, X: list) -> np.ndarray:
        model, encoder = self._model, self._encoder
        params = self._prediction_params()
        out = np.zeros((len(X), len(self.classes_)), np.float64)

        def run(idx):
            out[idx] = model.logits(params, encoder.batch([X[i] for i in idx]))

        with thread_limit(self.n_jobs, kernel_blas=False):
            run_batches(run, list(self._batches(X, model.device)), parallel=model.device == "cpu")
        return out

    def _log_proba(self, X: list) -> np.ndarray:
        z = self._logits(X)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def _proba(self, X: list) -> np.ndarray:
        return np.exp(self._log_proba(X))

    def decision_function(self, X) -> np.ndarray:
        """Class scores: shape (n,) for two classes (positive favours ``classes_[1]``), else
        (n, n_classes)."""
        check_is_fitted(self, "params_")
        z = self._logits(self._check_X(X))
        return z[:, 1] - z[:, 0] if len(self.classes_) == 2 else z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self, "params_")
        return self._proba(self._check_X(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithms of :meth:`predict_proba` (computed stably)."""
        check_is_fitted(self, "params_")
        return self._log_proba(self._check_X(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sequence."""
        check_is_fitted(self, "params_")
        return self.classes_[self._logits(self._check_X(X)).argmax(axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of :meth:`predict` on ``X`` against ``y`` (weighted by ``sample_weight``)."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _saveable_params(self) -> dict:
        params = super()._saveable_params()
        if isinstance(params["class_weight"], dict):
            # JSON keys are strings: keep (label, weight) pairs so integer labels survive.
            params["class_weight"] = None
        return params

    def _task_config(self) -> dict:
        cw = self.class_weight
        return {"classes": self.classes_.tolist(),
                "class_weight_pairs": ([[np.asarray(k).item(), float(v)] for k, v in cw.items()]
                                       if isinstance(cw, dict) else None)}

    def _restore_task(self, config: dict) -> None:
        from ._modelfile import LIMITS, _fail, _number

        classes = config.get("classes")
        if not isinstance(classes, list) or not 2 <= len(classes) <= LIMITS["classes"]:
            _fail("classes must be a list of at least two labels")
        kinds = {type(c) for c in classes}
        if not (kinds == {str} or kinds == {int}) or len(set(classes)) != len(classes):
            _fail("classes must be distinct strings or distinct integers")
        if kinds == {int} and not all(-(2**63) <= c < 2**63 for c in classes):
            _fail("integer classes must fit in 64 bits")
        self.classes_ = np.array(classes)
        pairs = config.get("class_weight_pairs")
        if pairs is not None:
            known = set(classes)
            kind = type(classes[0])
            if not isinstance(pairs, list) or len(pairs) > len(classes) or not all(
                    isinstance(p, list) and len(p) == 2 and type(p[0]) is kind and p[0] in known
                    for p in pairs) or len({p[0] for p in pairs}) != len(pairs):
                _fail("class_weight_pairs must be [label, weight] pairs of distinct known labels")
            weights = {k: _number(v, "class weight") for k, v in pairs}
            if not all(w > 0 for w in weights.values()):
                _fail("class weights must be positive")
            self.class_weight = weights
