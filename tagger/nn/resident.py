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

Parameters, gradients and optimizer state each lie in one flat device array (:class:`FlatLayout`),
so that one launch updates every parameter and two take every gradient's squared norm; the
temporaries of a step or of a prediction batch come from an arena
(:mod:`tagger.kernels.memory_cuda`), so that once the largest batch has been seen no device memory
is allocated or freed (freeing waits for the device).

Scatter-adds (embedding gradients) use atomic additions, so the order of their float additions,
and the last bits of a GPU run, may differ from run to run; the CPU engine is the one that is
reproducible bit for bit.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import cuda

from .. import _config
from ..kernels import crf_cuda, memory_cuda, ops_cuda, optim_cuda, pool_cuda
from ..kernels.memory_cuda import empty as _empty
from ..kernels.memory_cuda import to_device as _to_device
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

    The arrays are views of one flat device array, :attr:`flat`, laid out by :attr:`layout` (a
    :class:`FlatLayout`), so that one launch updates them all. ``stacked`` maps a bidirectional
    LSTM layer that runs both directions in one launch (``"rnn.0"``) to its ``W``, ``U`` and
    ``b`` as (2, ...) arrays; the entries of the two directions are views of them. ``crf_masks``
    holds the CRF's allowed-transition masks once uploaded. The gradients of a training step
    take the same form (without masks).
    """

    on_device = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stacked: dict[str, dict] = {}
        self.crf_masks = None
        self.flat = None
        self.layout: FlatLayout | None = None
        self.arenas = threading.local()  # per-thread arenas of temporaries


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


def paired_layers(model) -> list[str]:
    """The bidirectional LSTM layers of ``model`` (``"rnn.0"``, ...) whose two directions run in
    one launch on the GPU, so keep their weights stacked."""
    return [f"{stack.prefix}.{layer}" for stack in _stacks(model) if _paired(stack)
            for layer in range(stack.num_layers)]


class FlatLayout:
    """Where every parameter lies in one flat array of one dtype: end to end, the two directions
    of each paired layer side by side (``W`` of the forward direction then ``W`` of the backward
    one, and so on), so that the layer's (2, ...) stacked arrays are views too, then the other
    parameters in sorted-name order.

    Parameters
    ----------
    params : dict
        Host arrays, all of one float dtype.
    pairs : list of str
        Layer keys (``"rnn.0"``) whose ``{key}.fwd.{W,U,b}`` and ``{key}.bwd.{W,U,b}`` are
        stacked.
    """

    def __init__(self, params: dict, pairs=()):
        dtypes = {np.dtype(a.dtype) for a in params.values()}
        if len(dtypes) > 1:
            raise TypeError(f"parameters of several dtypes: {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self.entries: dict[str, tuple[int, tuple]] = {}
        self.stacked: dict[str, dict[str, tuple[int, tuple]]] = {}
        start = 0
        for key in pairs:
            self.stacked[key] = {}
            for name in ("W", "U", "b"):
                shape = tuple(params[f"{key}.fwd.{name}"].shape)
                if tuple(params[f"{key}.bwd.{name}"].shape) != shape:
                    raise ValueError(f"the two directions of {key!r} differ in {name!r}")
                self.stacked[key][name] = (start, (2, *shape))
                for direction in ("fwd", "bwd"):
                    self.entries[f"{key}.{direction}.{name}"] = (start, shape)
                    start += math.prod(shape)
        for name in sorted(params):
            if name not in self.entries:
                shape = tuple(params[name].shape)
                self.entries[name] = (start, shape)
                start += math.prod(shape)
        self.size = start
        names = sorted(self.entries)
        self.segments = np.array([[self.entries[n][0], self.entries[n][0]
                                   + math.prod(self.entries[n][1])] for n in names],
                                 np.int64).reshape(len(names), 2)
        self.sorted_names = names

    def pack(self, arrays: dict, default=None) -> np.ndarray:
        """One flat host array holding ``arrays`` (name → array of the entry's shape); entries
        missing from ``arrays`` hold ``default`` (an error when None)."""
        flat = np.empty(self.size, self.dtype)
        for name, (start, shape) in self.entries.items():
            value = arrays.get(name, default)
            if value is None:
                raise KeyError(f"no array for {name!r}")
            flat[start:start + math.prod(shape)] = np.broadcast_to(
                np.asarray(value, self.dtype), shape).reshape(-1)
        return flat

    def views(self, flat) -> DeviceParams:
        """The entries (and stacked arrays) as views of ``flat`` (a device array of
        :attr:`size`)."""
        out = DeviceParams()
        out.flat, out.layout = flat, self
        for name, (start, shape) in self.entries.items():
            out[name] = flat[start:start + math.prod(shape)].reshape(shape)
        for key, arrays in self.stacked.items():
            out.stacked[key] = {name: flat[start:start + math.prod(shape)].reshape(shape)
                                for name, (start, shape) in arrays.items()}
        return out

    def unpack(self, flat: np.ndarray) -> dict:
        """The entries as views of a flat host array."""
        return {name: flat[start:start + math.prod(shape)].reshape(shape)
                for name, (start, shape) in self.entries.items()}

    def empty(self) -> DeviceParams:
        """Uninitialised device arrays of this layout (gradients)."""
        return self.views(cuda.device_array(max(self.size, 1), self.dtype)[:self.size])


def upload_flat(params: dict, pairs=()) -> DeviceParams:
    """A device copy of ``params`` (host arrays), in one transfer."""
    layout = FlatLayout(params, pairs)
    return layout.views(cuda.to_device(layout.pack(params)))


def upload_params(model, params: dict) -> DeviceParams:
    """A device copy of ``params`` (host arrays) laid out for ``model``."""
    out = upload_flat(params, paired_layers(model))
    head = getattr(model.network, "head", None)
    if isinstance(head, CRFHead):
        K = model.network.num_tags
        out.crf_masks = tuple(cuda.to_device(m) for m in head._masks(K))
    return out


def download_params(dparams: DeviceParams, params: dict) -> None:
    """Copy the device values into the host arrays of ``params`` (in place), in one transfer."""
    values = dparams.layout.unpack(dparams.flat.copy_to_host())
    for name, value in values.items():
        params[name][...] = value


# ----------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------


def upload_ints(*arrays) -> list:
    """Integer arrays over to the device in one transfer (as int64 views of one buffer)."""
    arrays = [np.ascontiguousarray(a, np.int64) for a in arrays]
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.int64)
    whole = _to_device(flat if flat.size else np.zeros(1, np.int64))
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
            self.x = _to_device(np.ascontiguousarray(batch.x, dtype))


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
    out = _empty(shape, dtype)
    seed = rng.integers(0, 2**64, dtype=np.uint64)
    ops_cuda.dropout_fill(seed, np.uint64(round(keep * 2.0**53)), scalar(1) / scalar(keep),
                          out.reshape(out.size))
    return out


def _masked(a, mask):
    """``a * mask`` in a new device array (``a`` may be kept by a cache)."""
    out = _empty(a.shape, a.dtype)
    ops_cuda.multiply(a, mask, out)
    return out


def _like(a):
    return _empty(a.shape, a.dtype)


def _grad(out, name: str, like):
    """Where the gradient of parameter ``name`` goes: its view in ``out`` (a
    :class:`DeviceParams` of gradients) when given, else a new array like the parameter."""
    return out[name] if out is not None else _like(like)


def _rows(a):
    """A (B, T, F) device array as (B*T, F)."""
    return a.reshape((a.shape[0] * a.shape[1], a.shape[2]))


def linear_forward(x, W, b):
    """``x @ W + b`` over the last axis of a (B, T, F) or (B, F) device array."""
    x2 = _rows(x) if len(x.shape) == 3 else x
    out = _empty((x2.shape[0], W.shape[1]), W.dtype)
    gemm(x2, W, out)
    ops_cuda.add_bias(out, b)
    return out.reshape(tuple(x.shape[:-1]) + (W.shape[1],))


def linear_backward(x, W, d_out, dW=None, db=None):
    """Gradients of :func:`linear_forward`: ``(dx, dW, db)``, ``dW`` and ``db`` written into the
    given arrays when given."""
    x2 = _rows(x) if len(x.shape) == 3 else x
    d2 = _rows(d_out) if len(d_out.shape) == 3 else d_out
    dW = _empty(W.shape, W.dtype) if dW is None else dW
    gemm(x2, d2, dW, trans_a=True)
    db = _empty(W.shape[1], W.dtype) if db is None else db
    column_sums(d2, db)
    dx = _empty(x2.shape, x2.dtype)
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
            joined = _empty((B, T, 2 * H), inputs.dtype)
            for k, result in enumerate(results):
                ops_cuda.copy_columns(result[0], joined, k * H)
            inputs = joined
        else:
            inputs = results[0][0]
        caches.append((mask, [r[3] for r in results]))
    return inputs, caches


def stack_backward(stack: RNNStack, params: DeviceParams, caches: list, d_out, out=None):
    """:meth:`RNNStack.backward` on device arrays: (dx, grads), the gradients written into the
    views of ``out`` (a :class:`DeviceParams` of gradients) when given."""
    grads = {}
    H = stack.hidden_size
    d = d_out
    for layer in range(stack.num_layers - 1, -1, -1):
        mask, dir_caches = caches[layer]
        if isinstance(dir_caches, PairCache):
            key = f"{stack.prefix}.{layer}"
            dx, g_fwd, g_bwd = lstm_pair_backward(
                stack._direction_params(params, layer, "fwd"),
                stack._direction_params(params, layer, "bwd"), dir_caches, d,
                stacked=params.stacked[key], out=None if out is None else out.stacked[key])
            results = [(g_fwd, "fwd"), (g_bwd, "bwd")]
        else:
            dx = None
            results = []
            for k, direction in enumerate(stack.directions):
                d_dir = d
                if stack.bidirectional:
                    d_dir = _empty(d.shape[:2] + (H,), d.dtype)
                    ops_cuda.take_columns(d, k * H, d_dir)
                dx_dir, g, _, _ = direction_backward(
                    stack._direction_params(params, layer, direction), dir_caches[k], d_dir,
                    out=None if out is None else stack._direction_params(out, layer, direction))
                results.append((g, direction))
                if dx is None:
                    dx = dx_dir
                else:
                    ops_cuda.add(dx, dx_dir, dx)
        for g, direction in results:
            for name, value in g.items():
                full = stack._key(layer, direction) + name
                grads[full] = value if out is None else out[full]
        if mask is not None:
            ops_cuda.multiply(dx, mask, dx)
        d = dx
    return d, grads


# ----------------------------------------------------------------------------------------------
# token features
# ----------------------------------------------------------------------------------------------


def _transpose(a):
    out = _empty((a.shape[1], a.shape[0]), a.dtype)
    ops_cuda.transpose(a, out)
    return out


def _chars_forward(f: TokenFeaturizer, params, batch: DeviceBatch):
    table = params["emb.char"]
    U, L = batch.host.char_ids.shape
    if f.char_encoder == "cnn":
        n_chars = int(batch.host.char_lengths.sum())
        windows = _empty((n_chars, f.cnn_width * f.char_dim), table.dtype)
        ops_cuda.char_windows(table, batch.char_ids, batch.char_lengths, f.cnn_width, windows)
        conv = _empty((n_chars, f.char_hidden), table.dtype)
        gemm(windows, params["char.cnn.W"], conv)
        out = _empty((U, f.char_hidden), table.dtype)
        argmax = _empty((U, f.char_hidden), np.int64)
        ops_cuda.char_max_pool(conv, params["char.cnn.b"], batch.char_lengths, out, argmax)
        return out, (windows, argmax)
    emb = _empty((U, L, f.char_dim), table.dtype)
    ops_cuda.embedding_lookup(table, batch.char_ids, emb)
    hidden, cache = stack_forward(f.char_rnn, params, emb, batch.char_lengths)
    out = _empty((U, 2 * f.char_hidden), table.dtype)
    ops_cuda.last_pool(hidden, batch.char_lengths, f.char_hidden, True, out)
    return out, (cache, hidden.shape)


def _chars_backward(f: TokenFeaturizer, params, batch: DeviceBatch, cache, d_out, grads, out):
    table = params["emb.char"]
    d_table = _grad(out, "emb.char", table)
    if f.char_encoder == "cnn":
        windows, argmax = cache
        W = params["char.cnn.W"]
        dW_t = _empty((W.shape[1], W.shape[0]), W.dtype)
        db = _grad(out, "char.cnn.b", params["char.cnn.b"])
        ops_cuda.char_cnn_backward(batch.char_ids, batch.char_lengths, f.cnn_width, windows,
                                   _transpose(W), argmax, d_out, dW_t, db, d_table)
        dW = _grad(out, "char.cnn.W", W)
        ops_cuda.transpose(dW_t, dW)
        grads["char.cnn.W"] = dW
        grads["char.cnn.b"] = db
    else:
        rnn_cache, shape = cache
        d_hidden = _empty(shape, table.dtype)
        ops_cuda.last_pool_backward(batch.char_lengths, f.char_hidden, True, d_out, d_hidden)
        d_emb, rnn_grads = stack_backward(f.char_rnn, params, rnn_cache, d_hidden, out)
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
    x = _empty((B, T, f.output_size), table.dtype)
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


def features_backward(featurizer, params: DeviceParams, batch: DeviceBatch, cache, dx,
                      out=None) -> dict:
    """Parameter gradients of the featurizer from the step vectors' gradient ``dx`` (written
    into the views of ``out`` when given)."""
    if isinstance(featurizer, NumericFeaturizer):
        return {}
    f = featurizer
    mask, char_cache = cache
    if mask is not None:
        ops_cuda.multiply(dx, mask, dx)
    grads = {}
    d_word = _grad(out, "emb.word", params["emb.word"])
    ops_cuda.scatter_columns(batch.word_ids, dx, 0, d_word)
    grads["emb.word"] = d_word
    offset = f.word_dim
    if f.shape_dim:
        d_shape = _grad(out, "emb.shape", params["emb.shape"])
        ops_cuda.scatter_columns(batch.shape_ids, dx, offset, d_shape)
        grads["emb.shape"] = d_shape
        offset += f.shape_dim
    if f.char_encoder is not None:
        d_per_word = _empty((batch.host.char_ids.shape[0], f.char_size), dx.dtype)
        ops_cuda.scatter_columns(batch.word_slots, dx, offset, d_per_word)
        _chars_backward(f, params, batch, char_cache, d_per_word, grads, out)
    return grads


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------


def _scaled(arrays, factor):
    for a in arrays:
        ops_cuda.scale(a, factor)


def tagging_loss(network, params: DeviceParams, scores, tags, lengths, out=None):
    """The head's loss on the device: (per-sequence losses (B,), d_scores, head grads), the
    gradients already divided by B as the loss is a mean over sequences (and written into the
    views of ``out`` when given)."""
    B, T, K = scores.shape
    scale = scores.dtype.type(1.0 / max(B, 1))
    d_scores = _like(scores)
    head = network.head
    if isinstance(head, CRFHead):
        names = ("crf.start", "crf.end", "crf.trans")
        grads = {name: _grad(out, name, params[name]) for name in names}
        nll = _empty(B, scores.dtype)
        crf_cuda.crf_nll(scores, tags, lengths, params["crf.start"], params["crf.end"],
                         params["crf.trans"], *params.crf_masks, nll, d_scores,
                         grads["crf.start"], grads["crf.end"], grads["crf.trans"])
        _scaled([d_scores, *grads.values()], scale)
        return nll, d_scores, grads
    loss = _empty(B, np.float64)
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
    out = _empty((B, P), hidden.dtype)
    if network.pooling == "last":
        ops_cuda.last_pool(hidden, lengths, network.rnn.hidden_size, network.rnn.bidirectional,
                           out)
        return out, None
    if network.pooling == "mean":
        pool_cuda.mean_pool(hidden, lengths, out)
        return out, None
    if network.pooling == "max":
        argmax = _empty((B, P), np.int64)
        pool_cuda.max_pool(hidden, lengths, out, argmax)
        return out, argmax
    scores = _empty((B, T), hidden.dtype)
    weights = _empty((B, T), hidden.dtype)
    zero = _empty(1, hidden.dtype)
    ops_cuda.fill(zero, 0)
    pool_cuda.attention_pool(hidden, lengths, params["attn.w"], zero, scores, weights, out)
    return out, weights


def _pool_backward(network: ClassifierNetwork, params, hidden, lengths, aux, d_out, grads,
                   out=None):
    d_hidden = _like(hidden)
    if network.pooling == "last":
        ops_cuda.last_pool_backward(lengths, network.rnn.hidden_size, network.rnn.bidirectional,
                                    d_out, d_hidden)
    elif network.pooling == "mean":
        pool_cuda.mean_pool_backward(lengths, d_out, d_hidden)
    elif network.pooling == "max":
        pool_cuda.max_pool_backward(aux, d_out, d_hidden)
    else:
        grads["attn.w"] = _grad(out, "attn.w", params["attn.w"])
        pool_cuda.attention_pool_backward(hidden, lengths, params["attn.w"], aux, d_out,
                                          d_hidden, grads["attn.w"],
                                          _empty(1, hidden.dtype))
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


def loss_and_grads(model, params: DeviceParams, batch: DeviceBatch, rng=None, out=None):
    """A training step's forward and backward pass on the device.

    ``batch.extra`` holds the targets: the tags (B, T) for a :class:`TaggerModel`; the labels
    (B,) for a :class:`ClassifierModel`, with ``batch.weights`` the per-example weights.

    Returns
    -------
    losses : device array (B,)
        Per-example losses (their sum over B is the batch loss).
    grads : dict
        Device gradients of every parameter: the views of ``out`` (a :class:`DeviceParams` of
        gradients, from :meth:`FlatLayout.empty`) when given, else new arrays.
    """
    x, f_cache = features_forward(model.featurizer, params, batch, rng)
    lengths = batch.lengths
    if isinstance(model, TaggerModel):
        network = model.network
        scores, (hidden, mask, rnn_cache) = tagging_scores(network, params, x, lengths, rng)
        losses, d_scores, grads = tagging_loss(network, params, scores, batch.extra[0], lengths,
                                               out)
        d_hidden, grads["out.W"], grads["out.b"] = linear_backward(
            hidden, params["out.W"], d_scores, *_out_layer(out))
    else:
        network = model.network
        logits, (hidden, rnn_cache, pooled, aux, mask) = classifier_logits(
            network, params, x, lengths, rng)
        B = logits.shape[0]
        losses = _empty(B, np.float64)
        d_logits = _like(logits)
        ops_cuda.softmax_xent_rows(logits, batch.extra[0], batch.weights,
                                   logits.dtype.type(1.0 / max(B, 1)), losses, d_logits)
        d_pooled, dW, db = linear_backward(pooled, params["out.W"], d_logits, *_out_layer(out))
        grads = {"out.W": dW, "out.b": db}
        if mask is not None:
            ops_cuda.multiply(d_pooled, mask, d_pooled)
            mask = None
        d_hidden = _pool_backward(network, params, hidden, lengths, aux, d_pooled, grads, out)
    if mask is not None:
        ops_cuda.multiply(d_hidden, mask, d_hidden)
    dx, rnn_grads = stack_backward(network.rnn, params, rnn_cache, d_hidden, out)
    grads.update(rnn_grads)
    grads.update(features_backward(model.featurizer, params, batch, f_cache, dx, out))
    return losses, grads


def _out_layer(out) -> tuple:
    return (None, None) if out is None else (out["out.W"], out["out.b"])


def _arena(params: DeviceParams) -> memory_cuda.Arena:
    """The calling thread's arena for prediction batches on ``params``."""
    arena = getattr(params.arenas, "arena", None)
    if arena is None:
        arena = params.arenas.arena = memory_cuda.Arena()
    return arena


