"""The character language model's compiled sampler against the NumPy reference and the network's
own next-character scores: temperature, top-k, banned ids, seeds, the state it leaves, and the
checks of its Python entry point."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from tagger.kernels import lm_cpu
from tagger.nn.language_model import CharLMNetwork

V, E, H = 11, 5, 7
STATE_TOL = dict(rtol=1e-4, atol=1e-5)


def make_model(cell, num_layers, seed=0, out_scale=3.0):
    """A network with perturbed float32 parameters (no gate at its initial value) whose output
    scores spread enough that sampling is not uniform."""
    net = CharLMNetwork(V, embedding_dim=E, cell=cell, hidden_size=H, num_layers=num_layers)
    rng = np.random.default_rng(seed)
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32)
              for k, v in net.init_params(rng).items()}
    params["out.W"] = (out_scale * params["out.W"]).astype(np.float32)
    params["out.b"] = rng.normal(0, 1.0, V).astype(np.float32)
    return net, params


def random_state(cell, num_layers, seed=1):
    """The network's state format for one stream, with non-zero values."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, 0.5, (1, H)).astype(np.float32),
             rng.normal(0, 0.5, (1, H)).astype(np.float32) if cell == "lstm" else None)
            for _ in range(num_layers)]


def layer_tuples(cell, params, num_layers):
    W = tuple(params[f"rnn.{layer}.fwd.W"] for layer in range(num_layers))
    U = tuple(params[f"rnn.{layer}.fwd.U"] for layer in range(num_layers))
    b = tuple(params[f"rnn.{layer}.fwd.b"] for layer in range(num_layers))
    b_rn = tuple(params[f"rnn.{layer}.fwd.b_rn"] for layer in range(num_layers)) \
        if cell == "gru" else None
    return W, U, b, b_rn


def run_kernel(cell, params, num_layers, state, first, n, temperature, top_k, banned, seed):
    """The raw kernel on (L, H) copies of ``state``: ids, h, c."""
    W, U, b, b_rn = layer_tuples(cell, params, num_layers)
    h = np.concatenate([pair[0] for pair in state]).astype(np.float32)
    c = np.concatenate([pair[1] for pair in state]).astype(np.float32) if cell == "lstm" else None
    out = np.full(n, -7, np.int64)
    banned = np.asarray(banned, np.int64)
    args = (np.int64(first), np.int64(n), np.float64(temperature), np.int64(top_k), banned,
            np.uint64(seed), out)
    if cell == "lstm":
        lm_cpu.sample_lstm(params["emb.char"], W, U, b, params["out.W"], params["out.b"], h, c,
                           *args)
    else:
        lm_cpu.sample_gru(params["emb.char"], W, U, b, b_rn, params["out.W"], params["out.b"], h,
                          *args)
    return out, h, c


def run_reference(cell, params, num_layers, state, first, n, temperature, top_k, banned, seed):
    W, U, b, b_rn = layer_tuples(cell, params, num_layers)
    h = np.concatenate([pair[0] for pair in state])
    c = np.concatenate([pair[1] for pair in state]) if cell == "lstm" else None
    return naive.sample_reference(cell, params["emb.char"], W, U, b, b_rn, params["out.W"],
                                  params["out.b"], h, c, first, n, temperature, top_k, banned,
                                  seed)


def stacked(state):
    """(L, H) h and c (None for the GRU) of a network state."""
    h = np.concatenate([np.reshape(pair[0], (1, -1)) for pair in state])
    c = None if state[0][1] is None else np.concatenate(
        [np.reshape(pair[1], (1, -1)) for pair in state])
    return h, c


def best_allowed(logits, banned, k):
    """The k best-scoring allowed ids (lower id first among equal scores)."""
    ids = np.setdiff1d(np.arange(logits.shape[0]), banned)
    order = np.lexsort((ids, -logits[ids]))
    return set(ids[order[:k]].tolist())


