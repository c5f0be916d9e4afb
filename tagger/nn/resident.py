"""The engine on the GPU with everything on the device: parameters, optimizer state and the
activations of a training step stay in GPU memory for a whole epoch; only the batches' ids (or
numeric values) go over, and only the losses, the gradient norm and the predictions come back.

This module and ``tagger/kernels/*_cuda.py`` are the engine's GPU code. It runs the same layers as
:mod:`tagger.nn.features`, :mod:`tagger.nn.network` and :mod:`tagger.nn.classifier`, in the same
order and with the same random draws (a dropout mask is the same counter-based stream on either
device), so a step here computes what the CPU computes, within float rounding:

* token features: embedding gathers straight into their columns of the step vectors, the
  character CNN (window gathering, a matrix product, max pooling) or the character BiLSTM;
* the recurrent stack, through :mod:`tagger.nn.recurrent` on device arrays (a bidirectional LSTM
  layer runs both directions in one launch on parameters kept stacked for it);
* the output layer, the CRF or softmax head, the classifier's pooling;
* the gradient norm (one float64 per parameter, summed on the host in the CPU's order) and the
  SGD or Adam update.

Scatter-adds (embedding gradients) use atomic additions, so the order of their float additions,
and the last bits of a GPU run, may differ from run to run; the CPU engine is the one that is
reproducible bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config
from ..kernels import crf_cuda, ops_cuda, optim_cuda, pool_cuda
from ..kernels.rnn_cuda import column_sums, gemm
from .classifier import ClassifierNetwork
from .features import NumericFeaturizer, TokenFeaturizer
from .heads import CRFHead
from .model import ClassifierModel, TaggerModel
from .optim import SGD, Adam, Optimizer, clip_scale
from .recurrent import (
    PairCache,
    RNNStack,
    direction_backward,
    direction_forward,
    lstm_pair_backward,
    lstm_pair_forward,
)


class DeviceParams(dict):
    """A model's parameters in GPU memory: name → device array, like the host dict.

    ``stacked`` maps a bidirectional LSTM layer that runs both directions in one launch
    (``"rnn.0"``) to its ``W``, ``U`` and ``b`` as (2, ...) arrays; the entries of the two
    directions are views of them, so the optimizer updates them in place. ``crf_masks`` holds the
    CRF's allowed-transition masks once uploaded.
    """

    on_device = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stacked: dict[str, dict] = {}
        self.crf_masks = None


def _stacks(model) -> list[RNNStack]:
    stacks = [model.network.rnn]
    char_rnn = getattr(model.featurizer, "char_rnn", None)
    if char_rnn is not None:
        stacks.append(char_rnn)
    return stacks


def _paired(stack: RNNStack) -> bool:
    """Whether both directions of the stack's layers run in one launch (the character BiLSTM
    too: here it runs on the GPU, whatever its ``device`` says for the host path)."""
    return stack.cell == "lstm" and stack.bidirectional and _config.CUDA_PAIR_DIRECTIONS


def upload_params(model, params: dict) -> DeviceParams:
    """A device copy of ``params`` (host arrays) laid out for ``model``."""
    out = DeviceParams()
    for stack in _stacks(model):
        if not _paired(stack):
            continue
        for layer in range(stack.num_layers):
            key = f"{stack.prefix}.{layer}"
            arrays = {}
            for name in ("W", "U", "b"):
                both = cuda.to_device(np.stack([params[f"{key}.fwd.{name}"],
                                                params[f"{key}.bwd.{name}"]]))
                arrays[name] = both
                out[f"{key}.fwd.{name}"] = both[0]
                out[f"{key}.bwd.{name}"] = both[1]
            out.stacked[key] = arrays
    for name, value in params.items():
        if name not in out:
            out[name] = cuda.to_device(np.ascontiguousarray(value))
    head = getattr(model.network, "head", None)
    if isinstance(head, CRFHead):
        K = model.network.num_tags
        out.crf_masks = tuple(cuda.to_device(m) for m in head._masks(K))
    return out


def download_params(dparams: DeviceParams, params: dict) -> None:
    """Copy the device values into the host arrays of ``params`` (in place)."""
    for name, value in dparams.items():
        host = params[name]
        if host.flags.c_contiguous:
            value.copy_to_host(host)
        else:
            host[...] = value.copy_to_host()


# ----------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------


def upload_ints(*arrays) -> list:
    """Integer arrays over to the device in one transfer (as int64 views of one buffer)."""
    arrays = [np.ascontiguousarray(a, np.int64) for a in arrays]
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.int64)
    whole = cuda.to_device(flat if flat.size else np.zeros(1, np.int64))
    views, start = [], 0
    for a in arrays:
        views.append(whole[start:start + a.size].reshape(a.shape))
        start += a.size
    return views


class DeviceBatch:
    """A batch's arrays on the device, beside the host batch (whose sizes the layers read)."""

    def __init__(self, batch, dtype, *extra_ints):
        self.host = batch
        if hasattr(batch, "word_ids"):
            (self.word_ids, self.shape_ids, self.lengths, self.word_slots, self.char_ids,
             self.char_lengths, *self.extra) = upload_ints(
                batch.word_ids, batch.shape_ids, batch.lengths, batch.word_slots, batch.char_ids,
                batch.char_lengths, *extra_ints)
            self.x = None
        else:  # numeric values
            self.lengths, *self.extra = upload_ints(batch.lengths, *extra_ints)
            self.x = cuda.to_device(np.ascontiguousarray(batch.x, dtype))


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def dropout_mask(rng: np.random.Generator, shape, rate: float, dtype):
    """The mask of :func:`tagger.nn.recurrent.dropout_mask` (the same values, from the same draw of
    ``rng``), made on the device."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = 1.0 - rate
    scalar = np.dtype(dtype).type
    out = cuda.device_array(shape, dtype)
    seed = rng.integers(0, 2**64, dtype=np.uint64)
    ops_cuda.dropout_fill(seed, np.uint64(round(keep * 2.0**53)), scalar(1) / scalar(keep),
                          out.reshape(out.size))
    return out


def _masked(a, mask):
    """``a * mask`` in a new device array (``a`` may be kept by a cache)."""
    out = cuda.device_array(a.shape, a.dtype)
    ops_cuda.multiply(a, mask, out)
    return out


def _like(a):
    return cuda.device_array(a.shape, a.dtype)


def _rows(a):
    """A (B, T, F) device array as (B*T, F)."""
    return a.reshape((a.shape[0] * a.shape[1], a.shape[2]))


def linear_forward(x, W, b):
    """``x @ W + b`` over the last axis of a (B, T, F) or (B, F) device array."""
    x2 = _rows(x) if len(x.shape) == 3 else x
    out = cuda.device_array((x2.shape[0], W.shape[1]), W.dtype)
    gemm(x2, W, out)
    ops_cuda.add_bias(out, b)
    return out.reshape(tuple(x.shape[:-1]) + (W.shape[1],))


def linear_backward(x, W, d_out):
    """Gradients of :func:`linear_forward`: ``(dx, dW, db)``."""
    x2 = _rows(x) if len(x.shape) == 3 else x
    d2 = _rows(d_out) if len(d_out.shape) == 3 else d_out
    dW = cuda.device_array(W.shape, W.dtype)
    gemm(x2, d2, dW, trans_a=True)
    db = cuda.device_array(W.shape[1], W.dtype)
    column_sums(d2, db)
    dx = cuda.device_array(x2.shape, x2.dtype)
    gemm(d2, W, dx, trans_b=True)
    return dx.reshape(x.shape), dW, db


# ----------------------------------------------------------------------------------------------
# recurrent stack
# ----------------------------------------------------------------------------------------------


def stack_forward(stack: RNNStack, params: DeviceParams, x, lengths, rng=None):
    """:meth:`RNNStack.forward` on device arrays: (output, caches)."""
    caches = []
    inputs = x
    H = stack.hidden_size
    for layer in range(stack.num_layers):
        mask = None
        if layer > 0 and rng is not None and stack.dropout > 0:
            mask = dropout_mask(rng, inputs.shape, stack.dropout, inputs.dtype)
            inputs = _masked(inputs, mask)
        fwd = stack._direction_params(params, layer, "fwd")
        stacked = params.stacked.get(f"{stack.prefix}.{layer}")
        if stacked is not None:
            bwd = stack._direction_params(params, layer, "bwd")
            inputs, pair = lstm_pair_forward(fwd, bwd, inputs, lengths, stacked=stacked)
            caches.append((mask, pair))
            continue
        results = [direction_forward(stack.cell, stack._direction_params(params, layer, d),
                                     inputs, lengths, reverse=d == "bwd", device="cuda")
                   for d in stack.directions]
        if stack.bidirectional:
            B, T, _ = inputs.shape
            joined = cuda.device_array((B, T, 2 * H), inputs.dtype)
            for k, result in enumerate(results):
                ops_cuda.copy_columns(result[0], joined, k * H)
            inputs = joined
        else:
            inputs = results[0][0]
        caches.append((mask, [r[3] for r in results]))
    return inputs, caches


def stack_backward(stack: RNNStack, params: DeviceParams, caches: list, d_out):
    """:meth:`RNNStack.backward` on device arrays: (dx, grads)."""
    grads = {}
    H = stack.hidden_size
    d = d_out
    for layer in range(stack.num_layers - 1, -1, -1):
        mask, dir_caches = caches[layer]
        if isinstance(dir_caches, PairCache):
            dx, g_fwd, g_bwd = lstm_pair_backward(
                stack._direction_params(params, layer, "fwd"),
                stack._direction_params(params, layer, "bwd"), dir_caches, d,
                stacked=params.stacked[f"{stack.prefix}.{layer}"])
            results = [(g_fwd, "fwd"), (g_bwd, "bwd")]
        else:
            dx = None
            results = []
            for k, direction in enumerate(stack.directions):
                d_dir = d
                if stack.bidirectional:
                    d_dir = cuda.device_array(d.shape[:2] + (H,), d.dtype)
                    ops_cuda.take_columns(d, k * H, d_dir)
                dx_dir, g, _, _ = direction_backward(
                    stack._direction_params(params, layer, direction), dir_caches[k], d_dir)
                results.append((g, direction))
                if dx is None:
                    dx = dx_dir
                else:
                    ops_cuda.add(dx, dx_dir, dx)
        for g, direction in results:
            for name, value in g.items():
                grads[stack._key(layer, direction) + name] = value
        if mask is not None:
            ops_cuda.multiply(dx, mask, dx)
        d = dx
    return d, grads


# ----------------------------------------------------------------------------------------------
# token features
# ----------------------------------------------------------------------------------------------


def _transpose(a):
    out = cuda.device_array((a.shape[1], a.shape[0]), a.dtype)
    ops_cuda.transpose(a, out)
    return out


def _chars_forward(f: TokenFeaturizer, params, batch: DeviceBatch):
    table = params["emb.char"]
    U, L = batch.host.char_ids.shape
    if f.char_encoder == "cnn":
        n_chars = int(batch.host.char_lengths.sum())
        windows = cuda.device_array((n_chars, f.cnn_width * f.char_dim), table.dtype)
        ops_cuda.char_windows(table, batch.char_ids, batch.char_lengths, f.cnn_width, windows)
        conv = cuda.device_array((n_chars, f.char_hidden), table.dtype)
        gemm(windows, params["char.cnn.W"], conv)
        out = cuda.device_array((U, f.char_hidden), table.dtype)
        argmax = cuda.device_array((U, f.char_hidden), np.int64)
        ops_cuda.char_max_pool(conv, params["char.cnn.b"], batch.char_lengths, out, argmax)
        return out, (windows, argmax)
    emb = cuda.device_array((U, L, f.char_dim), table.dtype)
    ops_cuda.embedding_lookup(table, batch.char_ids, emb)
    hidden, cache = stack_forward(f.char_rnn, params, emb, batch.char_lengths)
    out = cuda.device_array((U, 2 * f.char_hidden), table.dtype)
    ops_cuda.last_pool(hidden, batch.char_lengths, f.char_hidden, True, out)
    return out, (cache, hidden.shape)


def _chars_backward(f: TokenFeaturizer, params, batch: DeviceBatch, cache, d_out, grads):
    table = params["emb.char"]
    d_table = _like(table)
    if f.char_encoder == "cnn":
        windows, argmax = cache
        W = params["char.cnn.W"]
        dW_t = cuda.device_array((W.shape[1], W.shape[0]), W.dtype)
        db = cuda.device_array(W.shape[1], W.dtype)
        ops_cuda.char_cnn_backward(batch.char_ids, batch.char_lengths, f.cnn_width, windows,
                                   _transpose(W), argmax, d_out, dW_t, db, d_table)
        grads["char.cnn.W"] = _transpose(dW_t)
        grads["char.cnn.b"] = db
    else:
        rnn_cache, shape = cache
        d_hidden = cuda.device_array(shape, table.dtype)
        ops_cuda.last_pool_backward(batch.char_lengths, f.char_hidden, True, d_out, d_hidden)
        d_emb, rnn_grads = stack_backward(f.char_rnn, params, rnn_cache, d_hidden)
        grads.update(rnn_grads)
        ops_cuda.embedding_backward(batch.char_ids, d_emb, d_table)
    grads["emb.char"] = d_table


def features_forward(featurizer, params: DeviceParams, batch: DeviceBatch, rng=None):
    """The featurizer's ``forward`` on the device: (step vectors (B, T, F), cache)."""
    if isinstance(featurizer, NumericFeaturizer):
        return batch.x, None
    f = featurizer
    table = params["emb.word"]
    B, T = batch.host.word_ids.shape
    x = cuda.device_array((B, T, f.output_size), table.dtype)
    ops_cuda.gather_columns(table, batch.word_ids, x, 0)
    offset = f.word_dim
    if f.shape_dim:
        ops_cuda.gather_columns(params["emb.shape"], batch.shape_ids, x, offset)
        offset += f.shape_dim
    char_cache = None
    if f.char_encoder is not None:
        per_word, char_cache = _chars_forward(f, params, batch)
        ops_cuda.gather_columns(per_word, batch.word_slots, x, offset)
    mask = None
    if rng is not None and f.dropout > 0:
        mask = dropout_mask(rng, x.shape, f.dropout, x.dtype)
        ops_cuda.multiply(x, mask, x)
    return x, (mask, char_cache)


