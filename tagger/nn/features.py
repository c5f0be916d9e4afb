"""Token features: word embeddings, word-shape embeddings and a character encoder (CNN or BiLSTM),
concatenated per token, with dropout. The output feeds the recurrent network; its backward pass
takes the network's input gradient.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..kernels import ops_cpu
from . import init
from .recurrent import RNNStack, direction_backward, direction_forward, dropout_mask, run_directions

CHAR_ENCODERS = ("cnn", "lstm", None)


@dataclass
class TokenBatch:
    """A padded batch of encoded sentences.

    Attributes
    ----------
    word_ids, shape_ids : ndarray (B, T) of int64
        Word and shape ids, 0 at padding.
    lengths : ndarray (B,) of int64
        Tokens per sentence.
    word_slots : ndarray (B, T) of int64
        Row of each token in ``char_ids`` (each distinct word once), -1 at padding.
    char_ids : ndarray (U, L) of int64
        Character ids of the batch's distinct words, right-padded with 0.
    char_lengths : ndarray (U,) of int64
        Characters per distinct word.
    """

    word_ids: np.ndarray
    shape_ids: np.ndarray
    lengths: np.ndarray
    word_slots: np.ndarray
    char_ids: np.ndarray
    char_lengths: np.ndarray
    #: The sentences themselves (lists of tokens), for features computed from their text
    #: (contextual character embeddings); None when nothing needs them.
    tokens: list | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


@dataclass
class _CharLSTMCache:
    """What the character BiLSTM's training pass keeps for its backward pass: the order that
    sorted the words longest first (None if they came so), their lengths in that order, the
    groups (first row, end row, character ids) and each direction's caches per group."""

    order: np.ndarray | None
    lengths: np.ndarray
    pieces: list
    caches: list


def _length_groups(lengths: np.ndarray, min_rows: int = 8) -> list[tuple[int, int]]:
    """Row ranges of ``lengths`` (sorted longest first) whose longest is under twice the
    shortest, each of at least ``min_rows`` rows (but the last): every group padded to its
    own longest wastes at most about half its steps."""
    lengths = np.asarray(lengths).tolist()  # Python ints: this loop runs once per batch
    groups = []
    start, n = 0, len(lengths)
    while start < n:
        end = start + 1
        while end < n and (2 * lengths[end] > lengths[start] or end - start < min_rows):
            end += 1
        groups.append((start, end))
        start = end
    return groups


