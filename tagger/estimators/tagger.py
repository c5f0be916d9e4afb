"""SequenceTagger: a BiLSTM-CRF sequence tagger with the scikit-learn estimator API."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .. import metrics, persist
from ..errors import ModelFileError
from ..nn.model import TaggerModel
from ..nn.network import TaggingNetwork
from ..nn.training import run_batches, thread_limit
from ..text import schemes
from ..text.tokenize import make_offset_tokenizer
from ._base import RecurrentEstimator
from ._inputs import TEXT
from ._protocol import check_is_fitted

_KIND = "SequenceTagger"


class _SpanTuple(NamedTuple):
    start: int
    end: int
    label: str
    score: float


class EntitySpan(_SpanTuple):
    """An entity found by :meth:`SequenceTagger.predict_spans`.

    A 4-tuple ``(start, end, label, score)``: tokens ``start`` to ``end`` (exclusive), its type
    and its score; it unpacks, indexes and compares as the plain tuple. When the sentence was
    given as a raw string, the attributes ``start_char`` and ``end_char`` say where the entity
    lies in that string (``text[start_char:end_char]``, from its first token's first character
    to its last token's end); otherwise they are None.
    """

    start_char: int | None = None  # also for copies made by _make and _replace
    end_char: int | None = None

    def __new__(cls, start: int, end: int, label: str, score: float,
                start_char: int | None = None, end_char: int | None = None) -> EntitySpan:
        span = super().__new__(cls, start, end, label, score)
        # Attributes, not tuple items: code that unpacks four values keeps working.
        span.start_char, span.end_char = start_char, end_char
        return span

    def __repr__(self) -> str:
        chars = "" if self.start_char is None else (
            f", start_char={self.start_char}, end_char={self.end_char}")
        return (f"EntitySpan(start={self.start}, end={self.end}, label={self.label!r}, "
                f"score={self.score!r}{chars})")


def check_tags(X: list, y, name: str = "y") -> list[list[str]]:
    """y as a list of tag lists matching X (token lists or numeric sequences) one by one."""
    if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
        raise TypeError(f"{name} must be a list of tag lists, got {type(y).__name__}")
    if len(y) != len(X):
        raise ValueError(f"{name} has {len(y)} sentences but X has {len(X)}")
    out = []
    for i, (tokens, tags) in enumerate(zip(X, y, strict=True)):
        if isinstance(tags, (str, bytes)) or not hasattr(tags, "__iter__"):
            raise TypeError(f"{name}[{i}] must be a list of tags, got {type(tags).__name__}")
        tags = list(tags)
        if len(tags) != len(tokens):
            raise ValueError(f"{name}[{i}] has {len(tags)} tags but X[{i}] has {len(tokens)} "
                             f"steps (tokens)")
        for j, tag in enumerate(tags):
            if not isinstance(tag, str) or not tag:
                raise TypeError(f"{name}[{i}][{j}] must be a non-empty string, got {tag!r}")
        out.append(tags)
    return out


class SequenceTagger(RecurrentEstimator):
    """A recurrent sequence tagger (by default a BiLSTM-CRF with a character BiLSTM).

    X is a list of sentences, each a list of token strings (or a raw string that ``tokenizer``
    splits), or a list of numeric sequences, each a
    float array of shape (length, n_features) (a signal to segment, say; standardised with
    statistics learned in ``fit``); y a list of tag lists, one tag per token or step. Entity tags
    in IOB1, IOB2 or BIOES are detected and scored as entities; any other tags (part of speech,
    say) are scored by token accuracy.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "irnn"}
        Recurrent cell.
    hidden_size : int
        State width per direction.
    num_layers : int
        Stacked recurrent layers.
    bidirectional : bool
        Read sentences in both directions.
    crf : bool
        Linear-chain CRF output (else an independent softmax per token).
    word_dim : int
        Word embedding width.
    char_encoder : {"cnn", "lstm", None}
        Character features per word: what makes unseen words work. Default "lstm", the final
        states of a character BiLSTM (Lample et al. 2016), over a width-3 CNN with max pooling
        (Ma & Hovy 2016): UD EWT dev UPOS 95.63 against 95.44 and WNUT17 dev F1 34.86 against
        33.64 (means over seeds 0-2 and 0-4, ``benchmarks/bench_regime.py``), at 0.7-0.85x
        the CNN's training tokens/s.
    char_dim : int
        Character embedding width.
    char_hidden_size : int
        Character CNN filters, or character LSTM width per direction.
    shape_dim : int
        Width of the word-shape embedding (capitalisation, digits, mentions, URLs...); 0 disables.
    lowercase : bool
        Look words up in lower case (case still reaches the network through shapes and characters).
    min_word_count : int
        Training words seen fewer times are unknown.
    word_dropout : float
        Word dropout strength alpha: a training word seen c times is replaced by the unknown word
        with probability alpha / (alpha + c); 0 disables it. Default 0.5 (a word seen once is
        dropped a third of the time): with the other defaults, WNUT17 dev F1 34.27 against
        33.83 at 0.25 (mean of seeds 0-2, ``benchmarks/bench_regime.py``).
    embeddings : str or None
        Path of a word2vec/GloVe text file whose vectors initialise the word embeddings (its
        words join the vocabulary); its dimension replaces ``word_dim``.
    char_lm : (forward, backward) or None
        Contextual character embeddings (Akbik et al. 2018): a pair of character language
        models (:class:`~tagger.CharLanguageModel` files or fitted objects), one reading
        forward and one backward. Each token gets the forward model's state after its last
        character and the backward model's state after its first (reading from the right),
        computed over the whole sentence, appended to its other features; the models are frozen.
        The tagger's model file holds them (a saved tagger shows ``char_lm=None``: its models
        are in ``char_lm_config_`` and its ``char_lm.*`` weights). CPU only. Pass file paths
        to keep :func:`sklearn.base.clone` from copying the models unfitted.
    tokenizer : str or callable
        How raw strings given as sentences become tokens: "regex" (words, numbers and single
        punctuation marks), "whitespace", another regular expression whose matches are the
        tokens, or a function (a tagger with a function for a tokenizer cannot be saved).
    dropout : float
        Dropout on the token vectors, between recurrent layers and before the output layer.
    optimizer : {"adam", "sgd"}
        Optimizer.
    learning_rate : float
        Initial learning rate. Default 3e-3, with batches of 32 (see ``batch_size``).
    lr_decay : float
        Learning rate at epoch e is ``learning_rate / (1 + lr_decay * e)``.
    average_decay : float
        The model is a moving average of the weights at the end of each epoch: after epoch
        ``e``, ``average = average_decay * average + (1 - average_decay) * weights``. The
        development score, the best epoch and the final weights are those of the average;
        training goes on from the weights themselves. 0 turns it off (the model is the last
        epoch's weights). Default 0.5: the dev curve no longer jumps from epoch to epoch, so
        early stopping does not stop on one lucky or unlucky epoch (WNUT17 dev F1 per epoch
        moved by up to 7 points without it); WNUT17 32.10 -> 32.77 alone, UD EWT's first
        1,000 sentences unchanged (89.82 -> 89.84).
        A run of a few epochs on a small corpus is the case where it costs: the average still
        carries the first epochs' weights.
    max_epochs : int
        Training epochs at most.
    batch_size : int
        Sentences per batch (batches group sentences of similar length). Default 32 (with a
        learning rate of 3e-3 instead of 16 and 2e-3): about 1.25x the training tokens/s, and
        WNUT17 dev F1 33.83 against 32.77 with the weights averaged.
    epoch_size : int or None
        About how many sentences an epoch holds. A larger training set is read in shuffled
        passes cut into epochs of whole batches, each scored on the development set, averaged
        and early-stopped, and the epoch-counting parameters count these (the details under
        :class:`SequenceClassifier`'s ``epoch_size``; None: an epoch is a pass;
        :meth:`partial_fit` always makes one whole pass). Default 20000, measured on SST-2 by
        the classifier; UD EWT's and WNUT17's training sets (12,544 and 3,394 sentences) train
        in whole passes as before.
    clip_norm : float or None
        Gradients are scaled to this global L2 norm at most.
    early_stopping : bool
        Keep the epoch with the best development score and stop after ``patience`` epochs without
        improvement. The development set is ``X_dev``/``y_dev`` or, without them, a random
        ``validation_fraction`` of the training data.
    patience : int
        Epochs without improvement before stopping.
    validation_fraction : float
        Share of the training data held out when early stopping has no ``X_dev``.
    tag_scheme : {"auto", "IOB1", "IOB2", "BIOES", "none"}
        Scheme of ``y``; "auto" detects it. Entity schemes are trained internally as BIOES (IOB1
        as is) and predictions come back in the scheme of ``y``.
    labels : list of str, optional
        Labels to know from the start, so that a later ``partial_fit`` may use them.
    device : {"auto", "cpu", "cuda"}
        Where training and prediction run: "cuda" on the GPU (the ``[cuda]`` extra and a
        usable GPU; else an error saying why), "cpu" on the CPU kernels, "auto" the GPU when
        one is usable, else the CPU (see :func:`tagger.kernels.backend.resolve_device`; the
        ``TAGGER_DEVICE`` environment variable overrides it). With ``char_lm``, the CPU.
    n_jobs : int or None
        CPU threads (None: all).
    random_state : int, RandomState or None
        Seed; the same seed gives the same model bit for bit on the CPU.
    verbose : int
        1 prints a line per epoch to standard error.

    Attributes
    ----------
    classes_ : list of str
        Tags, in the order of ``predict_proba``'s columns.
    tag_scheme_ : str
        The scheme of the tags.
    vocabulary_ : Vocabulary
        Word vocabulary.
    char_vocabulary_ : Vocabulary or None
        Character vocabulary.
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``dev_score``, ``seconds``, ``tokens_per_s``,
        ``learning_rate``.
    best_epoch_ : int
        The epoch whose weights were kept.
    params_ : dict of ndarray
        Network weights.
    """

    def __init__(self, cell="lstm", hidden_size=200, num_layers=1, bidirectional=True, crf=True,
                 word_dim=100, char_encoder="lstm", char_dim=30, char_hidden_size=50,
                 shape_dim=16, lowercase=True, min_word_count=1, word_dropout=0.5,
                 embeddings=None, char_lm=None, tokenizer="regex", dropout=0.5, optimizer="adam",
                 learning_rate=3e-3, lr_decay=0.05, average_decay=0.5, max_epochs=30,
                 batch_size=32, epoch_size=20000, clip_norm=5.0, early_stopping=True, patience=5,
                 validation_fraction=0.1, tag_scheme="auto",
                 labels=None, device="auto", n_jobs=None, random_state=None, verbose=0):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.crf = crf
        self.word_dim = word_dim
        self.char_encoder = char_encoder
        self.char_dim = char_dim
        self.char_hidden_size = char_hidden_size
        self.shape_dim = shape_dim
        self.lowercase = lowercase
        self.min_word_count = min_word_count
        self.word_dropout = word_dropout
        self.embeddings = embeddings
        self.char_lm = char_lm
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
        self.tag_scheme = tag_scheme
        self.labels = labels
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------
    # validation and set-up
    # ------------------------------------------------------------------------------------------

    _kind = _KIND

    def _validate_task_params(self) -> None:
        if self.tag_scheme != "auto":
            schemes.normalize_scheme(self.tag_scheme)
        if self.char_lm is not None:
            pair = self.char_lm
            if isinstance(pair, (str, bytes, os.PathLike)) or not isinstance(pair, Sequence) \
                    or len(pair) != 2:
                raise ValueError("char_lm must be a pair (forward, backward) of character "
                                 "language model files or fitted CharLanguageModel objects")
            if self.device == "cuda":
                raise ValueError("contextual character embeddings (char_lm) run on the CPU "
                                 "kernels only: use device='cpu' or 'auto'")

    def _resolve_device(self) -> str:
        if self.char_lm is not None or self.__dict__.get("char_lm_config_"):
            return "cpu"  # the language models' features are computed on the CPU
        return super()._resolve_device()

    def _char_language_models(self):
        """The ``char_lm`` pair, loaded and checked: the config a model file keeps of them and
        their weights (as this tagger's ``char_lm.fwd.*`` and ``char_lm.bwd.*``)."""
        from .language_model import CharLanguageModel

        config, params = {}, {}
        for side, direction, item in zip(("fwd", "bwd"), ("forward", "backward"),
                                         self.char_lm, strict=True):
            if isinstance(item, (str, os.PathLike)):
                item = CharLanguageModel.load(item)
            if not isinstance(item, CharLanguageModel):
                raise TypeError(f"char_lm holds a {type(item).__name__}: give character "
                                f"language model files or fitted CharLanguageModel objects")
            check_is_fitted(item, "params_")
            if item.direction != direction:
                raise ValueError(f"the {direction} language model of char_lm (the "
                                 f"{'first' if side == 'fwd' else 'second'}) reads "
                                 f"{item.direction}: give (forward, backward)")
            config[side] = {"cell": item.cell, "hidden_size": int(item.hidden_size),
                            "num_layers": int(item.num_layers),
                            "embedding_dim": int(item.embedding_dim),
                            "vocabulary": item.vocabulary_.to_dict()}
            params.update({f"char_lm.{side}.{name}": value.copy()
                           for name, value in item.params_.items()})
        config["read"] = "edge+space"  # a file without "read" is read at the edges alone
        return config, params

    def _context(self):
        config = self.__dict__.get("char_lm_config_")
        if not config:
            return None
        from ..nn.context import CharLMFeatures
        from ..nn.language_model import CharLMNetwork
        from ..text.vocab import Vocabulary

        networks, chars = [], []
        for side in ("fwd", "bwd"):
            part = config[side]
            vocabulary = Vocabulary(part["vocabulary"]["items"], part["vocabulary"]["counts"])
            networks.append(CharLMNetwork(len(vocabulary), part["embedding_dim"], part["cell"],
                                          part["hidden_size"], part["num_layers"]))
            chars.append(vocabulary.items)
        return CharLMFeatures(*networks, *chars, read=config.get("read", "edge"))

    def _setup_labels(self, y: list[list[str]]) -> None:
        declared = list(self.labels) if self.labels is not None else []
        if self.tag_scheme == "auto":
            # Detect from the data only: a declared label list is not a tag sequence (an
            # "I-x" listed before "B-x" would look like IOB1).
            scheme = schemes.detect_scheme(y)
        else:
            scheme = schemes.normalize_scheme(self.tag_scheme)
        internal = {"IOB2": "BIOES", "BIOES": "BIOES"}.get(scheme, scheme)
        user = set(declared) | {t for tags in y for t in tags}
        tags = set()
        if internal == "BIOES":
            for tags_ in y:
                tags.update(self._to_internal(tags_, scheme, internal))
            for declared_tag in declared:  # a declared type may use any of its BIOES tags
                if declared_tag != "O" and "-" in declared_tag:
                    kind = declared_tag.split("-", 1)[1]
                    tags.update(f"{p}-{kind}" for p in "BIES")
            if "O" in user:
                tags.add("O")
        else:
            tags = set(user)
        self.tag_scheme_ = scheme
        self.internal_scheme_ = internal
        self.tags_ = sorted(tags)
        classes = set(user) | {self._to_user_tag(t) for t in self.tags_}
        self.classes_ = sorted(classes)

    def _to_internal(self, tags: Sequence[str], scheme: str, internal: str) -> list[str]:
        if scheme == "none":
            return list(tags)
        repaired = schemes.repair_tags(tags, scheme)
        return repaired if internal == scheme else schemes.convert_tags(repaired, scheme, internal)

    def _to_user_tag(self, tag: str) -> str:
        """The user-scheme tag a single internal tag stands for (position-local mapping)."""
        if self.internal_scheme_ == "BIOES" and self.tag_scheme_ == "IOB2" and tag != "O":
            prefix, kind = tag.split("-", 1)
            return ("B-" if prefix in "BS" else "I-") + kind
        return tag

    def _internal_ids(self, tags: Sequence[str]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.tags_)}
        internal = self._to_internal(tags, self.tag_scheme_, self.internal_scheme_)
        try:
            return np.array([index[t] for t in internal], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(
                f"tag {exc.args[0]!r} was not seen in the first training data; declare every "
                f"label up front with SequenceTagger(labels=[...])") from None

    def _network_for(self, featurizer) -> TaggerModel:
        allowed = schemes.transition_constraints(self.tags_, self.internal_scheme_)
        network = TaggingNetwork(featurizer.output_size, len(self.tags_), self.cell,
                                 self.hidden_size, self.num_layers, self.bidirectional, self.crf,
                                 self.dropout, *allowed)
        return TaggerModel(featurizer, network)

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def fit(self, X, y, X_dev=None, y_dev=None, callback=None):
        """Train on sequences ``X`` with tags ``y``.

        Parameters
        ----------
        X : list of list of str, or list of ndarray (length, n_features)
            Sentences, or numeric sequences.
        y : list of list of str
            One tag per token (step).
        X_dev, y_dev : lists, optional
            Development data for early stopping (else a ``validation_fraction`` split).
        callback : callable, optional
            ``callback(event, info)`` hears training progress: ``"epoch_start"``, ``"batch"``
            and ``"epoch_end"`` events (for progress bars and checkpoints).

        Returns
        -------
        self
        """
        self._validate_params()
        kind, X = self._check_new_X(X)
        y = check_tags(X, y)
        if not any(len(s) for s in X):
            raise ValueError("X has no tokens to learn from")
        if (X_dev is None) != (y_dev is None):
            raise ValueError("give both X_dev and y_dev, or neither")
        rng = np.random.default_rng(self._seed())
        if X_dev is not None:
            dev_kind, X_dev = self._check_new_X(X_dev, "X_dev")
            if dev_kind != kind:
                raise TypeError(f"X holds {kind} sequences but X_dev holds {dev_kind} sequences")
            y_dev = check_tags(X_dev, y_dev, "y_dev")
        elif self.early_stopping and self.validation_fraction > 0 and len(X) > 1:
            X, y, X_dev, y_dev, _ = self._split_dev(X, y, self.validation_fraction, rng)
        self._forget_fit()
        self.__dict__.pop("char_lm_config_", None)
        lm_params = {}
        if self.char_lm is not None:
            if kind != TEXT:
                raise ValueError("char_lm (contextual character embeddings) needs text input")
            self.char_lm_config_, lm_params = self._char_language_models()
        self._setup_labels(y + (y_dev or []))
        vectors = self._setup_inputs(kind, X)
        if kind == "numeric" and X_dev is not None:
            self._encoder.check_features(X_dev, "X_dev")
        self._init_network(rng, vectors)
        for name, value in lm_params.items():
            self.params_[name][...] = value
        targets = [self._internal_ids(tags) for tags in y]
        self._train_new(X, targets, X_dev, y_dev, rng, callback)
        return self

    def continue_fit(self, X, y, X_dev=None, y_dev=None, callback=None):
        """Go on training a fitted tagger for the epochs left to ``max_epochs``, with early
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
        y = check_tags(X, y)
        if (X_dev is None) != (y_dev is None):
            raise ValueError("give both X_dev and y_dev, or neither")
        if X_dev is not None:
            X_dev = self._check_X(X_dev, "X_dev")
            y_dev = check_tags(X_dev, y_dev, "y_dev")
        elif self.early_stopping and self.validation_fraction > 0 and len(X) > 1:
            split_rng = np.random.default_rng(self._seed())
            X, y, X_dev, y_dev, _ = self._split_dev(X, y, self.validation_fraction, split_rng)
        self._continue(X, [self._internal_ids(tags) for tags in y], X_dev, y_dev, callback)
        return self

    def partial_fit(self, X, y):
        """One more pass over all of ``X``, ``y`` (whatever ``epoch_size``); on an unfitted
        tagger, a first pass of training.

        The vocabularies stay as they are (new words are unknown words). Tags outside
        ``classes_`` raise a clear error unless they were declared with ``labels``.

        Returns
        -------
        self
        """
        if not hasattr(self, "params_"):
            return self._first_partial_fit(self.fit, X, y)
        self._validate_params()
        X = self._check_X(X)
        y = check_tags(X, y)
        unknown = sorted({t for tags in y for t in tags} - set(self.classes_))
        if unknown:
            raise ValueError(f"partial_fit got labels never seen before: {', '.join(unknown)}; "
                             f"declare every label up front with SequenceTagger(labels=[...])")
        rng = np.random.default_rng(self._seed() + len(self.history_))
        self._train_more(X, [self._internal_ids(tags) for tags in y], rng, whole_passes=True)
        return self

    def _batch_targets(self, batch, idx, targets) -> tuple:
        tags = np.zeros(batch.lengths.shape + (int(batch.lengths.max()),), np.int64)
        for row, i in enumerate(idx):
            tags[row, : len(targets[i])] = targets[i]
        return (tags,)

    def _batch_loss(self, batch, idx, targets, rng):
        (tags,) = self._batch_targets(batch, idx, targets)
        return self._model.loss_and_grads(self.params_, batch, tags, rng)

    def _dev_score(self, X_dev, y_dev) -> tuple[float, tuple, tuple, dict]:
        score = self._score_tags(y_dev, self._predict_tags(X_dev))
        return score, (score,), (), {}

    def _score_tags(self, y_true, y_pred) -> float:
        if self.tag_scheme_ == "none":
            return metrics.token_accuracy(y_true, y_pred)
        return metrics.entity_f1(y_true, y_pred, scheme=self.tag_scheme_)

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------

    def _run(self, X: list, marginals: bool):
        """Internal tag ids (and marginals) per sentence, in input order."""
        model, encoder = self._model, self._encoder
        params = self._prediction_params()
        paths: list = [np.zeros(0, np.int64)] * len(X)
        probs: list = [np.zeros((0, len(self.tags_)), self.params_["out.b"].dtype)] * len(X)

        def run(idx):
            batch = encoder.batch([X[i] for i in idx])
            if marginals:
                best, marg = model.predict_and_marginals(params, batch)
            else:
                best = model.predict(params, batch)
            for row, i in enumerate(idx):
                n = len(X[i])
                paths[i] = best[row, :n]
                if marginals:
                    probs[i] = marg[row, :n]

        with thread_limit(self.n_jobs, kernel_blas=False):
            run_batches(run, list(self._batches(X, model.device)), parallel=model.device == "cpu")
        return paths, probs

    def _to_user(self, path: np.ndarray) -> list[str]:
        if self.internal_scheme_ == self.tag_scheme_:
            return [self.tags_[k] for k in path]
        local = self._local_user_tags()
        if local is not None and len(path):
            start, end, trans = local[1]
            if start[path[0]] and end[path[-1]] and trans[path[:-1], path[1:]].all():
                # Well-formed BIOES reads tag by tag into IOB2 (S-/B- to B-, I-/E- to I-):
                # the same tags as going through the entities, without reading them.
                names = local[0]
                return [names[k] for k in path]
        internal = [self.tags_[k] for k in path]
        return schemes.convert_tags(internal, self.internal_scheme_, self.tag_scheme_)

    def _local_user_tags(self):
        """(user tag of each internal tag, BIOES constraints) when internal BIOES maps tag by
        tag to the user's IOB2, else None. Made once per fitted model."""
        if self.internal_scheme_ != "BIOES" or self.tag_scheme_ != "IOB2":
            return None
        cached = self.__dict__.get("_local_tags_cache")  # dropped by every fit
        if cached is None:
            cached = self.__dict__["_local_tags_cache"] = (
                [self._to_user_tag(t) for t in self.tags_],
                schemes.transition_constraints(self.tags_, "BIOES"))
        return cached

    def _predict_tags(self, X: list) -> list[list[str]]:
        paths, _ = self._run(X, marginals=False)
        return [self._to_user(p) for p in paths]

    def predict(self, X) -> list[list[str]]:
        """Tags for every token of every sentence (an empty sentence gets an empty list)."""
        check_is_fitted(self, "params_")
        metrics._refuse_foreign_scorer()  # scoring="f1_micro": one clear error, not NaN
        return self._predict_tags(self._check_X(X))

    def _class_matrix(self, dtype) -> np.ndarray:
        """(internal tags, classes) 0/1 matrix: internal marginals times it give the classes'."""
        column = {c: i for i, c in enumerate(self.classes_)}
        matrix = np.zeros((len(self.tags_), len(self.classes_)), dtype)
        for k, tag in enumerate(self.tags_):
            matrix[k, column[self._to_user_tag(tag)]] = 1
        return matrix

    def predict_proba(self, X) -> list[np.ndarray]:
        """Per-token tag probabilities: one (length, n_classes) array per sentence, columns in
        ``classes_`` order (CRF marginals by forward-backward, or the softmax)."""
        check_is_fitted(self, "params_")
        metrics._refuse_foreign_scorer()
        _, probs = self._run(self._check_X(X), marginals=True)
        matrix = self._class_matrix(self.params_["out.b"].dtype)
        return [p @ matrix for p in probs]

    def predict_spans(self, X) -> list[list[EntitySpan]]:
        """Entities per sentence.

        Parameters
        ----------
        X : list of token lists, or list of str
            Sentences; raw strings are split by the ``tokenizer``.

        Returns
        -------
        list of list of EntitySpan
            Per sentence, ``(start, end, label, score)`` tuples with ``end`` exclusive, the
            score being the mean probability of the predicted tags over the entity's tokens.
            For raw strings each also has ``start_char`` and ``end_char``: the entity is
            ``text[start_char:end_char]`` of its string (None for token lists).
        """
        return self.predict_with_spans(X)[1]

    def predict_with_spans(self, X) -> tuple[list[list[str]], list[list[EntitySpan]]]:
        """:meth:`predict` and :meth:`predict_spans` in one pass over the network."""
        check_is_fitted(self, "params_")
        if self.tag_scheme_ == "none":
            raise ValueError("predict_spans needs entity tags (IOB1, IOB2 or BIOES); these tags "
                             "have no scheme")
        X, offsets = self._split_texts(X)
        X = self._check_X(X)
        paths, probs = self._run(X, marginals=True)
        column = {c: i for i, c in enumerate(self.classes_)}
        matrix = self._class_matrix(self.params_["out.b"].dtype)
        all_tags, out = [], []
        for i, (path, internal) in enumerate(zip(paths, probs, strict=True)):
            tags, found = self._user_tags_and_spans(path)
            spans = []
            if found:
                # The probability of each token's predicted tag, averaged over each entity.
                chosen = (internal @ matrix)[np.arange(len(tags)),
                                             [column[t] for t in tags]].tolist()
                where = offsets[i] if offsets is not None else None
                for start, end, label in found:
                    chars = (where[start][0], where[end - 1][1]) if where is not None else ()
                    spans.append(EntitySpan(start, end, label,
                                            sum(chosen[start:end]) / (end - start), *chars))
            all_tags.append(tags)
            out.append(spans)
        return all_tags, out

    def _split_texts(self, X):
        """Raw strings of X split into tokens, with each token's character offsets.

        Returns ``(X, None)`` unless X holds only strings (and the model reads text): then the
        token lists and, per string, the offsets (None for a tokenizer function that changes
        its tokens). The tokens are those ``_check_X`` would make.
        """
        if self.input_type_ != TEXT or isinstance(X, (str, bytes)):
            return X, None
        items = X
        if not isinstance(X, (list, tuple)) and hasattr(X, "__array__"):  # pandas, NumPy
            array = np.asarray(X)
            if array.ndim != 1 or array.dtype.kind not in "UO":
                return X, None
            items = array.tolist()
        if not isinstance(items, (list, tuple)) or not items or not all(
                isinstance(item, str) for item in items):
            return X, None
        split = make_offset_tokenizer(getattr(self, "tokenizer", "regex"))
        pairs = [split(item) for item in items]
        return [tokens for tokens, _ in pairs], [offsets for _, offsets in pairs]

    def _user_tags_and_spans(self, path: np.ndarray) -> tuple[list[str], list]:
        """:meth:`_to_user` of a path and the entities of the result, read once."""
        internal = [self.tags_[k] for k in path]
        if self.internal_scheme_ == self.tag_scheme_:
            return internal, schemes.spans_from_tags(internal, self.tag_scheme_)
        found = schemes.spans_from_tags(internal, self.internal_scheme_)
        # Written in the user's scheme, these entities read back the same (tags_from_spans).
        return schemes.tags_from_spans(found, len(internal), self.tag_scheme_), found

    def score(self, X, y) -> float:
        """Entity micro F1 for entity tags, token accuracy otherwise."""
        check_is_fitted(self, "params_")
        X = self._check_X(X)
        y = check_tags(X, y)
        return self._score_tags(y, self._predict_tags(X))

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _task_config(self) -> dict:
        return {"classes": self.classes_, "tags": self.tags_, "tag_scheme": self.tag_scheme_,
                "internal_scheme": self.internal_scheme_,
                "char_lm": self.__dict__.get("char_lm_config_")}

    def _saveable_params(self) -> dict:
        params = super()._saveable_params()
        if params["labels"] is not None:
            params["labels"] = list(params["labels"])
        # The language models are in the file (config "char_lm" and the char_lm.* weights);
        # the paths or objects they came from are not.
        params["char_lm"] = None
        return params

    def _restore_task(self, config: dict) -> None:
        from ._modelfile import LIMITS, _fail, _strings

        self.classes_ = _strings(config.get("classes"), "classes", LIMITS["tags"])
        self.tags_ = _strings(config.get("tags"), "tags", LIMITS["tags"])
        scheme, internal = config.get("tag_scheme"), config.get("internal_scheme")
        if scheme not in schemes.SCHEMES:
            _fail(f"tag_scheme must be one of {', '.join(schemes.SCHEMES)}")
        if internal != {"IOB2": "BIOES"}.get(scheme, scheme):
            _fail(f"internal_scheme {str(internal)[:20]!r} does not go with tag_scheme "
                  f"{scheme!r}")
        self.tag_scheme_, self.internal_scheme_ = scheme, internal
        # That every tag belongs to the scheme is checked when the CRF's constraints are made.
        user = set(self.classes_)
        if not all(self._to_user_tag(t) in user for t in self.tags_):
            _fail("tags and classes do not match")
        self.__dict__.pop("char_lm_config_", None)
        lm = config.get("char_lm")
        if lm is not None:
            self.char_lm_config_ = _check_char_lm_config(lm)


def _check_char_lm_config(lm) -> dict:
    """A model file's description of its contextual language models, checked (their weights
    are checked against it with every other array)."""
    from ..nn.context import READS
    from ..nn.language_model import LM_CELLS
    from ._modelfile import LIMITS, _fail, _int, _vocabulary

    if not isinstance(lm, dict) or not {"fwd", "bwd"} <= set(lm) <= {"fwd", "bwd", "read"}:
        _fail("char_lm must hold a forward (fwd) and a backward (bwd) language model (and "
              "how they are read)")
    checked = {}
    if "read" in lm:  # files from before it was recorded are read at the edges
        if not isinstance(lm["read"], str) or lm["read"] not in READS:
            _fail(f"char_lm read must be one of {', '.join(READS)}")
        checked["read"] = lm["read"]
    for side in ("fwd", "bwd"):
        part = lm[side]
        keys = {"cell", "hidden_size", "num_layers", "embedding_dim", "vocabulary"}
        if not isinstance(part, dict) or set(part) != keys:
            _fail(f"char_lm {side} must hold {', '.join(sorted(keys))}")
        if part["cell"] not in LM_CELLS:
            _fail(f"char_lm {side} cell must be one of {', '.join(LM_CELLS)}")
        vocabulary = _vocabulary(part["vocabulary"], f"char_lm {side} vocabulary")
        if any(len(item) != 1 for item in vocabulary.items[2:]):
            _fail(f"char_lm {side} vocabulary must hold single characters")
        checked[side] = {
            "cell": part["cell"],
            "hidden_size": _int(part["hidden_size"], "char_lm hidden_size", 1, LIMITS["width"]),
            "num_layers": _int(part["num_layers"], "char_lm num_layers", 1, LIMITS["layers"]),
            "embedding_dim": _int(part["embedding_dim"], "char_lm embedding_dim", 1,
                                  LIMITS["width"]),
            "vocabulary": vocabulary.to_dict()}
    return checked


def save(model, path) -> None:
    """Write a fitted estimator to a safe model file (see :meth:`SequenceTagger.save`)."""
    model.save(path)


def load(path, trust_tokenizer: bool = False):
    """Read any estimator written by :func:`save`, whatever its kind (see
    :meth:`SequenceTagger.load`)."""
    from .classifier import SequenceClassifier
    from .language_model import CharLanguageModel
    from .lemmatizer import Lemmatizer
    from .transducer import SequenceTransducer

    kind = persist.read_config(path).get("kind")
    for cls in (SequenceTagger, SequenceClassifier, CharLanguageModel, SequenceTransducer,
                Lemmatizer):
        if kind == cls._kind:
            return cls.load(path, trust_tokenizer=trust_tokenizer)
    raise ModelFileError(f"{path}: unknown model kind {str(kind)[:40]!r}")