def features_backward(featurizer, params: DeviceParams, batch: DeviceBatch, cache, dx) -> dict:
    """Parameter gradients of the featurizer from the step vectors' gradient ``dx``."""
    if isinstance(featurizer, NumericFeaturizer):
        return {}
    f = featurizer
    mask, char_cache = cache
    if mask is not None:
        ops_cuda.multiply(dx, mask, dx)
    grads = {}
    d_word = _like(params["emb.word"])
    ops_cuda.scatter_columns(batch.word_ids, dx, 0, d_word)
    grads["emb.word"] = d_word
    offset = f.word_dim
    if f.shape_dim:
        d_shape = _like(params["emb.shape"])
        ops_cuda.scatter_columns(batch.shape_ids, dx, offset, d_shape)
        grads["emb.shape"] = d_shape
        offset += f.shape_dim
    if f.char_encoder is not None:
        d_per_word = cuda.device_array((batch.host.char_ids.shape[0], f.char_size), dx.dtype)
        ops_cuda.scatter_columns(batch.word_slots, dx, offset, d_per_word)
        _chars_backward(f, params, batch, char_cache, d_per_word, grads)
    return grads


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------


def _scaled(arrays, factor):
    for a in arrays:
        ops_cuda.scale(a, factor)


def tagging_loss(network, params: DeviceParams, scores, tags, lengths):
    """The head's loss on the device: (per-sequence losses (B,), d_scores, head grads), the
    gradients already divided by B as the loss is a mean over sequences."""
    B, T, K = scores.shape
    scale = scores.dtype.type(1.0 / max(B, 1))
    d_scores = _like(scores)
    head = network.head
    if isinstance(head, CRFHead):
        names = ("crf.start", "crf.end", "crf.trans")
        grads = {name: _like(params[name]) for name in names}
        nll = cuda.device_array(B, scores.dtype)
        crf_cuda.crf_nll(scores, tags, lengths, params["crf.start"], params["crf.end"],
                         params["crf.trans"], *params.crf_masks, nll, d_scores,
                         grads["crf.start"], grads["crf.end"], grads["crf.trans"])
        _scaled([d_scores, *grads.values()], scale)
        return nll, d_scores, grads
    loss = cuda.device_array(B, np.float64)
    ops_cuda.softmax_xent(scores, tags, lengths, scale, loss, d_scores)
    return loss, d_scores, {}


