"""The sequence classification network: gradients, padding, and a small learning task."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from tagger.nn.classifier import POOLINGS, ClassifierNetwork
from tagger.nn.optim import Adam
from tagger.nn.training import apply_gradients, pad_sequences


def batch(seed=0, B=4, T=6, D=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype(dtype)
    lengths = np.array([T, 3, 1, 5][:B], np.int64)
    labels = rng.integers(0, 3, size=B)
    return x, lengths, labels


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_gradients_match_finite_differences(pooling, bidirectional):
    x, lengths, labels = batch()
    net = ClassifierNetwork(3, 3, hidden_size=2, num_layers=2, bidirectional=bidirectional,
                            pooling=pooling, dropout=0.25)
    rng = np.random.default_rng(1)
    params = net.init_params(rng, np.float64)
    params = {k: v + rng.normal(0, 0.2, v.shape) for k, v in params.items()}
    weights = np.array([1.0, 2.0, 0.5, 1.0])

    def loss():
        return net.loss_and_grads(params, x, lengths, labels, np.random.default_rng(3), weights)[0]

    _, grads, dx = net.loss_and_grads(params, x, lengths, labels, np.random.default_rng(3), weights)
    assert set(grads) == set(params)
    for name, arr in list(params.items()) + [("x", x)]:
        analytic = dx if name == "x" else grads[name]
        err = relative_error(numerical_gradient(loss, arr), analytic)
        assert err < 1e-6, (name, err)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_predictions_ignore_padding_and_batch_composition(pooling):
    rng = np.random.default_rng(2)
    net = ClassifierNetwork(3, 4, hidden_size=5, pooling=pooling)
    params = net.init_params(rng)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (7, 2, 4)]
    x, lengths = pad_sequences(seqs)
    x[1, 2:] = 1e3  # garbage in the padding
    together = net.predict_proba(params, x, lengths)
    np.testing.assert_allclose(together.sum(axis=1), 1.0, rtol=1e-6)
    for i, s in enumerate(seqs):
        alone_x, alone_len = pad_sequences([s])
        np.testing.assert_allclose(net.predict_proba(params, alone_x, alone_len)[0], together[i],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_learns_which_symbol_came_first(pooling):
    """Label = which of two marker symbols appears first, anywhere in a noisy sequence."""
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for _ in range(400):
        n = int(rng.integers(4, 12))
        s = rng.integers(2, 6, size=n)
        i, j = sorted(rng.choice(n, size=2, replace=False))
        first = int(rng.integers(2))
        s[i], s[j] = first, 1 - first
        seqs.append(np.eye(6, dtype=np.float32)[s])
        labels.append(first)
    labels = np.array(labels)
    net = ClassifierNetwork(6, 2, hidden_size=16, pooling=pooling)
    params = net.init_params(rng)
    opt = Adam(0.02)
    for _ in range(12):
        for k in range(0, 300, 20):
            x, lengths = pad_sequences(seqs[k:k + 20])
            loss, grads, _ = net.loss_and_grads(params, x, lengths, labels[k:k + 20], rng)
            apply_gradients(params, grads, loss, opt, 5.0)
    x, lengths = pad_sequences(seqs[300:])
    accuracy = (net.predict_proba(params, x, lengths).argmax(1) == labels[300:]).mean()
    assert accuracy > 0.9


def test_bad_configuration():
    with pytest.raises(ValueError, match="pooling must be one of"):
        ClassifierNetwork(3, 2, pooling="sum")
    with pytest.raises(ValueError, match="at least two classes"):
        ClassifierNetwork(3, 1)
