"""CPU kernels for recurrent layers: LSTM, GRU and Elman RNN (tanh or ReLU), one direction each.

Layout and conventions (shared with the CUDA kernels):

* Batch-major, right-padded: inputs ``x`` are ``(B, T, D)``, a ``lengths`` array ``(B,)`` gives the
  valid steps of each sequence. Positions ``t >= lengths[b]`` are padding: they never enter a
  result, and every output is zero there.
* ``reverse=True`` runs each sequence from ``t = lengths[b] - 1`` down to ``0``; the outputs stay in
  time order, so a reverse layer on ``x`` equals a forward layer on ``x`` reversed within its
  length.
* Weights: input matrix ``W`` ``(D, G*H)``, recurrent matrix ``U`` ``(H, G*H)``, bias ``b``
  ``(G*H,)``
  with the gates side by side (LSTM: i, f, g, o; GRU: r, z, n; RNN: one block). The GRU applies its
  reset gate after the recurrent product (the cuDNN/PyTorch form), so it has a separate recurrent
  bias ``b_rn`` ``(H,)`` for the candidate, inside the reset product.
* Outputs are written into preallocated arrays. Backward kernels overwrite (never accumulate) their
  gradient outputs.

Speed: the input projection of all steps is one matrix product; each step does one matrix product
of the active rows' states with ``U`` and one fused pass over the gates. These products use the
register-blocked kernels of :mod:`.gemm_cpu`, with ``U`` packed once per call (BLAS would pack it
again at every step; a single short sequence reads it in place); the products of the backward pass
outside the recurrence use BLAS. Rows are processed up to the last sequence still running, so a
batch sorted by decreasing length computes no padding.
``tanh`` and the sigmoid are written through ``exp`` (several times faster than ``np.tanh`` here).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from .. import _config
from ._jit import kernel
from .gemm_cpu import matmul_packed, pack_panels, packed


def fast_exp(x):
    """exp of a float scalar (Numba-only): vectorisable polynomial for float32, libm for float64."""
    raise NotImplementedError("fast_exp is only callable from compiled code")


def sigmoid(x):
    """Logistic function of a float scalar (Numba-only; see the overload below)."""
    raise NotImplementedError("sigmoid is only callable from compiled code")


def tanh(x):
    """Hyperbolic tangent of a float scalar (Numba-only; see the overload below)."""
    raise NotImplementedError("tanh is only callable from compiled code")


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret the bits of an int32 as a float32."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_F32 = np.float32


@overload(fast_exp, inline="always", jit_options={"fastmath": set(_config.FASTMATH)})
def _fast_exp_overload(x):
    if x == types.float32:
        # Cephes expf: exp(x) = 2**n * exp(r), |r| <= ln(2)/2, exp(r) by a degree-7 polynomial;
        # relative error below 1e-7 (float32 rounding). Unlike a libm call, this is plain
        # arithmetic, so LLVM vectorises the loops that use it (about 15x faster here).
        lo, hi = _F32(-87.0), _F32(88.0)
        log2e, half = _F32(1.4426950408889634), _F32(0.5)
        ln2_hi, ln2_lo = _F32(0.693359375), _F32(-2.12194440e-4)
        c0, c1, c2 = _F32(1.9875691500e-4), _F32(1.3981999507e-3), _F32(8.3334519073e-3)
        c3, c4, c5 = _F32(4.1665795894e-2), _F32(1.6666665459e-1), _F32(5.0000001201e-1)
        one, bias, shift = _F32(1.0), np.int32(127), np.int32(23)

        def impl(x):
            x = min(max(x, lo), hi)
            n = np.floor(x * log2e + half)
            r = x - n * ln2_hi - n * ln2_lo
            p = ((((c0 * r + c1) * r + c2) * r + c3) * r + c4) * r + c5
            p = p * r * r + r + one
            return p * _float32_from_bits((np.int32(n) + bias) << shift)

        return impl
    if isinstance(x, types.Float):
        return lambda x: np.exp(x)
    return None


@overload(sigmoid, inline="always", jit_options={"fastmath": set(_config.FASTMATH)})
def _sigmoid_overload(x):
    if isinstance(x, types.Float):
        # A constant of the argument's own dtype keeps float32 arithmetic in float32.
        one = as_dtype(x).type(1.0)

        def impl(x):
            return one / (one + fast_exp(-x))

        return impl
    return None


@overload(tanh, inline="always", jit_options={"fastmath": set(_config.FASTMATH)})
def _tanh_overload(x):
    if isinstance(x, types.Float):
        one = as_dtype(x).type(1.0)
        two = as_dtype(x).type(2.0)

        def impl(x):
            # exp saturating at +inf (or float32's clamp) gives 1; exp -> 0 gives -1.
            return one - two / (fast_exp(two * x) + one)

        return impl
    return None


def one_of(arr):
    """1 in the dtype of ``arr`` (Numba-only)."""
    raise NotImplementedError("one_of is only callable from compiled code")


def zero_of(arr):
    """0 in the dtype of ``arr`` (Numba-only)."""
    raise NotImplementedError("zero_of is only callable from compiled code")


@overload(one_of)
def _one_of_overload(arr):
    one = as_dtype(arr.dtype).type(1)
    return lambda arr: one


@overload(zero_of)
def _zero_of_overload(arr):
    zero = as_dtype(arr.dtype).type(0)
    return lambda arr: zero


@kernel()
def active_rows(lengths, step):
    """One past the last row whose sequence is still running at ``step`` (0 if none)."""
    n = 0
    for b in range(lengths.shape[0]):
        if lengths[b] > step:
            n = b + 1
    return n


# Copies between arrays are loops, not slice assignments: Numba compiles a slice assignment from
# an array with an error path that formats both shapes into a message, which costs 1.3-2.1 s of
# compiling (string formatting and joining) the first time a process meets it. The callers pass
# equal shapes by construction.
@kernel()
def _copy(dst, src):
    """dst[j] = src[j] for every j (1-D, equal lengths)."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@kernel()
