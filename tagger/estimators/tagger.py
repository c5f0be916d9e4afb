"""SequenceTagger: a BiLSTM-CRF sequence tagger with the scikit-learn estimator API."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import metrics, persist
from ..errors import ModelFileError
from ..nn.features import CHAR_ENCODERS, TokenFeaturizer
from ..nn.model import TaggerModel
from ..nn.network import TaggingNetwork
from ..nn.optim import OPTIMIZERS, decayed_learning_rate, make_optimizer
from ..nn.recurrent import CELLS
from ..nn.training import apply_gradients, length_batches, thread_limit
from ..text import schemes
from ..text.embeddings import load_word_vectors
from ..text.vocab import SHAPES, Vocabulary
from ._encoding import SentenceEncoder

_KIND = "SequenceTagger"
_DEVICES = ("auto", "cpu", "cuda")


def check_tokens(X, name: str = "X") -> list[list[str]]:
    """X as a list of token lists; a clear error for anything else (naming the sentence)."""
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise TypeError(f"{name} must be a list of token lists, got {type(X).__name__}")
    out = []
    for i, sentence in enumerate(X):
        if isinstance(sentence, (str, bytes)) or not hasattr(sentence, "__iter__"):
            raise TypeError(f"{name}[{i}] must be a list of tokens, got {type(sentence).__name__}")
        tokens = list(sentence)
        for j, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"{name}[{i}][{j}] must be a string, got {type(token).__name__}")
            if not token:
                raise ValueError(f"{name}[{i}][{j}] is an empty token")
        out.append(tokens)
    return out


def check_tags(X: list[list[str]], y, name: str = "y") -> list[list[str]]:
    """y as a list of tag lists matching X sentence by sentence."""
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
            raise ValueError(f"sentence {i} has {len(tokens)} tokens but {len(tags)} tags")
        for j, tag in enumerate(tags):
            if not isinstance(tag, str) or not tag:
                raise TypeError(f"{name}[{i}][{j}] must be a non-empty string, got {tag!r}")
        out.append(tags)
    return out


class SequenceTagger(BaseEstimator):
    """A recurrent sequence tagger (by default a BiLSTM-CRF with character features).

    X is a list of sentences, each a list of token strings; y a list of tag lists. Entity tags in
    IOB1, IOB2 or BIOES are detected and scored as entities; any other tags (part of speech, say)
    are scored by token accuracy.

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
        Character features per word: what makes unseen words work.
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
        with probability alpha / (alpha + c); 0 disables it.
    embeddings : str or None
        Path of a word2vec/GloVe text file whose vectors initialise the word embeddings (its
        words join the vocabulary); its dimension replaces ``word_dim``.
    dropout : float
        Dropout on the token vectors, between recurrent layers and before the output layer.
    optimizer : {"adam", "sgd"}
        Optimizer.
    learning_rate : float
        Initial learning rate.
    lr_decay : float
        Learning rate at epoch e is ``learning_rate / (1 + lr_decay * e)``.
    max_epochs : int
        Training epochs at most.
    batch_size : int
        Sentences per batch (batches group sentences of similar length).
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
        Where the network runs (only the CPU in this version).
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
                 word_dim=100, char_encoder="cnn", char_dim=30, char_hidden_size=50,
                 shape_dim=16, lowercase=True, min_word_count=1, word_dropout=0.25,
                 embeddings=None, dropout=0.5, optimizer="adam", learning_rate=2e-3,
                 lr_decay=0.05, max_epochs=30, batch_size=16, clip_norm=5.0,
                 early_stopping=True, patience=5, validation_fraction=0.1, tag_scheme="auto",
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
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
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

    def _validate_params(self) -> None:
        def positive_int(name):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("hidden_size", "num_layers", "word_dim", "char_dim", "char_hidden_size",
                     "min_word_count", "max_epochs", "batch_size", "patience"):
            positive_int(name)
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"char_encoder must be 'cnn', 'lstm' or None, got "
                             f"{self.char_encoder!r}")
        if not isinstance(self.shape_dim, (int, np.integer)) or self.shape_dim < 0:
            raise ValueError(f"shape_dim must be a non-negative integer, got {self.shape_dim!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.word_dropout >= 0:
            raise ValueError(f"word_dropout must be non-negative, got {self.word_dropout!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if not self.learning_rate > 0 or not self.lr_decay >= 0:
            raise ValueError("learning_rate must be positive and lr_decay non-negative")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got "
                             f"{self.validation_fraction!r}")
        if self.tag_scheme != "auto":
            schemes.normalize_scheme(self.tag_scheme)
        self._resolve_device()

    def _resolve_device(self) -> str:
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {', '.join(_DEVICES)}, got {self.device!r}")
        if self.device == "cuda":
            raise RuntimeError("device='cuda' was requested, but this version of tagger runs on "
                               "the CPU only; use device='cpu' or 'auto'")
        return "cpu"

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

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

    def _make_model(self) -> TaggerModel:
        word_dim = self.params_["emb.word"].shape[1] if hasattr(self, "params_") else None
        return self._model_for(word_dim or self.word_dim)

    def _model_for(self, word_dim: int) -> TaggerModel:
        chars = self.char_vocabulary_
        featurizer = TokenFeaturizer(
            len(self.vocabulary_), word_dim, len(SHAPES), self.shape_dim,
            len(chars) if chars is not None else 0, self.char_encoder, self.char_dim,
            self.char_hidden_size, self.dropout)
        allowed = schemes.transition_constraints(self.tags_, self.internal_scheme_)
        network = TaggingNetwork(featurizer.output_size, len(self.tags_), self.cell,
                                 self.hidden_size, self.num_layers, self.bidirectional, self.crf,
                                 self.dropout, *allowed)
        return TaggerModel(featurizer, network)

    @property
    def _model(self) -> TaggerModel:
        model = self.__dict__.get("_model_cache")
        if model is None:
            model = self.__dict__["_model_cache"] = self._make_model()
        return model

    @property
    def _encoder(self) -> SentenceEncoder:
        encoder = self.__dict__.get("_encoder_cache")
        if encoder is None:
            encoder = SentenceEncoder(self.vocabulary_, self.char_vocabulary_, self.lowercase)
            self.__dict__["_encoder_cache"] = encoder
        return encoder

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_model_cache", None)
        state.pop("_encoder_cache", None)
        return state

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def fit(self, X, y, X_dev=None, y_dev=None):
        """Train on sentences ``X`` with tags ``y``.

        Parameters
        ----------
        X : list of list of str
            Sentences.
        y : list of list of str
            One tag per token.
        X_dev, y_dev : lists, optional
            Development data for early stopping (else a ``validation_fraction`` split).

        Returns
        -------
        self
        """
        self._validate_params()
        X = check_tokens(X)
        y = check_tags(X, y)
        if not any(X):
            raise ValueError("X has no tokens to learn from")
        if (X_dev is None) != (y_dev is None):
            raise ValueError("give both X_dev and y_dev, or neither")
        seed = self._seed()
        rng = np.random.default_rng(seed)
        if X_dev is not None:
            X_dev = check_tokens(X_dev, "X_dev")
            y_dev = check_tags(X_dev, y_dev, "y_dev")
        elif self.early_stopping and self.validation_fraction > 0 and len(X) > 1:
            order = rng.permutation(len(X))
            n_dev = max(1, int(round(self.validation_fraction * len(X))))
            dev_idx, train_idx = np.sort(order[:n_dev]), np.sort(order[n_dev:])
            X_dev, y_dev = [X[i] for i in dev_idx], [y[i] for i in dev_idx]
            X, y = [X[i] for i in train_idx], [y[i] for i in train_idx]
        for attr in ("_model_cache", "_encoder_cache", "params_"):
            self.__dict__.pop(attr, None)
        self._setup_labels(y + (y_dev or []))
        self.vocabulary_, self.char_vocabulary_, vectors = self._build_vocabularies(X)
        word_dim = vectors[1].shape[1] if vectors is not None else self.word_dim
        model = self._model_for(word_dim)
        self.__dict__["_model_cache"] = model
        params = model.init_params(rng)
        if vectors is not None:
            self._load_vectors(params["emb.word"], *vectors)
        self.params_ = params
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        self.history_ = []
        self.best_epoch_ = 0
        self._train(X, y, X_dev, y_dev, self.max_epochs, rng, early_stop=self.early_stopping)
        self.optimizer_state_ = self._optimizer.state_dict()
        del self._optimizer
        return self

    def _load_vectors(self, table: np.ndarray, words: list[str], vectors: np.ndarray) -> None:
        """Copy pretrained vectors into the rows of the words they name (first match wins)."""
        done = set()
        for word, vector in zip(words, vectors, strict=True):
            key = word.lower() if self.lowercase else word
            row = self.vocabulary_.index(key)
            if row > 1 and row not in done:
                table[row] = vector
                done.add(row)

    def partial_fit(self, X, y):
        """One more epoch over ``X``, ``y``; on an unfitted tagger, a first epoch of training.

        The vocabularies stay as they are (new words are unknown words). Tags outside
        ``classes_`` raise a clear error unless they were declared with ``labels``.

        Returns
        -------
        self
        """
        if not hasattr(self, "params_"):
            saved = self.max_epochs, self.early_stopping
            self.max_epochs, self.early_stopping = 1, False
            try:
                return self.fit(X, y)
            finally:
                self.max_epochs, self.early_stopping = saved
        self._validate_params()
        X = check_tokens(X)
        y = check_tags(X, y)
        unknown = sorted({t for tags in y for t in tags} - set(self.classes_))
        if unknown:
            raise ValueError(f"partial_fit got labels never seen before: {', '.join(unknown)}; "
                             f"declare every label up front with SequenceTagger(labels=[...])")
        rng = np.random.default_rng(self._seed() + len(self.history_))
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        self._optimizer.load_state_dict(self.optimizer_state_)
        self._train(X, y, None, None, 1, rng, early_stop=False)
        self.optimizer_state_ = self._optimizer.state_dict()
        del self._optimizer
        return self

    def _score_tags(self, y_true, y_pred) -> float:
        if self.tag_scheme_ == "none":
            return metrics.token_accuracy(y_true, y_pred)
        return metrics.entity_f1(y_true, y_pred, scheme=self.tag_scheme_)

    def _train(self, X, y, X_dev, y_dev, epochs, rng, early_stop):
        model, params, encoder = self._model, self.params_, self._encoder
        encoded = [encoder.sentence_ids(s) for s in X]
        tag_ids = [self._internal_ids(tags) for tags in y]
        lengths = [len(s) for s in X]
        first_epoch = len(self.history_)
        best_score, best_params, waited = -math.inf, None, 0
        with thread_limit(self.n_jobs):
            for epoch in range(first_epoch + 1, first_epoch + epochs + 1):
                lr = decayed_learning_rate(self.learning_rate, self.lr_decay, epoch - 1)
                self._optimizer.learning_rate = lr
                start, total_loss, n_tokens = time.perf_counter(), 0.0, 0
                for idx in length_batches(lengths, self.batch_size, rng):
                    if lengths[idx[0]] == 0:
                        continue  # a batch of empty sentences has nothing to learn
                    batch = encoder.batch([X[i] for i in idx], [encoded[i] for i in idx], rng,
                                          self.word_dropout)
                    tags = np.zeros(batch.word_ids.shape, np.int64)
                    for row, i in enumerate(idx):
                        tags[row, : lengths[i]] = tag_ids[i]
                    loss, grads = model.loss_and_grads(params, batch, tags, rng)
                    try:
                        apply_gradients(params, grads, loss, self._optimizer, self.clip_norm)
                    except FloatingPointError as exc:
                        raise FloatingPointError(
                            f"training diverged in epoch {epoch}: {exc}; the weights are those "
                            f"before this step (try a lower learning_rate or a clip_norm)"
                        ) from None
                    total_loss += loss * len(idx)
                    n_tokens += batch.n_tokens
                seconds = time.perf_counter() - start
                dev_score = None
                if X_dev is not None and len(X_dev):
                    dev_score = self._score_tags(y_dev, self._predict_tags(X_dev))
                self.history_.append({
                    "epoch": epoch, "loss": total_loss / max(len(X), 1), "dev_score": dev_score,
                    "seconds": seconds, "tokens_per_s": n_tokens / max(seconds, 1e-9),
                    "learning_rate": lr})
                if self.verbose:
                    dev = "" if dev_score is None else f"  dev {dev_score:.4f}"
                    print(f"epoch {epoch:3d}  loss {self.history_[-1]['loss']:.4f}{dev}  "
                          f"{seconds:.1f}s  {n_tokens / max(seconds, 1e-9):,.0f} tokens/s",
                          file=sys.stderr)
                if dev_score is None or not early_stop:
                    self.best_epoch_ = epoch
                    continue
                if dev_score > best_score:
                    best_score, waited, self.best_epoch_ = dev_score, 0, epoch
                    best_params = {k: v.copy() for k, v in params.items()}
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        if best_params is not None:
            for k, v in best_params.items():
                params[k][...] = v

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------

    def _batches(self, X: list[list[str]], size: int = 256):
        """Index batches of non-empty sentences, longest first (little padding)."""
        order = [i for i in np.argsort([-len(s) for s in X], kind="stable") if len(X[i])]
        for k in range(0, len(order), size):
            yield order[k: k + size]

    def _run(self, X: list[list[str]], marginals: bool):
        """Internal tag ids (and marginals) per sentence, in input order."""
        model, params, encoder = self._model, self.params_, self._encoder
        paths: list = [np.zeros(0, np.int64)] * len(X)
        probs: list = [np.zeros((0, len(self.tags_)), params["out.b"].dtype)] * len(X)
        with thread_limit(self.n_jobs):
            for idx in self._batches(X):
                batch = encoder.batch([X[i] for i in idx])
                best = model.predict(params, batch)
                marg = model.marginals(params, batch) if marginals else None
                for row, i in enumerate(idx):
                    n = len(X[i])
                    paths[i] = best[row, :n]
                    if marginals:
                        probs[i] = marg[row, :n]
        return paths, probs

    def _to_user(self, path: np.ndarray) -> list[str]:
        internal = [self.tags_[k] for k in path]
        if self.internal_scheme_ == self.tag_scheme_:
            return internal
        return schemes.convert_tags(internal, self.internal_scheme_, self.tag_scheme_)

    def _predict_tags(self, X: list[list[str]]) -> list[list[str]]:
        paths, _ = self._run(X, marginals=False)
        return [self._to_user(p) for p in paths]

    def predict(self, X) -> list[list[str]]:
        """Tags for every token of every sentence (an empty sentence gets an empty list)."""
        check_is_fitted(self, "params_")
        return self._predict_tags(check_tokens(X))

    def _user_marginals(self, internal: np.ndarray) -> np.ndarray:
        column = {c: i for i, c in enumerate(self.classes_)}
        out = np.zeros((internal.shape[0], len(self.classes_)), internal.dtype)
        for k, tag in enumerate(self.tags_):
            out[:, column[self._to_user_tag(tag)]] += internal[:, k]
        return out

    def predict_proba(self, X) -> list[np.ndarray]:
        """Per-token tag probabilities: one (length, n_classes) array per sentence, columns in
        ``classes_`` order (CRF marginals by forward-backward, or the softmax)."""
        check_is_fitted(self, "params_")
        _, probs = self._run(check_tokens(X), marginals=True)
        return [self._user_marginals(p) for p in probs]

    def predict_spans(self, X) -> list[list[tuple[int, int, str, float]]]:
        """Entities per sentence as ``(start, end, label, score)`` with ``end`` exclusive; the
        score is the mean probability of the predicted tags over the entity's tokens."""
        check_is_fitted(self, "params_")
        if self.tag_scheme_ == "none":
            raise ValueError("predict_spans needs entity tags (IOB1, IOB2 or BIOES); these tags "
                             "have no scheme")
        X = check_tokens(X)
        paths, probs = self._run(X, marginals=True)
        column = {c: i for i, c in enumerate(self.classes_)}
        out = []
        for path, internal in zip(paths, probs, strict=True):
            tags = self._to_user(path)
            p = self._user_marginals(internal)
            spans = []
            for span in schemes.spans_from_tags(tags, self.tag_scheme_):
                score = float(np.mean([p[t, column[tags[t]]] for t in range(span.start, span.end)]))
                spans.append((span.start, span.end, span.label, score))
            out.append(spans)
        return out

    def score(self, X, y) -> float:
        """Entity micro F1 for entity tags, token accuracy otherwise."""
        check_is_fitted(self, "params_")
        X = check_tokens(X)
        y = check_tags(X, y)
        return self._score_tags(y, self._predict_tags(X))

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the fitted tagger to one safe model file (no pickle; atomic)."""
        check_is_fitted(self, "params_")
        params = self.get_params()
        if not isinstance(params["random_state"], (int, np.integer, type(None))):
            params["random_state"] = None  # a generator object cannot go into a JSON file
        if params["labels"] is not None:
            params["labels"] = list(params["labels"])
        config = {
            "params": params,
            "classes": self.classes_,
            "tags": self.tags_,
            "tag_scheme": self.tag_scheme_,
            "internal_scheme": self.internal_scheme_,
            "vocabulary": self.vocabulary_.to_dict(),
            "char_vocabulary": (self.char_vocabulary_.to_dict()
                                if self.char_vocabulary_ is not None else None),
            "word_dim": int(self.params_["emb.word"].shape[1]),
            "history": self.history_,
            "best_epoch": self.best_epoch_,
        }
        arrays = dict(self.params_)
        arrays.update({f"optimizer.{k}": v for k, v in self.optimizer_state_.items()})
        persist.save_model(path, _KIND, config, arrays)

    @classmethod
    def load(cls, path) -> SequenceTagger:
        """Read a tagger written by :meth:`save`; never executes code from the file."""
        config = persist.read_config(path, kind=_KIND)
        try:
            tagger = cls(**config["params"])
            tagger.classes_ = list(config["classes"])
            tagger.tags_ = list(config["tags"])
            tagger.tag_scheme_ = config["tag_scheme"]
            tagger.internal_scheme_ = config["internal_scheme"]
            tagger.vocabulary_ = Vocabulary.from_dict(config["vocabulary"])
            chars = config["char_vocabulary"]
            tagger.char_vocabulary_ = Vocabulary.from_dict(chars) if chars is not None else None
            tagger.history_ = list(config["history"])
            tagger.best_epoch_ = int(config["best_epoch"])
            model = tagger._model_for(int(config["word_dim"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: inconsistent model configuration ({exc})") from None
        template = model.init_params(np.random.default_rng(0))
        expected = {k: (v.shape, str(v.dtype)) for k, v in template.items()}
        _, arrays = persist.load_model(path, kind=_KIND)
        optimizer_state = {k[len("optimizer."):]: v for k, v in arrays.items()
                           if k.startswith("optimizer.")}
        weights = {k: v for k, v in arrays.items() if not k.startswith("optimizer.")}
        problems = [f"missing array {k!r}" for k in expected if k not in weights]
        problems += [f"unexpected array {k!r}" for k in weights if k not in expected]
        problems += [f"array {k!r} has shape {weights[k].shape} and dtype {weights[k].dtype}, "
                     f"expected {shape} and {dtype}" for k, (shape, dtype) in expected.items()
                     if k in weights
                     and (weights[k].shape != shape or str(weights[k].dtype) != dtype)]
        if problems:
            raise ModelFileError(f"{path}: " + "; ".join(problems))
        tagger.params_ = {k: np.ascontiguousarray(v) for k, v in weights.items()}
        tagger.optimizer_state_ = optimizer_state
        tagger.__dict__["_model_cache"] = model
        return tagger


def save(model, path) -> None:
    """Write a fitted estimator to a safe model file (see :meth:`SequenceTagger.save`)."""
    model.save(path)


def load(path):
    """Read any estimator written by :func:`save`, whatever its kind."""
    kind = persist.read_config(path).get("kind")
    if kind == _KIND:
        return SequenceTagger.load(path)
    raise ModelFileError(f"{path}: unknown model kind {kind!r}")
