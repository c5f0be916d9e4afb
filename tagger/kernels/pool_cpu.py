"""CPU kernels that pool a sequence of hidden states into one vector: mean, max and attention.

Layout and conventions (those of :mod:`tagger.kernels.rnn_cpu`):

* Batch-major, right-padded: hidden states ``h`` are ``(B, T, H)``, a ``lengths`` array ``(B,)`` of
  int64 gives the valid steps of each sequence (``0 <= lengths[b] <= T``). Positions
  ``t >= lengths[b]`` are padding: they are never read, never pooled, get no attention weight and
  receive a zero gradient. Whatever the padding holds (garbage, inf) changes no result. A length
  outside ``[0, T]`` is clamped to it (memory safety; callers validate lengths).
* A sequence of length 0 pools to a zero vector and gets zero gradients (its ``argmax`` is ``-1``,
  its attention weights are all 0). The estimators reject empty sequences; the kernels only promise
  not to crash or produce NaN on them.
* float32 and float64 both work, all float arrays of one call in the same dtype; arithmetic stays
  in that dtype. Outputs are written into preallocated arrays, and backward kernels overwrite
  (never accumulate) their gradient outputs.
* Serial loops: the work is ``O(B T H)``, small next to the recurrent layers that produce ``h``.
  Gradients of the shared attention parameters are summed in a fixed order (sequence, then step),
  so results are bitwise reproducible.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from .rnn_cpu import fast_exp, one_of, zero_of

# --------------------------------------------------------------------------------------------------
# Mean
# --------------------------------------------------------------------------------------------------


@kernel()
def mean_pool(h, lengths, out):
    """Mean of the hidden states over the valid steps.

    Parameters
    ----------
    h : ndarray (B, T, H)
        Hidden states, right-padded.
    lengths : ndarray (B,) of int64
        Valid steps per sequence.
    out : ndarray (B, H)
        Out: ``out[b] = sum(h[b, :lengths[b]]) / lengths[b]`` (zero for an empty sequence).
    """
    B, T, _ = h.shape
    one = one_of(h)
    scale = np.empty(1, dtype=h.dtype)  # 1 / length in the dtype of h
    for row in range(B):
        L = max(min(lengths[row], T), 0)
        o = out[row]
        o[:] = 0
        if L == 0:
            continue
        for t in range(L):
            x = h[row, t]
            for j in range(o.shape[0]):
                o[j] += x[j]
        scale[0] = one / L
        inv = scale[0]
        for j in range(o.shape[0]):
            o[j] *= inv


@kernel()
def mean_pool_backward(lengths, d_out, d_h):
    """Gradient of :func:`mean_pool`.

    Parameters
    ----------
    lengths : ndarray (B,) of int64
        As given to :func:`mean_pool`.
    d_out : ndarray (B, H)
        Gradient with respect to the pooled vectors.
    d_h : ndarray (B, T, H)
        Out: ``d_out[b] / lengths[b]`` at every valid step, zero at padding.
    """
    B, T, H = d_h.shape
    one = one_of(d_h)
    scale = np.empty(1, dtype=d_h.dtype)
    for row in range(B):
        L = max(min(lengths[row], T), 0)
        if L > 0:
            scale[0] = one / L
            inv = scale[0]
            g = d_out[row]
            for t in range(L):
                d = d_h[row, t]
                for j in range(H):
                    d[j] = g[j] * inv
        for t in range(L, T):
            d_h[row, t, :] = 0


# --------------------------------------------------------------------------------------------------
# Max
# --------------------------------------------------------------------------------------------------


@kernel()
def max_pool(h, lengths, out, argmax):
    """Element-wise maximum of the hidden states over the valid steps.

    Parameters
    ----------
    h : ndarray (B, T, H)
        Hidden states, right-padded.
    lengths : ndarray (B,) of int64
        Valid steps per sequence.
    out : ndarray (B, H)
        Out: ``out[b, j] = max(h[b, :lengths[b], j])`` (zero for an empty sequence).
    argmax : ndarray (B, H) of int64
        Out: the first step that attains the maximum (``-1`` for an empty sequence), kept for
        :func:`max_pool_backward`.
    """
    B, T, H = h.shape
    for row in range(B):
        L = max(min(lengths[row], T), 0)
        o = out[row]
        a = argmax[row]
        if L == 0:
            o[:] = 0
            a[:] = -1
            continue
        first = h[row, 0]
        for j in range(H):  # a loop, not o[:] = h[row, 0]: see rnn_cpu._copy
            o[j] = first[j]
        a[:] = 0
        for t in range(1, L):
            x = h[row, t]
            for j in range(H):
                if x[j] > o[j]:  # strict: ties keep the earlier step
                    o[j] = x[j]
                    a[j] = t


@kernel()
def max_pool_backward(argmax, d_out, d_h):
    """Gradient of :func:`max_pool`: each ``d_out[b, j]`` goes to step ``argmax[b, j]``.

    Parameters
    ----------
    argmax : ndarray (B, H) of int64
        As filled by :func:`max_pool`.
    d_out : ndarray (B, H)
        Gradient with respect to the pooled vectors.
    d_h : ndarray (B, T, H)
        Out: gradient with respect to the hidden states (zero except at the maxima).
    """
    B, T, H = d_h.shape
    d_h[:] = 0
    for row in range(B):
        for j in range(H):
            t = argmax[row, j]
            if t >= 0:
                d_h[row, t, j] = d_out[row, j]


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------


@kernel()
def attention_pool(h, lengths, w, b, scores, weights, out):
    """Attention pooling: a softmax over the valid steps of a learned score per step.

    ``s_t = h_t · w + b``, ``a = softmax(s_0 .. s_{L-1})``, ``out = sum_t a_t h_t``.

    The bias ``b`` does not change the softmax (it cancels); it is kept so that the score of a
    step is an ordinary affine function (the scores are available to callers), and its gradient
    is computed exactly (zero up to rounding).

    Parameters
    ----------
    h : ndarray (B, T, H)
        Hidden states, right-padded.
    lengths : ndarray (B,) of int64
        Valid steps per sequence.
    w : ndarray (H,)
        Score weights.
    b : ndarray (1,)
        Score bias, a length-1 array (not 0-d) so that it is an ordinary parameter array that
        optimisers update in place.
    scores : ndarray (B, T)
        Out: ``s_t`` at the valid steps, zero at padding.
    weights : ndarray (B, T)
        Out: attention weights, summing to 1 over the valid steps and exactly zero at padding
        (all zero for an empty sequence); kept for :func:`attention_pool_backward`.
    out : ndarray (B, H)
        Out: pooled vectors (zero for an empty sequence).
    """
    B, T, H = h.shape
    one = one_of(h)
    bias = b[0]
    for row in range(B):
        L = max(min(lengths[row], T), 0)
        s = scores[row]
        a = weights[row]
        o = out[row]
        s[:] = 0
        a[:] = 0
        o[:] = 0
        if L == 0:
            continue
        for t in range(L):
            x = h[row, t]
            acc = zero_of(h)
            for j in range(H):
                acc += x[j] * w[j]
            s[t] = acc + bias
        m = s[0]
        for t in range(1, L):
            m = max(m, s[t])
        total = zero_of(h)
        for t in range(L):
            e = fast_exp(s[t] - m)  # <= 1, and 1 at the maximum: total >= 1
            a[t] = e
            total += e
        inv = one / total
        for t in range(L):
            a[t] *= inv
        for t in range(L):
            at = a[t]
            x = h[row, t]
            for j in range(H):
                o[j] += at * x[j]


@kernel()
def attention_pool_backward(h, lengths, w, weights, d_out, d_h, d_w, d_b):
    """Gradient of :func:`attention_pool` with respect to ``h``, ``w`` and ``b``.

    With ``g_t = d_out · h_t``, the score gradient is ``ds_t = a_t (g_t - sum_u a_u g_u)``; then
    ``d_h_t = a_t d_out + ds_t w``, ``d_w = sum_{b,t} ds_t h_t`` and ``d_b = sum_{b,t} ds_t``
    (zero up to rounding, since the weights sum to one).

    Parameters
    ----------
    h, lengths, w
        As given to :func:`attention_pool`.
    weights : ndarray (B, T)
        As filled by :func:`attention_pool`.
    d_out : ndarray (B, H)
        Gradient with respect to the pooled vectors.
    d_h : ndarray (B, T, H)
        Out: gradient with respect to the hidden states (zero at padding).
    d_w : ndarray (H,)
        Out: gradient with respect to ``w``, summed over the batch in sequence order.
    d_b : ndarray (1,)
        Out: gradient with respect to ``b``.
    """
    B, T, H = h.shape
    g = np.empty(T, dtype=h.dtype)
    d_w[:] = 0
    db = zero_of(h)
    for row in range(B):
        L = max(min(lengths[row], T), 0)
        a = weights[row]
        go = d_out[row]
        for t in range(L, T):
            d_h[row, t, :] = 0
        if L == 0:
            continue
        gbar = zero_of(h)
        for t in range(L):
            x = h[row, t]
            acc = zero_of(h)
            for j in range(H):
                acc += go[j] * x[j]
            g[t] = acc
            gbar += a[t] * acc
        for t in range(L):
            at = a[t]
            ds = at * (g[t] - gbar)
            x = h[row, t]
            d = d_h[row, t]
            for j in range(H):
                d[j] = at * go[j] + ds * w[j]
            for j in range(H):
                d_w[j] += ds * x[j]
            db += ds
    d_b[0] = db
