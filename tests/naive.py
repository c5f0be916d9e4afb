"""Plain NumPy reference implementations the compiled kernels are tested against.

Written for clarity, not speed: one sequence at a time, explicit loops over steps, NumPy's own
``tanh`` and ``exp``. Shapes and parameter layouts are the kernels' (see ``tagger/kernels``).
"""

from __future__ import annotations

import itertools

import numpy as np


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _order(length, reverse):
    return range(length - 1, -1, -1) if reverse else range(length)


# --------------------------------------------------------------------------------------------------
# Recurrent cells, one direction. Each forward returns (outputs (B, T, H), final states); each
# backward takes the output gradients and returns a dict of parameter/input gradients.
# --------------------------------------------------------------------------------------------------


def lstm_forward(x, lengths, W, U, b, h0, c0, reverse=False):
    B, T, _ = x.shape
    H = U.shape[0]
    out = np.zeros((B, T, H))
    h_last = np.array(h0, dtype=np.float64)
    c_last = np.array(c0, dtype=np.float64)
    for n in range(B):
        h, c = h_last[n].copy(), c_last[n].copy()
        for t in _order(lengths[n], reverse):
            a = x[n, t] @ W + b + h @ U
            i, f = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H])
            g, o = np.tanh(a[2 * H : 3 * H]), _sigmoid(a[3 * H :])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[n, t] = h
        h_last[n], c_last[n] = h, c
    return out, h_last, c_last


def lstm_backward(x, lengths, W, U, b, h0, c0, d_out, d_h_last, d_c_last, reverse=False):
    B, T, D = x.shape
    H = U.shape[0]
    grads = {
        "dx": np.zeros((B, T, D)), "dW": np.zeros_like(W, dtype=np.float64),
        "dU": np.zeros_like(U, dtype=np.float64), "db": np.zeros_like(b, dtype=np.float64),
        "dh0": np.zeros((B, H)), "dc0": np.zeros((B, H)),
    }
    for n in range(B):
        steps = list(_order(lengths[n], reverse))
        h, c = h0[n].astype(np.float64), c0[n].astype(np.float64)
        cache = []
        for t in steps:
            a = x[n, t] @ W + b + h @ U
            i, f = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H])
            g, o = np.tanh(a[2 * H : 3 * H]), _sigmoid(a[3 * H :])
            c_new = f * c + i * g
            cache.append((t, h, c, i, f, g, o, c_new))
            c = c_new
            h = o * np.tanh(c)
        dh = d_h_last[n].astype(np.float64)
        dc = d_c_last[n].astype(np.float64)
        for t, h_prev, c_prev, i, f, g, o, c_new in reversed(cache):
            dh = dh + d_out[n, t]
            tc = np.tanh(c_new)
            dc = dc + dh * o * (1 - tc**2)
            da = np.concatenate([
                dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                dc * i * (1 - g**2), dh * tc * o * (1 - o),
            ])
            grads["dW"] += np.outer(x[n, t], da)
            grads["dU"] += np.outer(h_prev, da)
            grads["db"] += da
            grads["dx"][n, t] = W @ da
            dh = U @ da
            dc = dc * f
        grads["dh0"][n], grads["dc0"][n] = dh, dc
    return grads


def gru_forward(x, lengths, W, U, b, b_rn, h0, reverse=False):
    B, T, _ = x.shape
    H = U.shape[0]
    out = np.zeros((B, T, H))
    h_last = np.array(h0, dtype=np.float64)
    for n in range(B):
        h = h_last[n].copy()
        for t in _order(lengths[n], reverse):
            xi = x[n, t] @ W + b
            hu = h @ U
            r = _sigmoid(xi[:H] + hu[:H])
            z = _sigmoid(xi[H : 2 * H] + hu[H : 2 * H])
            cand = np.tanh(xi[2 * H :] + r * (hu[2 * H :] + b_rn))
            h = (1 - z) * cand + z * h
            out[n, t] = h
        h_last[n] = h
    return out, h_last


