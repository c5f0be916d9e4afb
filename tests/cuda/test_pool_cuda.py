"""The CUDA pooling kernels against the CPU kernels (themselves checked against tests/naive.py)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda
from numpy.testing import assert_allclose, assert_array_equal

import naive
from tagger.kernels import pool_cpu, pool_cuda

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def case(dtype, seed=0, B=6, T=7, H=5):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(B, T, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    lengths[0], lengths[1] = 0, T
    for b in range(B):
        h[b, lengths[b]:] = 99.0  # padding must never be pooled
    return h, lengths, rng.normal(size=(B, H)).astype(dtype), rng.normal(size=H).astype(dtype)


def on_device(fn, *arrays, outs):
    dev_outs = [cuda.device_array(shape, dtype) for shape, dtype in outs]
    fn(*[cuda.to_device(a) for a in arrays], *dev_outs)
    return [o.copy_to_host() for o in dev_outs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_and_max_pooling(dtype):
    h, lengths, d_out, _ = case(dtype)
    B, T, H = h.shape
    (mean,) = on_device(pool_cuda.mean_pool, h, lengths, outs=[((B, H), dtype)])
    assert_allclose(mean, naive.mean_pool(h, lengths), **TOL[dtype])
    (d_mean,) = on_device(pool_cuda.mean_pool_backward, lengths, d_out, outs=[((B, T, H), dtype)])
    assert_allclose(d_mean, naive.mean_pool_backward(lengths, d_out, T), **TOL[dtype])
    top, arg = on_device(pool_cuda.max_pool, h, lengths, outs=[((B, H), dtype), ((B, H), np.int64)])
    want_top, want_arg = np.empty((B, H), dtype), np.empty((B, H), np.int64)
    pool_cpu.max_pool(h, lengths, want_top, want_arg)
    assert_array_equal(top, want_top)
    assert_array_equal(arg, want_arg)
    (d_max,) = on_device(pool_cuda.max_pool_backward, arg, d_out, outs=[((B, T, H), dtype)])
    assert_allclose(d_max, naive.max_pool_backward(h, lengths, d_out), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_pooling(dtype):
    h, lengths, d_out, w = case(dtype, seed=1)
    B, T, H = h.shape
    bias = np.array([0.3], dtype)
    scores, weights, out = on_device(pool_cuda.attention_pool, h, lengths, w, bias,
                                     outs=[((B, T), dtype), ((B, T), dtype), ((B, H), dtype)])
    want = [np.empty((B, T), dtype), np.empty((B, T), dtype), np.empty((B, H), dtype)]
    pool_cpu.attention_pool(h, lengths, w, bias, *want)
    for got, expected in zip((scores, weights, out), want, strict=True):
        assert_allclose(got, expected, **TOL[dtype])
    assert not weights[0].any() and (weights[np.arange(T)[None, :] >= lengths[:, None]] == 0).all()
    d_h, d_w, d_b = on_device(pool_cuda.attention_pool_backward, h, lengths, w, weights, d_out,
                              outs=[((B, T, H), dtype), ((H,), dtype), ((1,), dtype)])
    want = [np.empty((B, T, H), dtype), np.empty(H, dtype), np.empty(1, dtype)]
    pool_cpu.attention_pool_backward(h, lengths, w, weights, d_out, *want)
    for got, expected in zip((d_h, d_w, d_b), want, strict=True):
        assert_allclose(got, expected, **TOL[dtype])
