"""CharLanguageModel: a recurrent character language model with the scikit-learn API.

One character in, a distribution over the next character out: trained by truncated
backpropagation through time on raw text, it scores text (log-likelihood, bits per character,
perplexity) and generates it one character after another.
"""

from __future__ import annotations

import math

import numpy as np

from ..nn.language_model import LM_CELLS, CharLMNetwork
from ..nn.optim import make_optimizer
from ..nn.training import apply_gradients
from ..text.vocab import Vocabulary
from ._base import RecurrentEstimator
from ._inputs import CHARS
from ._protocol import check_is_fitted

_KIND = "CharLanguageModel"
DIRECTIONS = ("forward", "backward")

#: Every document (or line) of a text ends with this character, and a text starts after it: the
#: first character of a text is predicted from "the start of a line".
_BOUNDARY = "\n"

#: Texts longer than this many characters are scored as several streams at once (each starting
#: from the zero state): exact for shorter ones, and 16 times faster on long ones.
_SCORE_STREAM_CHARS = 250_000


class CharLanguageModel(RecurrentEstimator):
    """A character language model: embedding, stacked LSTM or GRU layers, a softmax over the
    next character.

    The training text is read as one stream of characters (each document or line followed by a
    newline) cut into ``batch_size`` parallel streams, which are read in segments of ``bptt``
    characters; the recurrent state is carried from one segment to the next and the gradient
    stops at a segment's start (truncated backpropagation through time).

    Parameters
    ----------
    cell : {"lstm", "gru"}
        Recurrent cell.
    hidden_size : int
        State width of each layer.
    num_layers : int
        Stacked recurrent layers.
    embedding_dim : int
        Width of the character embeddings.
    direction : {"forward", "backward"}
        Read the text from left to right, or from right to left (a backward model predicts
        each character from those after it; with a forward one it makes the contextual
        character embeddings of Akbik et al. 2018).
    bptt : int
        Segment length: characters per truncated backpropagation step.
    batch_size : int
        Parallel streams the training text is cut into (the batch of every step).
    dropout : float
        Inverted dropout in training: on the embedding table (one mask per segment, so that a
        character's dropped components are dropped wherever it occurs in the segment), on the
        input of every further layer and on the last layer's output. Masking the table lets
        the LSTM's first layer gather its input projections instead of multiplying every
        character's embedding (about a ninth of the work of a step at the default sizes).
    optimizer : {"adam", "sgd"}
    learning_rate : float
    lr_decay : float
        The learning rate of epoch ``e`` (from 0) is ``learning_rate / (1 + lr_decay * e)``.
    clip_norm : float or None
        Clip the global gradient norm of each step to this value.
    max_epochs : int
        Passes over the training text.
    early_stopping : bool
        With development text, keep the weights of the epoch with the best development
        log-likelihood and stop after ``patience`` epochs without a better one.
    patience : int
    min_char_count : int
        Characters seen fewer times in training are read as the unknown symbol.
    device : {"auto", "cpu", "cuda"}
        Where training, scoring and sampling run: "cuda" on the GPU (parameters, optimizer
        state and the carried state stay on the device; sampling runs in one launch), "auto"
        the GPU when one is usable, else the CPU (see
        :func:`tagger.kernels.backend.resolve_device`).
    n_jobs : int or None
        Threads for the kernels (None: all cores).
    random_state : int, numpy Generator or None
        Seeds initialisation, dropout and the order of nothing else: training is deterministic
        for a fixed seed.
    verbose : int
        Print one line per epoch on stderr.

    Attributes
    ----------
    vocabulary_ : Vocabulary
        The characters (after the padding and unknown entries).
    params_ : dict
        The network's parameters.
    history_ : list of dict
        Per-epoch training loss (nats per character), development score, time.
    best_epoch_ : int
        The epoch whose weights the model holds.
    """

    _kind = _KIND
    _positive_int_params = ("hidden_size", "num_layers", "embedding_dim", "bptt", "batch_size",
                            "max_epochs", "patience", "min_char_count")

    def __init__(self, cell="lstm", hidden_size=512, num_layers=1, embedding_dim=64,
                 direction="forward", bptt=100, batch_size=32, dropout=0.1, optimizer="adam",
                 learning_rate=0.002, lr_decay=0.0, clip_norm=5.0, max_epochs=20,
                 early_stopping=True, patience=3, min_char_count=1, device="auto",
                 n_jobs=None, random_state=None, verbose=0):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding_dim = embedding_dim
        self.direction = direction
        self.bptt = bptt
        self.batch_size = batch_size
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.clip_norm = clip_norm
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.patience = patience
        self.min_char_count = min_char_count
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------------------------------

    def _validate_params(self, resolve_device: bool = True) -> None:
        self._check_training_params(LM_CELLS)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'forward' or 'backward', got "
                             f"{self.direction!r}")
        self._check_clip_and_stopping()
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if resolve_device:
            self._resolve_device()

    # ------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _check_texts(X, name: str = "X") -> list[str]:
        if isinstance(X, str):
            raise TypeError(f"{name} must be a list of strings (documents or lines), not one "
                            f"string: wrap it in a list")
        try:
            texts = list(X)
        except TypeError:
            raise TypeError(f"{name} must be a list of strings, got {type(X).__name__}") \
                from None
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] is a {type(text).__name__}, not a string")
        return texts

    def _stream(self, texts: list[str]) -> np.ndarray:
        """The character ids of ``texts`` read as one stream in the model's direction: a
        newline, then each text followed by a newline (every character of every text, and
        each end of line, is predicted from what precedes it)."""
        stream = _BOUNDARY + "".join(text + _BOUNDARY for text in texts)
        if self.direction == "backward":
            stream = stream[::-1]
        return self.vocabulary_.encode(stream)

    def _model_for(self, word_dim: int = 0, resolve_device: bool = True) -> CharLMNetwork:
        if resolve_device:
            self._resolve_device()
        return CharLMNetwork(len(self.vocabulary_), self.embedding_dim, self.cell,
                             self.hidden_size, self.num_layers, self.dropout)

    def _word_dim(self) -> int:
        return 0

    @property
    def _model(self) -> CharLMNetwork:
        model = self.__dict__.get("_model_cache")
        if model is None:
            model = self.__dict__["_model_cache"] = self._model_for()
        return model

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------

    def fit(self, X, X_dev=None, callback=None):
        """Train on the texts ``X``.

        Parameters
        ----------
        X : list of str
            Documents or lines, read as one stream of characters.
        X_dev : list of str, optional
            Development text: scored after every epoch, it drives early stopping.
        callback : callable, optional
            ``callback(event, info)`` hears ``"epoch_start"``, ``"batch"`` and ``"epoch_end"``
            events.

        Returns
        -------
        self
        """
        self._validate_params()
        texts = self._check_texts(X)
        dev = self._check_texts(X_dev, "X_dev") if X_dev is not None else None
        n_chars = sum(len(t) for t in texts)
        if n_chars == 0:
            raise ValueError("X holds no characters to learn from")
        self._forget_fit()
        self.input_type_ = CHARS
        chars = Vocabulary.build((c for text in texts for c in text + _BOUNDARY),
                                 min_count=self.min_char_count)
        if len(chars) <= 2:
            raise ValueError(f"no character is seen min_char_count={self.min_char_count} times")
        self.vocabulary_ = chars
        rng = np.random.default_rng(self._seed())
        model = self._model_for()
        self.__dict__["_model_cache"] = model
        self.params_ = model.init_params(rng)
        self.history_ = []
        self.best_epoch_ = 0
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        try:
            self._train_stream(self._stream(texts),
                               self._stream(dev) if dev else None, self.max_epochs, rng,
                               self.early_stopping, callback)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer
        return self

    def partial_fit(self, X, X_dev=None, callback=None):
        """One more epoch on ``X`` (the first call fits a new model on it), from the optimizer
        state kept by the last training; the vocabulary stays that of the first fit (new
        characters are read as unknown).

        Returns
        -------
        self
        """
        if not hasattr(self, "params_"):
            saved = self.max_epochs, self.early_stopping
            self.max_epochs, self.early_stopping = 1, False
            try:
                return self.fit(X, X_dev, callback)
            finally:
                self.max_epochs, self.early_stopping = saved
        self._validate_params()
        texts = self._check_texts(X)
        dev = self._check_texts(X_dev, "X_dev") if X_dev is not None else None
        self._optimizer = make_optimizer(self.optimizer, self.learning_rate)
        state = getattr(self, "optimizer_state_", None)
        if state:
            self._optimizer.load_state_dict(state)
        rng = np.random.default_rng(self._seed() + len(self.history_))
        try:
            self._train_stream(self._stream(texts), self._stream(dev) if dev else None, 1, rng,
                               False, callback)
            self.optimizer_state_ = self._optimizer.state_dict()
        finally:
            del self._optimizer
        return self

    def _train_stream(self, ids: np.ndarray, dev_ids, epochs: int, rng: np.random.Generator,
                      early_stop: bool, callback) -> None:
        """Epochs of truncated backpropagation through time over the stream ``ids``."""
        model, params = self._model, self.params_
        B = min(self.batch_size, max(1, (len(ids) - 1) // 2))
        N = (len(ids) - 1) // B  # the last (len - 1) % B characters of the stream are not read
        if N < 1:
            raise ValueError("X is too short to learn from: it needs at least two characters")
        inputs = ids[:B * N].reshape(B, N)
        targets = ids[1:B * N + 1].reshape(B, N)
        starts = list(range(0, N, self.bptt))
        gpu = self._resolve_device() == "cuda"
        chance = math.log(len(self.vocabulary_) - 2) if len(self.vocabulary_) > 3 else 1.0

        def train_epoch(epoch: int) -> float:
            engine, total = None, 0.0
            if gpu:  # the epoch on the device; the host weights after it
                from ..nn.lm_resident import LMDeviceEngine

                engine = LMDeviceEngine(model, params, self._optimizer)
                state = engine.initial_state(B)
            else:
                state = model.initial_state(B)
            for number, s in enumerate(starts, 1):
                x, y = inputs[:, s:s + self.bptt], targets[:, s:s + self.bptt]
                if engine is not None:
                    loss = engine.step(x, y, state, rng, self.clip_norm)
                else:
                    loss, grads, state = model.loss_and_grads(params, x, y, state, rng)
                    apply_gradients(params, grads, loss, self._optimizer, self.clip_norm)
                total += loss * x.size
                if callback is not None:
                    callback("batch", {"epoch": epoch, "batch": number, "n_batches": len(starts),
                                       "loss": loss, "tokens": x.size})
            if engine is not None:
                engine.download()
            return total / (B * N)

        def describe(entry: dict) -> str:
            dev = entry["dev_score"]
            shown = "" if dev is None else (f"  dev {-dev:.4f} nats/char "
                                            f"({-dev / math.log(2):.3f} bits)")
            return f"{shown}  {entry['seconds']:.1f}s  {entry['chars_per_s']:,.0f} chars/s"

        self._train_epochs(
            epochs, early_stop, callback, len(starts), train_epoch,
            (lambda: self._mean_log_likelihood(dev_ids)) if dev_ids is not None else None,
            chance, lambda seconds: {"chars_per_s": B * N / seconds}, describe)

    # ------------------------------------------------------------------------------------------
    # scoring
    # ------------------------------------------------------------------------------------------

    def _mean_log_likelihood(self, ids: np.ndarray) -> float:
        """Mean natural-log probability of each character of the stream ``ids`` after the
        first, read from the zero state (in several streams when it is long)."""
        n = len(ids) - 1
        if n < 1:
            raise ValueError("the text has no character to score")
        model, params = self._model, self.params_
        if self._resolve_device() == "cuda":
            from ..nn.lm_resident import LMDeviceEngine

            engine = LMDeviceEngine(model, params)
            initial_state = engine.initial_state

            def log_likelihood(x, y, state):
                total, k = engine.log_likelihood(x, y, state)
                return total, k, state
        else:
            initial_state = model.initial_state

            def log_likelihood(x, y, state):
                return model.log_likelihood(params, x, y, state)

        streams = 1 if n <= _SCORE_STREAM_CHARS else 16
        N = n // streams
        total, count = 0.0, 0
        if N > 0:
            inputs = ids[:streams * N].reshape(streams, N)
            targets = ids[1:streams * N + 1].reshape(streams, N)
            state = initial_state(streams)
            segment = max(self.bptt, 1000)
            for s in range(0, N, segment):
                logp, k, state = log_likelihood(inputs[:, s:s + segment],
                                                targets[:, s:s + segment], state)
                total += logp
                count += k
        rest = n - streams * N  # the characters that do not fill a stream: one more, alone
        if rest:
            tail = ids[streams * N:]
            logp, k, _ = log_likelihood(tail[None, :-1], tail[None, 1:], initial_state(1))
            total += logp
            count += k
        return total / count

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per character of the texts ``X`` (natural log; greater is
        better, as for scikit-learn's density models). Every character and every end of text
        counts; characters not seen in training are the unknown symbol.

        Parameters
        ----------
        X : list of str
        y : ignored

        Returns
        -------
        float
        """
        check_is_fitted(self, "params_")
        return self._mean_log_likelihood(self._stream(self._check_texts(X)))

    def bits_per_char(self, X) -> float:
        """Cross-entropy of the texts ``X`` in bits per character (lower is better)."""
        return -self.score(X) / math.log(2)

    def perplexity(self, X) -> float:
        """Perplexity per character of the texts ``X`` (lower is better)."""
        return math.exp(-self.score(X))

    # ------------------------------------------------------------------------------------------
    # generation
    # ------------------------------------------------------------------------------------------

    def sample(self, prefix: str = "", n_chars: int = 500, temperature: float = 1.0,
               top_k: int | None = None, random_state=None) -> str:
        """Generate ``n_chars`` characters after ``prefix`` (before it, for a backward model).

        The prefix is read once; then each character is drawn and fed back, one step at a
        time, in compiled code.

        Parameters
        ----------
        prefix : str
            The text to continue (read as the start of a line follows it).
        n_chars : int
            Characters to generate.
        temperature : float
            Divides the scores before the softmax: below 1 more conservative, above 1 more
            varied; 0 takes the most probable character at each step.
        top_k : int, optional
            Draw only among the ``top_k`` most probable characters.
        random_state : int, numpy Generator or None
            Seed of the draws (the same seed gives the same text).

        Returns
        -------
        str
            ``prefix`` followed by the generated text (for a backward model, the generated
            text followed by ``prefix``).
        """
        from ..kernels import lm_cpu

        check_is_fitted(self, "params_")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        if isinstance(n_chars, bool) or not isinstance(n_chars, (int, np.integer)) \
                or n_chars < 0:
            raise ValueError(f"n_chars must be a non-negative integer, got {n_chars!r}")
        if not (isinstance(temperature, (int, float, np.floating)) and math.isfinite(temperature)
                and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(
                top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        seed = self._sample_seed(random_state)
        context = _BOUNDARY + prefix
        if self.direction == "backward":
            context = context[::-1] if prefix else context
        ids = self.vocabulary_.encode(context)
        banned = np.array([0, 1], np.int64)  # padding and unknown are never drawn
        if self._resolve_device() == "cuda":
            from ..kernels import lm_cuda

            generated, _ = lm_cuda.sample(self.cell, self.params_, self.num_layers, None,
                                          int(ids[-1]), int(n_chars), float(temperature),
                                          int(top_k or 0), banned, seed, read=ids[:-1])
            return self._sampled_text(generated, prefix)
        model = self._model
        state = None
        if len(ids) > 1:
            _, state = model.next_logits(self.params_, ids[None, :-1], None)
        generated, _ = lm_cpu.sample(self.cell, self.params_, self.num_layers,
                                     state if state is not None
                                     else model.initial_state(1), int(ids[-1]), int(n_chars),
                                     float(temperature), int(top_k or 0), banned, seed)
        return self._sampled_text(generated, prefix)

    def _sampled_text(self, generated, prefix: str) -> str:
        items = self.vocabulary_.items
        text = "".join(items[i] for i in generated)
        if self.direction == "backward":
            return text[::-1] + prefix
        return prefix + text

    @staticmethod
    def _sample_seed(random_state) -> int:
        if random_state is None:
            return int(np.random.default_rng().integers(0, 2**63))
        if isinstance(random_state, np.random.Generator):
            return int(random_state.integers(0, 2**63))
        if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) \
                and 0 <= random_state < 2**64:
            return int(random_state)
        raise ValueError(f"random_state must be None, a non-negative integer or a numpy "
                         f"Generator, got {random_state!r}")

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _saveable_params(self) -> dict:
        params = self.get_params()
        if not isinstance(params["random_state"], (int, np.integer, type(None))):
            params["random_state"] = None
        return params

    def _task_config(self) -> dict:
        return {}

    def _restore_task(self, config: dict) -> None:
        pass
