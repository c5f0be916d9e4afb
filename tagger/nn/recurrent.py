"""Recurrent layers over the compiled kernels: one direction, and bidirectional stacked networks.

Parameters are plain dicts of NumPy arrays. A layer object holds only its configuration; ``forward``
returns the output and a cache for ``backward``, which returns the input gradient and a dict of
parameter gradients with the same keys as the parameters.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from .. import _config
from ..kernels import backend, ops_cpu
from ..kernels.gemm_cpu import packed_shape
from . import init
from .training import thread_pool

CELLS = ("lstm", "gru", "rnn", "irnn")
_GATES = {"lstm": 4, "gru": 3, "rnn": 1, "irnn": 1}


def dropout_mask(rng: np.random.Generator, shape, rate: float, dtype) -> np.ndarray:
    """Inverted-dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``.

    One draw of ``rng`` seeds a counter-based generator that fills the mask in one compiled pass
    (drawing every element from ``rng`` took most of the time of a tagger's dropout).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = 1.0 - rate
    scalar = np.dtype(dtype).type
    out = np.empty(shape, dtype)
    seed = rng.integers(0, 2**64, dtype=np.uint64)
    ops_cpu.dropout_fill(seed, np.uint64(round(keep * 2.0**53)), scalar(1) / scalar(keep),
                         out.reshape(-1))
    return out


def check_cell(cell: str) -> str:
    """Return ``cell`` if it names a known cell type, else raise ``ValueError``."""
    if cell not in _GATES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
    return cell


def init_direction(cell: str, input_size: int, hidden_size: int, rng: np.random.Generator,
                   dtype=np.float32) -> dict[str, np.ndarray]:
    """Initial parameters of one direction of one layer.

    Input weights are Glorot-uniform per gate, recurrent weights orthogonal per gate (identity for
    the IRNN), biases zero except the LSTM forget gate, which starts at 1 so that memory is kept
    at the start of training (Jozefowicz et al. 2015).

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "irnn"}
        Cell type.
    input_size, hidden_size : int
        Input width D and state width H.
    rng : numpy.random.Generator
        Source of randomness.
    dtype : numpy dtype
        Parameter dtype.

    Returns
    -------
    dict
        ``W`` (D, G*H), ``U`` (H, G*H), ``b`` (G*H,), and for the GRU ``b_rn`` (H,).
    """
    gates = _GATES[check_cell(cell)]
    H = hidden_size
    W = np.concatenate([init.glorot_uniform(rng, (input_size, H), dtype) for _ in range(gates)], 1)
    if cell == "irnn":
        U = init.identity((H, H), dtype=dtype)
    else:
        U = init.recurrent_orthogonal(rng, H, gates, dtype)
    b = np.zeros(gates * H, dtype=dtype)
    params = {"W": W, "U": U, "b": b}
    if cell == "lstm":
        b[H : 2 * H] = 1.0
    elif cell == "gru":
        params["b_rn"] = np.zeros(H, dtype=dtype)
    return params


def direction_shapes(cell: str, input_size: int, hidden_size: int) -> dict[str, tuple]:
    """Shapes of the parameters :func:`init_direction` makes, computed without making them."""
    gates, H = _GATES[check_cell(cell)], hidden_size
    shapes = {"W": (input_size, gates * H), "U": (H, gates * H), "b": (gates * H,)}
    if cell == "gru":
        shapes["b_rn"] = (H,)
    return shapes


@dataclass
class DirectionCache:
    """What the forward pass of one direction keeps for its backward pass."""

    cell: str
    reverse: bool
    x: np.ndarray
    lengths: np.ndarray
    h_out: np.ndarray
    h_prev: np.ndarray
    c0: np.ndarray | None = None
    c_out: np.ndarray | None = None
    gates: np.ndarray | None = None
    rec_n: np.ndarray | None = None
    device: str = "cpu"
    # Arrays taken from a Workspace, handed back once the backward pass has read them; after
    # that the cache is spent.
    pooled: tuple = ()
    spent: bool = False


class Workspace:
    """Arrays that a stack's forward caches hand back after the backward pass, for the forward
    pass of the next batch.

    A training step's caches hold several MB per layer and direction (gates, cell and previous
    states); allocated afresh for every batch, they are page-faulted in every time, as glibc
    returns blocks of that size to the system when they are freed. Shape 32 x 40, hidden 128,
    both directions: 2,400 page faults per forward pass, 5 of its 12.5 ms.

    Buffers are flat and matched by size (batches differ in length): :meth:`take` returns a
    view of the smallest free buffer large enough, or of a new one that replaces the largest
    too-small one, so the number kept never exceeds the most taken at once. Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._free: list[np.ndarray] = []

    def take(self, shape, dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        with self._lock:
            free = self._free
            same = [i for i, a in enumerate(free) if a.dtype == dtype]
            fits = [i for i in same if free[i].size >= size]
            if fits:
                buffer = free.pop(min(fits, key=lambda i: free[i].size))
                return buffer[:size].reshape(shape)
            if same:
                free.pop(max(same, key=lambda i: free[i].size))
        return np.empty(size, dtype).reshape(shape)

    def give(self, arrays) -> None:
        """Hand back arrays returned by :meth:`take`; nothing may use them afterwards."""
        with self._lock:
            for a in arrays:
                base = a if a.base is None else a.base
                if not any(base is f for f in self._free):
                    self._free.append(base)

    def clear(self) -> None:
        """Drop every buffer kept."""
        with self._lock:
            self._free.clear()

    @property
    def nbytes(self) -> int:
        """Bytes kept for reuse."""
        with self._lock:
            return sum(a.nbytes for a in self._free)


def direction_forward(cell: str, params: dict, x: np.ndarray, lengths: np.ndarray,
                      reverse: bool = False, h0: np.ndarray | None = None,
                      c0: np.ndarray | None = None, device: str = "cpu",
                      need_backward: bool = True, workspace: Workspace | None = None,
                      pool_output: bool = False, gather=None):
    """Run one direction of one recurrent layer.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "irnn"}
        Cell type.
    params : dict
        As returned by :func:`init_direction`.
    x : ndarray (B, T, D)
        Right-padded inputs, C-contiguous, same dtype as the parameters.
    lengths : ndarray (B,) of int64
        Valid steps per sequence.
    reverse : bool
        Run each sequence backwards in time.
    h0, c0 : ndarray (B, H), optional
        Initial states (zeros when omitted; ``c0`` only for the LSTM).
    device : {"cpu", "cuda"}
        Which kernels run it.
    need_backward : bool
        False for prediction: the LSTM on the CPU then keeps nothing for a backward pass (and
        the returned cache is None).
    workspace : Workspace, optional
        On the CPU, where the arrays kept for the backward pass come from; a caller that gives
        one hands them back (``cache.pooled``) once the backward pass is done.
    pool_output : bool
        Take ``h_out`` from the workspace too (for a caller that copies it and hands it back
        with the cache).
    gather : (P, ids), optional
        An LSTM on the CPU whose inputs are rows of a table: its input projections are the
        rows of ``P = table @ W`` (V, 4H) at ``ids`` (B, T), gathered instead of multiplied,
        and ``x`` is a (B, T, 0) array (the backward pass then gives the gradient of the
        projections, see :func:`direction_backward`'s ``d_pre``).

    Returns
    -------
    h_out : ndarray (B, T, H)
        Hidden state at every step, zero at padding.
    h_last : ndarray (B, H)
        Final hidden state.
    c_last : ndarray (B, H) or None
        Final cell state (LSTM only).
    cache : DirectionCache
        For :func:`direction_backward`.
    """
    B, T, _ = x.shape
    H = params["U"].shape[0]
    dtype = x.dtype
    if gather is not None and (cell != "lstm" or device != "cpu" or x.shape[2] != 0):
        raise ValueError("gathered input projections are for an LSTM on the CPU, with x of "
                         "width 0")
    if not need_backward and cell == "lstm" and device == "cpu" and gather is None:
        return _lstm_infer(params, x, lengths, reverse, h0, c0)
    mem = _Memory(device, dtype, keep=is_device_array(x))
    pooled = []

    def kept(shape):  # an array the backward pass reads
        if workspace is None or mem.gpu:
            return mem.empty(shape)
        pooled.append(workspace.take(shape, dtype))
        return pooled[-1]

    h0 = mem.zeros((B, H)) if h0 is None else mem.put(h0)
    h_out = kept((B, T, H)) if pool_output else mem.empty((B, T, H))
    h_prev, h_last = kept((B, T, H)), mem.empty((B, H))
    x, lengths = mem.put(x), mem.put(lengths, np.int64)
    W, U, b = mem.put(params["W"]), mem.put(params["U"]), mem.put(params["b"])
    cache = DirectionCache(cell, reverse, x, lengths, h_out, h_prev, device=device)
    kernels = backend.kernels(device, "rnn")
    c_last = None
    if cell == "lstm":
        c0 = mem.zeros((B, H)) if c0 is None else mem.put(c0)
        cache.c0 = c0
        cache.c_out = kept((B, T, H))
        cache.gates = kept((B, T, 4 * H))
        c_last = mem.empty((B, H))
        if gather is None:
            # On the CPU ``projected`` is given either way: one compiled signature serves both.
            kernels.lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, cache.c_out,
                                 cache.gates, h_prev, h_last, c_last,
                                 *(() if mem.gpu else (False,)))
        else:
            table, ids = gather
            ops_cpu.embedding_lookup(np.ascontiguousarray(table, dtype),
                                     np.ascontiguousarray(ids, np.int64), cache.gates)
            kernels.lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, cache.c_out,
                                 cache.gates, h_prev, h_last, c_last, True)
    elif cell == "gru":
        cache.gates = kept((B, T, 3 * H))
        cache.rec_n = kept((B, T, H))
        kernels.gru_forward(x, lengths, W, U, b, mem.put(params["b_rn"]), h0, reverse, h_out,
                            cache.gates, cache.rec_n, h_prev, h_last)
    else:
        kernels.rnn_forward(x, lengths, W, U, b, h0, cell == "irnn", reverse, h_out, h_prev,
                            h_last)
    cache.pooled = tuple(pooled)
    return mem.get(h_out), mem.get(h_last), mem.get(c_last), cache


def _lstm_infer(params: dict, x, lengths, reverse: bool, h0, c0):
    """:func:`direction_forward` of an LSTM on the CPU when no backward pass follows."""
    B, T, _ = x.shape
    H = params["U"].shape[0]
    dtype = x.dtype
    h0 = np.zeros((B, H), dtype) if h0 is None else np.ascontiguousarray(h0, dtype)
    c0 = np.zeros((B, H), dtype) if c0 is None else np.ascontiguousarray(c0, dtype)
    h_out, h_last, c_last = np.empty((B, T, H), dtype), np.empty((B, H), dtype), np.empty(
        (B, H), dtype)
    backend.kernels("cpu", "rnn").lstm_infer(
        np.ascontiguousarray(x, dtype), np.ascontiguousarray(lengths, np.int64),
        params["W"], params["U"], params["b"], h0, c0, reverse, h_out, h_last, c_last,
        _scratch((B, T, 4 * H), dtype))
    return h_out, h_last, c_last, None


_SCRATCH = threading.local()


def _scratch(shape, dtype, slot: int = 0) -> np.ndarray:
    """A work array that never leaves the call that asks for it, reused by later calls of the
    same thread (the largest size asked for is kept: one array per thread, dtype and ``slot``;
    a call that needs two at once asks for two slots).

    Allocating a fresh array of several MB per batch costs more than its page faults suggest:
    glibc hands such blocks back to the system when they are freed, and faulting them in again
    contends for the process's memory map when two threads do it at once (shape 64 x 50, hidden
    256: training on two threads went from 120 to 98 ms per batch with this reuse).
    """
    size = math.prod(shape)
    key = (np.dtype(dtype).str, slot)
    pool = getattr(_SCRATCH, "arrays", None)
    if pool is None:
        pool = _SCRATCH.arrays = {}
    buffer = pool.get(key)
    if buffer is None or buffer.size < size:
        buffer = pool[key] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)


def is_device_array(a) -> bool:
    """Whether ``a`` is an array in GPU memory (a numba device array)."""
    return hasattr(a, "copy_to_host")


class _Memory:
    """Arrays for the kernels of one device. On the GPU, inputs go over once and what the
    backward pass needs stays there (the cache holds device arrays); results come back with
    :meth:`get`, unless ``keep``: then they stay on the device (the caller passed device arrays,
    see :mod:`tagger.nn.resident`). On the CPU everything is a NumPy array and nothing is
    copied."""

    def __init__(self, device: str, dtype, keep: bool = False):
        self.gpu = device == "cuda"
        self.dtype = dtype
        self.keep = keep
        if self.gpu:
            from ..kernels import memory_cuda

            self.memory = memory_cuda  # temporaries from the active arena, if any

    def put(self, a, dtype=None):
        dtype = self.dtype if dtype is None else dtype
        if self.gpu:
            if hasattr(a, "copy_to_host"):  # already a device array
                return a
            return self.memory.to_device(np.ascontiguousarray(a, dtype))
        return np.ascontiguousarray(a, dtype)

    def empty(self, shape):
        return self.memory.empty(shape, self.dtype) if self.gpu else np.empty(shape, self.dtype)

    def zeros(self, shape):
        if not self.gpu:
            return np.zeros(shape, self.dtype)
        from ..kernels import ops_cuda

        out = self.memory.empty(shape, self.dtype)
        ops_cuda.fill(out, 0)  # on the device: no host array goes over
        return out

    def get(self, a):
        if a is None or not self.gpu or self.keep:
            return a
        return a.copy_to_host()


def direction_backward(params: dict, cache: DirectionCache, d_h: np.ndarray,
                       d_h_last: np.ndarray | None = None, d_c_last: np.ndarray | None = None,
                       out: dict | None = None, d_pre: np.ndarray | None = None):
    """Backpropagate through one direction.

    Parameters
    ----------
    params : dict
        The parameters the forward pass used.
    cache : DirectionCache
        From :func:`direction_forward`.
    d_h : ndarray (B, T, H)
        Gradient of the loss with respect to ``h_out``.
    d_h_last, d_c_last : ndarray (B, H), optional
        Gradients with respect to the final states (zero when omitted).
    out : dict, optional
        Arrays (on the cache's device) to write the parameter gradients into, with the keys of
        ``params``; new arrays when omitted.
    d_pre : ndarray (B, T, 4H or 3H or H), optional
        On the CPU: receives the gradient of the loss with respect to the input projections
        plus bias (the pre-activations' input part), zero at padding; scratch when omitted.

    Returns
    -------
    dx : ndarray (B, T, D)
        Gradient with respect to the inputs.
    grads : dict
        Gradients with the keys of ``params``.
    dh0, dc0 : ndarray (B, H)
        Gradients with respect to the initial states (``dc0`` is None except for the LSTM).
    """
    x, lengths, cell = cache.x, cache.lengths, cache.cell
    B, T, D = x.shape
    H = params["U"].shape[0]
    dtype = x.dtype
    mem = _Memory(cache.device, dtype, keep=is_device_array(d_h))
    W, U, b = mem.put(params["W"]), mem.put(params["U"]), mem.put(params["b"])
    d_h = mem.put(d_h)
    zeros = mem.zeros((B, H))
    d_h_last = zeros if d_h_last is None else mem.put(d_h_last)
    dx = mem.empty((B, T, D))
    grads = {name: mem.empty(a.shape) if out is None else out[name]
             for name, a in (("W", W), ("U", U), ("b", b))}
    # d_pre is scratch: the kernels fill it and the weight gradients are taken from it.
    if d_pre is None or mem.gpu:
        d_pre = (mem.empty((B, T, W.shape[1])) if mem.gpu
                 else _scratch((B, T, W.shape[1]), dtype))
    dh0 = mem.empty((B, H))
    dc0 = None
    kernels = backend.kernels(cache.device, "rnn")
    if cell == "lstm":
        d_c_last = zeros if d_c_last is None else mem.put(d_c_last)
        dc0 = mem.empty((B, H))
        # On the CPU, the gate gradients are packed for the weight-gradient products into a
        # second work array of this thread's.
        extra = ()
        if not mem.gpu:
            extra = (_scratch(packed_shape(B * T, W.shape[1], dtype), dtype, slot=1),)
        kernels.lstm_backward(x, lengths, W, U, cache.c0, cache.reverse, cache.gates, cache.c_out,
                              cache.h_prev, d_h, d_h_last, d_c_last, d_pre, dx, grads["W"],
                              grads["U"], grads["b"], dh0, dc0, *extra)
    elif cell == "gru":
        grads["b_rn"] = mem.empty((H,)) if out is None else out["b_rn"]
        kernels.gru_backward(x, lengths, W, U, cache.reverse, cache.gates, cache.rec_n,
                             cache.h_prev, d_h, d_h_last, d_pre, dx, grads["W"], grads["U"],
                             grads["b"], grads["b_rn"], dh0)
    else:
        kernels.rnn_backward(x, lengths, W, U, cell == "irnn", cache.reverse, cache.h_out,
                             cache.h_prev, d_h, d_h_last, d_pre, dx, grads["W"], grads["U"],
                             grads["b"], dh0)
    return (mem.get(dx), {k: mem.get(v) for k, v in grads.items()}, mem.get(dh0),
            mem.get(dc0))


@dataclass
class PairCache:
    """What the forward pass of both directions of a bidirectional LSTM layer run together on the
    GPU keeps for the backward pass (device arrays with a leading direction axis)."""

    x: object
    lengths: object
    c0: object
    gates: object
    c_out: object
    h_prev: object


def lstm_pair_forward(params_fwd: dict, params_bwd: dict, x: np.ndarray, lengths: np.ndarray,
                      stacked: dict | None = None):
    """Both directions of a bidirectional LSTM layer in one launch on the GPU.

    ``stacked``, when given, holds ``W``, ``U`` and ``b`` of both directions as (2, ...) device
    arrays (of which the two parameter dicts hold views); else they are stacked here. Given
    device arrays ``x`` and ``lengths``, the output stays on the device.

    Returns
    -------
    out : ndarray (B, T, 2H)
        Forward then backward hidden states, zero at padding.
    cache : PairCache
        For :func:`lstm_pair_backward`.
    """
    B, T, _ = x.shape
    H = params_fwd["U"].shape[0]
    resident = is_device_array(x)
    mem = _Memory("cuda", x.dtype, keep=resident)
    if stacked is not None:
        W, U, b = stacked["W"], stacked["U"], stacked["b"]
    else:
        W, U, b = (mem.put(np.stack([_host(params_fwd[k]), _host(params_bwd[k])]))
                   for k in ("W", "U", "b"))
    x, lengths = mem.put(x), mem.put(lengths, np.int64)
    zeros = mem.zeros((2, B, H))
    h_out, c_out, h_prev = (mem.empty((2, B, T, H)) for _ in range(3))
    gates = mem.empty((2, B, T, 4 * H))
    h_last, c_last = mem.empty((2, B, H)), mem.empty((2, B, H))
    backend.kernels("cuda", "rnn").lstm_forward_pair(x, lengths, W, U, b, zeros, zeros, h_out,
                                                     c_out, gates, h_prev, h_last, c_last)
    cache = PairCache(x, lengths, zeros, gates, c_out, h_prev)
    if resident:
        from ..kernels import ops_cuda

        out = mem.empty((B, T, 2 * H))
        ops_cuda.join_directions(h_out, out)
        return out, cache
    out = mem.get(h_out)
    return np.concatenate([out[0], out[1]], axis=2), cache


def _host(a):
    return a.copy_to_host() if is_device_array(a) else a


def lstm_pair_backward(params_fwd: dict, params_bwd: dict, cache: PairCache, d_out: np.ndarray,
                       stacked: dict | None = None, out: dict | None = None):
    """Backpropagate through :func:`lstm_pair_forward`: (dx, grads of the forward direction,
    grads of the backward direction). Given a device array ``d_out``, everything stays on the
    device, and the gradients of the two directions are views of (2, ...) arrays: those of
    ``out`` (``W``, ``U`` and ``b`` of both directions, on the device) when given."""
    B, T, D = cache.x.shape
    H = params_fwd["U"].shape[0]
    dtype = d_out.dtype
    resident = is_device_array(d_out)
    mem = _Memory("cuda", dtype, keep=resident)
    if stacked is not None:
        W, U = stacked["W"], stacked["U"]
    else:
        W, U = (mem.put(np.stack([_host(params_fwd[k]), _host(params_bwd[k])]))
                for k in ("W", "U"))
    if resident:
        from ..kernels import ops_cuda

        d_h = mem.empty((2, B, T, H))
        ops_cuda.split_directions(d_out, d_h)
    else:
        d_h = mem.put(np.stack([d_out[:, :, :H], d_out[:, :, H:]]))
    zeros = mem.zeros((2, B, H))
    d_gates = mem.empty((2, B, T, 4 * H))
    dx = mem.empty((2, B, T, D))
    if out is not None:
        dW, dU, db = out["W"], out["U"], out["b"]
    else:
        dW, dU, db = mem.empty(W.shape), mem.empty(U.shape), mem.empty((2, 4 * H))
    dh0, dc0 = mem.empty((2, B, H)), mem.empty((2, B, H))
    backend.kernels("cuda", "rnn").lstm_backward_pair(
        cache.x, cache.lengths, W, U, cache.c0, cache.gates, cache.c_out, cache.h_prev, d_h, zeros,
        zeros, d_gates, dx, dW, dU, db, dh0, dc0)
    if resident:
        total = mem.empty((B, T, D))
        ops_cuda.add(dx[0], dx[1], total)
        return (total, {"W": dW[0], "U": dU[0], "b": db[0]},
                {"W": dW[1], "U": dU[1], "b": db[1]})
    dx, dW, dU, db = (mem.get(a) for a in (dx, dW, dU, db))
    return (dx[0] + dx[1], {"W": dW[0], "U": dU[0], "b": db[0]},
            {"W": dW[1], "U": dU[1], "b": db[1]})


def _parallel_directions(work: int) -> bool:
    """Whether two directions with ``work`` (batch x steps x hidden) each run in two threads."""
    return work >= _config.PARALLEL_DIRECTIONS_MIN_WORK and numba.get_num_threads() >= 2


def run_directions(calls: list, work: int) -> list:
    """Run one callable per direction; two of them concurrently when it pays off.

    The kernels release the GIL, so the reverse direction runs in a worker thread while the
    forward one runs here. Each direction's arithmetic is the same either way, so the results
    are bitwise identical to a serial run.
    """
    if len(calls) == 2 and _parallel_directions(work):
        future = thread_pool("direction", 1).submit(calls[1])
        first = calls[0]()
        return [first, future.result()]
    return [call() for call in calls]


def _into_columns(call, out: np.ndarray, start: int):
    """Run a direction's forward ``call`` and copy its outputs into columns ``start:`` of
    ``out`` (in the thread that ran it)."""
    result = call()
    out[:, :, start:start + result[0].shape[2]] = result[0]
    return result


def _backward_columns(params: dict, cache, d_out: np.ndarray, start: int, width: int):
    """:func:`direction_backward` on columns ``start:start + width`` of ``d_out`` (the copy made
    in the thread that runs it)."""
    return direction_backward(params, cache,
                              np.ascontiguousarray(d_out[:, :, start:start + width]))


class RNNStack:
    """A stack of (bidirectional) recurrent layers with inverted dropout between layers.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "irnn"}
        Cell type of every layer.
    input_size : int
        Width of the inputs.
    hidden_size : int
        State width of each direction.
    num_layers : int
        Number of stacked layers.
    bidirectional : bool
        Run a reverse direction too and concatenate both outputs (forward first).
    dropout : float
        Probability of zeroing a unit of a layer's input, for every layer after the first,
        during training.
    prefix : str
        Prefix of the parameter names (``{prefix}.{layer}.{fwd|bwd}.{W|U|b|b_rn}``).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0, prefix: str = "rnn"):
        self.cell = check_cell(cell)
        if num_layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError("input_size, hidden_size and num_layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.prefix = prefix
        self.device = "cpu"  # or "cuda": which kernels run the recurrence
        # Where the CPU forward caches come from; backward hands them back for the next batch.
        self.workspace = Workspace()

    @property
    def directions(self) -> tuple[str, ...]:
        return ("fwd", "bwd") if self.bidirectional else ("fwd",)

    @property
    def output_size(self) -> int:
        return self.hidden_size * len(self.directions)

    def _key(self, layer: int, direction: str) -> str:
        return f"{self.prefix}.{layer}.{direction}."

    def _direction_params(self, params: dict, layer: int, direction: str) -> dict:
        key = self._key(layer, direction)
        return {name[len(key):]: value for name, value in params.items() if name.startswith(key)}

    def _paired(self) -> bool:
        """Whether both directions of a layer run together (the LSTM on the GPU)."""
        return (self.device == "cuda" and self.cell == "lstm" and self.bidirectional
                and _config.CUDA_PAIR_DIRECTIONS)

    def _work(self, steps: int) -> int:
        # On the GPU the directions go one after the other (one host thread drives the device).
        return 0 if self.device != "cpu" else steps * self.hidden_size

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order."""
        shapes = {}
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.output_size
            for direction in self.directions:
                for name, shape in direction_shapes(self.cell, size, self.hidden_size).items():
                    shapes[self._key(layer, direction) + name] = shape
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Initial parameters of every layer and direction (see :func:`init_direction`)."""
        params = {}
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.output_size
            for direction in self.directions:
                for name, value in init_direction(self.cell, size, self.hidden_size, rng,
                                                  dtype).items():
                    params[self._key(layer, direction) + name] = value
        return params

    def forward(self, params: dict, x: np.ndarray, lengths: np.ndarray,
                rng: np.random.Generator | None = None, need_backward: bool = True):
        """Run the stack. ``rng`` given means training: dropout masks are drawn from it.
        ``need_backward=False`` (prediction) keeps nothing for :meth:`backward`.

        Returns
        -------
        out : ndarray (B, T, output_size)
            Outputs of the last layer, zero at padding.
        cache : list
            For :meth:`backward`.
        """
        caches = []
        inputs = x
        for layer in range(self.num_layers):
            mask = None
            if layer > 0 and rng is not None and self.dropout > 0:
                mask = dropout_mask(rng, inputs.shape, self.dropout, inputs.dtype)
                inputs = inputs * mask
            if self._paired() and need_backward:
                out, pair = lstm_pair_forward(self._direction_params(params, layer, "fwd"),
                                              self._direction_params(params, layer, "bwd"),
                                              inputs, lengths)
                caches.append((mask, pair))
                inputs = out
                continue
            B, T, _ = inputs.shape
            if (not need_backward and self.cell == "lstm" and self.device == "cpu"
                    and self.bidirectional and not _parallel_directions(self._work(B * T))):
                inputs = self._lstm_infer_pair(params, layer, inputs, lengths)
                caches.append((mask, [None, None]))
                continue
            # The outputs of two directions are copied into one array, each by its own thread,
            # so theirs can be reused too; a single direction's is the caller's.
            calls = [partial(direction_forward, self.cell,
                             self._direction_params(params, layer, direction), inputs, lengths,
                             reverse=direction == "bwd", device=self.device,
                             need_backward=need_backward,
                             workspace=self.workspace if need_backward else None,
                             pool_output=self.bidirectional)
                     for direction in self.directions]
            if self.bidirectional:
                H = self.hidden_size
                joined = np.empty((B, T, 2 * H), params[self._key(layer, "fwd") + "W"].dtype)
                calls = [partial(_into_columns, call, joined, k * H)
                         for k, call in enumerate(calls)]
            results = run_directions(calls, self._work(B * T))
            dir_caches = [r[3] for r in results]
            inputs = joined if self.bidirectional else results[0][0]
            caches.append((mask, dir_caches))
        return inputs, caches

    def _lstm_infer_pair(self, params: dict, layer: int, x: np.ndarray, lengths: np.ndarray):
        """Both directions of an LSTM layer for prediction in one kernel call (one thread): no
        per-direction overhead and no concatenation, which counts for single sentences."""
        dtype = params[self._key(layer, "fwd") + "W"].dtype
        B, T, _ = x.shape
        H = self.hidden_size
        out = np.empty((B, T, 2 * H), dtype)
        fwd = self._direction_params(params, layer, "fwd")
        bwd = self._direction_params(params, layer, "bwd")
        backend.kernels("cpu", "rnn").lstm_infer_pair(
            np.ascontiguousarray(x, dtype), np.ascontiguousarray(lengths, np.int64),
            fwd["W"], fwd["U"], fwd["b"], bwd["W"], bwd["U"], bwd["b"], out,
            _scratch((B, T, 4 * H), dtype))
        return out

    def backward(self, params: dict, caches: list, d_out: np.ndarray):
        """Backpropagate through the stack.

        Returns
        -------
        dx : ndarray (B, T, input_size)
            Gradient with respect to the stack's input.
        grads : dict
            Gradients with the keys of ``params``.
        """
        grads = {}
        H = self.hidden_size
        d = d_out
        for layer in range(self.num_layers - 1, -1, -1):
            mask, dir_caches = caches[layer]
            if isinstance(dir_caches, PairCache):
                dx, g_fwd, g_bwd = lstm_pair_backward(
                    self._direction_params(params, layer, "fwd"),
                    self._direction_params(params, layer, "bwd"), dir_caches,
                    np.ascontiguousarray(d))
                for direction, g in (("fwd", g_fwd), ("bwd", g_bwd)):
                    for name, value in g.items():
                        grads[self._key(layer, direction) + name] = value
                if mask is not None:
                    dx *= mask
                d = dx
                continue
            if any(cache.spent for cache in dir_caches):
                raise RuntimeError("these caches were already used by a backward pass (their "
                                   "arrays are reused): run forward again")
            calls = [partial(_backward_columns, self._direction_params(params, layer, direction),
                             dir_caches[k], d, k * H, H)
                     for k, direction in enumerate(self.directions)]
            B, T, _ = d.shape
            results = run_directions(calls, self._work(B * T))
            for cache in dir_caches:
                cache.spent = True
                self.workspace.give(cache.pooled)
            dx = None
            for (dx_dir, g, _, _), direction in zip(results, self.directions, strict=True):
                for name, value in g.items():
                    grads[self._key(layer, direction) + name] = value
                dx = dx_dir if dx is None else dx + dx_dir
            if mask is not None:
                dx *= mask
            d = dx
        return d, grads