# --------------------------------------------------------------------------------------------------
# Against the NumPy reference
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [0, 3])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kernel_matches_reference(cell, num_layers, temperature, top_k):
    _, params = make_model(cell, num_layers, seed=num_layers)
    state = random_state(cell, num_layers)
    n, seed, banned = 40, 12345, [0]
    ids, h, c = run_kernel(cell, params, num_layers, state, 4, n, temperature, top_k, banned,
                           seed)
    ref_ids, ref_h, ref_c = run_reference(cell, params, num_layers, state, 4, n, temperature,
                                          top_k, banned, seed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(h, ref_h, **STATE_TOL)
    if cell == "lstm":
        np.testing.assert_allclose(c, ref_c, **STATE_TOL)
    # Not a degenerate case: several characters drawn, none banned.
    assert len(set(ids.tolist())) >= 2 and 0 not in ids


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_wrapper_matches_kernel_and_reference_at_extreme_temperatures(cell):
    _, params = make_model(cell, 2, seed=5)
    state = random_state(cell, 2, seed=6)
    for temperature in (0.01, 100.0):
        ids, new_state = lm_cpu.sample(cell, params, 2, state, 2, 60, temperature, 0, [1], 99)
        k_ids, k_h, k_c = run_kernel(cell, params, 2, state, 2, 60, temperature, 0, [1], 99)
        ref_ids, ref_h, _ = run_reference(cell, params, 2, state, 2, 60, temperature, 0, [1], 99)
        assert ids.dtype == np.int64 and ids.shape == (60,)
        assert ids.min() >= 0 and ids.max() < V and 1 not in ids
        np.testing.assert_array_equal(ids, k_ids)
        np.testing.assert_array_equal(ids, ref_ids)
        h, c = stacked(new_state)
        np.testing.assert_array_equal(h, k_h)
        np.testing.assert_allclose(h, ref_h, **STATE_TOL)
        assert np.isfinite(h).all()
        if cell == "lstm":
            np.testing.assert_array_equal(c, k_c)
        if temperature == 100.0:  # nearly uniform: most allowed ids show up
            assert len(set(ids.tolist())) >= V - 3


# --------------------------------------------------------------------------------------------------
# Against the network's own scores
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_temperature_zero_is_greedy_next_logits(cell, num_layers):
    net, params = make_model(cell, num_layers, seed=10 + num_layers)
    # Inputs that move the state without saturating it, and no output bias: the greedy path
    # depends on what it reads (these embeddings give no fixed point for any of the four
    # networks; most draws lead one of them to repeat a single character).
    rng = np.random.default_rng(33)
    params["emb.char"] = rng.normal(0, 1.5, (V, E)).astype(np.float32)
    params["out.b"][:] = 0
    prompt = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    # The sampler starts from the state before the prompt's last character, which it reads.
    _, state = net.next_logits(params, prompt[:, :-1], None)
    n = 25
    ids, new_state = lm_cpu.sample(cell, params, num_layers, state, int(prompt[0, -1]), n, 0.0,
                                   0, None, 0)
    expected, st, prev = [], state, int(prompt[0, -1])
    for _ in range(n):
        logits, st = net.next_logits(params, np.array([prev]), st)
        prev = int(np.argmax(logits[0]))
        expected.append(prev)
    np.testing.assert_array_equal(ids, expected)
    assert len(set(expected)) >= 2  # the greedy path moves
    # The state returned has read every id but the last drawn one.
    for (h, c), (h_ref, c_ref) in zip(new_state, st, strict=True):
        np.testing.assert_allclose(h, h_ref, **STATE_TOL)
        if cell == "lstm":
            np.testing.assert_allclose(c, c_ref, **STATE_TOL)
        else:
            assert c is None and c_ref is None
    # ... so continuing from it with the last id gives the greedy continuation.
    more, _ = lm_cpu.sample(cell, params, num_layers, new_state, int(ids[-1]), 5, 0.0, 0, None, 0)
    both, _ = lm_cpu.sample(cell, params, num_layers, state, int(prompt[0, -1]), n + 5, 0.0, 0,
                            None, 0)
    np.testing.assert_array_equal(np.concatenate([ids, more]), both)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_top_k_never_draws_outside_the_k_best(cell):
    net, params = make_model(cell, 2, seed=21, out_scale=1.0)
    state = random_state(cell, 2, seed=22)
    first, n, k, banned = 5, 300, 3, [0, 2]
    ids, _ = lm_cpu.sample(cell, params, 2, state, first, n, 5.0, k, banned, 31)
    unlimited, _ = lm_cpu.sample(cell, params, 2, state, first, n, 5.0, 0, banned, 31)
    outside, st, prev = 0, state, first
    for s in range(n):
        logits, st = net.next_logits(params, np.array([prev]), st)
        assert int(ids[s]) in best_allowed(logits[0].astype(np.float64), banned, k), s
        prev = int(ids[s])
    # Replaying the unlimited draws: at this temperature they often leave the k best, so the
    # check above could have failed.
    st, prev = state, first
    for s in range(n):
        logits, st = net.next_logits(params, np.array([prev]), st)
        outside += int(unlimited[s]) not in best_allowed(logits[0].astype(np.float64), banned, k)
        prev = int(unlimited[s])
    assert outside > n // 10
    assert len(set(ids.tolist())) >= k


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ties_go_to_the_lower_id(cell):
    _, params = make_model(cell, 1)
    params["out.W"] = np.zeros_like(params["out.W"])  # scores = out.b exactly, at every step
    params["out.b"] = np.array([1, 3, 2, 3, 3, 0, 3, -1, 2, 0, 1], np.float32)
    state = random_state(cell, 1)
    greedy, _ = lm_cpu.sample(cell, params, 1, state, 0, 10, 0.0, 0, None, 3)
    assert set(greedy.tolist()) == {1}
    greedy, _ = lm_cpu.sample(cell, params, 1, state, 0, 10, 0.0, 0, [1], 3)
    assert set(greedy.tolist()) == {3}
    # Four ids share the best score 3 (1, 3, 4, 6): top-2 keeps 1 and 3, with equal chances.
    ids, _ = lm_cpu.sample(cell, params, 1, state, 0, 400, 1.0, 2, None, 3)
    assert set(ids.tolist()) == {1, 3}
    assert 150 < np.count_nonzero(ids == 1) < 250
    # Top-5 keeps the four 3s and, of the two 2s, id 2; banning 3 lets id 8 in instead.
    ids, _ = lm_cpu.sample(cell, params, 1, state, 0, 800, 1.0, 5, None, 3)
    assert set(ids.tolist()) == {1, 2, 3, 4, 6}
    ids, _ = lm_cpu.sample(cell, params, 1, state, 0, 800, 1.0, 5, [3], 3)
    assert set(ids.tolist()) == {1, 2, 4, 6, 8}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_banned_ids_never_drawn_even_as_the_argmax(cell):
    _, params = make_model(cell, 2, seed=40)
    banned = [0, 7]
    params["out.b"][banned] = 1e4  # they would win every step
    state = random_state(cell, 2)
    unbanned, _ = lm_cpu.sample(cell, params, 2, state, 3, 50, 1.0, 0, None, 8)
    assert set(unbanned.tolist()) <= {0, 7}  # the setup does make them the favourites
    for temperature, top_k in [(0.0, 0), (1.0, 0), (1.0, 2), (100.0, 0), (0.01, 1)]:
        ids, _ = lm_cpu.sample(cell, params, 2, state, 3, 200, temperature, top_k, banned, 8)
        assert not np.isin(ids, banned).any(), (temperature, top_k)
        assert ids.min() >= 0 and ids.max() < V


# --------------------------------------------------------------------------------------------------
# Seeds and the random numbers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_same_seed_same_text_other_seed_other_text(cell):
    _, params = make_model(cell, 2, seed=50)
    state = random_state(cell, 2)
    a, state_a = lm_cpu.sample(cell, params, 2, state, 1, 80, 1.0, 0, [0], 2024)
    b, state_b = lm_cpu.sample(cell, params, 2, state, 1, 80, 1.0, 0, [0], 2024)
    other, _ = lm_cpu.sample(cell, params, 2, state, 1, 80, 1.0, 0, [0], 2025)
    big, _ = lm_cpu.sample(cell, params, 2, state, 1, 80, 1.0, 0, [0], 2**64 - 1)
    np.testing.assert_array_equal(a, b)
    for (h_a, c_a), (h_b, c_b) in zip(state_a, state_b, strict=True):
        np.testing.assert_array_equal(h_a, h_b)
        if cell == "lstm":
            np.testing.assert_array_equal(c_a, c_b)
    assert np.count_nonzero(a != other) > 10
    assert np.count_nonzero(a != big) > 10


def test_uniform_is_in_unit_interval_and_roughly_uniform():
    draws = np.array([lm_cpu.uniform(np.uint64(7), np.int64(i)) for i in range(100_000)])
    assert draws.dtype == np.float64
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert abs(draws.mean() - 0.5) < 0.01
    # Each tenth of the interval gets about a tenth of the draws.
    counts = np.histogram(draws, bins=10, range=(0.0, 1.0))[0]
    assert np.all(np.abs(counts - 10_000) < 500)
    # Deterministic, and another seed is another stream.
    assert lm_cpu.uniform(np.uint64(7), np.int64(3)) == draws[3]
    other = np.array([lm_cpu.uniform(np.uint64(8), np.int64(i)) for i in range(100)])
    assert not np.array_equal(other, draws[:100])


# --------------------------------------------------------------------------------------------------
# The Python entry point
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sample_returns_network_state_and_leaves_the_callers_alone(cell):
    net, params = make_model(cell, 2, seed=60)
    state = random_state(cell, 2)
    saved = [(h.copy(), None if c is None else c.copy()) for h, c in state]
    ids, new_state = lm_cpu.sample(cell, params, 2, state, 4, 12, 1.0, 0, None, 5)
    for (h, c), (h0, c0) in zip(state, saved, strict=True):
        np.testing.assert_array_equal(h, h0)
        if cell == "lstm":
            np.testing.assert_array_equal(c, c0)
    assert len(new_state) == 2
    for h, c in new_state:
        assert h.shape == (1, H) and h.dtype == np.float32
        assert (c is None) == (cell == "gru")
        if c is not None:
            assert c.shape == (1, H) and c.dtype == np.float32
    # The new state is usable by the network itself, and n = 0 draws nothing, reads nothing.
    net.next_logits(params, np.array([int(ids[-1])]), new_state)
    none, same = lm_cpu.sample(cell, params, 2, state, 4, 0, 1.0, 0, None, 5)
    assert none.shape == (0,)
    np.testing.assert_array_equal(stacked(same)[0], stacked(state)[0])
    # A (H,)-shaped state and None (zeros) are accepted too.
    flat = [(h.reshape(H), None if c is None else c.reshape(H)) for h, c in state]
    np.testing.assert_array_equal(lm_cpu.sample(cell, params, 2, flat, 4, 12, 1.0, 0, None, 5)[0],
                                  ids)
    zeros = net.initial_state(1)
    np.testing.assert_array_equal(lm_cpu.sample(cell, params, 2, None, 4, 12, 1.0, 0, None, 5)[0],
                                  lm_cpu.sample(cell, params, 2, zeros, 4, 12, 1.0, 0, None, 5)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sample_refuses_bad_inputs_with_clear_messages(cell):
    _, params = make_model(cell, 2, seed=70)
    state = random_state(cell, 2)
    saved = [(h.copy(), None if c is None else c.copy()) for h, c in state]
    bad_h = [(np.zeros((1, H + 1), np.float32), state[0][1]), state[1]]
    other_cell_c = np.zeros((1, H), np.float32) if cell == "gru" else None
    cases = [
        (dict(temperature=-0.5), "temperature must be finite and >= 0"),
        (dict(temperature=float("nan")), "temperature must be finite and >= 0"),
        (dict(temperature=float("inf")), "temperature must be finite and >= 0"),
        (dict(temperature="hot"), "temperature must be a real number"),
        (dict(first=V), "first is character id 11; the vocabulary has ids 0 to 10"),
        (dict(first=-1), "first is character id -1"),
        (dict(banned=[3, V]), r"banned holds ids in \[3, 11\]"),
        (dict(banned=list(range(V))), "banned holds every id"),
        (dict(top_k=-1), "top_k must be >= 0"),
        (dict(n=-1), "n must be >= 0"),
        (dict(n=2.5), "n must be an integer"),
        (dict(seed=-1), r"seed must be in \[0, 2\*\*64\)"),
        (dict(state=bad_h), r"state of layer 0: h has shape \(1, 8\), expected \(1, 7\)"),
        (dict(state=state[:1]), "state has 1 layers, num_layers is 2"),
        (dict(state=[(state[0][0], other_cell_c), state[1]]),
         "the LSTM needs c" if cell == "lstm" else "the GRU has no cell state"),
        (dict(cell="rnn"), "cell must be one of lstm, gru"),
        (dict(num_layers=1), "params hold more than num_layers=1 layers"),
        (dict(num_layers=3), "params lack 'rnn.2.fwd.W'"),
    ]
    for change, message in cases:
        args = dict(cell=cell, params=params, num_layers=2, state=state, first=4, n=10,
                    temperature=1.0, top_k=0, banned=[0], seed=1)
        args.update(change)
        with pytest.raises(ValueError, match=message):
            lm_cpu.sample(**args)
    wrong = dict(params, **{"out.W": params["out.W"][:, :-1]})
    with pytest.raises(ValueError, match=r"out.W'\] has shape \(7, 10\), expected \(7, 11\)"):
        lm_cpu.sample(cell, wrong, 2, state, 4, 10, 1.0, 0, None, 1)
    mixed = dict(params, **{"out.b": params["out.b"].astype(np.float64)})
    with pytest.raises(ValueError, match="must share one dtype"):
        lm_cpu.sample(cell, mixed, 2, state, 4, 10, 1.0, 0, None, 1)
    for (h, c), (h0, c0) in zip(state, saved, strict=True):
        np.testing.assert_array_equal(h, h0)
        if cell == "lstm":
            np.testing.assert_array_equal(c, c0)
