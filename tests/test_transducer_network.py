"""The encoder-decoder network: parameter shapes, finite-difference gradients through the
encoder, the attention, input feeding and the decoder's initial state (with features and
dropout), padding that changes nothing, and checks of its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from tagger.nn.transducer import TransducerNetwork

VS, VT = 5, 6


def batch(seed=0):
    rng = np.random.default_rng(seed)
    src_lengths = np.array([4, 2, 1])
    src = rng.integers(0, VS, (3, 4))
    tgt_lengths = np.array([3, 1, 2])
    tgt_in = rng.integers(0, VT, (3, 3))
    tgt_out = rng.integers(0, VT, (3, 3))
    features = rng.integers(0, 3, (3, 1))
    return src, src_lengths, tgt_in, tgt_out, tgt_lengths, features


def network(features=True, dropout=0.0, num_layers=1):
    return TransducerNetwork(VS, VT, (3,) if features else (), embedding_dim=3, feature_dim=2,
                             hidden_size=3, num_layers=num_layers, dropout=dropout)


def perturbed(net, seed=1):
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, 0.3, v.shape)
            for k, v in net.init_params(rng, np.float64).items()}


def test_param_shapes_match_init_params():
    net = network(num_layers=2)
    params = net.init_params(np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == net.param_shapes()
    assert all(v.dtype == np.float32 for v in params.values())
    assert np.all(params["dec.b"][3:6] == 1)  # the decoder's forget gate


@pytest.mark.parametrize("features,dropout,num_layers", [(True, 0.0, 1), (False, 0.3, 2)])
def test_gradients_match_finite_differences(features, dropout, num_layers):
    net = network(features, dropout, num_layers)
    params = perturbed(net)
    src, src_lengths, tgt_in, tgt_out, tgt_lengths, feats = batch()
    feats = feats if features else None

    def loss():
        return net.loss_and_grads(params, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                                  feats, np.random.default_rng(7) if dropout else None)[0]

    _, grads = net.loss_and_grads(params, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                                  feats, np.random.default_rng(7) if dropout else None)
    assert sorted(grads) == sorted(params)
    for name, value in params.items():
        numeric = numerical_gradient(loss, value)
        assert relative_error(grads[name], numeric) < 1e-6, name


def test_padding_changes_nothing():
    net = network()
    params = perturbed(net)
    src, src_lengths, tgt_in, tgt_out, tgt_lengths, feats = batch(2)
    loss, grads = net.loss_and_grads(params, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                                     feats)
    src2, tgt_in2, tgt_out2 = src.copy(), tgt_in.copy(), tgt_out.copy()
    for b in range(3):
        src2[b, src_lengths[b]:] = (src2[b, src_lengths[b]:] + 1) % VS
        tgt_in2[b, tgt_lengths[b]:] = (tgt_in2[b, tgt_lengths[b]:] + 2) % VT
        tgt_out2[b, tgt_lengths[b]:] = (tgt_out2[b, tgt_lengths[b]:] + 3) % VT
    loss2, grads2 = net.loss_and_grads(params, src2, src_lengths, tgt_in2, tgt_out2,
                                       tgt_lengths, feats)
    assert loss2 == pytest.approx(loss, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("change, match", [
    ({"src_lengths": np.array([0, 2, 1])}, "src_lengths"),
    ({"src": np.full((3, 4), VS)}, "src holds ids"),
    ({"tgt_out": np.full((3, 3), -1)}, "tgt_out holds ids"),
    ({"tgt_lengths": np.array([4, 1, 1])}, "tgt_lengths"),
    ({"features": np.zeros((3, 2), np.int64)}, "features must have shape"),
    ({"features": np.full((3, 1), 3)}, "feature 0 holds ids"),
])
def test_bad_inputs_are_refused(change, match):
    net = network()
    params = net.init_params(np.random.default_rng(0), np.float64)
    names = ["src", "src_lengths", "tgt_in", "tgt_out", "tgt_lengths", "features"]
    args = dict(zip(names, batch(), strict=True))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        net.loss_and_grads(params, **args)


# -- decoding --------------------------------------------------------------------------------------

BOS, EOS = 0, 1


def decoder_setup(seed=3, target_size=4):
    net = TransducerNetwork(VS, target_size, (3,), embedding_dim=3, feature_dim=2,
                            hidden_size=4)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.5, v.shape)
              for k, v in net.init_params(rng, np.float64).items()}
    return net, params


def sequence_log_prob(net, params, src, symbols, features):
    tgt_in = np.array([[BOS] + symbols])
    tgt_out = np.array([symbols + [EOS]])
    return float(net.log_likelihood(params, src[None, :], [len(src)], tgt_in, tgt_out,
                                    [len(symbols) + 1], features[None, :])[0])


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_search_equals_exhaustive_search(length_penalty):
    import itertools

    net, params = decoder_setup()
    src, features = np.array([2, 4, 1]), np.array([1])
    max_length = 4
    candidates = []
    # n symbols, then the end symbol; no output is empty and none holds the start symbol
    for n in range(1, max_length):
        for symbols in itertools.product([2, 3], repeat=n):
            logp = sequence_log_prob(net, params, src, list(symbols), features)
            candidates.append((logp / (n + 1) ** length_penalty, list(symbols)))
    candidates.sort(key=lambda c: -c[0])
    found = net.beam_search(params, src, 3, BOS, EOS, max_length, beam_size=10**6,
                            length_penalty=length_penalty, features=features, n_best=3)
    assert [f[0] for f in found] == [c[1] for c in candidates[:3]]
    np.testing.assert_allclose([f[1] for f in found], [c[0] for c in candidates[:3]],
                               rtol=1e-10)
    assert all(f[2] for f in found)


def test_unfinished_hypotheses_equal_exhaustive_search():
    # A decoder that can never write the end symbol: after max_length steps the best live
    # hypotheses come back, spelled out in full and ranked by log p / length ** penalty.
    import itertools

    net, params = decoder_setup(5)
    params["out.b"][EOS] = -np.inf
    rng = np.random.default_rng(4)
    src = rng.integers(0, VS, (3, 4))
    lengths = np.array([4, 1, 3])
    features = rng.integers(0, 3, (3, 1))
    max_length = 4
    found = net.beam_search_batch(params, src, lengths, BOS, EOS, max_length,
                                  beam_size=10**6, length_penalty=1.0, features=features,
                                  n_best=3)
    for b in range(3):
        candidates = []
        for symbols in itertools.product([2, 3], repeat=max_length):
            symbols = list(symbols)
            logp = float(net.log_likelihood(
                params, src[b:b + 1], lengths[b:b + 1], np.array([[BOS] + symbols[:-1]]),
                np.array([symbols]), [max_length], features[b:b + 1])[0])
            candidates.append((logp / max_length, symbols))
        candidates.sort(key=lambda c: -c[0])
        assert [f[0] for f in found[b]] == [c[1] for c in candidates[:3]]
        np.testing.assert_allclose([f[1] for f in found[b]], [c[0] for c in candidates[:3]],
                                   rtol=1e-10)
        assert not any(f[2] for f in found[b])


def test_beam_of_one_is_greedy_and_greedy_is_batched():
    net, params = decoder_setup(4, target_size=7)
    rng = np.random.default_rng(9)
    src = rng.integers(0, VS, (5, 6))
    lengths = np.array([6, 1, 3, 4, 2])
    features = rng.integers(0, 3, (5, 1))
    batched = net.greedy(params, src, lengths, BOS, EOS, 8, features)
    for b in range(5):
        alone = net.greedy(params, src[b:b + 1, :lengths[b]], lengths[b:b + 1], BOS, EOS, 8,
                           features[b:b + 1])
        assert alone[0] == batched[b]
        beam = net.beam_search(params, src[b, :lengths[b]], int(lengths[b]), BOS, EOS, 8,
                               beam_size=1, features=features[b])
        assert beam[0][0] == batched[b]
        if len(batched[b]) < 8:
            assert beam[0][2]  # it wrote the end symbol


@pytest.mark.parametrize("max_length", [2, 8])
def test_batched_beam_search_finds_what_each_source_finds_alone(max_length):
    # Sources of several lengths, searched together: each one's hypotheses are those of its
    # own search, whether it finishes early (its rows leave the batch), late or, with a short
    # max_length, not at all (its best live hypotheses come back, unfinished).
    net, params = decoder_setup(4, target_size=7)
    params["out.b"][EOS] += 0.5  # some sources end within a step or two, others never
    rng = np.random.default_rng(11)
    src = rng.integers(0, VS, (6, 5))
    lengths = np.array([5, 1, 3, 4, 2, 5])
    features = rng.integers(0, 3, (6, 1))
    batched = net.beam_search_batch(params, src, lengths, BOS, EOS, max_length, beam_size=3,
                                    length_penalty=0.5, features=features, n_best=3)
    assert len(batched) == 6
    finished = 0
    for b in range(6):
        alone = net.beam_search(params, src[b, :lengths[b]], int(lengths[b]), BOS, EOS,
                                max_length, beam_size=3, length_penalty=0.5,
                                features=features[b], n_best=3)
        assert [(s, done) for s, _, done in batched[b]] == [(s, done) for s, _, done in alone]
        np.testing.assert_allclose([x for _, x, _ in batched[b]], [x for _, x, _ in alone],
                                   rtol=1e-12)
        finished += alone[0][2]
    assert 0 < finished < 6


def test_log_likelihood_is_the_loss():
    net = network()
    params = perturbed(net)
    src, src_lengths, tgt_in, tgt_out, tgt_lengths, feats = batch(5)
    loss, _ = net.loss_and_grads(params, src, src_lengths, tgt_in, tgt_out, tgt_lengths, feats)
    per_row = net.log_likelihood(params, src, src_lengths, tgt_in, tgt_out, tgt_lengths, feats)
    assert -per_row.sum() / tgt_lengths.sum() == pytest.approx(loss, rel=1e-12)


def test_searches_never_write_the_start_symbol_or_an_empty_output():
    # A network that prefers the start symbol (also the padding) everywhere and the end symbol
    # at once: no target is empty and none holds the start symbol, so neither is written.
    net, params = decoder_setup(4, target_size=7)
    params["out.b"][BOS] += 20.0
    params["out.b"][EOS] += 10.0
    rng = np.random.default_rng(3)
    src = rng.integers(0, VS, (3, 4))
    lengths = np.array([4, 2, 3])
    features = rng.integers(0, 3, (3, 1))
    greedy = net.greedy(params, src, lengths, BOS, EOS, 6, features)
    beams = net.beam_search_batch(params, src, lengths, BOS, EOS, 6, beam_size=4,
                                  features=features, n_best=4)
    outputs = greedy + [symbols for hyps in beams for symbols, _, _ in hyps]
    assert all(symbols and BOS not in symbols for symbols in outputs)
    assert all(done for hyps in beams for _, _, done in hyps)