def tagging_scores(network, params: DeviceParams, x, lengths, rng=None):
    hidden, rnn_cache = stack_forward(network.rnn, params, x, lengths, rng)
    mask = None
    if rng is not None and network.dropout > 0:
        mask = dropout_mask(rng, hidden.shape, network.dropout, hidden.dtype)
        hidden = _masked(hidden, mask)
    scores = linear_forward(hidden, params["out.W"], params["out.b"])
    return scores, (hidden, mask, rnn_cache)


def _pool(network: ClassifierNetwork, params, hidden, lengths):
    B, T, P = hidden.shape
    out = cuda.device_array((B, P), hidden.dtype)
    if network.pooling == "last":
        ops_cuda.last_pool(hidden, lengths, network.rnn.hidden_size, network.rnn.bidirectional,
                           out)
        return out, None
    if network.pooling == "mean":
        pool_cuda.mean_pool(hidden, lengths, out)
        return out, None
    if network.pooling == "max":
        argmax = cuda.device_array((B, P), np.int64)
        pool_cuda.max_pool(hidden, lengths, out, argmax)
        return out, argmax
    scores = cuda.device_array((B, T), hidden.dtype)
    weights = cuda.device_array((B, T), hidden.dtype)
    zero = cuda.device_array(1, hidden.dtype)
    ops_cuda.fill(zero, 0)
    pool_cuda.attention_pool(hidden, lengths, params["attn.w"], zero, scores, weights, out)
    return out, weights