def _copy_rows(dst, src):
    """dst[r, j] = src[r, j] for every r, j (2-D, equal shapes)."""
    for r in range(dst.shape[0]):
        d = dst[r]
        s = src[r]
        for j in range(dst.shape[1]):
            d[j] = s[j]


@kernel()
def _project_inputs(x, W, out):
    """out[b, t] = x[b, t] @ W for all rows in one matrix product."""
    B, T, D = x.shape
    matmul_packed(x.reshape((B * T, D)), B * T, packed(W), W.shape[1],
                  out.reshape((B * T, W.shape[1])))


# A single sequence shorter than this reads U in place (row by row, :func:`_times_u`) instead of
# packing it: packing 128 x 512 costs 11.6 us, four of the per-step products it makes 10% faster
# (3.0 instead of 3.3 us, measured on one core).
_PACK_MIN_STEPS_ONE_ROW = 40


@kernel()
def _step_weights(U, rows, steps):
    """``U`` packed for :func:`_times_u`, or an empty array for one short sequence."""
    if rows >= 2 or steps >= _PACK_MIN_STEPS_ONE_ROW:
        return packed(U)
    return np.empty((0, U.shape[0], 1), dtype=U.dtype)


@kernel()
def _times_u(h, U, Up, out, n):
    """out[:n] = h[:n] @ U, with ``Up = _step_weights(U, ...)``."""
    if Up.shape[0] > 0:
        matmul_packed(h, n, Up, U.shape[1], out)
        return
    K, N = U.shape
    for r in range(n):
        a = h[r]
        o = out[r]
        for j in range(N):
            o[j] = 0
        # Four rows of U per pass over the output: a quarter of the loads and stores of o.
        k = 0
        while k + 4 <= K:
            a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
            u0, u1, u2, u3 = U[k], U[k + 1], U[k + 2], U[k + 3]
            for j in range(N):
                o[j] += a0 * u0[j] + a1 * u1[j] + a2 * u2[j] + a3 * u3[j]
            k += 4
        while k < K:
            ak = a[k]
            uk = U[k]
            for j in range(N):
                o[j] += ak * uk[j]
            k += 1


# Below this many rows, the backward's per-step products d @ U.T are dot products with the rows of
# U: packing U.T (a transpose) takes 55 us for 128 x 512, more than it saves on a single sentence.
_PACK_T_MIN_ROWS = 3


@kernel()
def _backward_weights(U, rows):
    """``U.T`` packed for :func:`_times_u_t`, or an empty array for few rows."""
    if rows >= _PACK_T_MIN_ROWS:
        return packed(U.T)
    return np.empty((0, U.shape[1], 1), dtype=U.dtype)


@kernel()
def _times_u_t(d, U, Ut, out, n):
    """out[:n] = d[:n] @ U.T, with ``Ut = _backward_weights(U, ...)``."""
    if Ut.shape[0] > 0:
        matmul_packed(d, n, Ut, U.shape[0], out)
        return
    zero = zero_of(out)
    for r in range(n):
        dr = d[r]
        for i in range(U.shape[0]):
            m = U[i]
            acc = zero
            for k in range(U.shape[1]):
                acc += dr[k] * m[k]
            out[r, i] = acc


