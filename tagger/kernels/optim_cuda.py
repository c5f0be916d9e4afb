"""CUDA kernels (numba-cuda) of the optimizer step: the gradients' squared norms and the batch
loss, and fused Adam and SGD updates (with the argument order of :mod:`tagger.kernels.optim_cpu`),
so that parameters and optimizer state never leave the GPU.

Arrays are flat device arrays: the engine keeps all parameters end to end in one flat array, and
their gradients and optimizer state likewise, so that one launch updates every parameter and two
launches take every gradient's squared norm. Scalars are cast to the parameter's dtype, so that
float32 updates are computed in float32. The sums are reductions of fixed geometry and order
(per-thread strided partial sums, then a shared-memory tree in each block, then the block totals
in order), so their results depend on the arrays and the launch sizes of :mod:`tagger._config`
only, never on scheduling.

The GPU contracts ``a * b + c`` into a fused multiply-add, which rounds once where NumPy rounds
twice: float32 updates equal the NumPy and CPU ones within float rounding, not bitwise.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config
from . import memory_cuda

# Size of the shared buffer of a block reduction, fixed when the kernel is compiled: the most
# threads a reducing block may have.
_REDUCE_THREADS = 1024


_PER_THREAD = 16


def _threads() -> int:
    return min(_config.CUDA_THREADS_PER_BLOCK, _REDUCE_THREADS)


@cuda.jit(device=True, inline=True)
def _block_sum(partial, acc):
    """The sum of every thread's ``acc`` over the block, valid in thread 0: a pairwise tree in a
    fixed order, for any block size."""
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    partial[tid] = acc
    cuda.syncthreads()
    step = 1
    while step < nt:  # the same trip count in every thread: the barrier is reached by all
        if tid % (2 * step) == 0 and tid + step < nt:
            partial[tid] += partial[tid + step]
        step *= 2
        cuda.syncthreads()
    return partial[0]


@cuda.jit
def _sum_kernel(x, out, slot):
    """out[slot + block] = sum over this block's grid-stride share of x, in float64."""
    partial = cuda.shared.array(_REDUCE_THREADS, np.float64)
    acc = 0.0
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        acc += np.float64(x[i])
    total = _block_sum(partial, acc)
    if cuda.threadIdx.x == 0:
        out[slot + cuda.blockIdx.x] = total


# Up to this many values, one thread sums them in order: a model's biases and CRF scores then
# take one launch with no block-wide barriers (a few microseconds of arithmetic on a GPU; and
# every barrier is slow under the simulator).
_SERIAL_MAX = 1024


@cuda.jit
def _serial_sum_kernel(x, out, slot):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += np.float64(x[i])
    out[slot] = acc


def sum_values(x, out, slot: int) -> None:
    """``out[slot] = sum(x)``, accumulated in float64 (a batch's loss goes into the same array as
    the gradients' squared norms, so that one copy brings both back).

    Deterministic: one thread in order for a short array; else one partial sum per block, in a
    fixed order, then one block sums the partials in a fixed order.

    Parameters
    ----------
    x : device array, flat, float32 or float64
    out : device array of float64
        Out: only ``out[slot]`` is written.
    slot : int
    """
    n = x.shape[0]
    if n <= _SERIAL_MAX:
        _serial_sum_kernel[1, 1](x, out, slot)
        return
    tpb = _threads()
    # Each thread sums at least _PER_THREAD values before another block is started.
    blocks = min(max(1, math.ceil(n / (tpb * _PER_THREAD))), _config.CUDA_MAX_BLOCKS,
                 _REDUCE_THREADS)
    if blocks == 1:
        _sum_kernel[1, tpb](x, out, slot)
        return
    partials = memory_cuda.empty(blocks, np.float64)
    _sum_kernel[blocks, tpb](x, partials, 0)
    _sum_kernel[1, tpb](partials, out, slot)


@cuda.jit
def _segment_sum_kernel(x, segments, out):
    """Block (s, p) sums the squares of its grid-stride share of segment s of ``x`` in float64
    into ``out[s, p]``; ``segments[s]`` = (first, end)."""
    partial = cuda.shared.array(_REDUCE_THREADS, np.float64)
    s, p = cuda.blockIdx.x, cuda.blockIdx.y
    first, end = segments[s, 0], segments[s, 1]
    acc = 0.0
    for i in range(first + p * cuda.blockDim.x + cuda.threadIdx.x, end,
                   cuda.gridDim.y * cuda.blockDim.x):
        value = np.float64(x[i])
        acc += value * value
    total = _block_sum(partial, acc)
    if cuda.threadIdx.x == 0:
        out[s, p] = total


@cuda.jit
def _sum_rows_kernel(partials, out):
    """out[s] = partials[s].sum(), in order: one thread per row."""
    for s in range(cuda.grid(1), partials.shape[0], cuda.gridsize(1)):
        acc = 0.0
        for p in range(partials.shape[1]):
            acc += partials[s, p]
        out[s] = acc