def _pool_backward(network: ClassifierNetwork, params, hidden, lengths, aux, d_out, grads):
    d_hidden = _like(hidden)
    if network.pooling == "last":
        ops_cuda.last_pool_backward(lengths, network.rnn.hidden_size, network.rnn.bidirectional,
                                    d_out, d_hidden)
    elif network.pooling == "mean":
        pool_cuda.mean_pool_backward(lengths, d_out, d_hidden)
    elif network.pooling == "max":
        pool_cuda.max_pool_backward(aux, d_out, d_hidden)
    else:
        grads["attn.w"] = _like(params["attn.w"])
        pool_cuda.attention_pool_backward(hidden, lengths, params["attn.w"], aux, d_out,
                                          d_hidden, grads["attn.w"],
                                          cuda.device_array(1, hidden.dtype))
    return d_hidden


def classifier_logits(network: ClassifierNetwork, params: DeviceParams, x, lengths, rng=None):
    hidden, rnn_cache = stack_forward(network.rnn, params, x, lengths, rng)
    pooled, aux = _pool(network, params, hidden, lengths)
    mask = None
    if rng is not None and network.dropout > 0:
        mask = dropout_mask(rng, pooled.shape, network.dropout, pooled.dtype)
        pooled = _masked(pooled, mask)
    logits = linear_forward(pooled, params["out.W"], params["out.b"])
    return logits, (hidden, rnn_cache, pooled, aux, mask)


