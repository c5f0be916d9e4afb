"""The encoder-decoder attention kernels against the NumPy reference and finite differences:
weights and context, padding that changes nothing, empty sources, float32, and gradients that
add up over decoder steps."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from gradcheck import numerical_gradient, relative_error
from tagger.kernels import attention_cpu

B, S, D = 4, 6, 5
LENGTHS = np.array([6, 3, 1, 0], np.int64)


def inputs(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    enc = rng.normal(0, 1, (B, S, D)).astype(dtype)
    q = rng.normal(0, 1, (B, D)).astype(dtype)
    return enc, q


def forward(enc, lengths, q):
    alpha = np.full((enc.shape[0], enc.shape[1]), np.nan, enc.dtype)
    ctx = np.full((enc.shape[0], enc.shape[2]), np.nan, enc.dtype)
    attention_cpu.attention_forward(enc, lengths, q, alpha, ctx)
    return alpha, ctx


def test_forward_matches_the_reference():
    enc, q = inputs()
    alpha, ctx = forward(enc, LENGTHS, q)
    want_alpha, want_ctx = naive.attention(enc, LENGTHS, q)
    np.testing.assert_allclose(alpha, want_alpha, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ctx, want_ctx, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(alpha.sum(axis=1), [1, 1, 1, 0])
    assert not alpha[3].any() and not ctx[3].any()  # an empty source


def test_padding_changes_nothing_and_large_scores_do_not_overflow():
    enc, q = inputs(1)
    noisy = enc.copy()
    for n, L in enumerate(LENGTHS):
        noisy[n, L:] = np.inf if n % 2 else 1e30
    a1, c1 = forward(enc, LENGTHS, q)
    a2, c2 = forward(noisy, LENGTHS, q)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)
    alpha, ctx = forward(enc * 300.0, LENGTHS, q * 300.0)  # scores near 1e5: exp would overflow
    assert np.isfinite(alpha).all() and np.isfinite(ctx).all()
    np.testing.assert_allclose(alpha.sum(axis=1), [1, 1, 1, 0])


def test_float32_follows_float64():
    enc, q = inputs(2)
    a64, c64 = forward(enc, LENGTHS, q)
    a32, c32 = forward(enc.astype(np.float32), LENGTHS, q.astype(np.float32))
    assert a32.dtype == np.float32 and c32.dtype == np.float32
    np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c32, c64, rtol=1e-5, atol=1e-6)


def test_backward_matches_the_reference_and_finite_differences():
    enc, q = inputs(3)
    G = np.random.default_rng(4).normal(0, 1, (B, D))  # loss = sum(G * ctx)
    alpha, _ = forward(enc, LENGTHS, q)
    prior = np.random.default_rng(5).normal(0, 1, enc.shape)
    d_enc = prior.copy()
    d_q = np.full((B, D), np.nan)
    attention_cpu.attention_backward(enc, LENGTHS, q, alpha, G, d_enc, d_q)
    want_enc, want_q = naive.attention_backward(enc, LENGTHS, q, G)
    np.testing.assert_allclose(d_enc - prior, want_enc, rtol=1e-10, atol=1e-12)  # added to
    np.testing.assert_allclose(d_q, want_q, rtol=1e-10, atol=1e-12)

    def loss():
        return float((forward(enc, LENGTHS, q)[1] * G).sum())

    assert relative_error(d_enc - prior, numerical_gradient(loss, enc)) < 1e-7
    assert relative_error(d_q, numerical_gradient(loss, q)) < 1e-7
    # Padding and empty sources get nothing.
    for n, L in enumerate(LENGTHS):
        np.testing.assert_array_equal(d_enc[n, L:], prior[n, L:])
    assert not d_q[3].any()


@pytest.mark.parametrize("length", [-3, 99])
def test_lengths_outside_the_source_are_clamped(length):
    enc, q = inputs(6)
    lengths = np.array([length, 2, 2, 2], np.int64)
    alpha, ctx = forward(enc, lengths, q)
    assert np.isfinite(alpha).all() and np.isfinite(ctx).all()
    expected = 0.0 if length < 0 else 1.0
    assert alpha[0].sum() == pytest.approx(expected)
