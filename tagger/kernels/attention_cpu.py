"""CPU kernels of an encoder–decoder's attention: a decoder state's query scores every encoder
state by a dot product, the softmax of the scores over the source weights the encoder states,
and their weighted sum is the context vector (Luong, Pham & Manning 2015, the "general" score
when the caller makes the query ``q = W_a h``).

Layout and conventions (those of :mod:`tagger.kernels.pool_cpu`):

* Batch-major, right-padded: encoder states ``enc`` are ``(B, S, D)`` and ``lengths`` ``(B,)``
  int64 gives each source's valid steps. Padding is never read: it gets no weight and no
  gradient, and whatever it holds (garbage, inf) changes no result. A length outside ``[0, S]``
  is clamped to it (memory safety; callers validate lengths).
* An empty source (length 0) gives zero weights and a zero context, and zero gradients.
* float32 and float64 both work, all float arrays of one call in one dtype; the softmax
  subtracts the largest score first, so no ``exp`` overflows.
* :func:`attention_backward` *adds* to the encoder-state gradient (each decoder step attends to
  the same encoder states: their gradient is the sum over steps) and overwrites the query's.
* Serial loops over rows, steps and features: ``O(B S D)`` per decoder step.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import kernel
from .rnn_cpu import one_of, zero_of


@kernel()
def attention_forward(enc, lengths, q, alpha, ctx):
    """Attention weights and context vectors of one decoder step.

    Parameters
    ----------
    enc : ndarray (B, S, D)
        Encoder states, right-padded.
    lengths : ndarray (B,) of int64
        Valid source steps per row.
    q : ndarray (B, D)
        Queries.
    alpha : ndarray (B, S)
        Out: ``softmax_s(enc[b, s] . q[b])`` over the valid steps, zero at padding.
    ctx : ndarray (B, D)
        Out: ``sum_s alpha[b, s] enc[b, s]``.
    """
    B, S, D = enc.shape
    zero = zero_of(enc)
    one = one_of(enc)
    for row in range(B):
        L = max(min(lengths[row], S), 0)
        a = alpha[row]
        c = ctx[row]
        qr = q[row]
        for j in range(D):
            c[j] = zero
        for s in range(S):
            a[s] = zero
        if L == 0:
            continue
        top = -np.inf
        for s in range(L):
            e = enc[row, s]
            acc = zero
            for j in range(D):
                acc += e[j] * qr[j]
            a[s] = acc
            if acc > top:
                top = acc
        total = zero
        for s in range(L):
            v = math.exp(a[s] - top)
            a[s] = v
            total += v
        inv = one / total
        for s in range(L):
            w = a[s] * inv
            a[s] = w
            e = enc[row, s]
            for j in range(D):
                c[j] += w * e[j]


@kernel()
def attention_backward(enc, lengths, q, alpha, d_ctx, d_enc, d_q):
    """Gradients of :func:`attention_forward` from the gradient of its context vectors.

    Parameters
    ----------
    enc, lengths, q
        As given to :func:`attention_forward`.
    alpha : ndarray (B, S)
        The weights it returned.
    d_ctx : ndarray (B, D)
        Gradient of the loss with respect to ``ctx``.
    d_enc : ndarray (B, S, D)
        In and out: the gradient with respect to ``enc`` is *added* to it (padding untouched).
    d_q : ndarray (B, D)
        Out: the gradient with respect to ``q``.
    """
    B, S, D = enc.shape
    zero = zero_of(enc)
    d_alpha = np.empty(S, dtype=enc.dtype)
    for row in range(B):
        L = max(min(lengths[row], S), 0)
        dq = d_q[row]
        for j in range(D):
            dq[j] = zero
        if L == 0:
            continue
        a = alpha[row]
        dc = d_ctx[row]
        qr = q[row]
        # d alpha_s = enc_s . d_ctx; the softmax's gradient subtracts their weighted mean.
        mean = zero
        for s in range(L):
            e = enc[row, s]
            acc = zero
            for j in range(D):
                acc += e[j] * dc[j]
            d_alpha[s] = acc
            mean += a[s] * acc
        for s in range(L):
            w = a[s]
            d_score = w * (d_alpha[s] - mean)
            e = enc[row, s]
            de = d_enc[row, s]
            for j in range(D):
                de[j] += w * dc[j] + d_score * qr[j]
                dq[j] += d_score * e[j]
