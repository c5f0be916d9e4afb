"""CUDA kernels (numba-cuda) for pooling over time, with the argument order and conventions of
:mod:`tagger.kernels.pool_cpu`: mean, max and attention pooling and their backward passes.

One block per sequence; threads share out the hidden units (or the steps, for attention scores).
Padding is never pooled and never receives attention weight; its gradients are zero. Gradients of
the shared attention weights are written per sequence and summed in sequence order.
"""

from __future__ import annotations

import math

from numba import cuda

from .. import _config
from . import memory_cuda


def _blocks(kernel, B: int, *args) -> None:
    if B:
        kernel[B, _config.CUDA_THREADS_PER_BLOCK](*args)


@cuda.jit
def _mean_pool_kernel(h, lengths, out):
    b = cuda.blockIdx.x
    T, H = h.shape[1], h.shape[2]
    L = max(min(lengths[b], T), 0)
    zero = out.dtype.type(0)
    for j in range(cuda.threadIdx.x, H, cuda.blockDim.x):
        acc = zero
        for t in range(L):
            acc += h[b, t, j]
        out[b, j] = acc / out.dtype.type(L) if L else zero


def mean_pool(h, lengths, out) -> None:
    """Mean over the valid steps (see :func:`tagger.kernels.pool_cpu.mean_pool`)."""
    _blocks(_mean_pool_kernel, h.shape[0], h, lengths, out)


@cuda.jit
def _mean_pool_backward_kernel(lengths, d_out, d_h):
    b = cuda.blockIdx.x
    T, H = d_h.shape[1], d_h.shape[2]
    L = max(min(lengths[b], T), 0)
    for j in range(cuda.threadIdx.x, H, cuda.blockDim.x):
        g = d_out[b, j] / d_out.dtype.type(L) if L else d_out.dtype.type(0)
        for t in range(T):
            d_h[b, t, j] = g if t < L else d_h.dtype.type(0)


def mean_pool_backward(lengths, d_out, d_h) -> None:
    """Gradient of :func:`mean_pool` (see :func:`tagger.kernels.pool_cpu.mean_pool_backward`)."""
    _blocks(_mean_pool_backward_kernel, d_h.shape[0], lengths, d_out, d_h)


@cuda.jit
def _max_pool_kernel(h, lengths, out, argmax):
    b = cuda.blockIdx.x
    T, H = h.shape[1], h.shape[2]
    L = max(min(lengths[b], T), 0)
    for j in range(cuda.threadIdx.x, H, cuda.blockDim.x):
        if L == 0:
            out[b, j] = 0
            argmax[b, j] = -1
            continue
        best = h[b, 0, j]
        arg = 0
        for t in range(1, L):
            if h[b, t, j] > best:  # strict: ties keep the earlier step
                best = h[b, t, j]
                arg = t
        out[b, j] = best
        argmax[b, j] = arg


def max_pool(h, lengths, out, argmax) -> None:
    """Element-wise maximum over the valid steps (see :func:`tagger.kernels.pool_cpu.max_pool`)."""
    _blocks(_max_pool_kernel, h.shape[0], h, lengths, out, argmax)


@cuda.jit
def _max_pool_backward_kernel(argmax, d_out, d_h):
    b = cuda.blockIdx.x
    T, H = d_h.shape[1], d_h.shape[2]
    for j in range(cuda.threadIdx.x, H, cuda.blockDim.x):
        a = argmax[b, j]
        for t in range(T):
            d_h[b, t, j] = d_out[b, j] if t == a else d_h.dtype.type(0)


def max_pool_backward(argmax, d_out, d_h) -> None:
    """Gradient of :func:`max_pool` (see :func:`tagger.kernels.pool_cpu.max_pool_backward`)."""
    _blocks(_max_pool_backward_kernel, d_h.shape[0], argmax, d_out, d_h)