def gru_backward(x, lengths, W, U, b, b_rn, h0, d_out, d_h_last, reverse=False):
    B, T, D = x.shape
    H = U.shape[0]
    grads = {
        "dx": np.zeros((B, T, D)), "dW": np.zeros_like(W, dtype=np.float64),
        "dU": np.zeros_like(U, dtype=np.float64), "db": np.zeros_like(b, dtype=np.float64),
        "db_rn": np.zeros_like(b_rn, dtype=np.float64), "dh0": np.zeros((B, H)),
    }
    for n in range(B):
        h = h0[n].astype(np.float64)
        cache = []
        for t in _order(lengths[n], reverse):
            xi = x[n, t] @ W + b
            hu = h @ U
            r = _sigmoid(xi[:H] + hu[:H])
            z = _sigmoid(xi[H : 2 * H] + hu[H : 2 * H])
            rn = hu[2 * H :] + b_rn
            cand = np.tanh(xi[2 * H :] + r * rn)
            cache.append((t, h, r, z, rn, cand))
            h = (1 - z) * cand + z * h
        dh = d_h_last[n].astype(np.float64)
        for t, h_prev, r, z, rn, cand in reversed(cache):
            dh = dh + d_out[n, t]
            d_cand_pre = dh * (1 - z) * (1 - cand**2)
            dz_pre = dh * (h_prev - cand) * z * (1 - z)
            dr_pre = d_cand_pre * rn * r * (1 - r)
            d_input = np.concatenate([dr_pre, dz_pre, d_cand_pre])
            d_rec = np.concatenate([dr_pre, dz_pre, d_cand_pre * r])
            grads["dW"] += np.outer(x[n, t], d_input)
            grads["db"] += d_input
            grads["dx"][n, t] = W @ d_input
            grads["dU"] += np.outer(h_prev, d_rec)
            grads["db_rn"] += d_cand_pre * r
            dh = dh * z + U @ d_rec
        grads["dh0"][n] = dh
    return grads


def rnn_forward(x, lengths, W, U, b, h0, relu=False, reverse=False):
    B, T, _ = x.shape
    H = U.shape[0]
    out = np.zeros((B, T, H))
    h_last = np.array(h0, dtype=np.float64)
    for n in range(B):
        h = h_last[n].copy()
        for t in _order(lengths[n], reverse):
            a = x[n, t] @ W + b + h @ U
            h = np.maximum(a, 0) if relu else np.tanh(a)
            out[n, t] = h
        h_last[n] = h
    return out, h_last


def rnn_backward(x, lengths, W, U, b, h0, d_out, d_h_last, relu=False, reverse=False):
    B, T, D = x.shape
    H = U.shape[0]
    grads = {
        "dx": np.zeros((B, T, D)), "dW": np.zeros_like(W, dtype=np.float64),
        "dU": np.zeros_like(U, dtype=np.float64), "db": np.zeros_like(b, dtype=np.float64),
        "dh0": np.zeros((B, H)),
    }
    for n in range(B):
        h = h0[n].astype(np.float64)
        cache = []
        for t in _order(lengths[n], reverse):
            a = x[n, t] @ W + b + h @ U
            h_new = np.maximum(a, 0) if relu else np.tanh(a)
            cache.append((t, h, a, h_new))
            h = h_new
        dh = d_h_last[n].astype(np.float64)
        for t, h_prev, a, h_new in reversed(cache):
            dh = dh + d_out[n, t]
            da = dh * (a > 0) if relu else dh * (1 - h_new**2)
            grads["dW"] += np.outer(x[n, t], da)
            grads["dU"] += np.outer(h_prev, da)
            grads["db"] += da
            grads["dx"][n, t] = W @ da
            dh = U @ da
        grads["dh0"][n] = dh
    return grads


# --------------------------------------------------------------------------------------------------
# Linear-chain CRF, one sequence at a time, in log space.
#
# Every function takes the emissions of ONE sequence, ``(T, K)`` with ``T`` its true length (no
# padding), and the scores ``start`` (K,), ``end`` (K,) and ``trans`` (K, K), where ``trans[i, j]``
# scores tag i followed by tag j. The optional boolean masks ``allowed_start``, ``allowed_end`` and
# ``allowed_trans`` (True = allowed; None = everything allowed) give forbidden scores of -inf.
# Clarity over speed: loops and ``np.logaddexp`` only. The ``brute_force_*`` functions enumerate
# all ``K**T`` paths.
# --------------------------------------------------------------------------------------------------




