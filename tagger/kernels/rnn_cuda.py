"""CUDA kernels (numba-cuda) for the recurrent layers: LSTM, GRU and Elman/ReLU RNN, forward and
backward through time, one direction, with the argument order of :mod:`tagger.kernels.rnn_cpu`.

Design:
- The input projection of all steps, and the weight gradients after the backward pass, are large
  matrix products (:func:`gemm`).
- The recurrence is one persistent kernel per direction: one block per sequence loops over that
  sequence's own steps inside a single launch (a sequence never waits for longer ones, and no
  launch is paid per step). The block's threads share out the gate columns for the recurrent
  product and the hidden units for the state update, with a barrier between the two phases.
  Global writes made before ``syncthreads`` are visible to the whole block after it.

Arrays are numba device arrays, or NumPy arrays, which numba copies to the device and back at
every launch (fine for tests; the engine keeps its arrays on the device). Launch sizes come from
:mod:`tagger._config` so that tests can make blocks small and grids wide.
"""

from __future__ import annotations

import math

from numba import cuda

from .. import _config

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@cuda.jit
def smoke_kernel(out):
    """out[i] = i + 1: the launch that tells whether the GPU works (see ``backend``)."""
    i = cuda.threadIdx.x
    if i < out.shape[0]:
        out[i] = i + 1


@cuda.jit(device=True, inline=True)
def _sigmoid(v, one):
    # ``one`` has the arrays' dtype: a bare 1 would promote float32 arithmetic to float64.
    return one / (one + math.exp(-v))


@cuda.jit
def _gemm_kernel(A, B, C, trans_a, trans_b, accumulate):
    """C (+)= op(A) @ op(B), one thread per element of C (grid-stride in both dimensions)."""
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    row0, col0 = cuda.grid(2)
    rows, cols = cuda.gridsize(2)
    for i in range(row0, M, rows):
        for j in range(col0, N, cols):
            acc = C.dtype.type(0)
            for k in range(K):
                a = A[k, i] if trans_a else A[i, k]
                b = B[j, k] if trans_b else B[k, j]
                acc += a * b
            if accumulate:
                C[i, j] += acc
            else:
                C[i, j] = acc


def gemm(A, B, C, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False) -> None:
    """``C = op(A) @ op(B)`` (``+=`` with ``accumulate``) on the device; 2-D arrays."""
    edge = _config.CUDA_BLOCK_2D
    M, N = C.shape
    grid = (min(math.ceil(M / edge), _config.CUDA_MAX_BLOCKS),
            min(math.ceil(N / edge), _config.CUDA_MAX_BLOCKS))
    _gemm_kernel[grid, (edge, edge)](A, B, C, trans_a, trans_b, accumulate)


@cuda.jit
def _column_sums_kernel(A, out):
    j0 = cuda.grid(1)
    for j in range(j0, A.shape[1], cuda.gridsize(1)):
        acc = out.dtype.type(0)
        for i in range(A.shape[0]):
            acc += A[i, j]
        out[j] = acc


