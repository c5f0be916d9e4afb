"""The encoder–decoder on the GPU: a training step on the device (dropout, features, a stacked
encoder, Adam with clipping) leaves the CPU's parameters and loss, greedy decoding, beam search
and teacher-forced scoring on the device find the CPU's outputs and scores, and
``SequenceTransducer(device="cuda")`` trains, scores and predicts as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import test_transducer_network as reference

from tagger import SequenceTransducer, _config
from tagger.nn.optim import make_optimizer
from tagger.nn.training import apply_gradients
from tagger.nn.transducer import TransducerNetwork
from tagger.nn.transducer_resident import TransducerDeviceEngine

VS, VT = 6, 7


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_GEMM", "naive")
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 2)


def network(features=True, dropout=0.0, num_layers=1, seed=1):
    net = TransducerNetwork(VS, VT, (3,) if features else (), embedding_dim=3, feature_dim=2,
                            hidden_size=3, num_layers=num_layers, dropout=dropout)
    rng = np.random.default_rng(seed)
    params = {k: v + rng.normal(0, 0.3, v.shape)
              for k, v in net.init_params(rng, np.float64).items()}
    params["out.W"] = 3 * params["out.W"]  # peaked outputs: decoding ends within a few steps
    return net, params


def batch(seed=0):
    return reference.batch(seed)  # the CPU network's test batch (three rows, a feature)


@pytest.mark.parametrize("features,dropout,num_layers", [(True, 0.3, 1), (False, 0.2, 2)])
def test_training_steps_on_the_device_equal_the_cpus(features, dropout, num_layers):
    net, params = network(features, dropout, num_layers)
    batches = [batch(0), batch(1)]
    cpu = {k: v.copy() for k, v in params.items()}
    optimizer = make_optimizer("adam", 0.01)
    rng = np.random.default_rng(5)
    cpu_losses = []
    for src, sl, ti, to, tl, f in batches:
        loss, grads = net.loss_and_grads(cpu, src, sl, ti, to, tl, f if features else None,
                                         rng)
        apply_gradients(cpu, grads, loss, optimizer, 0.5)
        cpu_losses.append(loss)
    gpu = {k: v.copy() for k, v in params.items()}
    engine = TransducerDeviceEngine(net, gpu, make_optimizer("adam", 0.01))
    rng = np.random.default_rng(5)
    gpu_losses = [engine.step(src, sl, ti, to, tl, f if features else None, rng, 0.5)
                  for src, sl, ti, to, tl, f in batches]
    engine.download()
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for name in params:
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-8, atol=1e-10, err_msg=name)
    assert engine.optimizer.optimizer.steps == 2


def test_a_step_without_dropout_or_an_optimizer():
    net, params = network(features=False)
    src, sl, ti, to, tl, _ = batch(2)
    with pytest.raises(RuntimeError, match="without an optimizer"):
        TransducerDeviceEngine(net, params).step(src, sl, ti, to, tl)
    cpu = {k: v.copy() for k, v in params.items()}
    sgd = make_optimizer("sgd", 0.1)
    loss, grads = net.loss_and_grads(cpu, src, sl, ti, to, tl)
    apply_gradients(cpu, grads, loss, sgd, None)
    gpu = {k: v.copy() for k, v in params.items()}
    engine = TransducerDeviceEngine(net, gpu, make_optimizer("sgd", 0.1))
    assert engine.step(src, sl, ti, to, tl) == pytest.approx(loss, rel=1e-10)
    engine.download()
    for name in params:
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-8, atol=1e-10, err_msg=name)


def test_decoding_on_the_device_finds_what_the_cpu_finds():
    net, params = network(features=True, seed=3)
    src, sl, ti, to, tl, f = batch(4)
    engine = TransducerDeviceEngine(net, params)
    assert engine.greedy(src, sl, 0, 1, 5, f) == net.greedy(params, src, sl, 0, 1, 5, f)
    wants = net.beam_search_batch(params, src, sl, 0, 1, 5, beam_size=3, length_penalty=1.0,
                                  features=f, n_best=3)
    gots = engine.beam_search_batch(src, sl, 0, 1, 5, beam_size=3, length_penalty=1.0,
                                    features=f, n_best=3)
    gots[2:] = engine.beam_search_batch(src[2:], sl[2:], 0, 1, 5, beam_size=3,
                                        length_penalty=1.0, features=f[2:],
                                        n_best=3)  # one source alone
    for got, want in zip(gots, wants, strict=True):
        assert [(s, done) for s, _, done in got] == [(s, done) for s, _, done in want]
        np.testing.assert_allclose([x for _, x, _ in got], [x for _, x, _ in want], rtol=1e-10)
    np.testing.assert_allclose(engine.log_likelihood(src, sl, ti, to, tl, f),
                               net.log_likelihood(params, src, sl, ti, to, tl, f), rtol=1e-10)
    with pytest.raises(ValueError, match="src_lengths"):
        engine.greedy(src, [5, 1, 1], 0, 1, 6, f)


@pytest.mark.filterwarnings("ignore:.*reached max_output_length:UserWarning")
def test_auto_takes_the_cpu_and_cuda_the_gpu(monkeypatch):
    from tagger.kernels.backend import cuda_usable

    assert cuda_usable()
    monkeypatch.delenv("TAGGER_DEVICE", raising=False)
    assert SequenceTransducer()._resolve_device() == "cpu"
    assert SequenceTransducer(device="cuda")._resolve_device() == "cuda"
    monkeypatch.setenv("TAGGER_DEVICE", "cuda")
    assert SequenceTransducer()._resolve_device() == "cuda"


def test_estimator_trains_and_predicts_on_the_device_as_on_the_cpu():
    X = ["abc", "ba", "cab"]
    y = ["cba", "ab", "bac"]
    kwargs = dict(hidden_size=4, embedding_dim=3, batch_size=2, max_epochs=2, random_state=0,
                  dropout=0.1, beam_size=1, max_output_length=3)
    cpu = SequenceTransducer(device="cpu", **kwargs).fit(X, y, X_dev=X[:1], y_dev=y[:1])
    gpu = SequenceTransducer(device="cuda", **kwargs).fit(X, y, X_dev=X[:1], y_dev=y[:1])
    for a, b in zip(cpu.history_, gpu.history_, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["dev_score"] == pytest.approx(a["dev_score"])
    for name, value in cpu.params_.items():
        np.testing.assert_allclose(gpu.params_[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    # Decoding keeps one device copy of the weights until they are replaced or trained.
    assert "_device_params_cache" not in gpu.__dict__
    engine = gpu._decoder()
    assert gpu._decoder() is engine
    # The same weights decode and score the same on either device.
    gpu.params_ = {k: v.copy() for k, v in cpu.params_.items()}
    assert gpu._decoder() is not engine
    assert gpu.predict(X) == cpu.predict(X)
    best_gpu, best_cpu = gpu.predict_n_best(X[:1], 2), cpu.predict_n_best(X[:1], 2)
    assert [[s for s, _ in h] for h in best_gpu] == [[s for s, _ in h] for h in best_cpu]
    np.testing.assert_allclose(gpu.log_probability(X, y), cpu.log_probability(X, y),
                               rtol=1e-4)
