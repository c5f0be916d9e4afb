"""The encoder–decoder with attention on the GPU, everything on the device: the parameters and
Adam's or SGD's state stay in GPU memory for an epoch, the activations of a training step and
the decoding state of a search too; only the symbol ids go over, and only the loss, the gradient
norm and each decoding step's log-probabilities come back.

It runs :class:`~tagger.nn.transducer.TransducerNetwork`'s layers in the same order and with the
same random draws (a dropout mask is the same counter-based stream on either device), on the
kernels of :mod:`tagger.nn.resident` and ``tagger/kernels/*_cuda.py``: a training step here
computes what :meth:`TransducerNetwork.loss_and_grads` followed by
:func:`~tagger.nn.training.apply_gradients` computes on the CPU, within float rounding (the
embedding gradients add their rows with atomics, in no fixed order). The decoder's steps run one
after the other as on the CPU; what does not feed the next step (the output layer and its
softmax, and the weight gradients of the output, combination and attention layers) runs once
over all the steps of the batch.

Decoding (greedy, beam search, teacher-forced scoring) is the CPU's code in
:mod:`tagger.nn.transducer` driven through :class:`DeviceDecoder`: the search's bookkeeping stays
on the host and reads each step's log-probabilities, which are (rows, target vocabulary).
"""

from __future__ import annotations

import numpy as np

from ..kernels import attention_cuda, ops_cuda
from ..kernels.memory_cuda import empty as _empty
from ..kernels.memory_cuda import to_device as _to_device
from ..kernels.rnn_cuda import column_sums, gemm
from .optim import Optimizer
from .recurrent import direction_backward, direction_forward
from .resident import (
    DeviceEngine,
    _paired,
    dropout_mask,
    linear_backward,
    linear_forward,
    stack_backward,
    stack_forward,
    upload_flat,
)
from .transducer import (
    TransducerNetwork,
    beam_search_batch,
    forced_log_likelihood,
    greedy_search,
    log_softmax64,
)


def _zeros(shape, dtype):
    out = _empty(shape, dtype)
    ops_cuda.fill(out, 0)
    return out


