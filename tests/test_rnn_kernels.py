"""The recurrent kernels against the NumPy references, finite differences and their invariances."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from gradcheck import numerical_gradient, relative_error
from tagger.kernels import rnn_cpu
from tagger.nn import recurrent as R

CELLS = ["lstm", "gru", "rnn", "irnn"]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def make_case(cell, dtype, seed=0, B=6, T=9, D=5, H=4, lengths=None):
    rng = np.random.default_rng(seed)
    params = R.init_direction(cell, D, H, rng, dtype)
    # Perturb every parameter so that no gate sits at its initial value (biases, identity U).
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(dtype) for k, v in params.items()}
    if cell == "irnn":
        params["U"] = (0.5 * params["U"]).astype(dtype)  # keep ReLU activations bounded
    x = rng.normal(size=(B, T, D)).astype(dtype)
    if lengths is None:
        lengths = rng.integers(0, T + 1, size=B)
        lengths[0], lengths[-1] = T, 0  # always a full and an empty sequence
    lengths = np.asarray(lengths, dtype=np.int64)
    h0 = rng.normal(size=(B, H)).astype(dtype)
    c0 = rng.normal(size=(B, H)).astype(dtype)
    return params, x, lengths, h0, c0


# Batch sizes on both sides of the backward's packing threshold (rnn_cpu._PACK_T_MIN_ROWS) and of
# the micro-kernels' row blocks (gemm_cpu.MR); hidden sizes whose gate blocks fill less than one
# panel of the packed products, and several panels plus a partial one.
SIZES = [dict(B=6, T=9, D=5, H=4), dict(B=1, T=7, D=3, H=20), dict(B=2, T=5, D=4, H=9),
         dict(B=11, T=6, D=7, H=20)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"B{s['B']}H{s['H']}")
def test_matches_reference(cell, reverse, dtype, sizes):
    lengths = [sizes["T"]] * sizes["B"] if sizes["B"] < 3 else None
    params, x, lengths, h0, c0 = make_case(cell, dtype, lengths=lengths, **sizes)
    rng = np.random.default_rng(1)
    d_out = rng.normal(size=x.shape[:2] + (h0.shape[1],)).astype(dtype)
    d_h, d_c = rng.normal(size=h0.shape).astype(dtype), rng.normal(size=h0.shape).astype(dtype)
    out, h_last, c_last, cache = R.direction_forward(cell, params, x, lengths, reverse, h0, c0)
    dx, grads, dh0, dc0 = R.direction_backward(params, cache, d_out, d_h, d_c)
    ref_out, ref_h, ref_c, ref = naive.direction_reference(cell, params, x, lengths, h0, c0,
                                                           reverse, d_out, d_h, d_c)
    tol = TOL[dtype]
    assert out.dtype == dtype and dx.dtype == dtype and grads["W"].dtype == dtype
    np.testing.assert_allclose(out, ref_out, **tol)
    np.testing.assert_allclose(h_last, ref_h, **tol)
    np.testing.assert_allclose(dx, ref["dx"], **tol)
    np.testing.assert_allclose(dh0, ref["dh0"], **tol)
    for name in params:
        np.testing.assert_allclose(grads[name], ref["d" + name], **tol, err_msg=name)
    if cell == "lstm":
        np.testing.assert_allclose(c_last, ref_c, **tol)
        np.testing.assert_allclose(dc0, ref["dc0"], **tol)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"B{s['B']}H{s['H']}")
def test_lstm_with_gathered_projections_matches_the_reference(sizes, reverse):
    """An LSTM whose inputs are rows of a table (ids): its projections gathered from
    ``table @ W`` (x of width 0), the gradient of the projections from the backward pass
    (``d_pre``), scattered per id and multiplied, give the reference's outputs and gradients."""
    dtype = np.float64
    B, T, D, H = sizes["B"], sizes["T"], sizes["D"], sizes["H"]
    params, _, lengths, h0, c0 = make_case("lstm", dtype, **sizes)
    rng = np.random.default_rng(2)
    table = rng.normal(size=(7, D))
    ids = rng.integers(0, 7, size=(B, T))
    ids_read = np.where(np.arange(T)[None, :] < lengths[:, None], ids, -1)
    x = table[ids] * (ids_read >= 0)[..., None]
    d_out = rng.normal(size=(B, T, H))
    d_h, d_c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    empty = dict(params, W=np.empty((0, 4 * H)))
    out, h_last, c_last, cache = R.direction_forward(
        "lstm", empty, np.empty((B, T, 0)), lengths, reverse, h0, c0,
        gather=(table @ params["W"], ids_read))
    d_pre = np.empty((B, T, 4 * H))
    dx, grads, dh0, dc0 = R.direction_backward(empty, cache, d_out, d_h, d_c, d_pre=d_pre)
    ref_out, ref_h, ref_c, ref = naive.direction_reference("lstm", params, x, lengths, h0, c0,
                                                           reverse, d_out, d_h, d_c)
    tol = TOL[dtype]
    assert dx.shape == (B, T, 0) and grads["W"].shape == (0, 4 * H)
    np.testing.assert_allclose(out, ref_out, **tol)
    np.testing.assert_allclose(c_last, ref_c, **tol)
    np.testing.assert_allclose(dh0, ref["dh0"], **tol)
    np.testing.assert_allclose(dc0, ref["dc0"], **tol)
    np.testing.assert_allclose(grads["U"], ref["dU"], **tol)
    np.testing.assert_allclose(grads["b"], ref["db"], **tol)
    # dW = x^T d_pre and dx = d_pre W^T, through the ids.
    flat = d_pre.reshape(B * T, 4 * H)
    np.testing.assert_allclose(x.reshape(B * T, D).T @ flat, ref["dW"], **tol)
    np.testing.assert_allclose((flat @ params["W"].T).reshape(B, T, D), ref["dx"], **tol)
    with pytest.raises(ValueError, match="gathered input projections"):
        R.direction_forward("gru", empty, np.empty((B, T, 0)), lengths, gather=(table, ids))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("lengths", [[5, 2], [2, 5], [5, 0], [0, 3], [3], [1]],
                         ids=lambda lengths: "-".join(map(str, lengths)))