class TokenFeaturizer:
    """Per-token input vectors for the tagger.

    Parameters
    ----------
    n_words : int
        Word vocabulary size (including the padding and unknown entries).
    word_dim : int
        Word embedding width.
    n_shapes : int
        Number of word-shape classes; ``shape_dim`` 0 disables the shape feature.
    shape_dim : int
        Shape embedding width.
    n_chars : int
        Character vocabulary size.
    char_encoder : {"cnn", "lstm", None}
        How characters become a vector per word: a convolution of width 3 and max-over-time
        pooling (Ma & Hovy 2016), or the final states of a character BiLSTM (Lample et al. 2016).
    char_dim : int
        Character embedding width.
    char_hidden : int
        CNN filters, or LSTM state width per direction.
    dropout : float
        Dropout on the concatenated token vectors during training.
    context : CharLMFeatures, optional
        Contextual character embeddings from a pair of frozen character language models
        (:mod:`tagger.nn.context`), appended to each token's vector; their parameters are in
        the parameter dict but get no gradient.
    """

    cnn_width = 3

    def __init__(self, n_words: int, word_dim: int, n_shapes: int, shape_dim: int, n_chars: int,
                 char_encoder: str | None, char_dim: int, char_hidden: int, dropout: float,
                 context=None):
        if char_encoder not in CHAR_ENCODERS:
            raise ValueError(f"char_encoder must be 'cnn', 'lstm' or None, got {char_encoder!r}")
        self.n_words, self.word_dim = n_words, word_dim
        self.n_shapes, self.shape_dim = n_shapes, shape_dim
        self.n_chars, self.char_encoder = n_chars, char_encoder
        self.char_dim, self.char_hidden = char_dim, char_hidden
        self.dropout = dropout
        self.char_rnn = (RNNStack("lstm", char_dim, char_hidden, 1, True, prefix="char.rnn")
                         if char_encoder == "lstm" else None)
        self.context = context

    @property
    def char_size(self) -> int:
        if self.char_encoder == "cnn":
            return self.char_hidden
        return 2 * self.char_hidden if self.char_encoder == "lstm" else 0

    @property
    def context_size(self) -> int:
        return self.context.output_size if self.context is not None else 0

    @property
    def output_size(self) -> int:
        return (self.word_dim + (self.shape_dim if self.shape_dim else 0) + self.char_size
                + self.context_size)

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order."""
        shapes = {"emb.word": (self.n_words, self.word_dim)}
        if self.shape_dim:
            shapes["emb.shape"] = (self.n_shapes, self.shape_dim)
        if self.char_encoder is not None:
            shapes["emb.char"] = (self.n_chars, self.char_dim)
        if self.char_encoder == "cnn":
            shapes["char.cnn.W"] = (self.cnn_width * self.char_dim, self.char_hidden)
            shapes["char.cnn.b"] = (self.char_hidden,)
        elif self.char_encoder == "lstm":
            shapes.update(self.char_rnn.param_shapes())
        if self.context is not None:
            shapes.update(self.context.param_shapes())
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Embeddings uniform in ±sqrt(3 / dim) (unit variance per vector), Glorot for the CNN."""
        params = {"emb.word": init.uniform(rng, (self.n_words, self.word_dim),
                                           np.sqrt(3.0 / self.word_dim), dtype)}
        if self.shape_dim:
            params["emb.shape"] = init.uniform(rng, (self.n_shapes, self.shape_dim),
                                               np.sqrt(3.0 / self.shape_dim), dtype)
        if self.char_encoder is not None:
            params["emb.char"] = init.uniform(rng, (self.n_chars, self.char_dim),
                                              np.sqrt(3.0 / self.char_dim), dtype)
        if self.char_encoder == "cnn":
            params["char.cnn.W"] = init.glorot_uniform(
                rng, (self.cnn_width * self.char_dim, self.char_hidden), dtype)
            params["char.cnn.b"] = np.zeros(self.char_hidden, dtype)
        elif self.char_encoder == "lstm":
            params.update(self.char_rnn.init_params(rng, dtype))
        if self.context is not None:  # placeholders: the language models' weights go there
            params.update({name: np.zeros(shape, dtype)
                           for name, shape in self.context.param_shapes().items()})
        return params

    # ----------------------------------------------------------------------------------------------

    def _chars_forward(self, params, batch: TokenBatch, need_backward: bool = True):
        table = params["emb.char"]
        U, L = batch.char_ids.shape
        if self.char_encoder == "cnn":
            # One window per character, none for the padding (a batch's words are about three
            # times shorter than its longest).
            windows = np.empty((int(batch.char_lengths.sum()), self.cnn_width * self.char_dim),
                               table.dtype)
            ops_cpu.char_windows(table, batch.char_ids, batch.char_lengths, self.cnn_width,
                                 windows)
            conv = windows @ params["char.cnn.W"]
            out = np.empty((U, self.char_hidden), table.dtype)
            argmax = np.empty((U, self.char_hidden), np.int64)
            ops_cpu.char_max_pool(conv, params["char.cnn.b"], batch.char_lengths, out, argmax)
            return out, (windows, argmax)
        if need_backward and self.char_rnn.device == "cpu":
            return self._char_lstm_train(params, batch)
        emb = np.empty((U, L, self.char_dim), table.dtype)
        ops_cpu.embedding_lookup(table, batch.char_ids, emb)
        hidden, cache = self.char_rnn.forward(params, emb, batch.char_lengths,
                                              need_backward=need_backward)
        H = self.char_hidden
        last = np.maximum(batch.char_lengths - 1, 0)
        out = np.concatenate([hidden[np.arange(U), last, :H], hidden[:, 0, H:]], axis=1)
        return out, (cache, last, hidden.shape)

    def _char_lstm_train(self, params, batch: TokenBatch):
        """The character BiLSTM's word vectors for training: each direction's final state.

        Three things keep its work to the characters there are, not to the padded (words x
        longest word) batch: the words run longest first (the kernels then shrink each step
        to the words still going); they run in groups of similar length, each padded to its
        own longest (a batch of tweets holds one 30-character URL and hundreds of words of
        two to eight); and a character's input projection is a row of ``emb.char @ W`` (V x
        4H, made once per batch) gathered by its id, not its embedding multiplied by ``W``
        (the backward pass sums the projections' gradients per character).
        """
        table = params["emb.char"]
        lengths = batch.char_lengths
        order = None
        if lengths.size > 1 and (np.diff(lengths) > 0).any():
            order = np.argsort(-lengths, kind="stable")
        ids = batch.char_ids if order is None else batch.char_ids[order]
        lengths = lengths if order is None else lengths[order]
        groups = _length_groups(lengths)
        pieces = [(a, b, np.ascontiguousarray(ids[a:b, :max(int(lengths[a]), 1)]))
                  for a, b in groups]

        def run(direction: str):
            layer = self.char_rnn._direction_params(params, 0, direction)
            projected = table @ layer["W"]
            layer = dict(layer, W=np.empty((0, layer["W"].shape[1]), table.dtype))
            finals, caches = [], []
            for a, b, piece in pieces:
                _, h_last, _, cache = direction_forward(
                    "lstm", layer, np.empty(piece.shape + (0,), table.dtype), lengths[a:b],
                    reverse=direction == "bwd", workspace=self.char_rnn.workspace,
                    gather=(projected, piece))
                finals.append(h_last)
                caches.append(cache)
            # (A batch may hold no word at all: its sentences all empty.)
            return (np.concatenate(finals) if finals else
                    np.zeros((0, self.char_hidden), table.dtype)), caches

        results = run_directions([functools.partial(run, "fwd"), functools.partial(run, "bwd")],
                                 self.char_rnn._work(int(lengths.sum())))
        # A direction's final state is its output at the word's last character (forward) or
        # first (backward).
        out = np.concatenate([results[0][0], results[1][0]], axis=1)
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out, _CharLSTMCache(order, lengths, pieces, [results[0][1], results[1][1]])

    def _chars_backward(self, params, batch: TokenBatch, cache, d_out, grads):
        table = params["emb.char"]
        U, L = batch.char_ids.shape
        d_table = np.empty_like(table)
        if self.char_encoder == "cnn":
            windows, argmax = cache
            W = params["char.cnn.W"]
            dW_t = np.empty((W.shape[1], W.shape[0]), W.dtype)
            db = np.empty(W.shape[1], W.dtype)
            ops_cpu.char_cnn_backward(batch.char_ids, batch.char_lengths, self.cnn_width,
                                      windows, np.ascontiguousarray(W.T), argmax,
                                      np.ascontiguousarray(d_out), dW_t, db, d_table)
            grads["char.cnn.W"] = np.ascontiguousarray(dW_t.T)
            grads["char.cnn.b"] = db
        elif isinstance(cache, _CharLSTMCache):
            self._char_lstm_backward(params, cache, d_out, grads, d_table)
        else:
            rnn_cache, last, shape = cache
            H = self.char_hidden
            d_hidden = np.zeros(shape, table.dtype)
            d_hidden[np.arange(U), last, :H] = d_out[:, :H]
            d_hidden[:, 0, H:] += d_out[:, H:]
            d_emb, rnn_grads = self.char_rnn.backward(params, rnn_cache, d_hidden)
            grads.update(rnn_grads)
            ops_cpu.embedding_backward(batch.char_ids, d_emb, d_table)
        grads["emb.char"] = d_table

    def _char_lstm_backward(self, params, cache: _CharLSTMCache, d_out, grads, d_table):
        table = params["emb.char"]
        H = self.char_hidden
        workspace = self.char_rnn.workspace
        d_out = d_out if cache.order is None else d_out[cache.order]
        # The words' vectors read final states only: no gradient reaches the outputs of the
        # other steps (one zero array, its first rows serving every group).
        widest = max((piece.size for _, _, piece in cache.pieces), default=0)
        zeros = np.zeros(widest * H, table.dtype)
        directions = ("fwd", "bwd")

        def backward(k: int):
            layer = self.char_rnn._direction_params(params, 0, directions[k])
            W = layer["W"]
            gathered = dict(layer, W=np.empty((0, W.shape[1]), W.dtype))
            d_rows = np.zeros((table.shape[0], W.shape[1]), W.dtype)
            part = np.empty_like(d_rows)
            sums = {name: np.zeros_like(layer[name]) for name in ("U", "b")}
            for (a, b, piece), dir_cache in zip(cache.pieces, cache.caches[k], strict=True):
                d_pre = workspace.take(piece.shape + (W.shape[1],), W.dtype)
                _, g, _, _ = direction_backward(
                    gathered, dir_cache, zeros[:piece.size * H].reshape(piece.shape + (H,)),
                    d_h_last=np.ascontiguousarray(d_out[a:b, k * H:(k + 1) * H]),
                    d_pre=d_pre)
                # The projections' gradients (zero at padding), summed per character.
                ops_cpu.embedding_backward(piece, d_pre, part)
                d_rows += part
                workspace.give((d_pre,))
                workspace.give(dir_cache.pooled)
                for name in ("U", "b"):
                    sums[name] += g[name]
            sums["W"] = table.T @ d_rows
            return sums, d_rows @ W.T

        results = run_directions([functools.partial(backward, k) for k in range(2)],
                                 self.char_rnn._work(int(cache.lengths.sum())))
        np.add(results[0][1], results[1][1], out=d_table)
        for k, (g, _) in enumerate(results):
            for name, value in g.items():
                grads[self.char_rnn._key(0, directions[k]) + name] = value

    @staticmethod
    def _lookup(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = np.empty(ids.shape + (table.shape[1],), table.dtype)
        ops_cpu.embedding_lookup(table, ids, out)
        return out

    def forward(self, params, batch: TokenBatch, rng: np.random.Generator | None = None,
                need_backward: bool = True):
        """Token vectors (B, T, output_size); ``rng`` given means training (dropout on);
        ``need_backward=False`` (prediction) keeps nothing for :meth:`backward`."""
        word_table = params["emb.word"]
        B, T = batch.word_ids.shape
        dtype = word_table.dtype
        parts = [self._lookup(word_table, batch.word_ids)]
        if self.shape_dim:
            parts.append(self._lookup(params["emb.shape"], batch.shape_ids))
        char_cache = None
        if self.char_encoder is not None:
            per_word, char_cache = self._chars_forward(params, batch, need_backward)
            parts.append(self._lookup(per_word, batch.word_slots))
        if self.context is not None:
            if batch.tokens is None:
                raise ValueError("contextual character embeddings need the batch's tokens")
            parts.append(self.context.features(params, batch.tokens, T))
        x = np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]
        mask = None
        if rng is not None and self.dropout > 0:
            mask = dropout_mask(rng, x.shape, self.dropout, dtype)
            x *= mask
        return x, (mask, char_cache)

    def backward(self, params, batch: TokenBatch, cache, dx: np.ndarray) -> dict[str, np.ndarray]:
        """Parameter gradients from the gradient ``dx`` of the token vectors."""
        mask, char_cache = cache
        if mask is not None:
            dx = dx * mask
        grads = {}
        d_word = np.empty_like(params["emb.word"])
        ops_cpu.embedding_backward(batch.word_ids, np.ascontiguousarray(dx[:, :, : self.word_dim]),
                                   d_word)
        grads["emb.word"] = d_word
        offset = self.word_dim
        if self.shape_dim:
            d_shape = np.empty_like(params["emb.shape"])
            ops_cpu.embedding_backward(
                batch.shape_ids, np.ascontiguousarray(dx[:, :, offset: offset + self.shape_dim]),
                d_shape)
            grads["emb.shape"] = d_shape
            offset += self.shape_dim
        if self.char_encoder is not None:
            d_per_word = np.empty((batch.char_ids.shape[0], self.char_size), dx.dtype)
            ops_cpu.embedding_backward(
                batch.word_slots, np.ascontiguousarray(dx[:, :, offset: offset + self.char_size]),
                d_per_word)
            self._chars_backward(params, batch, char_cache, d_per_word, grads)
        return grads


