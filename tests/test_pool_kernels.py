"""The pooling kernels against the NumPy references, finite differences and their invariances."""

from __future__ import annotations

import numpy as np
import pytest

import naive as naive_pool
from gradcheck import numerical_gradient, relative_error
from tagger.kernels import pool_cpu

KINDS = ["mean", "max", "attention"]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def make_case(dtype, seed=0, B=7, T=8, H=5, lengths=None):
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0], lengths[1], lengths[-1] = T, 1, 0  # a full, a length-1 and an empty sequence
    lengths = np.asarray(lengths, dtype=np.int64)
    h = rng.normal(size=(B, T, H)).astype(dtype)
    w = (0.7 * rng.normal(size=H)).astype(dtype)
    b = rng.normal(size=1).astype(dtype)
    return h, lengths, w, b


def forward(kind, h, lengths, w=None, b=None):
    """Run a forward kernel on outputs prefilled with NaN (they must be overwritten)."""
    B, T, H = h.shape
    out = np.full((B, H), np.nan, h.dtype)
    if kind == "mean":
        pool_cpu.mean_pool(h, lengths, out)
        return out, {}
    if kind == "max":
        argmax = np.full((B, H), 12345, np.int64)
        pool_cpu.max_pool(h, lengths, out, argmax)
        return out, {"argmax": argmax}
    scores = np.full((B, T), np.nan, h.dtype)
    weights = np.full((B, T), np.nan, h.dtype)
    pool_cpu.attention_pool(h, lengths, w, b, scores, weights, out)
    return out, {"scores": scores, "weights": weights}


def backward(kind, h, lengths, aux, d_out, w=None):
    """Run a backward kernel on gradients prefilled with NaN; returns a dict of gradients."""
    d_h = np.full(h.shape, np.nan, h.dtype)
    if kind == "mean":
        pool_cpu.mean_pool_backward(lengths, d_out, d_h)
        return {"h": d_h}
    if kind == "max":
        pool_cpu.max_pool_backward(aux["argmax"], d_out, d_h)
        return {"h": d_h}
    d_w = np.full(w.shape, np.nan, h.dtype)
    d_b = np.full(1, np.nan, h.dtype)
    pool_cpu.attention_pool_backward(h, lengths, w, aux["weights"], d_out, d_h, d_w, d_b)
    return {"h": d_h, "w": d_w, "b": d_b}


