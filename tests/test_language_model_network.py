"""The character language model's network: shapes, gradients through carried state (truncated
BPTT), segment-invariance of the forward pass, dropout, and learning a repeating string."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from tagger.nn.language_model import CharLMNetwork
from tagger.nn.optim import make_optimizer
from tagger.nn.training import apply_gradients

V = 5


def perturbed_params(net, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = net.init_params(rng, dtype)
    return {k: v + rng.normal(0, 0.2, v.shape) for k, v in params.items()}


def char_stream(seed, B, T):
    """Inputs and next-character targets of B random streams of T steps."""
    ids = np.random.default_rng(seed).integers(0, V, size=(B, T + 1))
    return ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_param_shapes_match_init_params(cell, num_layers):
    net = CharLMNetwork(7, embedding_dim=3, cell=cell, hidden_size=4, num_layers=num_layers)
    params = net.init_params(np.random.default_rng(0))
    shapes = net.param_shapes()
    assert list(shapes) == list(params)
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(v.dtype == np.float32 for v in params.values())
    gates = 4 if cell == "lstm" else 3
    assert shapes["emb.char"] == (7, 3)
    assert shapes["rnn.0.fwd.W"] == (3, gates * 4)
    assert shapes[f"rnn.{num_layers - 1}.fwd.U"] == (4, gates * 4)
    assert shapes["out.W"] == (4, 7) and shapes["out.b"] == (7,)
    assert ("rnn.0.fwd.b_rn" in shapes) == (cell == "gru")
    state = net.initial_state(3)
    assert len(state) == num_layers
    for h, c in state:
        assert h.shape == (3, 4) and h.dtype == np.float32 and not h.any()
        assert (c is None) == (cell == "gru")
        if c is not None:
            assert c.shape == (3, 4) and c.dtype == np.float32 and not c.any()


def test_unsupported_cells_and_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="supports the cells lstm, gru; got 'rnn'"):
        CharLMNetwork(5, cell="rnn")
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        CharLMNetwork(5, cell="tcn")
    with pytest.raises(ValueError, match="dropout"):
        CharLMNetwork(5, dropout=1.0)
    net = CharLMNetwork(V, embedding_dim=2, hidden_size=3)
    params = net.init_params(np.random.default_rng(0))
    x, y = char_stream(0, 2, 3)
    with pytest.raises(ValueError, match="ids 0 to 4"):
        net.log_likelihood(params, x + V, y, None)
    with pytest.raises(ValueError, match="targets have shape"):
        net.log_likelihood(params, x, y[:, :2], None)
    with pytest.raises(ValueError, match="c of shape"):
        net.log_likelihood(params, x, y, [(np.zeros((2, 3)), None)])
    with pytest.raises(ValueError, match="h has shape"):
        net.log_likelihood(params, x, y, net.initial_state(3))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_of_the_second_segment_with_carried_state(cell):
    """Central differences of segment 2's loss, the state carried from segment 1 held fixed."""
    net = CharLMNetwork(V, embedding_dim=3, cell=cell, hidden_size=3, num_layers=2)
    params = perturbed_params(net, 1)
    x, y = char_stream(2, B=2, T=8)
    x1, y1, x2, y2 = x[:, :4], y[:, :4], x[:, 4:], y[:, 4:]
    _, _, carried = net.loss_and_grads(params, x1, y1, net.initial_state(2, np.float64))
    # The carried state matters: segment 2 from zeros has another loss.
    assert all(np.abs(h).max() > 1e-2 for h, _ in carried)
    from_zeros = net.loss_and_grads(params, x2, y2, net.initial_state(2, np.float64))[0]
    saved = [(h.copy(), None if c is None else c.copy()) for h, c in carried]

    def loss():
        return net.loss_and_grads(params, x2, y2, carried)[0]

    value, grads, _ = net.loss_and_grads(params, x2, y2, carried)
    assert abs(value - from_zeros) > 1e-3
    assert list(grads) == list(params)
    for name, arr in params.items():
        assert grads[name].shape == arr.shape and grads[name].dtype == np.float64
        err = relative_error(numerical_gradient(loss, arr), grads[name])
        assert err < 1e-6, (name, err)
    for (h, c), (h0, c0) in zip(carried, saved, strict=True):  # the calls left it as it was
        np.testing.assert_array_equal(h, h0)
        if c is not None:
            np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_with_dropout(cell):
    """The masks of the embedding table, of the second layer's input and of the last output
    enter the backward pass (the LSTM's first layer gathers its input projections from the
    masked table, the GRU's reads the masked table's rows)."""
    net = CharLMNetwork(V, embedding_dim=3, cell=cell, hidden_size=3, num_layers=2,
                        dropout=0.3)
    params = perturbed_params(net, 9)
    x, y = char_stream(10, B=2, T=4)
    state = net.log_likelihood(params, *char_stream(11, B=2, T=3), None)[2]

    def loss():  # a fresh generator with the same seed draws the same masks
        return net.loss_and_grads(params, x, y, state, np.random.default_rng(7))[0]

    _, grads, _ = net.loss_and_grads(params, x, y, state, np.random.default_rng(7))
    assert loss() != net.loss_and_grads(params, x, y, state)[0]
    for name, arr in params.items():
        err = relative_error(numerical_gradient(loss, arr), grads[name])
        assert err < 1e-6, (name, err)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_splitting_a_stream_into_segments_changes_no_forward_result(cell):
    net = CharLMNetwork(V, embedding_dim=4, cell=cell, hidden_size=5, num_layers=2)
    params = perturbed_params(net, 3)
    x, y = char_stream(4, B=3, T=12)
    whole, n, end_state = net.log_likelihood(params, x, y, net.initial_state(3))
    assert n == 36 and np.isfinite(whole) and whole < 0
    total, count, state = 0.0, 0, net.initial_state(3)
    for start in range(0, 12, 4):
        part, k, state = net.log_likelihood(params, x[:, start:start + 4], y[:, start:start + 4],
                                            state)
        total, count = total + part, count + k
    assert count == n
    assert total == pytest.approx(whole, rel=1e-12, abs=1e-12)
    for (h, c), (h_end, c_end) in zip(state, end_state, strict=True):
        np.testing.assert_allclose(h, h_end, rtol=1e-12, atol=1e-14)
        if cell == "lstm":
            np.testing.assert_allclose(c, c_end, rtol=1e-12, atol=1e-14)
    # The training forward pass carries the same state, and next_logits scores the same
    # continuation: its log-softmax at the last step gives the last target's log-probability.
    _, _, train_state = net.loss_and_grads(params, x, y, net.initial_state(3))
    for (h, _), (h_train, _) in zip(end_state, train_state, strict=True):
        np.testing.assert_allclose(h, h_train, rtol=1e-12, atol=1e-14)
    logits, next_state = net.next_logits(params, x, None)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    before_last = net.log_likelihood(params, x[:, :-1], y[:, :-1], None)[2]
    last, _, _ = net.log_likelihood(params, x[:, -1:], y[:, -1:], before_last)
    assert logp[np.arange(3), y[:, -1]].sum() == pytest.approx(last, rel=1e-12)
    np.testing.assert_allclose(next_state[-1][0], end_state[-1][0], rtol=1e-12, atol=1e-14)
    # One step at a time with (B,) ids reaches the same state.
    step_state = None
    for t in range(12):
        step_logits, step_state = net.next_logits(params, x[:, t], step_state)
    np.testing.assert_allclose(step_logits, logits, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loss_is_the_negative_mean_log_likelihood(cell):
    net = CharLMNetwork(V, embedding_dim=3, cell=cell, hidden_size=4, num_layers=2)
    params = perturbed_params(net, 5)
    x, y = char_stream(6, B=3, T=7)
    state = net.log_likelihood(params, *char_stream(7, B=3, T=5), None)[2]
    total, n, _ = net.log_likelihood(params, x, y, state)
    loss, _, _ = net.loss_and_grads(params, x, y, state)
    assert loss == pytest.approx(-total / n, rel=1e-12)
    # And it is the cross-entropy of the softmax of next_logits, computed here plainly.
    expected, s = 0.0, state
    for t in range(7):
        logits, s = net.next_logits(params, x[:, t], s)
        expected -= sum(logits[b, y[b, t]] - np.log(np.exp(logits[b]).sum()) for b in range(3))
    assert loss == pytest.approx(expected / n, rel=1e-10)


def test_dropout_changes_the_loss_only_when_an_rng_is_given():
    net = CharLMNetwork(V, embedding_dim=4, cell="lstm", hidden_size=6, num_layers=2,
                        dropout=0.5)
    params = net.init_params(np.random.default_rng(0))
    x, y = char_stream(8, B=4, T=6)
    state = net.initial_state(4)
    plain = [net.loss_and_grads(params, x, y, state)[0] for _ in range(2)]
    assert plain[0] == plain[1]
    total, n, _ = net.log_likelihood(params, x, y, state)
    assert plain[0] == pytest.approx(-total / n, rel=1e-6)
    rng = np.random.default_rng(1)
    dropped = [net.loss_and_grads(params, x, y, state, rng)[0] for _ in range(3)]
    assert all(abs(d - plain[0]) > 1e-4 for d in dropped)
    assert len(set(dropped)) == 3  # a new mask every call
    # The same generator state draws the same masks.
    again = net.loss_and_grads(params, x, y, state, np.random.default_rng(1))[0]
    assert again == dropped[0]


def test_lstm_learns_a_repeating_string_by_truncated_bptt():
    """'abcabd' repeated: after 'ab' comes 'c' or 'd' by what came three characters earlier,
    which the state carried across segment boundaries must remember."""
    text = "abcabd" * 200
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], np.int64)
    B, T = 4, 16
    per_stream = (len(ids) - 1) // B
    streams = np.stack([ids[i * per_stream:(i + 1) * per_stream + 1] for i in range(B)])
    net = CharLMNetwork(len(chars), embedding_dim=8, cell="lstm", hidden_size=32)
    rng = np.random.default_rng(0)
    params = net.init_params(rng)
    optimizer = make_optimizer("adam", 0.01)
    losses, state, pos = [], net.initial_state(B), 0
    for _ in range(400):
        if pos + T >= streams.shape[1]:
            state, pos = net.initial_state(B), 0
        x, y = streams[:, pos:pos + T], streams[:, pos + 1:pos + T + 1]
        loss, grads, state = net.loss_and_grads(params, x, y, state, rng)
        apply_gradients(params, grads, loss, optimizer, clip_norm=5.0)
        losses.append(loss)
        pos += T
    assert losses[0] > 1.0  # about log 4 at the start
    assert np.mean(losses[-20:]) < 0.1, losses[-20:]
    # Read segment by segment with the state carried, the 'c'/'d' choice is made right; with the
    # state reset at every segment, it is a guess wherever the segment starts too close to it.
    carried = reset = 0.0
    state, steps = net.initial_state(B), streams.shape[1] - 1
    for pos in range(0, steps, T):
        end = min(pos + T, steps)
        x, y = streams[:, pos:end], streams[:, pos + 1:end + 1]
        total, _, state = net.log_likelihood(params, x, y, state)
        carried -= total / (steps * B)
        reset -= net.log_likelihood(params, x, y, None)[0] / (steps * B)
    assert carried < 0.01
    assert reset > 0.02


