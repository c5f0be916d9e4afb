"""The CUDA twins of the small CPU kernels (ops_cuda, optim_cuda) against ops_cpu, optim_cpu and
the NumPy code of the CPU engine, and the CRF's device-built transition scores against the host
path. Outputs start as garbage (NaN or 7), so that a kernel that skips an element fails."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda
from numpy.testing import assert_allclose, assert_array_equal

from tagger.kernels import crf_cuda, ops_cpu, ops_cuda, optim_cpu, optim_cuda
from tagger.nn.heads import SoftmaxHead
from tagger.nn.optim import SGD

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def garbage(shape, dtype=np.float64):
    """A device array full of NaN (7 for integers)."""
    fill = np.nan if np.issubdtype(dtype, np.floating) else 7
    return cuda.to_device(np.full(shape, fill, dtype))


# ----------------------------------------------------------------------------------------------
# embeddings and column blocks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (5,)])
def test_embedding_lookup_and_backward_match_the_cpu(dtype, shape):
    rng = np.random.default_rng(0)
    V, D = 4, 3
    table = rng.normal(size=(V, D)).astype(dtype)
    ids = rng.integers(0, V, size=shape).astype(np.int64)
    ids.flat[1] = -1
    ids.flat[-1] = ids.flat[0]  # a repeated id: two rows add into one
    out = garbage(shape + (D,), dtype)
    ops_cuda.embedding_lookup(dev(table), dev(ids), out)
    want = np.empty(shape + (D,), dtype)
    ops_cpu.embedding_lookup(table, ids, want)
    assert_array_equal(out.copy_to_host(), want)
    assert not want.reshape(-1, D)[1].any()

    d_out = rng.normal(size=shape + (D,)).astype(dtype)
    d_table = garbage((V, D), dtype)
    ops_cuda.embedding_backward(dev(ids), dev(d_out), d_table)
    want = np.empty((V, D), dtype)
    ops_cpu.embedding_backward(ids, d_out, want)
    assert_allclose(d_table.copy_to_host(), want, **TOL[dtype])


def test_embedding_backward_without_tokens_zeroes_the_table():
    d_table = garbage((3, 2))
    ops_cuda.embedding_backward(dev(np.zeros((0, 4), np.int64)), dev(np.zeros((0, 4, 2))),
                                d_table)
    assert_array_equal(d_table.copy_to_host(), np.zeros((3, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_and_scatter_columns(dtype):
    rng = np.random.default_rng(1)
    V, D, B, T, W, start = 5, 3, 2, 3, 7, 2
    table = rng.normal(size=(V, D)).astype(dtype)
    ids = np.array([[0, 4, -1], [4, 2, -1]], np.int64)
    base = np.full((B, T, W), 7, dtype)
    out = dev(base)
    ops_cuda.gather_columns(dev(table), dev(ids), out, start)
    want = base.copy()
    want[..., start:start + D] = np.where(ids[..., None] >= 0, table[ids], 0)
    assert_array_equal(out.copy_to_host(), want)

    d_out = rng.normal(size=(B, T, W)).astype(dtype)
    d_table = garbage((V, D), dtype)
    ops_cuda.scatter_columns(dev(ids), dev(d_out), start, d_table)
    want = np.zeros((V, D), dtype)
    valid = ids >= 0
    np.add.at(want, ids[valid], d_out[..., start:start + D][valid])
    assert_allclose(d_table.copy_to_host(), want, **TOL[dtype])


@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_copy_and_take_columns(lead):
    rng = np.random.default_rng(2)
    src = rng.normal(size=lead + (2,)).astype(np.float32)
    base = np.full(lead + (6,), 7, np.float32)
    dst = dev(base)
    ops_cuda.copy_columns(dev(src), dst, 3)
    want = base.copy()
    want[..., 3:5] = src
    assert_array_equal(dst.copy_to_host(), want)
    taken = garbage(lead + (3,), np.float32)
    ops_cuda.take_columns(dst, 2, taken)
    assert_array_equal(taken.copy_to_host(), want[..., 2:5])


def test_a_non_contiguous_output_is_refused():
    with pytest.raises(ValueError, match="C-contiguous"):
        ops_cuda.multiply(np.ones(4), np.ones(4), np.ones(8)[::2])


def test_join_and_split_directions():
    rng = np.random.default_rng(3)
    pair = rng.normal(size=(2, 2, 3, 2))
    joined = garbage((2, 3, 4))
    ops_cuda.join_directions(dev(pair), joined)
    assert_array_equal(joined.copy_to_host(), np.concatenate([pair[0], pair[1]], axis=-1))
    split = garbage((2, 2, 3, 2))
    ops_cuda.split_directions(joined, split)
    assert_array_equal(split.copy_to_host(), pair)


# ----------------------------------------------------------------------------------------------
# character CNN
# ----------------------------------------------------------------------------------------------


def char_case(dtype, seed=4):
    rng = np.random.default_rng(seed)
    V, C, L, width = 6, 2, 4, 3
    char_lengths = np.array([3, 0, 4, 1, 0, 2, 4], np.int64)  # empty words, one in the middle
    U = len(char_lengths)
    char_ids = np.zeros((U, L), np.int64)
    for u, n in enumerate(char_lengths):
        char_ids[u, :n] = rng.integers(0, V, size=n)
    char_table = rng.normal(size=(V, C)).astype(dtype)
    return rng, char_table, char_ids, char_lengths, width


@pytest.mark.parametrize("dtype", DTYPES)
def test_char_cnn_forward_and_backward_match_the_cpu(dtype):
    rng, char_table, char_ids, char_lengths, width = char_case(dtype)
    U, C = len(char_lengths), char_table.shape[1]
    N, KC, F = int(char_lengths.sum()), width * C, 3
    windows = garbage((N, KC), dtype)
    ops_cuda.char_windows(dev(char_table), dev(char_ids), dev(char_lengths), width, windows)
    want_windows = np.empty((N, KC), dtype)
    ops_cpu.char_windows(char_table, char_ids, char_lengths, width, want_windows)
    assert_array_equal(windows.copy_to_host(), want_windows)

    # Small integers: many ties, which the first character must win.
    conv = rng.integers(0, 3, size=(N, F)).astype(dtype)
    bias = np.array([0.5, -1.0, 0.0], dtype)
    out, argmax = garbage((U, F), dtype), garbage((U, F), np.int64)
    ops_cuda.char_max_pool(dev(conv), dev(bias), dev(char_lengths), out, argmax)
    want_out, want_arg = np.empty((U, F), dtype), np.empty((U, F), np.int64)
    ops_cpu.char_max_pool(conv, bias, char_lengths, want_out, want_arg)
    assert_array_equal(out.copy_to_host(), want_out)
    assert_array_equal(argmax.copy_to_host(), want_arg)
    assert (want_arg[char_lengths == 0] == -1).all()

    W_t = rng.normal(size=(F, KC)).astype(dtype)
    d_out = rng.normal(size=(U, F)).astype(dtype)
    grads = [garbage((F, KC), dtype), garbage(F, dtype), garbage(char_table.shape, dtype)]
    ops_cuda.char_cnn_backward(dev(char_ids), dev(char_lengths), width, windows, dev(W_t),
                               dev(want_arg), dev(d_out), *grads)
    want = [np.empty((F, KC), dtype), np.empty(F, dtype), np.empty(char_table.shape, dtype)]
    ops_cpu.char_cnn_backward(char_ids, char_lengths, width, want_windows, W_t, want_arg, d_out,
                              *want)
    for got, expected in zip(grads, want, strict=True):
        assert_allclose(got.copy_to_host(), expected, **TOL[dtype])
    assert np.abs(want[2]).sum() > 0


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------


# The simulator runs the kernel on NumPy uint64 scalars, which warn when SplitMix64 wraps around
# (as it must; compiled code wraps silently).
@pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [np.uint64(12345), np.uint64(2**64 - 3)])
def test_dropout_fill_is_bitwise_the_cpu_mask(dtype, seed):
    n, keep = 41, 0.6
    threshold = np.uint64(round(keep * 2.0**53))
    scale = dtype(1) / dtype(keep)
    out = garbage(n, dtype)
    ops_cuda.dropout_fill(seed, threshold, scale, out)
    want = np.empty(n, dtype)
    ops_cpu.dropout_fill(seed, threshold, scale, want)
    got = out.copy_to_host()
    assert got.tobytes() == want.tobytes()
    assert 0 < np.count_nonzero(got) < n and set(np.unique(got)) == {dtype(0), scale}


# ----------------------------------------------------------------------------------------------
# elementwise arithmetic
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_arithmetic(dtype):
    rng = np.random.default_rng(5)
    a, b = (rng.normal(size=(2, 3, 2)).astype(dtype) for _ in range(2))
    out = garbage(a.shape, dtype)
    ops_cuda.multiply(dev(a), dev(b), out)
    assert_array_equal(out.copy_to_host(), a * b)
    ops_cuda.add(dev(a), dev(b), out)
    assert_array_equal(out.copy_to_host(), a + b)
    a_dev = dev(a)
    ops_cuda.multiply(a_dev, dev(b), a_dev)  # out aliases a
    ops_cuda.add(dev(b), a_dev, a_dev)  # out aliases the second operand
    assert_array_equal(a_dev.copy_to_host(), a * b + b)
    ops_cuda.scale(a_dev, 0.1)
    assert_array_equal(a_dev.copy_to_host(), (a * b + b) * dtype(0.1))
    x, bias = rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=4).astype(dtype)
    x_dev = dev(x)
    ops_cuda.add_bias(x_dev, dev(bias))
    assert_array_equal(x_dev.copy_to_host(), x + bias)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_and_its_backward(dtype):
    rng = np.random.default_rng(6)
    a, d = (rng.normal(size=(3, 5)).astype(dtype) for _ in range(2))
    y = garbage(a.shape, dtype)
    ops_cuda.tanh(dev(a), y)
    assert_allclose(y.copy_to_host(), np.tanh(a), **TOL[dtype])
    out = garbage(a.shape, dtype)
    ops_cuda.tanh_backward(y, dev(d), out)
    t = y.copy_to_host()
    # A GPU contracts 1 - t * t into one fused multiply-add (one rounding where NumPy rounds
    # twice): equal within a few units of rounding of d, not bitwise.
    bound = 4 * np.finfo(dtype).eps * np.abs(d)
    assert np.all(np.abs(out.copy_to_host() - d * (1 - t * t)) <= bound)
    d_dev = dev(d)
    ops_cuda.tanh_backward(y, d_dev, d_dev)  # out aliases the gradient
    assert np.all(np.abs(d_dev.copy_to_host() - d * (1 - t * t)) <= bound)


@pytest.mark.parametrize("trailing", [(), (4,), (2, 3)])
def test_take_rows_is_numpys_fancy_indexing(trailing):
    src = np.arange(5 * int(np.prod(trailing, dtype=int)), dtype=np.float32).reshape((5, *trailing))
    rows = np.array([4, 0, 0, 2, 4, 1, 3], np.int64)  # repeats and every order
    out = garbage((rows.size, *trailing), np.float32)
    ops_cuda.take_rows(dev(src), dev(rows), out)
    assert_array_equal(out.copy_to_host(), src[rows])
    empty = garbage((0, *trailing), np.float32)
    ops_cuda.take_rows(dev(src), dev(np.zeros(0, np.int64)), empty)  # no launch


def test_fill_and_transpose():
    a = garbage((2, 3), np.float32)
    ops_cuda.fill(a, 0.5)
    assert_array_equal(a.copy_to_host(), np.full((2, 3), 0.5, np.float32))
    ids = garbage(4, np.int64)
    ops_cuda.fill(ids, -1)
    assert_array_equal(ids.copy_to_host(), [-1, -1, -1, -1])
    x = np.arange(15.0).reshape(3, 5)
    out = garbage((5, 3))
    ops_cuda.transpose(dev(x), out)
    assert_array_equal(out.copy_to_host(), x.T)


def test_numpy_arrays_are_written_in_place():
    a, b = np.arange(6.0).reshape(2, 3), np.full((2, 3), 2.0)
    ops_cuda.multiply(a, b, a)
    assert_array_equal(a, np.arange(6.0).reshape(2, 3) * 2)


# ----------------------------------------------------------------------------------------------
# softmax heads
# ----------------------------------------------------------------------------------------------


def scores_case(dtype, seed=6, B=3, T=4, K=4):
    rng = np.random.default_rng(seed)
    scores = (rng.normal(size=(B, T, K)) * 3).astype(dtype)
    lengths = np.array([T, 0, 2], np.int64)[:B]
    tags = rng.integers(0, K, size=(B, T)).astype(np.int64)
    tags[np.arange(T)[None, :] >= lengths[:, None]] = -1
    return scores, tags, lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_the_softmax_head(dtype):
    scores, tags, lengths = scores_case(dtype)
    B = scores.shape[0]
    loss, d_scores = garbage(B), garbage(scores.shape, dtype)
    ops_cuda.softmax_xent(dev(scores), dev(tags), dev(lengths), 1.0 / B, loss, d_scores)
    want_loss, want_d, _ = SoftmaxHead().loss({}, scores, tags, lengths)
    got_loss = loss.copy_to_host()
    assert got_loss.dtype == np.float64 and got_loss[1] == 0
    assert_allclose(got_loss.sum() / B, want_loss, rtol=1e-6 if dtype == np.float32 else 1e-12)
    got_d = d_scores.copy_to_host()
    assert got_d.dtype == dtype
    assert_allclose(got_d, want_d, **TOL[dtype])
    assert not got_d[1].any() and not got_d[2, 2:].any()
    # per sequence, against float64 NumPy
    s = scores.astype(np.float64)
    logp = s - s.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    for b in range(B):
        L = lengths[b]
        assert_allclose(got_loss[b], -logp[b, np.arange(L), tags[b, :L]].sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_rows_matches_the_classifier_loss(dtype):
    rng = np.random.default_rng(7)
    B, C = 4, 3
    logits = (rng.normal(size=(B, C)) * 2).astype(dtype)
    labels = np.array([0, 2, 2, 1], np.int64)
    weight = np.array([1.0, 0.5, 2.0, 1.5])
    loss, d_logits = garbage(B), garbage((B, C), dtype)
    ops_cuda.softmax_xent_rows(dev(logits), dev(labels), dev(weight), 1.0 / B, loss, d_logits)
    # the expression of ClassifierNetwork.loss_and_grads
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    log_p = shifted[np.arange(B), labels] - log_z
    want_loss = float(-(weight * log_p).sum() / B)
    want_d = np.exp(shifted - log_z[:, None])
    want_d[np.arange(B), labels] -= 1.0
    want_d *= (weight / B)[:, None]
    want_d = want_d.astype(logits.dtype)
    got_loss = loss.copy_to_host()
    assert_allclose(got_loss, -weight * log_p, rtol=1e-13)
    assert_allclose(got_loss.sum() / B, want_loss, rtol=1e-13)
    assert_allclose(d_logits.copy_to_host(), want_d, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_and_softmax_rows_match_the_softmax_head(dtype):
    scores, _, lengths = scores_case(dtype, seed=8)
    scores[0, 1] = [1.0, 3.0, 3.0, 0.0]  # a tie: the first maximum wins
    scores[2, 0] = [2.0, 2.0, 2.0, 2.0]
    B, T, K = scores.shape
    tags = garbage((B, T), np.int64)
    ops_cuda.argmax_rows(dev(scores), dev(lengths), tags)
    head = SoftmaxHead()
    assert_array_equal(tags.copy_to_host(), head.decode({}, scores, lengths))
    assert tags.copy_to_host()[0, 1] == 1 and tags.copy_to_host()[2, 0] == 0
    probs = garbage(scores.shape, dtype)
    ops_cuda.softmax_rows(dev(scores), dev(lengths), probs)
    assert_allclose(probs.copy_to_host(), head.marginals({}, scores, lengths), **TOL[dtype])
    in_place = dev(scores)
    ops_cuda.softmax_rows(in_place, dev(lengths), in_place)
    assert_allclose(in_place.copy_to_host(), head.marginals({}, scores, lengths), **TOL[dtype])


# ----------------------------------------------------------------------------------------------
# "last" pooling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_pool_and_backward_match_the_classifier(bidirectional):
    rng = np.random.default_rng(9)
    B, T, H = 4, 3, 2
    P = 2 * H if bidirectional else H
    hidden = rng.normal(size=(B, T, P))
    lengths = np.array([3, 0, 1, 2], np.int64)
    out = garbage((B, P))
    ops_cuda.last_pool(dev(hidden), dev(lengths), H, bidirectional, out)
    # the code of ClassifierNetwork._pool and _pool_backward, pooling "last"
    last = np.maximum(lengths - 1, 0)
    want = np.empty((B, P))
    want[:, :H] = hidden[np.arange(B), last, :H]
    if bidirectional:
        want[:, H:] = hidden[:, 0, H:]
    want[lengths == 0] = 0
    assert_array_equal(out.copy_to_host(), want)

    d_out = rng.normal(size=(B, P))
    d_hidden = garbage((B, T, P))
    ops_cuda.last_pool_backward(dev(lengths), H, bidirectional, dev(d_out), d_hidden)
    want = np.zeros((B, T, P))
    valid = lengths > 0
    want[np.arange(B)[valid], last[valid], :H] = d_out[valid, :H]
    if bidirectional:
        want[valid, 0, H:] += d_out[valid, H:]
    assert_array_equal(d_hidden.copy_to_host(), want)


# ----------------------------------------------------------------------------------------------
# optimizer
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocks", [0, 1, 3], ids=["one-thread", "one-block", "three-blocks"])
def test_segment_sum_squares_matches_the_cpu_for_every_segment(monkeypatch, dtype, blocks):
    """Segments of every size (empty, one value, several blocks' worth), not in the order they
    lie in, each squared norm equal to the CPU kernel's on its slice; with one thread per
    segment (short segments) or with blocks."""
    rng = np.random.default_rng(blocks)
    x = rng.normal(size=80).astype(dtype)
    segments = np.array([[30, 80], [0, 0], [3, 4], [4, 30], [0, 3]], np.int64)
    assert optim_cuda.segment_geometry(segments) == (1, 1)  # all short: one thread each
    if blocks:
        # Blocks of 4 threads (a GPU's default of hundreds would sum these 80 values in one
        # block whatever the limit).
        monkeypatch.setattr(optim_cuda._config, "CUDA_THREADS_PER_BLOCK", 4)
        monkeypatch.setattr(optim_cuda, "_SERIAL_MAX", 0)
        monkeypatch.setattr(optim_cuda, "_PER_THREAD", 2)
        assert optim_cuda.segment_geometry(segments)[0] > 1  # the longest takes several
        monkeypatch.setattr(optim_cuda._config, "CUDA_MAX_BLOCKS", blocks)
    P, threads = optim_cuda.segment_geometry(segments)
    assert P == max(blocks, 1) and (threads == 1) == (blocks == 0)
    out = cuda.to_device(np.full(len(segments) + 1, 7.0))
    optim_cuda.segment_sum_squares(dev(x), dev(segments), garbage((len(segments), P)), out,
                                   threads)
    got = out.copy_to_host()
    assert got[-1] == 7
    for s, (first, end) in enumerate(segments):
        assert_allclose(got[s], optim_cpu.sum_squares(x[first:end]), rtol=1e-12, atol=0)
    assert got[1] == 0 and got[2] == np.float64(x[3]) ** 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_update_matches_the_cpu(dtype, weight_decay):
    rng = np.random.default_rng(10)
    n = 13
    param, grad = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    m, v = (rng.random(n) * 0.1).astype(dtype), (rng.random(n) * 0.1).astype(dtype)
    scalars = [dtype(s) for s in (0.7, weight_decay, 0.9, 0.1, 0.999, 0.001, 0.003, 1e-8)]
    arrays = [dev(a) for a in (param, grad, m, v)]
    optim_cuda.adam_update(*arrays, *scalars)
    want = [a.copy() for a in (param, grad, m, v)]
    optim_cpu.adam_update(*want, *scalars)
    for got, expected in zip(arrays, want, strict=True):
        assert_allclose(got.copy_to_host(), expected, **TOL[dtype])
    assert not np.allclose(want[0], param)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.01)])
def test_sgd_update_matches_the_sgd_optimizer(dtype, momentum, nesterov, weight_decay):
    rng = np.random.default_rng(11)
    n, lr, scale = 7, 0.05, 0.5
    param = rng.normal(size=n).astype(dtype)
    opt = SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    want = {"w": param.copy()}
    param_dev = dev(param)
    velocity = cuda.to_device(np.zeros(n if momentum else 1, dtype))
    for _ in range(2):  # the second step uses the velocity of the first
        grad = rng.normal(size=n).astype(dtype)
        opt.step(want, {"w": grad}, scale)
        optim_cuda.sgd_update(param_dev, dev(grad), velocity, scale, weight_decay, momentum,
                              nesterov, lr)
    assert_allclose(param_dev.copy_to_host(), want["w"], **TOL[dtype])
    if momentum:
        assert_allclose(velocity.copy_to_host(), opt.state["w"], **TOL[dtype])
    else:
        assert velocity.copy_to_host()[0] == 0


# ----------------------------------------------------------------------------------------------
# CRF transition scores built on the device
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device_masks", [False, True])
def test_crf_with_device_parameters_equals_the_host_path(dtype, device_masks):
    rng = np.random.default_rng(12)
    B, T, K = 3, 4, 3
    em = rng.normal(size=(B, T, K)).astype(dtype)
    lengths = np.array([4, 0, 2], np.int64)
    tags = np.array([[0, 1, 2, 0], [0, 0, 0, 0], [2, 2, 0, 0]], np.int64)
    params = [rng.normal(size=s).astype(dtype) for s in [(K,), (K,), (K, K)]]
    masks = [np.array([True, False, True]), np.ones(K, bool), np.ones((K, K), bool)]
    masks[2][1, 0] = False

    host_logp = crf_cuda._log_params(*params, *masks)
    dev_logp = crf_cuda._log_params(*[dev(p) for p in params],
                                    *[dev(m) if device_masks else m for m in masks])
    assert isinstance(host_logp, np.ndarray) and hasattr(dev_logp, "copy_to_host")
    assert_array_equal(dev_logp.copy_to_host(), host_logp)
    assert host_logp[K, 1] == -np.inf and host_logp[1, 0] == -np.inf

    def nll_and_viterbi(p, m):
        outs = [garbage(B, dtype), garbage((B, T, K), dtype), garbage(K, dtype),
                garbage(K, dtype), garbage((K, K), dtype)]
        crf_cuda.crf_nll(dev(em), dev(tags), dev(lengths), *p, *m, *outs)
        path, best = garbage((B, T), np.int64), garbage(B, dtype)
        crf_cuda.viterbi_decode(dev(em), dev(lengths), *p, *m, path, best)
        marg, log_z = garbage((B, T, K), dtype), garbage(B, dtype)
        crf_cuda.crf_marginals(dev(em), dev(lengths), *p, *m, marg, log_z)
        return [o.copy_to_host() for o in (*outs, path, best, marg, log_z)]

    on_host = nll_and_viterbi(params, masks)
    on_device = nll_and_viterbi([dev(p) for p in params],
                                [dev(m) for m in masks] if device_masks else masks)
    for got, want in zip(on_device, on_host, strict=True):
        assert_array_equal(got, want)
    assert np.isfinite(on_host[0]).all() and (on_host[5][1] == -1).all()


@pytest.mark.parametrize("n", [0, 5, 300])
@pytest.mark.parametrize("serial", [True, False], ids=["one-thread", "blocks"])
def test_sum_values_adds_in_float64_into_its_slot(monkeypatch, n, serial):
    if not serial:
        monkeypatch.setattr(optim_cuda, "_SERIAL_MAX", 0)
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    out = cuda.to_device(np.full(2, 7.0))
    optim_cuda.sum_values(dev(x), out, 0)
    got = out.copy_to_host()
    assert got[1] == 7
    assert_allclose(got[0], x.astype(np.float64).sum(), rtol=1e-12, atol=1e-12)
