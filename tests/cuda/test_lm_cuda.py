"""The character language model on the GPU: the sampler draws what the CPU sampler draws (the same
random stream, the same top-k and temperature rules, a prompt read in the same launch), a
training step and scoring on the device equal the CPU's, and ``CharLanguageModel(device="cuda")``
trains, scores and samples as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tagger import CharLanguageModel, _config
from tagger.kernels import lm_cpu, lm_cuda
from tagger.nn.language_model import CharLMNetwork
from tagger.nn.lm_resident import LMDeviceEngine
from tagger.nn.optim import make_optimizer
from tagger.nn.training import apply_gradients

V, E, H = 11, 5, 6


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Every simulated thread is a Python thread: few of them, each with several items (the
    sampler's block loops over gate columns, units and characters)."""
    monkeypatch.setattr(_config, "CUDA_GEMM", "naive")
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 2)


def network(cell, num_layers, dropout=0.0, seed=0, dtype=np.float64):
    net = CharLMNetwork(V, embedding_dim=E, cell=cell, hidden_size=H, num_layers=num_layers,
                        dropout=dropout)
    rng = np.random.default_rng(seed)
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(dtype)
              for k, v in net.init_params(rng, dtype).items()}
    params["emb.char"] = rng.normal(0, 1.0, (V, E)).astype(dtype)
    params["out.W"] = (3 * params["out.W"]).astype(dtype)
    return net, params


def test_uniform_draws_are_the_cpus_bitwise():
    for seed in (0, 1, 2**63 + 12345, 2**64 - 1):
        gpu = lm_cuda.uniforms(seed, 7, 9)
        cpu = [lm_cpu.uniform(np.uint64(seed), np.int64(7 + i)) for i in range(9)]
        np.testing.assert_array_equal(gpu, cpu)


@pytest.mark.parametrize("cell,num_layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (1.0, 0), (0.7, 3)])
def test_sampler_draws_what_the_cpu_draws(cell, num_layers, temperature, top_k):
    net, params = network(cell, num_layers, seed=num_layers)
    prompt = np.array([3, 1, 4, 1, 5])
    _, state = net.next_logits(params, prompt[None, :-1], None)
    want, want_state = lm_cpu.sample(cell, params, num_layers, state, int(prompt[-1]), 10,
                                      temperature, top_k, [0, 2], 99)
    # The prompt read on the device, in the same launch, from the zero state.
    got, got_state = lm_cuda.sample(cell, params, num_layers, None, int(prompt[-1]), 10,
                                    temperature, top_k, [0, 2], 99, read=prompt[:-1])
    np.testing.assert_array_equal(got, want)
    assert not {0, 2} & set(got.tolist())
    for (h, c), (h_ref, c_ref) in zip(got_state, want_state, strict=True):
        np.testing.assert_allclose(h, h_ref, rtol=1e-10, atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(c, c_ref, rtol=1e-10, atol=1e-12)
        else:
            assert c is None and c_ref is None


def test_sampler_checks_its_arguments_as_the_cpu_one_does():
    net, params = network("lstm", 1)
    with pytest.raises(ValueError, match="temperature"):
        lm_cuda.sample("lstm", params, 1, None, 0, 5, -1.0)
    with pytest.raises(ValueError, match="banned holds every id"):
        lm_cuda.sample("lstm", params, 1, None, 0, 5, banned=range(V))
    with pytest.raises(ValueError, match="read"):
        lm_cuda.sample("lstm", params, 1, None, 0, 5, read=[V])


@pytest.mark.parametrize("cell,num_layers", [("lstm", 2), ("gru", 1)])
def test_training_steps_on_the_device_equal_the_cpus(cell, num_layers):
    # Two segments with the state carried, dropout and Adam with clipping: the parameters after
    # them, the losses and the carried state are the CPU's within float64 rounding.
    net, params = network(cell, num_layers, dropout=0.2, seed=3)
    ids = np.random.default_rng(8).integers(0, V, (3, 9))
    segments = [(ids[:, 0:4], ids[:, 1:5]), (ids[:, 4:8], ids[:, 5:9])]
    cpu = {k: v.copy() for k, v in params.items()}
    optimizer = make_optimizer("adam", 0.01)
    rng = np.random.default_rng(5)
    state, cpu_losses = net.initial_state(3, np.float64), []
    for x, y in segments:
        loss, grads, state = net.loss_and_grads(cpu, x, y, state, rng)
        apply_gradients(cpu, grads, loss, optimizer, 0.5)
        cpu_losses.append(loss)
    gpu = {k: v.copy() for k, v in params.items()}
    engine = LMDeviceEngine(net, gpu, make_optimizer("adam", 0.01))
    d_state = engine.initial_state(3)
    rng = np.random.default_rng(5)
    gpu_losses = [engine.step(x, y, d_state, rng, 0.5) for x, y in segments]
    engine.download()
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-10)
    for name in params:
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-8, atol=1e-10, err_msg=name)
    for (h, c), (h_ref, c_ref) in zip(d_state.to_host(), state, strict=True):
        np.testing.assert_allclose(h, h_ref, rtol=1e-10, atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(c, c_ref, rtol=1e-10, atol=1e-12)


def test_log_likelihood_on_the_device_equals_the_cpus():
    net, params = network("lstm", 1, seed=4)
    ids = np.random.default_rng(2).integers(0, V, (2, 13))
    engine = LMDeviceEngine(net, params)
    d_state = engine.initial_state(2)
    state, total, gpu_total = None, 0.0, 0.0
    for s in (0, 6):
        logp, n, state = net.log_likelihood(params, ids[:, s:s + 6], ids[:, s + 1:s + 7], state)
        d_logp, d_n = engine.log_likelihood(ids[:, s:s + 6], ids[:, s + 1:s + 7], d_state)
        assert d_n == n
        total += logp
        gpu_total += d_logp
    assert gpu_total == pytest.approx(total, rel=1e-10)


def test_estimator_trains_scores_and_samples_on_the_device_as_on_the_cpu():
    text = ["abcabd ab", "dcba abcd"]  # two streams of two segments
    kwargs = dict(hidden_size=5, embedding_dim=4, bptt=5, batch_size=2, max_epochs=2,
                  random_state=0)
    cpu = CharLanguageModel(device="cpu", **kwargs).fit(text, X_dev=text[:2])
    gpu = CharLanguageModel(device="cuda", **kwargs).fit(text, X_dev=text[:2])
    for a, b in zip(cpu.history_, gpu.history_, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["dev_score"] == pytest.approx(a["dev_score"], rel=1e-4)
    for name, value in cpu.params_.items():
        np.testing.assert_allclose(gpu.params_[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    assert gpu.score(text) == pytest.approx(cpu.score(text), rel=1e-4)
    # The same weights sample the same text with the same seed on either device.
    gpu.params_ = {k: v.copy() for k, v in cpu.params_.items()}
    for temperature in (0.0, 1.0):
        assert gpu.sample("ab", 15, temperature=temperature, random_state=3) == \
            cpu.sample("ab", 15, temperature=temperature, random_state=3)
    backward = CharLanguageModel(device="cuda", direction="backward",
                                 **{**kwargs, "max_epochs": 1}).fit(text)
    assert backward.sample("cd", 6, random_state=1).endswith("cd")