# ----------------------------------------------------------------------------------------------
# whole models
# ----------------------------------------------------------------------------------------------


def loss_and_grads(model, params: DeviceParams, batch: DeviceBatch, rng=None):
    """A training step's forward and backward pass on the device.

    ``batch.extra`` holds the targets: the tags (B, T) for a :class:`TaggerModel`; the labels
    (B,) for a :class:`ClassifierModel`, with ``batch.weights`` the per-example weights.

    Returns
    -------
    losses : device array (B,)
        Per-example losses (their sum over B is the batch loss).
    grads : dict
        Device gradients of every parameter.
    """
    x, f_cache = features_forward(model.featurizer, params, batch, rng)
    lengths = batch.lengths
    if isinstance(model, TaggerModel):
        network = model.network
        scores, (hidden, mask, rnn_cache) = tagging_scores(network, params, x, lengths, rng)
        losses, d_scores, grads = tagging_loss(network, params, scores, batch.extra[0], lengths)
        d_hidden, grads["out.W"], grads["out.b"] = linear_backward(hidden, params["out.W"],
                                                                   d_scores)
    else:
        network = model.network
        logits, (hidden, rnn_cache, pooled, aux, mask) = classifier_logits(
            network, params, x, lengths, rng)
        B = logits.shape[0]
        losses = cuda.device_array(B, np.float64)
        d_logits = _like(logits)
        ops_cuda.softmax_xent_rows(logits, batch.extra[0], batch.weights,
                                   logits.dtype.type(1.0 / max(B, 1)), losses, d_logits)
        d_pooled, dW, db = linear_backward(pooled, params["out.W"], d_logits)
        grads = {"out.W": dW, "out.b": db}
        if mask is not None:
            ops_cuda.multiply(d_pooled, mask, d_pooled)
            mask = None
        d_hidden = _pool_backward(network, params, hidden, lengths, aux, d_pooled, grads)
    if mask is not None:
        ops_cuda.multiply(d_hidden, mask, d_hidden)
    dx, rnn_grads = stack_backward(network.rnn, params, rnn_cache, d_hidden)
    grads.update(rnn_grads)
    grads.update(features_backward(model.featurizer, params, batch, f_cache, dx))
    return losses, grads


