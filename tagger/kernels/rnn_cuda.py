"""CUDA kernels (numba-cuda) for the recurrent layers: LSTM, GRU and Elman/ReLU RNN, forward and
backward through time, one direction, with the argument order of :mod:`tagger.kernels.rnn_cpu`.

Design:
- The input projection of all steps, and the weight gradients after the backward pass, are large
  matrix products (:func:`gemm`: cuBLAS through CuPy when installed, else a tiled kernel).
- The LSTM recurrence spreads every step over many blocks, each owning a slice of the hidden units
  (their recurrent weights in shared memory) and a group of sequences, and runs all steps of a
  direction in one cooperative launch with a grid-wide barrier between steps, or in one launch per
  step when the grid cannot be resident at once (see the LSTM section). The backward pass's
  product with U reads the gate gradients from global memory for every unit, or, with
  ``TAGGER_CUDA_STAGED=1``, stages them through shared memory (see
  :func:`_lstm_backward_state_staged`).
- The GRU and Elman recurrences are one persistent kernel per direction with one block per
  sequence, looping over that sequence's own steps inside a single launch. The block's threads
  share out the gate columns for the recurrent product and the hidden units for the state update,
  with a barrier between the two phases. Global writes made before ``syncthreads`` are visible to
  the whole block after it.

Arrays are numba device arrays, or NumPy arrays, which numba copies to the device and back at
every launch (fine for tests; the engine keeps what the backward pass needs on the device).
Launch sizes come from :mod:`tagger._config` so that tests can make blocks small and grids wide.
"""

from __future__ import annotations

import functools
import math
import os

from numba import cuda

from .. import _config
from . import memory_cuda

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
    """C (+)= op(A) @ op(B), one thread per element of C (grid-stride in both dimensions): the
    plain reference the tiled kernel is measured against (``TAGGER_CUDA_GEMM=naive``)."""
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


