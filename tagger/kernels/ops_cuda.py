"""CUDA kernels (numba-cuda) for the small operations around the recurrent core, with the names,
argument order and results of :mod:`tagger.kernels.ops_cpu` (embedding lookups and their
gradients, the character CNN, the dropout mask), and the indexing and elementwise helpers that
the CPU engine writes with NumPy: column blocks of a joined feature array, the two directions of
a bidirectional layer, the softmax cross-entropy heads, "last" pooling, arithmetic in place.

With them the GPU engine keeps parameters, optimizer state and activations on the device for a
whole epoch. Arrays are numba device arrays; NumPy arrays work too (numba copies them to the
device and back at every launch). Arrays that a wrapper reshapes (noted per function) must be
C-contiguous. Every kernel is a grid-stride loop, one thread per output element (or per row,
where a row is reduced), with launch sizes from :mod:`tagger._config`. Outputs are overwritten,
never accumulated into; only the helpers documented as in place (:func:`scale`,
:func:`add_bias`) update their argument.

Scatter-adds into embedding tables (:func:`embedding_backward`, :func:`scatter_columns`, the
character table of :func:`char_cnn_backward`) use atomics: the order of their float additions is
not fixed, so they equal the CPU kernels within float rounding, not bitwise, and may differ in
the last bits between runs. Everything else is computed in a fixed order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config
from . import memory_cuda

# ----------------------------------------------------------------------------------------------
# launch helpers
# ----------------------------------------------------------------------------------------------


def _grid(n: int) -> tuple[int, int]:
    """(blocks, threads per block) of a grid-stride launch over ``n`` items."""
    tpb = _config.CUDA_THREADS_PER_BLOCK
    return min(max(1, math.ceil(n / tpb)), _config.CUDA_MAX_BLOCKS), tpb


def _launch(kernel, n: int, *args) -> None:
    if n > 0:
        kernel[_grid(n)](*args)


def _view(a, *shape):
    """``a`` reshaped without a copy: a copy of a NumPy array would silently lose the writes."""
    contiguous = a.is_c_contiguous() if hasattr(a, "is_c_contiguous") else a.flags.c_contiguous
    if not contiguous:
        raise ValueError(f"expected a C-contiguous array, got shape {a.shape} with strides "
                         f"{a.strides}")
    return a.reshape(*shape)


def _last(a) -> int:
    # Not shape[-1]: the simulator's shapes refuse negative indices.
    return a.shape[len(a.shape) - 1]


def _rows(a):
    """A C-contiguous array as a 2-D (rows, last axis) view."""
    return _view(a, math.prod(a.shape[:-1]), _last(a))


def _flat(a):
    return _view(a, math.prod(a.shape))


@cuda.jit
def _fill_kernel(a, value):
    i0 = cuda.grid(1)
    for i in range(i0, a.shape[0], cuda.gridsize(1)):
        a[i] = value


def fill(a, value) -> None:
    """``a[...] = value`` on the device (no host array goes over), ``value`` cast to ``a``'s
    dtype.

    Parameters
    ----------
    a : device array, C-contiguous
        Out.
    value : scalar
    """
    n = math.prod(a.shape)
    if n:
        _fill_kernel[_grid(n)](_flat(a), a.dtype.type(value))


def _zero(a) -> None:
    fill(a, 0)


@cuda.jit
def _transpose_kernel(a, out):
    k0 = cuda.grid(1)
    M, N = a.shape
    for k in range(k0, M * N, cuda.gridsize(1)):
        j = k // M
        i = k - j * M
        out[j, i] = a[i, j]  # consecutive threads write consecutive elements of out


def transpose(a, out) -> None:
    """``out = a.T`` for a 2-D array.

    Parameters
    ----------
    a : device array (M, N)
    out : device array (N, M)
        Out.
    """
    _launch(_transpose_kernel, a.shape[0] * a.shape[1], a, out)


@cuda.jit
def _take_rows_kernel(src, rows, out):
    k0 = cuda.grid(1)
    N, F = out.shape
    for k in range(k0, N * F, cuda.gridsize(1)):
        n = k // F
        j = k - n * F
        out[n, j] = src[rows[n], j]


def take_rows(src, rows, out) -> None:
    """``out[n] = src[rows[n]]`` along the first axis (NumPy's ``src[rows]``; rows may repeat).

    Parameters
    ----------
    src : device array (M, ...), C-contiguous
    rows : device array (N,) of int64, each in ``[0, M)`` (not checked: the caller's indices)
    out : device array (N, ...) with the trailing shape of ``src``, C-contiguous
        Out.
    """
    N = out.shape[0]
    F = math.prod(out.shape[1:])
    if N and F:
        _take_rows_kernel[_grid(N * F)](_view(src, src.shape[0], F), rows, _view(out, N, F))


# ----------------------------------------------------------------------------------------------
# embeddings and column blocks
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _gather_kernel(table, ids, out, start):
    """out[n, start + c] = table[ids[n], c], zero for id -1."""
    k0 = cuda.grid(1)
    N, D = ids.shape[0], table.shape[1]
    zero = out.dtype.type(0)
    for k in range(k0, N * D, cuda.gridsize(1)):
        n = k // D
        c = k - n * D
        i = ids[n]
        out[n, start + c] = table[i, c] if i >= 0 else zero


@cuda.jit
def _scatter_kernel(ids, d_out, start, d_table):
    """d_table[ids[n], c] += d_out[n, start + c] (ids -1 skipped), with atomics: tokens that
    share an id add into the same row from different threads."""
    k0 = cuda.grid(1)
    N, D = ids.shape[0], d_table.shape[1]
    for k in range(k0, N * D, cuda.gridsize(1)):
        n = k // D
        c = k - n * D
        i = ids[n]
        if i >= 0:
            cuda.atomic.add(d_table, (i, c), d_out[n, start + c])


def embedding_lookup(table, ids, out) -> None:
    """``out[n] = table[ids[n]]`` over the flattened ``ids``; id -1 gives a zero row (see
    :func:`tagger.kernels.ops_cpu.embedding_lookup`).

    Parameters
    ----------
    table : device array (V, D)
    ids : device array of int64, any shape, C-contiguous
    out : device array ``ids.shape + (D,)``, C-contiguous
        Out.
    """
    N, D = math.prod(ids.shape), table.shape[1]
    if N and D:
        _gather_kernel[_grid(N * D)](table, _flat(ids), _view(out, N, D), 0)


def embedding_backward(ids, d_out, d_table) -> None:
    """``d_table`` = the rows of ``d_out`` summed by id, rows with id -1 ignored; overwritten (see
    :func:`tagger.kernels.ops_cpu.embedding_backward`).

    Rows are added with atomics, in no fixed order: the result equals the CPU kernel's within
    float rounding, not bitwise.

    Parameters
    ----------
    ids : device array of int64, any shape, C-contiguous
    d_out : device array ``ids.shape + (D,)``, C-contiguous
    d_table : device array (V, D), C-contiguous
        Out.
    """
    _zero(d_table)
    N, D = math.prod(ids.shape), d_table.shape[1]
    if N and D:
        _scatter_kernel[_grid(N * D)](_flat(ids), _view(d_out, N, D), 0, d_table)


def gather_columns(table, ids, out, start: int) -> None:
    """``out[b, t, start:start + D] = table[ids[b, t]]`` (a zero row for id -1); the other columns
    of ``out`` are left as they are.

    Parameters
    ----------
    table : device array (V, D)
    ids : device array (B, T) of int64, C-contiguous
    out : device array (B, T, W), C-contiguous, ``W >= start + D``
        Out: one column block of the joined input features.
    start : int
        First column of the block.
    """
    N, D = math.prod(ids.shape), table.shape[1]
    if N and D:
        _gather_kernel[_grid(N * D)](table, _flat(ids), _rows(out), start)


def scatter_columns(ids, d_out, start: int, d_table) -> None:
    """Gradient of :func:`gather_columns`: ``d_table`` = the column block ``start:start + D`` of
    ``d_out`` summed by id (id -1 ignored); overwritten, with atomics (see
    :func:`embedding_backward`).

    Parameters
    ----------
    ids : device array (B, T) of int64, C-contiguous
    d_out : device array (B, T, W), C-contiguous
    start : int
    d_table : device array (V, D), C-contiguous
        Out.
    """
    _zero(d_table)
    N, D = math.prod(ids.shape), d_table.shape[1]
    if N and D:
        _scatter_kernel[_grid(N * D)](_flat(ids), _rows(d_out), start, d_table)


@cuda.jit
def _copy_block_kernel(src, src_start, dst, dst_start, w):
    """dst[n, dst_start + c] = src[n, src_start + c] for c < w."""
    k0 = cuda.grid(1)
    for k in range(k0, dst.shape[0] * w, cuda.gridsize(1)):
        n = k // w
        c = k - n * w
        dst[n, dst_start + c] = src[n, src_start + c]


def copy_columns(src, dst, start: int) -> None:
    """``dst[..., start:start + w] = src`` with ``w = src.shape[-1]``; other columns untouched.

    Parameters
    ----------
    src : device array (N, w) or (B, T, w), C-contiguous
    dst : device array with the leading shape of ``src`` and last axis ``W >= start + w``,
        C-contiguous
        Out.
    start : int
    """
    w = _last(src)
    n = math.prod(src.shape[:-1])
    if n and w:
        _copy_block_kernel[_grid(n * w)](_rows(src), 0, _rows(dst), start, w)


def take_columns(src, start: int, dst) -> None:
    """``dst[...] = src[..., start:start + w]`` with ``w = dst.shape[-1]``.

    Parameters
    ----------
    src : device array (..., W), C-contiguous
    start : int
    dst : device array with the leading shape of ``src`` and last axis ``w``, C-contiguous
        Out.
    """
    w = _last(dst)
    n = math.prod(dst.shape[:-1])
    if n and w:
        _copy_block_kernel[_grid(n * w)](_rows(src), start, _rows(dst), 0, w)


@cuda.jit
def _directions_kernel(pair, joined, split):
    """Between the two directions' arrays (2, B, T, H) and one (B, T, 2H): ``joined`` from
    ``pair``, or with ``split`` the other way."""
    k0 = cuda.grid(1)
    _, B, T, H = pair.shape
    for k in range(k0, B * T * 2 * H, cuda.gridsize(1)):
        n = k // (2 * H)
        j = k - n * 2 * H
        b = n // T
        t = n - b * T
        d = j // H
        if split:
            pair[d, b, t, j - d * H] = joined[b, t, j]
        else:
            joined[b, t, j] = pair[d, b, t, j - d * H]


def join_directions(pair, out) -> None:
    """The outputs of the two directions side by side: ``out[..., :H] = pair[0]``,
    ``out[..., H:] = pair[1]``.

    Parameters
    ----------
    pair : device array (2, B, T, H)
    out : device array (B, T, 2H)
        Out.
    """
    _launch(_directions_kernel, math.prod(pair.shape), pair, out, False)


def split_directions(d, out) -> None:
    """The inverse of :func:`join_directions`: ``out[0] = d[..., :H]``, ``out[1] = d[..., H:]``.

    Parameters
    ----------
    d : device array (B, T, 2H)
    out : device array (2, B, T, H)
        Out.
    """
    _launch(_directions_kernel, math.prod(out.shape), out, d, True)


# ----------------------------------------------------------------------------------------------
# character CNN
# ----------------------------------------------------------------------------------------------

# Threads of the one block that computes the words' first rows; also the size of its shared
# buffer, which must be known when the kernel is compiled.
_SCAN_THREADS = 1024


@cuda.jit
def _word_offsets_kernel(char_lengths, first):
    """first[u] = sum(char_lengths[:u]) for u in [0, U], in one block: each thread sums a
    contiguous chunk of words, thread 0 scans the chunk sums, each thread writes its chunk."""
    chunk_sums = cuda.shared.array(_SCAN_THREADS, np.int64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    U = char_lengths.shape[0]
    chunk = (U + nt - 1) // nt
    lo = min(tid * chunk, U)
    hi = min(lo + chunk, U)
    acc = 0
    for u in range(lo, hi):
        acc += char_lengths[u]
    chunk_sums[tid] = acc
    cuda.syncthreads()
    if tid == 0:
        running = 0
        for s in range(nt):
            v = chunk_sums[s]
            chunk_sums[s] = running
            running += v
        first[U] = running
    cuda.syncthreads()
    acc = chunk_sums[tid]
    for u in range(lo, hi):
        first[u] = acc
        acc += char_lengths[u]


def _word_offsets(char_lengths):
    """Device array (U + 1,) of int64: the first row of each word (its exclusive prefix sum)."""
    U = char_lengths.shape[0]
    first = memory_cuda.empty(U + 1, np.int64)
    _word_offsets_kernel[1, min(_config.CUDA_THREADS_PER_BLOCK, _SCAN_THREADS)](char_lengths,
                                                                               first)
    return first


@cuda.jit(device=True, inline=True)
def _word_of_row(first, r):
    """The word ``u`` with ``first[u] <= r < first[u + 1]`` (binary search: never an empty
    word, since those have ``first[u] == first[u + 1]``)."""
    lo = 0
    hi = first.shape[0] - 1  # first[lo] <= r < first[hi] throughout
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if first[mid] <= r:
            lo = mid
        else:
            hi = mid
    return lo


@cuda.jit
def _char_windows_kernel(char_table, char_ids, char_lengths, first, width, windows):
    k0 = cuda.grid(1)
    C = char_table.shape[1]
    KC = width * C
    half = width // 2
    zero = windows.dtype.type(0)
    for k in range(k0, windows.shape[0] * KC, cuda.gridsize(1)):
        r = k // KC
        col = k - r * KC
        u = _word_of_row(first, r)
        i = col // C
        c = col - i * C
        q = r - first[u] + i - half
        if 0 <= q < char_lengths[u]:
            windows[r, col] = char_table[char_ids[u, q], c]
        else:
            windows[r, col] = zero


def char_windows(char_table, char_ids, char_lengths, width: int, windows) -> None:
    """The convolution windows of the character CNN, one row per character, word ``u``'s rows
    after those of the words before it (see :func:`tagger.kernels.ops_cpu.char_windows`).

    The CPU kernel walks the words with a running row counter; here a prefix sum of
    ``char_lengths`` gives each word's first row, and each thread finds its row's word by binary
    search, so that every (row, window column) is independent.

    Parameters
    ----------
    char_table : device array (V, C)
    char_ids : device array (U, L) of int64
    char_lengths : device array (U,) of int64
        Characters per word; their sum must be N.
    width : int
        Odd window width k.
    windows : device array (N, k*C)
        Out.
    """
    N, C = windows.shape[0], char_table.shape[1]
    if N == 0 or C == 0:
        return
    first = _word_offsets(char_lengths)
    _char_windows_kernel[_grid(N * width * C)](char_table, char_ids, char_lengths, first, width,
                                               windows)


@cuda.jit
def _char_max_pool_kernel(conv, bias, char_lengths, first, out, argmax):
    k0 = cuda.grid(1)
    U, F = out.shape
    for k in range(k0, U * F, cuda.gridsize(1)):
        u = k // F
        j = k - u * F
        n = char_lengths[u]
        if n <= 0:
            out[u, j] = 0
            argmax[u, j] = -1
            continue
        row = first[u]
        best = conv[row, j] + bias[j]
        arg = row
        for r in range(row + 1, row + n):
            value = conv[r, j] + bias[j]
            if value > best:  # strict: ties keep the earlier character
                best = value
                arg = r
        out[u, j] = best
        argmax[u, j] = arg


def char_max_pool(conv, bias, char_lengths, out, argmax) -> None:
    """Max over each word's characters of the convolution plus bias; the first row wins ties, an
    empty word gives 0 and argmax -1 (see :func:`tagger.kernels.ops_cpu.char_max_pool`).

    Parameters
    ----------
    conv : device array (N, F)
    bias : device array (F,)
    char_lengths : device array (U,) of int64
    out : device array (U, F)
        Out.
    argmax : device array (U, F) of int64
        Out: rows of ``conv``.
    """
    U, F = out.shape
    if U == 0 or F == 0:
        return
    first = _word_offsets(char_lengths)
    _char_max_pool_kernel[_grid(U * F)](conv, bias, char_lengths, first, out, argmax)


@cuda.jit
def _char_filter_grads_kernel(windows, argmax, d_out, dW_t, db):
    """One thread per entry of dW_t and db, summing over the words in order (deterministic)."""
    k0 = cuda.grid(1)
    F, K = dW_t.shape
    U = argmax.shape[0]
    zero = dW_t.dtype.type(0)
    for k in range(k0, F * K + F, cuda.gridsize(1)):
        acc = zero
        if k < F * K:
            j = k // K
            col = k - j * K
            for u in range(U):
                r = argmax[u, j]
                if r >= 0:
                    acc += d_out[u, j] * windows[r, col]
            dW_t[j, col] = acc
        else:
            j = k - F * K
            for u in range(U):
                if argmax[u, j] >= 0:
                    acc += d_out[u, j]
            db[j] = acc


@cuda.jit
def _char_table_grad_kernel(char_ids, char_lengths, first, width, W_t, argmax, d_out, d_table):
    """One thread per (word, filter, embedding column), adding the winning window's gradient
    into the characters' rows with atomics (characters recur across words)."""
    k0 = cuda.grid(1)
    U, F = argmax.shape
    C = d_table.shape[1]
    half = width // 2
    for k in range(k0, U * F * C, cuda.gridsize(1)):
        u = k // (F * C)
        rest = k - u * F * C
        j = rest // C
        c = rest - j * C
        r = argmax[u, j]
        if r < 0:
            continue
        g = d_out[u, j]
        p = r - first[u]
        n = char_lengths[u]
        for i in range(width):
            q = p + i - half
            if 0 <= q < n:
                cuda.atomic.add(d_table, (char_ids[u, q], c), g * W_t[j, i * C + c])


def char_cnn_backward(char_ids, char_lengths, width: int, windows, W_t, argmax, d_out, dW_t, db,
                      d_table) -> None:
    """Gradients of the character CNN; every output overwritten (see
    :func:`tagger.kernels.ops_cpu.char_cnn_backward`).

    ``dW_t`` and ``db`` are summed over words in order, as on the CPU; ``d_table`` is added
    with atomics, in no fixed order (equal to the CPU within float rounding).

    Parameters
    ----------
    char_ids : device array (U, L) of int64
    char_lengths : device array (U,) of int64
    width : int
    windows : device array (N, k*C)
        As filled by :func:`char_windows`.
    W_t : device array (F, k*C)
        The filters, transposed.
    argmax : device array (U, F) of int64
        As filled by :func:`char_max_pool`.
    d_out : device array (U, F)
    dW_t : device array (F, k*C)
        Out.
    db : device array (F,)
        Out.
    d_table : device array (V, C), C-contiguous
        Out.
    """
    F, K = dW_t.shape
    _launch(_char_filter_grads_kernel, F * K + F, windows, argmax, d_out, dW_t, db)
    _zero(d_table)
    U, C = char_ids.shape[0], d_table.shape[1]
    if U and F and C:
        first = _word_offsets(char_lengths)
        _char_table_grad_kernel[_grid(U * F * C)](char_ids, char_lengths, first, width, W_t,
                                                  argmax, d_out, d_table)


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------

# SplitMix64, the constants of ops_cpu. All integer arithmetic below stays in uint64: Numba turns
# uint64 mixed with a signed integer (a Python int literal, an int64 index) into float64, which
# would silently change every draw.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


@cuda.jit
def _dropout_kernel(seed, threshold, scale, out):
    i0 = cuda.grid(1)
    zero = out.dtype.type(0)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        z = seed + (np.uint64(i) + _ONE) * _GOLDEN
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        out[i] = scale if (z >> _S11) < threshold else zero


def dropout_fill(seed, threshold, scale, out) -> None:
    """The inverted-dropout mask of :func:`tagger.kernels.ops_cpu.dropout_fill`, bitwise: the same
    SplitMix64 draw per element (a counter-based generator, so element ``i`` needs nothing from
    the others).

    Parameters
    ----------
    seed : numpy.uint64
        Start of the stream.
    threshold : numpy.uint64
        ``keep * 2**53``.
    scale : float
        ``1 / keep`` (cast to the mask's dtype).
    out : device array, flat
        Out: the mask (callers pass a ``reshape(-1)`` view).
    """
    _launch(_dropout_kernel, out.shape[0], np.uint64(seed), np.uint64(threshold),
            out.dtype.type(scale), out)


# ----------------------------------------------------------------------------------------------
# elementwise arithmetic
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _multiply_kernel(a, b, out):
    i0 = cuda.grid(1)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] * b[i]


@cuda.jit
def _add_kernel(a, b, out):
    i0 = cuda.grid(1)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        out[i] = a[i] + b[i]


@cuda.jit
def _scale_kernel(a, factor):
    i0 = cuda.grid(1)
    for i in range(i0, a.shape[0], cuda.gridsize(1)):
        a[i] *= factor


@cuda.jit
def _add_bias_kernel(x, b):
    k0 = cuda.grid(1)
    N, F = x.shape
    for k in range(k0, N * F, cuda.gridsize(1)):
        n = k // F
        j = k - n * F
        x[n, j] += b[j]


def multiply(a, b, out) -> None:
    """``out = a * b`` elementwise; ``out`` may be ``a`` or ``b``.

    Parameters
    ----------
    a, b : device arrays of one shape, C-contiguous
    out : device array of that shape, C-contiguous
        Out.
    """
    _elementwise(_multiply_kernel, a, b, out)


def add(a, b, out) -> None:
    """``out = a + b`` elementwise; ``out`` may be ``a`` or ``b``.

    Parameters
    ----------
    a, b : device arrays of one shape, C-contiguous
    out : device array of that shape, C-contiguous
        Out.
    """
    _elementwise(_add_kernel, a, b, out)


@cuda.jit
def _tanh_kernel(a, out):
    i0 = cuda.grid(1)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        out[i] = math.tanh(a[i])


@cuda.jit
def _tanh_backward_kernel(y, d, out):
    i0 = cuda.grid(1)
    one = out.dtype.type(1)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        out[i] = d[i] * (one - y[i] * y[i])


def tanh(a, out) -> None:
    """``out = tanh(a)`` elementwise; ``out`` may be ``a``.

    Parameters
    ----------
    a : device array, C-contiguous
    out : device array of its shape, C-contiguous
        Out.
    """
    n = math.prod(out.shape)
    if n:
        _tanh_kernel[_grid(n)](_flat(a), _flat(out))


def tanh_backward(y, d, out) -> None:
    """Gradient through :func:`tanh` from its output: ``out = d * (1 - y * y)``; ``out`` may be
    ``d``.

    Parameters
    ----------
    y : device array, C-contiguous
        What :func:`tanh` wrote.
    d : device array of its shape, C-contiguous
        Gradient with respect to ``y``.
    out : device array of its shape, C-contiguous
        Out.
    """
    _elementwise(_tanh_backward_kernel, y, d, out)


def _elementwise(kernel, a, b, out) -> None:
    n = math.prod(out.shape)
    if n:
        kernel[_grid(n)](_flat(a), _flat(b), _flat(out))


def scale(a, factor) -> None:
    """``a *= factor`` in place, ``factor`` cast to ``a``'s dtype (float32 stays float32).

    Parameters
    ----------
    a : device array, C-contiguous
    factor : float
    """
    n = math.prod(a.shape)
    if n:
        _scale_kernel[_grid(n)](_flat(a), a.dtype.type(factor))


def add_bias(x, b) -> None:
    """``x[i, :] += b`` in place.

    Parameters
    ----------
    x : device array (N, F)
    b : device array (F,)
    """
    _launch(_add_bias_kernel, x.shape[0] * x.shape[1], x, b)


# ----------------------------------------------------------------------------------------------
# softmax heads
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _softmax_xent_kernel(scores, tags, lengths, scale, token_loss, d_scores):
    """One thread per position: its cross-entropy into token_loss (B, T) and its gradient, both
    computed in float64 (as the loss is summed on the CPU)."""
    k0 = cuda.grid(1)
    B, T, K = scores.shape
    for k in range(k0, B * T, cuda.gridsize(1)):
        b = k // T
        t = k - b * T
        if t >= lengths[b]:
            token_loss[b, t] = 0.0
            for j in range(K):
                d_scores[b, t, j] = 0
            continue
        m = np.float64(scores[b, t, 0])
        for j in range(1, K):
            m = max(m, np.float64(scores[b, t, j]))
        total = 0.0
        for j in range(K):
            total += math.exp(np.float64(scores[b, t, j]) - m)
        log_total = math.log(total)
        y = tags[b, t]
        token_loss[b, t] = log_total - (np.float64(scores[b, t, y]) - m)
        for j in range(K):
            p = math.exp(np.float64(scores[b, t, j]) - m - log_total)
            if j == y:
                p -= 1.0
            d_scores[b, t, j] = p * scale


@cuda.jit
def _row_sums_kernel(a, out):
    """out[b] = sum of a[b, :], in order (one thread per row: deterministic)."""
    b0 = cuda.grid(1)
    B, T = a.shape
    for b in range(b0, B, cuda.gridsize(1)):
        acc = 0.0
        for t in range(T):
            acc += a[b, t]
        out[b] = acc


def softmax_xent(scores, tags, lengths, scale: float, loss, d_scores) -> None:
    """Per-position softmax cross-entropy, summed per sequence, and its gradient: the GPU side
    of :meth:`tagger.nn.heads.SoftmaxHead.loss` (which returns ``loss.sum() / B``, and
    ``d_scores`` with ``scale = 1 / B``).

    Parameters
    ----------
    scores : device array (B, T, K)
    tags : device array (B, T) of int64
        Gold tags; not read at padding.
    lengths : device array (B,) of int64
    scale : float
        Factor of the gradient (the loss is not scaled).
    loss : device array (B,) of float64
        Out: ``-sum over t < lengths[b] of log_softmax(scores[b, t])[tags[b, t]]``, in float64.
    d_scores : device array (B, T, K)
        Out: ``(softmax - onehot) * scale`` at valid positions, 0 at padding.
    """
    B, T, K = scores.shape
    if B == 0:
        return
    token_loss = memory_cuda.empty((B, T), np.float64)
    if T:
        _softmax_xent_kernel[_grid(B * T)](scores, tags, lengths, float(scale), token_loss,
                                           d_scores)
    _row_sums_kernel[_grid(B)](token_loss, loss)


@cuda.jit
def _softmax_xent_rows_kernel(logits, labels, weights, scale, loss, d_logits):
    """One thread per example, in float64 like ClassifierNetwork.loss_and_grads."""
    b0 = cuda.grid(1)
    B, C = logits.shape
    for b in range(b0, B, cuda.gridsize(1)):
        m = np.float64(logits[b, 0])
        for c in range(1, C):
            m = max(m, np.float64(logits[b, c]))
        total = 0.0
        for c in range(C):
            total += math.exp(np.float64(logits[b, c]) - m)
        log_z = math.log(total)
        y = labels[b]
        w = weights[b]
        loss[b] = -(w * ((np.float64(logits[b, y]) - m) - log_z))
        f = w * scale
        for c in range(C):
            p = math.exp(np.float64(logits[b, c]) - m - log_z)
            if c == y:
                p -= 1.0
            d_logits[b, c] = p * f


def softmax_xent_rows(logits, labels, weights, scale: float, loss, d_logits) -> None:
    """Weighted softmax cross-entropy per example and its gradient: the GPU side of the loss in
    :meth:`tagger.nn.classifier.ClassifierNetwork.loss_and_grads` (which returns
    ``loss.sum() / B``, and ``d_logits`` with ``scale = 1 / B``).

    Parameters
    ----------
    logits : device array (B, C)
    labels : device array (B,) of int64
    weights : device array (B,) of float64
    scale : float
        Factor of the gradient (the loss is not scaled).
    loss : device array (B,) of float64
        Out: ``-weights[b] * log_softmax(logits[b])[labels[b]]``, in float64.
    d_logits : device array (B, C)
        Out: ``(softmax - onehot) * weights[b] * scale``.
    """
    _launch(_softmax_xent_rows_kernel, logits.shape[0], logits, labels, weights, float(scale),
            loss, d_logits)


@cuda.jit(device=True, inline=True)
def _softmax_into(src, dst):
    """dst = softmax(src) over a 1-D row, in the arrays' dtype; dst may be src (each element is
    read before it is written)."""
    m = src[0]
    for j in range(1, src.shape[0]):
        m = max(m, src[j])
    total = dst.dtype.type(0)
    for j in range(src.shape[0]):
        e = math.exp(src[j] - m)
        dst[j] = e
        total += e
    for j in range(src.shape[0]):
        dst[j] = dst[j] / total


@cuda.jit
def _softmax_rows_kernel(scores, lengths, out):
    k0 = cuda.grid(1)
    B, T, K = scores.shape
    for k in range(k0, B * T, cuda.gridsize(1)):
        b = k // T
        t = k - b * T
        if t < lengths[b]:
            _softmax_into(scores[b, t], out[b, t])
        else:
            for j in range(K):
                out[b, t, j] = 0


def softmax_rows(scores, lengths, out) -> None:
    """Softmax over the last axis at every valid position, zero at padding (see
    :meth:`tagger.nn.heads.SoftmaxHead.marginals`); computed in the scores' dtype.

    Parameters
    ----------
    scores : device array (B, T, K)
    lengths : device array (B,) of int64
    out : device array (B, T, K)
        Out; may be ``scores``.
    """
    B, T, K = scores.shape
    if K:
        _launch(_softmax_rows_kernel, B * T, scores, lengths, out)


@cuda.jit
def _argmax_rows_kernel(scores, lengths, tags):
    k0 = cuda.grid(1)
    B, T, K = scores.shape
    for k in range(k0, B * T, cuda.gridsize(1)):
        b = k // T
        t = k - b * T
        if t >= lengths[b]:
            tags[b, t] = -1
            continue
        best = scores[b, t, 0]
        arg = 0
        for j in range(1, K):
            v = scores[b, t, j]
            # strict: the first maximum wins; a NaN wins over numbers, as in np.argmax
            if v > best or (v != v and best == best):
                best = v
                arg = j
        tags[b, t] = arg


def argmax_rows(scores, lengths, tags) -> None:
    """The best tag per valid position (the first on ties, as ``np.argmax``), -1 at padding (see
    :meth:`tagger.nn.heads.SoftmaxHead.decode`).

    Parameters
    ----------
    scores : device array (B, T, K)
    lengths : device array (B,) of int64
    tags : device array (B, T) of int64
        Out.
    """
    B, T, K = scores.shape
    if K:
        _launch(_argmax_rows_kernel, B * T, scores, lengths, tags)


# ----------------------------------------------------------------------------------------------
# "last" pooling of the classifier
# ----------------------------------------------------------------------------------------------


@cuda.jit
def _last_pool_kernel(hidden, lengths, H, bidirectional, out):
    k0 = cuda.grid(1)
    B, T, P = hidden.shape
    for k in range(k0, B * P, cuda.gridsize(1)):
        b = k // P
        j = k - b * P
        L = min(lengths[b], T)
        if L <= 0:
            out[b, j] = 0
        elif bidirectional and j >= H:
            out[b, j] = hidden[b, 0, j]  # the reverse direction ends at step 0
        else:
            out[b, j] = hidden[b, L - 1, j]


@cuda.jit
def _last_pool_backward_kernel(lengths, H, bidirectional, d_out, d_hidden):
    k0 = cuda.grid(1)
    B, T, P = d_hidden.shape
    for k in range(k0, B * T * P, cuda.gridsize(1)):
        b = k // (T * P)
        rest = k - b * T * P
        t = rest // P
        j = rest - t * P
        L = min(lengths[b], T)
        source = 0 if bidirectional and j >= H else L - 1
        d_hidden[b, t, j] = d_out[b, j] if L > 0 and t == source else d_hidden.dtype.type(0)


def last_pool(hidden, lengths, H: int, bidirectional: bool, out) -> None:
    """Each sequence's last state: ``out[b, :H] = hidden[b, lengths[b] - 1, :H]`` and, for a
    bidirectional layer, ``out[b, H:] = hidden[b, 0, H:]`` (where the reverse direction ends);
    zero when ``lengths[b] == 0`` (see ``ClassifierNetwork._pool``, pooling "last").

    Parameters
    ----------
    hidden : device array (B, T, P)
    lengths : device array (B,) of int64
    H : int
        Hidden units per direction.
    bidirectional : bool
    out : device array (B, P)
        Out.
    """
    B, T, P = hidden.shape
    _launch(_last_pool_kernel, B * P, hidden, lengths, H, bool(bidirectional), out)


def last_pool_backward(lengths, H: int, bidirectional: bool, d_out, d_hidden) -> None:
    """Gradient of :func:`last_pool`: ``d_hidden`` is zero except where :func:`last_pool` read
    (see ``ClassifierNetwork._pool_backward``); overwritten.

    Parameters
    ----------
    lengths : device array (B,) of int64
    H : int
    bidirectional : bool
    d_out : device array (B, P)
    d_hidden : device array (B, T, P)
        Out.
    """
    _launch(_last_pool_backward_kernel, math.prod(d_hidden.shape), lengths, H,
            bool(bidirectional), d_out, d_hidden)