def tagger_outputs(model: TaggerModel, params: DeviceParams, batch, marginals: bool = False):
    """Best tag ids (B, T) on the host, -1 at padding, and with ``marginals`` the tag
    probabilities (B, T, K) too (else None), computed on the device."""
    with _arena(params).active():
        return _tagger_outputs(model, params, batch, marginals)


def _tagger_outputs(model: TaggerModel, params: DeviceParams, batch, marginals: bool):
    dtype = params["out.W"].dtype
    d = DeviceBatch(batch, dtype)
    x, _ = features_forward(model.featurizer, params, d)
    scores, _ = tagging_scores(model.network, params, x, d.lengths)
    B, T, K = scores.shape
    tags = _empty((B, T), np.int64)
    probs = _empty((B, T, K), dtype) if marginals else None
    if isinstance(model.network.head, CRFHead):
        crf = (params["crf.start"], params["crf.end"], params["crf.trans"], *params.crf_masks)
        crf_cuda.viterbi_decode(scores, d.lengths, *crf, tags, _empty(B, dtype))
        if marginals:
            crf_cuda.crf_marginals(scores, d.lengths, *crf, probs, _empty(B, dtype))
    else:
        ops_cuda.argmax_rows(scores, d.lengths, tags)
        if marginals:
            ops_cuda.softmax_rows(scores, d.lengths, probs)
    return tags.copy_to_host(), None if probs is None else probs.copy_to_host()