def test_unpacked_backward_matches_reference_on_ragged_lengths(cell, reverse, lengths):
    # Fewer rows than rnn_cpu._PACK_T_MIN_ROWS: the backward's d @ U.T runs row by row without
    # the packed U.T, and rows drop out of it as their sentences end (or are padding only).
    assert len(lengths) < rnn_cpu._PACK_T_MIN_ROWS
    sizes = dict(B=len(lengths), T=5, D=3, H=6)
    params, x, lengths, h0, c0 = make_case(cell, np.float64, seed=4, lengths=lengths, **sizes)
    rng = np.random.default_rng(2)
    d_out = rng.normal(size=x.shape[:2] + (h0.shape[1],))
    d_h, d_c = rng.normal(size=h0.shape), rng.normal(size=h0.shape)
    out, h_last, c_last, cache = R.direction_forward(cell, params, x, lengths, reverse, h0, c0)
    dx, grads, dh0, dc0 = R.direction_backward(params, cache, d_out, d_h, d_c)
    ref_out, ref_h, ref_c, ref = naive.direction_reference(cell, params, x, lengths, h0, c0,
                                                           reverse, d_out, d_h, d_c)
    tol = TOL[np.float64]
    np.testing.assert_allclose(out, ref_out, **tol)
    np.testing.assert_allclose(h_last, ref_h, **tol)
    np.testing.assert_allclose(dx, ref["dx"], **tol)
    np.testing.assert_allclose(dh0, ref["dh0"], **tol)
    for name in params:
        np.testing.assert_allclose(grads[name], ref["d" + name], **tol, err_msg=name)
    if cell == "lstm":
        np.testing.assert_allclose(c_last, ref_c, **tol)
        np.testing.assert_allclose(dc0, ref["dc0"], **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("sizes", [dict(B=6, T=9, D=5, H=4),
                                   dict(B=7, T=6, D=3, H=17, lengths=[6, 5, 2, 2, 1, 0, 0]),
                                   dict(B=1, T=5, D=3, H=9, lengths=[5]),
                                   dict(B=1, T=45, D=3, H=9, lengths=[44]),
                                   dict(B=150, T=4, D=3, H=5,
                                        lengths=[4] * 40 + [3] * 50 + [2] * 40 + [1] * 20)])
def test_prediction_pass_matches_the_reference(sizes, reverse, dtype):
    # In the second case only rows 0 and 1 run from step 2 on: the products of the last steps
    # have fewer rows than the first. A single sequence reads U in place below
    # rnn_cpu._PACK_MIN_STEPS_ONE_ROW steps (the third case) and packs it from there (the fourth).
    params, x, lengths, h0, c0 = make_case("lstm", dtype, seed=3, **sizes)
    out, h_last, c_last, cache = R.direction_forward("lstm", params, x, lengths, reverse, h0, c0,
                                                     need_backward=False)
    assert cache is None and out.dtype == dtype
    ref_out, ref_h, ref_c, _ = naive.direction_reference(
        "lstm", params, x, lengths, h0, c0, reverse, np.zeros_like(out),
        np.zeros_like(h0), np.zeros_like(c0))
    np.testing.assert_allclose(out, ref_out, **TOL[dtype])
    np.testing.assert_allclose(h_last, ref_h, **TOL[dtype])
    np.testing.assert_allclose(c_last, ref_c, **TOL[dtype])
    train_out, train_h, train_c, _ = R.direction_forward("lstm", params, x, lengths, reverse, h0,
                                                         c0)
    # The same function to rounding (the prediction pass fuses the gate arithmetic).
    np.testing.assert_allclose(out, train_out, **TOL[dtype])
    np.testing.assert_allclose(c_last, train_c, **TOL[dtype])
    assert (out[np.arange(x.shape[1]) >= lengths[:, None]] == 0).all()
    if x.shape[0] > rnn_cpu._INFER_ROW_BLOCK:
        # The fifth case runs in three blocks of sequences; a block alone gives the same bits.
        block = slice(rnn_cpu._INFER_ROW_BLOCK, 2 * rnn_cpu._INFER_ROW_BLOCK)
        alone = R.direction_forward("lstm", params, x[block], lengths[block], reverse, h0[block],
                                    c0[block], need_backward=False)[0]
        np.testing.assert_array_equal(out[block], alone)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [dict(B=6, T=9, D=5, H=4), dict(B=1, T=7, D=3, H=20, lengths=[7]),
                                   dict(B=11, T=6, D=7, H=20), dict(B=130, T=3, D=4, H=6)])
