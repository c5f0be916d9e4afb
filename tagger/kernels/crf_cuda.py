"""CUDA kernels (numba-cuda) for the linear-chain CRF, with the argument order and the conventions
of :mod:`tagger.kernels.crf_cpu`: negative log-likelihood with gradients, marginals, log partition
and Viterbi.

One block per sequence, its threads sharing out the tags; every step is a barrier. The recursions
run in log space in float64 (one log-sum-exp of K terms per thread and step), which needs no
rescaling fallback. Per-sequence gradients of ``start``, ``end`` and ``trans`` are written to
buffers and summed afterwards in sequence order, so results do not depend on scheduling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config
from . import memory_cuda

_NEG_INF = -math.inf


def _host(a):
    """A host copy of a device array; host arrays as they are (small: scores and masks)."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


def _on_device(a):
    """A device array as it is; a host array uploaded."""
    return a if hasattr(a, "copy_to_host") else memory_cuda.to_device(np.ascontiguousarray(a))


@cuda.jit
def _log_params_kernel(start, end, trans, allowed_start, allowed_end, allowed_trans, logp):
    k0 = cuda.grid(1)
    K = start.shape[0]
    for k in range(k0, (K + 2) * K, cuda.gridsize(1)):
        i = k // K
        j = k - i * K
        if i < K:
            logp[i, j] = trans[i, j] if allowed_trans[i, j] else _NEG_INF
        elif i == K:
            logp[i, j] = start[j] if allowed_start[j] else _NEG_INF
        else:
            logp[i, j] = end[j] if allowed_end[j] else _NEG_INF


def _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans):
    """float64 scores, -inf where forbidden: rows [0, K) trans, row K start, row K + 1 end.

    Built on the device, and returned as a device array, when ``start``, ``end`` and ``trans``
    are device arrays (the device-resident engine: no copy to the host and back per call; host
    masks are uploaded); else built on the host from host copies, as a NumPy array."""
    if all(hasattr(a, "copy_to_host") for a in (start, end, trans)):
        K = start.shape[0]
        masks = [m if hasattr(m, "copy_to_host") else memory_cuda.to_device(np.asarray(m, bool))
                 for m in (allowed_start, allowed_end, allowed_trans)]
        logp = memory_cuda.empty((K + 2, K), np.float64)
        if K:
            _log_params_kernel[_grid_1d((K + 2) * K)](start, end, trans, *masks, logp)
        return logp
    start, end, trans = (np.asarray(_host(a), dtype=np.float64) for a in (start, end, trans))
    masks = [np.asarray(_host(m), dtype=bool) for m in (allowed_start, allowed_end, allowed_trans)]
    K = start.shape[0]
    logp = np.empty((K + 2, K))
    logp[:K] = np.where(masks[2], trans, -np.inf)
    logp[K] = np.where(masks[0], start, -np.inf)
    logp[K + 1] = np.where(masks[1], end, -np.inf)
    return logp


@cuda.jit(device=True, inline=True)
def _lse_column(alpha, t, logp, em, b, j, K):
    """log sum_i exp(alpha[b, t-1, i] + logp[i, j]) + em[b, t, j]."""
    m = _NEG_INF
    for i in range(K):
        v = alpha[b, t - 1, i] + logp[i, j]
        if v > m:
            m = v
    if m == _NEG_INF:
        return _NEG_INF
    acc = 0.0
    for i in range(K):
        acc += math.exp(alpha[b, t - 1, i] + logp[i, j] - m)
    return m + math.log(acc) + em[b, t, j]