@kernel()
def _input_gradients(x, W, d_pre, dx, dW, db):
    """dW = x^T d_pre, db = column sums of d_pre, dx = d_pre W^T (padding rows of d_pre are 0)."""
    B, T, D = x.shape
    x2 = x.reshape((B * T, D))
    d2 = d_pre.reshape((B * T, W.shape[1]))
    np.dot(x2.T, d2, dW)
    _dx_and_db(d2, W, dx.reshape((B * T, D)), db)


@kernel()
def _dx_and_db(d2, W, dx2, db):
    """dx2 = d2 W^T and db = the column sums of d2 (rows of d2 are steps)."""
    np.dot(d2, W.T, dx2)
    db[:] = 0
    for r in range(d2.shape[0]):
        for k in range(d2.shape[1]):
            db[k] += d2[r, k]


@kernel()
def _zero_padding(lengths, arr):
    for b in range(arr.shape[0]):
        for t in range(lengths[b], arr.shape[1]):
            arr[b, t, :] = 0


# --------------------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------------------


@kernel()
def lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last, c_last,
                 projected=False):
    """LSTM forward pass for one direction.

    Parameters
    ----------
    x : ndarray (B, T, D)
        Inputs, right-padded.
    lengths : ndarray (B,) of int
        Valid steps per sequence (0 <= lengths[b] <= T).
    W, U, b : ndarray (D, 4H), (H, 4H), (4H,)
        Input weights, recurrent weights and bias, gate order i, f, g, o.
    h0, c0 : ndarray (B, H)
        Initial hidden and cell states.
    reverse : bool
        Run each sequence from its last valid step to its first.
    h_out, c_out : ndarray (B, T, H)
        Out: hidden and cell state at every step (zero at padding).
    gates : ndarray (B, T, 4H)
        Out: activated gates (i, f, g, o) at every step, kept for the backward pass. In, with
        ``projected``: the input projections ``x @ W`` (without the bias) at the valid steps.
    h_prev : ndarray (B, T, H)
        Out: the hidden state each step started from (kept for the backward pass).
    h_last, c_last : ndarray (B, H)
        Out: final states (the state after each sequence's last processed step).
    projected : bool
        ``gates`` already holds the input projections (gathered from a table of them, see
        :func:`tagger.nn.recurrent.direction_forward`): ``x`` (any width, its first two
        dimensions giving B and T) and ``W`` are not read.
    """
    B, T, _ = x.shape
    H = U.shape[0]
    if not projected:
        _project_inputs(x, W, gates)
    h_state = h_last
    c_state = c_last
    _copy_rows(h_state, h0)
    _copy_rows(c_state, c0)
    rec = np.empty((B, 4 * H), dtype=x.dtype)
    Up = _step_weights(U, B, T)  # once per call, for every step's product
    for s in range(T):
        n = active_rows(lengths, s)
        if n == 0:
            break
        _times_u(h_state, U, Up, rec, n)
        for row in range(n):
            L = lengths[row]
            if L <= s:
                continue
            t = L - 1 - s if reverse else s
            # Short passes over L1-resident rows, each touching few arrays, one per gate and
            # indexed from 0: LLVM vectorises these. (One fused loop over all the arrays
            # defeats its aliasing analysis, and passes written as range(2 * H, 3 * H) ran
            # 4.5x slower than these at hidden 128.)
            g_row = gates[row, t]
            r_row = rec[row]
            for j in range(H):
                g_row[j] = sigmoid(g_row[j] + b[j] + r_row[j])
            for j in range(H):
                g_row[H + j] = sigmoid(g_row[H + j] + b[H + j] + r_row[H + j])
            for j in range(H):
                g_row[2 * H + j] = tanh(g_row[2 * H + j] + b[2 * H + j] + r_row[2 * H + j])
            for j in range(H):
                g_row[3 * H + j] = sigmoid(g_row[3 * H + j] + b[3 * H + j] + r_row[3 * H + j])
            hs = h_state[row]
            cs = c_state[row]
            _copy(h_prev[row, t], hs)
            for j in range(H):
                c = g_row[H + j] * cs[j] + g_row[j] * g_row[2 * H + j]
                cs[j] = c
                hs[j] = g_row[3 * H + j] * tanh(c)
            _copy(c_out[row, t], cs)
            _copy(h_out[row, t], hs)
    _zero_padding(lengths, h_out)
    _zero_padding(lengths, c_out)
    _zero_padding(lengths, h_prev)
    _zero_padding(lengths, gates)


