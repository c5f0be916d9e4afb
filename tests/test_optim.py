"""Optimizers, clipping and initialisers against their textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tagger.nn import init
from tagger.nn.optim import (
    SGD,
    Adam,
    clip_grad_norm,
    clip_scale,
    decayed_learning_rate,
    global_norm,
    make_optimizer,
)


def test_adam_matches_the_paper_update():
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=5)
    grads = [rng.normal(size=5) for _ in range(4)]
    params = {"w": p0.copy()}
    opt = Adam(0.1, beta1=0.9, beta2=0.99, eps=1e-8)
    m = v = np.zeros(5)
    expected = p0.copy()
    for t, g in enumerate(grads, start=1):
        opt.step(params, {"w": g})
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.99**t)
        expected = expected - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
        np.testing.assert_allclose(params["w"], expected, rtol=1e-12)


def test_sgd_momentum_and_nesterov():
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    params = {"w": np.zeros(2)}
    opt = SGD(0.1, momentum=0.9)
    opt.step(params, {"w": g1})
    opt.step(params, {"w": g2})
    # v1 = g1, v2 = 0.9 g1 + g2
    np.testing.assert_allclose(params["w"], -0.1 * g1 - 0.1 * (0.9 * g1 + g2))
    params = {"w": np.zeros(2)}
    opt = SGD(0.1, momentum=0.9, nesterov=True)
    opt.step(params, {"w": g1})
    np.testing.assert_allclose(params["w"], -0.1 * (g1 + 0.9 * g1))


def test_optimizer_state_round_trip_resumes_exactly():
    rng = np.random.default_rng(1)
    grads = [{"a": rng.normal(size=3), "b": rng.normal(size=(2, 2))} for _ in range(5)]
    full = {"a": np.ones(3), "b": np.ones((2, 2))}
    opt = Adam(0.05)
    for g in grads:
        opt.step(full, g)
    resumed = {"a": np.ones(3), "b": np.ones((2, 2))}
    first = Adam(0.05)
    for g in grads[:2]:
        first.step(resumed, g)
    second = Adam(0.05)
    second.load_state_dict(first.state_dict())
    for g in grads[2:]:
        second.step(resumed, g)
    for k in full:
        np.testing.assert_array_equal(full[k], resumed[k])


def test_clip_grad_norm_scales_globally():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.0, 0.8]])
    assert math.isclose(clip_grad_norm(grads, 10.0), 1.0, rel_tol=1e-9)  # under the limit
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])


def test_clip_reports_non_finite_norm_without_touching_gradients():
    grads = {"a": np.array([np.nan, 1.0])}
    assert math.isnan(clip_grad_norm(grads, 1.0))
    assert grads["a"][1] == 1.0


def test_learning_rate_decay_and_bad_names():
    assert decayed_learning_rate(0.1, 0.05, 0) == 0.1
    assert decayed_learning_rate(0.1, 0.05, 10) == pytest.approx(0.1 / 1.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        make_optimizer("adamw", 0.1)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        SGD(0.0)


def test_initialisers():
    rng = np.random.default_rng(0)
    q = init.orthogonal(rng, (6, 4), dtype=np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    q = init.orthogonal(rng, (3, 5), dtype=np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    w = init.glorot_uniform(rng, (100, 300))
    assert w.dtype == np.float32 and np.abs(w).max() <= np.sqrt(6 / 400)
    assert abs(w.std() - np.sqrt(6 / 400) / np.sqrt(3)) < 0.01
    np.testing.assert_array_equal(init.identity((3, 3), gain=2.0), 2 * np.eye(3))


def _adam_numpy(p, grads, lr, b1, b2, eps, wd, scale):
    """The float32 Adam update written as NumPy expressions, one rounding per operation."""
    dtype = p.dtype.type
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g * dtype(scale) + dtype(wd) * p
        m = m * dtype(b1) + dtype(1 - b1) * g
        v = v * dtype(b2) + dtype(1 - b2) * (g * g)
        lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        eps_t = eps * math.sqrt(1 - b2**t)
        p = p - dtype(lr_t) * m / (np.sqrt(v) + dtype(eps_t))
    return p


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_adam_float32_kernel_matches_numpy_with_scale_and_weight_decay(layout):
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=(37, 11)).astype(np.float32)
    grads = [rng.normal(size=(37, 11)).astype(np.float32) for _ in range(5)]
    expected = _adam_numpy(p0, grads, 0.01, 0.9, 0.999, 1e-8, 0.01, 0.25)
    if layout == "C":
        param = p0.copy()
    elif layout == "F":
        param = np.asfortranarray(p0)
    else:
        holder = np.zeros((37, 22), np.float32)
        param = holder[:, ::2]
        param[...] = p0
    opt = Adam(0.01, weight_decay=0.01)
    for g in grads:
        opt.step({"w": param}, {"w": g if layout != "F" else np.asfortranarray(g)}, scale=0.25)
    assert param.dtype == np.float32
    np.testing.assert_allclose(param, expected, rtol=2e-6, atol=1e-7)
    # The update moved the weights by far more than the tolerance.
    assert np.abs(param - p0).max() > 0.04
    if layout == "strided":
        assert not holder[:, 1::2].any()  # the update wrote the view, nothing beside it


def test_step_scale_equals_clipping_the_gradients_first():
    rng = np.random.default_rng(4)
    grads = {"a": rng.normal(size=(8, 3)).astype(np.float32),
             "b": 10 * rng.normal(size=5).astype(np.float32)}
    start = {k: rng.normal(size=g.shape).astype(np.float32) for k, g in grads.items()}
    clipped = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(clipped, 1.0)
    assert norm > 1.0
    for opt_cls in (Adam, lambda lr: SGD(lr, momentum=0.9)):
        by_scale = {k: v.copy() for k, v in start.items()}
        by_clip = {k: v.copy() for k, v in start.items()}
        untouched = {k: g.copy() for k, g in grads.items()}
        opt_cls(0.1).step(by_scale, grads, scale=clip_scale(norm, 1.0))
        opt_cls(0.1).step(by_clip, clipped)
        for k in start:
            np.testing.assert_allclose(by_scale[k], by_clip[k], rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(grads[k], untouched[k])


def test_global_norm_in_float64_over_float32_gradients():
    rng = np.random.default_rng(5)
    grads = {"a": rng.normal(size=(300, 7)).astype(np.float32),
             "b": rng.normal(size=(4, 9)).astype(np.float32)[:, ::2]}
    expected = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert global_norm(grads) == pytest.approx(expected, rel=1e-14)
    assert clip_scale(expected, None) == 1.0
    assert clip_scale(expected, 2 * expected) == 1.0
    assert clip_scale(float("inf"), 1.0) == 1.0
    assert clip_scale(4.0, 1.0) == pytest.approx(0.25)


def test_adam_refuses_a_gradient_of_another_shape():
    opt = Adam(0.1)
    with pytest.raises(ValueError, match="gradient of 'w' has shape \\(3,\\)"):
        opt.step({"w": np.zeros(4)}, {"w": np.zeros(3)})
    assert not opt.state  # no moments kept for the refused step


@pytest.mark.parametrize("optimizer", [Adam(0.1), SGD(0.1, momentum=0.9)])
@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros(2), np.zeros((3, 1)),
                                 np.zeros(3, np.float32)])
def test_a_state_slot_unlike_its_parameter_is_refused_before_the_kernel(optimizer, bad):
    """A state from a model file reaches the update kernels only if it matches the parameter
    exactly: a shorter slot would be written past its end."""
    params = {"w": np.ones(3)}
    key = "m.w" if isinstance(optimizer, Adam) else "w"
    state = {"steps": np.array(1, np.int64), f"slot.{key}": bad}
    if isinstance(optimizer, Adam):
        state["slot.v.w"] = np.zeros(3)
    optimizer.load_state_dict(state)
    with pytest.raises(ValueError, match=f"optimizer state '{key}' has shape"):
        optimizer.step(params, {"w": np.ones(3)})
    np.testing.assert_array_equal(params["w"], np.ones(3))


@pytest.mark.parametrize("steps", [np.array(-1), np.array([1, 2]), np.array(1.5)])
def test_a_bad_step_count_is_refused(steps):
    with pytest.raises(ValueError, match="step count"):
        Adam(0.1).load_state_dict({"steps": steps})