@cuda.jit
def _forward_backward_kernel(em, tags, lengths, logp, alpha, beta, log_z, gold, want_grads,
                             marg, pair, g_start, g_end):
    """alpha, beta, log Z; marginals into ``marg`` (B, T, K); with ``want_grads`` the gradient
    of the NLL in ``marg`` and the per-sequence parts of the shared gradients."""
    b = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    T, K = em.shape[1], em.shape[2]
    L = lengths[b]
    for t in range(T):
        for j in range(tid, K, nt):
            marg[b, t, j] = 0
    for k in range(tid, K * K, nt):
        pair[b, k // K, k % K] = 0.0
    for j in range(tid, K, nt):
        g_start[b, j] = 0.0
        g_end[b, j] = 0.0
    if L == 0:
        if tid == 0:
            log_z[b] = 0.0
            gold[b] = 0.0
        return
    for j in range(tid, K, nt):
        alpha[b, 0, j] = logp[K, j] + em[b, 0, j]
        beta[b, L - 1, j] = logp[K + 1, j]
    cuda.syncthreads()
    for t in range(1, L):
        for j in range(tid, K, nt):
            alpha[b, t, j] = _lse_column(alpha, t, logp, em, b, j, K)
        cuda.syncthreads()
    for t in range(L - 2, -1, -1):
        for i in range(tid, K, nt):
            m = _NEG_INF
            for j in range(K):
                v = logp[i, j] + em[b, t + 1, j] + beta[b, t + 1, j]
                if v > m:
                    m = v
            if m == _NEG_INF:
                beta[b, t, i] = _NEG_INF
            else:
                acc = 0.0
                for j in range(K):
                    acc += math.exp(logp[i, j] + em[b, t + 1, j] + beta[b, t + 1, j] - m)
                beta[b, t, i] = m + math.log(acc)
        cuda.syncthreads()
    if tid == 0:
        m = _NEG_INF
        for j in range(K):
            v = alpha[b, L - 1, j] + logp[K + 1, j]
            if v > m:
                m = v
        z = _NEG_INF
        if m > _NEG_INF:
            acc = 0.0
            for j in range(K):
                acc += math.exp(alpha[b, L - 1, j] + logp[K + 1, j] - m)
            z = m + math.log(acc)
        log_z[b] = z
        if want_grads:
            y0 = tags[b, 0]
            s = logp[K, y0] + em[b, 0, y0]
            for t in range(1, L):
                s += logp[tags[b, t - 1], tags[b, t]] + em[b, t, tags[b, t]]
            gold[b] = s + logp[K + 1, tags[b, L - 1]]
    cuda.syncthreads()
    z = log_z[b]
    if z == _NEG_INF or (want_grads and not gold[b] > _NEG_INF):
        return  # no allowed path, or a gold path of probability zero: no gradient
    for t in range(L):
        for j in range(tid, K, nt):
            p = math.exp(alpha[b, t, j] + beta[b, t, j] - z)
            if want_grads and tags[b, t] == j:
                p -= 1.0
            marg[b, t, j] = p
    if not want_grads:
        return
    for j in range(tid, K, nt):
        g_start[b, j] = math.exp(alpha[b, 0, j] + beta[b, 0, j] - z) - (tags[b, 0] == j)
        g_end[b, j] = (math.exp(alpha[b, L - 1, j] + beta[b, L - 1, j] - z)
                       - (tags[b, L - 1] == j))
    for k in range(tid, K * K, nt):
        i, j = k // K, k % K
        acc = 0.0
        for t in range(1, L):
            acc += math.exp(alpha[b, t - 1, i] + logp[i, j] + em[b, t, j] + beta[b, t, j] - z)
            if tags[b, t - 1] == i and tags[b, t] == j:
                acc -= 1.0
        pair[b, i, j] = acc


@cuda.jit
def _reduce_kernel(pair, g_start, g_end, d_trans, d_start, d_end):
    """Sums over sequences, in sequence order (one thread per output entry)."""
    k0 = cuda.grid(1)
    B, K = g_start.shape
    for k in range(k0, K * K + 2 * K, cuda.gridsize(1)):
        acc = 0.0
        if k < K * K:
            for b in range(B):
                acc += pair[b, k // K, k % K]
            d_trans[k // K, k % K] = acc
        elif k < K * K + K:
            for b in range(B):
                acc += g_start[b, k - K * K]
            d_start[k - K * K] = acc
        else:
            for b in range(B):
                acc += g_end[b, k - K * K - K]
            d_end[k - K * K - K] = acc


@cuda.jit
def _nll_kernel(log_z, gold, lengths, nll):
    b0 = cuda.grid(1)
    for b in range(b0, nll.shape[0], cuda.gridsize(1)):
        if lengths[b] == 0:
            nll[b] = 0
        elif not gold[b] > _NEG_INF:
            nll[b] = math.inf
        else:
            nll[b] = log_z[b] - gold[b]


def _grid_1d(n: int) -> tuple[int, int]:
    tpb = _config.CUDA_THREADS_PER_BLOCK
    return min(max(1, math.ceil(n / tpb)), _config.CUDA_MAX_BLOCKS), tpb


def _run(emissions, tags, lengths, logp, want_grads, marg):
    B, T, K = emissions.shape
    alpha = memory_cuda.empty((B, T, K), np.float64)
    beta = memory_cuda.empty((B, T, K), np.float64)
    log_z = memory_cuda.empty(B, np.float64)
    gold = memory_cuda.empty(B, np.float64)
    pair = memory_cuda.empty((B, K, K), np.float64)
    g_start = memory_cuda.empty((B, K), np.float64)
    g_end = memory_cuda.empty((B, K), np.float64)
    if B:
        _forward_backward_kernel[B, _config.CUDA_THREADS_PER_BLOCK](
            emissions, tags, lengths, _on_device(logp), alpha, beta, log_z, gold, want_grads,
            marg, pair, g_start, g_end)
    return log_z, gold, pair, g_start, g_end


def crf_nll(emissions, tags, lengths, start, end, trans, allowed_start, allowed_end,
            allowed_trans, nll, d_emissions, d_start, d_end, d_trans) -> None:
    """Per-sequence NLL and gradients of its sum (see :func:`tagger.kernels.crf_cpu.crf_nll`)."""
    logp = _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans)
    log_z, gold, pair, g_start, g_end = _run(emissions, tags, lengths, logp, True, d_emissions)
    K = logp.shape[1]
    _reduce_kernel[_grid_1d(K * K + 2 * K)](pair, g_start, g_end, d_trans, d_start, d_end)
    _nll_kernel[_grid_1d(len(lengths))](log_z, gold, lengths, nll)


def crf_marginals(emissions, lengths, start, end, trans, allowed_start, allowed_end,
                  allowed_trans, marginals, log_z) -> None:
    """Tag marginals and log Z (see :func:`tagger.kernels.crf_cpu.crf_marginals`)."""
    logp = _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans)
    B, T, _ = emissions.shape
    dummy_tags = memory_cuda.empty((B, T), np.int64)
    z, *_ = _run(emissions, dummy_tags, lengths, logp, False, marginals)
    _copy_kernel[_grid_1d(B)](z, log_z)


def crf_log_partition(emissions, lengths, start, end, trans, allowed_start, allowed_end,
                      allowed_trans, log_z) -> None:
    """log Z per sequence (see :func:`tagger.kernels.crf_cpu.crf_log_partition`)."""
    B, T, K = emissions.shape
    marginals = memory_cuda.empty((B, T, K), np.float64)
    crf_marginals(emissions, lengths, start, end, trans, allowed_start, allowed_end,
                  allowed_trans, marginals, log_z)


@cuda.jit
def _copy_kernel(src, dst):
    i0 = cuda.grid(1)
    for i in range(i0, dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit
def _viterbi_kernel(em, lengths, logp, delta, backptr, tags, scores):
    b = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    T, K = em.shape[1], em.shape[2]
    L = lengths[b]
    for t in range(tid, T, nt):
        tags[b, t] = -1
    if L == 0:
        if tid == 0:
            scores[b] = 0
        return
    for j in range(tid, K, nt):
        delta[b, 0, j] = logp[K, j] + em[b, 0, j]
    cuda.syncthreads()
    for t in range(1, L):
        for j in range(tid, K, nt):
            best = delta[b, t - 1, 0] + logp[0, j]
            arg = 0
            for i in range(1, K):
                v = delta[b, t - 1, i] + logp[i, j]
                if v > best:  # strict: ties go to the lowest tag
                    best, arg = v, i
            delta[b, t, j] = best + em[b, t, j]
            backptr[b, t, j] = arg
        cuda.syncthreads()
    if tid == 0:
        best = delta[b, L - 1, 0] + logp[K + 1, 0]
        arg = 0
        for j in range(1, K):
            v = delta[b, L - 1, j] + logp[K + 1, j]
            if v > best:
                best, arg = v, j
        scores[b] = best
        if best > _NEG_INF:
            tags[b, L - 1] = arg
            for t in range(L - 1, 0, -1):
                arg = backptr[b, t, arg]
                tags[b, t - 1] = arg


def viterbi_decode(emissions, lengths, start, end, trans, allowed_start, allowed_end,
                   allowed_trans, tags, scores) -> None:
    """Best allowed path per sequence (see :func:`tagger.kernels.crf_cpu.viterbi_decode`)."""
    logp = _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans)
    B, T, K = emissions.shape
    if B:
        delta = memory_cuda.empty((B, T, K), np.float64)
        backptr = memory_cuda.empty((B, T, K), np.int64)
        _viterbi_kernel[B, _config.CUDA_THREADS_PER_BLOCK](emissions, lengths, _on_device(logp),
                                                           delta, backptr, tags, scores)
