"""The CUDA CRF kernels against the CPU kernels (themselves checked against tests/naive.py and
brute force) and directly against the NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda
from numpy.testing import assert_allclose, assert_array_equal

import naive
from tagger.kernels import crf_cpu, crf_cuda


def problem(seed, B=5, T=6, K=5, dtype=np.float64, masked=False):
    rng = np.random.default_rng(seed)
    em = np.ascontiguousarray(rng.normal(size=(B, T, K)) * 2.0, dtype=dtype)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    lengths[0], lengths[1] = 0, T
    start, end, trans = (np.ascontiguousarray(rng.normal(size=s), dtype=dtype)
                         for s in [(K,), (K,), (K, K)])
    if masked:
        masks = [rng.random(K) > 0.3, rng.random(K) > 0.3, rng.random((K, K)) > 0.3]
        masks[0][0] = masks[1][0] = masks[2][0, 0] = True
    else:
        masks = [np.ones(K, bool), np.ones(K, bool), np.ones((K, K), bool)]
    tags = rng.integers(0, K, size=(B, T))
    for b in range(B):
        L = lengths[b]
        path, _ = naive.viterbi(rng.normal(size=(L, K)) * 3, start, end, trans, *masks)
        tags[b, :L] = path
    return em, tags.astype(np.int64), lengths, (start, end, trans), masks


def cuda_nll(em, tags, lengths, params, masks):
    B, T, K = em.shape
    dt = em.dtype
    out = [cuda.device_array(B, dt), cuda.device_array((B, T, K), dt), cuda.device_array(K, dt),
           cuda.device_array(K, dt), cuda.device_array((K, K), dt)]
    crf_cuda.crf_nll(cuda.to_device(em), cuda.to_device(tags), cuda.to_device(lengths),
                     *params, *masks, *out)
    return [o.copy_to_host() for o in out]


def cpu_nll(em, tags, lengths, params, masks):
    B, T, K = em.shape
    dt = em.dtype
    out = [np.empty(B, dt), np.empty((B, T, K), dt), np.empty(K, dt), np.empty(K, dt),
           np.empty((K, K), dt)]
    crf_cpu.crf_nll(em, tags, lengths, *params, *masks, *out)
    return out


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_and_gradients_match_the_cpu_kernel(dtype, masked):
    args = problem(0, dtype=dtype, masked=masked)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    for got, want in zip(cuda_nll(*args), cpu_nll(*args), strict=True):
        assert got.dtype == dtype
        assert_allclose(got, want, rtol=tol, atol=tol)


def test_nll_matches_the_reference_and_forbidden_gold_gives_inf():
    em, tags, lengths, params, masks = problem(1, masked=True)
    nll, d_em, *_ = cuda_nll(em, tags, lengths, params, masks)
    for b in range(len(lengths)):
        L = lengths[b]
        if L:
            want = naive.crf_nll(em[b, :L], tags[b, :L], *params, *masks)
            assert_allclose(nll[b], want, rtol=1e-10)
    bad = tags.copy()
    masks[0][:] = True
    masks[0][3] = False
    bad[1, 0] = 3  # a forbidden start
    nll, d_em, *_ = cuda_nll(em, bad, lengths, params, masks)
    assert nll[1] == np.inf and not d_em[1].any()
    assert nll[0] == 0 and not d_em[0].any()  # the empty sequence


@pytest.mark.parametrize("masked", [False, True])
def test_marginals_log_partition_and_viterbi(masked):
    em, _, lengths, params, masks = problem(2, B=6, T=7, K=4, masked=masked)
    B, T, K = em.shape
    marg, log_z = cuda.device_array((B, T, K)), cuda.device_array(B)
    crf_cuda.crf_marginals(cuda.to_device(em), cuda.to_device(lengths), *params, *masks, marg,
                           log_z)
    want_m, want_z = np.empty((B, T, K)), np.empty(B)
    crf_cpu.crf_marginals(em, lengths, *params, *masks, want_m, want_z)
    assert_allclose(marg.copy_to_host(), want_m, atol=1e-10)
    assert_allclose(log_z.copy_to_host(), want_z, rtol=1e-10)
    only_z = cuda.device_array(B)
    crf_cuda.crf_log_partition(cuda.to_device(em), cuda.to_device(lengths), *params, *masks,
                               only_z)
    assert_allclose(only_z.copy_to_host(), want_z, rtol=1e-10)
    tags, scores = cuda.device_array((B, T), np.int64), cuda.device_array(B)
    crf_cuda.viterbi_decode(cuda.to_device(em), cuda.to_device(lengths), *params, *masks, tags,
                            scores)
    want_t, want_s = np.empty((B, T), np.int64), np.empty(B)
    crf_cpu.viterbi_decode(em, lengths, *params, *masks, want_t, want_s)
    assert_array_equal(tags.copy_to_host(), want_t)
    assert_allclose(scores.copy_to_host(), want_s, rtol=1e-12)


def test_viterbi_ties_go_to_the_lowest_tag_and_no_path_gives_minus_one():
    em = np.zeros((1, 3, 3))
    params = (np.zeros(3), np.zeros(3), np.zeros((3, 3)))
    masks = [np.ones(3, bool), np.ones(3, bool), np.ones((3, 3), bool)]
    tags, scores = cuda.device_array((1, 3), np.int64), cuda.device_array(1)
    crf_cuda.viterbi_decode(cuda.to_device(em), cuda.to_device(np.array([3])), *params, *masks,
                            tags, scores)
    assert tags.copy_to_host().tolist() == [[0, 0, 0]]
    masks[1][:] = False  # no tag may end a sequence
    crf_cuda.viterbi_decode(cuda.to_device(em), cuda.to_device(np.array([2])), *params, *masks,
                            tags, scores)
    assert tags.copy_to_host().tolist() == [[-1, -1, -1]] and scores.copy_to_host()[0] == -np.inf