def classifier_outputs(model: ClassifierModel, params: DeviceParams, batch) -> np.ndarray:
    """Class scores (B, C) on the host, computed on the device."""
    with _arena(params).active():
        d = DeviceBatch(batch, params["out.W"].dtype)
        x, _ = features_forward(model.featurizer, params, d)
        logits, _ = classifier_logits(model.network, params, x, d.lengths)
        return logits.copy_to_host()


# ----------------------------------------------------------------------------------------------
# optimizer
# ----------------------------------------------------------------------------------------------


class DeviceOptimizer:
    """The update of a host :class:`~tagger.nn.optim.Optimizer` (its hyperparameters, step
    count and state slots, under the same keys) run on the device: one launch updates every
    parameter, the state of each kind (Adam's ``m`` and ``v``, SGD's velocity) being one flat
    array of the parameters' :class:`FlatLayout`.

    Parameters
    ----------
    optimizer : SGD or Adam
    layout : FlatLayout
        The layout of the parameters it updates.
    """

    def __init__(self, optimizer: Optimizer, layout: FlatLayout):
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError(f"no GPU update for {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.layout = layout
        if isinstance(optimizer, Adam):
            prefixes = ("m.", "v.")
        else:
            prefixes = ("",) if optimizer.momentum else ()
        state = optimizer.state
        # Each kind of slot in one transfer; a parameter without a slot yet starts at zero, as
        # the host optimizer's lazily made slots do.
        self.slots = {prefix: cuda.to_device(layout.pack(
            {name: state[prefix + name] for name in layout.entries if prefix + name in state},
            default=0)) for prefix in prefixes}
        # Host slots of no parameter of the layout are kept as they are.
        owned = {prefix + name for prefix in prefixes for name in layout.entries}
        self._other = {key: value for key, value in state.items() if key not in owned}

    def step(self, params: DeviceParams, grads: DeviceParams, scale: float = 1.0) -> None:
        """Update ``params`` in place (see :meth:`Optimizer.step`) from ``grads``, both flat
        arrays of this optimizer's layout, with every parameter's gradient."""
        if params.layout is not self.layout or grads.layout is not self.layout:
            raise ValueError("parameters and gradients must be laid out as the optimizer's")
        opt = self.optimizer
        opt.steps += 1
        flat, g = params.flat, grads.flat
        if isinstance(opt, Adam):
            optim_cuda.adam_update(flat, g, self.slots["m."], self.slots["v."],
                                   *opt.kernel_scalars(scale, flat.dtype))
        else:
            dtype = np.dtype(flat.dtype).type
            velocity = self.slots.get("", flat)  # unread without momentum
            optim_cuda.sgd_update(flat, g, velocity, dtype(scale), dtype(opt.weight_decay),
                                  dtype(opt.momentum), bool(opt.nesterov),
                                  dtype(opt.learning_rate))

    def download(self) -> None:
        """Copy the state slots into the host optimizer's state."""
        state = dict(self._other)
        for prefix, slot in self.slots.items():
            for name, value in self.layout.unpack(slot.copy_to_host()).items():
                state[prefix + name] = value
        self.optimizer.state = state


class GradientNorms:
    """The batch loss and every gradient's squared norm on the device, brought back in one copy:
    two launches for the norms (the gradients lie end to end in one flat array) and one for the
    loss."""

    def __init__(self, layout: FlatLayout):
        self.names = layout.sorted_names
        n = len(self.names)
        self.segments = cuda.to_device(layout.segments)
        blocks, self.threads = optim_cuda.segment_geometry(layout.segments)
        self.partials = cuda.device_array((n, blocks), np.float64)
        self.sums = cuda.device_array(n + 1, np.float64)

    def __call__(self, losses, grads: DeviceParams) -> tuple[float, float]:
        """(sum of ``losses``, global L2 norm of ``grads``): the squares added on the host in
        sorted-name order, as :func:`tagger.nn.optim.global_norm` does."""
        optim_cuda.segment_sum_squares(grads.flat, self.segments, self.partials, self.sums,
                                       self.threads)
        optim_cuda.sum_values(losses, self.sums, len(self.names))
        host = self.sums.copy_to_host()
        total = 0.0
        for i in range(len(self.names)):
            total += float(host[i])
        return float(host[-1]), math.sqrt(total)


class DeviceEngine:
    """What the GPU engines share: a model's parameters on the device and, for training, the
    optimizer's state, the gradients and their norms, and each thread's arena for the
    temporaries of a step (or of a prediction batch).

    Parameters
    ----------
    device_params : DeviceParams
        The device copy of ``params``.
    params : dict
        The host parameters: :meth:`download` writes the device values back into them.
    optimizer : Optimizer, optional
        Host optimizer, for training: its state is uploaded here and written back by
        :meth:`download`.
    """

    def __init__(self, device_params: DeviceParams, params: dict,
                 optimizer: Optimizer | None = None):
        self.params = params
        self.device_params = device_params
        layout = device_params.layout
        self.dtype = layout.dtype
        self.optimizer = DeviceOptimizer(optimizer, layout) if optimizer is not None else None
        self.grads = layout.empty() if optimizer is not None else None
        self.norms = GradientNorms(layout) if optimizer is not None else None

    @property
    def arena(self) -> memory_cuda.Arena:
        """The calling thread's arena of these parameters (threads that predict with one engine
        at once each carve their own): the one prediction batches on them use."""
        return _arena(self.device_params)

    def _check_trainable(self) -> None:
        if self.optimizer is None:
            raise RuntimeError("this engine was made without an optimizer: it cannot train")

    def _update(self, total: float, norm: float, n: int, clip_norm: float | None) -> float:
        """The optimizer's step after the gradients of a batch whose ``n`` items lost ``total``
        (their gradient norm ``norm``, from :attr:`norms`); returns the mean loss.

        Raises
        ------
        FloatingPointError
            When the loss or the gradients are not finite; the parameters are left unchanged.
        """
        loss = total / max(n, 1)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise FloatingPointError(f"non-finite loss ({loss}) or gradient norm ({norm})")
        self.optimizer.step(self.device_params, self.grads, scale=clip_scale(norm, clip_norm))
        return loss

    def download(self) -> None:
        """Write the device parameters (and the optimizer's state) back into the host
        objects."""
        download_params(self.device_params, self.params)
        if self.optimizer is not None:
            self.optimizer.download()


class ResidentTrainer(DeviceEngine):
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
        super().__init__(upload_params(model, params), params, optimizer)
        self.model = model

    def step(self, batch, targets: tuple, rng, clip_norm: float | None) -> float:
        """One optimisation step on ``batch``; returns the batch loss before the update.

        ``targets``: ``(tags,)`` (B, T) for a tagger, ``(labels, weights)`` for a classifier
        (``weights`` None for all ones).

        Raises
        ------
        FloatingPointError
            When the loss or the gradients are not finite; the parameters are left unchanged.
        """
        with self.arena.active():
            if isinstance(self.model, TaggerModel):
                d = DeviceBatch(batch, self.dtype, targets[0])
            else:
                labels, weights = targets
                B = len(labels)
                d = DeviceBatch(batch, self.dtype, labels)
                weights = np.ones(B) if weights is None else np.asarray(weights, np.float64)
                d.weights = _to_device(np.ascontiguousarray(weights, np.float64))
            losses, grads = loss_and_grads(self.model, self.device_params, d, rng,
                                           out=self.grads)
            missing = [name for name in self.grads if grads.get(name) is not self.grads[name]]
            if missing or len(grads) != len(self.grads):
                raise RuntimeError(f"the step left the gradients of {missing} unwritten")
            total, norm = self.norms(losses, self.grads)
        return self._update(total, norm, int(batch.lengths.shape[0]), clip_norm)