def segment_geometry(segments: np.ndarray) -> tuple[int, int]:
    """(blocks per segment, threads per block) of :func:`segment_sum_squares` for these (first,
    end) pairs: one thread per segment, in order, when none is longer than ``_SERIAL_MAX``
    (a small model's gradients: no barriers); else enough blocks for the longest segment to give
    each thread at least ``_PER_THREAD`` values, within the launch limits."""
    longest = int((segments[:, 1] - segments[:, 0]).max()) if len(segments) else 0
    if longest <= _SERIAL_MAX:
        return 1, 1
    tpb = _threads()
    return min(max(1, math.ceil(longest / (tpb * _PER_THREAD))), _config.CUDA_MAX_BLOCKS,
               _REDUCE_THREADS), tpb


def segment_sum_squares(x, segments, partials, out, threads: int) -> None:
    """``out[s] = sum(x[first:end] ** 2)`` for every segment ``(first, end) = segments[s]``,
    accumulated in float64: the squared norm of every parameter's gradient in two launches,
    whatever the number of parameters (the gradients lie end to end in one flat array).

    Deterministic: block (s, p) sums a fixed grid-stride share of segment s and reduces it in a
    fixed tree; one thread per segment then adds the P block totals in order.

    Parameters
    ----------
    x : device array, flat, float32 or float64
    segments : device array (S, 2) of int64
    partials : device array (S, P) of float64
        Work space.
    out : device array of float64
        Out: ``out[:S]`` is written.
    threads : int
        Threads per block. P and ``threads`` come from :func:`segment_geometry`.
    """
    S, P = partials.shape
    if S == 0:
        return
    _segment_sum_kernel[(S, P), threads](x, segments, partials)
    _sum_rows_kernel[_grid(S)](partials, out)


def _grid(n: int) -> tuple[int, int]:
    tpb = _config.CUDA_THREADS_PER_BLOCK
    return min(max(1, math.ceil(n / tpb)), _config.CUDA_MAX_BLOCKS), tpb


@cuda.jit
def _adam_kernel(param, grad, m, v, scale, weight_decay, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, lr_t, eps_t):
    i0 = cuda.grid(1)
    zero = param.dtype.type(0)
    for i in range(i0, param.shape[0], cuda.gridsize(1)):
        g = grad[i] * scale
        if weight_decay != zero:
            g = g + weight_decay * param[i]
        mi = m[i] * beta1 + one_minus_beta1 * g
        vi = v[i] * beta2 + one_minus_beta2 * (g * g)
        m[i] = mi
        v[i] = vi
        param[i] -= lr_t * mi / (math.sqrt(vi) + eps_t)


def adam_update(param, grad, m, v, scale, weight_decay, beta1, one_minus_beta1, beta2,
                one_minus_beta2, lr_t, eps_t) -> None:
    """One Adam step, in place on flat ``param``, ``m`` and ``v`` (see
    :func:`tagger.kernels.optim_cpu.adam_update`).

    Parameters
    ----------
    param, grad, m, v : device arrays, flat, of one dtype
    scale, weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, lr_t, eps_t : float
        As for the CPU kernel; cast to the parameter's dtype.
    """
    t = param.dtype.type
    n = param.shape[0]
    if n:
        _adam_kernel[_grid(n)](param, grad, m, v, t(scale), t(weight_decay), t(beta1),
                               t(one_minus_beta1), t(beta2), t(one_minus_beta2), t(lr_t),
                               t(eps_t))


@cuda.jit
def _sgd_kernel(param, grad, velocity, scale, weight_decay, momentum, nesterov, learning_rate):
    i0 = cuda.grid(1)
    zero = param.dtype.type(0)
    for i in range(i0, param.shape[0], cuda.gridsize(1)):
        g = grad[i] * scale
        if weight_decay != zero:
            g = g + weight_decay * param[i]
        if momentum != zero:
            vi = velocity[i] * momentum + g
            velocity[i] = vi
            g = g + momentum * vi if nesterov else vi
        param[i] -= learning_rate * g


def sgd_update(param, grad, velocity, scale, weight_decay, momentum, nesterov,
               learning_rate) -> None:
    """One SGD step in place, the update of :class:`tagger.nn.optim.SGD`:
    ``g = scale * grad + weight_decay * param``; with momentum ``velocity = momentum * velocity
    + g`` and ``g = g + momentum * velocity`` (Nesterov) or ``velocity``; ``param -= lr * g``.

    Parameters
    ----------
    param, grad : device arrays, flat, of one dtype
    velocity : device array, flat
        Momentum buffer, updated in place; not read when ``momentum == 0`` (a 1-element dummy
        will do).
    scale, weight_decay, momentum : float
        Cast to the parameter's dtype.
    nesterov : bool
    learning_rate : float
        Cast to the parameter's dtype.
    """
    t = param.dtype.type
    n = param.shape[0]
    if n:
        _sgd_kernel[_grid(n)](param, grad, velocity, t(scale), t(weight_decay), t(momentum),
                              bool(nesterov), t(learning_rate))
