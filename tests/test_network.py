"""The whole network: gradients by finite differences, determinism, batching, learning."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from tagger.demo import train_lookahead
from tagger.nn.network import TaggingNetwork
from tagger.nn.optim import Adam
from tagger.nn.recurrent import dropout_mask
from tagger.nn.training import (
    EpochBatches,
    length_batches,
    pad_sequences,
    run_batches,
    thread_limit,
    train_step,
)


def small_batch(seed=0, B=3, T=5, D=3, K=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype(dtype)
    lengths = np.array([T, T - 2, 2][:B], np.int64)
    tags = rng.integers(0, K, size=(B, T))
    return x, lengths, tags


def perturbed_params(net, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = net.init_params(rng, dtype)
    return {k: v + rng.normal(0, 0.2, v.shape) for k, v in params.items()}


@pytest.mark.parametrize("crf", [True, False])
def test_two_layer_bidirectional_network_gradients(crf):
    """Central differences through embeddings-to-loss: 2 BiLSTM layers, dropout, linear, head."""
    x, lengths, tags = small_batch()
    net = TaggingNetwork(3, 4, cell="lstm", hidden_size=2, num_layers=2, bidirectional=True,
                         crf=crf, dropout=0.3)
    params = perturbed_params(net, 1)

    def loss():  # a fresh generator with the same seed draws the same dropout masks
        return net.loss_and_grads(params, x, lengths, tags, np.random.default_rng(7))[0]

    _, grads, dx = net.loss_and_grads(params, x, lengths, tags, np.random.default_rng(7))
    assert set(grads) == set(params)
    for name, arr in list(params.items()) + [("x", x)]:
        analytic = dx if name == "x" else grads[name]
        err = relative_error(numerical_gradient(loss, arr), analytic)
        assert err < 1e-6, (name, err)


def test_softmax_head_loss_is_mean_token_cross_entropy():
    x, lengths, tags = small_batch(seed=2)
    net = TaggingNetwork(3, 4, hidden_size=3, crf=False)
    params = perturbed_params(net, 3)
    scores = net.scores(params, x, lengths)
    expected = 0.0
    for b, L in enumerate(lengths):
        s = scores[b, :L]
        logp = s - np.log(np.exp(s).sum(-1, keepdims=True))
        expected -= logp[np.arange(L), tags[b, :L]].sum()
    loss, _, _ = net.loss_and_grads(params, x, lengths, tags)
    assert loss == pytest.approx(expected / len(lengths), rel=1e-12)
    p = net.predict_marginals(params, x, lengths)
    np.testing.assert_allclose(p.sum(-1), (np.arange(5) < lengths[:, None]).astype(float))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "irnn"])
def test_training_is_reproducible_bit_for_bit(cell):
    def run():
        x, lengths, tags = small_batch(seed=4, dtype=np.float32)
        net = TaggingNetwork(3, 4, cell=cell, hidden_size=5, num_layers=2, dropout=0.2)
        rng = np.random.default_rng(11)
        params = net.init_params(rng)
        opt = Adam(0.01)
        losses = [train_step(net, params, opt, x, lengths, tags, rng)[0] for _ in range(3)]
        return losses, params

    (losses_a, params_a), (losses_b, params_b) = run(), run()
    assert losses_a == losses_b
    for k in params_a:
        np.testing.assert_array_equal(params_a[k], params_b[k])


def test_predictions_do_not_depend_on_batch_composition():
    """A sentence tagged alone or inside a padded batch gets the same tags and marginals."""
    rng = np.random.default_rng(5)
    net = TaggingNetwork(4, 5, hidden_size=6, num_layers=2)
    params = net.init_params(rng)
    seqs = [rng.normal(size=(n, 4)).astype(np.float32) for n in (9, 3, 6)]
    x, lengths = pad_sequences(seqs)
    tags = net.predict(params, x, lengths)
    marg = net.predict_marginals(params, x, lengths)
    for i, s in enumerate(seqs):
        alone_x, alone_len = pad_sequences([s])
        np.testing.assert_array_equal(net.predict(params, alone_x, alone_len)[0],
                                      tags[i, : len(s)])
        np.testing.assert_allclose(net.predict_marginals(params, alone_x, alone_len)[0],
                                   marg[i, : len(s)], rtol=1e-5, atol=1e-6)
        assert (tags[i, len(s):] == -1).all()


def test_non_finite_loss_stops_the_step_and_keeps_the_weights():
    x, lengths, tags = small_batch(dtype=np.float32)
    net = TaggingNetwork(3, 4, hidden_size=2)
    params = net.init_params(np.random.default_rng(0))
    before = {k: v.copy() for k, v in params.items()}
    x[0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite"):
        train_step(net, params, Adam(0.1), x, lengths, tags, None)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_length_batches_cover_every_index_once_sorted_within_batch():
    lengths = np.random.default_rng(0).integers(1, 30, size=103)
    batches = length_batches(lengths, 16, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert all(len(b) <= 16 for b in batches)
    for b in batches:
        assert (np.diff(lengths[b]) <= 0).all()
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, 0)


def test_epoch_batches_cut_each_pass_into_epochs_that_see_every_example_once():
    lengths = np.random.default_rng(0).integers(0, 30, size=103)  # some empty
    nonempty = sorted(np.flatnonzero(lengths > 0).tolist())
    # epoch_size None, or at least the examples: each epoch is the pass length_batches draws
    for size in (None, len(nonempty)):
        plan, rng, twin = EpochBatches(lengths, 8, size), np.random.default_rng(3), \
            np.random.default_rng(3)
        assert plan.parts == 1
        for _ in range(2):
            expected = [b for b in length_batches(lengths, 8, twin) if lengths[b[0]] > 0]
            assert [b.tolist() for b in plan.next_epoch(rng)] == [b.tolist() for b in expected]
        assert rng.bit_generator.state == twin.bit_generator.state
    plan, rng = EpochBatches(lengths, 8, 30), np.random.default_rng(3)
    assert plan.parts == -(-len(nonempty) // 30)
    for _ in range(2):  # two passes
        epochs = [plan.next_epoch(rng) for _ in range(plan.parts)]
        sizes = [len(e) for e in epochs]
        assert max(sizes) - min(sizes) <= 1
        seen = np.concatenate([b for e in epochs for b in e]).tolist()
        assert len(seen) == len(set(seen))  # (a batch may hold an empty one beside others)
        assert sorted(i for i in seen if lengths[i] > 0) == nonempty
    # Restored in the middle of a pass from its saved state: the rest of the same pass.
    first = plan.next_epoch(rng)
    state, position = plan.pass_state, plan.position
    assert position == len(first)
    rest = []
    while plan.position:
        rest.append(plan.next_epoch(rng))
    again = EpochBatches(lengths, 8, 30)
    again.restore(state, position)
    for epoch in rest:
        assert [b.tolist() for b in again.next_epoch(rng)] == [b.tolist() for b in epoch]
    assert again.position == 0
    # Cut differently on the way (another epoch_size): the same batches, none skipped.
    finer = EpochBatches(lengths, 8, 12)
    finer.restore(state, position)
    went_on = [finer.next_epoch(rng)]
    while finer.position:
        went_on.append(finer.next_epoch(rng))
    assert len(went_on) > len(rest)
    assert [b.tolist() for e in went_on for b in e] == [b.tolist() for e in rest for b in e]
    for outside in (0, -1, 10**9):  # not inside this data's pass: a new pass
        again.restore(state, outside)
        assert again.position == 0 and again.pass_state is None
    tiny = EpochBatches(lengths, 8, 1)  # never an epoch without a batch
    assert tiny.parts == -(-len(nonempty) // 8)
    assert all(len(tiny.next_epoch(rng)) == 1 for _ in range(2 * tiny.parts))


def test_thread_limit_restores_numba_threads():
    import numba

    before = numba.get_num_threads()
    with thread_limit(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_thread_limit_holds_the_blas_the_kernels_load_to_one_thread():
    # In a fresh process the kernels' BLAS (SciPy's) is not loaded yet when the limit is set.
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np\n"
            "from threadpoolctl import threadpool_info\n"
            "from tagger.nn.recurrent import direction_forward, init_direction\n"
            "from tagger.nn.training import thread_limit\n"
            "p = init_direction('lstm', 3, 4, np.random.default_rng(0))\n"
            "x = np.ones((8, 5, 3), np.float32)\n"
            "with thread_limit(2):\n"
            "    direction_forward('lstm', p, x, np.full(8, 5))\n"
            "    print(sorted({i['num_threads'] for i in threadpool_info()\n"
            "                  if i['user_api'] == 'blas'}))\n")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in __import__("os").environ.items() if not k.endswith("NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, PYTHONPATH=str(root)), check=True)
    assert out.stdout.strip() == "[1]"


def _needs_two_numba_threads():
    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("needs at least 2 Numba threads")


def test_run_batches_runs_each_batch_once_on_several_threads_of_one_numba_thread():
    import threading
    import time

    import numba

    _needs_two_numba_threads()
    before = numba.get_num_threads()
    seen, lock = [], threading.Lock()

    def fn(batch):
        time.sleep(0.002)  # releases the GIL, as the kernels do
        with lock:
            seen.append((batch, threading.get_ident(), numba.get_num_threads()))

    run_batches(fn, list(range(40)))
    assert sorted(b for b, _, _ in seen) == list(range(40))
    assert len({ident for _, ident, _ in seen}) >= 2
    assert {n for _, _, n in seen} == {1}
    assert numba.get_num_threads() == before
    seen.clear()
    run_batches(fn, list(range(5)), parallel=False)  # e.g. a GPU: this thread alone
    assert [b for b, _, _ in seen] == list(range(5))
    assert {ident for _, ident, _ in seen} == {threading.get_ident()}
    assert {n for _, _, n in seen} == {before}


def test_run_batches_raises_the_first_error_and_starts_no_batch_after_it():
    import threading
    import time

    import numba

    _needs_two_numba_threads()
    before = numba.get_num_threads()
    started, lock = [], threading.Lock()

    def fn(batch):
        with lock:
            started.append(batch)
        time.sleep(0.002)
        if batch == 5:
            raise ValueError("bad batch 5")

    with pytest.raises(ValueError, match="bad batch 5"):
        run_batches(fn, list(range(60)))
    # Batches go out in order: after batch 5 each other thread may have started one more.
    assert 5 in started and max(started) <= 5 + numba.get_num_threads() - 1
    assert numba.get_num_threads() == before


@pytest.mark.slow
def test_bidirectional_crf_learns_a_task_that_needs_right_context():
    """Tag = the symbol two steps ahead: only a network that reads the future can do it."""
    bi = train_lookahead(bidirectional=True, epochs=8, seed=0)
    uni = train_lookahead(bidirectional=False, epochs=8, seed=0)
    assert bi > 0.99
    assert uni < 0.6


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics_and_reproducibility(rate):
    keep = 1.0 - rate
    mask = dropout_mask(np.random.default_rng(0), (400, 2500), rate, np.float32)
    assert mask.dtype == np.float32 and mask.shape == (400, 2500)
    np.testing.assert_array_equal(np.unique(mask), [0.0, np.float32(1) / np.float32(keep)])
    kept = (mask > 0).ravel()
    # 10^6 Bernoulli draws: the kept fraction within 5 standard deviations of `keep`.
    assert abs(kept.mean() - keep) < 5 * np.sqrt(keep * rate / kept.size)
    # Neighbouring elements and rows are independent (correlation of ~0 within 5 sigma).
    for a, b in ((kept[:-1], kept[1:]), (kept[:-2500], kept[2500:])):
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(kept.size)
    # The caller's generator decides the mask: same state, same mask; next draw, another mask.
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(dropout_mask(rng, (400, 2500), rate, np.float32), mask)
    assert (dropout_mask(rng, (400, 2500), rate, np.float32) != mask).mean() > 0.1
    with pytest.raises(ValueError, match="dropout rate must be in \\[0, 1\\)"):
        dropout_mask(rng, (3,), 1.0, np.float32)