def direction_reference(cell, params, x, lengths, h0, c0, reverse, d_out, d_h, d_c):
    """Forward outputs and backward gradients of one direction by the references above, in
    float64: ``(h_out, h_last, c_last or None, grads)``."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    args = (x.astype(np.float64), lengths)
    if cell == "lstm":
        out, h, c = lstm_forward(*args, p["W"], p["U"], p["b"], h0, c0, reverse)
        g = lstm_backward(*args, p["W"], p["U"], p["b"], h0, c0, d_out, d_h, d_c, reverse)
        return out, h, c, g
    if cell == "gru":
        out, h = gru_forward(*args, p["W"], p["U"], p["b"], p["b_rn"], h0, reverse)
        g = gru_backward(*args, p["W"], p["U"], p["b"], p["b_rn"], h0, d_out, d_h, reverse)
        return out, h, None, g
    relu = cell == "irnn"
    out, h = rnn_forward(*args, p["W"], p["U"], p["b"], h0, relu, reverse)
    g = rnn_backward(*args, p["W"], p["U"], p["b"], h0, d_out, d_h, relu, reverse)
    return out, h, None, g


def _masked(start, end, trans, allowed_start=None, allowed_end=None, allowed_trans=None):
    """float64 copies of the scores with -inf where forbidden."""
    start = np.array(start, dtype=np.float64)
    end = np.array(end, dtype=np.float64)
    trans = np.array(trans, dtype=np.float64)
    if allowed_start is not None:
        start[~np.asarray(allowed_start, dtype=bool)] = -np.inf
    if allowed_end is not None:
        end[~np.asarray(allowed_end, dtype=bool)] = -np.inf
    if allowed_trans is not None:
        trans[~np.asarray(allowed_trans, dtype=bool)] = -np.inf
    return start, end, trans


def _logsumexp(x, axis=None):
    """log(sum(exp(x))) that returns -inf (without warnings) when every entry is -inf."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out.squeeze() if axis is None else np.squeeze(out, axis=axis)


def crf_path_score(emissions, tags, start, end, trans, allowed_start=None, allowed_end=None,
                   allowed_trans=None):
    """Score of one tag path: -inf if it uses a forbidden start, transition or end; 0 if empty."""
    em = np.asarray(emissions, dtype=np.float64)
    start, end, trans = _masked(start, end, trans, allowed_start, allowed_end, allowed_trans)
    T = em.shape[0]
    if T == 0:
        return 0.0
    score = start[tags[0]] + em[0, tags[0]]
    for t in range(1, T):
        score += trans[tags[t - 1], tags[t]] + em[t, tags[t]]
    return float(score + end[tags[T - 1]])


def _forward(em, start, end, trans):
    """Log forward vectors (T, K) of masked float64 scores."""
    T, K = em.shape
    alpha = np.empty((T, K))
    alpha[0] = start + em[0]
    for t in range(1, T):
        for j in range(K):
            alpha[t, j] = _logsumexp(alpha[t - 1] + trans[:, j]) + em[t, j]
    return alpha


def _backward(em, end, trans):
    """Log backward vectors (T, K) of masked float64 scores."""
    T, K = em.shape
    beta = np.empty((T, K))
    beta[T - 1] = end
    for t in range(T - 2, -1, -1):
        for i in range(K):
            beta[t, i] = _logsumexp(trans[i] + em[t + 1] + beta[t + 1])
    return beta


def crf_log_partition(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                      allowed_trans=None):
    """log Z by the forward algorithm; 0 for an empty sequence, -inf if no path is allowed."""
    em = np.asarray(emissions, dtype=np.float64)
    if em.shape[0] == 0:
        return 0.0
    start, end, trans = _masked(start, end, trans, allowed_start, allowed_end, allowed_trans)
    alpha = _forward(em, start, end, trans)
    return float(_logsumexp(alpha[-1] + end))


def crf_nll(emissions, tags, start, end, trans, allowed_start=None, allowed_end=None,
            allowed_trans=None):
    """log Z - score(tags); +inf when the gold path is forbidden; 0 for an empty sequence."""
    masks = (allowed_start, allowed_end, allowed_trans)
    score = crf_path_score(emissions, tags, start, end, trans, *masks)
    if score == -np.inf:
        return np.inf
    return crf_log_partition(emissions, start, end, trans, *masks) - score


def crf_marginals(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                  allowed_trans=None):
    """P(y_t = k) as a (T, K) array by forward-backward in log space (zeros if no path)."""
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    if T == 0:
        return np.zeros((0, K))
    start, end, trans = _masked(start, end, trans, allowed_start, allowed_end, allowed_trans)
    alpha = _forward(em, start, end, trans)
    beta = _backward(em, end, trans)
    log_z = _logsumexp(alpha[-1] + end)
    if log_z == -np.inf:
        return np.zeros((T, K))
    return np.exp(alpha + beta - log_z)