def test_paired_prediction_pass_is_both_directions_concatenated(sizes, dtype):
    """The stack's one-call prediction pass of both LSTM directions gives the bits of the two
    directions run one by one and concatenated."""
    stack = R.RNNStack("lstm", sizes["D"], sizes["H"], num_layers=2, bidirectional=True)
    rng = np.random.default_rng(8)
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(dtype)
              for k, v in stack.init_params(rng, dtype).items()}
    _, x, lengths, _, _ = make_case("lstm", dtype, seed=9, **sizes)
    out, _ = stack.forward(params, x, lengths, need_backward=False)
    inputs = x
    for layer in range(2):
        halves = [R.direction_forward("lstm", stack._direction_params(params, layer, d), inputs,
                                      lengths, reverse=d == "bwd", need_backward=False)[0]
                  for d in ("fwd", "bwd")]
        inputs = np.concatenate(halves, axis=2)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, inputs)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, reverse):
    params, x, lengths, h0, c0 = make_case(cell, np.float64, seed=3, B=3, T=5, D=3, H=2,
                                           lengths=[5, 3, 2])
    rng = np.random.default_rng(4)
    w_out = rng.normal(size=x.shape[:2] + (2,))
    w_h, w_c = rng.normal(size=h0.shape), rng.normal(size=h0.shape)

    def loss():
        out, h, c, _ = R.direction_forward(cell, params, x, lengths, reverse, h0, c0)
        return (out * w_out).sum() + (h * w_h).sum() + ((c * w_c).sum() if c is not None else 0.0)

    _, _, _, cache = R.direction_forward(cell, params, x, lengths, reverse, h0, c0)
    dx, grads, dh0, dc0 = R.direction_backward(params, cache, w_out, w_h, w_c)
    analytic = dict(grads, x=dx, h0=dh0)
    arrays = dict(params, x=x, h0=h0)
    if cell == "lstm":
        analytic["c0"], arrays["c0"] = dc0, c0
    for name, arr in arrays.items():
        assert relative_error(numerical_gradient(loss, arr), analytic[name]) < 1e-6, name