@pytest.mark.parametrize("cell,num_layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
def test_read_matches_the_forward_pass_row_by_row(cell, num_layers):
    # read() takes an LSTM's first-layer input projections from a (V, 4H) table; every row,
    # read up to its own length, gives what the training forward pass gives on that row alone.
    net = CharLMNetwork(13, embedding_dim=5, cell=cell, hidden_size=6, num_layers=num_layers)
    rng = np.random.default_rng(4)
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in
              net.init_params(rng, np.float64).items()}
    lengths = np.array([9, 1, 5, 0, 9])
    ids = rng.integers(0, 13, (5, 9))
    top = net.read(params, ids, lengths)
    assert top.shape == (5, 9, 6)
    for row, n in enumerate(lengths):
        np.testing.assert_array_equal(top[row, n:], 0)
        if n:
            alone, _, _ = net._forward(params, ids[row:row + 1, :n], net.initial_state(1,
                                       np.float64), None, False)
            np.testing.assert_allclose(top[row, :n], alone[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="lengths"):
        net.read(params, ids, np.array([10, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="character ids"):
        net.read(params, ids + 13, lengths)


def test_the_table_mask_is_one_per_segment_and_the_gathered_projections_equal_the_product():
    """With dropout the embedding table is masked once per segment: the first LSTM layer's
    gathered projections ((table * mask) @ W at each id) give what the masked rows multiplied
    by W give, and a character keeps its dropped components at every position."""
    net = CharLMNetwork(V, embedding_dim=6, cell="lstm", hidden_size=5, num_layers=2,
                        dropout=0.4)
    params = perturbed_params(net, 12)
    x, _ = char_stream(13, B=3, T=7)
    masks = net._draw_masks(np.random.default_rng(5), 3, 7, np.float64)
    assert masks[0][0].shape == (V, 6) and masks[0][1].shape == (3, 7, 5)
    state = net.initial_state(3, np.float64)
    gathered, _, (_, _, table, was_gathered) = net._forward(params, x, state, None, True,
                                                            masks=masks)
    multiplied, _, (_, _, _, was_multiplied) = net._forward(params, x, state, None, False,
                                                            masks=masks)
    assert was_gathered and not was_multiplied
    np.testing.assert_allclose(gathered, multiplied, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(table, params["emb.char"] * masks[0][0])
    net.workspace = type(net.workspace)()  # the training forward's cache is not handed back


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_streams_split_over_threads_give_the_one_thread_step(cell):
    # With two threads a segment's streams are split in two blocks (each on a thread of its
    # own) and the gradients added: the same step as one thread, with the same dropout masks.
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    from tagger.nn import language_model

    net = CharLMNetwork(V, embedding_dim=4, cell=cell, hidden_size=5, num_layers=2,
                        dropout=0.3)
    params = perturbed_params(net, 6)
    x, y = char_stream(7, 2 * language_model._MIN_ROWS_PER_THREAD + 1, 6)
    assert len(language_model._row_parts(x.shape[0], 6, 2)) == 2
    results = []
    for threads in (1, 2):
        saved = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            state = net.initial_state(x.shape[0], np.float64)
            state = [(h + 0.1, None if c is None else c - 0.2) for h, c in state]
            results.append(net.loss_and_grads(params, x, y, state, np.random.default_rng(3)))
        finally:
            numba.set_num_threads(saved)
    (loss1, grads1, state1), (loss2, grads2, state2) = results
    assert loss2 == pytest.approx(loss1, rel=1e-13)
    for name in params:
        np.testing.assert_allclose(grads2[name], grads1[name], rtol=1e-11, atol=1e-14,
                                   err_msg=name)
    for (h1, c1), (h2, c2) in zip(state1, state2, strict=True):
        np.testing.assert_array_equal(h1, h2)
        if c1 is not None:
            np.testing.assert_array_equal(c1, c2)