@functools.cache
def _tiled_gemm(TB: int, RT: int, KT: int):
    """A shared-memory tiled GEMM kernel: blocks of TB x TB threads, each thread computing RT x RT
    outputs of a (TB*RT)² tile of C, K consumed in slices of KT staged in shared memory. With a
    grid of several blocks along z, block z covers K[z*k_chunk : (z+1)*k_chunk] and writes its
    partial product to P[z] (split-K, for products with few output tiles and a long K)."""
    TILE = TB * RT

    @cuda.jit(device=True, inline=True)
    def stage(X, S, k_major, first, limit, k0, k_end, idx):
        """S[kk, ii] = the (first + ii, k0 + kk) element of X (``k_major``: X is stored K x rows,
        else rows x K), 0 outside X; ``idx`` enumerates the KT x TILE slots."""
        if k_major:
            kk, ii = idx // TILE, idx % TILE
        else:
            ii, kk = idx // KT, idx % KT
        gi, gk = first + ii, k0 + kk
        v = S.dtype.type(0)
        if gi < limit and gk < k_end:
            v = X[gk, gi] if k_major else X[gi, gk]
        S[kk, ii] = v

    @cuda.jit
    def kernel(A, B, C, P, trans_a, trans_b, accumulate, k_chunk):
        As = cuda.shared.array((KT, TILE), dtype=C.dtype)
        Bs = cuda.shared.array((KT, TILE), dtype=C.dtype)
        acc = cuda.local.array((RT, RT), dtype=C.dtype)
        ra = cuda.local.array(RT, dtype=C.dtype)
        rb = cuda.local.array(RT, dtype=C.dtype)
        zero = C.dtype.type(0)
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        z = cuda.blockIdx.z
        split = cuda.gridDim.z > 1
        k_begin = z * k_chunk
        k_end = min(K, k_begin + k_chunk)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * TB + tx
        n_threads = TB * TB
        for bi in range(cuda.blockIdx.x, (M + TILE - 1) // TILE, cuda.gridDim.x):
            for bj in range(cuda.blockIdx.y, (N + TILE - 1) // TILE, cuda.gridDim.y):
                for a in range(RT):
                    for c in range(RT):
                        acc[a, c] = zero
                for k0 in range(k_begin, k_end, KT):
                    # Stage op(A)[tile rows, k0:k0+KT] and op(B)[k0:k0+KT, tile cols] (the same
                    # as op(B)ᵀ's rows), reading along each array's contiguous axis.
                    for idx in range(tid, KT * TILE, n_threads):
                        stage(A, As, trans_a, bi * TILE, M, k0, k_end, idx)
                        stage(B, Bs, not trans_b, bj * TILE, N, k0, k_end, idx)
                    cuda.syncthreads()
                    for kk in range(KT):
                        for a in range(RT):
                            ra[a] = As[kk, ty + TB * a]
                        for c in range(RT):
                            rb[c] = Bs[kk, tx + TB * c]
                        for a in range(RT):
                            for c in range(RT):
                                acc[a, c] += ra[a] * rb[c]
                    cuda.syncthreads()
                for a in range(RT):
                    i = bi * TILE + ty + TB * a
                    if i < M:
                        for c in range(RT):
                            j = bj * TILE + tx + TB * c
                            if j < N:
                                if split:
                                    P[z, i, j] = acc[a, c]
                                elif accumulate:
                                    C[i, j] += acc[a, c]
                                else:
                                    C[i, j] = acc[a, c]

    return kernel


@cuda.jit
def _sum_splits_kernel(P, C, accumulate):
    """C (+)= P.sum(axis=0), the split-K partial products added in a fixed order."""
    S, M, N = P.shape
    i0, j0 = cuda.grid(2)
    for i in range(i0, M, cuda.gridsize(2)[0]):
        for j in range(j0, N, cuda.gridsize(2)[1]):
            acc = C[i, j] if accumulate else C.dtype.type(0)
            for z in range(S):
                acc += P[z, i, j]
            C[i, j] = acc


# Split K when a product has fewer output tiles than this many blocks, in chunks of at least
# this many terms.
_GEMM_BLOCKS_WANTED = 264
_SPLIT_K_MIN_CHUNK = 512


def _gemm_geometry() -> tuple[int, int, int]:
    """(threads per block edge, outputs per thread edge, K slice) of the tiled GEMM: 16 x 16
    threads on 64 x 64 tiles by default; small tiles when tests make blocks small."""
    edge = _config.CUDA_BLOCK_2D
    return (edge, 64 // edge, 16) if edge >= 8 else (edge, 2, 4)


def _cupy():
    """CuPy (cuBLAS), when it is installed and usable, else None."""
    global _CUPY
    if _CUPY is None and os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0"):
        _CUPY = False
    if _CUPY is None:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
            _CUPY = cupy
        except Exception:  # not installed, the simulator, no driver
            _CUPY = False
    return _CUPY or None


_CUPY = None


def gemm(A, B, C, trans_a: bool = False, trans_b: bool = False, accumulate: bool = False) -> None:
    """``C = op(A) @ op(B)`` (``+=`` with ``accumulate``) on the device; 2-D arrays.

    ``TAGGER_CUDA_GEMM`` picks the implementation: ``auto`` (the default: cuBLAS when CuPy is
    installed, else ``tiled``), ``cublas`` (through CuPy, zero-copy on the same arrays), ``tiled``
    (the shared-memory kernel above, splitting K over several blocks when the output has few
    tiles) or ``naive`` (one thread per output). cuBLAS is the default because it was measured
    2.7 to 6 times faster than the tiled kernel on the engine's products at batch 256 on an H100
    (benchmarks/RESULTS.md); the tiled kernel keeps the GPU path working without CuPy.
    """
    M, N = C.shape
    if M == 0 or N == 0:
        return
    choice = _config.CUDA_GEMM
    if choice in ("auto", "cublas") and _cupy() is not None:
        cp = _cupy()
        a, b, c = cp.asarray(A), cp.asarray(B), cp.asarray(C)
        a = a.T if trans_a else a
        b = b.T if trans_b else b
        if accumulate:
            c += a @ b
        else:
            cp.matmul(a, b, out=c)
        return
    if choice == "naive":
        edge = _config.CUDA_BLOCK_2D
        grid = (min(math.ceil(M / edge), _config.CUDA_MAX_BLOCKS),
                min(math.ceil(N / edge), _config.CUDA_MAX_BLOCKS))
        _gemm_kernel[grid, (edge, edge)](A, B, C, trans_a, trans_b, accumulate)
        return
    edge, per_thread, k_slice = _gemm_geometry()
    kernel = _tiled_gemm(edge, per_thread, k_slice)
    tile = edge * per_thread
    K = A.shape[0] if trans_a else A.shape[1]
    tiles = math.ceil(M / tile) * math.ceil(N / tile)
    splits = max(1, min(_GEMM_BLOCKS_WANTED // tiles, K // _SPLIT_K_MIN_CHUNK))
    chunk = math.ceil(math.ceil(K / splits) / k_slice) * k_slice
    splits = math.ceil(K / chunk) if K else 1
    grid = (min(math.ceil(M / tile), _config.CUDA_MAX_BLOCKS),
            min(math.ceil(N / tile), _config.CUDA_MAX_BLOCKS), splits)
    if splits == 1:
        kernel[grid, (edge, edge)](A, B, C, _no_partials(C.dtype), trans_a, trans_b,
                                   accumulate, max(K, 1))
        return
    partials = memory_cuda.empty((splits, M, N), C.dtype)
    kernel[grid, (edge, edge)](A, B, C, partials, trans_a, trans_b, accumulate, chunk)
    grid2 = (min(math.ceil(M / edge), _config.CUDA_MAX_BLOCKS),
             min(math.ceil(N / edge), _config.CUDA_MAX_BLOCKS))
    _sum_splits_kernel[grid2, (edge, edge)](partials, C, accumulate)


def _no_partials(dtype):
    """A (1, 1, 1) device array, passed where the partial-product argument is unused."""
    key = str(dtype)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = cuda.device_array((1, 1, 1), dtype=dtype)
    return _PLACEHOLDERS[key]


_PLACEHOLDERS: dict = {}


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
# LSTM: every step spread over many blocks
# ----------------------------------------------------------------------------------------------
#
# Block (ub, rg) owns hidden units ub*HB .. ub*HB+HB-1 and sequences rg*RB .. rg*RB+RB-1. In the
# forward pass it keeps the recurrent weights of its units' 4*HB gate columns in shared memory
# and computes, at each step, those columns for its sequences (each thread one column, four
# sequences at a time, so that a weight read from shared memory serves four products), then the
# cell update of its units. In the backward pass it keeps the rows of U of its units and computes
# the gate gradients of its units, then the carried gradient of its units' states, which needs
# the gate gradients of all units. Between those two phases (backward), and between steps
# (forward: the next step reads every unit's state), blocks must wait for one another: either a
# grid-wide barrier inside one cooperative launch (the whole recurrence in one launch) or one
# launch per phase. ``hbuf`` (2, B, H) double-buffers the state read by the next step.


_SHARED_BYTES = 48 * 1024  # dynamic shared memory available to a block without opt-in


_ROW_PAD = 16  # words between the rows of U kept in shared memory (no bank conflicts)

# The staged backward product (``TAGGER_CUDA_STAGED``): the gate gradients of the block's
# sequences go through shared memory this many columns at a time; rows of U and of the staged
# columns are one word longer than their data, so that the threads of a warp, which read one
# column of several rows at once, hit distinct banks.
_STAGE_K = 64
_STAGE_PAD = 1


class _Plan:
    """Launch geometry of the multi-block recurrent kernels for a (B, H) problem.

    ``HB`` units and ``RB`` sequences per block, ``C = gates * HB`` gate columns, ``tpb`` threads
    (a multiple of C: ``tpb // C`` lanes per column). ``KS`` threads share one output of the
    backward recurrent product, each summing every KS-th term (a power of two).
    """

    def __init__(self, B: int, H: int, gates: int, itemsize: int):
        tpb = max(_config.CUDA_THREADS_PER_BLOCK, gates)
        rows = max(1, min(_config.CUDA_ROWS_PER_BLOCK, B))
        self.RB, self.KS = rows, min(16, _floor_pow2(tpb))
        hb = max(1, min(H, _config.CUDA_UNITS_PER_BLOCK, tpb // gates))
        while hb > 1 and self._words(H, gates, hb, tpb, True) * itemsize > _SHARED_BYTES:
            hb //= 2
        self.HB = hb
        self.C = gates * hb  # gate columns per block
        self.tpb = self.C * max(1, tpb // self.C)
        self.KS = min(self.KS, self.tpb & -self.tpb)  # a power of two that divides tpb
        self.grid = (math.ceil(H / hb), math.ceil(B / rows))
        # The block's weights stay in shared memory when they fit (always, but for huge H).
        self.shared_u = self._words(H, gates, hb, self.tpb, True) * itemsize <= _SHARED_BYTES
        self.forward_words, self.backward_words = self._words(H, gates, hb, self.tpb,
                                                              self.shared_u, both=True)
        self.shared_bytes = max(self.forward_words, self.backward_words) * itemsize

    def _words(self, H, gates, hb, tpb, shared_u, both=False):
        C = gates * hb
        lanes = max(1, tpb // C)
        forward = (H * C if shared_u else 0) + self.RB * C \
            + max(4 * math.ceil(self.RB / 4), 4 * lanes) * C
        if _config.CUDA_STAGED_BACKWARD:
            backward = (hb * (gates * H + _STAGE_PAD) if shared_u else 0) \
                + max(self.RB * (_STAGE_K + _STAGE_PAD), 8 * tpb)
        else:
            backward = (hb * (gates * H + _ROW_PAD) if shared_u else 0) \
                + self.RB * hb * self.KS
        return (forward, backward) if both else max(forward, backward)


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _persistent_ok(kernel, plan: _Plan, n_dir: int, args) -> bool:
    """Whether ``kernel`` can run with all of ``plan``'s blocks resident at once (cooperative)."""
    if not _config.CUDA_PERSISTENT:
        return False
    shared = plan.shared_bytes
    if not hasattr(kernel, "typeof_pyval"):  # the simulator: one block per cooperative grid
        limit = kernel.overloads[None].max_cooperative_grid_blocks(plan.tpb)
    else:
        argtypes = tuple(kernel.typeof_pyval(a) for a in args)
        key = (kernel, argtypes, plan.tpb, shared)
        limit = _COOPERATIVE_LIMITS.get(key)
        if limit is None:
            limit = kernel.compile(argtypes).max_cooperative_grid_blocks(plan.tpb, shared)
            _COOPERATIVE_LIMITS[key] = limit
    return plan.grid[0] * plan.grid[1] * n_dir <= limit


_COOPERATIVE_LIMITS: dict = {}


@cuda.jit(device=True, inline=True)
def _load_gate_columns(sm, U, HB):
    """sm[i * C + c] = U[d, i, g * H + ub * HB + u] for c = g * HB + u (0 past the last unit)."""
    d = cuda.blockIdx.z
    H = U.shape[1]
    G = U.shape[2] // H
    C = G * HB
    ub = cuda.blockIdx.x
    for idx in range(cuda.threadIdx.x, H * C, cuda.blockDim.x):
        i = idx // C
        c = idx - i * C
        g = c // HB
        j = ub * HB + c - g * HB
        sm[idx] = U[d, i, g * H + j] if j < H else U.dtype.type(0)


@cuda.jit(device=True, inline=True)
def _load_unit_rows(sm, U, HB, pad):
    """sm[u * (GH + pad) + k] = U[d, ub * HB + u, k] (0 past the last unit)."""
    d = cuda.blockIdx.z
    H, GH = U.shape[1], U.shape[2]
    ub = cuda.blockIdx.x
    for idx in range(cuda.threadIdx.x, HB * GH, cuda.blockDim.x):
        u = idx // GH
        i = ub * HB + u
        k = idx - u * GH
        sm[u * (GH + pad) + k] = U[d, i, k] if i < H else U.dtype.type(0)


@cuda.jit(device=True, inline=True)
def _step_time(s, L, reverse):
    return L - 1 - s if reverse else s


@cuda.jit(device=True, inline=True)
def _lstm_forward_step(s, sm, HB, RB, shared_u, lengths, U, b, h0, c0, reverse, h_out, c_out,
                       gates, h_prev, h_last, c_last, hbuf):
    d = cuda.blockIdx.z
    rev = reverse != (d == 1)  # the second direction of a pair runs backwards in time
    B = gates.shape[1]
    H = U.shape[1]
    C = 4 * HB
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    ub, rg = cuda.blockIdx.x, cuda.blockIdx.y
    lanes = nt // C
    lane = tid // C
    c = tid - lane * C
    g = c // HB
    j = ub * HB + c - g * HB
    k = g * H + j
    row0 = rg * RB
    rows = min(RB, B - row0)
    g_off = H * C if shared_u else 0  # gate values of this step, (RB, C)
    p_off = g_off + RB * C  # partial sums of the recurrent product
    cur = s % 2
    zero = gates.dtype.type(0)
    # Phase 1: the recurrent product of this block's gate columns, four sequences per tile. When
    # there are fewer tiles than lanes, ksf lanes share a tile, each summing every ksf-th term.
    tiles = (rows + 3) // 4
    ksf = 1
    while 2 * ksf * tiles <= lanes:
        ksf *= 2
    slot = lane // ksf
    ks = lane - slot * ksf
    if j < H and slot < lanes // ksf:
        for tile in range(slot, tiles, lanes // ksf):
            q0 = row0 + min(4 * tile, rows - 1)
            q1 = row0 + min(4 * tile + 1, rows - 1)
            q2 = row0 + min(4 * tile + 2, rows - 1)
            q3 = row0 + min(4 * tile + 3, rows - 1)
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for i in range(ks, H, ksf):
                w = sm[i * C + c] if shared_u else U[d, i, k]
                a0 += hbuf[d, cur, q0, i] * w
                a1 += hbuf[d, cur, q1, i] * w
                a2 += hbuf[d, cur, q2, i] * w
                a3 += hbuf[d, cur, q3, i] * w
            base = p_off + (4 * tile * ksf + ks) * C + c
            sm[base] = a0
            sm[base + ksf * C] = a1
            sm[base + 2 * ksf * C] = a2
            sm[base + 3 * ksf * C] = a3
    cuda.syncthreads()
    one = gates.dtype.type(1)
    for idx in range(tid, rows * C, nt):
        m = idx // C
        cc = idx - m * C
        gg = cc // HB
        jj = ub * HB + cc - gg * HB
        row = row0 + m
        if jj < H and s < lengths[row]:
            acc = zero
            for q in range(ksf):
                acc += sm[p_off + (m * ksf + q) * C + cc]
            t = _step_time(s, lengths[row], rev)
            kk = gg * H + jj
            v = acc + gates[d, row, t, kk] + b[d, kk]
            a = math.tanh(v) if gg == 2 else _sigmoid(v, one)
            gates[d, row, t, kk] = a
            sm[g_off + m * C + cc] = a
    cuda.syncthreads()
    # Phase 2: the cell update of this block's units.
    for p in range(tid, RB * HB, nt):
        mloc = p // HB
        u = p - mloc * HB
        row = row0 + mloc
        jj = ub * HB + u
        if row < B and jj < H and s < lengths[row]:
            L = lengths[row]
            t = _step_time(s, L, rev)
            tp = t + 1 if rev else t - 1
            base = g_off + mloc * C + u
            gi = sm[base]
            gf = sm[base + HB]
            gg = sm[base + 2 * HB]
            go = sm[base + 3 * HB]
            if s == 0:
                hp = h0[d, row, jj]
                cp = c0[d, row, jj]
            else:
                hp = h_out[d, row, tp, jj]
                cp = c_out[d, row, tp, jj]
            cc = gf * cp + gi * gg
            hh = go * math.tanh(cc)
            c_out[d, row, t, jj] = cc
            h_out[d, row, t, jj] = hh
            h_prev[d, row, t, jj] = hp
            hbuf[d, 1 - cur, row, jj] = hh
            if s == L - 1:
                h_last[d, row, jj] = hh
                c_last[d, row, jj] = cc


@cuda.jit
def _lstm_forward_persistent(S, HB, RB, shared_u, lengths, U, b, h0, c0, reverse, h_out, c_out,
                             gates, h_prev, h_last, c_last, hbuf):
    sm = cuda.shared.array(0, dtype=U.dtype)
    if shared_u:
        _load_gate_columns(sm, U, HB)
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    for s in range(S):
        _lstm_forward_step(s, sm, HB, RB, shared_u, lengths, U, b, h0, c0, reverse, h_out, c_out,
                           gates, h_prev, h_last, c_last, hbuf)
        grid.sync()


@cuda.jit
def _lstm_forward_one_step(s, HB, RB, shared_u, lengths, U, b, h0, c0, reverse, h_out, c_out,
                           gates, h_prev, h_last, c_last, hbuf):
    sm = cuda.shared.array(0, dtype=U.dtype)
    if shared_u:
        _load_gate_columns(sm, U, HB)
    cuda.syncthreads()
    _lstm_forward_step(s, sm, HB, RB, shared_u, lengths, U, b, h0, c0, reverse, h_out, c_out,
                       gates, h_prev, h_last, c_last, hbuf)


@cuda.jit
def _lstm_forward_pad_kernel(lengths, h0, c0, h_out, c_out, gates, h_prev, h_last, c_last):
    """Zeros at the padding steps; empty sequences keep their initial states."""
    _, B, T, H = h_out.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    d = cuda.blockIdx.y
    for row in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        L = lengths[row]
        if L == 0:
            for j in range(tid, H, nt):
                h_last[d, row, j] = h0[d, row, j]
                c_last[d, row, j] = c0[d, row, j]
        for t in range(L, T):
            for j in range(tid, H, nt):
                h_out[d, row, t, j] = 0
                c_out[d, row, t, j] = 0
                h_prev[d, row, t, j] = 0
            for k in range(tid, 4 * H, nt):
                gates[d, row, t, k] = 0


def _pad_launch(kernel, B: int, D: int, *args) -> None:
    if B:
        kernel[(min(B, _config.CUDA_MAX_BLOCKS), D), _config.CUDA_THREADS_PER_BLOCK](*args)


def _stacked(*arrays):
    """Each array as a view with a leading axis of length 1 (one direction)."""
    return [a.reshape((1, *a.shape)) for a in arrays]


def lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last,
                 c_last) -> None:
    """LSTM forward pass for one direction (see :func:`tagger.kernels.rnn_cpu.lstm_forward`)."""
    _lstm_forward(x, lengths, *_stacked(W, U, b, h0, c0), bool(reverse),
                  *_stacked(h_out, c_out, gates, h_prev, h_last, c_last))


def lstm_forward_pair(x, lengths, W, U, b, h0, c0, h_out, c_out, gates, h_prev, h_last,
                      c_last) -> None:
    """Both directions of a bidirectional LSTM layer at once: every array but ``x`` and
    ``lengths`` has a leading axis of 2 (forward in time, then backward), with the shapes of
    :func:`lstm_forward`'s arguments after it. The two directions' steps run side by side in one
    launch."""
    _lstm_forward(x, lengths, W, U, b, h0, c0, False, h_out, c_out, gates, h_prev, h_last, c_last)


def _lstm_forward(x, lengths, W, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last,
                  c_last) -> None:
    B, T, D = x.shape
    n_dir, H = U.shape[0], U.shape[1]
    if B == 0:
        return
    for d in range(n_dir):
        gemm(_flat(x, D), W[d], _flat(gates[d], 4 * H))
    _pad_launch(_lstm_forward_pad_kernel, B, n_dir, lengths, h0, c0, h_out, c_out, gates, h_prev,
                h_last, c_last)
    if T == 0 or H == 0:
        return
    plan = _Plan(B, H, 4, gates.dtype.itemsize)
    hbuf = memory_cuda.empty((n_dir, 2, B, H), gates.dtype)
    for d in range(n_dir):
        hbuf[d, 0].copy_to_device(h0[d])
    tail = (lengths, U, b, h0, c0, reverse, h_out, c_out, gates, h_prev, h_last, c_last, hbuf)
    launch = ((*plan.grid, n_dir), plan.tpb, 0, plan.forward_words * gates.dtype.itemsize)
    args = (T, plan.HB, plan.RB, plan.shared_u, *tail)
    if _persistent_ok(_lstm_forward_persistent, plan, n_dir, args):
        _lstm_forward_persistent[launch](*args)
    else:
        for s in range(T):
            _lstm_forward_one_step[launch](s, plan.HB, plan.RB, plan.shared_u, *tail)


@cuda.jit(device=True, inline=True)
def _lstm_backward_gates(s, HB, RB, lengths, c0, reverse, gates, c_out, d_h, d_gates, dh0, dc0):
    """Phase A of step s: the gate gradients of this block's units. ``dh0``/``dc0`` carry the
    state gradients from the later steps."""
    d = cuda.blockIdx.z
    rev = reverse != (d == 1)
    _, B, T, H = c_out.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    ub, rg = cuda.blockIdx.x, cuda.blockIdx.y
    one = gates.dtype.type(1)
    for p in range(tid, RB * HB, nt):
        mloc = p // HB
        row = rg * RB + mloc
        j = ub * HB + p - mloc * HB
        if row < B and j < H and s < lengths[row]:
            t = _step_time(s, lengths[row], rev)
            tp = t + 1 if rev else t - 1
            cp = c0[d, row, j] if s == 0 else c_out[d, row, tp, j]
            gi = gates[d, row, t, j]
            gf = gates[d, row, t, H + j]
            gg = gates[d, row, t, 2 * H + j]
            go = gates[d, row, t, 3 * H + j]
            tc = math.tanh(c_out[d, row, t, j])
            dh = d_h[d, row, t, j] + dh0[d, row, j]
            dc = dc0[d, row, j] + dh * go * (one - tc * tc)
            d_gates[d, row, t, j] = dc * gg * gi * (one - gi)
            d_gates[d, row, t, H + j] = dc * cp * gf * (one - gf)
            d_gates[d, row, t, 2 * H + j] = dc * gi * (one - gg * gg)
            d_gates[d, row, t, 3 * H + j] = dh * tc * go * (one - go)
            dc0[d, row, j] = dc * gf


@cuda.jit(device=True, inline=True)
def _lstm_backward_state(s, sm, HB, RB, KS, shared_u, lengths, U, reverse, d_gates, dh0):
    """Phase B of step s: dh0[d, row, i] = sum_k d_gates[d, row, t, k] U[d, i, k] for this
    block's units i. KS consecutive threads share an output, each summing every KS-th term
    (coalesced reads of d_gates, no bank conflicts on U); the partial sums are added in a fixed
    order."""
    d = cuda.blockIdx.z
    rev = reverse != (d == 1)
    B = d_gates.shape[1]
    H, GH = U.shape[1], U.shape[2]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    ub, rg = cuda.blockIdx.x, cuda.blockIdx.y
    row0 = rg * RB
    rows = min(RB, B - row0)
    p_off = HB * (GH + _ROW_PAD) if shared_u else 0
    ks = tid % KS
    zero = d_gates.dtype.type(0)
    for o in range(tid // KS, rows * HB, nt // KS):
        m = o // HB
        u = o - m * HB
        row = row0 + m
        i = ub * HB + u
        acc = zero
        if i < H and s < lengths[row]:
            t = _step_time(s, lengths[row], rev)
            for k in range(ks, GH, KS):
                w = sm[u * (GH + _ROW_PAD) + k] if shared_u else U[d, i, k]
                acc += d_gates[d, row, t, k] * w
        sm[p_off + o * KS + ks] = acc
    cuda.syncthreads()
    for o in range(tid, rows * HB, nt):
        m = o // HB
        row = row0 + m
        i = ub * HB + o - m * HB
        if i < H and s < lengths[row]:
            total = zero
            for q in range(KS):
                total += sm[p_off + o * KS + q]
            dh0[d, row, i] = total
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _lstm_backward_state_staged(s, sm, HB, RB, shared_u, lengths, U, reverse, d_gates, dh0):
    """Phase B of step s, as :func:`_lstm_backward_state` computes it, with the gate gradients
    of the block's sequences staged through shared memory ``_STAGE_K`` columns at a time
    (coalesced reads, each value read from global memory once per block instead of once per
    unit). Each thread accumulates a tile of four sequences by two units over every
    ``splits``-th column, so that one read from shared memory serves two or four products; the
    ``splits`` partial sums of an output are added in a fixed order."""
    d = cuda.blockIdx.z
    rev = reverse != (d == 1)
    B = d_gates.shape[1]
    H, GH = U.shape[1], U.shape[2]
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    ub, rg = cuda.blockIdx.x, cuda.blockIdx.y
    row0 = rg * RB
    rows = min(RB, B - row0)
    us = GH + _STAGE_PAD  # the stride of U's rows in sm
    ks_ = _STAGE_K + _STAGE_PAD  # the stride of the staged rows
    c_off = HB * us if shared_u else 0  # the staged columns, then the partial sums
    pairs = (HB + 1) // 2
    tiles = pairs * ((rows + 3) // 4)
    group = min(tiles, nt)
    splits = nt // group
    zero = d_gates.dtype.type(0)
    for tile0 in range(0, tiles, group):  # the same trip count in every thread
        tile = tile0 + tid % group
        ks = tid // group
        busy = tile < tiles and ks < splits
        up = tile % pairs
        u0 = 2 * up
        u1 = min(u0 + 1, HB - 1)
        m0 = 4 * (tile // pairs)
        r0 = min(m0, rows - 1)
        r1 = min(m0 + 1, rows - 1)
        r2 = min(m0 + 2, rows - 1)
        r3 = min(m0 + 3, rows - 1)
        i0 = min(ub * HB + u0, H - 1)
        i1 = min(ub * HB + u1, H - 1)
        a00 = zero
        a01 = zero
        a10 = zero
        a11 = zero
        a20 = zero
        a21 = zero
        a30 = zero
        a31 = zero
        for k0 in range(0, GH, _STAGE_K):
            kn = min(_STAGE_K, GH - k0)
            cuda.syncthreads()  # the last pass's reads are done
            for idx in range(tid, rows * kn, nt):
                m = idx // kn
                kk = idx - m * kn
                row = row0 + m
                v = zero
                if s < lengths[row]:
                    v = d_gates[d, row, _step_time(s, lengths[row], rev), k0 + kk]
                sm[c_off + m * ks_ + kk] = v
            cuda.syncthreads()
            if busy:
                for kk in range(ks, kn, splits):
                    if shared_u:
                        w0 = sm[u0 * us + k0 + kk]
                        w1 = sm[u1 * us + k0 + kk]
                    else:
                        w0 = U[d, i0, k0 + kk]
                        w1 = U[d, i1, k0 + kk]
                    g0 = sm[c_off + r0 * ks_ + kk]
                    g1 = sm[c_off + r1 * ks_ + kk]
                    g2 = sm[c_off + r2 * ks_ + kk]
                    g3 = sm[c_off + r3 * ks_ + kk]
                    a00 += g0 * w0
                    a01 += g0 * w1
                    a10 += g1 * w0
                    a11 += g1 * w1
                    a20 += g2 * w0
                    a21 += g2 * w1
                    a30 += g3 * w0
                    a31 += g3 * w1
        cuda.syncthreads()  # the staged columns are read: their room takes the partial sums
        if busy:
            base = c_off + (tile - tile0) * 8 * splits + ks
            sm[base] = a00
            sm[base + splits] = a01
            sm[base + 2 * splits] = a10
            sm[base + 3 * splits] = a11
            sm[base + 4 * splits] = a20
            sm[base + 5 * splits] = a21
            sm[base + 6 * splits] = a30
            sm[base + 7 * splits] = a31
        cuda.syncthreads()
        if busy and ks == 0:
            for q in range(8):
                m = m0 + q // 2
                u = u0 + q % 2
                i = ub * HB + u
                row = row0 + m
                if m < rows and u < HB and i < H and s < lengths[row]:
                    total = zero
                    for p in range(splits):
                        total += sm[c_off + (tile - tile0) * 8 * splits + q * splits + p]
                    dh0[d, row, i] = total
    cuda.syncthreads()


@cuda.jit
def _lstm_backward_persistent(S, HB, RB, KS, shared_u, staged, lengths, U, c0, reverse, gates,
                              c_out, d_h, d_gates, dh0, dc0):
    sm = cuda.shared.array(0, dtype=U.dtype)
    if shared_u:
        _load_unit_rows(sm, U, HB, _STAGE_PAD if staged else _ROW_PAD)
    cuda.syncthreads()
    grid = cuda.cg.this_grid()
    for s in range(S - 1, -1, -1):
        _lstm_backward_gates(s, HB, RB, lengths, c0, reverse, gates, c_out, d_h, d_gates, dh0,
                             dc0)
        grid.sync()
        if staged:
            _lstm_backward_state_staged(s, sm, HB, RB, shared_u, lengths, U, reverse, d_gates,
                                        dh0)
        else:
            _lstm_backward_state(s, sm, HB, RB, KS, shared_u, lengths, U, reverse, d_gates,
                                 dh0)


@cuda.jit
def _lstm_backward_gates_kernel(s, HB, RB, lengths, c0, reverse, gates, c_out, d_h, d_gates, dh0,
                                dc0):
    _lstm_backward_gates(s, HB, RB, lengths, c0, reverse, gates, c_out, d_h, d_gates, dh0, dc0)


@cuda.jit
def _lstm_backward_state_kernel(s, HB, RB, KS, shared_u, staged, lengths, U, reverse, d_gates,
                                dh0):
    sm = cuda.shared.array(0, dtype=U.dtype)
    if shared_u:
        _load_unit_rows(sm, U, HB, _STAGE_PAD if staged else _ROW_PAD)
    cuda.syncthreads()
    if staged:
        _lstm_backward_state_staged(s, sm, HB, RB, shared_u, lengths, U, reverse, d_gates, dh0)
    else:
        _lstm_backward_state(s, sm, HB, RB, KS, shared_u, lengths, U, reverse, d_gates, dh0)


@cuda.jit
def _zero_padding_kernel(lengths, a):
    """a[d, row, t, :] = 0 for t >= lengths[row]."""
    _, B, T, K = a.shape
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    d = cuda.blockIdx.y
    for row in range(cuda.blockIdx.x, B, cuda.gridDim.x):
        for t in range(lengths[row], T):
            for k in range(tid, K, nt):
                a[d, row, t, k] = 0


def lstm_backward(x, lengths, W, U, c0, reverse, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
                  d_gates, dx, dW, dU, db, dh0, dc0) -> None:
    """LSTM backward pass for one direction (see :func:`tagger.kernels.rnn_cpu.lstm_backward`)."""
    _lstm_backward(x, lengths, *_stacked(W, U, c0), bool(reverse),
                   *_stacked(gates, c_out, h_prev, d_h, d_h_last, d_c_last, d_gates, dx, dW, dU,
                             db, dh0, dc0))


def lstm_backward_pair(x, lengths, W, U, c0, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
                       d_gates, dx, dW, dU, db, dh0, dc0) -> None:
    """Both directions of a bidirectional LSTM layer at once (see :func:`lstm_forward_pair`);
    ``dx`` has a leading axis of 2 too: each direction's part of the input gradient."""
    _lstm_backward(x, lengths, W, U, c0, False, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
                   d_gates, dx, dW, dU, db, dh0, dc0)


def _lstm_backward(x, lengths, W, U, c0, reverse, gates, c_out, h_prev, d_h, d_h_last, d_c_last,
                   d_gates, dx, dW, dU, db, dh0, dc0) -> None:
    B, T, _ = x.shape
    n_dir, H = U.shape[0], U.shape[1]
    for d in range(n_dir):
        dh0[d].copy_to_device(d_h_last[d])
        dc0[d].copy_to_device(d_c_last[d])
    _pad_launch(_zero_padding_kernel, B, n_dir, lengths, d_gates)
    if B and T and H:
        plan = _Plan(B, H, 4, gates.dtype.itemsize)
        grid = (*plan.grid, n_dir)
        launch = (grid, plan.tpb, 0, plan.backward_words * gates.dtype.itemsize)
        staged = bool(_config.CUDA_STAGED_BACKWARD)
        args = (T, plan.HB, plan.RB, plan.KS, plan.shared_u, staged, lengths, U, c0, reverse,
                gates, c_out, d_h, d_gates, dh0, dc0)
        if _persistent_ok(_lstm_backward_persistent, plan, n_dir, args):
            _lstm_backward_persistent[launch](*args)
        else:
            for s in range(T - 1, -1, -1):
                _lstm_backward_gates_kernel[grid, plan.tpb](
                    s, plan.HB, plan.RB, lengths, c0, reverse, gates, c_out, d_h, d_gates, dh0,
                    dc0)
                _lstm_backward_state_kernel[launch](
                    s, plan.HB, plan.RB, plan.KS, plan.shared_u, staged, lengths, U, reverse,
                    d_gates, dh0)
    for d in range(n_dir):
        _input_gradients(x, W[d], d_gates[d], dx[d], dW[d], db[d])
        gemm(_flat(h_prev[d], H), _flat(d_gates[d], 4 * H), dU[d], trans_a=True)


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
    d_rec = memory_cuda.empty(d_gates.shape, d_gates.dtype)
    _launch(_gru_backward_kernel, B, lengths, U, bool(reverse), gates, rec_n, h_prev, d_h,
            d_h_last, d_gates, d_rec, dh0)
    _input_gradients(x, W, d_gates, dx, dW, db)
    gemm(_flat(h_prev, H), _flat(d_rec, 3 * H), dU, trans_a=True)
    db_rn_all = memory_cuda.empty(3 * H, d_gates.dtype)
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
