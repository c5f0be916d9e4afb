"""Tests of the linear-chain CRF CPU kernels (tagger/kernels/crf_cpu.py) against NumPy references.

The references are in ``naive.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import naive as naive_crf
from gradcheck import numerical_gradient
from tagger.kernels import crf_cpu

TOL = {np.float32: 1e-5, np.float64: 1e-10}

# IOB2 with two entity types.
O, BX, IX, BY, IY = range(5)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def no_masks(K):
    return np.ones(K, dtype=bool), np.ones(K, dtype=bool), np.ones((K, K), dtype=bool)


def random_masks(rng, K):
    """About a third of everything forbidden; staying on tag 0 is always allowed (a path exists)."""
    allowed_start = rng.random(K) > 0.3
    allowed_end = rng.random(K) > 0.3
    allowed_trans = rng.random((K, K)) > 0.3
    allowed_start[0] = allowed_end[0] = allowed_trans[0, 0] = True
    return allowed_start, allowed_end, allowed_trans


def iob2_masks():
    """O, B-X, I-X, B-Y, I-Y: an I- tag only after B- or I- of its own type, never first."""
    allowed_start = np.array([True, True, False, True, False])
    allowed_end = np.ones(5, dtype=bool)
    allowed_trans = np.ones((5, 5), dtype=bool)
    allowed_trans[[O, BY, IY], IX] = False
    allowed_trans[[O, BX, IX], IY] = False
    return allowed_start, allowed_end, allowed_trans


def random_params(rng, K, dtype):
    return tuple(
        np.ascontiguousarray(rng.normal(size=shape), dtype=dtype) for shape in [(K,), (K,), (K, K)]
    )


def allowed_gold(rng, em, lengths, params, masks):
    """Gold tags that form allowed paths (Viterbi paths of random scores), random in padding."""
    B, T, K = em.shape
    tags = rng.integers(0, K, size=(B, T))
    for b in range(B):
        L = lengths[b]
        path, _ = naive_crf.viterbi(rng.normal(size=(L, K)) * 3, *params, *masks)
        tags[b, :L] = path
    return tags


def random_problem(rng, B, T, K, dtype, masked=False, lengths=None):
    """Emissions, allowed gold tags, lengths (default: random, one 0, one T), params, masks."""
    em = np.ascontiguousarray(rng.normal(size=(B, T, K)) * 2.0, dtype=dtype)
    if lengths is None:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0], lengths[1 % B] = 0, T
    lengths = np.asarray(lengths, dtype=np.int64)
    params = random_params(rng, K, dtype)
    masks = random_masks(rng, K) if masked else no_masks(K)
    tags = allowed_gold(rng, em, lengths, params, masks)
    return em, tags, lengths, params, masks


def run_nll(em, tags, lengths, params, masks):
    B, T, K = em.shape
    out = dict(
        nll=np.empty(B, em.dtype),
        d_emissions=np.empty((B, T, K), em.dtype),
        d_start=np.empty(K, em.dtype),
        d_end=np.empty(K, em.dtype),
        d_trans=np.empty((K, K), em.dtype),
    )
    crf_cpu.crf_nll(em, tags, lengths, *params, *masks, *out.values())
    return out


def run_marginals(em, lengths, params, masks):
    B, T, K = em.shape
    out = dict(marginals=np.empty((B, T, K), em.dtype), log_z=np.empty(B, em.dtype))
    crf_cpu.crf_marginals(em, lengths, *params, *masks, *out.values())
    return out


def run_log_partition(em, lengths, params, masks):
    log_z = np.empty(em.shape[0], em.dtype)
    crf_cpu.crf_log_partition(em, lengths, *params, *masks, log_z)
    return log_z


def run_viterbi(em, lengths, params, masks):
    B, T, _ = em.shape
    out = dict(tags=np.empty((B, T), np.int64), scores=np.empty(B, em.dtype))
    crf_cpu.viterbi_decode(em, lengths, *params, *masks, *out.values())
    return out


def naive_results(em, tags, lengths, params, masks):
    """Per-batch results of the NumPy references (float64, from the same input values)."""
    em = em.astype(np.float64)
    params = tuple(p.astype(np.float64) for p in params)
    B, T, K = em.shape
    ref = dict(
        nll=np.zeros(B), d_emissions=np.zeros((B, T, K)), d_start=np.zeros(K), d_end=np.zeros(K),
        d_trans=np.zeros((K, K)), marginals=np.zeros((B, T, K)), log_z=np.zeros(B),
        tags=np.full((B, T), -1, dtype=np.int64), scores=np.zeros(B),
    )
    for b in range(B):
        L = lengths[b]
        e, y = em[b, :L], tags[b, :L]
        ref["nll"][b] = naive_crf.crf_nll(e, y, *params, *masks)
        d_em, d_start, d_end, d_trans = naive_crf.crf_nll_grad(e, y, *params, *masks)
        ref["d_emissions"][b, :L] = d_em
        ref["d_start"] += d_start
        ref["d_end"] += d_end
        ref["d_trans"] += d_trans
        ref["marginals"][b, :L] = naive_crf.crf_marginals(e, *params, *masks)
        ref["log_z"][b] = naive_crf.crf_log_partition(e, *params, *masks)
        ref["tags"][b, :L], ref["scores"][b] = naive_crf.viterbi(e, *params, *masks)
    return ref


def assert_close(actual, expected, tol):
    # Relative tolerance; the absolute part (same size) covers entries that are ~0 (marginals and
    # gradients are O(1) quantities).
    assert_allclose(actual, expected, rtol=tol, atol=tol)


def kernel_results(em, tags, lengths, params, masks):
    out = run_nll(em, tags, lengths, params, masks)
    out.update(run_marginals(em, lengths, params, masks))
    out.update(run_viterbi(em, lengths, params, masks))
    out["log_z_forward"] = run_log_partition(em, lengths, params, masks)
    return out


# --------------------------------------------------------------------------------------------------
# Agreement with the references
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_naive_reference(dtype, masked):
    rng = np.random.default_rng(1 + masked)
    em, tags, lengths, params, masks = random_problem(rng, 9, 8, 5, dtype, masked)
    out = kernel_results(em, tags, lengths, params, masks)
    ref = naive_results(em, tags, lengths, params, masks)
    tol = TOL[dtype]
    for name in ["nll", "d_emissions", "d_start", "d_end", "d_trans", "marginals", "log_z"]:
        assert out[name].dtype == dtype, name
        assert_close(out[name], ref[name], tol)
    assert_close(out["log_z_forward"], ref["log_z"], tol)
    assert_array_equal(out["tags"], ref["tags"])
    assert_close(out["scores"], ref["scores"], tol)
    assert out["nll"][0] == 0 and out["log_z"][0] == 0 and out["scores"][0] == 0
    assert np.all(out["tags"][0] == -1)
    assert np.all(out["nll"][1:] > 0)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("K", "T"), [(3, 4), (4, 5)])
def test_matches_brute_force(K, T, masked):
    rng = np.random.default_rng(10 * K + T + masked)
    em, tags, lengths, params, masks = random_problem(
        rng, 3, T, K, np.float64, masked, lengths=[T, T - 1, T - 2]
    )
    out = kernel_results(em, tags, lengths, params, masks)
    for b in range(3):
        e = em[b, : lengths[b]]
        log_z = naive_crf.brute_force_log_partition(e, *params, *masks)
        path, score = naive_crf.brute_force_viterbi(e, *params, *masks)
        assert_close(out["log_z"][b], log_z, 1e-10)
        assert_close(out["log_z_forward"][b], log_z, 1e-10)
        assert_array_equal(out["tags"][b, : lengths[b]], path)
        assert_close(out["scores"][b], score, 1e-10)
        marg = naive_crf.brute_force_marginals(e, *params, *masks)
        assert_close(out["marginals"][b, : lengths[b]], marg, 1e-10)
        gold = tags[b, : lengths[b]]
        expected_nll = log_z - naive_crf.crf_path_score(e, gold, *params, *masks)
        assert_close(out["nll"][b], expected_nll, 1e-10)


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_match_finite_differences(masked):
    rng = np.random.default_rng(20 + masked)
    em, tags, lengths, params, masks = random_problem(
        rng, 3, 5, 4, np.float64, masked, lengths=[5, 0, 3]
    )
    out = run_nll(em, tags, lengths, params, masks)
    analytic = [out["d_emissions"], out["d_start"], out["d_end"], out["d_trans"]]
    args = [em, *params]
    h = 1e-5

    def loss():
        return run_nll(args[0], tags, lengths, tuple(args[1:]), masks)["nll"].sum()

    for arg, grad in zip(args, analytic, strict=True):
        fd = numerical_gradient(loss, arg, h)
        assert np.linalg.norm(grad) > 0
        assert np.linalg.norm(fd - grad) <= 1e-6 * np.linalg.norm(grad)


# --------------------------------------------------------------------------------------------------
# Forbidden transitions
# --------------------------------------------------------------------------------------------------


def path_allowed(path, masks):
    allowed_start, allowed_end, allowed_trans = masks
    return bool(
        allowed_start[path[0]]
        and allowed_end[path[-1]]
        and all(allowed_trans[i, j] for i, j in zip(path[:-1], path[1:], strict=True))
    )


def iob2_problem(rng, B=6, T=5):
    """Emissions that favour I- tags (forbidden at the start and after O) by a wide margin."""
    K = 5
    em = rng.normal(size=(B, T, K))
    em[:, :, [IX, IY]] += 4.0
    em[:, 0, [IX, IY]] += 4.0
    em[:, ::2, O] += 3.0
    params = random_params(rng, K, np.float64)
    lengths = np.array([T, T, T - 1, 3, 1, 0][:B], dtype=np.int64)
    return em, lengths, params, iob2_masks()


def test_iob2_viterbi_never_forbidden():
    rng = np.random.default_rng(30)
    em, lengths, params, masks = iob2_problem(rng)
    out = run_viterbi(em, lengths, params, masks)
    for b in range(len(lengths)):
        L = lengths[b]
        if L == 0:
            continue
        path = out["tags"][b, :L]
        assert path_allowed(path, masks)
        best, score = naive_crf.brute_force_viterbi(em[b, :L], *params, *masks)
        assert_array_equal(path, best)
        assert_close(out["scores"][b], score, 1e-10)
        # The emissions alone would pick a forbidden path: the constraint did the work.
        free, _ = naive_crf.viterbi(em[b, :L], *params)
        assert not path_allowed(free, masks)


def test_iob2_marginals_and_nll():
    rng = np.random.default_rng(31)
    em, lengths, params, masks = iob2_problem(rng)
    allowed_start, _, allowed_trans = masks
    tags = allowed_gold(rng, em, lengths, params, masks)
    out = run_nll(em, tags, lengths, params, masks)
    marg = run_marginals(em, lengths, params, masks)
    assert np.all(marg["marginals"][:, 0, ~allowed_start] == 0)
    # Expected minus gold counts: both zero on forbidden transitions.
    assert np.all(out["d_trans"][~allowed_trans] == 0)
    for b in range(len(lengths)):
        L = lengths[b]
        e = em[b, :L]
        bf = naive_crf.brute_force_marginals(e, *params, *masks)
        assert_close(marg["marginals"][b, :L], bf, 1e-10)
        log_z = naive_crf.brute_force_log_partition(e, *params, *masks)
        assert_close(marg["log_z"][b], log_z, 1e-10)
        score = naive_crf.crf_path_score(e, tags[b, :L], *params, *masks)
        assert_close(out["nll"][b], log_z - score, 1e-10)
    # Without the masks the same inputs give different (unconstrained) marginals.
    free = run_marginals(em, lengths, params, no_masks(5))
    assert np.all(free["marginals"][lengths > 0, 0][:, [IX, IY]] > 1e-3)


def test_forbidden_gold_path_gives_inf_and_no_gradient():
    rng = np.random.default_rng(32)
    em, lengths, params, masks = iob2_problem(rng)
    tags = allowed_gold(rng, em, lengths, params, masks)
    out_ok = run_nll(em[2:], tags[2:], lengths[2:], params, masks)
    bad = tags.copy()
    bad[0, 0] = IX  # forbidden start
    bad[1, :3] = [BX, IX, IY]  # forbidden transition I-X -> I-Y
    out = run_nll(em, bad, lengths, params, masks)
    assert out["nll"][0] == np.inf and out["nll"][1] == np.inf
    assert np.all(out["d_emissions"][:2] == 0)
    assert_array_equal(out["nll"][2:], out_ok["nll"])
    for name in ["d_start", "d_end", "d_trans"]:
        assert_close(out[name], out_ok[name], 1e-12)
    # A forbidden end.
    masks_end = (masks[0], np.array([True, True, True, True, False]), masks[2])
    bad[2, lengths[2] - 1] = IY
    bad[2, : lengths[2] - 1] = BY
    assert run_nll(em, bad, lengths, params, masks_end)["nll"][2] == np.inf


# --------------------------------------------------------------------------------------------------
# Underflow: the log-space fallback
# --------------------------------------------------------------------------------------------------


def scaled_forward_backward_ok(em, L, params, masks):
    """Whether the scaled forward and backward passes accept a sequence (no fallback)."""
    T, K = em.shape
    logp, scaled, offsets = np.empty((K + 2, K)), np.empty((2 * K + 2, K)), np.empty(3)
    crf_cpu._prepare(*params, *masks, logp, scaled, offsets)
    alpha, ebuf, scale = np.empty((T, K)), np.empty((T, K)), np.empty(T + 1)
    ok, _ = crf_cpu._forward_scaled(em, L, scaled, offsets, alpha, ebuf, scale)
    if not ok:
        return False, False
    work, pair = np.empty((3, K)), np.empty((K, K))
    return True, crf_cpu._backward_scaled(L, scaled, alpha, ebuf, scale, work, pair, True)


def assert_matches_log_space(em, tags, lengths, params, masks):
    out = kernel_results(em, tags, lengths, params, masks)
    ref = naive_results(em, tags, lengths, params, masks)
    for name in ["nll", "d_emissions", "d_start", "d_end", "d_trans", "marginals", "log_z"]:
        assert np.all(np.isfinite(out[name])), name
        assert_close(out[name], ref[name], 1e-10)
    assert_close(out["log_z_forward"], ref["log_z"], 1e-10)
    assert_array_equal(out["tags"], ref["tags"])


def test_fallback_when_forward_underflows():
    rng = np.random.default_rng(40)
    T, K = 6, 5
    em = rng.normal(size=(3, T, K))
    # Sequence 0: at t = 0 only the forbidden I- tags are not 1000 below the maximum.
    em[0, 0] = [-1000.0, -1000.0, 0.0, -1000.0, 0.0]
    # Sequence 1: O dominates at t = 2, then only I- tags (unreachable from O) at t = 3.
    em[1, 2] = [0.0, -1000.0, -1000.0, -1000.0, -1000.0]
    em[1, 3] = [-1000.0, -1000.0, 0.0, -1000.0, 0.0]
    lengths = np.array([T, T, T], dtype=np.int64)
    params = random_params(rng, K, np.float64)
    masks = iob2_masks()
    tags = allowed_gold(rng, em, lengths, params, masks)
    assert scaled_forward_backward_ok(em[0], T, params, masks) == (False, False)
    assert scaled_forward_backward_ok(em[1], T, params, masks) == (False, False)
    assert scaled_forward_backward_ok(em[2], T, params, masks) == (True, True)
    assert_matches_log_space(em, tags, lengths, params, masks)


def test_fallback_when_backward_overflows():
    # Tag 2 is unreachable at t = 1 but 640 above the reachable tags there and at the end: the
    # forward normalisers stay above _TINY, the backward factor for tag 2 overflows.
    K = 3
    em = np.array([[[0.0, -5.0, -5.0], [-640.0, -640.0, 0.0]]] * 2)
    params = (np.zeros(K), np.array([0.0, -640.0, 0.0]), np.zeros((K, K)))
    allowed_start = np.array([True, False, False])
    allowed_end = np.array([False, True, True])
    allowed_trans = np.ones((K, K), dtype=bool)
    allowed_trans[:, 2] = False
    allowed_trans[0, 0] = False
    masks = (allowed_start, allowed_end, allowed_trans)
    lengths = np.array([2, 2], dtype=np.int64)
    tags = np.array([[0, 1], [0, 1]], dtype=np.int64)
    assert scaled_forward_backward_ok(em[0], 2, params, masks) == (True, False)
    assert_matches_log_space(em, tags, lengths, params, masks)


def test_viterbi_ties_go_to_lowest_index():
    rng = np.random.default_rng(33)
    K = 5
    zeros = (np.zeros(K), np.zeros(K), np.zeros((K, K)))
    lengths = np.array([4, 3, 1], dtype=np.int64)
    out = run_viterbi(np.zeros((3, 4, K)), lengths, zeros, iob2_masks())
    assert_array_equal(out["tags"], [[O] * 4, [O] * 3 + [-1], [O] + [-1] * 3])
    assert_array_equal(out["scores"], 0)
    # Integer scores: many exact ties, in back-pointers as well as at the last step.
    em = rng.integers(0, 2, size=(8, 6, K)).astype(np.float64)
    params = tuple(rng.integers(0, 2, size=p.shape).astype(np.float64) for p in zeros)
    lengths = rng.integers(1, 7, size=8)
    out = run_viterbi(em, lengths, params, no_masks(K))
    for b in range(8):
        path, score = naive_crf.viterbi(em[b, : lengths[b]], *params)
        assert_array_equal(out["tags"][b, : lengths[b]], path)
        assert out["scores"][b] == score


def test_vectorised_exp():
    x = np.concatenate(
        [-np.linspace(0, 30, 3001), -np.linspace(30, 707.99, 3001), [-1e-300, -5e-324]]
    )
    out = x.copy()
    crf_cpu._exp_nonpositive(out, np.empty(len(x), dtype=np.int64))
    assert_allclose(out, np.exp(x), rtol=1e-13, atol=0)
    assert_allclose(out[:3001], np.exp(x[:3001]), rtol=3e-15, atol=0)
    edge = np.array([0.0, -708.0, -708.5, -1000.0, -np.inf, np.nan])
    crf_cpu._exp_nonpositive(edge, np.empty(len(edge), dtype=np.int64))
    assert_array_equal(edge, [1.0, 0.0, 0.0, 0.0, 0.0, np.nan])


def test_no_allowed_path():
    K = 3
    em = np.random.default_rng(41).normal(size=(2, 3, K))
    params = random_params(np.random.default_rng(42), K, np.float64)
    masks = (np.array([True, False, False]), np.array([False, True, True]), np.eye(K, dtype=bool))
    lengths = np.array([3, 1], dtype=np.int64)
    marg = run_marginals(em, lengths, params, masks)
    assert np.all(marg["log_z"] == -np.inf)
    assert np.all(marg["marginals"] == 0)
    assert np.all(run_log_partition(em, lengths, params, masks) == -np.inf)
    vit = run_viterbi(em, lengths, params, masks)
    assert np.all(vit["tags"] == -1)
    assert np.all(vit["scores"] == -np.inf)


# --------------------------------------------------------------------------------------------------
# Padding, determinism, dtypes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padding_invariance(dtype):
    rng = np.random.default_rng(50)
    B, T, K, extra = 7, 6, 5, 4
    em, tags, lengths, params, masks = random_problem(rng, B, T, K, dtype, masked=True)
    wide_em = np.empty((B, T + extra, K), dtype=dtype)
    wide_em[:] = rng.normal(size=wide_em.shape) * 1e4
    wide_em[0, 0, 0] = np.nan
    wide_tags = rng.integers(-50, 50, size=(B, T + extra))
    for b in range(B):
        L = lengths[b]
        wide_em[b, :L] = em[b, :L]
        wide_tags[b, :L] = tags[b, :L]
    narrow = kernel_results(em, tags, lengths, params, masks)
    wide = kernel_results(wide_em, wide_tags, lengths, params, masks)
    for name, value in narrow.items():
        if value.ndim >= 2 and value.shape[1] == T:
            assert_array_equal(wide[name][:, :T], value, err_msg=name)
            pad = wide[name][:, T:]
            assert np.all(pad == (-1 if name == "tags" else 0)), name
        else:
            assert_array_equal(wide[name], value, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_across_thread_counts(dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 Numba threads")
    rng = np.random.default_rng(60)
    em, tags, lengths, params, masks = random_problem(rng, 64, 20, 9, dtype, masked=True)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernel_results(em, tags, lengths, params, masks)
        numba.set_num_threads(2)
        two = kernel_results(em, tags, lengths, params, masks)
    finally:
        numba.set_num_threads(saved)
    for name in one:
        assert_array_equal(one[name], two[name], err_msg=name)


def test_float32_outputs_keep_dtype_and_match_float64():
    rng = np.random.default_rng(70)
    em, tags, lengths, params, masks = random_problem(rng, 5, 6, 4, np.float32)
    out32 = kernel_results(em, tags, lengths, params, masks)
    out64 = kernel_results(
        em.astype(np.float64), tags, lengths, tuple(p.astype(np.float64) for p in params), masks
    )
    for name, value in out32.items():
        if name == "tags":
            assert value.dtype == np.int64
            assert_array_equal(value, out64[name])
        else:
            assert value.dtype == np.float32, name
            assert_allclose(value, out64[name].astype(np.float32), rtol=1e-6, atol=1e-6)


def test_empty_batch_and_empty_time():
    rng = np.random.default_rng(80)
    K = 4
    params, masks = random_params(rng, K, np.float64), no_masks(K)
    em = np.zeros((3, 0, K))
    lengths = np.zeros(3, dtype=np.int64)
    out = kernel_results(em, np.zeros((3, 0), dtype=np.int64), lengths, params, masks)
    assert np.all(out["nll"] == 0) and np.all(out["log_z"] == 0) and np.all(out["scores"] == 0)
    assert np.all(out["d_trans"] == 0) and np.all(out["d_start"] == 0)
    out = kernel_results(
        np.zeros((0, 5, K)), np.zeros((0, 5), dtype=np.int64), np.zeros(0, dtype=np.int64),
        params, masks,
    )
    assert out["nll"].shape == (0,) and np.all(out["d_trans"] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_twins_give_the_parallel_kernels_bits(dtype):
    rng = np.random.default_rng(90)
    em, gold, lengths, params, masks = random_problem(rng, 17, 12, 7, dtype, masked=True)
    lengths[3] = 0
    B, T, K = em.shape
    nll, d_em = np.empty(B, dtype), np.empty_like(em)
    d_start, d_end, d_trans = np.empty(K, dtype), np.empty(K, dtype), np.empty((K, K), dtype)
    crf_cpu.crf_nll_serial(em, gold, lengths, *params, *masks, nll, d_em, d_start, d_end,
                           d_trans)
    parallel = run_nll(em, gold, lengths, params, masks)
    for name, value in dict(nll=nll, d_emissions=d_em, d_start=d_start, d_end=d_end,
                            d_trans=d_trans).items():
        assert_array_equal(value, parallel[name], err_msg=name)
    tags, scores = np.empty((B, T), np.int64), np.empty(B, dtype)
    crf_cpu.viterbi_decode_serial(em, lengths, *params, *masks, tags, scores)
    parallel = run_viterbi(em, lengths, params, masks)
    assert_array_equal(tags, parallel["tags"])
    assert_array_equal(scores, parallel["scores"])
    marginals, log_z = np.empty_like(em), np.empty(B, dtype)
    crf_cpu.crf_marginals_serial(em, lengths, *params, *masks, marginals, log_z)
    parallel = run_marginals(em, lengths, params, masks)
    assert_array_equal(marginals, parallel["marginals"])
    assert_array_equal(log_z, parallel["log_z"])
    for name in ("crf_nll", "viterbi_decode", "crf_marginals"):
        assert getattr(crf_cpu, name).targetoptions.get("parallel")
        assert not getattr(crf_cpu, name + "_serial").targetoptions.get("parallel")


def test_the_crf_head_runs_serial_kernels_on_the_cpu():
    # The engine parallelises with its own threads; a parallel kernel would leave OpenMP's
    # workers spinning on the cores those threads need.
    from tagger.nn.heads import CRFHead

    head = CRFHead()
    for name in ("crf_nll", "viterbi_decode", "crf_marginals"):
        assert head._kernel(name) is getattr(crf_cpu, name + "_serial")


_CONCURRENT_DECODES = """
import json, threading, numba, numpy as np
from tagger.nn.heads import CRFHead
head = CRFHead()
rng = np.random.default_rng(0)
scores = rng.standard_normal((64, 30, 9)).astype(np.float32)
lengths = np.full(64, 30, np.int64)
params = {"crf.start": np.zeros(9, np.float32), "crf.end": np.zeros(9, np.float32),
          "crf.trans": rng.standard_normal((9, 9)).astype(np.float32)}
expected = head.decode(params, scores, lengths)
# An exception in a thread ends only that thread: each one reports its outcome instead, for the
# test to check.
outcomes = [None, None]
def decode(k):
    try:
        outcomes[k] = sum(not np.array_equal(head.decode(params, scores, lengths), expected)
                          for _ in range(2000))
    except BaseException as exc:
        outcomes[k] = repr(exc)
threads = [threading.Thread(target=decode, args=(k,)) for k in range(2)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(outcomes))
try:
    print(numba.threading_layer())
except ValueError:  # no parallel kernel ran: the layer was never started
    print("none")
"""


def test_decoding_from_several_threads_under_the_workqueue_layer():
    # The workqueue layer aborts the process when parallel kernels are launched from two
    # threads at once; the CRF head runs the serial ones, so Numba's pool never even starts.
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, "-c", _CONCURRENT_DECODES], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes, layer = done.stdout.splitlines()[-2:]
    assert json.loads(outcomes) == [0, 0]  # decodes that differed from the single-threaded one
    assert layer == "none"