def tagger_outputs(model: TaggerModel, params: DeviceParams, batch, marginals: bool = False):
    """Best tag ids (B, T) on the host, -1 at padding, and with ``marginals`` the tag
    probabilities (B, T, K) too (else None), computed on the device."""
    dtype = params["out.W"].dtype
    d = DeviceBatch(batch, dtype)
    x, _ = features_forward(model.featurizer, params, d)
    scores, _ = tagging_scores(model.network, params, x, d.lengths)
    B, T, K = scores.shape
    tags = cuda.device_array((B, T), np.int64)
    probs = cuda.device_array((B, T, K), dtype) if marginals else None
    if isinstance(model.network.head, CRFHead):
        crf = (params["crf.start"], params["crf.end"], params["crf.trans"], *params.crf_masks)
        crf_cuda.viterbi_decode(scores, d.lengths, *crf, tags, cuda.device_array(B, dtype))
        if marginals:
            crf_cuda.crf_marginals(scores, d.lengths, *crf, probs, cuda.device_array(B, dtype))
    else:
        ops_cuda.argmax_rows(scores, d.lengths, tags)
        if marginals:
            ops_cuda.softmax_rows(scores, d.lengths, probs)
    return tags.copy_to_host(), None if probs is None else probs.copy_to_host()


def classifier_outputs(model: ClassifierModel, params: DeviceParams, batch) -> np.ndarray:
    """Class scores (B, C) on the host, computed on the device."""
    d = DeviceBatch(batch, params["out.W"].dtype)
    x, _ = features_forward(model.featurizer, params, d)
    logits, _ = classifier_logits(model.network, params, x, d.lengths)
    return logits.copy_to_host()


# ----------------------------------------------------------------------------------------------
# optimizer
# ----------------------------------------------------------------------------------------------