@kernel()
def lstm_infer(x, lengths, W, U, b, h0, c0, reverse, h_out, h_last, c_last, pre):
    """LSTM forward pass for prediction: the same ``h_out`` and final states as
    :func:`lstm_forward`, without keeping what a backward pass needs (no gates, cell states or
    previous states written per step: less memory traffic).

    Parameters
    ----------
    x, lengths, W, U, b, h0, c0, reverse, h_out, h_last, c_last
        As for :func:`lstm_forward`.
    pre : ndarray (B, T, 4H)
        Scratch: the input projections of every step.
    """
    _copy_rows(h_last, h0)
    _copy_rows(c_last, c0)
    _lstm_infer_into(x, lengths, W, U, b, h_last, c_last, reverse, h_out, 0, pre)


@kernel()
def lstm_infer_ids(ids, lengths, P, U, b, h_state, c_state, out, pre):
    """The forward prediction pass of an LSTM layer whose inputs are rows of a table: the input
    projection of id ``k`` is ``P[k]`` (``P = table @ W``, computed once per table), gathered
    instead of multiplied. For a character language model reading text this takes the input
    product (E x 4H per character) out of every step.

    Parameters
    ----------
    ids : ndarray (B, T) of int64
        Row of ``P`` at each step; read up to ``lengths`` only (ids there must be valid rows).
    lengths : ndarray (B,) of int64
        Valid steps per sequence (right-padded, read left to right).
    P : ndarray (V, 4H)
        Projected inputs, without the bias.
    U, b
        As for :func:`lstm_forward`.
    h_state, c_state : ndarray (B, H)
        In: the initial states; out: the final ones.
    out : ndarray (B, T, H)
        Out: the outputs, zero at padding.
    pre : ndarray (B, T, 4H)
        Scratch.
    """
    B, T = ids.shape
    H = U.shape[0]
    N = 4 * H
    for row in range(B):
        for t in range(lengths[row]):
            src = P[ids[row, t]]
            dst = pre[row, t]
            for j in range(N):
                dst[j] = src[j]
    rec = np.empty((min(B, _INFER_ROW_BLOCK), N), dtype=P.dtype)
    Up = _step_weights(U, B, T)
    for r0 in range(0, B, _INFER_ROW_BLOCK):
        r1 = min(B, r0 + _INFER_ROW_BLOCK)
        _lstm_infer_rows(lengths[r0:r1], U, Up, b, h_state[r0:r1], c_state[r0:r1], False,
                         out[r0:r1], 0, pre[r0:r1], rec)
    for row in range(B):
        for t in range(lengths[row], T):
            for j in range(H):
                out[row, t, j] = 0


@kernel()
def lstm_infer_pair(x, lengths, W_f, U_f, b_f, W_b, U_b, b_b, out, pre):
    """Both directions of a bidirectional LSTM layer for prediction, from zero states, in one
    call: ``out[..., :H]`` the forward direction's outputs, ``out[..., H:]`` the reverse one's
    (as :func:`lstm_infer` gives them, written in place of a concatenation).

    Parameters
    ----------
    x, lengths
        As for :func:`lstm_forward`.
    W_f, U_f, b_f, W_b, U_b, b_b
        The forward and the reverse direction's weights.
    out : ndarray (B, T, 2H)
        Out: the layer's outputs, zero at padding.
    pre : ndarray (B, T, 4H)
        Scratch.
    """
    B, T, _ = x.shape
    H = U_f.shape[0]
    h_f = np.zeros((B, H), dtype=x.dtype)
    c_f = np.zeros((B, H), dtype=x.dtype)
    h_b = np.zeros((B, H), dtype=x.dtype)
    c_b = np.zeros((B, H), dtype=x.dtype)
    rec = np.empty((min(B, _INFER_ROW_BLOCK), 4 * H), dtype=x.dtype)
    W_fp, W_bp = packed(W_f), packed(W_b)
    U_fp, U_bp = _step_weights(U_f, B, T), _step_weights(U_b, B, T)
    # Block by block, both directions: the block's inputs and outputs stay in the cache between
    # the two (6% faster than one direction over every block, then the other).
    for r0 in range(0, B, _INFER_ROW_BLOCK):
        r1 = min(B, r0 + _INFER_ROW_BLOCK)
        # One call site for both directions, with the direction and the column as run-time
        # values: literal False/True and 0 would compile _lstm_infer_block twice (3 s).
        for direction in range(2):
            back = direction == 1
            if back:
                _lstm_infer_block(x, lengths, W_bp, U_b, U_bp, b_b, h_b, c_b, back, out,
                                  direction * H, pre, rec, r0, r1)
            else:
                _lstm_infer_block(x, lengths, W_fp, U_f, U_fp, b_f, h_f, c_f, back, out,
                                  direction * H, pre, rec, r0, r1)
    _zero_padding(lengths, out)