def reference(kind, h, lengths, w, b, d_out):
    """(out, aux, grads) from the NumPy references, in float64."""
    T = h.shape[1]
    if kind == "mean":
        return (naive_pool.mean_pool(h, lengths), {},
                {"h": naive_pool.mean_pool_backward(lengths, d_out, T)})
    if kind == "max":
        out, argmax = naive_pool.max_pool(h, lengths)
        return out, {"argmax": argmax}, {"h": naive_pool.max_pool_backward(h, lengths, d_out)}
    scores, weights, out = naive_pool.attention_pool(h, lengths, w, b)
    d_h, d_w, d_b = naive_pool.attention_pool_backward(h, lengths, w, b, d_out)
    return out, {"scores": scores, "weights": weights}, {"h": d_h, "w": d_w, "b": d_b}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, dtype):
    h, lengths, w, b = make_case(dtype)
    d_out = np.random.default_rng(1).normal(size=(h.shape[0], h.shape[2])).astype(dtype)
    out, aux = forward(kind, h, lengths, w, b)
    grads = backward(kind, h, lengths, aux, d_out, w)
    ref_out, ref_aux, ref_grads = reference(kind, h, lengths, w, b, d_out)
    tol = TOL[dtype]
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref_out, **tol)
    for name, value in aux.items():
        if name == "argmax":
            assert value.dtype == np.int64
            np.testing.assert_array_equal(value, ref_aux[name])
        else:
            assert value.dtype == dtype, name
            np.testing.assert_allclose(value, ref_aux[name], **tol, err_msg=name)
    assert set(grads) == set(ref_grads)
    for name, value in grads.items():
        assert value.dtype == dtype, name
        np.testing.assert_allclose(value, ref_grads[name], **tol, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_sequence_pools_to_zero(kind):
    h, lengths, w, b = make_case(np.float64, seed=2, lengths=[3, 0, 2])
    h[1] = np.nan  # an empty sequence's row is never read, whatever it holds
    h[0, 3:] = np.inf
    h[2, 2:] = -np.inf
    out, aux = forward(kind, h, lengths, w, b)
    grads = backward(kind, h, lengths, aux, np.ones_like(out), w)
    for arr in [out, *aux.values(), *grads.values()]:
        assert np.isfinite(arr).all()
    assert not out[1].any() and not grads["h"][1].any()
    if kind == "max":
        assert (aux["argmax"][1] == -1).all()
    if kind == "attention":
        assert not aux["weights"][1].any() and not aux["scores"][1].any()
        # Only the empty sequence: nothing to pool, so no gradient for the shared parameters.
        out, aux = forward(kind, h[1:2], lengths[1:2], w, b)
        grads = backward(kind, h[1:2], lengths[1:2], aux, np.ones_like(out), w)
        assert not out.any() and not grads["h"].any()
        assert not grads["w"].any() and not grads["b"].any()


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind):
    h, lengths, w, b = make_case(np.float64, seed=3, B=4, T=5, H=3, lengths=[5, 2, 1, 0])
    r = np.random.default_rng(4).normal(size=(h.shape[0], h.shape[2]))

    def loss():
        return float((forward(kind, h, lengths, w, b)[0] * r).sum())

    _, aux = forward(kind, h, lengths, w, b)
    grads = backward(kind, h, lengths, aux, r, w)
    assert relative_error(numerical_gradient(loss, h), grads["h"]) < 1e-6
    if kind == "attention":
        assert relative_error(numerical_gradient(loss, w), grads["w"]) < 1e-6
        # The bias cancels in the softmax: both gradients are 0 up to rounding, where a relative
        # error means nothing. (test_attention_backward_formula checks the kernel's d_b.)
        assert abs(numerical_gradient(loss, b)[0]) < 1e-7
        assert abs(grads["b"][0]) < 1e-12


