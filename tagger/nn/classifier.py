"""The sequence classification network: (B, T, D) inputs → stacked (bi)RNN → pooling over time →
dropout → linear → softmax cross-entropy (with optional per-class weights)."""

from __future__ import annotations

import numpy as np

from ..kernels import backend
from . import init
from .recurrent import RNNStack, dropout_mask

POOLINGS = ("last", "mean", "max", "attention")


class ClassifierNetwork:
    """A recurrent sequence-to-label network.

    Parameters
    ----------
    input_size : int
        Width D of the inputs.
    num_classes : int
        Number of classes C.
    cell, hidden_size, num_layers, bidirectional
        As for :class:`~tagger.nn.recurrent.RNNStack`.
    pooling : {"last", "mean", "max", "attention"}
        How the hidden states of the valid steps become one vector: the final state of each
        direction (the forward direction's last step, the reverse direction's first), their mean,
        their element-wise maximum, or an attention-weighted sum (a learned score per step,
        softmax over the valid steps).
    dropout : float
        Dropout between recurrent layers and on the pooled vector, during training.
    """

    def __init__(self, input_size: int, num_classes: int, cell: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 pooling: str = "last", dropout: float = 0.0):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_classes < 2:
            raise ValueError("a classifier needs at least two classes")
        self.rnn = RNNStack(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.device = "cpu"

    def set_device(self, device: str) -> None:
        """Run the recurrent layers and the pooling with the kernels of ``device``."""
        self.device = device
        self.rnn.device = device

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order."""
        shapes = self.rnn.param_shapes()
        size = self.rnn.output_size
        if self.pooling == "attention":
            shapes["attn.w"] = (size,)
        shapes["out.W"] = (size, self.num_classes)
        shapes["out.b"] = (self.num_classes,)
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters."""
        params = self.rnn.init_params(rng, dtype)
        size = self.rnn.output_size
        if self.pooling == "attention":
            # No score bias: it would cancel in the softmax over the steps.
            params["attn.w"] = init.uniform(rng, (size,), 1.0 / np.sqrt(size), dtype)
        params["out.W"] = init.glorot_uniform(rng, (size, self.num_classes), dtype)
        params["out.b"] = np.zeros(self.num_classes, dtype)
        return params

    # ----------------------------------------------------------------------------------------------

    def _pool(self, params, hidden, lengths):
        pool_kernels = backend.kernels(self.device, "pool")
        B, T, P = hidden.shape
        dtype = hidden.dtype
        out = np.empty((B, P), dtype)
        if self.pooling == "last":
            H = self.rnn.hidden_size
            last = np.maximum(lengths - 1, 0)
            out[:, :H] = hidden[np.arange(B), last, :H]
            if self.rnn.bidirectional:
                out[:, H:] = hidden[:, 0, H:]  # the reverse direction ends at step 0
            out[lengths == 0] = 0
            return out, last
        if self.pooling == "mean":
            pool_kernels.mean_pool(hidden, lengths, out)
            return out, None
        if self.pooling == "max":
            argmax = np.empty((B, P), np.int64)
            pool_kernels.max_pool(hidden, lengths, out, argmax)
            return out, argmax
        scores = np.empty((B, T), dtype)
        weights = np.empty((B, T), dtype)
        pool_kernels.attention_pool(hidden, lengths, params["attn.w"], np.zeros(1, dtype), scores,
                                weights, out)
        return out, weights

    def _pool_backward(self, params, hidden, lengths, aux, d_out, grads):
        pool_kernels = backend.kernels(self.device, "pool")
        d_hidden = np.empty_like(hidden)
        if self.pooling == "last":
            H = self.rnn.hidden_size
            B = hidden.shape[0]
            d_hidden[...] = 0
            valid = lengths > 0
            d_hidden[np.arange(B)[valid], aux[valid], :H] = d_out[valid, :H]
            if self.rnn.bidirectional:
                d_hidden[valid, 0, H:] += d_out[valid, H:]
        elif self.pooling == "mean":
            pool_kernels.mean_pool_backward(lengths, d_out, d_hidden)
        elif self.pooling == "max":
            pool_kernels.max_pool_backward(aux, d_out, d_hidden)
        else:
            grads["attn.w"] = np.empty_like(params["attn.w"])
            pool_kernels.attention_pool_backward(hidden, lengths, params["attn.w"], aux,
                                             np.ascontiguousarray(d_out), d_hidden,
                                             grads["attn.w"], np.empty(1, hidden.dtype))
        return d_hidden

    def _forward(self, params, x, lengths, rng, need_backward=True):
        hidden, rnn_cache = self.rnn.forward(params, x, lengths, rng, need_backward)
        pooled, aux = self._pool(params, hidden, lengths)
        mask = None
        if rng is not None and self.dropout > 0:
            mask = dropout_mask(rng, pooled.shape, self.dropout, pooled.dtype)
            pooled = pooled * mask
        logits = pooled @ params["out.W"] + params["out.b"]
        return logits, (hidden, rnn_cache, pooled, aux, mask)

    def logits(self, params, x, lengths) -> np.ndarray:
        """Class scores (B, C) in inference mode."""
        return self._forward(params, x, lengths, None, need_backward=False)[0]

    def predict_proba(self, params, x, lengths) -> np.ndarray:
        """Class probabilities (B, C)."""
        z = self.logits(params, x, lengths)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def loss_and_grads(self, params, x, lengths, labels, rng=None, sample_weight=None):
        """Weighted mean cross-entropy over the batch and its gradients.

        Parameters
        ----------
        params : dict
            Network parameters.
        x : ndarray (B, T, D)
            Inputs, right-padded.
        lengths : ndarray (B,) of int64
            Valid steps per sequence.
        labels : ndarray (B,) of int
            Class indices.
        rng : numpy.random.Generator, optional
            Given during training: draws the dropout masks.
        sample_weight : ndarray (B,), optional
            Weight of each example's loss (e.g. its class weight); the loss is
            ``sum(weight * cross_entropy) / B``.

        Returns
        -------
        loss : float
        grads : dict
        dx : ndarray (B, T, D)
            Gradient with respect to the inputs.
        """
        logits, (hidden, rnn_cache, pooled, aux, mask) = self._forward(params, x, lengths, rng)
        B = logits.shape[0]
        weight = (np.ones(B) if sample_weight is None
                  else np.asarray(sample_weight, dtype=np.float64))
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(shifted).sum(axis=1))
        log_p = shifted[np.arange(B), labels] - log_z
        loss = float(-(weight * log_p).sum() / B)
        d_logits = np.exp(shifted - log_z[:, None])
        d_logits[np.arange(B), labels] -= 1.0
        d_logits *= (weight / B)[:, None]
        d_logits = d_logits.astype(logits.dtype)
        grads = {"out.W": pooled.T @ d_logits, "out.b": d_logits.sum(axis=0)}
        d_pooled = d_logits @ params["out.W"].T
        if mask is not None:
            d_pooled *= mask
        d_hidden = self._pool_backward(params, hidden, lengths, aux, d_pooled, grads)
        dx, rnn_grads = self.rnn.backward(params, rnn_cache, d_hidden)
        grads.update(rnn_grads)
        return loss, grads, dx