# Prediction goes through blocks of this many sequences, one block after the other (input
# projection, then the recurrence): a block's projected inputs are read back while they are still
# in the cache, and its per-step arrays stay in the L2 cache with the packed U; for 256 sequences
# of 25 steps the projected inputs alone take 13 MB. Measured on one core, both directions,
# hidden 128, 256 x 25 steps: 143k tokens/s in one block, 150k in blocks of 64, 159k in blocks of
# 32. A multiple of the micro-kernel's rows (gemm_cpu.MR): the products' groups of rows start
# where they would in one block.
_INFER_ROW_BLOCK = 32


@kernel()
def _lstm_infer_into(x, lengths, W, U, b, h_state, c_state, reverse, out, col, pre):
    """The prediction pass from the states in ``h_state`` and ``c_state`` (updated to the final
    ones), writing the outputs to ``out[:, :, col:col + H]`` (zero at padding)."""
    B, T, _ = x.shape
    H = U.shape[0]
    rec = np.empty((min(B, _INFER_ROW_BLOCK), 4 * H), dtype=x.dtype)
    Wp = packed(W)
    Up = _step_weights(U, B, T)  # once per call, for every step's product
    for r0 in range(0, B, _INFER_ROW_BLOCK):
        _lstm_infer_block(x, lengths, Wp, U, Up, b, h_state, c_state, reverse, out, col, pre,
                          rec, r0, min(B, r0 + _INFER_ROW_BLOCK))
    for row in range(B):
        for t in range(lengths[row], T):
            out[row, t, col:col + H] = 0


@kernel()
def _lstm_infer_block(x, lengths, Wp, U, Up, b, h_state, c_state, reverse, out, col, pre, rec,
                      r0, r1):
    """Sequences ``r0:r1`` of the prediction pass: their input projection (``Wp`` packed W), then
    their recurrence (:func:`_lstm_infer_rows`)."""
    B, T, D = x.shape
    N = 4 * U.shape[0]
    matmul_packed(x.reshape((B * T, D))[r0 * T:r1 * T], (r1 - r0) * T, Wp, N,
                  pre.reshape((B * T, N))[r0 * T:r1 * T])
    _lstm_infer_rows(lengths[r0:r1], U, Up, b, h_state[r0:r1], c_state[r0:r1], reverse,
                     out[r0:r1], col, pre[r0:r1], rec)


@kernel()
def _lstm_infer_rows(lengths, U, Up, b, h_state, c_state, reverse, out, col, pre, rec):
    """The recurrence of :func:`_lstm_infer_into` over one block of sequences, from ``pre``
    (their projected inputs)."""
    T = pre.shape[1]
    H = U.shape[0]
    for s in range(T):
        n = active_rows(lengths, s)
        if n == 0:
            break
        _times_u(h_state, U, Up, rec, n)
        for row in range(n):
            L = lengths[row]
            if L <= s:
                continue
            t = L - 1 - s if reverse else s
            # One pass per unit, nothing stored but the two states: LLVM vectorises it (two
            # arrays written, four read: few enough runtime alias checks), and it ran 3.5x
            # faster than separate passes over the gates, the cell and the output.
            p = pre[row, t]
            r = rec[row]
            cs = c_state[row]
            hs = h_state[row]
            for j in range(H):
                gi = sigmoid(p[j] + b[j] + r[j])
                gf = sigmoid(p[H + j] + b[H + j] + r[H + j])
                gg = tanh(p[2 * H + j] + b[2 * H + j] + r[2 * H + j])
                go = sigmoid(p[3 * H + j] + b[3 * H + j] + r[3 * H + j])
                c = gf * cs[j] + gi * gg
                cs[j] = c
                hs[j] = go * tanh(c)
            o = out[row, t]
            for j in range(H):
                o[col + j] = hs[j]