class TransducerDeviceEngine(DeviceEngine):
    """Training steps and decoding of an encoder–decoder on the GPU.

    ``network`` is the TransducerNetwork; ``params`` (host arrays) and ``optimizer`` (for training)
    are uploaded as :class:`~tagger.nn.resident.DeviceEngine` says.
    """

    def __init__(self, network: TransducerNetwork, params: dict,
                 optimizer: Optimizer | None = None):
        pairs = ([f"{network.encoder.prefix}.{layer}" for layer in range(network.num_layers)]
                 if _paired(network.encoder) else [])
        super().__init__(upload_flat(params, pairs), params, optimizer)
        self.network = network

    # ----------------------------------------------------------------------------------------------
    # layers

    def _dec(self, arrays) -> dict:
        return {"W": arrays["dec.W"], "U": arrays["dec.U"], "b": arrays["dec.b"]}

    def _encode(self, src: np.ndarray, src_lengths: np.ndarray, features, rng):
        """The encoder over checked host arrays: its states (B, S, 2H) and the decoder's initial
        state on the device, the device lengths and what the backward pass needs."""
        net, p = self.network, self.device_params
        B, S = src.shape
        E, F, H = net.embedding_dim, net.feature_dim, net.hidden_size
        valid = np.arange(S)[None, :] < src_lengths[:, None]
        columns = [np.where(valid, src, -1)]
        for i in range(len(net.feature_sizes)):
            columns.append(np.where(valid, features[:, i][:, None], -1))
        ids = _to_device(np.ascontiguousarray(np.stack(columns), np.int64))  # (1 + n, B, S)
        lengths = _to_device(np.ascontiguousarray(src_lengths, np.int64))
        x = _empty((B, S, net.input_size), self.dtype)
        ops_cuda.gather_columns(p["src.emb"], ids[0], x, 0)
        for i in range(len(net.feature_sizes)):
            ops_cuda.gather_columns(p[f"feat.{i}.emb"], ids[1 + i], x, E + i * F)
        in_mask = None
        if rng is not None and net.dropout > 0:
            in_mask = dropout_mask(rng, x.shape, net.dropout, self.dtype)
            ops_cuda.multiply(x, in_mask, x)
        enc, caches = stack_forward(net.encoder, p, x, lengths, rng)
        summary = _empty((B, 2 * H), self.dtype)
        ops_cuda.last_pool(enc, lengths, H, True, summary)
        h0 = linear_forward(summary, p["init.W"], p["init.b"])
        ops_cuda.tanh(h0, h0)
        return enc, lengths, h0, (ids, in_mask, caches, summary)

    def _step(self, enc, lengths, ones, y, a_prev, h, c, u, q, alpha, joined, a):
        """One decoder step from the device ids ``y`` (B,) (``ones``: B device ones, the
        LSTM's lengths): writes the decoder input ``u``, the query ``q``, the attention
        ``alpha``, ``joined`` = [context; h] and the attentional state ``a`` (given arrays),
        and returns the new (h, c) and the LSTM's cache."""
        p = self.device_params
        B = a_prev.shape[0]
        E, H = self.network.embedding_dim, self.network.hidden_size
        ops_cuda.gather_columns(p["tgt.emb"], y, u, 0)
        ops_cuda.copy_columns(a_prev, u, E)
        _, h, c, cache = direction_forward("lstm", self._dec(p), u.reshape((B, 1, E + H)),
                                           ones, h0=h, c0=c, device="cuda")
        gemm(h, p["att.W"], q)
        ctx = _empty((B, 2 * H), self.dtype)
        attention_cuda.attention_forward(enc, lengths, q, alpha, ctx)
        ops_cuda.copy_columns(ctx, joined, 0)
        ops_cuda.copy_columns(h, joined, 2 * H)
        gemm(joined, p["comb.W"], a)
        ops_cuda.add_bias(a, p["comb.b"])
        ops_cuda.tanh(a, a)
        return h, c, cache

    def _ones(self, B: int):
        ones = _empty(B, np.int64)
        ops_cuda.fill(ones, 1)
        return ones

    # ----------------------------------------------------------------------------------------------
    # training

    def step(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, features=None, rng=None,
             clip_norm: float | None = None) -> float:
        """One training step on a batch (host arrays as :meth:`TransducerNetwork.loss_and_grads`
        takes them): the mean loss before the update, or a ``FloatingPointError`` with the
        parameters unchanged when the loss or the gradients are not finite."""
        self._check_trainable()
        net, p, g = self.network, self.device_params, self.grads
        src, src_lengths, tgt_in, tgt_out, tgt_lengths, features = net._check(
            src, src_lengths, tgt_in, tgt_out, tgt_lengths, features)
        B, T = tgt_in.shape
        E, F, H = net.embedding_dim, net.feature_dim, net.hidden_size
        S = src.shape[1]
        dtype = self.dtype
        valid = np.arange(T)[None, :] < tgt_lengths[:, None]
        n = int(valid.sum())
        with self.arena.active():
            enc, lengths, h, (ids, in_mask, caches, summary) = self._encode(
                src, src_lengths, features, rng)
            h0 = h
            # Per step, time-major so that every step's slice is contiguous.
            y_in = _to_device(np.ascontiguousarray(tgt_in.T, np.int64))  # (T, B)
            U_ = _empty((T, B, E + H), dtype)
            Q = _empty((T, B, 2 * H), dtype)
            ALPHA = _empty((T, B, S), dtype)
            JOINED = _empty((T, B, 3 * H), dtype)
            A = _empty((T, B, H), dtype)
            HS = _empty((T, B, H), dtype)
            train = rng is not None and net.dropout > 0
            A_OUT = _empty((T, B, H), dtype) if train else A
            c = _zeros((B, H), dtype)
            a = _zeros((B, H), dtype)
            cells, masks = [], []
            ones = self._ones(B)
            for t in range(T):
                h, c, cache = self._step(enc, lengths, ones, y_in[t], a, h, c, U_[t], Q[t],
                                         ALPHA[t], JOINED[t], A[t])
                ops_cuda.copy_columns(h, HS[t], 0)
                a = A[t]
                cells.append(cache)
                if train:
                    mask = dropout_mask(rng, (B, H), net.dropout, dtype)
                    ops_cuda.multiply(a, mask, A_OUT[t])
                    masks.append(mask)
            # The output layer and its loss over every step at once.
            logits = linear_forward(A_OUT, p["out.W"], p["out.b"]).reshape((T * B,
                                                                             net.target_size))
            labels = _to_device(np.ascontiguousarray(tgt_out.T, np.int64).reshape(T * B))
            weights = _to_device(np.ascontiguousarray(valid.T, np.float64).reshape(T * B))
            losses = _empty(T * B, np.float64)
            d_logits = _empty((T * B, net.target_size), dtype)
            ops_cuda.softmax_xent_rows(logits, labels, weights, 1.0 / n, losses, d_logits)
            d_A, _, _ = linear_backward(A_OUT, p["out.W"],
                                        d_logits.reshape((T, B, net.target_size)),
                                        g["out.W"], g["out.b"])
            # Back through the decoder's steps.
            D_PRE = _empty((T, B, H), dtype)
            DQ = _empty((T, B, 2 * H), dtype)
            DU = _empty((T, B, E + H), dtype)
            d_enc = _zeros(enc.shape, dtype)
            d_joined = _empty((B, 3 * H), dtype)
            d_ctx = _empty((B, 2 * H), dtype)
            d_alpha = _empty((B, S), dtype)
            d_h = _zeros((B, H), dtype)
            d_c = _zeros((B, H), dtype)
            d_a_next = _zeros((B, H), dtype)
            for name in ("dec.W", "dec.U", "dec.b"):
                ops_cuda.fill(g[name], 0)
            for t in range(T - 1, -1, -1):
                d_a = d_A[t]
                if train:
                    ops_cuda.multiply(d_a, masks[t], d_a)
                ops_cuda.add(d_a, d_a_next, d_a)
                ops_cuda.tanh_backward(A[t], d_a, D_PRE[t])
                gemm(D_PRE[t], p["comb.W"], d_joined, trans_b=True)
                ops_cuda.take_columns(d_joined, 0, d_ctx)
                attention_cuda.attention_backward(enc, lengths, Q[t], ALPHA[t], d_ctx, d_enc,
                                                  DQ[t], d_alpha)
                d_h_out = _empty((B, H), dtype)
                ops_cuda.take_columns(d_joined, 2 * H, d_h_out)
                gemm(DQ[t], p["att.W"], d_h_out, trans_b=True, accumulate=True)
                du, grads, d_h, d_c = direction_backward(
                    self._dec(p), cells[t], d_h_out.reshape((B, 1, H)), d_h_last=d_h,
                    d_c_last=d_c)
                for name, value in grads.items():
                    ops_cuda.add(g[f"dec.{name}"], value, g[f"dec.{name}"])
                du = du.reshape((B, E + H))
                ops_cuda.copy_columns(du, DU[t], 0)
                d_a_next = _empty((B, H), dtype)
                ops_cuda.take_columns(du, E, d_a_next)
            # The weight gradients of the per-step layers, over every step at once.
            gemm(_rows(JOINED), _rows(D_PRE), g["comb.W"], trans_a=True)
            column_sums(_rows(D_PRE), g["comb.b"])
            gemm(_rows(HS), _rows(DQ), g["att.W"], trans_a=True)
            ops_cuda.scatter_columns(y_in, DU, 0, g["tgt.emb"])
            # The decoder's initial state came from the encoder's summary.
            d_init = _empty((B, H), dtype)
            ops_cuda.tanh_backward(h0, d_h, d_init)
            d_summary, _, _ = linear_backward(summary, p["init.W"], d_init, g["init.W"],
                                              g["init.b"])
            d_last = _empty(enc.shape, dtype)
            ops_cuda.last_pool_backward(lengths, H, True, d_summary, d_last)
            ops_cuda.add(d_enc, d_last, d_enc)
            dx, _ = stack_backward(net.encoder, p, caches, d_enc, g)
            if in_mask is not None:
                ops_cuda.multiply(dx, in_mask, dx)
            ops_cuda.scatter_columns(ids[0], dx, 0, g["src.emb"])
            for i in range(len(net.feature_sizes)):
                ops_cuda.scatter_columns(ids[1 + i], dx, E + i * F, g[f"feat.{i}.emb"])
            total, norm = self.norms(losses, g)
        return self._update(total, norm, n, clip_norm)

    # ----------------------------------------------------------------------------------------------
    # decoding

    def greedy(self, src, src_lengths, bos: int, eos: int, max_length: int,
               features=None) -> list[list[int]]:
        """:meth:`TransducerNetwork.greedy` on the device."""
        with self.arena.active():
            return greedy_search(DeviceDecoder(self), src, src_lengths, bos, eos, max_length,
                                 features)

    def beam_search_batch(self, src, src_lengths, bos: int, eos: int, max_length: int,
                          beam_size: int = 5, length_penalty: float = 0.0, features=None,
                          n_best: int = 1) -> list[list[tuple[list[int], float, bool]]]:
        """:meth:`TransducerNetwork.beam_search_batch` on the device."""
        with self.arena.active():
            return beam_search_batch(DeviceDecoder(self), src, src_lengths, bos, eos,
                                     max_length, beam_size, length_penalty, features, n_best)

    def log_likelihood(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                       features=None) -> np.ndarray:
        """:meth:`TransducerNetwork.log_likelihood` on the device."""
        src, src_lengths, tgt_in, tgt_out, tgt_lengths, features = self.network._check(
            src, src_lengths, tgt_in, tgt_out, tgt_lengths, features)
        with self.arena.active():
            return forced_log_likelihood(DeviceDecoder(self), src, src_lengths, tgt_in, tgt_out,
                                         tgt_lengths, features)

