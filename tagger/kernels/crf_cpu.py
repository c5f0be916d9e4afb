"""CPU kernels for a linear-chain CRF: negative log-likelihood with gradients, marginals, Viterbi.

Layout and conventions (shared with the CUDA kernels):

* Batch-major, right-padded: emissions are ``(B, T, K)``, gold ``tags`` ``(B, T)`` int64, a
  ``lengths`` array ``(B,)`` gives the valid steps of each sequence (``0 <= lengths[b] <= T``).
  Positions ``t >= lengths[b]`` are padding: they never enter a result, and every per-position
  output is zero there (``-1`` for decoded tags).
* Scores: ``start`` ``(K,)``, ``end`` ``(K,)`` and ``trans`` ``(K, K)``, where ``trans[i, j]``
  scores the move from tag ``i`` to tag ``j``. A path ``y`` of length ``L`` scores
  ``start[y_0] + sum_t emissions[t, y_t] + sum_{t>=1} trans[y_{t-1}, y_t] + end[y_{L-1}]``.
* Constraints: boolean masks ``allowed_start`` ``(K,)``, ``allowed_end`` ``(K,)`` and
  ``allowed_trans`` ``(K, K)`` (True = allowed). A path that uses a forbidden start, end or
  transition has probability zero. All-True masks mean no constraint.
* float32 and float64 inputs both work; everything is accumulated in float64 and written in the
  dtype of the output arrays. Outputs are preallocated and overwritten (never accumulated).

Speed: the forward-backward recursions run in *scaled probability space* rather than with
log-sum-exp: the transition scores are exponentiated once per call (``exp(trans - max)``, zero where
forbidden), the emissions once per position (``exp(E_t - max_t E_t)``, all positions of a sequence
in one vectorised pass), and every step is K*K multiply-adds with the forward vector renormalised to
sum 1; the logarithms of the normalisers and the subtracted maxima add up to ``log Z``. That is
50-100 times faster than log space. When a normaliser underflows (forbidden transitions plus
emission spreads of several hundred, so that every allowed continuation is ``exp(-700)`` below the
maximum) or a backward factor would overflow, that one sequence is redone by an exact log-space
forward-backward, so results stay correct. Viterbi runs in log space (max-plus) in float64.

Parallelism: one ``prange`` task per sequence. Gradients of the shared ``start``, ``end`` and
``trans`` are written per sequence and then summed serially in sequence order, so every result is
bitwise identical at any thread count. ``crf_nll_serial``, ``viterbi_decode_serial`` and
``crf_marginals_serial`` are the same kernels without ``prange``, for callers that parallelise
above them (the engine runs them in its own threads).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._jit import kernel, serial_twin

# A scaled normaliser below _TINY (or a backward factor above _HUGE) sends the sequence to the
# log-space path. Above _TINY every term that matters is still a normal float64 (the dominant term
# of a sum of K*K non-negative terms is at least _TINY / K**2), so the scaled results keep full
# precision; _HUGE keeps every product of the backward pass finite (no 0 * inf = nan).
_TINY = 1e-280
_HUGE = 1e280

# Cody-Waite split of log(2) (the high part has trailing zero bits, so k * _LN2_HI is exact).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@kernel()
def _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans, logp):
    """float64 scores, -inf where forbidden: logp[:K] trans, logp[K] start, logp[K + 1] end."""
    K = start.shape[0]
    for i in range(K):
        for j in range(K):
            logp[i, j] = np.float64(trans[i, j]) if allowed_trans[i, j] else -np.inf
        logp[K, i] = np.float64(start[i]) if allowed_start[i] else -np.inf
        logp[K + 1, i] = np.float64(end[i]) if allowed_end[i] else -np.inf


@kernel()
def _finite_max(values):
    """Largest entry of a float64 array, or 0 if none is above -inf (nothing to subtract then)."""
    m = -np.inf
    for v in values.ravel():
        if v > m:
            m = v
    return m if m > -np.inf else 0.0


@kernel()
def _scaled_params(logp, scaled, offsets):
    """Exponentiated scores, ``exp(logp - max)`` per block, and the maxima subtracted.

    ``scaled`` (2K + 2, K): rows ``[:K]`` transitions ``Mt``, ``[K]`` start, ``[K + 1]`` end,
    ``[K + 2:]`` ``Mt`` transposed; ``offsets`` = (start, end, transition) maxima. Forbidden entries
    (-inf in ``logp``) become exactly 0.
    """
    K = logp.shape[1]
    offsets[0] = _finite_max(logp[K])
    offsets[1] = _finite_max(logp[K + 1])
    offsets[2] = _finite_max(logp[:K])
    for i in range(K + 2):
        m = offsets[2] if i < K else offsets[i - K]
        for j in range(K):
            v = logp[i, j]
            scaled[i, j] = np.exp(v - m) if v > -np.inf else 0.0
    for i in range(K):
        for j in range(K):
            scaled[K + 2 + j, i] = scaled[i, j]


@kernel()
def _prepare(start, end, trans, allowed_start, allowed_end, allowed_trans, logp, scaled, offsets):
    """Fill the log-space and scaled parameter blocks shared by every sequence of a call."""
    _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans, logp)
    _scaled_params(logp, scaled, offsets)


@kernel()
def _prepared(start, end, trans, allowed_start, allowed_end, allowed_trans):
    """New log-space and scaled parameter blocks (see :func:`_prepare`)."""
    K = start.shape[0]
    logp = np.empty((K + 2, K))
    scaled = np.empty((2 * K + 2, K))
    offsets = np.empty(3)
    _prepare(start, end, trans, allowed_start, allowed_end, allowed_trans, logp, scaled, offsets)
    return logp, scaled, offsets


@kernel()
def _scratch(B, T, K):
    """Per-sequence scratch of forward-backward: alphas, emission factors, scales, work."""
    return np.empty((B, T, K)), np.empty((B, T, K)), np.empty((B, T + 1)), np.empty((B, 3, K))


# --------------------------------------------------------------------------------------------------
# Per-sequence forward-backward, scaled (fast) and log space (exact fallback)
# --------------------------------------------------------------------------------------------------


@kernel()
def _exp_nonpositive(x, bits):
    """In place ``x = exp(x)`` for a float64 vector of entries <= 0; ``bits`` (int64) is scratch.

    A loop the compiler vectorises (``np.exp`` is a scalar library call): ``2**k * exp(r)`` with
    ``|r| <= log(2) / 2``, a degree-13 Taylor polynomial, and ``2**k`` built from its exponent bits.
    Relative error about 1e-15 on [-30, 0] and below 1e-13 down to -708; entries at or below -708
    (``exp`` < 4e-308) give 0, nan stays nan. Five times faster than ``np.exp`` here.
    """
    n = x.shape[0]
    for j in range(n):
        v = x[j]
        u = -708.0 if v <= -708.0 else v
        k = np.floor(u * _LOG2E + 0.5)
        r = u - k * _LN2_HI
        r = r - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        x[j] = 0.0 if v <= -708.0 else p
        # (k == k: a nan entry, already nan through p, must not reach the integer conversion.)
        bits[j] = (np.int64(k if k == k else 0.0) + 1023) << 52
    powers = bits.view(np.float64)
    for j in range(n):
        x[j] *= powers[j]


@kernel()
def _forward_scaled(em, L, scaled, offsets, alpha, ebuf, scale):
    """Scaled forward pass over the first ``L`` (>= 1) steps of one sequence.

    Parameters
    ----------
    em : ndarray (T, K)
        Emissions of the sequence.
    L : int
        Its length, at least 1.
    scaled, offsets : ndarray (2K + 2, K), (3,)
        As filled by :func:`_prepare`.
    alpha : ndarray (T, K) float64, C-contiguous
        Out: normalised forward vectors (each row sums to 1).
    ebuf : ndarray (T, K) float64, C-contiguous
        Out: ``exp(em[t] - max(em[t]))``, kept for the backward pass.
    scale : ndarray (T + 1,) float64
        Out: the normaliser of every step, plus the end step at index ``L``.

    Returns
    -------
    ok : bool
        False when a normaliser fell below ``_TINY`` (use the log-space path instead).
    log_z : float
        The log partition function (meaningful only when ``ok``).
    """
    T, K = em.shape
    MtT = scaled[K + 2 :]
    log_z = offsets[0] + offsets[1] + offsets[2] * (L - 1)
    # All emission exponentials of the sequence in one vectorised pass (alpha is its scratch).
    for t in range(L):
        m = -np.inf
        for j in range(K):
            v = np.float64(em[t, j])
            if v > m:
                m = v
        if not m > -np.inf:
            return False, 0.0
        for j in range(K):
            ebuf[t, j] = np.float64(em[t, j]) - m
        log_z += m
    _exp_nonpositive(ebuf.reshape(T * K)[: L * K], alpha.reshape(T * K)[: L * K].view(np.int64))
    for t in range(L):
        # alpha_t(j) = e_t(j) sum_i alpha_{t-1}(i) Mt_ij, as dot products with the rows of Mt
        # transposed: independent sums (an update of alpha_t row by row is one long dependency
        # chain through memory, about twice slower).
        c = 0.0
        for j in range(K):
            if t == 0:
                s = scaled[K, j]
            else:
                s = 0.0
                for i in range(K):
                    s += alpha[t - 1, i] * MtT[j, i]
            s *= ebuf[t, j]
            alpha[t, j] = s
            c += s
        if not c >= _TINY:
            return False, 0.0
        inv = 1.0 / c
        for j in range(K):
            alpha[t, j] *= inv
        scale[t] = c
        log_z += np.log(c)
    c = 0.0
    for j in range(K):
        c += alpha[L - 1, j] * scaled[K + 1, j]
    if not c >= _TINY:
        return False, 0.0
    scale[L] = c
    return True, log_z + np.log(c)


@kernel()
def _backward_scaled(L, scaled, alpha, ebuf, scale, work, pair, want_pair):
    """Scaled backward pass; turns ``alpha[:L]`` into the marginals ``P(y_t = j)``.

    Parameters
    ----------
    L : int
        Length of the sequence, at least 1.
    scaled : ndarray (2K + 2, K)
        As filled by :func:`_prepare`.
    alpha, ebuf, scale
        As filled by :func:`_forward_scaled`; ``alpha[:L]`` is overwritten with the marginals.
    work : ndarray (3, K) float64
        Scratch.
    pair : ndarray (K, K) float64
        Out (if ``want_pair``): expected transition counts ``sum_t P(y_{t-1} = i, y_t = j)``.
    want_pair : bool
        Whether to compute ``pair``.

    Returns
    -------
    bool
        False when a backward factor exceeded ``_HUGE`` (use the log-space path instead).
    """
    K = alpha.shape[1]
    Mt = scaled[:K]
    beta = work[0]
    w = work[1]
    inv = 1.0 / scale[L]
    for j in range(K):
        beta[j] = scaled[K + 1, j] * inv
    if want_pair:
        pair[:, :] = 0.0
    for t in range(L - 1, 0, -1):
        # w_j = e_t(j) beta_t(j) / c_t: the pairwise marginal is alpha_{t-1}(i) Mt_ij w_j and the
        # previous backward vector is beta_{t-1}(i) = sum_j Mt_ij w_j.
        inv = 1.0 / scale[t]
        for j in range(K):
            wj = ebuf[t, j] * beta[j] * inv
            if not wj <= _HUGE:
                return False
            w[j] = wj
        for j in range(K):
            alpha[t, j] *= beta[j]
        if want_pair:
            # Mt_ij is factored out of the sum over t and applied once at the end.
            for i in range(K):
                ai = alpha[t - 1, i]
                if ai != 0.0:
                    for j in range(K):
                        pair[i, j] += ai * w[j]
        for i in range(K):
            s = 0.0
            for j in range(K):
                s += Mt[i, j] * w[j]
            beta[i] = s
    for j in range(K):
        alpha[0, j] *= beta[j]
    if want_pair:
        for i in range(K):
            for j in range(K):
                pair[i, j] *= Mt[i, j]
    return True


@kernel()
def _logsumexp(v):
    """log(sum(exp(v))) of a float64 vector, -inf when every entry is -inf."""
    m = -np.inf
    for x in v:
        if x > m:
            m = x
    if not m > -np.inf:
        return -np.inf
    s = 0.0
    for x in v:
        s += np.exp(x - m)
    return m + np.log(s)


@kernel()
def _forward_log(em, L, logp, alpha, work):
    """Log-space forward pass (exact fallback); ``alpha[:L]`` gets the log forward vectors.

    Returns
    -------
    float
        The log partition function (-inf when no allowed path exists).
    """
    K = em.shape[1]
    v = work[2]
    for j in range(K):
        alpha[0, j] = logp[K, j] + np.float64(em[0, j])
    for t in range(1, L):
        for j in range(K):
            for i in range(K):
                v[i] = alpha[t - 1, i] + logp[i, j]
            alpha[t, j] = _logsumexp(v) + np.float64(em[t, j])
    for j in range(K):
        v[j] = alpha[L - 1, j] + logp[K + 1, j]
    return _logsumexp(v)


@kernel()
def _backward_log(em, L, logp, log_z, alpha, work, pair, want_pair):
    """Log-space backward pass; turns the log forward vectors ``alpha[:L]`` into marginals.

    Marginals (and ``pair``) are zero when ``log_z`` is -inf (no allowed path).
    """
    K = em.shape[1]
    if want_pair:
        pair[:, :] = 0.0
    if not log_z > -np.inf:
        alpha[:L] = 0.0
        return
    cur = work[0]
    nxt = work[1]
    v = work[2]
    for j in range(K):
        cur[j] = logp[K + 1, j]
    for t in range(L - 1, 0, -1):
        if want_pair:
            for i in range(K):
                ai = alpha[t - 1, i]
                if ai > -np.inf:
                    for j in range(K):
                        x = ai + logp[i, j] + np.float64(em[t, j]) + cur[j] - log_z
                        if x > -np.inf:
                            pair[i, j] += np.exp(x)
        for i in range(K):
            for j in range(K):
                v[j] = logp[i, j] + np.float64(em[t, j]) + cur[j]
            nxt[i] = _logsumexp(v)
        for j in range(K):
            alpha[t, j] = np.exp(alpha[t, j] + cur[j] - log_z)
        cur, nxt = nxt, cur
    for j in range(K):
        alpha[0, j] = np.exp(alpha[0, j] + cur[j] - log_z)


@kernel()
def _posteriors(em, L, logp, scaled, offsets, alpha, ebuf, scale, work, pair, want_pair):
    """Forward-backward for one sequence of length ``L >= 1``, scaled with a log-space fallback.

    Leaves the marginals ``P(y_t = j)`` in ``alpha[:L]`` and, if ``want_pair``, the expected
    transition counts in ``pair``; returns ``log Z``.
    """
    ok, log_z = _forward_scaled(em, L, scaled, offsets, alpha, ebuf, scale)
    if ok:
        ok = _backward_scaled(L, scaled, alpha, ebuf, scale, work, pair, want_pair)
    if not ok:
        log_z = _forward_log(em, L, logp, alpha, work)
        _backward_log(em, L, logp, log_z, alpha, work, pair, want_pair)
    return log_z


@kernel()
def _nll_sequence(
    em, y, L, start, end, trans, allowed_start, allowed_end, allowed_trans, logp, scaled, offsets,
    alpha, ebuf, scale, work, pair, g_start, g_end, d_em,
):
    """Negative log-likelihood of one sequence and its gradient contributions.

    Writes ``d_em`` (T, K) (zero at padding), and float64 ``pair`` (K, K), ``g_start`` (K,) and
    ``g_end`` (K,): the sequence's gradients with respect to ``trans``, ``start`` and ``end``
    (all zero when the sequence is empty or its gold path has probability zero).
    """
    K = em.shape[1]
    d_em[:, :] = 0.0
    pair[:, :] = 0.0
    g_start[:] = 0.0
    g_end[:] = 0.0
    if L == 0:
        return 0.0
    allowed = allowed_start[y[0]] and allowed_end[y[L - 1]]
    score = np.float64(start[y[0]]) + np.float64(em[0, y[0]])
    for t in range(1, L):
        allowed = allowed and allowed_trans[y[t - 1], y[t]]
        score += np.float64(trans[y[t - 1], y[t]]) + np.float64(em[t, y[t]])
    score += np.float64(end[y[L - 1]])
    if not allowed or not score > -np.inf:
        return np.inf
    log_z = _posteriors(em, L, logp, scaled, offsets, alpha, ebuf, scale, work, pair, True)
    for t in range(L):
        for j in range(K):
            d_em[t, j] = alpha[t, j]
        d_em[t, y[t]] = alpha[t, y[t]] - 1.0
    for j in range(K):
        g_start[j] = alpha[0, j]
        g_end[j] = alpha[L - 1, j]
    g_start[y[0]] -= 1.0
    g_end[y[L - 1]] -= 1.0
    for t in range(1, L):
        pair[y[t - 1], y[t]] -= 1.0
    return log_z - score


# --------------------------------------------------------------------------------------------------
# Public kernels
# --------------------------------------------------------------------------------------------------


@kernel(parallel=True)
def crf_nll(
    emissions, tags, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans,
    nll, d_emissions, d_start, d_end, d_trans,
):
    """Per-sequence negative log-likelihood of the gold tags, and gradients of its sum.

    Parameters
    ----------
    emissions : ndarray (B, T, K) float32 or float64
        Emission scores, right-padded.
    tags : ndarray (B, T) int64
        Gold tags in ``[0, K)`` (padding ignored).
    lengths : ndarray (B,) int64
        Valid steps per sequence (0 <= lengths[b] <= T).
    start, end : ndarray (K,)
        Start and end scores.
    trans : ndarray (K, K)
        Transition scores, ``trans[i, j]`` for tag ``i`` followed by tag ``j``.
    allowed_start, allowed_end : ndarray (K,) bool
        Which tags may start and end a sequence.
    allowed_trans : ndarray (K, K) bool
        Which transitions are allowed.
    nll : ndarray (B,)
        Out: ``log Z - score(gold)`` per sequence; 0 for an empty sequence. A gold path of
        probability zero (it uses a forbidden start, transition or end, or scores -inf) gives
        ``+inf``, and that sequence contributes zero to every gradient.
    d_emissions : ndarray (B, T, K)
        Out: gradient of ``sum(nll)`` (finite entries only) with respect to ``emissions``,
        ``P(y_t = k) - [gold_t = k]``; zero at padding.
    d_start, d_end : ndarray (K,)
        Out: gradients with respect to ``start`` and ``end``.
    d_trans : ndarray (K, K)
        Out: gradient with respect to ``trans`` (expected minus gold transition counts).
    """
    B, T, K = emissions.shape
    logp, scaled, offsets = _prepared(start, end, trans, allowed_start, allowed_end,
                                      allowed_trans)
    alpha, ebuf, scale, work = _scratch(B, T, K)
    pair = np.empty((B, K, K))
    g_start = np.empty((B, K))
    g_end = np.empty((B, K))
    for b in prange(B):
        nll[b] = _nll_sequence(
            emissions[b], tags[b], lengths[b], start, end, trans, allowed_start, allowed_end,
            allowed_trans, logp, scaled, offsets, alpha[b], ebuf[b], scale[b], work[b], pair[b],
            g_start[b], g_end[b], d_emissions[b],
        )
    # Serial reduction in sequence order: bitwise reproducible at any thread count.
    acc_trans = np.zeros((K, K))
    acc_start = np.zeros(K)
    acc_end = np.zeros(K)
    for b in range(B):
        for i in range(K):
            acc_start[i] += g_start[b, i]
            acc_end[i] += g_end[b, i]
            for j in range(K):
                acc_trans[i, j] += pair[b, i, j]
    for i in range(K):
        d_start[i] = acc_start[i]
        d_end[i] = acc_end[i]
        for j in range(K):
            d_trans[i, j] = acc_trans[i, j]


@kernel(parallel=True)
def crf_marginals(
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans,
    marginals, log_z,
):
    """Per-position tag marginals ``P(y_t = k)`` and the log partition function.

    Parameters
    ----------
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans
        As for :func:`crf_nll`.
    marginals : ndarray (B, T, K)
        Out: ``P(y_t = k)``; zero at padding, and everywhere for a sequence with no allowed path.
    log_z : ndarray (B,)
        Out: ``log Z`` per sequence; 0 for an empty sequence, -inf when no path is allowed.
    """
    B, T, K = emissions.shape
    logp, scaled, offsets = _prepared(start, end, trans, allowed_start, allowed_end,
                                      allowed_trans)
    alpha, ebuf, scale, work = _scratch(B, T, K)
    unused_pair = np.empty((K, K))
    for b in prange(B):
        L = lengths[b]
        marginals[b, :, :] = 0.0
        if L == 0:
            log_z[b] = 0.0
            continue
        a = alpha[b]
        log_z[b] = _posteriors(
            emissions[b], L, logp, scaled, offsets, a, ebuf[b], scale[b], work[b], unused_pair,
            False,
        )
        for t in range(L):
            for j in range(K):
                marginals[b, t, j] = a[t, j]


@kernel(parallel=True)
def crf_log_partition(
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans, log_z,
):
    """The log partition function alone (forward pass only).

    Parameters
    ----------
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans
        As for :func:`crf_nll`.
    log_z : ndarray (B,)
        Out: ``log Z`` per sequence; 0 for an empty sequence, -inf when no path is allowed.
    """
    B, T, K = emissions.shape
    logp, scaled, offsets = _prepared(start, end, trans, allowed_start, allowed_end,
                                      allowed_trans)
    alpha, ebuf, scale, work = _scratch(B, T, K)
    for b in prange(B):
        L = lengths[b]
        if L == 0:
            log_z[b] = 0.0
            continue
        ok, lz = _forward_scaled(emissions[b], L, scaled, offsets, alpha[b], ebuf[b], scale[b])
        if not ok:
            lz = _forward_log(emissions[b], L, logp, alpha[b], work[b])
        log_z[b] = lz


@kernel()
def _viterbi_sequence(em, L, logp, delta, backptr, path):
    """Best path of one sequence (max-plus in float64); returns its score.

    ``path`` gets -1 everywhere when the sequence is empty or has no allowed path (score -inf).
    Ties go to the lowest tag index: strict comparisons, candidates visited in increasing order.
    """
    K = em.shape[1]
    path[:] = -1
    if L == 0:
        return 0.0
    cur = delta[0]
    nxt = delta[1]
    for j in range(K):
        cur[j] = logp[K, j] + np.float64(em[0, j])
    for t in range(1, L):
        # "Push" form: each predecessor i updates the running maxima of all j at once, a loop over
        # contiguous j that vectorises (the "pull" form, an argmax over i per j, does not).
        # Predecessors go in pairs, which halves the dependency chain through nxt.
        bp = backptr[t]
        for j in range(K):
            nxt[j] = cur[0] + logp[0, j]
            bp[j] = 0
        i = 1
        while i + 1 < K:
            c0 = cur[i]
            c1 = cur[i + 1]
            for j in range(K):
                v = c0 + logp[i, j]
                v1 = c1 + logp[i + 1, j]
                arg = i
                if v1 > v:
                    v = v1
                    arg = i + 1
                if v > nxt[j]:
                    nxt[j] = v
                    bp[j] = arg
            i += 2
        if i < K:
            c0 = cur[i]
            for j in range(K):
                v = c0 + logp[i, j]
                if v > nxt[j]:
                    nxt[j] = v
                    bp[j] = i
        for j in range(K):
            nxt[j] += np.float64(em[t, j])
        cur, nxt = nxt, cur
    best = -np.inf
    arg = 0
    for j in range(K):
        v = cur[j] + logp[K + 1, j]
        if v > best:
            best = v
            arg = j
    if not best > -np.inf:
        return -np.inf
    path[L - 1] = arg
    for t in range(L - 1, 0, -1):
        arg = backptr[t, arg]
        path[t - 1] = arg
    return best


@kernel(parallel=True)
def viterbi_decode(
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans, tags, scores,
):
    """Highest-scoring allowed tag path of every sequence.

    Parameters
    ----------
    emissions, lengths, start, end, trans, allowed_start, allowed_end, allowed_trans
        As for :func:`crf_nll`.
    tags : ndarray (B, T) int64
        Out: the best path, -1 at padding. Ties go to the lowest tag index (first argmax, both for
        the last tag and for every back-pointer). All -1 for an empty sequence, and for a sequence
        with no allowed path.
    scores : ndarray (B,)
        Out: the score of the best path; 0 for an empty sequence, -inf when no path is allowed.
    """
    B, T, K = emissions.shape
    logp = np.empty((K + 2, K))
    _log_params(start, end, trans, allowed_start, allowed_end, allowed_trans, logp)
    delta = np.empty((B, 2, K))
    backptr = np.empty((B, T, K), dtype=np.int64)
    for b in prange(B):
        scores[b] = _viterbi_sequence(emissions[b], lengths[b], logp, delta[b], backptr[b], tags[b])


# The kernels again without prange, for callers that parallelise above them (the engine's CPU
# path: see tagger.nn.heads.CRFHead._kernel).
crf_nll_serial = serial_twin(crf_nll)
viterbi_decode_serial = serial_twin(viterbi_decode)
crf_marginals_serial = serial_twin(crf_marginals)