@kernel()
def lstm_backward(
    x, lengths, W, U, c0, reverse, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
    d_gates, dx, dW, dU, db, dh0, dc0, d_packed=None,
):
    """LSTM backward pass (backpropagation through time) for one direction.

    Parameters
    ----------
    x, lengths, W, U, c0, reverse
        As given to :func:`lstm_forward`.
    gates, c_out, h_prev
        As filled by :func:`lstm_forward`.
    d_h : ndarray (B, T, H)
        Gradient of the loss with respect to ``h_out`` (padding ignored).
    d_h_last, d_c_last : ndarray (B, H)
        Gradients with respect to the final states.
    d_gates : ndarray (B, T, 4H)
        Out: gradient with respect to the gate pre-activations (zero at padding).
    dx, dW, dU, db : ndarray
        Out: gradients with respect to ``x``, ``W``, ``U`` and ``b``.
    dh0, dc0 : ndarray (B, H)
        Out: gradients with respect to the initial states.
    d_packed : ndarray, optional
        Scratch of ``gemm_cpu.packed_shape(B * T, 4H, dtype)`` for ``d_gates`` packed (allocated
        when omitted).
    """
    B, T, _ = x.shape
    H = U.shape[0]
    one = one_of(x)
    dh_state = dh0
    dc_state = dc0
    _copy_rows(dh_state, d_h_last)
    _copy_rows(dc_state, d_c_last)
    step = np.empty((B, 4 * H), dtype=x.dtype)
    dh_rec = np.empty((B, H), dtype=x.dtype)
    Ut = _backward_weights(U, B)
    tc = np.empty(H, dtype=x.dtype)
    dh = np.empty(H, dtype=x.dtype)
    dc = np.empty(H, dtype=x.dtype)
    for s in range(T - 1, -1, -1):
        n = active_rows(lengths, s)
        if n == 0:
            continue
        for row in range(n):
            L = lengths[row]
            if L <= s:
                step[row, :] = 0
                continue
            t = L - 1 - s if reverse else s
            g_row = gates[row, t]
            c_row = c_out[row, t]
            if s == 0:
                cp = c0[row]
            elif reverse:
                cp = c_out[row, t + 1]
            else:
                cp = c_out[row, t - 1]
            dh_row = d_h[row, t]
            hs = dh_state[row]
            cs = dc_state[row]
            st = step[row]
            for j in range(H):
                tc[j] = tanh(c_row[j])
            for j in range(H):
                dh[j] = dh_row[j] + hs[j]
            for j in range(H):
                dc[j] = cs[j] + dh[j] * g_row[3 * H + j] * (one - tc[j] * tc[j])
            for j in range(H):
                gi = g_row[j]
                st[j] = dc[j] * g_row[2 * H + j] * gi * (one - gi)
            for j in range(H):
                gf = g_row[H + j]
                st[H + j] = dc[j] * cp[j] * gf * (one - gf)
            for j in range(H):
                gg = g_row[2 * H + j]
                st[2 * H + j] = dc[j] * g_row[j] * (one - gg * gg)
            for j in range(H):
                go = g_row[3 * H + j]
                st[3 * H + j] = dh[j] * tc[j] * go * (one - go)
            for j in range(H):
                cs[j] = dc[j] * g_row[H + j]
            _copy(d_gates[row, t], step[row])
        _times_u_t(step, U, Ut, dh_rec, n)
        for row in range(n):
            if lengths[row] > s:
                _copy(dh_state[row], dh_rec[row])
    # Every valid step was written above; only the padding is left to zero (cheaper than
    # zeroing the whole array first).
    _zero_padding(lengths, d_gates)
    # dW = x^T d and dU = h_prev^T d on the packed kernels with d packed once for both (the
    # transposes are read in place): 2.9 + 0.1 ms at shape 32 x 40, hidden 128, against 3.3 ms
    # for BLAS. dx = d W^T stays on BLAS (W^T has too few columns to fill the panels).
    d2 = d_gates.reshape((B * T, 4 * H))
    if d_packed is None:
        dp = packed(d2)
    else:
        pack_panels(d2, d_packed)
        dp = d_packed
    matmul_packed(x.reshape((B * T, x.shape[2])).T, x.shape[2], dp, 4 * H, dW)
    matmul_packed(h_prev.reshape((B * T, H)).T, H, dp, 4 * H, dU)
    _dx_and_db(d2, W, dx.reshape((B * T, x.shape[2])), db)


# --------------------------------------------------------------------------------------------------
# GRU (reset gate after the recurrent product)
# --------------------------------------------------------------------------------------------------