def crf_pair_marginals(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                       allowed_trans=None):
    """P(y_{t-1} = i, y_t = j) as a (T - 1, K, K) array, log-space forward-backward."""
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    if T < 2:
        return np.zeros((0, K, K))
    start, end, trans = _masked(start, end, trans, allowed_start, allowed_end, allowed_trans)
    alpha = _forward(em, start, end, trans)
    beta = _backward(em, end, trans)
    log_z = _logsumexp(alpha[-1] + end)
    out = np.zeros((T - 1, K, K))
    if log_z == -np.inf:
        return out
    for t in range(1, T):
        out[t - 1] = np.exp(alpha[t - 1][:, None] + trans + (em[t] + beta[t])[None, :] - log_z)
    return out


def crf_nll_grad(emissions, tags, start, end, trans, allowed_start=None, allowed_end=None,
                 allowed_trans=None):
    """Gradients of :func:`crf_nll` w.r.t. (emissions, start, end, trans), from the marginals.

    All zero when the sequence is empty or its gold path is forbidden (nll = +inf).
    """
    masks = (allowed_start, allowed_end, allowed_trans)
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    d_em, d_start, d_end, d_trans = np.zeros((T, K)), np.zeros(K), np.zeros(K), np.zeros((K, K))
    if T == 0 or not np.isfinite(crf_nll(em, tags, start, end, trans, *masks)):
        return d_em, d_start, d_end, d_trans
    p = crf_marginals(em, start, end, trans, *masks)
    pair = crf_pair_marginals(em, start, end, trans, *masks)
    d_em[:] = p
    d_em[np.arange(T), tags] -= 1.0
    d_start[:] = p[0]
    d_start[tags[0]] -= 1.0
    d_end[:] = p[T - 1]
    d_end[tags[T - 1]] -= 1.0
    d_trans[:] = pair.sum(axis=0)
    for t in range(1, T):
        d_trans[tags[t - 1], tags[t]] -= 1.0
    return d_em, d_start, d_end, d_trans


def viterbi(emissions, start, end, trans, allowed_start=None, allowed_end=None,
            allowed_trans=None):
    """Best path (int64 array) and its score by max-plus dynamic programming.

    Ties go to the lowest tag index (first argmax for the last tag and every back-pointer). An
    empty sequence gives ``([], 0.0)``; no allowed path gives ``(all -1, -inf)``.
    """
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    if T == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    start, end, trans = _masked(start, end, trans, allowed_start, allowed_end, allowed_trans)
    delta = start + em[0]
    backptr = np.zeros((T, K), dtype=np.int64)
    for t in range(1, T):
        cand = delta[:, None] + trans  # cand[i, j]: come from i into j
        backptr[t] = np.argmax(cand, axis=0)
        delta = cand[backptr[t], np.arange(K)] + em[t]
    final = delta + end
    last = int(np.argmax(final))
    if final[last] == -np.inf:
        return np.full(T, -1, dtype=np.int64), -np.inf
    path = np.empty(T, dtype=np.int64)
    path[T - 1] = last
    for t in range(T - 1, 0, -1):
        path[t - 1] = backptr[t, path[t]]
    return path, float(final[last])


def _all_paths(T, K):
    return itertools.product(range(K), repeat=T)


def brute_force_log_partition(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                              allowed_trans=None):
    """log Z by summing over all K**T paths (-inf if none is allowed; 0 if empty)."""
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    masks = (allowed_start, allowed_end, allowed_trans)
    scores = [crf_path_score(em, p, start, end, trans, *masks) for p in _all_paths(T, K)]
    return float(_logsumexp(np.array(scores)))


def brute_force_viterbi(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                        allowed_trans=None):
    """Best path and score over all K**T paths (first in lexicographic order on ties)."""
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    masks = (allowed_start, allowed_end, allowed_trans)
    best_path, best = np.full(T, -1, dtype=np.int64), -np.inf
    if T == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    for p in _all_paths(T, K):
        s = crf_path_score(em, p, start, end, trans, *masks)
        if s > best:
            best_path, best = np.array(p, dtype=np.int64), s
    return best_path, best


def brute_force_marginals(emissions, start, end, trans, allowed_start=None, allowed_end=None,
                          allowed_trans=None):
    """P(y_t = k) (T, K) by weighting all K**T paths (zeros if no path is allowed)."""
    em = np.asarray(emissions, dtype=np.float64)
    T, K = em.shape
    masks = (allowed_start, allowed_end, allowed_trans)
    out = np.zeros((T, K))
    log_z = brute_force_log_partition(em, start, end, trans, *masks)
    if log_z == -np.inf:
        return out
    for p in _all_paths(T, K):
        s = crf_path_score(em, p, start, end, trans, *masks)
        if s > -np.inf:
            out[np.arange(T), list(p)] += np.exp(s - log_z)
    return out


