"""The CUDA recurrent kernels against the NumPy references (tests/naive.py) and the CPU kernels."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import naive
from tagger.kernels import rnn_cuda
from tagger.nn import recurrent as R

CELLS = ["lstm", "gru", "rnn", "irnn"]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def make_case(cell, dtype, seed=0, B=5, T=7, D=3, H=5, lengths=None):
    rng = np.random.default_rng(seed)
    params = R.init_direction(cell, D, H, rng, dtype)
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(dtype) for k, v in params.items()}
    if cell == "irnn":
        params["U"] = (0.5 * params["U"]).astype(dtype)
    x = rng.normal(size=(B, T, D)).astype(dtype)
    if lengths is None:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0], lengths[-1] = T, 0  # a full and an empty sequence
    lengths = np.asarray(lengths, dtype=np.int64)
    h0 = rng.normal(size=(B, H)).astype(dtype)
    c0 = rng.normal(size=(B, H)).astype(dtype)
    return params, x, lengths, h0, c0


def run_cuda(cell, params, x, lengths, h0, c0, reverse, d_out, d_h, d_c):
    """Forward and backward on the device; results copied back to the host."""
    B, T, D = x.shape
    H = params["U"].shape[0]
    dt = x.dtype
    dev = {k: cuda.to_device(v) for k, v in params.items()}
    dx_, dl, dh0_ = cuda.to_device(x), cuda.to_device(lengths), cuda.to_device(h0)
    out, h_prev = cuda.device_array((B, T, H), dt), cuda.device_array((B, T, H), dt)
    h_last = cuda.device_array((B, H), dt)
    grads = {k: cuda.device_array(v.shape, dt) for k, v in params.items()}
    g_dx, g_h0 = cuda.device_array((B, T, D), dt), cuda.device_array((B, H), dt)
    d_out_, d_h_ = cuda.to_device(d_out), cuda.to_device(d_h)
    result = {}
    if cell == "lstm":
        c0_ = cuda.to_device(c0)
        c_out, gates = cuda.device_array((B, T, H), dt), cuda.device_array((B, T, 4 * H), dt)
        c_last, g_c0 = cuda.device_array((B, H), dt), cuda.device_array((B, H), dt)
        d_gates = cuda.device_array((B, T, 4 * H), dt)
        rnn_cuda.lstm_forward(dx_, dl, dev["W"], dev["U"], dev["b"], dh0_, c0_, reverse, out,
                              c_out, gates, h_prev, h_last, c_last)
        rnn_cuda.lstm_backward(dx_, dl, dev["W"], dev["U"], c0_, reverse, gates, c_out, h_prev,
                               d_out_, d_h_, cuda.to_device(d_c), d_gates, g_dx, grads["W"],
                               grads["U"], grads["b"], g_h0, g_c0)
        result["c_last"], result["dc0"] = c_last.copy_to_host(), g_c0.copy_to_host()
    elif cell == "gru":
        gates, rec_n = cuda.device_array((B, T, 3 * H), dt), cuda.device_array((B, T, H), dt)
        d_gates = cuda.device_array((B, T, 3 * H), dt)
        rnn_cuda.gru_forward(dx_, dl, dev["W"], dev["U"], dev["b"], dev["b_rn"], dh0_, reverse,
                             out, gates, rec_n, h_prev, h_last)
        rnn_cuda.gru_backward(dx_, dl, dev["W"], dev["U"], reverse, gates, rec_n, h_prev, d_out_,
                              d_h_, d_gates, g_dx, grads["W"], grads["U"], grads["b"],
                              grads["b_rn"], g_h0)
    else:
        relu = cell == "irnn"
        d_pre = cuda.device_array((B, T, H), dt)
        rnn_cuda.rnn_forward(dx_, dl, dev["W"], dev["U"], dev["b"], dh0_, relu, reverse, out,
                             h_prev, h_last)
        rnn_cuda.rnn_backward(dx_, dl, dev["W"], dev["U"], relu, reverse, out, h_prev, d_out_,
                              d_h_, d_pre, g_dx, grads["W"], grads["U"], grads["b"], g_h0)
    result.update(out=out.copy_to_host(), h_last=h_last.copy_to_host(), dx=g_dx.copy_to_host(),
                  dh0=g_h0.copy_to_host(),
                  grads={k: v.copy_to_host() for k, v in grads.items()})
    return result


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference(cell, reverse, dtype):
    params, x, lengths, h0, c0 = make_case(cell, dtype)
    rng = np.random.default_rng(1)
    d_out = rng.normal(size=x.shape[:2] + (h0.shape[1],)).astype(dtype)
    d_h, d_c = rng.normal(size=h0.shape).astype(dtype), rng.normal(size=h0.shape).astype(dtype)
    got = run_cuda(cell, params, x, lengths, h0, c0, reverse, d_out, d_h, d_c)
    ref_out, ref_h, ref_c, ref = naive.direction_reference(cell, params, x, lengths, h0, c0,
                                                           reverse, d_out, d_h, d_c)
    tol = TOL[dtype]
    assert got["out"].dtype == dtype
    np.testing.assert_allclose(got["out"], ref_out, **tol)
    np.testing.assert_allclose(got["h_last"], ref_h, **tol)
    np.testing.assert_allclose(got["dx"], ref["dx"], **tol)
    np.testing.assert_allclose(got["dh0"], ref["dh0"], **tol)
    for name in params:
        np.testing.assert_allclose(got["grads"][name], ref["d" + name], **tol, err_msg=name)
    if cell == "lstm":
        np.testing.assert_allclose(got["c_last"], ref_c, **tol)
        np.testing.assert_allclose(got["dc0"], ref["dc0"], **tol)


@pytest.mark.parametrize("cell", CELLS)
def test_same_results_as_the_cpu_kernels(cell):
    params, x, lengths, h0, c0 = make_case(cell, np.float32, seed=5, B=4, T=6, D=4, H=3)
    rng = np.random.default_rng(2)
    d_out = rng.normal(size=x.shape[:2] + (3,)).astype(np.float32)
    d_h, d_c = rng.normal(size=h0.shape).astype(np.float32), rng.normal(size=h0.shape).astype(
        np.float32)
    got = run_cuda(cell, params, x, lengths, h0, c0, True, d_out, d_h, d_c)
    out, h_last, _, cache = R.direction_forward(cell, params, x, lengths, True, h0, c0)
    dx, grads, dh0, _ = R.direction_backward(params, cache, d_out, d_h, d_c)
    np.testing.assert_allclose(got["out"], out, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got["dx"], dx, rtol=2e-5, atol=2e-5)
    for name in params:
        np.testing.assert_allclose(got["grads"][name], grads[name], rtol=2e-5, atol=2e-5)


def test_gemm_against_numpy():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(7, 5)), rng.normal(size=(5, 9))
    C = cuda.device_array((7, 9))
    rnn_cuda.gemm(cuda.to_device(A), cuda.to_device(B), C)
    np.testing.assert_allclose(C.copy_to_host(), A @ B, rtol=1e-12)
    Ct = cuda.device_array((5, 5))
    rnn_cuda.gemm(cuda.to_device(A), cuda.to_device(A), Ct, trans_a=True)
    np.testing.assert_allclose(Ct.copy_to_host(), A.T @ A, rtol=1e-12)
    rnn_cuda.gemm(cuda.to_device(B), cuda.to_device(B), Ct, trans_b=True, accumulate=True)
    np.testing.assert_allclose(Ct.copy_to_host(), A.T @ A + B @ B.T, rtol=1e-12)


@pytest.mark.parametrize(("persistent", "reverse", "staged"), [
    (True, False, False), (True, True, False), (False, False, False), (False, True, False),
    (False, True, True),  # the staged product (its own tests below cover more geometries)
])
def test_lstm_recurrence_launch_modes(monkeypatch, persistent, reverse, staged):
    """The LSTM recurrence gives the reference results whether all steps run in one cooperative
    launch (grid-wide barriers; a single block under the simulator, which runs one block per
    cooperative grid) or in one launch per step (several blocks of units and of sequences), with
    either form of the backward product."""
    from tagger import _config

    monkeypatch.setattr(_config, "CUDA_PERSISTENT", persistent)
    monkeypatch.setattr(_config, "CUDA_STAGED_BACKWARD", staged)
    if persistent:  # every unit and sequence in one block
        monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 16)
        monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 4)
        monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 8)
    else:  # 2 unit blocks x 3 sequence groups
        monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
        monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 2)
        monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 2)
    params, x, lengths, h0, c0 = make_case("lstm", np.float64, seed=7, B=5, T=6, D=3, H=4)
    plan = rnn_cuda._Plan(5, 4, 4, 8)
    assert plan.grid == ((1, 1) if persistent else (2, 3))
    rng = np.random.default_rng(8)
    d_out = rng.normal(size=(5, 6, 4))
    d_h, d_c = rng.normal(size=h0.shape), rng.normal(size=h0.shape)
    calls = []
    for name in ("_lstm_forward_persistent", "_lstm_forward_one_step"):
        kernel = getattr(rnn_cuda, name)
        monkeypatch.setattr(rnn_cuda, name, _Recorder(kernel, name, calls))
    got = run_cuda("lstm", params, x, lengths, h0, c0, reverse, d_out, d_h, d_c)
    assert calls == (["_lstm_forward_persistent"] if persistent else
                     ["_lstm_forward_one_step"] * 6)
    ref_out, ref_h, ref_c, ref = naive.direction_reference("lstm", params, x, lengths, h0, c0,
                                                           reverse, d_out, d_h, d_c)
    tol = TOL[np.float64]
    np.testing.assert_allclose(got["out"], ref_out, **tol)
    np.testing.assert_allclose(got["c_last"], ref_c, **tol)
    np.testing.assert_allclose(got["dx"], ref["dx"], **tol)
    np.testing.assert_allclose(got["dh0"], ref["dh0"], **tol)
    np.testing.assert_allclose(got["dc0"], ref["dc0"], **tol)
    np.testing.assert_allclose(got["grads"]["U"], ref["dU"], **tol)


STAGED_CASES = {
    # 68 columns of gate gradients: two passes through shared memory (64, then 4)
    "two-passes": dict(B=3, H=17, units=4, rows=3, tpb=16, plan=(4, 3, 16, (5, 1))),
    # 5 tiles of four sequences for 4 threads: two groups of tiles, odd sizes
    "tile-groups": dict(B=19, H=2, units=1, rows=19, tpb=4, plan=(1, 19, 4, (2, 1))),
}


@pytest.mark.parametrize("case", list(STAGED_CASES))
def test_staged_backward_product_over_passes_and_tile_groups(monkeypatch, case):
    """The staged backward product gives the reference gradients when the gate gradients take
    two passes through shared memory, and when a block has more output tiles than threads."""
    from tagger import _config

    c = STAGED_CASES[case]
    monkeypatch.setattr(_config, "CUDA_STAGED_BACKWARD", True)
    monkeypatch.setattr(_config, "CUDA_PERSISTENT", False)
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", c["tpb"])
    monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", c["units"])
    monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", c["rows"])
    B, T, D, H = c["B"], 2, 3, c["H"]
    plan = rnn_cuda._Plan(B, H, 4, 8)
    assert (plan.HB, plan.RB, plan.tpb, plan.grid) == c["plan"]
    params, x, lengths, h0, c0 = make_case("lstm", np.float64, seed=21, B=B, T=T, D=D, H=H)
    rng = np.random.default_rng(22)
    d_out = rng.normal(size=(B, T, H))
    d_h, d_c = rng.normal(size=h0.shape), rng.normal(size=h0.shape)
    got = run_cuda("lstm", params, x, lengths, h0, c0, True, d_out, d_h, d_c)
    _, _, _, ref = naive.direction_reference("lstm", params, x, lengths, h0, c0, True, d_out,
                                             d_h, d_c)
    tol = TOL[np.float64]
    for name in ("dx", "dh0", "dc0"):
        np.testing.assert_allclose(got[name], ref[name], **tol, err_msg=name)
    np.testing.assert_allclose(got["grads"]["U"], ref["dU"], **tol)


class _Recorder:
    """A kernel stand-in that records its launches by name."""

    def __init__(self, kernel, name, calls):
        self.kernel, self.name, self.calls = kernel, name, calls

    def __getitem__(self, config):
        launch = self.kernel[config]

        def run(*args):
            self.calls.append(self.name)
            return launch(*args)

        return run

    def __getattr__(self, attr):
        return getattr(self.kernel, attr)


@pytest.mark.parametrize("split_k", [False, True])
def test_tiled_gemm_with_several_tiles(monkeypatch, split_k):
    from tagger import _config

    monkeypatch.setattr(_config, "CUDA_GEMM", "tiled")
    if split_k:  # K = 13 in chunks of 4 (the K slice under the test settings): 4 partial products
        monkeypatch.setattr(rnn_cuda, "_SPLIT_K_MIN_CHUNK", 1)
        monkeypatch.setattr(rnn_cuda, "_GEMM_BLOCKS_WANTED", 10_000)
    rng = np.random.default_rng(4)
    for trans_a in (False, True):
        for trans_b in (False, True):
            A = rng.normal(size=(13, 19) if trans_a else (19, 13))
            B = rng.normal(size=(11, 13) if trans_b else (13, 11))
            C0 = rng.normal(size=(19, 11))
            C = cuda.to_device(C0)
            rnn_cuda.gemm(cuda.to_device(A), cuda.to_device(B), C, trans_a, trans_b, True)
            expected = C0 + (A.T if trans_a else A) @ (B.T if trans_b else B)
            np.testing.assert_allclose(C.copy_to_host(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_pair_matches_the_two_directions(dtype):
    """Both directions in one launch give what each direction gives alone (the reference)."""
    B, T, D, H = 5, 6, 3, 4
    cases = [make_case("lstm", dtype, seed=s, B=B, T=T, D=D, H=H) for s in (11, 12)]
    x, lengths = cases[0][1], cases[0][2]
    rng = np.random.default_rng(13)
    d_out = rng.normal(size=(2, B, T, H)).astype(dtype)
    d_h, d_c = rng.normal(size=(2, B, H)).astype(dtype), rng.normal(size=(2, B, H)).astype(dtype)

    def stack(values):
        return cuda.to_device(np.ascontiguousarray(np.stack(values)))

    W, U, b = (stack([c[0][k] for c in cases]) for k in ("W", "U", "b"))
    h0, c0 = stack([c[3] for c in cases]), stack([c[4] for c in cases])
    xd, ld = cuda.to_device(x), cuda.to_device(lengths)
    h_out, c_out, h_prev = (cuda.device_array((2, B, T, H), dtype) for _ in range(3))
    gates, d_gates = (cuda.device_array((2, B, T, 4 * H), dtype) for _ in range(2))
    h_last, c_last, dh0, dc0 = (cuda.device_array((2, B, H), dtype) for _ in range(4))
    dx = cuda.device_array((2, B, T, D), dtype)
    dW, dU, db = (cuda.device_array(a.shape, dtype) for a in (W, U, b))
    rnn_cuda.lstm_forward_pair(xd, ld, W, U, b, h0, c0, h_out, c_out, gates, h_prev, h_last,
                               c_last)
    rnn_cuda.lstm_backward_pair(xd, ld, W, U, c0, gates, c_out, h_prev, cuda.to_device(d_out),
                                cuda.to_device(d_h), cuda.to_device(d_c), d_gates, dx, dW, dU, db,
                                dh0, dc0)
    tol = TOL[dtype]
    for k, (params, _, _, h0_k, c0_k) in enumerate(cases):
        ref_out, ref_h, ref_c, ref = naive.direction_reference(
            "lstm", params, x, lengths, h0_k, c0_k, k == 1, d_out[k], d_h[k], d_c[k])
        np.testing.assert_allclose(h_out.copy_to_host()[k], ref_out, **tol)
        np.testing.assert_allclose(h_last.copy_to_host()[k], ref_h, **tol)
        np.testing.assert_allclose(c_last.copy_to_host()[k], ref_c, **tol)
        np.testing.assert_allclose(dx.copy_to_host()[k], ref["dx"], **tol)
        np.testing.assert_allclose(dh0.copy_to_host()[k], ref["dh0"], **tol)
        np.testing.assert_allclose(dc0.copy_to_host()[k], ref["dc0"], **tol)
        for name, got in (("W", dW), ("U", dU), ("b", db)):
            np.testing.assert_allclose(got.copy_to_host()[k], ref["d" + name], **tol)
