"""A self-contained demonstration of the engine on a built-in synthetic task.

The task needs right context: each token must be tagged with the symbol that comes two steps
*later* in the sequence (or ``END`` when the sequence stops before that). A bidirectional network
can see the future and learns the task; a forward-only one can only guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .nn.network import TaggingNetwork
from .nn.optim import Adam
from .nn.training import length_batches, pad_sequences, thread_limit, train_step


def lookahead_task(n_sequences: int, vocab: int = 6, shift: int = 2, min_len: int = 4,
                   max_len: int = 14, seed: int = 0):
    """Random symbol sequences tagged with the symbol ``shift`` steps ahead.

    Returns
    -------
    tokens : list of ndarray of int
        Symbols in ``[0, vocab)``.
    tags : list of ndarray of int
        ``tokens[t + shift]``, or ``vocab`` (the END tag) near the end.
    """
    rng = np.random.default_rng(seed)
    tokens, tags = [], []
    for _ in range(n_sequences):
        seq = rng.integers(0, vocab, size=int(rng.integers(min_len, max_len + 1)))
        tag = np.full(len(seq), vocab)
        tag[: max(len(seq) - shift, 0)] = seq[shift:]
        tokens.append(seq)
        tags.append(tag)
    return tokens, tags


def _one_hot(sequences, vocab):
    return [np.eye(vocab, dtype=np.float32)[s] for s in sequences]


def token_accuracy(predicted: np.ndarray, gold: np.ndarray, lengths: np.ndarray) -> float:
    """Share of valid positions where the predicted tag equals the gold one."""
    mask = np.arange(gold.shape[1])[None, :] < lengths[:, None]
    return float((predicted == gold)[mask].mean())


def train_lookahead(bidirectional: bool = True, cell: str = "lstm", crf: bool = True,
                    epochs: int = 8, n_train: int = 600, n_test: int = 200, hidden_size: int = 32,
                    seed: int = 0, threads: int | None = None,
                    log: Callable[[str], None] | None = None) -> float:
    """Train a recurrent tagger on :func:`lookahead_task` and return its held-out token accuracy.

    Parameters
    ----------
    bidirectional : bool
        Read sequences in both directions.
    cell : str
        Recurrent cell.
    crf : bool
        CRF head (else per-token softmax).
    epochs : int
        Passes over the training sequences.
    n_train, n_test : int
        Numbers of training and held-out sequences.
    hidden_size : int
        State width per direction.
    seed : int
        Seed of the data and of the training.
    threads : int, optional
        Numba and BLAS threads.
    log : callable, optional
        Receives one line per epoch.

    Returns
    -------
    float
        Token accuracy on the held-out sequences.
    """
    vocab = 6
    tokens, tags = lookahead_task(n_train + n_test, vocab=vocab, seed=seed)
    x_all = _one_hot(tokens, vocab)
    net = TaggingNetwork(vocab, vocab + 1, cell=cell, hidden_size=hidden_size,
                         bidirectional=bidirectional, crf=crf)
    rng = np.random.default_rng(seed)
    params = net.init_params(rng)
    optimizer = Adam(0.02)
    x_test, lengths_test = pad_sequences(x_all[n_train:])
    y_test, _ = pad_sequences(tags[n_train:], dtype=np.int64)
    accuracy = 0.0
    with thread_limit(threads):
        for epoch in range(1, epochs + 1):
            start, total = time.perf_counter(), 0.0
            for batch in length_batches([len(t) for t in tokens[:n_train]], 32, rng):
                x, lengths = pad_sequences([x_all[i] for i in batch])
                y, _ = pad_sequences([tags[i] for i in batch], dtype=np.int64)
                loss, _ = train_step(net, params, optimizer, x, lengths, y, rng, clip_norm=5.0)
                total += loss * len(batch)
            predicted = net.predict(params, x_test, lengths_test)
            accuracy = token_accuracy(predicted, y_test, lengths_test)
            if log is not None:
                log(f"epoch {epoch:2d}  loss {total / n_train:8.4f}  held-out accuracy "
                    f"{accuracy:6.2%}  ({time.perf_counter() - start:.2f} s)")
    return accuracy