@dataclass
class NumericBatch:
    """A padded batch of standardised numeric sequences.

    Attributes
    ----------
    x : ndarray (B, T, D)
        Values, 0 at padding.
    lengths : ndarray (B,) of int64
        Steps per sequence.
    """

    x: np.ndarray
    lengths: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


class NumericFeaturizer:
    """The inputs of numeric sequences go to the network as they are (already standardised);
    the recurrent layer's input projection is their learned linear map.

    Parameters
    ----------
    n_features : int
        Values per step.
    """

    def __init__(self, n_features: int):
        if n_features < 1:
            raise ValueError(f"n_features must be positive, got {n_features}")
        self.output_size = n_features

    def param_shapes(self) -> dict[str, tuple]:
        """No parameters of its own."""
        return {}

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """No parameters of its own."""
        return {}

    def forward(self, params, batch: NumericBatch, rng: np.random.Generator | None = None,
                need_backward: bool = True):
        """The batch's values (B, T, D) in the parameters' dtype."""
        dtype = next(iter(params.values())).dtype if params else batch.x.dtype
        return batch.x.astype(dtype, copy=False), None

    def backward(self, params, batch: NumericBatch, cache, dx: np.ndarray) -> dict[str, np.ndarray]:
        """No parameter gradients."""
        return {}