def test_attention_backward_formula():
    """d_h, d_w and d_b follow the documented formulas for any given weights.

    With the softmax's weights, d_b is 0 up to rounding and no comparison can tell it from 0;
    weights that do not sum to one make every term of ``ds_t = a_t (g_t - sum_u a_u g_u)`` count.
    """
    h, lengths, w, b = make_case(np.float64, seed=10)
    rng = np.random.default_rng(11)
    d_out = rng.normal(size=(h.shape[0], h.shape[2]))
    _, aux = forward("attention", h, lengths, w, b)
    weights = aux["weights"] * rng.uniform(0.2, 1.0, size=aux["weights"].shape)
    grads = backward("attention", h, lengths, {"weights": weights}, d_out, w)
    g = np.einsum("bth,bh->bt", h, d_out)
    ds = weights * (g - (weights * g).sum(axis=1, keepdims=True))  # weights are 0 at padding
    np.testing.assert_allclose(grads["h"], weights[..., None] * d_out[:, None, :]
                               + ds[..., None] * w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], np.einsum("bt,bth->h", ds, h), rtol=1e-12, atol=1e-12)
    assert abs(ds.sum()) > 0.1
    np.testing.assert_allclose(grads["b"], [ds.sum()], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_changes_nothing(kind):
    h, lengths, w, b = make_case(np.float64, seed=5)
    B, T, H = h.shape
    mask = (np.arange(T)[None, :] < lengths[:, None])[..., None]
    h = h * mask  # the narrow batch has zeros in its padding, the wide one large garbage
    rng = np.random.default_rng(6)
    wide = 1e3 + 1e3 * np.abs(rng.normal(size=(B, T + 3, H)))  # would win every max
    wide[:, :T] = np.where(mask, h, wide[:, :T])
    d_out = rng.normal(size=(B, H))
    out, aux = forward(kind, h, lengths, w, b)
    out_w, aux_w = forward(kind, wide, lengths, w, b)
    np.testing.assert_allclose(out_w, out, rtol=1e-12, atol=1e-12)
    if kind == "max":
        np.testing.assert_array_equal(aux_w["argmax"], aux["argmax"])
    for name in set(aux) - {"argmax"}:  # per-step arrays (B, T)
        np.testing.assert_allclose(aux_w[name][:, :T], aux[name], rtol=1e-12, atol=1e-12)
        assert not aux_w[name][:, T:].any(), name
    grads = backward(kind, h, lengths, aux, d_out, w)
    grads_w = backward(kind, wide, lengths, aux_w, d_out, w)
    np.testing.assert_allclose(grads_w["h"][:, :T], grads["h"], rtol=1e-12, atol=1e-12)
    assert not grads["h"][~mask[..., 0]].any() and not grads_w["h"][:, T:].any()
    for name in set(grads) - {"h"}:
        np.testing.assert_allclose(grads_w[name], grads[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_weights_are_a_distribution_over_valid_steps(dtype):
    h, lengths, w, b = make_case(dtype, seed=7, B=9, T=11, H=6)
    h[::2, :, 0] *= 1000  # scores over thousands: exp overflows unless the max is subtracted
    w[0] = 1
    _, aux = forward("attention", h, lengths, w, b)
    weights, scores = aux["weights"], aux["scores"]
    valid = np.arange(h.shape[1])[None, :] < lengths[:, None]
    assert (weights[~valid] == 0).all() and (scores[~valid] == 0).all()
    assert (weights[valid] >= 0).all()
    sums = weights.sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(sums[lengths > 0], 1.0, rtol=0, atol=1e-6 if dtype == np.float32
                               else 1e-13)
    assert sums[lengths == 0].tolist() == [0.0] * int((lengths == 0).sum())
    assert (weights[lengths == 1, 0] == 1).all()


def test_attention_bias_shifts_scores_and_nothing_else():
    h, lengths, w, b = make_case(np.float64, seed=8)
    out, aux = forward("attention", h, lengths, w, b)
    out2, aux2 = forward("attention", h, lengths, w, b + 2.5)
    valid = np.arange(h.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_allclose(aux2["scores"][valid], aux["scores"][valid] + 2.5, rtol=1e-12)
    np.testing.assert_allclose(aux2["weights"], aux["weights"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_ties_go_to_the_first_step(dtype):
    # Feature 0 ties at steps 1 and 3, feature 1 is constant, feature 2 has its maximum in the
    # padding (never a candidate) and ties at 0 and 2 among the valid steps.
    h = np.array([[[0, 5, 1], [4, 5, 0], [1, 5, 1], [4, 5, -2], [9, 9, 9]]], dtype=dtype)
    lengths = np.array([4], dtype=np.int64)
    out, aux = forward("max", h, lengths)
    np.testing.assert_array_equal(out, [[4, 5, 1]])
    np.testing.assert_array_equal(aux["argmax"], [[1, 0, 0]])
    d_out = np.array([[1, 2, 3]], dtype=dtype)
    d_h = backward("max", h, lengths, aux, d_out)["h"]
    expected = np.zeros_like(h)
    expected[0, 1, 0], expected[0, 0, 1], expected[0, 0, 2] = 1, 2, 3
    np.testing.assert_array_equal(d_h, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_same_inputs_same_bits(kind):
    h, lengths, w, b = make_case(np.float32, seed=9, B=16, T=12, H=24)
    d_out = np.random.default_rng(10).normal(size=(16, 24)).astype(np.float32)
    runs = []
    for _ in range(2):
        out, aux = forward(kind, h, lengths, w, b)
        grads = backward(kind, h, lengths, aux, d_out, w)
        runs.append([out, *aux.values(), *grads.values()])
    for first, second in zip(*runs, strict=True):
        np.testing.assert_array_equal(first, second)
