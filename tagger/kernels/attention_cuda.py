"""CUDA kernels (numba-cuda) of an encoder–decoder's attention: the GPU side of
:mod:`tagger.kernels.attention_cpu`, with the same names, arguments, conventions and results
(up to float rounding): dot-product scores over each source's valid steps, a softmax that
subtracts the largest score first, the context vectors; the backward pass adds to the
encoder-state gradient and overwrites the query's.

One thread per batch row (grid-stride): a decoder step's attention is ``O(S D)`` per row, and
each row's sums run in the CPU kernels' order. ``d_alpha`` is a (B, S) work array of the
caller's (the CPU kernel keeps it on its stack).
"""

from __future__ import annotations

import math

from numba import cuda

from .ops_cuda import _grid


@cuda.jit
def _forward_kernel(enc, lengths, q, alpha, ctx):
    row0 = cuda.grid(1)
    B, S, D = enc.shape
    for row in range(row0, B, cuda.gridsize(1)):
        L = max(min(lengths[row], S), 0)
        zero = enc.dtype.type(0)
        for j in range(D):
            ctx[row, j] = zero
        for s in range(S):
            alpha[row, s] = zero
        if L == 0:
            continue
        # In the arrays' dtype throughout: a float32 model does no double arithmetic.
        top = zero
        for s in range(L):
            acc = zero
            for j in range(D):
                acc += enc[row, s, j] * q[row, j]
            alpha[row, s] = acc
            if s == 0 or acc > top:
                top = acc
        total = zero
        for s in range(L):
            v = math.exp(alpha[row, s] - top)
            alpha[row, s] = v
            total += v
        inv = enc.dtype.type(1) / total
        for s in range(L):
            w = alpha[row, s] * inv
            alpha[row, s] = w
            for j in range(D):
                ctx[row, j] += w * enc[row, s, j]


@cuda.jit
def _backward_kernel(enc, lengths, q, alpha, d_ctx, d_enc, d_q, d_alpha):
    row0 = cuda.grid(1)
    B, S, D = enc.shape
    for row in range(row0, B, cuda.gridsize(1)):
        L = max(min(lengths[row], S), 0)
        zero = enc.dtype.type(0)
        for j in range(D):
            d_q[row, j] = zero
        if L == 0:
            continue
        mean = zero
        for s in range(L):
            acc = zero
            for j in range(D):
                acc += enc[row, s, j] * d_ctx[row, j]
            d_alpha[row, s] = acc
            mean += alpha[row, s] * acc
        for s in range(L):
            w = alpha[row, s]
            d_score = w * (d_alpha[row, s] - mean)
            for j in range(D):
                d_enc[row, s, j] += w * d_ctx[row, j] + d_score * q[row, j]
                d_q[row, j] += d_score * enc[row, s, j]


def attention_forward(enc, lengths, q, alpha, ctx) -> None:
    """See :func:`tagger.kernels.attention_cpu.attention_forward` (device arrays)."""
    B = enc.shape[0]
    if B and enc.shape[1] and enc.shape[2]:
        _forward_kernel[_grid(B)](enc, lengths, q, alpha, ctx)


def attention_backward(enc, lengths, q, alpha, d_ctx, d_enc, d_q, d_alpha=None) -> None:
    """See :func:`tagger.kernels.attention_cpu.attention_backward` (device arrays);
    ``d_alpha`` is (B, S) work space (allocated when omitted)."""
    B, S, D = enc.shape
    if not (B and S and D):
        return
    if d_alpha is None:
        d_alpha = cuda.device_array((B, S), enc.dtype)
    _backward_kernel[_grid(B)](enc, lengths, q, alpha, d_ctx, d_enc, d_q, d_alpha)
