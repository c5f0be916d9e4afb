"""The tagging network: inputs → stacked (bi)RNN → dropout → linear → CRF or softmax head."""

from __future__ import annotations

import numpy as np

from . import init
from .heads import CRFHead, SoftmaxHead, linear_backward, linear_forward
from .recurrent import RNNStack, dropout_mask


class TaggingNetwork:
    """A recurrent sequence labeller over (B, T, D) float inputs.

    Parameters
    ----------
    input_size : int
        Width D of the inputs (embeddings, features).
    num_tags : int
        Number of output tags K.
    cell : {"lstm", "gru", "rnn", "irnn"}
        Recurrent cell.
    hidden_size : int
        State width per direction.
    num_layers : int
        Stacked recurrent layers.
    bidirectional : bool
        Read each sequence in both directions.
    crf : bool
        Linear-chain CRF head (True) or independent per-token softmax (False).
    dropout : float
        Dropout between recurrent layers and on the last recurrent output, during training.
    allowed_start, allowed_end, allowed_trans : ndarray of bool, optional
        Transition constraints of the CRF head (see :class:`CRFHead`).
    """

    def __init__(self, input_size: int, num_tags: int, cell: str = "lstm", hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = True, crf: bool = True,
                 dropout: float = 0.0, allowed_start=None, allowed_end=None, allowed_trans=None):
        if num_tags < 1:
            raise ValueError("num_tags must be positive")
        self.rnn = RNNStack(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
        self.num_tags = num_tags
        self.dropout = dropout
        self.head = CRFHead(allowed_start, allowed_end, allowed_trans) if crf else SoftmaxHead()

    def set_device(self, device: str) -> None:
        """Run the recurrent layers and the CRF with the kernels of ``device``."""
        self.rnn.device = device
        if hasattr(self.head, "device"):
            self.head.device = device

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order."""
        shapes = self.rnn.param_shapes()
        shapes["out.W"] = (self.rnn.output_size, self.num_tags)
        shapes["out.b"] = (self.num_tags,)
        shapes.update(self.head.param_shapes(self.num_tags))
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters for the whole network."""
        params = self.rnn.init_params(rng, dtype)
        params["out.W"] = init.glorot_uniform(rng, (self.rnn.output_size, self.num_tags), dtype)
        params["out.b"] = np.zeros(self.num_tags, dtype)
        params.update(self.head.init_params(self.num_tags, rng, dtype))
        return params

    def _forward(self, params, x, lengths, rng, need_backward=True):
        hidden, rnn_cache = self.rnn.forward(params, x, lengths, rng, need_backward)
        mask = None
        if rng is not None and self.dropout > 0:
            mask = dropout_mask(rng, hidden.shape, self.dropout, hidden.dtype)
            hidden = hidden * mask
        scores = linear_forward(hidden, params["out.W"], params["out.b"])
        return scores, (hidden, mask, rnn_cache)

    def scores(self, params, x, lengths) -> np.ndarray:
        """Emission scores (B, T, K) in inference mode."""
        return self._forward(params, x, lengths, None, need_backward=False)[0]

    def loss_and_grads(self, params, x, lengths, tags, rng: np.random.Generator | None = None):
        """Loss on a batch and its gradients.

        Parameters
        ----------
        params : dict
            Network parameters.
        x : ndarray (B, T, D)
            Inputs.
        lengths : ndarray (B,) of int64
            Valid steps per sequence.
        tags : ndarray (B, T) of int
            Gold tag indices (padding ignored).
        rng : numpy.random.Generator, optional
            Given during training: draws the dropout masks.

        Returns
        -------
        loss : float
            Mean over sequences.
        grads : dict
            Gradients for every parameter.
        dx : ndarray (B, T, D)
            Gradient with respect to the inputs (for layers below, e.g. embeddings).
        """
        scores, (hidden, mask, rnn_cache) = self._forward(params, x, lengths, rng)
        loss, d_scores, grads = self.head.loss(params, scores, tags, lengths)
        d_hidden, grads["out.W"], grads["out.b"] = linear_backward(hidden, params["out.W"],
                                                                   d_scores)
        if mask is not None:
            d_hidden *= mask
        dx, rnn_grads = self.rnn.backward(params, rnn_cache, d_hidden)
        grads.update(rnn_grads)
        return loss, grads, dx

    def predict(self, params, x, lengths) -> np.ndarray:
        """Best tag indices (B, T), -1 at padding."""
        return self.head.decode(params, self.scores(params, x, lengths), lengths)

    def predict_marginals(self, params, x, lengths) -> np.ndarray:
        """Per-position tag probabilities (B, T, K), zero at padding."""
        return self.head.marginals(params, self.scores(params, x, lengths), lengths)
