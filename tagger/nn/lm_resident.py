"""The character language model on the GPU, everything on the device: the parameters, Adam's or
SGD's state, the activations of a segment and the state carried from segment to segment stay in
GPU memory; only the character ids of each segment go over, and only the loss and the gradient
norm come back.

It runs :class:`~tagger.nn.language_model.CharLMNetwork`'s layers in the same order and with the
same random draws (the dropout masks are the same counter-based streams on either device), on
the kernels of :mod:`tagger.nn.resident` and ``tagger/kernels/*_cuda.py`` (the first layer
reads the masked embedding table's rows and multiplies them by its input weights, where the CPU
gathers rows of their product: the same values up to rounding): a training step here
computes what :meth:`CharLMNetwork.loss_and_grads` followed by
:func:`~tagger.nn.training.apply_gradients` computes on the CPU, within float rounding (the
embedding gradient adds its rows with atomics, in no fixed order).
"""

from __future__ import annotations

import numpy as np

from ..kernels import ops_cuda
from ..kernels.memory_cuda import empty as _empty
from ..kernels.memory_cuda import to_device as _to_device
from .language_model import CharLMNetwork, State
from .optim import Optimizer
from .recurrent import direction_backward, direction_forward
from .resident import (
    DeviceEngine,
    _masked,
    dropout_mask,
    linear_backward,
    linear_forward,
    upload_flat,
)


class DeviceState:
    """The recurrent state of B streams on the device: per layer ``h`` (B, H) and, for the LSTM,
    ``c``, in arrays of their own (outside any arena), written in place after each segment."""

    def __init__(self, network: CharLMNetwork, batch: int, dtype):
        from numba import cuda

        H = network.hidden_size
        lstm = network.cell == "lstm"
        self.layers = []
        for _ in range(network.num_layers):
            h = cuda.to_device(np.zeros((batch, H), dtype))
            c = cuda.to_device(np.zeros((batch, H), dtype)) if lstm else None
            self.layers.append((h, c))

    def store(self, new: list) -> None:
        """Copy the final states of a segment (device arrays, maybe an arena's) into place."""
        for (h, c), (h_new, c_new) in zip(self.layers, new, strict=True):
            h.copy_to_device(h_new)
            if c is not None:
                c.copy_to_device(c_new)

    def to_host(self) -> State:
        return [(h.copy_to_host(), None if c is None else c.copy_to_host())
                for h, c in self.layers]