def column_sums(A, out) -> None:
    """``out[j] = A[:, j].sum()`` on the device."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    blocks = min(max(1, math.ceil(A.shape[1] / tpb)), _config.CUDA_MAX_BLOCKS)
    _column_sums_kernel[blocks, tpb](A, out)


def _flat(a, cols: int):
    """A (B, T, cols) array as (B*T, cols) without copying."""
    return a.reshape((a.shape[0] * a.shape[1], cols))


def _input_gradients(x, W, d_pre, dx, dW, db) -> None:
    """dW = xᵀ d_pre, db = column sums of d_pre, dx = d_pre Wᵀ (padding rows of d_pre are 0)."""
    D, G = W.shape
    x2, d2 = _flat(x, D), _flat(d_pre, G)
    gemm(x2, d2, dW, trans_a=True)
    column_sums(d2, db)
    gemm(d2, W, _flat(dx, D), trans_b=True)


def _launch(kernel, B: int, *args) -> None:
    if B:
        kernel[B, _config.CUDA_THREADS_PER_BLOCK](*args)


# ----------------------------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _lstm_forward_kernel(lengths, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last,
                         c_last):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = gates.shape[1]
    L = lengths[row]
    one = gates.dtype.type(1)
    for j in range(tid, H, nt):
        h_last[row, j] = h0[row, j]
        c_last[row, j] = c0[row, j]
    cuda.syncthreads()
    for s in range(L):
        t = L - 1 - s if reverse else s
        for k in range(tid, 4 * H, nt):
            acc = gates[row, t, k] + b[k]
            for i in range(H):
                acc += h_last[row, i] * U[i, k]
            gates[row, t, k] = math.tanh(acc) if 2 * H <= k < 3 * H else _sigmoid(acc, one)
        for j in range(tid, H, nt):
            h_prev[row, t, j] = h_last[row, j]
        cuda.syncthreads()
        for j in range(tid, H, nt):
            c = gates[row, t, H + j] * c_last[row, j] + gates[row, t, j] * gates[row, t, 2 * H + j]
            h = gates[row, t, 3 * H + j] * math.tanh(c)
            c_out[row, t, j] = c
            h_out[row, t, j] = h
            c_last[row, j] = c
            h_last[row, j] = h
        cuda.syncthreads()
    for t in range(L, T):
        for j in range(tid, H, nt):
            h_out[row, t, j] = 0
            c_out[row, t, j] = 0
            h_prev[row, t, j] = 0
        for k in range(tid, 4 * H, nt):
            gates[row, t, k] = 0


def lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last,
                 c_last) -> None:
    """LSTM forward pass for one direction (see :func:`tagger.kernels.rnn_cpu.lstm_forward`)."""
    B, T, D = x.shape
    gemm(_flat(x, D), W, _flat(gates, W.shape[1]))
    _launch(_lstm_forward_kernel, B, lengths, U, b, h0, c0, bool(reverse), h_out, c_out, gates,
            h_prev, h_last, c_last)


@cuda.jit
def _lstm_backward_kernel(lengths, U, c0, reverse, gates, c_out, d_h, d_h_last, d_c_last,
                          d_gates, dh0, dc0):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = gates.shape[1]
    L = lengths[row]
    one = gates.dtype.type(1)
    zero = gates.dtype.type(0)
    for j in range(tid, H, nt):
        dh0[row, j] = d_h_last[row, j]
        dc0[row, j] = d_c_last[row, j]
    for t in range(L, T):
        for k in range(tid, 4 * H, nt):
            d_gates[row, t, k] = 0
    cuda.syncthreads()
    for s in range(L - 1, -1, -1):
        t = L - 1 - s if reverse else s
        tp = t + 1 if reverse else t - 1  # the step before, in processing order
        for j in range(tid, H, nt):
            cp = c0[row, j] if s == 0 else c_out[row, tp, j]
            gi = gates[row, t, j]
            gf = gates[row, t, H + j]
            gg = gates[row, t, 2 * H + j]
            go = gates[row, t, 3 * H + j]
            tc = math.tanh(c_out[row, t, j])
            dh = d_h[row, t, j] + dh0[row, j]
            dc = dc0[row, j] + dh * go * (one - tc * tc)
            d_gates[row, t, j] = dc * gg * gi * (one - gi)
            d_gates[row, t, H + j] = dc * cp * gf * (one - gf)
            d_gates[row, t, 2 * H + j] = dc * gi * (one - gg * gg)
            d_gates[row, t, 3 * H + j] = dh * tc * go * (one - go)
            dc0[row, j] = dc * gf
        cuda.syncthreads()
        for i in range(tid, H, nt):
            acc = zero
            for k in range(4 * H):
                acc += d_gates[row, t, k] * U[i, k]
            dh0[row, i] = acc
        cuda.syncthreads()


def lstm_backward(x, lengths, W, U, c0, reverse, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
                  d_gates, dx, dW, dU, db, dh0, dc0) -> None:
    """LSTM backward pass for one direction (see :func:`tagger.kernels.rnn_cpu.lstm_backward`)."""
    B, T, _ = x.shape
    H = U.shape[0]
    _launch(_lstm_backward_kernel, B, lengths, U, c0, bool(reverse), gates, c_out, d_h,
            d_h_last, d_c_last, d_gates, dh0, dc0)
    _input_gradients(x, W, d_gates, dx, dW, db)
    gemm(_flat(h_prev, H), _flat(d_gates, 4 * H), dU, trans_a=True)


# ----------------------------------------------------------------------------------------------
# GRU (reset gate after the recurrent product)
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _gru_forward_kernel(lengths, U, b, b_rn, h0, reverse, h_out, gates, rec_n, h_prev, h_last):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = gates.shape[1]
    L = lengths[row]
    one = gates.dtype.type(1)
    zero = gates.dtype.type(0)
    for j in range(tid, H, nt):
        h_last[row, j] = h0[row, j]
    cuda.syncthreads()
    for s in range(L):
        t = L - 1 - s if reverse else s
        for k in range(tid, 3 * H, nt):
            acc = zero
            for i in range(H):
                acc += h_last[row, i] * U[i, k]
            if k < 2 * H:
                gates[row, t, k] = _sigmoid(gates[row, t, k] + b[k] + acc, one)
            else:
                rec_n[row, t, k - 2 * H] = acc + b_rn[k - 2 * H]
        cuda.syncthreads()
        for j in range(tid, H, nt):
            n = math.tanh(gates[row, t, 2 * H + j] + b[2 * H + j]
                          + gates[row, t, j] * rec_n[row, t, j])
            gates[row, t, 2 * H + j] = n
            hp = h_last[row, j]
            h_prev[row, t, j] = hp
            h = n + gates[row, t, H + j] * (hp - n)
            h_out[row, t, j] = h
            h_last[row, j] = h  # only this thread reads h_last[row, j] in this phase
        cuda.syncthreads()
    for t in range(L, T):
        for j in range(tid, H, nt):
            h_out[row, t, j] = 0
            h_prev[row, t, j] = 0
            rec_n[row, t, j] = 0
        for k in range(tid, 3 * H, nt):
            gates[row, t, k] = 0


def gru_forward(x, lengths, W, U, b, b_rn, h0, reverse, h_out, gates, rec_n, h_prev,
                h_last) -> None:
    """GRU forward pass for one direction (see :func:`tagger.kernels.rnn_cpu.gru_forward`)."""
    B, T, D = x.shape
    gemm(_flat(x, D), W, _flat(gates, W.shape[1]))
    _launch(_gru_forward_kernel, B, lengths, U, b, b_rn, h0, bool(reverse), h_out, gates, rec_n,
            h_prev, h_last)


@cuda.jit
def _gru_backward_kernel(lengths, U, reverse, gates, rec_n, h_prev, d_h, d_h_last, d_gates,
                         d_rec, dh0):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = gates.shape[1]
    L = lengths[row]
    one = gates.dtype.type(1)
    for j in range(tid, H, nt):
        dh0[row, j] = d_h_last[row, j]
    for t in range(L, T):
        for k in range(tid, 3 * H, nt):
            d_gates[row, t, k] = 0
            d_rec[row, t, k] = 0
    cuda.syncthreads()
    for s in range(L - 1, -1, -1):
        t = L - 1 - s if reverse else s
        for j in range(tid, H, nt):
            r = gates[row, t, j]
            z = gates[row, t, H + j]
            n = gates[row, t, 2 * H + j]
            dh = d_h[row, t, j] + dh0[row, j]
            dn = dh * (one - z) * (one - n * n)
            dz = dh * (h_prev[row, t, j] - n) * z * (one - z)
            dr = dn * rec_n[row, t, j] * r * (one - r)
            d_gates[row, t, j] = dr
            d_gates[row, t, H + j] = dz
            d_gates[row, t, 2 * H + j] = dn
            d_rec[row, t, j] = dr
            d_rec[row, t, H + j] = dz
            d_rec[row, t, 2 * H + j] = dn * r
            dh0[row, j] = dh * z  # the direct path; the recurrent product is added below
        cuda.syncthreads()
        for i in range(tid, H, nt):
            acc = dh0[row, i]
            for k in range(3 * H):
                acc += d_rec[row, t, k] * U[i, k]
            dh0[row, i] = acc
        cuda.syncthreads()


def gru_backward(x, lengths, W, U, reverse, gates, rec_n, h_prev, d_h, d_h_last, d_gates, dx,
                 dW, dU, db, db_rn, dh0) -> None:
    """GRU backward pass for one direction (see :func:`tagger.kernels.rnn_cpu.gru_backward`)."""
    B, T, _ = x.shape
    H = U.shape[0]
    d_rec = cuda.device_array(d_gates.shape, dtype=d_gates.dtype)
    _launch(_gru_backward_kernel, B, lengths, U, bool(reverse), gates, rec_n, h_prev, d_h,
            d_h_last, d_gates, d_rec, dh0)
    _input_gradients(x, W, d_gates, dx, dW, db)
    gemm(_flat(h_prev, H), _flat(d_rec, 3 * H), dU, trans_a=True)
    db_rn_all = cuda.device_array(3 * H, dtype=d_gates.dtype)
    column_sums(_flat(d_rec, 3 * H), db_rn_all)
    _copy_tail(db_rn_all, db_rn, 2 * H)


@cuda.jit
def _copy_tail_kernel(src, dst, offset):
    i0 = cuda.grid(1)
    for i in range(i0, dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[offset + i]


def _copy_tail(src, dst, offset: int) -> None:
    tpb = _config.CUDA_THREADS_PER_BLOCK
    _copy_tail_kernel[max(1, math.ceil(dst.shape[0] / tpb)), tpb](src, dst, offset)


# ----------------------------------------------------------------------------------------------
# Elman RNN (tanh or ReLU)
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _rnn_forward_kernel(lengths, U, b, h0, relu, reverse, h_out, h_prev, h_last):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = h_out.shape[1]
    L = lengths[row]
    zero = h_out.dtype.type(0)
    for j in range(tid, H, nt):
        h_last[row, j] = h0[row, j]
    cuda.syncthreads()
    for s in range(L):
        t = L - 1 - s if reverse else s
        for j in range(tid, H, nt):
            acc = h_out[row, t, j] + b[j]
            for i in range(H):
                acc += h_last[row, i] * U[i, j]
            h_prev[row, t, j] = h_last[row, j]
            h_out[row, t, j] = max(acc, zero) if relu else math.tanh(acc)
        cuda.syncthreads()
        for j in range(tid, H, nt):
            h_last[row, j] = h_out[row, t, j]
        cuda.syncthreads()
    for t in range(L, T):
        for j in range(tid, H, nt):
            h_out[row, t, j] = 0
            h_prev[row, t, j] = 0


def rnn_forward(x, lengths, W, U, b, h0, relu, reverse, h_out, h_prev, h_last) -> None:
    """Elman RNN forward pass (see :func:`tagger.kernels.rnn_cpu.rnn_forward`)."""
    B, T, D = x.shape
    gemm(_flat(x, D), W, _flat(h_out, W.shape[1]))
    _launch(_rnn_forward_kernel, B, lengths, U, b, h0, bool(relu), bool(reverse), h_out, h_prev,
            h_last)


@cuda.jit
def _rnn_backward_kernel(lengths, U, relu, reverse, h_out, d_h, d_h_last, d_pre, dh0):
    row = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    H = U.shape[0]
    T = h_out.shape[1]
    L = lengths[row]
    one = h_out.dtype.type(1)
    zero = h_out.dtype.type(0)
    for j in range(tid, H, nt):
        dh0[row, j] = d_h_last[row, j]
    for t in range(L, T):
        for j in range(tid, H, nt):
            d_pre[row, t, j] = 0
    cuda.syncthreads()
    for s in range(L - 1, -1, -1):
        t = L - 1 - s if reverse else s
        for j in range(tid, H, nt):
            h = h_out[row, t, j]
            g = d_h[row, t, j] + dh0[row, j]
            if relu:
                d_pre[row, t, j] = g if h > zero else zero
            else:
                d_pre[row, t, j] = g * (one - h * h)
        cuda.syncthreads()
        for i in range(tid, H, nt):
            acc = zero
            for k in range(H):
                acc += d_pre[row, t, k] * U[i, k]
            dh0[row, i] = acc
        cuda.syncthreads()


def rnn_backward(x, lengths, W, U, relu, reverse, h_out, h_prev, d_h, d_h_last, d_pre, dx, dW,
                 dU, db, dh0) -> None:
    """Elman RNN backward pass (see :func:`tagger.kernels.rnn_cpu.rnn_backward`)."""
    B, T, _ = x.shape
    H = U.shape[0]
    _launch(_rnn_backward_kernel, B, lengths, U, bool(relu), bool(reverse), h_out, d_h,
            d_h_last, d_pre, dh0)
    _input_gradients(x, W, d_pre, dx, dW, db)
    gemm(_flat(h_prev, H), _flat(d_pre, H), dU, trans_a=True)
