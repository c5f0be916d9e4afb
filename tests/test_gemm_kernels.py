"""The register-blocked matrix products of the recurrent layers against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from tagger.kernels import gemm_cpu

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-13}


def _nr(dtype) -> int:
    return 2 * gemm_cpu.VECTOR_BYTES // np.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_panels_layout(dtype):
    rng = np.random.default_rng(0)
    nr = _nr(dtype)
    for K, N in [(1, 1), (3, nr), (5, nr + 1), (7, 3 * nr - 2)]:
        m = rng.standard_normal((K, N)).astype(dtype)
        for source in (m, np.asfortranarray(m)):
            bp = gemm_cpu.packed(source)
            P = -(-N // nr)
            assert bp.shape == (P, K, nr)
            padded = np.zeros((K, P * nr), dtype)
            padded[:, :N] = m
            for p in range(P):
                np.testing.assert_array_equal(bp[p], padded[:, p * nr:(p + 1) * nr])


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_packed_matches_numpy(dtype):
    """Every row count of the micro-kernels (1..8 and their sums), full and partial panels, an
    inner dimension of one, and rows beyond ``n`` and columns beyond ``N`` left alone."""
    rng = np.random.default_rng(1)
    nr = _nr(dtype)
    shapes = [(1, 128, 512), (2, 7, 5), (3, 1, nr), (8, 16, 2 * nr), (9, 33, 47), (13, 100, 400),
              (17, 5, nr + 3), (70, 12, 3 * nr + 1)]
    for n, K, N in shapes:
        a = rng.standard_normal((n + 2, K)).astype(dtype)
        m = rng.standard_normal((K, N)).astype(dtype)
        out = np.full((n + 2, N + 3), 7.0, dtype)
        gemm_cpu.matmul_packed(a, n, gemm_cpu.packed(m), N, out)
        expected = a[:n].astype(np.float64) @ m.astype(np.float64)
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(out[:n, :N] - expected).max() / scale < TOL[dtype], (n, K, N)
        assert (out[:n, N:] == 7.0).all() and (out[n:] == 7.0).all(), (n, K, N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_packed_transposed_and_strided(dtype):
    """``d @ U.T`` from a packed transpose (the backward's per-step product), with a left factor
    and a result whose rows are views into larger arrays."""
    rng = np.random.default_rng(2)
    H = 24
    U = rng.standard_normal((H, 4 * H)).astype(dtype)
    big = rng.standard_normal((11, 4 * H + 9)).astype(dtype)
    d = big[:, 3:3 + 4 * H]  # rows 4H + 9 apart, unit stride along a row
    out_big = np.zeros((11, H + 5), dtype)
    out = out_big[:, 2:2 + H]
    gemm_cpu.matmul_packed(d, 11, gemm_cpu.packed(U.T), H, out)
    np.testing.assert_allclose(out, d @ U.T, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert (out_big[:, :2] == 0).all() and (out_big[:, 2 + H:] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 3, 8, 13, 70])  # one micro-kernel, several, more than a row block
def test_matmul_packed_reads_a_transposed_left_factor(dtype, M):
    """``x^T @ d`` with ``x.T`` read in place (the backward's weight gradients), and a left factor
    with neither stride a unit."""
    rng = np.random.default_rng(3)
    nr = _nr(dtype)
    K, N = 37, 2 * nr + 5
    x = rng.standard_normal((K, M)).astype(dtype)
    d = rng.standard_normal((K, N)).astype(dtype)
    dp = np.empty(gemm_cpu.packed_shape(K, N, dtype), dtype)
    gemm_cpu.pack_panels(d, dp)
    np.testing.assert_array_equal(dp, gemm_cpu.packed(d))
    out = np.empty((M, N), dtype)
    gemm_cpu.matmul_packed(x.T, M, dp, N, out)
    np.testing.assert_allclose(out, x.T @ d, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    both = rng.standard_normal((2 * K, 3 * M)).astype(dtype)[::2, ::3]  # strides (2 rows, 3)
    gemm_cpu.matmul_packed(both.T, M, dp, N, out)
    np.testing.assert_allclose(out, both.T @ d, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_inner_dimension_is_summed_in_blocks(dtype):
    """An inner dimension past two blocks (the weight gradients sum over every step of a batch)
    is taken block by block: the first block's products are stored over whatever ``out`` held,
    the later ones added; partial panels, few rows and a transposed left factor included."""
    rng = np.random.default_rng(4)
    nr = _nr(dtype)
    kc = gemm_cpu._K_BLOCK_BYTES // (nr * np.dtype(dtype).itemsize)
    for n, K, N in [(1, 2 * kc, nr), (2, 2 * kc + 1, nr + 3), (3, 3 * kc, 2 * nr),
                    (13, 5 * kc + 7, 2 * nr + 5), (70, 3 * kc - 1, nr)]:
        x = rng.standard_normal((K, n + 2)).astype(dtype)
        d = rng.standard_normal((K, N)).astype(dtype)
        expected = x.T[:n].astype(np.float64) @ d.astype(np.float64)
        scale = max(1.0, float(np.abs(expected).max()))
        for a in (x.T, np.ascontiguousarray(x.T)):
            out = np.full((n + 2, N + 3), 7.0, dtype)
            gemm_cpu.matmul_packed(a, n, gemm_cpu.packed(d), N, out)
            assert np.abs(out[:n, :N] - expected).max() / scale < 5 * TOL[dtype], (n, K, N)
            assert (out[:n, N:] == 7.0).all() and (out[n:] == 7.0).all(), (n, K, N)
    # A non-finite value in a later block reaches exactly its row.
    K = 3 * kc
    a = np.ones((3, K), dtype)
    a[1, K - 2] = np.inf
    out = np.zeros((3, nr), dtype)
    gemm_cpu.matmul_packed(a, 3, gemm_cpu.packed(np.ones((K, nr), dtype)), nr, out)
    assert (out[0] == K).all() and (out[2] == K).all() and np.isposinf(out[1]).all()


def test_zero_rows_and_empty_inner_dimension():
    a = np.ones((4, 0), np.float32)
    m = np.ones((0, 5), np.float32)
    out = np.full((4, 5), 3.0, np.float32)
    gemm_cpu.matmul_packed(a, 4, gemm_cpu.packed(m), 5, out)
    assert (out == 0).all()
    out[:] = 3.0
    gemm_cpu.matmul_packed(np.ones((4, 2), np.float32), 0,
                           gemm_cpu.packed(np.ones((2, 5), np.float32)), 5, out)
    assert (out == 3.0).all()


def test_non_finite_values_propagate():
    """No value of the zero padding of a partial panel leaks into the result, and an inf or nan
    in the inputs reaches exactly the entries it should (as in BLAS)."""
    nr = _nr(np.float32)
    a = np.ones((3, 4), np.float32)
    a[1, 2] = np.inf
    m = np.ones((4, nr + 2), np.float32)
    out = np.zeros((3, nr + 2), np.float32)
    gemm_cpu.matmul_packed(a, 3, gemm_cpu.packed(m), nr + 2, out)
    assert (out[0] == 4).all() and (out[2] == 4).all()
    assert np.isposinf(out[1]).all()
