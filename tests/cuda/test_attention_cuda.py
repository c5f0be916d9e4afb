"""The attention kernels on the GPU (or the simulator) give the CPU kernels' results: weights,
context, gradients (added to the encoder's), empty sources, padding, float32."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from tagger import _config
from tagger.kernels import attention_cpu, attention_cuda

LENGTHS = np.array([0, 3, 1, 6, 5], np.int64)  # row 0 empty: its padding is inf too


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 2)  # several blocks for 5 rows
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 2)  # and a grid-stride loop


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_forward_and_backward_match_the_cpu(dtype, tol):
    rng = np.random.default_rng(0)
    B, S, D = len(LENGTHS), 6, 4
    enc = rng.normal(0, 1, (B, S, D)).astype(dtype)
    for n, L in enumerate(LENGTHS):
        enc[n, L:] = np.inf  # padding is never read
    q = rng.normal(0, 1, (B, D)).astype(dtype)
    d_ctx = rng.normal(0, 1, (B, D)).astype(dtype)
    prior = rng.normal(0, 1, (B, S, D)).astype(dtype)

    alpha, ctx = np.empty((B, S), dtype), np.empty((B, D), dtype)
    attention_cpu.attention_forward(enc, LENGTHS, q, alpha, ctx)
    d_enc, d_q = prior.copy(), np.empty((B, D), dtype)
    attention_cpu.attention_backward(enc, LENGTHS, q, alpha, d_ctx, d_enc, d_q)

    g = {name: cuda.to_device(a) for name, a in
         (("enc", enc), ("lengths", LENGTHS), ("q", q), ("d_ctx", d_ctx), ("d_enc", prior))}
    g_alpha = cuda.device_array((B, S), dtype)
    g_ctx = cuda.device_array((B, D), dtype)
    attention_cuda.attention_forward(g["enc"], g["lengths"], g["q"], g_alpha, g_ctx)
    g_dq = cuda.device_array((B, D), dtype)
    attention_cuda.attention_backward(g["enc"], g["lengths"], g["q"], g_alpha, g["d_ctx"],
                                      g["d_enc"], g_dq)
    np.testing.assert_allclose(g_alpha.copy_to_host(), alpha, rtol=tol, atol=tol)
    np.testing.assert_allclose(g_ctx.copy_to_host(), ctx, rtol=tol, atol=tol)
    got_enc = g["d_enc"].copy_to_host()
    for n, L in enumerate(LENGTHS):  # inf padding: compare the valid steps, padding untouched
        np.testing.assert_allclose(got_enc[n, :L], d_enc[n, :L], rtol=tol, atol=tol)
        np.testing.assert_array_equal(got_enc[n, L:], prior[n, L:])
    np.testing.assert_allclose(g_dq.copy_to_host(), d_q, rtol=tol, atol=tol)
    assert not g_alpha.copy_to_host()[0].any()  # the empty source