class DeviceOptimizer:
    """The update of a host :class:`~tagger.nn.optim.Optimizer` (its hyperparameters, step
    count and state slots, under the same keys) run on device arrays."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError(f"no GPU update for {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.slots = {key: cuda.to_device(np.ascontiguousarray(value))
                      for key, value in optimizer.state.items()}

    def _slot(self, key: str, like):
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = cuda.device_array(like.shape, like.dtype)
            ops_cuda.fill(slot, 0)
        return slot

    def step(self, params: DeviceParams, grads: dict, scale: float = 1.0) -> None:
        """Update ``params`` in place (see :meth:`Optimizer.step`)."""
        opt = self.optimizer
        opt.steps += 1
        for name in sorted(grads):
            param, grad = params[name], grads[name]
            if tuple(grad.shape) != tuple(param.shape):
                raise ValueError(f"gradient of {name!r} has shape {grad.shape}, its parameter "
                                 f"{param.shape}")
            flat, g = param.reshape(param.size), grad.reshape(grad.size)
            dtype = np.dtype(param.dtype).type
            if isinstance(opt, Adam):
                m = self._slot("m." + name, param).reshape(param.size)
                v = self._slot("v." + name, param).reshape(param.size)
                optim_cuda.adam_update(flat, g, m, v, *opt.kernel_scalars(scale, param.dtype))
            else:
                velocity = (self._slot(name, param).reshape(param.size) if opt.momentum
                            else flat)  # unread without momentum
                optim_cuda.sgd_update(flat, g, velocity, dtype(scale), dtype(opt.weight_decay),
                                      dtype(opt.momentum), bool(opt.nesterov),
                                      dtype(opt.learning_rate))

    def download(self) -> None:
        """Copy the state slots into the host optimizer's state."""
        self.optimizer.state = {key: slot.copy_to_host() for key, slot in self.slots.items()}


def loss_and_norm(losses, grads: dict) -> tuple[float, float]:
    """The sum of the per-example ``losses`` and the global L2 norm of the device gradients, in
    one copy to the host: a float64 sum on the device per gradient (of squares) and for the
    losses; the squares are added on the host in sorted-name order, as
    :func:`tagger.nn.optim.global_norm` does."""
    names = sorted(grads)
    sums = cuda.device_array(len(names) + 1, np.float64)
    for i, name in enumerate(names):
        g = grads[name]
        optim_cuda.sum_squares(g.reshape(g.size), sums, i)
    optim_cuda.sum_values(losses, sums, len(names))
    host = sums.copy_to_host()
    total = 0.0
    for i in range(len(names)):
        total += float(host[i])
    return float(host[-1]), math.sqrt(total)


class ResidentTrainer:
    """Training steps with the parameters and the optimizer state on the GPU.

    Parameters
    ----------
    model : TaggerModel or ClassifierModel
        The model (on the "cuda" device).
    params : dict
        Host parameters: uploaded here, and written back by :meth:`download`.
    optimizer : Optimizer
        Host optimizer: its state is uploaded here and written back by :meth:`download`.
    """

    def __init__(self, model, params: dict, optimizer: Optimizer):
        self.model = model
        self.params = params
        self.device_params = upload_params(model, params)
        self.optimizer = DeviceOptimizer(optimizer)
        self.dtype = next(iter(params.values())).dtype

    def step(self, batch, targets: tuple, rng, clip_norm: float | None) -> float:
        """One optimisation step on ``batch``; returns the batch loss before the update.

        ``targets``: ``(tags,)`` (B, T) for a tagger, ``(labels, weights)`` for a classifier
        (``weights`` None for all ones).

        Raises
        ------
        FloatingPointError
            When the loss or the gradients are not finite; the parameters are left unchanged.
        """
        if isinstance(self.model, TaggerModel):
            d = DeviceBatch(batch, self.dtype, targets[0])
        else:
            labels, weights = targets
            B = len(labels)
            d = DeviceBatch(batch, self.dtype, labels)
            weights = np.ones(B) if weights is None else np.asarray(weights, np.float64)
            d.weights = cuda.to_device(np.ascontiguousarray(weights, np.float64))
        losses, grads = loss_and_grads(self.model, self.device_params, d, rng)
        total, norm = loss_and_norm(losses, grads)
        loss = total / max(int(batch.lengths.shape[0]), 1)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise FloatingPointError(f"non-finite loss ({loss}) or gradient norm ({norm})")
        self.optimizer.step(self.device_params, grads, scale=clip_scale(norm, clip_norm))
        return loss

    def download(self) -> None:
        """Write the device parameters and optimizer state back into the host objects."""
        download_params(self.device_params, self.params)
        self.optimizer.download()