@kernel()
def gru_forward(x, lengths, W, U, b, b_rn, h0, reverse, h_out, gates, rec_n, h_prev, h_last):
    """GRU forward pass for one direction (cuDNN/PyTorch form).

    ``r = σ(x W_r + b_r + h U_r)``, ``z = σ(x W_z + b_z + h U_z)``,
    ``n = tanh(x W_n + b_n + r ⊙ (h U_n + b_rn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``.

    Parameters
    ----------
    x, lengths, reverse
        As for :func:`lstm_forward`.
    W, U, b : ndarray (D, 3H), (H, 3H), (3H,)
        Gate order r, z, n.
    b_rn : ndarray (H,)
        Recurrent bias of the candidate, inside the reset product.
    h0 : ndarray (B, H)
        Initial hidden state.
    h_out : ndarray (B, T, H)
        Out: hidden states.
    gates : ndarray (B, T, 3H)
        Out: activated r, z, n.
    rec_n : ndarray (B, T, H)
        Out: ``h U_n + b_rn`` at every step (kept for the backward pass).
    h_prev : ndarray (B, T, H)
        Out: the hidden state each step started from.
    h_last : ndarray (B, H)
        Out: final hidden state.
    """
    B, T, _ = x.shape
    H = U.shape[0]
    _project_inputs(x, W, gates)
    h_state = h_last
    _copy_rows(h_state, h0)
    rec = np.empty((B, 3 * H), dtype=x.dtype)
    Up = _step_weights(U, B, T)  # once per call, for every step's product
    for s in range(T):
        n_rows = active_rows(lengths, s)
        if n_rows == 0:
            break
        _times_u(h_state, U, Up, rec, n_rows)
        for row in range(n_rows):
            L = lengths[row]
            if L <= s:
                continue
            t = L - 1 - s if reverse else s
            g_row = gates[row, t]
            r_row = rec[row]
            rn_row = rec_n[row, t]
            h_row = h_out[row, t]
            hs = h_state[row]
            for k in range(2 * H):
                g_row[k] = sigmoid(g_row[k] + b[k] + r_row[k])
            for j in range(H):
                rn_row[j] = r_row[2 * H + j] + b_rn[j]
            for j in range(H):
                g_row[2 * H + j] = tanh(g_row[2 * H + j] + b[2 * H + j] + g_row[j] * rn_row[j])
            _copy(h_prev[row, t], hs)
            for j in range(H):
                nn = g_row[2 * H + j]
                h_row[j] = nn + g_row[H + j] * (hs[j] - nn)
            _copy(hs, h_row)
    _zero_padding(lengths, h_out)
    _zero_padding(lengths, h_prev)
    _zero_padding(lengths, gates)
    _zero_padding(lengths, rec_n)


@kernel()
def gru_backward(
    x, lengths, W, U, reverse, gates, rec_n, h_prev, d_h, d_h_last,
    d_gates, dx, dW, dU, db, db_rn, dh0,
):
    """GRU backward pass for one direction.

    Parameters
    ----------
    x, lengths, W, U, reverse
        As given to :func:`gru_forward`.
    gates, rec_n, h_prev
        As filled by :func:`gru_forward`.
    d_h : ndarray (B, T, H)
        Gradient with respect to ``h_out``.
    d_h_last : ndarray (B, H)
        Gradient with respect to the final state.
    d_gates : ndarray (B, T, 3H)
        Out: gradient with respect to the input pre-activations ``x W + b``.
    dx, dW, dU, db, db_rn, dh0 : ndarray
        Out: gradients.
    """
    B, T, _ = x.shape
    H = U.shape[0]
    one = one_of(x)
    dh_state = dh0
    _copy_rows(dh_state, d_h_last)
    direct = np.empty((B, H), dtype=x.dtype)
    step = np.empty((B, 3 * H), dtype=x.dtype)
    dh_rec = np.empty((B, H), dtype=x.dtype)
    Ut = _backward_weights(U, B)
    dh = np.empty(H, dtype=x.dtype)
    # Gradient of the recurrent pre-activations (differs from d_gates in the candidate block).
    d_rec = np.zeros((B, T, 3 * H), dtype=x.dtype)
    d_gates[:] = 0
    db_rn[:] = 0
    for s in range(T - 1, -1, -1):
        n_rows = active_rows(lengths, s)
        if n_rows == 0:
            continue
        for row in range(n_rows):
            L = lengths[row]
            if L <= s:
                step[row, :] = 0
                continue
            t = L - 1 - s if reverse else s
            g_row = gates[row, t]
            rn_row = rec_n[row, t]
            hp = h_prev[row, t]
            dh_row = d_h[row, t]
            hs = dh_state[row]
            st = step[row]
            dg = d_gates[row, t]
            for j in range(H):
                dh[j] = dh_row[j] + hs[j]
            for j in range(H):
                z = g_row[H + j]
                nn = g_row[2 * H + j]
                dg[2 * H + j] = dh[j] * (one - z) * (one - nn * nn)
            for j in range(H):
                z = g_row[H + j]
                dg[H + j] = dh[j] * (hp[j] - g_row[2 * H + j]) * z * (one - z)
            for j in range(H):
                r = g_row[j]
                dg[j] = dg[2 * H + j] * rn_row[j] * r * (one - r)
            for j in range(2 * H):
                st[j] = dg[j]
            for j in range(H):
                st[2 * H + j] = dg[2 * H + j] * g_row[j]
            for j in range(H):
                direct[row, j] = dh[j] * g_row[H + j]
            for j in range(H):
                db_rn[j] += st[2 * H + j]
            _copy(d_rec[row, t], step[row])
        _times_u_t(step, U, Ut, dh_rec, n_rows)
        for row in range(n_rows):
            if lengths[row] > s:
                for j in range(H):
                    dh_state[row, j] = dh_rec[row, j] + direct[row, j]
    _input_gradients(x, W, d_gates, dx, dW, db)
    np.dot(h_prev.reshape((B * T, H)).T, d_rec.reshape((B * T, 3 * H)), dU)