# --------------------------------------------------------------------------------------------------
# Pooling over time (sequence classification), written independently of the kernels: boolean
# masks over whole arrays, np.max/np.argmax on slices, the softmax Jacobian as a matrix; float64.
# h is (B, T, H) right-padded, lengths (B,); an empty sequence pools to zeros.
# --------------------------------------------------------------------------------------------------


def _valid(lengths, T):
    """Boolean mask (B, T): True at the valid steps."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def mean_pool(h, lengths):
    h = np.asarray(h, dtype=np.float64)
    mask = _valid(lengths, h.shape[1])[..., None]
    counts = np.maximum(np.asarray(lengths), 1)[:, None]
    return np.where(mask, h, 0.0).sum(axis=1) / counts


def mean_pool_backward(lengths, d_out, T):
    d_out = np.asarray(d_out, dtype=np.float64)
    mask = _valid(lengths, T)[..., None]
    counts = np.maximum(np.asarray(lengths), 1)[:, None, None]
    return np.where(mask, d_out[:, None, :] / counts, 0.0)


def max_pool(h, lengths):
    """Returns (out (B, H), argmax (B, H) int64, -1 for an empty sequence)."""
    h = np.asarray(h, dtype=np.float64)
    B, _, H = h.shape
    out = np.zeros((B, H))
    argmax = np.full((B, H), -1, dtype=np.int64)
    for n, L in enumerate(lengths):
        if L > 0:
            out[n] = np.max(h[n, :L], axis=0)
            argmax[n] = np.argmax(h[n, :L], axis=0)  # np.argmax returns the first maximum
    return out, argmax


def max_pool_backward(h, lengths, d_out):
    h = np.asarray(h, dtype=np.float64)
    B, T, H = h.shape
    d_h = np.zeros((B, T, H))
    for n, L in enumerate(lengths):
        for j in range(H):
            if L > 0:
                d_h[n, np.argmax(h[n, :L, j]), j] = d_out[n, j]
    return d_h


def attention_pool(h, lengths, w, b):
    """Returns (scores (B, T), weights (B, T), out (B, H)); scores and weights 0 at padding."""
    h = np.asarray(h, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    b = float(np.asarray(b, dtype=np.float64).reshape(-1)[0])
    B, T, H = h.shape
    scores = np.zeros((B, T))
    weights = np.zeros((B, T))
    out = np.zeros((B, H))
    for n, L in enumerate(lengths):
        if L == 0:
            continue
        s = h[n, :L] @ w + b
        e = np.exp(s - np.max(s))
        a = e / e.sum()
        scores[n, :L] = s
        weights[n, :L] = a
        out[n] = a @ h[n, :L]
    return scores, weights, out


def attention_pool_backward(h, lengths, w, b, d_out):
    """Returns (d_h (B, T, H), d_w (H,), d_b (1,)) by the softmax Jacobian diag(a) - a a^T."""
    h = np.asarray(h, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d_out = np.asarray(d_out, dtype=np.float64)
    _, weights, _ = attention_pool(h, lengths, w, b)
    B, T, H = h.shape
    d_h = np.zeros((B, T, H))
    d_w = np.zeros(H)
    d_b = np.zeros(1)
    for n, L in enumerate(lengths):
        if L == 0:
            continue
        a = weights[n, :L]
        x = h[n, :L]
        d_a = x @ d_out[n]  # d loss / d a_t
        jac = np.diag(a) - np.outer(a, a)  # d a / d s (symmetric)
        d_s = jac @ d_a
        d_h[n, :L] = np.outer(a, d_out[n]) + np.outer(d_s, w)
        d_w += x.T @ d_s
        d_b += d_s.sum()
    return d_h, d_w, d_b


# --------------------------------------------------------------------------------------------------
# Character language model sampler (tagger.kernels.lm_cpu): the same steps in float64.
# --------------------------------------------------------------------------------------------------


def sample_reference(cell, table, W, U, b, b_rn, out_W, out_b, h, c, first, n, temperature, top_k,
                     banned, seed):
    """Sample ``n`` characters as :func:`tagger.kernels.lm_cpu.sample_lstm` / ``sample_gru`` do.

    ``W``, ``U``, ``b``, ``b_rn`` are sequences with one array per layer (``b_rn`` ignored for the
    LSTM), ``h`` and ``c`` (L, H) the state before reading ``first`` (``c`` None for the GRU). The
    random number of step ``s`` is ``lm_cpu.uniform(seed, s)``. Returns the ids (n,) and the final
    ``h`` and ``c`` (float64; ``c`` None for the GRU).
    """
    from tagger.kernels.lm_cpu import uniform

    h = np.array(h, dtype=np.float64)
    c = None if c is None else np.array(c, dtype=np.float64)
    H = h.shape[1]
    V = out_b.shape[0]
    allowed = np.ones(V, bool)
    allowed[np.asarray(banned, dtype=np.int64)] = False
    ids = np.zeros(n, np.int64)
    prev = first
    for s in range(n):
        x = table[prev].astype(np.float64)
        for layer in range(h.shape[0]):
            if cell == "lstm":
                a = x @ W[layer] + b[layer] + h[layer] @ U[layer]
                i, f = _sigmoid(a[:H]), _sigmoid(a[H : 2 * H])
                g, o = np.tanh(a[2 * H : 3 * H]), _sigmoid(a[3 * H :])
                c[layer] = f * c[layer] + i * g
                h[layer] = o * np.tanh(c[layer])
            else:
                xi = x @ W[layer] + b[layer]
                hu = h[layer] @ U[layer]
                r = _sigmoid(xi[:H] + hu[:H])
                z = _sigmoid(xi[H : 2 * H] + hu[H : 2 * H])
                cand = np.tanh(xi[2 * H :] + r * (hu[2 * H :] + b_rn[layer]))
                h[layer] = (1 - z) * cand + z * h[layer]
            x = h[layer]
        logits = x @ out_W + out_b
        candidates = np.flatnonzero(allowed)
        if temperature == 0:
            # argmax returns the first maximum: the lowest id among equal scores.
            prev = int(candidates[np.argmax(logits[candidates])])
        else:
            if 0 < top_k < candidates.size:
                # Highest score first, lower id first among equal scores.
                order = np.lexsort((candidates, -logits[candidates]))
                candidates = np.sort(candidates[order[:top_k]])
            scaled = logits[candidates] / temperature
            p = np.exp(scaled - scaled.max())
            cdf = np.cumsum(p / p.sum())
            u = uniform(np.uint64(seed), np.int64(s))
            pick = min(int(np.searchsorted(cdf, u, side="right")), candidates.size - 1)
            prev = int(candidates[pick])
        ids[s] = prev
    return ids, h, c


# --------------------------------------------------------------------------------------------------
# Encoder-decoder attention (one decoder step), written independently of the kernels: masked
# whole-array softmax and the softmax Jacobian as a matrix; float64. enc is (B, S, D) right-padded,
# lengths (B,), q (B, D); an empty source gives zero weights and a zero context.
# --------------------------------------------------------------------------------------------------


def attention(enc, lengths, q):
    """Returns (alpha (B, S), ctx (B, D))."""
    enc = np.asarray(enc, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    B, S, D = enc.shape
    alpha = np.zeros((B, S))
    for n, L in enumerate(lengths):
        if L > 0:
            scores = enc[n, :L] @ q[n]
            e = np.exp(scores - scores.max())
            alpha[n, :L] = e / e.sum()
    ctx = np.einsum("bs,bsd->bd", alpha, np.where(_valid(lengths, S)[..., None], enc, 0.0))
    return alpha, ctx


def attention_backward(enc, lengths, q, d_ctx):
    """Returns (d_enc (B, S, D), d_q (B, D)) of the loss whose gradient w.r.t. ctx is d_ctx."""
    enc = np.asarray(enc, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    d_ctx = np.asarray(d_ctx, dtype=np.float64)
    alpha, _ = attention(enc, lengths, q)
    B, S, D = enc.shape
    d_enc = np.zeros((B, S, D))
    d_q = np.zeros((B, D))
    for n, L in enumerate(lengths):
        if L == 0:
            continue
        a = alpha[n, :L]
        jacobian = np.diag(a) - np.outer(a, a)  # d alpha / d scores
        d_scores = jacobian @ (enc[n, :L] @ d_ctx[n])
        d_enc[n, :L] = np.outer(a, d_ctx[n]) + np.outer(d_scores, q[n])
        d_q[n] = d_scores @ enc[n, :L]
    return d_enc, d_q
