"""Training with everything on the device (``tagger.nn.resident``): a step's loss and gradients
equal the CPU engine's for every kind of layer, the optimizers update as on the host, only the
batch goes over and only the losses and the gradient norm come back, and a diverged step leaves
the parameters as they were."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from numba import cuda

from tagger import _config
from tagger.nn import resident
from tagger.nn.classifier import ClassifierNetwork
from tagger.nn.features import NumericBatch, NumericFeaturizer, TokenBatch, TokenFeaturizer
from tagger.nn.model import ClassifierModel, TaggerModel
from tagger.nn.network import TaggingNetwork
from tagger.nn.optim import SGD, Adam
from tagger.nn.training import apply_gradients


@pytest.fixture(autouse=True)
def whole_problem_blocks(monkeypatch):
    """Recurrences in one block per direction and the one-thread-per-output product: the
    quickest to simulate at these sizes (the kernel tests cover small blocks)."""
    monkeypatch.setattr(_config, "CUDA_GEMM", "naive")
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 16)
    monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 4)
    # One block for the element-wise kernels, looping over the whole array (every simulated
    # thread is a Python thread; the kernel tests run many blocks).
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)


def token_batch(seed=0, n_words=9, n_shapes=3, n_chars=7):
    rng = np.random.default_rng(seed)
    lengths = np.array([5, 3, 1], np.int64)
    B, T = len(lengths), int(lengths.max())
    valid = np.arange(T)[None, :] < lengths[:, None]
    word_ids = np.where(valid, rng.integers(1, n_words, (B, T)), 0)
    shape_ids = np.where(valid, rng.integers(1, n_shapes, (B, T)), 0)
    distinct, slots = np.unique(word_ids[valid], return_inverse=True)
    word_slots = np.full((B, T), -1, np.int64)
    word_slots[valid] = slots
    U, L = len(distinct), 4
    char_lengths = rng.integers(1, L + 1, U)
    char_lengths[U // 2] = 0  # a word without characters (the encoder never makes one, but
    # the layers must not depend on that)
    char_ids = np.where(np.arange(L)[None, :] < char_lengths[:, None],
                        rng.integers(1, n_chars, (U, L)), 0)
    tags = np.where(valid, rng.integers(0, 4, (B, T)), 0)
    return TokenBatch(word_ids, shape_ids, lengths, word_slots, char_ids, char_lengths), tags


def tagger_model(char_encoder, cell, layers, bidirectional, crf, dropout):
    featurizer = TokenFeaturizer(9, 3, 3, 2 if char_encoder != "lstm" else 0, 7, char_encoder,
                                 2, 2, dropout)
    network = TaggingNetwork(featurizer.output_size, 4, cell, 3, layers, bidirectional, crf,
                             dropout)
    return TaggerModel(featurizer, network)


def cpu_and_gpu_step(model, batch, targets, loss_args):
    """(CPU loss, CPU grads, GPU loss, GPU grads) of one training step in float64, both with
    the same random stream (the same dropout masks)."""
    params = model.init_params(np.random.default_rng(3), np.float64)
    model.set_device("cpu")
    loss, grads = model.loss_and_grads(params, batch, *loss_args(np.random.default_rng(5)))
    model.set_device("cuda")
    dparams = resident.upload_params(model, params)
    d = resident.DeviceBatch(batch, np.float64, targets[0])
    if len(targets) > 1:
        d.weights = cuda.to_device(targets[1])
    losses, d_grads = resident.loss_and_grads(model, dparams, d, np.random.default_rng(5))
    gpu_loss = float(losses.copy_to_host().sum()) / len(batch.lengths)
    return loss, grads, gpu_loss, {k: v.copy_to_host() for k, v in d_grads.items()}


def assert_same_step(loss, grads, gpu_loss, gpu_grads):
    assert gpu_loss == pytest.approx(loss, rel=1e-9)
    assert sorted(gpu_grads) == sorted(grads)
    for name, value in grads.items():
        np.testing.assert_allclose(gpu_grads[name], value, rtol=1e-7, atol=1e-10,
                                   err_msg=name)


TAGGERS = {
    "cnn-lstm-pair-crf": ("cnn", "lstm", 1, True, True, 0.3),
    "charlstm-gru2-softmax": ("lstm", "gru", 2, True, False, 0.25),
    "nochars-rnn-forward-crf": (None, "rnn", 1, False, True, 0.0),
    "cnn-lstm2-crf": ("cnn", "lstm", 2, True, True, 0.2),
    "nochars-lstm2-forward-softmax": (None, "lstm", 2, False, False, 0.2),
}


@pytest.mark.parametrize("config", list(TAGGERS), ids=list(TAGGERS))
def test_tagger_step_matches_the_cpu(config):
    model = tagger_model(*TAGGERS[config])
    batch, tags = token_batch()
    loss, grads, gpu_loss, gpu_grads = cpu_and_gpu_step(model, batch, (tags,),
                                                        lambda rng: (tags, rng))
    assert_same_step(loss, grads, gpu_loss, gpu_grads)


def test_unpaired_lstm_layers_match_the_cpu(monkeypatch):
    monkeypatch.setattr(_config, "CUDA_PAIR_DIRECTIONS", False)
    model = tagger_model("cnn", "lstm", 1, True, True, 0.0)
    batch, tags = token_batch(seed=1)
    _, grads, _, gpu_grads = cpu_and_gpu_step(model, batch, (tags,), lambda rng: (tags, rng))
    for name, value in grads.items():
        np.testing.assert_allclose(gpu_grads[name], value, rtol=1e-7, atol=1e-10,
                                   err_msg=name)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_classifier_step_matches_the_cpu(pooling):
    rng = np.random.default_rng(2)
    lengths = np.array([4, 2, 3, 1], np.int64)
    x = rng.normal(size=(4, 4, 2)) * (np.arange(4)[None, :, None] < lengths[:, None, None])
    batch = NumericBatch(x, lengths)
    labels = np.array([0, 2, 1, 2], np.int64)
    weights = np.array([1.0, 0.5, 2.0, 1.5])
    network = ClassifierNetwork(2, 3, "lstm", 3, 1, True, pooling, dropout=0.3)
    model = ClassifierModel(NumericFeaturizer(2), network)
    loss, grads, gpu_loss, gpu_grads = cpu_and_gpu_step(
        model, batch, (labels, weights), lambda rng: (labels, rng, weights))
    assert_same_step(loss, grads, gpu_loss, gpu_grads)


def test_classifier_on_token_features_matches_the_cpu():
    batch, _ = token_batch(seed=3)
    labels = np.array([1, 0, 1], np.int64)
    featurizer = TokenFeaturizer(9, 3, 3, 2, 7, "cnn", 2, 2, 0.2)
    network = ClassifierNetwork(featurizer.output_size, 2, "gru", 3, 2, False, "max", 0.2)
    model = ClassifierModel(featurizer, network)
    weights = np.ones(3)
    loss, grads, gpu_loss, gpu_grads = cpu_and_gpu_step(
        model, batch, (labels, weights), lambda rng: (labels, rng, weights))
    assert_same_step(loss, grads, gpu_loss, gpu_grads)


@pytest.mark.parametrize("optimizer", [
    lambda: Adam(0.01, weight_decay=0.1),
    lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda: SGD(0.1),
], ids=["adam", "sgd-nesterov", "sgd"])
def test_device_optimizer_updates_as_on_the_host(optimizer):
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 4)).astype(np.float32),
              "b": rng.normal(size=5).astype(np.float32)}
    host, host_params = optimizer(), {k: v.copy() for k, v in params.items()}
    host.step(host_params, {k: np.ones_like(v) for k, v in params.items()})  # state to resume
    device = optimizer()
    device.load_state_dict(host.state_dict())
    dparams = resident.upload_flat(host_params)
    layout = dparams.layout
    on_device = resident.DeviceOptimizer(device, layout)
    for _ in range(2):
        grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
        host.step(host_params, grads, scale=0.5)
        on_device.step(dparams, layout.views(cuda.to_device(layout.pack(grads))), scale=0.5)
    on_device.download()
    for name, value in host_params.items():
        np.testing.assert_allclose(dparams[name].copy_to_host(), value, rtol=1e-6, atol=1e-7)
    assert device.steps == host.steps == 3
    assert sorted(device.state) == sorted(host.state)
    for key, value in host.state.items():
        np.testing.assert_allclose(device.state[key], value, rtol=1e-6, atol=1e-7)


def small_tagger():
    model = tagger_model("cnn", "lstm", 1, True, True, 0.2)
    model.set_device("cuda")
    return model


@contextlib.contextmanager
def counting_transfers(uploads: list, downloads: list, allocations: list):
    """Record the shape of every host-to-device and device-to-host copy, and of every device
    allocation."""
    to_device, device_array = cuda.to_device, cuda.device_array
    array_type = type(cuda.device_array(1))
    copy_to_host, copy_to_device = array_type.copy_to_host, array_type.copy_to_device

    def upload(self, a, *rest, **kwargs):
        if not hasattr(a, "copy_to_host"):  # from the host (not between device arrays)
            uploads.append(np.shape(a))
        return copy_to_device(self, a, *rest, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cuda, "to_device", lambda a, *r, **k: uploads.append(np.shape(a))
                      or to_device(a, *r, **k))
        patch.setattr(cuda, "device_array", lambda shape, *r, **k: allocations.append(shape)
                      or device_array(shape, *r, **k))
        patch.setattr(array_type, "copy_to_device", upload)
        patch.setattr(array_type, "copy_to_host", lambda self, *r, **k: downloads.append(
            tuple(self.shape)) or copy_to_host(self, *r, **k))
        yield


def test_device_training_matches_the_host_and_moves_only_batches_and_losses():
    """Three steps on the device against three on the host; the last step sends only the batch
    over (in one transfer), brings only the loss and the squared norms back (in another), and
    allocates no device memory (its temporaries come from the arena the first steps sized)."""
    model = small_tagger()
    params = model.init_params(np.random.default_rng(0))
    host_params = {k: v.copy() for k, v in params.items()}
    trainer = resident.ResidentTrainer(model, params, Adam(0.01))
    host_opt = Adam(0.01)
    uploads, downloads, allocations = [], [], []
    for seed in range(3):
        batch, tags = token_batch(seed)
        # Once the kernels are loaded and the arena sized, the transfers of a step are counted.
        with (counting_transfers(uploads, downloads, allocations) if seed == 2
              else contextlib.nullcontext()):
            loss = trainer.step(batch, (tags,), np.random.default_rng(seed), 1.0)
        model.set_device("cpu")
        host_loss, grads = model.loss_and_grads(host_params, batch, tags,
                                                np.random.default_rng(seed))
        apply_gradients(host_params, grads, host_loss, host_opt, 1.0)
        model.set_device("cuda")
        assert loss == pytest.approx(host_loss, rel=1e-4)
    n_ints = sum(a.size for a in (batch.word_ids, batch.shape_ids, batch.lengths,
                                  batch.word_slots, batch.char_ids, batch.char_lengths, tags))
    assert uploads == [(n_ints,)]  # the batch's ids, in one transfer
    assert downloads == [(len(params) + 1,)]  # the squared norms and the loss, together
    assert allocations == [] and trainer.arena.fallbacks > 0  # the first step's only
    trainer.download()
    for name, value in host_params.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert host_opt.steps == trainer.optimizer.optimizer.steps == 3


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_diverged_step_changes_nothing():
    model = small_tagger()
    params = model.init_params(np.random.default_rng(0))
    params["out.b"][0] = np.inf
    before = {k: v.copy() for k, v in params.items()}
    trainer = resident.ResidentTrainer(model, params, Adam(0.01))
    batch, tags = token_batch()
    with pytest.raises(FloatingPointError, match="non-finite"):
        trainer.step(batch, (tags,), np.random.default_rng(0), 5.0)
    trainer.download()
    for name, value in before.items():
        np.testing.assert_array_equal(params[name], value)
    assert trainer.optimizer.optimizer.steps == 0


@pytest.mark.parametrize("crf", [True, False], ids=["crf", "softmax"])
def test_prediction_on_the_device_matches_the_cpu(crf):
    model = tagger_model("cnn", "lstm", 1, True, crf, 0.5)
    params = model.init_params(np.random.default_rng(4))
    batch, _ = token_batch(seed=2)
    model.set_device("cpu")
    tags, probs = model.predict_and_marginals(params, batch)
    model.set_device("cuda")
    dparams = model.prediction_params(params)
    assert isinstance(dparams, resident.DeviceParams)
    gpu_tags, gpu_probs = model.predict_and_marginals(dparams, batch)
    np.testing.assert_array_equal(gpu_tags, tags)
    np.testing.assert_allclose(gpu_probs, probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(dparams, batch), tags)


def test_classifier_prediction_on_the_device_matches_the_cpu():
    rng = np.random.default_rng(6)
    lengths = np.array([3, 1, 2], np.int64)
    batch = NumericBatch(rng.normal(size=(3, 3, 2)) * (np.arange(3)[None, :, None]
                                                       < lengths[:, None, None]), lengths)
    model = ClassifierModel(NumericFeaturizer(2),
                            ClassifierNetwork(2, 3, "gru", 3, 1, True, "mean", 0.5))
    params = model.init_params(np.random.default_rng(1))
    expected = model.logits(params, batch)
    model.set_device("cuda")
    np.testing.assert_allclose(model.logits(model.prediction_params(params), batch), expected,
                               rtol=1e-4, atol=1e-6)