@cuda.jit
def _attention_pool_kernel(h, lengths, w, b, scores, weights, out):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    T, H = h.shape[1], h.shape[2]
    L = max(min(lengths[row], T), 0)
    zero = h.dtype.type(0)
    for t in range(tid, T, nt):
        acc = zero
        if t < L:
            for j in range(H):
                acc += h[row, t, j] * w[j]
            acc += b[0]
        scores[row, t] = acc
        weights[row, t] = 0
    cuda.syncthreads()
    if tid == 0 and L > 0:
        m = scores[row, 0]
        for t in range(1, L):
            m = max(m, scores[row, t])
        total = zero
        for t in range(L):
            e = math.exp(scores[row, t] - m)  # <= 1, and 1 at the maximum: total >= 1
            weights[row, t] = e
            total += e
        for t in range(L):
            weights[row, t] = weights[row, t] / total
    cuda.syncthreads()
    for j in range(tid, H, nt):
        acc = zero
        for t in range(L):
            acc += weights[row, t] * h[row, t, j]
        out[row, j] = acc


def attention_pool(h, lengths, w, b, scores, weights, out) -> None:
    """Softmax-weighted sum over the valid steps (see
    :func:`tagger.kernels.pool_cpu.attention_pool`)."""
    _blocks(_attention_pool_kernel, h.shape[0], h, lengths, w, b, scores, weights, out)


@cuda.jit
def _attention_backward_kernel(h, lengths, w, weights, d_out, d_h, g, dw_part, db_part):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    T, H = h.shape[1], h.shape[2]
    L = max(min(lengths[row], T), 0)
    zero = h.dtype.type(0)
    for t in range(tid, T, nt):
        acc = zero
        if t < L:
            for j in range(H):
                acc += d_out[row, j] * h[row, t, j]
        g[row, t] = acc
    cuda.syncthreads()
    if tid == 0:
        gbar = zero
        for t in range(L):
            gbar += weights[row, t] * g[row, t]
        db = zero
        for t in range(L):
            ds = weights[row, t] * (g[row, t] - gbar)
            g[row, t] = ds  # from here on, g holds the score gradients
            db += ds
        db_part[row] = db
    cuda.syncthreads()
    for j in range(tid, H, nt):
        acc = zero
        for t in range(T):
            if t < L:
                ds = g[row, t]
                d_h[row, t, j] = weights[row, t] * d_out[row, j] + ds * w[j]
                acc += ds * h[row, t, j]
            else:
                d_h[row, t, j] = 0
        dw_part[row, j] = acc


@cuda.jit
def _sum_rows_kernel(dw_part, db_part, d_w, d_b):
    j0 = cuda.grid(1)
    B, H = dw_part.shape
    for j in range(j0, H + 1, cuda.gridsize(1)):
        acc = d_w.dtype.type(0)
        if j < H:
            for row in range(B):
                acc += dw_part[row, j]
            d_w[j] = acc
        else:
            for row in range(B):
                acc += db_part[row]
            d_b[0] = acc


def attention_pool_backward(h, lengths, w, weights, d_out, d_h, d_w, d_b) -> None:
    """Gradient of :func:`attention_pool` (see
    :func:`tagger.kernels.pool_cpu.attention_pool_backward`)."""
    B, T, H = h.shape
    g = memory_cuda.empty((B, T), h.dtype)
    dw_part = memory_cuda.empty((B, H), h.dtype)
    db_part = memory_cuda.empty(B, h.dtype)
    if B:
        _blocks(_attention_backward_kernel, B, h, lengths, w, weights, d_out, d_h, g, dw_part,
                db_part)
    tpb = _config.CUDA_THREADS_PER_BLOCK
    blocks = min(max(1, math.ceil((H + 1) / tpb)), _config.CUDA_MAX_BLOCKS)
    if B:
        _sum_rows_kernel[blocks, tpb](dw_part, db_part, d_w, d_b)
    else:
        _zero_kernel[1, tpb](d_w, d_b)


@cuda.jit
def _zero_kernel(d_w, d_b):
    for j in range(cuda.threadIdx.x, d_w.shape[0], cuda.blockDim.x):
        d_w[j] = 0
    if cuda.threadIdx.x == 0:
        d_b[0] = 0
