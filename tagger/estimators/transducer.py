"""SequenceTransducer: an encoder–decoder with attention (N→M) with the scikit-learn API."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..nn.optim import make_optimizer
from ..nn.training import apply_gradients, thread_limit
from ..nn.transducer import TransducerNetwork
from ..text.vocab import PAD, UNK, Vocabulary
from ._base import RecurrentEstimator
from ._inputs import CHARS, LINE_OR_TAB, SYMBOLS
from ._protocol import check_is_fitted

_KIND = "SequenceTransducer"

# The target vocabulary's two reserved ids (its padding and unknown entries) are the decoder's
# start and end symbols: no target symbol is ever unknown (partial_fit refuses new ones).
BOS, EOS = 0, 1


class SequenceTransducer(RecurrentEstimator):
    """An encoder–decoder with attention: a sequence in, a sequence of another length out.

    X and y are lists of strings (read character by character: lemmas, pronunciations written
    as text, transliterations) or of token sequences (lists of strings: phonemes, words). A
    bidirectional LSTM reads each source; an LSTM decoder writes the target one symbol at a
    time, attending to the source at every step (Luong et al. 2015, dot-product scores of a
    learned query, with input feeding). Per-example categorical features (a word's part of
    speech, say) can be given to ``fit`` and ``predict``: their embeddings join every source
    step's input.

    Parameters
    ----------
    cell : {"lstm"}
        Recurrent cell of the encoder and the decoder.
    hidden_size : int
        State width of each encoder direction and of the decoder.
    num_layers : int
        Encoder layers.
    embedding_dim : int
        Width of the source and target symbol embeddings.
    feature_dim : int
        Width of each feature's embedding.
    dropout : float
        Dropout on the encoder's input and between its layers, and on the decoder's output.
    optimizer : {"adam", "sgd"}
    learning_rate : float
    lr_decay : float
        The learning rate of epoch ``e`` is ``learning_rate / (1 + lr_decay * (e - 1))``.
    clip_norm : float or None
        Clip the global gradient norm to this value.
    batch_size : int
    max_epochs : int
    early_stopping : bool
        With development data, keep the weights of the epoch with the best exact-match
        accuracy and stop after ``patience`` epochs without a better one.
    patience : int
    beam_size : int
        Hypotheses kept by :meth:`predict`'s beam search; 1 is greedy decoding.
    length_penalty : float
        Beam search ranks finished hypotheses by ``log p / length ** length_penalty`` (0: by
        probability alone; 1: per symbol).
    max_output_length : int or None
        The longest output :meth:`predict` writes; None: twice the longest training target
        plus 10. Outputs cut there are reported by a warning.
    min_count : int
        Source symbols seen fewer times in training are read as unknown.
    device : {"auto", "cpu", "cuda"}
        Where training, scoring and decoding run: "cuda" on the GPU (parameters, optimizer
        state and activations stay on the device for an epoch; a search's bookkeeping stays on
        the host and reads each step's probabilities), "cpu" and "auto" on the CPU, where this
        model runs faster: at the default sizes an H200 trained 1,662 target symbols/s and
        decoded 309 words/s with beam 5, one CPU core 5,509 and 497 (``benchmarks/RESULTS.md``;
        every decoder step is several small launches). ``TAGGER_DEVICE=cuda`` or
        ``device="cuda"`` takes the GPU.
    n_jobs : int or None
        Threads for the kernels (None: all cores).
    random_state : int, numpy Generator or None
    verbose : int
        1 prints a line per epoch to standard error.

    Attributes
    ----------
    vocabulary_ : Vocabulary
        Source symbols.
    target_vocabulary_ : Vocabulary
        Target symbols (ids 0 and 1 are the decoder's start and end symbols).
    feature_vocabularies_ : list of Vocabulary
        One per feature (values not seen in training are read as unknown).
    max_output_length_ : int
        The longest output written (``max_output_length``, or its default from the data).
    max_input_length_ : int
        The longest source read: four times the longest source of training (and development)
        plus 16. A longer one is refused with a ValueError before it is encoded (its encoder
        states would grow with it); the lemmatizer and ``tagger predict`` name it.
    history_ : list of dict
        Per epoch: loss, dev accuracy, seconds.
    best_epoch_ : int
    """

    _kind = _KIND
    _positive_int_params = ("hidden_size", "num_layers", "embedding_dim", "feature_dim",
                            "batch_size", "max_epochs", "patience", "beam_size", "min_count")

    def __init__(self, cell="lstm", hidden_size=128, num_layers=1, embedding_dim=64,
                 feature_dim=16, dropout=0.3, optimizer="adam", learning_rate=0.002,
                 lr_decay=0.0, clip_norm=5.0, batch_size=32, max_epochs=30,
                 early_stopping=True, patience=5, beam_size=1, length_penalty=0.0,
                 max_output_length=None, min_count=1, device="auto", n_jobs=None,
                 random_state=None, verbose=0):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding_dim = embedding_dim
        self.feature_dim = feature_dim
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.clip_norm = clip_norm
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.patience = patience
        self.beam_size = beam_size
        self.length_penalty = length_penalty
        self.max_output_length = max_output_length
        self.min_count = min_count
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------------------------------

    def _resolve_device(self) -> str:
        """"cpu" or "cuda": "auto" is the CPU for this model (see ``device``)."""
        from ..kernels.backend import resolve_device

        return resolve_device(self.device, auto_gpu=False)

    def _validate_params(self, resolve_device: bool = True) -> None:
        self._check_training_params(("lstm",))
        self._check_clip_and_stopping()
        self._check_decoding_params()
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if resolve_device:
            self._resolve_device()

    def _check_decoding_params(self) -> None:
        """The parameters prediction reads, checked at fit and again at every prediction (a
        ``set_params`` on a fitted model changes them)."""
        b = self.beam_size
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ValueError(f"beam_size must be a positive integer, got {b!r}")
        if isinstance(self.length_penalty, bool) or not isinstance(
                self.length_penalty, (int, float)) or not math.isfinite(self.length_penalty) \
                or self.length_penalty < 0:
            raise ValueError(f"length_penalty must be a finite number >= 0, got "
                             f"{self.length_penalty!r}")
        m = self.max_output_length
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, np.integer))
                              or m < 1):
            raise ValueError(f"max_output_length must be a positive integer or None, got "
                             f"{m!r}")

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _sequences(X, name: str) -> tuple[list[tuple[str, ...]], str]:
        """``X`` as tuples of symbols, and whether it held strings (CHARS) or token sequences
        (SYMBOLS). Every sequence must be non-empty and of one kind."""
        if isinstance(X, str):
            raise TypeError(f"{name} must be a list of strings or of token sequences, not one "
                            f"string: wrap it in a list")
        try:
            items = list(X)
        except TypeError:
            raise TypeError(f"{name} must be a list, got {type(X).__name__}") from None
        kinds, out = set(), []
        for i, item in enumerate(items):
            if isinstance(item, str):
                kinds.add(CHARS)
                seq = tuple(item)
            elif isinstance(item, (list, tuple)) and all(isinstance(t, str) and t
                                                         for t in item):
                kinds.add(SYMBOLS)
                seq = tuple(item)
            else:
                raise TypeError(f"{name}[{i}] must be a string or a list of non-empty strings, "
                                f"got {type(item).__name__}")
            if not seq:
                raise ValueError(f"{name}[{i}] is empty: every sequence needs a symbol")
            out.append(seq)
        if len(kinds) > 1:
            raise TypeError(f"{name} mixes strings and token sequences")
        return out, kinds.pop() if kinds else CHARS

    @staticmethod
    def _feature_rows(features, n: int, name: str, width: int | None) -> list[tuple[str, ...]]:
        """Per-example feature values as tuples of strings, all of one width."""
        if features is None:
            if width:
                raise ValueError(f"this model was trained with {width} feature(s) per example: "
                                 f"pass {name}")
            return [() for _ in range(n)]
        rows = list(features)
        if len(rows) != n:
            raise ValueError(f"{name} has {len(rows)} rows for {n} examples")
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, (str, list, tuple, np.ndarray)):
                raise TypeError(f"{name}[{i}] must be a string or a tuple of strings, got "
                                f"{type(row).__name__}")
            values = (row,) if isinstance(row, str) else tuple(row)
            if not values or not all(isinstance(v, str) for v in values):
                raise TypeError(f"{name}[{i}] must be a string or a tuple of strings")
            out.append(values)
        widths = {len(v) for v in out}
        if len(widths) > 1:
            raise ValueError(f"{name} rows have different numbers of values: "
                             f"{sorted(widths)}")
        if width is not None and out and len(out[0]) != width:
            raise ValueError(f"{name} rows have {len(out[0])} value(s); the model was trained "
                             f"with {width}")
        return out

    def _model_for(self, word_dim: int = 0, resolve_device: bool = True) -> TransducerNetwork:
        if resolve_device:
            self._resolve_device()
        return TransducerNetwork(len(self.vocabulary_), len(self.target_vocabulary_),
                                 [len(v) for v in self.feature_vocabularies_],
                                 self.embedding_dim, self.feature_dim, self.hidden_size,
                                 self.num_layers, self.dropout)

    def _word_dim(self) -> int:
        return 0

    @property
    def _model(self) -> TransducerNetwork:
        model = self.__dict__.get("_model_cache")
        if model is None:
            model = self.__dict__["_model_cache"] = self._model_for()
        return model

    def _encode_sources(self, seqs, feats):
        """Source ids (one array per example), lengths and feature ids (B, n_features).
        Batches are padded one at a time (:func:`_padded`): one long example never makes
        every row as long."""
        ids = [self.vocabulary_.encode(s).astype(np.int64) for s in seqs]
        lengths = np.array([len(s) for s in seqs], np.int64)
        features = np.array([[v.index(x) if x in v else 1
                              for v, x in zip(self.feature_vocabularies_, row, strict=True)]
                             for row in feats], np.int64).reshape(len(seqs),
                                                                  len(self.feature_vocabularies_))
        return ids, lengths, features

    def _target_ids(self, seqs) -> list[np.ndarray]:
        """Target ids, one array per example; a symbol outside the vocabulary is an error."""
        out = []
        for s in seqs:
            ids = self.target_vocabulary_.encode(s).astype(np.int64)
            if (ids == 1).any():
                unknown = sorted({t for t in s if t not in self.target_vocabulary_})
                raise ValueError(f"target symbols not in the model's vocabulary: "
                                 f"{unknown[:10]} (a new model must be fitted to learn them)")
            out.append(ids)
        return out

    @staticmethod
    def _decoder_rows(ids: list[np.ndarray]):
        """Decoder inputs and outputs (B, T) and lengths (the end symbol included) of target
        ids."""
        lengths = np.array([len(t) + 1 for t in ids], np.int64)
        T = int(lengths.max())
        tgt_in = np.zeros((len(ids), T), np.int64)
        tgt_out = np.zeros((len(ids), T), np.int64)
        for i, t in enumerate(ids):
            tgt_in[i, 0] = BOS
            tgt_in[i, 1:len(t) + 1] = t
            tgt_out[i, :len(t)] = t
            tgt_out[i, len(t)] = EOS
        return tgt_in, tgt_out, lengths

    def _encode_targets(self, seqs):
        """Decoder inputs and outputs (B, T) and lengths (the end symbol included)."""
        return self._decoder_rows(self._target_ids(seqs))

    def _input_limit(self, sources, dev) -> int:
        """``max_input_length_`` for training ``sources`` and development data ``dev``: four
        times the longest source of either, plus 16."""
        longest = max((len(s) for s in sources), default=0)
        if dev is not None:
            longest = max(longest, max(len(s) for s in self._sequences(dev[0], "X_dev")[0]))
        return 4 * longest + 16

    def _check_source_lengths(self, lengths: np.ndarray, name: str = "X") -> None:
        """Sources longer than ``max_input_length_`` are refused before any memory is sized
        by them (an encoder's states grow with the source)."""
        limit = self.max_input_length_
        over = np.flatnonzero(lengths > limit)
        if over.size:
            i = int(over[0])
            raise ValueError(f"{name}[{i}] has {int(lengths[i]):,} symbols, over this model's "
                             f"max_input_length_ of {limit:,} (four times its longest training "
                             f"source plus 16); {over.size} source(s) are that long")

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def fit(self, X, y, X_dev=None, y_dev=None, features=None, features_dev=None,
            callback=None):
        """Train on the pairs (``X[i]``, ``y[i]``).

        Parameters
        ----------
        X, y : list of str, or list of lists of str
            Sources and their targets (each non-empty).
        X_dev, y_dev : optional
            Development pairs: scored (exact match) after every epoch; they drive early
            stopping.
        features, features_dev : list of str or of tuples of str, optional
            Per-example categorical features of X and X_dev (one value, or several of a fixed
            number).
        callback : callable, optional
            ``callback(event, info)`` hears ``"epoch_start"``, ``"batch"`` and ``"epoch_end"``.

        Returns
        -------
        self
        """
        self._validate_params()
        sources, self.input_type_ = self._sequences(X, "X")
        targets, self.target_type_ = self._sequences(y, "y")
        if len(sources) != len(targets):
            raise ValueError(f"X has {len(sources)} examples, y {len(targets)}")
        if not sources:
            raise ValueError("X is empty: nothing to learn from")
        feats = self._feature_rows(features, len(sources), "features", None)
        dev = self._dev(X_dev, y_dev, features_dev, len(feats[0]))
        for rows, name in ((sources, "X"), (targets, "y"), (feats, "features")):
            _refuse_reserved(rows, name)
        for i, target in enumerate(targets):
            if any(LINE_OR_TAB.search(symbol) for symbol in target):
                raise ValueError(f"y[{i}] holds a tab or a line break: an output is one line "
                                 f"(of a tab-separated file, or of standard output)")
        self._forget_fit()
        self.vocabulary_ = Vocabulary.build((t for s in sources for t in s),
                                            min_count=self.min_count)
        self.target_vocabulary_ = Vocabulary.build(t for s in targets for t in s)
        self.feature_vocabularies_ = [Vocabulary.build(row[k] for row in feats)
                                      for k in range(len(feats[0]))]
        self.max_output_length_ = (int(self.max_output_length) if self.max_output_length
                                   else 2 * max(len(t) for t in targets) + 10)
        self.max_input_length_ = self._input_limit(sources, dev)
        self._check_search_size()
        rng = np.random.default_rng(self._seed())
        model = self._model_for()
        self.__dict__["_model_cache"] = model
        self.params_ = model.init_params(rng)
        self.history_ = []
        self.best_epoch_ = 0
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        try:
            self._train_pairs(sources, targets, feats, dev, self.max_epochs, rng,
                              self.early_stopping, callback)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer
        return self

    def partial_fit(self, X, y, X_dev=None, y_dev=None, features=None, features_dev=None,
                    callback=None):
        """One more epoch on (X, y) (the first call fits a new model on them), from the
        optimizer state of the last training; the vocabularies stay those of the first fit
        (target symbols it never saw are refused).

        Returns
        -------
        self
        """
        if not hasattr(self, "params_"):
            saved = self.max_epochs, self.early_stopping
            self.max_epochs, self.early_stopping = 1, False
            try:
                return self.fit(X, y, X_dev, y_dev, features, features_dev, callback)
            finally:
                self.max_epochs, self.early_stopping = saved
        self._validate_params()
        sources, in_kind = self._sequences(X, "X")
        targets, out_kind = self._sequences(y, "y")
        if len(sources) != len(targets):
            raise ValueError(f"X has {len(sources)} examples, y {len(targets)}")
        if not sources:
            raise ValueError("X is empty: nothing to learn from")
        self._check_kinds(in_kind, out_kind, "X", "y")
        width = len(self.feature_vocabularies_)
        feats = self._feature_rows(features, len(sources), "features", width)
        dev = self._dev(X_dev, y_dev, features_dev, width)
        self.max_input_length_ = max(self.max_input_length_, self._input_limit(sources, dev))
        self._check_search_size()
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        state = getattr(self, "optimizer_state_", None)
        if state:
            self._optimizer.load_state_dict(state)
        rng = np.random.default_rng(self._seed() + len(self.history_))
        try:
            self._train_pairs(sources, targets, feats, dev, 1, rng, False, callback)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer
        return self

    def _dev(self, X_dev, y_dev, features_dev, width):
        if X_dev is None and y_dev is None:
            return None
        if X_dev is None or y_dev is None:
            raise ValueError("give both X_dev and y_dev, or neither")
        X_dev = list(X_dev) if not isinstance(X_dev, str) else X_dev  # read twice below
        y_dev = list(y_dev) if not isinstance(y_dev, str) else y_dev
        sources, in_kind = self._sequences(X_dev, "X_dev")
        targets, out_kind = self._sequences(y_dev, "y_dev")
        if len(sources) != len(targets):
            raise ValueError(f"X_dev has {len(sources)} examples, y_dev {len(targets)}")
        if not sources:
            raise ValueError("X_dev is empty: pass development pairs, or none")
        self._check_kinds(in_kind, out_kind, "X_dev", "y_dev")
        feats = self._feature_rows(features_dev, len(sources), "features_dev", width or None)
        return X_dev, y_dev, feats if width else None

    def _check_search_size(self) -> None:
        """Refuse, before training, search sizes a model file could not hold."""
        from ._modelfile import search_size_problem

        problem = search_size_problem(self.beam_size, self.max_output_length_,
                                      self.max_input_length_, self.hidden_size)
        if problem:
            raise ValueError(f"{problem}: lower beam_size (or max_output_length)")

    def _check_kinds(self, in_kind, out_kind, x_name: str, y_name: str) -> None:
        """Refuse pairs of another kind (strings or token sequences) than the training ones."""
        for kind, fitted, name in ((in_kind, self.input_type_, x_name),
                                   (out_kind, self.target_type_, y_name)):
            if kind != fitted:
                raise ValueError(f"{name} holds {_KIND_NAMES[kind]}; the model's "
                                 f"{'sources' if name == x_name else 'targets'} are "
                                 f"{_KIND_NAMES[fitted]}")

    def _train_pairs(self, sources, targets, feats, dev, epochs: int, rng, early_stop: bool,
                     callback) -> None:
        model, params = self._model, self.params_
        n = len(sources)
        src, src_lengths, feature_ids = self._encode_sources(sources, feats)
        tgt = self._target_ids(targets)
        tgt_lengths = np.array([len(t) + 1 for t in tgt], np.int64)
        chance = math.log(max(len(self.target_vocabulary_) - 1, 2))
        n_batches = -(-n // self.batch_size)

        gpu = self._resolve_device() == "cuda"

        def train_epoch(epoch: int) -> float:
            order = rng.permutation(n)
            total, symbols = 0.0, 0
            engine = None
            self.__dict__.pop("_device_params_cache", None)  # the weights are about to change
            if gpu:  # the epoch on the device; the host weights after it
                from ..nn.transducer_resident import TransducerDeviceEngine

                engine = TransducerDeviceEngine(model, params, self._optimizer)
            for number, k in enumerate(range(0, n, self.batch_size), 1):
                idx = order[k:k + self.batch_size]
                tgt_in, tgt_out, _ = self._decoder_rows([tgt[i] for i in idx])
                batch = (_padded(src, idx), src_lengths[idx], tgt_in, tgt_out,
                         tgt_lengths[idx], feature_ids[idx])
                if engine is not None:
                    loss = engine.step(*batch, rng, self.clip_norm)
                else:
                    loss, grads = model.loss_and_grads(params, *batch, rng)
                    apply_gradients(params, grads, loss, self._optimizer, self.clip_norm)
                count = int(tgt_lengths[idx].sum())
                total += loss * count
                symbols += count
                if callback is not None:
                    callback("batch", {"epoch": epoch, "batch": number, "n_batches": n_batches,
                                       "loss": loss, "tokens": count})
            if engine is not None:
                engine.download()
            return total / symbols

        def describe(entry: dict) -> str:
            dev = entry["dev_score"]
            shown = "" if dev is None else f"  dev exact {dev:.4f}"
            return f"{shown}  {entry['seconds']:.1f}s  {entry['symbols_per_s']:,.0f} symbols/s"

        try:
            self._train_epochs(
                epochs, early_stop, callback, n_batches, train_epoch,
                (lambda: self._exact_match(dev[0], dev[1], dev[2], beam_size=1))
                if dev is not None else None,
                chance, lambda seconds: {"symbols_per_s": int(tgt_lengths.sum()) / seconds},
                describe)
        finally:  # the best epoch's weights may have been put back in place
            self.__dict__.pop("_device_params_cache", None)

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------

    def _inputs(self, X, features):
        """The sources of a fitted model, checked against what it reads, and their features."""
        check_is_fitted(self, "params_")
        sources, kind = self._sequences(X, "X")
        if sources and kind != self.input_type_:
            names = {CHARS: "strings", SYMBOLS: "token sequences"}
            raise TypeError(f"this model reads {names[self.input_type_]}, X holds "
                            f"{names[kind]}")
        self._check_source_lengths(np.array([len(s) for s in sources], np.int64))
        return sources, self._feature_rows(features, len(sources), "features",
                                           len(self.feature_vocabularies_))

    def _decoder(self):
        """What decodes and scores with the fitted weights: on the GPU, an engine holding a
        device copy of ``params_``, made on the first call and kept until the next training,
        refit or device change (in-place edits of ``params_`` are not seen until then); else
        the network on the CPU, with the same methods."""
        model = self._model
        if self._resolve_device() != "cuda":
            return _HostDecoding(model, self.params_)
        cached = self.__dict__.get("_device_params_cache")
        if cached is not None and cached[0] is self.params_ and cached[1] is model:
            return cached[2]
        from ..nn.transducer_resident import TransducerDeviceEngine

        engine = TransducerDeviceEngine(model, self.params_)
        self.__dict__["_device_params_cache"] = (self.params_, model, engine)
        return engine

    def _decode(self, X, features, beam_size: int, n_best: int = 1, warn_cut: bool = True):
        """Per example, a list of (target symbols, score, finished)."""
        self._check_decoding_params()
        sources, feats = self._inputs(X, features)
        out: list = [None] * len(sources)
        if not sources:
            return out
        decoder = self._decoder()
        items = self.target_vocabulary_.items
        limit = self.max_output_length_
        with thread_limit(self.n_jobs):
            src, src_lengths, feature_ids = self._encode_sources(sources, feats)
            if beam_size == 1 and n_best == 1:
                for idx in _chunks(src_lengths):
                    found = decoder.greedy(_padded(src, idx), src_lengths[idx], BOS, EOS, limit,
                                           feature_ids[idx])
                    for i, ids in zip(idx, found, strict=True):
                        out[i] = [([items[t] for t in ids], None, len(ids) < limit)]
            else:  # the hypotheses of a chunk of sources searched together
                for idx in _chunks(src_lengths, _BEAM_SOURCES, beam_size):
                    found = decoder.beam_search_batch(
                        _padded(src, idx), src_lengths[idx], BOS, EOS, limit, beam_size,
                        self.length_penalty, feature_ids[idx], n_best)
                    for i, hyps in zip(idx, found, strict=True):
                        out[i] = [([items[t] for t in ids], score, done)
                                  for ids, score, done in hyps]
        cut = sum(1 for hyps in out if not hyps[0][2])
        if cut and warn_cut:
            warnings.warn(f"{cut} output(s) reached max_output_length={limit} without the end "
                          f"symbol: they are cut there", UserWarning, stacklevel=3)
        return out

    def _as_output(self, symbols: list[str]):
        return "".join(symbols) if self.target_type_ == CHARS else list(symbols)

    def predict(self, X, features=None) -> list:
        """The output for every source: strings if the model was trained on strings, lists of
        symbols otherwise (beam search with ``beam_size``, greedy when it is 1)."""
        return [self._as_output(hyps[0][0])
                for hyps in self._decode(X, features, self.beam_size)]

    def predict_n_best(self, X, n: int = 5, features=None) -> list[list[tuple]]:
        """The ``n`` best outputs of every source by beam search (a beam of at least ``n``),
        best first, each with its score (the log-probability, divided by the output length to
        the power ``length_penalty``)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return [[(self._as_output(symbols), score) for symbols, score, _ in hyps]
                for hyps in self._decode(X, features, max(self.beam_size, int(n)), int(n))]

    def log_probability(self, X, y, features=None) -> np.ndarray:
        """The model's log-probability (natural log, float64) of writing ``y[i]`` for
        ``X[i]``, its end symbol included: the sum over its symbols under teacher forcing, with
        no length normalisation. An output holding a symbol the model cannot write, or longer
        than ``max_output_length``, has probability zero (-inf). Outputs are strings for a model
        trained on strings, else lists of symbols; an empty output is the end symbol alone."""
        sources, feats = self._inputs(X, features)
        if isinstance(y, str):
            raise TypeError("y must be a list of outputs, not one string: wrap it in a list")
        outputs = []
        for i, item in enumerate(y):
            if not isinstance(item, (str, list, tuple, np.ndarray)):
                raise TypeError(f"y[{i}] must be a string or a list of strings, got "
                                f"{type(item).__name__}")
            outputs.append(tuple(item))
        if len(outputs) != len(sources):
            raise ValueError(f"X has {len(sources)} examples, y {len(outputs)}")
        result = np.full(len(sources), -np.inf)
        vocabulary = self.target_vocabulary_
        rows = [i for i, out in enumerate(outputs)
                if len(out) <= self.max_output_length_ and
                all(isinstance(t, str) and t in vocabulary and vocabulary.index(t) > EOS
                    for t in out)]
        if not rows:
            return result
        decoder = self._decoder()
        with thread_limit(self.n_jobs):
            src, src_lengths, feature_ids = self._encode_sources([sources[i] for i in rows],
                                                                 [feats[i] for i in rows])
            for idx in _chunks(src_lengths):
                tgt_in, tgt_out, tgt_lengths = self._encode_targets([outputs[rows[i]]
                                                                     for i in idx])
                scores = decoder.log_likelihood(_padded(src, idx), src_lengths[idx], tgt_in,
                                                tgt_out, tgt_lengths, feature_ids[idx])
                result[np.asarray(rows)[idx]] = scores
        return result

    def _exact_match(self, X, y, features, beam_size=None) -> float:
        targets, _ = self._sequences(y, "y")
        found = self._decode(X, features, beam_size or self.beam_size)
        if len(found) != len(targets):
            raise ValueError(f"X has {len(found)} examples, y {len(targets)}")
        hits = sum(tuple(hyps[0][0]) == tuple(t) for hyps, t in zip(found, targets,
                                                                    strict=True))
        return hits / max(len(targets), 1)

    def score(self, X, y, features=None) -> float:
        """Exact-match accuracy of :meth:`predict` on (X, y)."""
        return self._exact_match(X, y, features)

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _saveable_params(self) -> dict:
        params = self.get_params()
        if not isinstance(params["random_state"], (int, np.integer, type(None))):
            params["random_state"] = None
        return params

    def _task_config(self) -> dict:
        return {"target_type": self.target_type_,
                "target_vocabulary": self.target_vocabulary_.to_dict(),
                "feature_vocabularies": [v.to_dict() for v in self.feature_vocabularies_],
                "max_output_length": self.max_output_length_,
                "max_input_length": self.max_input_length_}

    def _restore_task(self, config: dict) -> None:
        from ._modelfile import restore_transducer

        restore_transducer(self, config)


class _HostDecoding:
    """The CPU network's decoding methods with the weights bound, in the form of
    :class:`~tagger.nn.transducer_resident.TransducerDeviceEngine`'s."""

    def __init__(self, model: TransducerNetwork, params: dict):
        self.model, self.params = model, params

    def greedy(self, *args):
        return self.model.greedy(self.params, *args)

    def beam_search_batch(self, *args):
        return self.model.beam_search_batch(self.params, *args)

    def log_likelihood(self, *args):
        return self.model.log_likelihood(self.params, *args)


#: Rows x source steps of one decoding batch at most: the encoder's states and work arrays grow
#: with their product.
_BATCH_SYMBOLS = 1 << 16

_KIND_NAMES = {CHARS: "strings", SYMBOLS: "token sequences"}


def _refuse_reserved(rows, name: str) -> None:
    """Refuse the vocabularies' reserved entries as data (a token or feature value '<pad>' or
    '<unk>'), naming the first example that holds one."""
    reserved = {PAD, UNK}
    for i, row in enumerate(rows):
        if reserved.intersection(row):
            raise ValueError(f"{name}[{i}] holds {sorted(reserved.intersection(row))[0]!r}, "
                             f"a reserved symbol of the vocabularies")

#: Sources searched together by beam search: each has up to ``beam_size`` rows of the decoder's
#: batch (and its own copy of the encoder states).
_BEAM_SOURCES = 64


def _chunks(lengths: np.ndarray, rows: int = 256, copies: int = 1):
    """Batches of example indices, longest sources first, of at most ``rows`` examples and
    about ``_BATCH_SYMBOLS`` padded source steps each (one example at least), counting
    ``copies`` of each source (beam search keeps one per hypothesis)."""
    order = np.argsort(-lengths, kind="stable")
    k = 0
    while k < len(order):
        width = max(int(lengths[order[k]]), 1) * max(copies, 1)
        take = max(1, min(rows, _BATCH_SYMBOLS // width))
        yield order[k:k + take]
        k += take


def _padded(ids: list[np.ndarray], idx) -> np.ndarray:
    """The rows ``idx`` of ``ids`` as one (B, S) array, zero-padded to their longest."""
    S = max(max((len(ids[i]) for i in idx), default=1), 1)
    out = np.zeros((len(idx), S), np.int64)
    for r, i in enumerate(idx):
        out[r, :len(ids[i])] = ids[i]
    return out