@pytest.mark.parametrize("cell", CELLS)
def test_padding_changes_nothing(cell):
    params, x, lengths, h0, c0 = make_case(cell, np.float64, seed=5)
    B, T, D = x.shape
    wide = np.random.default_rng(6).normal(size=(B, T + 4, D)) * 100  # garbage in the padding
    wide[:, :T] = x
    mask = (np.arange(T)[None, :] < lengths[:, None])[..., None]
    x = x * mask  # the narrow batch has zeros in its padding, the wide one garbage
    wide[:, :T] = np.where(mask, wide[:, :T], 7.0)
    for reverse in (False, True):
        out, h, _, cache = R.direction_forward(cell, params, x, lengths, reverse, h0, c0)
        out_w, h_w, _, cache_w = R.direction_forward(cell, params, wide, lengths, reverse, h0, c0)
        np.testing.assert_allclose(out_w[:, :T], out, rtol=1e-12, atol=1e-12)
        assert not out_w[:, T:].any() and not out[~mask[..., 0]].any()
        np.testing.assert_allclose(h_w, h, rtol=1e-12, atol=1e-12)
        d = np.random.default_rng(7).normal(size=out_w.shape)
        dx, g, _, _ = R.direction_backward(params, cache, d[:, :T])
        dx_w, g_w, _, _ = R.direction_backward(params, cache_w, d)
        np.testing.assert_allclose(dx_w[:, :T], dx, rtol=1e-12, atol=1e-12)
        assert not dx_w[:, T:].any()
        for name in g:
            np.testing.assert_allclose(g_w[name], g[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_reverse_equals_forward_on_reversed_input(cell):
    params, x, lengths, h0, c0 = make_case(cell, np.float64, seed=8)
    x_rev = np.empty_like(x)
    rnn_cpu.reverse_padded(x, lengths, x_rev)
    out_rev, h_rev, _, _ = R.direction_forward(cell, params, x, lengths, True, h0, c0)
    out_fwd, h_fwd, _, _ = R.direction_forward(cell, params, x_rev, lengths, False, h0, c0)
    back = np.empty_like(out_fwd)
    rnn_cpu.reverse_padded(out_fwd, lengths, back)
    np.testing.assert_allclose(out_rev, back, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_rev, h_fwd, rtol=1e-12, atol=1e-12)


def test_reverse_padded_reverses_within_length():
    x = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    out = np.empty_like(x)
    rnn_cpu.reverse_padded(x, np.array([3, 2]), out)
    np.testing.assert_array_equal(out[0], x[0, ::-1])
    np.testing.assert_array_equal(out[1], [x[1, 1], x[1, 0], [0, 0]])


@pytest.mark.parametrize("cell", CELLS)
def test_same_inputs_same_bits(cell):
    params, x, lengths, h0, c0 = make_case(cell, np.float32, seed=9)
    runs = []
    for _ in range(2):
        out, h, _, cache = R.direction_forward(cell, params, x, lengths, True, h0, c0)
        dx, g, _, _ = R.direction_backward(params, cache, out)
        runs.append([out, h, dx] + [g[k] for k in sorted(g)])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_lstm_forget_bias_starts_at_one_and_irnn_is_identity():
    rng = np.random.default_rng(0)
    p = R.init_direction("lstm", 3, 4, rng)
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    p = R.init_direction("irnn", 3, 4, rng)
    np.testing.assert_array_equal(p["U"], np.eye(4))
    p = R.init_direction("gru", 3, 4, rng)
    for k in range(3):  # one orthogonal block per gate
        block = p["U"][:, 4 * k : 4 * (k + 1)].astype(np.float64)
        np.testing.assert_allclose(block @ block.T, np.eye(4), atol=1e-6)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown cell 'lstn'"):
        R.init_direction("lstn", 3, 4, np.random.default_rng(0))


def test_scratch_is_reused_per_thread_and_never_shared_between_threads():
    import threading

    first = R._scratch((4, 5, 6), np.float32)
    smaller = R._scratch((3, 7), np.float32)
    assert smaller.shape == (3, 7) and np.shares_memory(first, smaller)
    assert not np.shares_memory(first, R._scratch((2, 3), np.float64))  # per dtype
    seen = []
    worker = threading.Thread(target=lambda: seen.append(R._scratch((4, 5, 6),
                                                                            np.float32)))
    worker.start()
    worker.join()
    assert not np.shares_memory(first, seen[0])


@pytest.mark.parametrize("cell", CELLS)
def test_backward_twice_gives_the_same_gradients(cell):
    """The backward pass's work array is reused between calls: a second call, after another
    layer's backward pass of a different size in between, gives the same bits."""
    params, x, lengths, h0, c0 = make_case(cell, np.float32, seed=4)
    d_out = np.random.default_rng(5).normal(size=x.shape[:2] + (h0.shape[1],)).astype(np.float32)
    out, _, _, cache = R.direction_forward(cell, params, x, lengths, False, h0, c0)
    first = R.direction_backward(params, cache, d_out)
    other = make_case(cell, np.float32, seed=6, B=9, T=11, D=5, H=7)
    _, _, _, other_cache = R.direction_forward(cell, other[0], *other[1:3])
    R.direction_backward(other[0], other_cache, np.ones((9, 11, 7), np.float32))
    second = R.direction_backward(params, cache, d_out)
    np.testing.assert_array_equal(first[0], second[0])
    for name in first[1]:
        np.testing.assert_array_equal(first[1][name], second[1][name])


def test_workspace_reuses_the_smallest_fitting_buffer_and_keeps_no_more_than_it_lent():
    ws = R.Workspace()
    big, small = ws.take((4, 50), np.float32), ws.take((3, 10), np.float32)
    ws.give([big, small])
    again = ws.take((2, 12), np.float32)  # 24 elements: the 30-element buffer fits best
    assert again.shape == (2, 12) and np.shares_memory(again, small)
    assert not np.shares_memory(ws.take((5,), np.float64), big)  # per dtype
    ws.give([again])
    grown = ws.take((10, 30), np.float32)  # nothing fits: the largest too-small one is dropped
    assert not np.shares_memory(grown, big) and not np.shares_memory(grown, again)
    assert ws.nbytes == 30 * 4  # only the other one is left
    ws.give([grown, grown])  # handing back twice keeps one copy
    assert ws.nbytes == (30 + 300) * 4
    ws.clear()
    assert ws.nbytes == 0


def _stack_case(bidirectional, seed=0):
    rng = np.random.default_rng(seed)
    stack = R.RNNStack("lstm", 5, 6, num_layers=2, bidirectional=bidirectional)
    params = stack.init_params(rng)
    batches = []
    for B, T in [(4, 7), (3, 9), (5, 4)]:  # lengths differ: buffers are reused at other sizes
        x = rng.normal(size=(B, T, 5)).astype(np.float32)
        lengths = rng.integers(1, T + 1, size=B)
        d_out = rng.normal(size=(B, T, stack.output_size)).astype(np.float32)
        batches.append((x, lengths, d_out))
    return stack, params, batches


@pytest.mark.parametrize("bidirectional", [True, False])
def test_stack_reusing_its_workspace_gives_the_bits_of_fresh_arrays(bidirectional):
    stack, params, batches = _stack_case(bidirectional)
    results = []
    for x, lengths, d_out in batches:
        out, cache = stack.forward(params, x, lengths)
        results.append((out.copy(), *stack.backward(params, cache, d_out)))
    assert stack.workspace.nbytes > 0
    for (x, lengths, d_out), (out, dx, grads) in zip(batches, results, strict=True):
        fresh = R.RNNStack("lstm", 5, 6, num_layers=2, bidirectional=bidirectional)
        out_f, cache_f = fresh.forward(params, x, lengths)
        dx_f, grads_f = fresh.backward(params, cache_f, d_out)
        np.testing.assert_array_equal(out, out_f)
        np.testing.assert_array_equal(dx, dx_f)
        for name in grads_f:
            np.testing.assert_array_equal(grads[name], grads_f[name])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_stack_output_survives_the_next_batch(bidirectional):
    """The arrays handed back after a backward pass are never ones the caller was given."""
    stack, params, batches = _stack_case(bidirectional)
    (x, lengths, d_out), (x2, lengths2, d_out2) = batches[0], batches[1]
    out, cache = stack.forward(params, x, lengths)
    kept = out.copy()
    stack.backward(params, cache, d_out)
    _, cache2 = stack.forward(params, x2, lengths2)
    stack.backward(params, cache2, d_out2)
    np.testing.assert_array_equal(out, kept)


def test_stack_backward_twice_on_one_forward_is_a_clear_error():
    stack, params, batches = _stack_case(True)
    x, lengths, d_out = batches[0]
    _, cache = stack.forward(params, x, lengths)
    stack.backward(params, cache, d_out)
    with pytest.raises(RuntimeError, match="already used by a backward pass"):
        stack.backward(params, cache, d_out)


def test_lstm_backward_packs_into_the_given_work_array_or_its_own():
    """The CPU LSTM backward pass packs the gate gradients into the caller's work array when
    given one, else into one of its own: the same bits either way."""
    from tagger.kernels.gemm_cpu import packed_shape

    params, x, lengths, h0, c0 = make_case("lstm", np.float32, seed=11, B=5, T=6, D=4, H=9)
    B, T, _ = x.shape
    H = 9
    _, _, _, cache = R.direction_forward("lstm", params, x, lengths, False, h0, c0)
    d_h = np.random.default_rng(12).normal(size=(B, T, H)).astype(np.float32)
    results = []
    for extra in ((), (np.full(packed_shape(B * T, 4 * H, np.float32), np.nan, np.float32),)):
        out = [np.empty((B, T, 4 * H), np.float32), np.empty_like(x),
               np.empty_like(params["W"]), np.empty_like(params["U"]),
               np.empty_like(params["b"]), np.empty((B, H), np.float32),
               np.empty((B, H), np.float32)]
        rnn_cpu.lstm_backward(x, lengths, params["W"], params["U"], c0, False, cache.gates,
                              cache.c_out, cache.h_prev, d_h, np.zeros_like(h0),
                              np.zeros_like(c0), *out, *extra)
        results.append(out)
    for first, second in zip(*results, strict=True):
        np.testing.assert_array_equal(first, second)
    assert np.isfinite(results[0][3]).all()