class LMDeviceEngine(DeviceEngine):
    """Training steps and scoring of a character language model on the GPU.

    ``network`` is the CharLMNetwork; ``params`` (host arrays) and ``optimizer`` (for training)
    are uploaded as :class:`~tagger.nn.resident.DeviceEngine` says.
    """

    def __init__(self, network: CharLMNetwork, params: dict, optimizer: Optimizer | None = None):
        super().__init__(upload_flat(params), params, optimizer)
        self.network = network

    def initial_state(self, batch: int) -> DeviceState:
        return DeviceState(self.network, batch, self.dtype)

    def _layer(self, arrays, layer: int) -> dict:
        key = self.network._key(layer)
        return {name[len(key):]: value for name, value in arrays.items()
                if name.startswith(key)}

    def _forward(self, ids, state: DeviceState, rng):
        """Embeddings and recurrent layers over one segment of device ids (B, T): the top
        outputs, the new states (arena arrays) and what the backward pass needs."""
        net, p = self.network, self.device_params
        B, T = ids.shape
        lengths = _to_device(np.full(B, T, np.int64))
        train = rng is not None and net.dropout > 0
        table, table_mask = p["emb.char"], None
        if train:  # one mask on the table per segment, drawn first (as on the CPU)
            table_mask = dropout_mask(rng, table.shape, net.dropout, self.dtype)
            table = _masked(table, table_mask)
        x = _empty((B, T, net.embedding_dim), self.dtype)
        ops_cuda.embedding_lookup(table, ids, x)
        layers, new_state = [], []
        for layer in range(net.num_layers):
            mask = None
            if train and layer > 0:
                mask = dropout_mask(rng, x.shape, net.dropout, self.dtype)
                x = _masked(x, mask)
            h0, c0 = state.layers[layer]
            x, h_last, c_last, cache = direction_forward(
                net.cell, self._layer(p, layer), x, lengths, reverse=False, h0=h0, c0=c0,
                device="cuda")
            layers.append((mask, cache))
            new_state.append((h_last, c_last))
        out_mask = None
        if train:
            out_mask = dropout_mask(rng, x.shape, net.dropout, self.dtype)
            x = _masked(x, out_mask)
        return x, new_state, (layers, out_mask, table_mask)

    def _losses(self, top, targets, scale: float):
        """Per-character losses (float64, on the device) and their gradient w.r.t. the
        logits."""
        p = self.device_params
        B, T, _ = top.shape
        V = self.network.vocab_size
        logits = linear_forward(top, p["out.W"], p["out.b"]).reshape((B * T, V))
        losses = _empty(B * T, np.float64)
        d_logits = _empty((B * T, V), self.dtype)
        ops_cuda.softmax_xent_rows(logits, targets.reshape(B * T),
                                   _to_device(np.ones(B * T, np.float64)), scale, losses,
                                   d_logits)
        return losses, d_logits.reshape((B, T, V))

    def step(self, inputs: np.ndarray, targets: np.ndarray, state: DeviceState, rng,
             clip_norm: float | None) -> float:
        """One step of truncated backpropagation through time on a segment (host ids (B, T));
        ``state`` is read and replaced by the segment's final state. Returns the mean loss
        before the update.

        Raises
        ------
        FloatingPointError
            When the loss or the gradients are not finite; the parameters are left unchanged.
        """
        self._check_trainable()
        net, p, g = self.network, self.device_params, self.grads
        B, T = inputs.shape
        n = B * T
        with self.arena.active():
            ids = _to_device(np.ascontiguousarray(inputs, np.int64))
            labels = _to_device(np.ascontiguousarray(targets, np.int64))
            top, new_state, (layers, out_mask, table_mask) = self._forward(ids, state, rng)
            losses, d_logits = self._losses(top, labels, 1.0 / n)
            d, _, _ = linear_backward(top, p["out.W"], d_logits, g["out.W"], g["out.b"])
            if out_mask is not None:
                ops_cuda.multiply(d, out_mask, d)
            for layer in range(net.num_layers - 1, -1, -1):
                mask, cache = layers[layer]
                d, _, _, _ = direction_backward(self._layer(p, layer), cache, d,
                                                out=self._layer(g, layer))
                if mask is not None:
                    ops_cuda.multiply(d, mask, d)
            ops_cuda.embedding_backward(ids, d, g["emb.char"])
            if table_mask is not None:
                ops_cuda.multiply(g["emb.char"], table_mask, g["emb.char"])
            total, norm = self.norms(losses, g)
            state.store(new_state)
        return self._update(total, norm, n, clip_norm)

    def log_likelihood(self, inputs: np.ndarray, targets: np.ndarray,
                       state: DeviceState) -> tuple[float, int]:
        """:meth:`CharLMNetwork.log_likelihood` on the device: the sum of the natural-log
        probabilities of the targets (float64) and their number; ``state`` is replaced by the
        segment's final state."""
        B, T = inputs.shape
        with self.arena.active():
            ids = _to_device(np.ascontiguousarray(inputs, np.int64))
            labels = _to_device(np.ascontiguousarray(targets, np.int64))
            top, new_state, _ = self._forward(ids, state, None)
            losses, _ = self._losses(top, labels, 1.0)
            total = float(losses.copy_to_host().sum(dtype=np.float64))
            state.store(new_state)
        return -total, B * T