class DeviceDecoder:
    """:class:`~tagger.nn.transducer.HostDecoder`'s steps on the device, for the searches of
    :mod:`tagger.nn.transducer`: the state ``(enc, src_lengths, a, h, c)`` is device arrays (of
    the engine's active arena: use it inside one :meth:`Arena.active` block)."""

    def __init__(self, engine: TransducerDeviceEngine):
        self.engine = engine

    def start(self, src, src_lengths, features=None) -> tuple:
        engine = self.engine
        src, src_lengths, features = engine.network._check(src, src_lengths,
                                                           features=features)
        enc, lengths, h, _ = engine._encode(src, src_lengths, features, None)
        B, H = enc.shape[0], engine.network.hidden_size
        return (enc, lengths, _zeros((B, H), engine.dtype), h, _zeros((B, H), engine.dtype))

    def advance(self, state: tuple, y) -> tuple[np.ndarray, tuple]:
        engine, net = self.engine, self.engine.network
        enc, lengths, a_prev, h, c = state
        B, S, _ = enc.shape
        E, H = net.embedding_dim, net.hidden_size
        dtype = engine.dtype
        ids = _to_device(np.ascontiguousarray(y, np.int64).reshape(B))
        a = _empty((B, H), dtype)
        h, c, _ = engine._step(enc, lengths, engine._ones(B), ids, a_prev, h, c,
                               _empty((B, E + H), dtype),
                               _empty((B, 2 * H), dtype), _empty((B, S), dtype),
                               _empty((B, 3 * H), dtype), a)
        p = engine.device_params
        logits = linear_forward(a, p["out.W"], p["out.b"])
        return log_softmax64(logits.copy_to_host()), (enc, lengths, a, h, c)

    def take(self, state: tuple, rows: np.ndarray) -> tuple:
        index = _to_device(np.ascontiguousarray(rows, np.int64))
        out = []
        for part in state:
            taken = _empty((len(rows), *part.shape[1:]), part.dtype)
            ops_cuda.take_rows(part, index, taken)
            out.append(taken)
        return tuple(out)


def _rows(a):
    """A (T, B, F) device array as (T*B, F)."""
    return a.reshape((a.shape[0] * a.shape[1], a.shape[2]))
