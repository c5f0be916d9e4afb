"""Plain NumPy reference implementations the compiled kernels are tested against.

Written for clarity, not speed: one sequence at a time, explicit loops over steps, NumPy's own
``tanh`` and ``exp``. Shapes and parameter layouts are the kernels' (see ``tagger/kernels``).
"""

from __future__ import annotations

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