# --------------------------------------------------------------------------------------------------
# Elman RNN (tanh or ReLU; with identity recurrent initialisation this is the IRNN)
# --------------------------------------------------------------------------------------------------


@kernel()
def rnn_forward(x, lengths, W, U, b, h0, relu, reverse, h_out, h_prev, h_last):
    """Elman RNN forward pass for one direction: ``h' = act(x W + b + h U)``.

    Parameters
    ----------
    x, lengths, reverse
        As for :func:`lstm_forward`.
    W, U, b : ndarray (D, H), (H, H), (H,)
        Weights and bias.
    h0 : ndarray (B, H)
        Initial hidden state.
    relu : bool
        ReLU activation instead of tanh.
    h_out : ndarray (B, T, H)
        Out: hidden states.
    h_prev : ndarray (B, T, H)
        Out: the hidden state each step started from.
    h_last : ndarray (B, H)
        Out: final hidden state.
    """
    B, T, _ = x.shape
    H = U.shape[0]
    _project_inputs(x, W, h_out)
    zero = zero_of(x)
    h_state = h_last
    _copy_rows(h_state, h0)
    rec = np.empty((B, H), dtype=x.dtype)
    Up = _step_weights(U, B, T)  # once per call, for every step's product
    for s in range(T):
        n = active_rows(lengths, s)
        if n == 0:
            break
        _times_u(h_state, U, Up, rec, n)
        for row in range(n):
            L = lengths[row]
            if L <= s:
                continue
            t = L - 1 - s if reverse else s
            o_row = h_out[row, t]
            r_row = rec[row]
            hs = h_state[row]
            _copy(h_prev[row, t], hs)
            if relu:
                for j in range(H):
                    o_row[j] = max(o_row[j] + b[j] + r_row[j], zero)
            else:
                for j in range(H):
                    o_row[j] = tanh(o_row[j] + b[j] + r_row[j])
            _copy(hs, o_row)
    _zero_padding(lengths, h_out)
    _zero_padding(lengths, h_prev)


@kernel()
def rnn_backward(
    x, lengths, W, U, relu, reverse, h_out, h_prev, d_h, d_h_last, d_pre, dx, dW, dU, db, dh0
):
    """Elman RNN backward pass for one direction.

    Parameters
    ----------
    x, lengths, W, U, relu, reverse
        As given to :func:`rnn_forward`.
    h_out, h_prev
        As filled by :func:`rnn_forward`.
    d_h : ndarray (B, T, H)
        Gradient with respect to ``h_out``.
    d_h_last : ndarray (B, H)
        Gradient with respect to the final state.
    d_pre : ndarray (B, T, H)
        Out: gradient with respect to the pre-activations.
    dx, dW, dU, db, dh0 : ndarray
        Out: gradients.
    """
    B, T, _ = x.shape
    H = U.shape[0]
    zero = zero_of(x)
    one = one_of(x)
    dh_state = dh0
    _copy_rows(dh_state, d_h_last)
    step = np.empty((B, H), dtype=x.dtype)
    dh_rec = np.empty((B, H), dtype=x.dtype)
    Ut = _backward_weights(U, B)
    d_pre[:] = 0
    for s in range(T - 1, -1, -1):
        n = active_rows(lengths, s)
        if n == 0:
            continue
        for row in range(n):
            L = lengths[row]
            if L <= s:
                step[row, :] = 0
                continue
            t = L - 1 - s if reverse else s
            h_row = h_out[row, t]
            dh_row = d_h[row, t]
            hs = dh_state[row]
            st = step[row]
            if relu:
                for j in range(H):
                    st[j] = (dh_row[j] + hs[j]) if h_row[j] > zero else zero
            else:
                for j in range(H):
                    st[j] = (dh_row[j] + hs[j]) * (one - h_row[j] * h_row[j])
            _copy(d_pre[row, t], step[row])
        _times_u_t(step, U, Ut, dh_rec, n)
        for row in range(n):
            if lengths[row] > s:
                _copy(dh_state[row], dh_rec[row])
    _input_gradients(x, W, d_pre, dx, dW, db)
    np.dot(h_prev.reshape((B * T, H)).T, d_pre.reshape((B * T, H)), dU)


@kernel()
def reverse_padded(x, lengths, out):
    """out[b, t] = x[b, lengths[b] - 1 - t] for valid t, zero at padding."""
    for b in range(x.shape[0]):
        L = lengths[b]
        for t in range(L):
            _copy(out[b, t], x[b, L - 1 - t])
        for t in range(L, x.shape[1]):
            out[b, t, :] = 0
