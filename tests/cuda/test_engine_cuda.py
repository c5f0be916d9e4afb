"""The engine on the GPU kernels (under the simulator in CI): device selection, training and
prediction end to end, and models moving between devices with the same results."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tagger import SequenceClassifier, SequenceTagger
from tagger.kernels import backend

SENTENCES = [
    (["Anna", "lives", "in", "Rome"], ["B-PER", "O", "O", "B-LOC"]),
    (["Omar", "works", "in", "Oslo"], ["B-PER", "O", "O", "B-LOC"]),
    (["we", "met", "Lucy"], ["O", "O", "B-PER"]),
    (["Paris", "is", "big"], ["B-LOC", "O", "O"]),
]
TINY = dict(hidden_size=4, word_dim=4, char_encoder=None, shape_dim=2, batch_size=2,
            max_epochs=2, early_stopping=False, random_state=0, learning_rate=0.05)


@pytest.fixture(autouse=True)
def whole_problem_blocks(monkeypatch):
    """One block per recurrent layer direction (hidden 4 x 4 gates = 16 threads, batches of up
    to 4 in one group): the simulator then runs each recurrence in one launch. And the matrix
    product with one thread per output, the quickest to simulate at these sizes. The kernel
    tests cover many small blocks and the tiled product."""
    from tagger import _config

    monkeypatch.setattr(_config, "CUDA_GEMM", "naive")
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 16)
    monkeypatch.setattr(_config, "CUDA_UNITS_PER_BLOCK", 4)
    monkeypatch.setattr(_config, "CUDA_ROWS_PER_BLOCK", 4)
    # One block for the element-wise kernels, looping over the whole array (every simulated
    # thread is a Python thread; the kernel tests run many blocks).
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)


def data(n=3):
    X = [s for s, _ in SENTENCES] * n
    y = [t for _, t in SENTENCES] * n
    return X, y


def test_cuda_resolves_and_auto_prefers_it(monkeypatch):
    assert backend.resolve_device("cuda") == "cuda"
    assert backend.resolve_device("auto") == "cuda"
    assert backend.resolve_device("cpu") == "cpu"
    monkeypatch.setenv("TAGGER_DEVICE", "cpu")
    assert backend.resolve_device("cuda") == "cpu"  # the environment overrides
    monkeypatch.setenv("TAGGER_DEVICE", "tpu")
    with pytest.raises(ValueError, match="TAGGER_DEVICE must be one of"):
        backend.resolve_device("auto")


def test_a_failing_test_kernel_says_why_and_what_to_do(monkeypatch):
    """numba-cuda 0.30.4 cannot compile a kernel with NumPy 2.5 (np.row_stack is gone): the
    probe's error names the cause and the remedy, and device="cuda" is refused with it."""
    import warnings

    from tagger.kernels import rnn_cuda

    class Broken:
        def __getitem__(self, launch):
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(backend, "_probe", None)  # restored after the test: probed again
    monkeypatch.setattr(backend, "_warned", False)
    monkeypatch.setattr(rnn_cuda, "smoke_kernel", Broken())
    with pytest.raises(RuntimeError, match=r"device='cuda' was requested, but a test kernel "
                       r"could not run on the GPU \(AttributeError: module 'numpy' has no "
                       r"attribute 'row_stack'\); this numba-cuda does not support NumPy .*"
                       r"pip install 'numpy<2.5'"):
        backend.resolve_device("cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.resolve_device("auto") == "cpu"  # the answer is kept for the process
    messages = [str(w.message) for w in caught]
    if backend._gpu_intended():  # the [cuda] extra's toolkit wheels are installed
        assert len(messages) == 1 and "pip install 'numpy<2.5'" in messages[0]
    else:
        assert messages == []


@pytest.mark.parametrize("paired, resident", [(True, True), (False, True), (True, False)],
                         ids=["directions-together", "in-turn", "per-batch-copies"])
def test_tagger_trains_and_predicts_on_the_gpu_kernels(monkeypatch, paired, resident):
    from tagger import _config
    from tagger.nn import recurrent
    from tagger.nn import resident as resident_module

    monkeypatch.setattr(_config, "CUDA_PAIR_DIRECTIONS", paired)
    monkeypatch.setattr(_config, "CUDA_RESIDENT", resident)
    calls = []
    pair_forward = recurrent.lstm_pair_forward
    for module in (recurrent, resident_module):
        monkeypatch.setattr(module, "lstm_pair_forward",
                            lambda *a, **k: calls.append(1) or pair_forward(*a, **k))
    trainers = []
    trainer_type = resident_module.ResidentTrainer
    monkeypatch.setattr(resident_module, "ResidentTrainer",
                        lambda *a: trainers.append(1) or trainer_type(*a))
    X, y = data(2)
    snapshots = []

    def keep_snapshots(event, info):
        if event == "epoch_end":
            snapshots.append(copy.deepcopy(info["estimator"]))

    gpu = SequenceTagger(device="cuda", **TINY).fit(X, y, callback=keep_snapshots)
    assert bool(calls) == paired
    assert bool(trainers) == resident
    # A copy taken during training holds host parameters only, and predicts with them.
    assert all("_live_device_params" not in s.__dict__ for s in snapshots)
    assert snapshots[-1].predict(X) == gpu.predict(X)
    # Prediction on the GPU uploads the parameters once, and again only after they change.
    first = gpu._prediction_params()
    assert first is gpu._prediction_params()
    assert isinstance(first, resident_module.DeviceParams) == resident
    assert gpu._model.device == "cuda"
    cpu = SequenceTagger(device="cpu", **TINY).fit(X, y)
    for name in cpu.params_:  # the same training, step for step, within float32 rounding
        np.testing.assert_allclose(gpu.params_[name], cpu.params_[name], rtol=1e-3, atol=1e-4,
                                   err_msg=name)
    assert [h["loss"] for h in gpu.history_] == pytest.approx(
        [h["loss"] for h in cpu.history_], rel=1e-4)


def test_averaged_weights_are_scored_and_kept_on_the_device_as_on_the_cpu():
    """average_decay on the GPU: the dev score reads a device copy of the average (not the
    trainer's weights), and the model is the best epoch's average, as on the CPU."""
    X, y = data(1)
    options = dict(TINY, max_epochs=2, early_stopping=True, average_decay=0.5)
    gpu = SequenceTagger(device="cuda", **options).fit(X, y, X_dev=X, y_dev=y)
    cpu = SequenceTagger(device="cpu", **options).fit(X, y, X_dev=X, y_dev=y)
    assert gpu.best_epoch_ == cpu.best_epoch_
    assert [h["dev_score"] for h in gpu.history_] == [h["dev_score"] for h in cpu.history_]
    for name in cpu.params_:
        np.testing.assert_allclose(gpu.params_[name], cpu.params_[name], rtol=1e-3, atol=1e-4,
                                   err_msg=name)
    assert gpu.score(X, y) == cpu.history_[cpu.best_epoch_ - 1]["dev_score"]


def test_a_fitted_model_moves_between_devices(tmp_path):
    X, y = data()
    model = SequenceTagger(device="cpu", **dict(TINY, max_epochs=3)).fit(X, y)
    on_cpu, proba_cpu = model.predict(X), model.predict_proba(X)
    model.set_params(device="cuda")
    assert model._model.device == "cuda"
    assert model.predict(X) == on_cpu
    for a, b in zip(model.predict_proba(X), proba_cpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    model.save(tmp_path / "m.tagger")
    loaded = SequenceTagger.load(tmp_path / "m.tagger")  # saved with device="cuda"
    assert loaded._model.device == "cuda" and loaded.predict(X) == on_cpu


@pytest.mark.parametrize("pooling", ["last", "max", "attention"])
def test_classifier_on_the_gpu_kernels(pooling):
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(int(rng.integers(2, 6)), 2)) for _ in range(8)]
    y = [int(x[:, 0].sum() > 0) for x in X]
    options = dict(hidden_size=3, max_epochs=2, early_stopping=False, batch_size=4,
                   random_state=0, pooling=pooling)
    gpu = SequenceClassifier(device="cuda", **options).fit(X, y)
    cpu = SequenceClassifier(device="cpu", **options).fit(X, y)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-4,
                               atol=1e-5)


def test_gpu_benchmark_script_runs(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--smoke"])
    out = capsys.readouterr().out
    assert "| batch | fwd+bwd tokens/s, in turn | together |" in out and "| 2 |" in out


@pytest.mark.filterwarnings("ignore:.*reached max_output_length:UserWarning")
def test_gpu_benchmark_times_the_transducer():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    train_sps, greedy_wps, beam_wps, exact = bench.transducer_epoch("cuda", smoke=True)
    assert min(train_sps, greedy_wps, beam_wps) > 0 and 0.0 <= exact <= 1.0
