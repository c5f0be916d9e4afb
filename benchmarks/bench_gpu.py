"""GPU speed of the recurrent kernels beside PyTorch's cuDNN ``nn.LSTM``.

One bidirectional LSTM layer, float32, length 40, input 100, hidden 256: forward+backward
tokens/s at batch 8, 64 and 256, and inference latency (forward only) at batch 1. The tagger's
side runs ``tagger.kernels.rnn_cuda`` on arrays that stay on the device (both directions in one
launch, as the engine runs them); PyTorch's side runs ``torch.nn.LSTM(bidirectional=True)``
with cuDNN. Both are timed with CUDA synchronisation after warm-up; medians of several runs.

Needs a CUDA GPU, numba-cuda with its toolkit wheels (``pip install ".[cuda]"``) and, for the
comparison, PyTorch. One command::

    python benchmarks/bench_gpu.py            # measure, print, update RESULTS.md
    python benchmarks/bench_gpu.py --no-write
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402

T, D, H = 40, 100, 256
BATCHES = (8, 64, 256)


def _median_seconds(fn, sync, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tagger_lstm(B: int, repeats: int, paired: bool = True) -> tuple[float, float]:
    """(forward+backward seconds, forward seconds) of one BiLSTM layer on the tagger's kernels:
    both directions in one launch (``paired``), or one direction after the other."""
    from numba import cuda

    from tagger.kernels import rnn_cuda

    rng = np.random.default_rng(0)
    f32 = np.float32

    def dev(*shape, scale=0.1):
        return cuda.to_device((rng.standard_normal(shape) * scale).astype(f32))

    x = dev(B, T, D, scale=1.0)
    lengths = cuda.to_device(np.full(B, T, np.int64))
    W, U, b = dev(2, D, 4 * H), dev(2, H, 4 * H), dev(2, 4 * H)
    zeros = cuda.to_device(np.zeros((2, B, H), f32))
    h_out, c_out, h_prev = (cuda.device_array((2, B, T, H), f32) for _ in range(3))
    gates, d_gates = (cuda.device_array((2, B, T, 4 * H), f32) for _ in range(2))
    h_last, c_last, dh0, dc0 = (cuda.device_array((2, B, H), f32) for _ in range(4))
    dx = cuda.device_array((2, B, T, D), f32)
    dW, dU, db = (cuda.device_array(a.shape, f32) for a in (W, U, b))
    d_h = dev(2, B, T, H, scale=1.0)

    def forward():
        if paired:
            rnn_cuda.lstm_forward_pair(x, lengths, W, U, b, zeros, zeros, h_out, c_out, gates,
                                       h_prev, h_last, c_last)
            return
        for d in range(2):
            rnn_cuda.lstm_forward(x, lengths, W[d], U[d], b[d], zeros[d], zeros[d], d == 1,
                                  h_out[d], c_out[d], gates[d], h_prev[d], h_last[d], c_last[d])

    def forward_backward():
        forward()
        if paired:
            rnn_cuda.lstm_backward_pair(x, lengths, W, U, zeros, gates, c_out, h_prev, d_h, zeros,
                                        zeros, d_gates, dx, dW, dU, db, dh0, dc0)
            return
        for d in range(2):
            rnn_cuda.lstm_backward(x, lengths, W[d], U[d], zeros[d], d == 1, gates[d], c_out[d],
                                   h_prev[d], d_h[d], zeros[d], zeros[d], d_gates[d], dx[d],
                                   dW[d], dU[d], db[d], dh0[d], dc0[d])

    sync = cuda.synchronize
    return (_median_seconds(forward_backward, sync, repeats),
            _median_seconds(forward, sync, repeats))


def gemm_variants(repeats: int) -> list[tuple[str, str, float]]:
    """Milliseconds of the engine's large matrix products at batch 256 with each GEMM choice."""
    from numba import cuda

    from tagger import _config
    from tagger.kernels import rnn_cuda

    rng = np.random.default_rng(0)
    BT, G = 256 * T, 4 * H
    shapes = {  # name: (A shape, B shape, C shape, trans_a, trans_b)
        "input projection x W": ((BT, D), (D, G), (BT, G), False, False),
        "dW = x^T d_gates": ((BT, D), (BT, G), (D, G), True, False),
        "dU = h^T d_gates": ((BT, H), (BT, G), (H, G), True, False),
        "dx = d_gates W^T": ((BT, G), (D, G), (BT, D), False, True),
    }
    rows = []
    saved = _config.CUDA_GEMM
    try:
        for name, (sa, sb, sc, ta, tb) in shapes.items():
            A = cuda.to_device(rng.standard_normal(sa).astype(np.float32))
            Bm = cuda.to_device(rng.standard_normal(sb).astype(np.float32))
            C = cuda.device_array(sc, np.float32)
            ref = None
            for choice in ("naive", "tiled", "cublas"):
                if choice == "cublas" and rnn_cuda._cupy() is None:
                    continue
                _config.CUDA_GEMM = choice
                seconds = _median_seconds(partial(rnn_cuda.gemm, A, Bm, C, ta, tb),
                                          cuda.synchronize, repeats)
                got = C.copy_to_host()
                if ref is None:
                    a, b = A.copy_to_host().astype(np.float64), Bm.copy_to_host().astype(np.float64)
                    ref = (a.T if ta else a) @ (b.T if tb else b)
                err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
                rows.append((name, choice, 1e3 * seconds, err))
                print(name, choice, f"{1e3 * seconds:.3f} ms", f"rel err {err:.1e}", flush=True)
    finally:
        _config.CUDA_GEMM = saved
    return rows


def persistent_variants(repeats: int) -> list[tuple[int, str, float, float]]:
    """(batch, mode, fwd+bwd ms, forward ms): the recurrence in one cooperative launch per
    direction against one launch per step."""
    from tagger import _config

    rows = []
    saved = _config.CUDA_PERSISTENT
    try:
        for B in (1, 8, 64, 256):
            for persistent in (True, False):
                _config.CUDA_PERSISTENT = persistent
                fb, fw = tagger_lstm(B, repeats)
                mode = "one launch" if persistent else "launch per step"
                rows.append((B, mode, 1e3 * fb, 1e3 * fw))
                print(B, mode, f"{1e3 * fb:.3f} ms", f"{1e3 * fw:.3f} ms", flush=True)
    finally:
        _config.CUDA_PERSISTENT = saved
    return rows


def staged_variants(batches, repeats: int,
                    forms=(False, True)) -> list[tuple[int, str, int, float, float]]:
    """(batch, backward product, units per block, fwd+bwd ms, backward ms): the backward
    recurrence's product with U reading the gate gradients from global memory for every unit
    (``direct``) against staging them through shared memory (``staged``, ``TAGGER_CUDA_STAGED``);
    the units per block are those the shared memory allows (they set the forward pass's geometry
    too)."""
    from tagger import _config
    from tagger.kernels import rnn_cuda

    rows = []
    saved = _config.CUDA_STAGED_BACKWARD
    try:
        for B in batches:
            for staged in forms:
                _config.CUDA_STAGED_BACKWARD = staged
                units = rnn_cuda._Plan(B, H, 4, 4).HB
                fb, fw = tagger_lstm(B, repeats)
                mode = "staged" if staged else "direct"
                rows.append((B, mode, units, 1e3 * fb, 1e3 * (fb - fw)))
                print(B, mode, units, f"{1e3 * fb:.3f} ms", flush=True)
    finally:
        _config.CUDA_STAGED_BACKWARD = saved
    return rows


def parity_at_size(B: int = 16) -> dict[str, float]:
    """Relative errors of the CUDA forward and backward pass against the CPU kernels (float32) and
    the float64 CPU kernels, at the benchmark's sizes."""
    from numba import cuda

    from tagger.kernels import rnn_cuda
    from tagger.nn import recurrent as R

    rng = np.random.default_rng(3)
    params64 = R.init_direction("lstm", D, H, rng, np.float64)
    x64 = rng.standard_normal((B, T, D))
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    d_h64 = rng.standard_normal((B, T, H))
    out = {}
    for reverse in (False, True):
        ref_out, _, _, cache = R.direction_forward("lstm", params64, x64, lengths, reverse)
        ref_dx, ref_grads, _, _ = R.direction_backward(params64, cache, d_h64)
        p32 = {k: v.astype(np.float32) for k, v in params64.items()}
        f = np.float32
        dev = {k: cuda.to_device(v) for k, v in p32.items()}
        x, dl = cuda.to_device(x64.astype(f)), cuda.to_device(lengths)
        zeros = cuda.to_device(np.zeros((B, H), f))
        h_out, c_out, h_prev = (cuda.device_array((B, T, H), f) for _ in range(3))
        gates, d_gates = (cuda.device_array((B, T, 4 * H), f) for _ in range(2))
        h_last, c_last, dh0, dc0 = (cuda.device_array((B, H), f) for _ in range(4))
        dx = cuda.device_array((B, T, D), f)
        grads = {k: cuda.device_array(v.shape, f) for k, v in p32.items()}
        rnn_cuda.lstm_forward(x, dl, dev["W"], dev["U"], dev["b"], zeros, zeros, reverse, h_out,
                              c_out, gates, h_prev, h_last, c_last)
        rnn_cuda.lstm_backward(x, dl, dev["W"], dev["U"], zeros, reverse, gates, c_out, h_prev,
                               cuda.to_device(d_h64.astype(f)), zeros, zeros, d_gates, dx,
                               grads["W"], grads["U"], grads["b"], dh0, dc0)

        def rel(a, b):
            return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))

        side = "reverse" if reverse else "forward"
        out[f"{side} h"] = rel(h_out.copy_to_host(), ref_out)
        out[f"{side} dx"] = rel(dx.copy_to_host(), ref_dx)
        for k in ("W", "U", "b"):
            out[f"{side} d{k}"] = rel(grads[k].copy_to_host(), ref_grads[k])
    return out


def barrier_cost(repeats: int) -> list[tuple[int, float]]:
    """Microseconds per grid-wide barrier (``cuda.cg.this_grid().sync()``) in a cooperative
    launch of 128-thread blocks: the fixed cost of every step of the one-launch recurrence."""
    from numba import cuda

    @cuda.jit
    def barriers(n, out):
        grid = cuda.cg.this_grid()
        for _ in range(n):
            grid.sync()
        if cuda.grid(1) == 0:
            out[0] = n

    out = cuda.device_array(1, np.int64)
    rows = []
    for blocks in (32, 64, 256):
        times = {}
        for n in (1, 401):
            times[n] = _median_seconds(lambda n=n, blocks=blocks: barriers[blocks, 128](n, out),
                                       cuda.synchronize, repeats)
        rows.append((blocks, 1e6 * (times[401] - times[1]) / 400))
    return rows


def engine_epoch(device: str, hidden: int = 256, resident: bool = True,
                 char_encoder: str = "lstm") -> tuple[float, float, float]:
    """(training tokens/s over one epoch, prediction tokens/s, dev F1) of a SequenceTagger on the
    embedded sample corpus (data/sample-ner), one epoch after a warm-up fit and prediction
    (compilation; the warm-up predicts the whole dev set, whose batches take both of the CPU's
    prediction paths). ``resident=False``: the GPU engine with per-batch copies
    (``TAGGER_CUDA_RESIDENT=0``)."""
    from tagger import SequenceTagger, _config

    _config.CUDA_RESIDENT = resident
    from tagger.metrics import entity_f1
    from tagger.workflows import read_training_data

    X, y = read_training_data(HERE.parent / "data" / "sample-ner" / "train.conll", "tag")
    Xd, yd = read_training_data(HERE.parent / "data" / "sample-ner" / "dev.conll", "tag")
    options = dict(hidden_size=hidden, batch_size=32, max_epochs=1, early_stopping=False,
                   random_state=0, device=device, char_encoder=char_encoder)
    SequenceTagger(**options).fit(X[:64], y[:64]).predict(Xd)  # compile everything first
    model = SequenceTagger(**options)
    start = time.perf_counter()
    model.fit(X, y)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(Xd)
    predict_s = time.perf_counter() - start
    f1 = entity_f1(yd, predicted)
    _config.CUDA_RESIDENT = True
    return (sum(map(len, X)) / train_s, sum(map(len, Xd)) / predict_s, f1)


def transducer_epoch(device: str, smoke: bool = False) -> tuple[float, float, float, float]:
    """(training symbols/s over one epoch, greedy words/s, beam-5 words/s, dev exact match) of
    a SequenceTransducer with its defaults, on a task made from the embedded sample corpus: the
    distinct alphabetic words of data/sample-ner, each to be written lowercased and backwards
    (300 held out for decoding), one epoch after a warm-up fit and decoding (compilation)."""
    from tagger import SequenceTransducer
    from tagger.workflows import read_training_data

    X, _ = read_training_data(HERE.parent / "data" / "sample-ner" / "train.conll", "tag")
    words = sorted({w for sentence in X for w in sentence if w.isalpha()})
    np.random.default_rng(0).shuffle(words)
    dev, train = words[:300], words[300:]
    options = dict(max_epochs=1, early_stopping=False, random_state=0, device=device)
    if smoke:  # runs at all: no warm-up
        dev, train = dev[:2], train[:4]
        options.update(hidden_size=4, embedding_dim=3, feature_dim=2, max_output_length=3)

    def target(words):
        return [w.lower()[::-1] for w in words]

    if not smoke:
        warm = SequenceTransducer(**options).fit(train[:64], target(train[:64]))
        warm.predict(dev[:8])
        warm.set_params(beam_size=5).predict(dev[:2])
    model = SequenceTransducer(**options)
    start = time.perf_counter()
    model.fit(train, target(train))
    train_s = time.perf_counter() - start
    model.set_params(beam_size=1)
    start = time.perf_counter()
    found = model.predict(dev)
    greedy_s = time.perf_counter() - start
    beam_words = dev[:100]
    model.set_params(beam_size=5)
    start = time.perf_counter()
    model.predict(beam_words)
    beam_s = time.perf_counter() - start
    exact = float(np.mean([a == b for a, b in zip(found, target(dev), strict=True)]))
    symbols = sum(len(w) + 1 for w in train)
    return symbols / train_s, len(dev) / greedy_s, len(beam_words) / beam_s, exact


def torch_lstm(B: int, repeats: int) -> tuple[float, float] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():  # a CPU build of PyTorch, or the CUDA simulator's runs
        return None
    torch.backends.cudnn.benchmark = True
    lstm = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True).cuda()
    x = torch.randn(B, T, D, device="cuda", requires_grad=True)

    def forward_backward():
        out, _ = lstm(x)
        out.sum().backward()

    def forward():
        with torch.no_grad():
            lstm(x)

    sync = torch.cuda.synchronize
    return (_median_seconds(forward_backward, sync, repeats),
            _median_seconds(forward, sync, repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one run, nothing written: checks that the script runs "
                             "(also under the CUDA simulator)")
    parser.add_argument("--engine", action="store_true",
                        help="also time one training epoch of the whole tagger on each device")
    parser.add_argument("--transducer", action="store_true",
                        help="also time the encoder-decoder (SequenceTransducer) on each device")
    args = parser.parse_args(argv)
    global T, D, H, BATCHES
    from numba import cuda

    from tagger.kernels.backend import resolve_device

    if args.smoke:
        T, D, H, BATCHES = 3, 4, 4, (2,)
        args.repeats, args.no_write = 1, True
    elif resolve_device("cuda") != "cuda" or os.environ.get("NUMBA_ENABLE_CUDASIM"):
        sys.exit("a real CUDA GPU is needed")
    gpu = "the CUDA simulator" if os.environ.get("NUMBA_ENABLE_CUDASIM") else str(
        cuda.get_current_device().name)
    rows = []
    for B in (1, *BATCHES):
        in_turn = tagger_lstm(B, args.repeats, paired=False)
        together = tagger_lstm(B, args.repeats, paired=True)
        theirs = torch_lstm(B, args.repeats)
        rows.append((B, in_turn, together, theirs))
        print(B, in_turn, together, theirs, flush=True)
    import numba

    torch_version = "not installed"
    try:
        import torch

        torch_version = f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()})"
    except ImportError:
        pass
    try:
        import numba_cuda

        numba_cuda_version = numba_cuda.__version__
    except (ImportError, AttributeError):
        numba_cuda_version = "unknown"

    lines = [
        "## GPU: one BiLSTM layer, tagger's CUDA kernels beside cuDNN (`benchmarks/bench_gpu.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {gpu}; numba {numba.__version__}, numba-cuda "
        f"{numba_cuda_version}, PyTorch {torch_version}. float32, length {T}, input {D}, "
        f"hidden {H} per direction; medians of {args.repeats} runs after warm-up.",
        "",
        "Two ways of running the two directions: one after the other (`lstm_forward` per "
        "direction) and side by side in one launch (`lstm_forward_pair`); `TAGGER_CUDA_PAIR` "
        "chooses which the engine uses.",
        "",
        "| batch | fwd+bwd tokens/s, in turn | together | cuDNN | ratio in turn | ratio together "
        "| forward ms, in turn | together | cuDNN |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for B, (fb, fw), (fb2, fw2), theirs in rows:
        tok = B * T
        if theirs is None:
            lines.append(f"| {B} | {tok / fb:,.0f} | {tok / fb2:,.0f} | — | — | — | "
                         f"{1e3 * fw:.3f} | {1e3 * fw2:.3f} | — |")
        else:
            lines.append(f"| {B} | {tok / fb:,.0f} | {tok / fb2:,.0f} | {tok / theirs[0]:,.0f} | "
                         f"{theirs[0] / fb:.2f}× | {theirs[0] / fb2:.2f}× | {1e3 * fw:.3f} | "
                         f"{1e3 * fw2:.3f} | {1e3 * theirs[1]:.3f} |")
    lines += ["", "The backward product with U (phase B of the backward recurrence, both "
              "directions together): gate gradients read from global memory for every unit "
              "(`direct`, the default) or staged through shared memory (`staged`, "
              "`TAGGER_CUDA_STAGED=1`):", "",
              "| batch | backward product | units per block | fwd+bwd ms | of which backward ms |",
              "|---:|---|---:|---:|---:|"]
    lines += [f"| {B} | {mode} | {units} | {fb:.3f} | {bw:.3f} |"
              for B, mode, units, fb, bw in (
                  staged_variants(BATCHES, 1, forms=(True,)) if args.smoke  # runs at all
                  else staged_variants((1, *BATCHES), args.repeats))]
    parity_batch = 2 if args.smoke else 16
    parity = parity_at_size(parity_batch)
    lines += ["", f"Parity at these sizes (batch {parity_batch}, random lengths): relative "
              "error of the float32 GPU pass against the float64 CPU kernels: " + ", ".join(
                  f"{k} {v:.1e}" for k, v in parity.items()) + "."]
    if not args.smoke:
        lines += ["", "Recurrence in one cooperative launch per direction (a grid-wide barrier "
                  "between steps) against one launch per step:", "",
                  "| batch | mode | fwd+bwd ms | forward ms |", "|---:|---|---:|---:|"]
        lines += [f"| {B} | {mode} | {fb:.3f} | {fw:.3f} |"
                  for B, mode, fb, fw in persistent_variants(args.repeats)]
        lines += ["", "A grid-wide barrier costs " + ", ".join(
            f"{us:.1f} µs with {blocks} blocks" for blocks, us in barrier_cost(args.repeats))
            + " (128 threads each)."]
        lines += ["", f"The large matrix products at batch 256 (rows = 256 x {T}):", "",
                  "| product | implementation | ms | relative error |", "|---|---|---:|---:|"]
        lines += [f"| {name} | {choice} | {ms:.3f} | {err:.1e} |"
                  for name, choice, ms, err in gemm_variants(args.repeats)]
    if args.engine:
        lines += ["", "The whole tagger (`SequenceTagger`, hidden 256, batch 32, word, character "
                  "and shape features, CRF) for one epoch on data/sample-ner (1,500 sentences), "
                  "after a warm-up fit and prediction:", "",
                  "| device | characters | training tokens/s | prediction tokens/s (dev) "
                  "| dev F1 |", "|---|---|---:|---:|---:|"]
        for label, device, resident, chars in (
                ("cpu", "cpu", True, "lstm"),
                ("cuda, everything on the device", "cuda", True, "lstm"),
                ("cuda, per-batch copies (`TAGGER_CUDA_RESIDENT=0`)", "cuda", False, "lstm"),
                ("cpu", "cpu", True, "cnn"),
                ("cuda, everything on the device", "cuda", True, "cnn")):
            train_tps, predict_tps, f1 = engine_epoch(device, resident=resident,
                                                      char_encoder=chars)
            print(label, chars, train_tps, predict_tps, f1, flush=True)
            lines.append(f"| {label} | {chars} | {train_tps:,.0f} | {predict_tps:,.0f} "
                         f"| {f1:.3f} |")
    if args.transducer:
        lines += ["", "The encoder–decoder (`SequenceTransducer`, its defaults: hidden 128, batch "
                  "32, attention, input feeding) for one epoch on the sample corpus's distinct "
                  "words, each written lowercased and backwards, after a warm-up fit and "
                  "decoding; decoding speed on 300 held-out words (beam 5: the first 100):", "",
                  "| device | training symbols/s | greedy words/s | beam-5 words/s | exact match |",
                  "|---|---:|---:|---:|---:|"]
        for device in ("cpu", "cuda"):
            train_sps, greedy_wps, beam_wps, exact = transducer_epoch(device, args.smoke)
            print("transducer", device, train_sps, greedy_wps, beam_wps, exact, flush=True)
            lines.append(f"| {device} | {train_sps:,.0f} | {greedy_wps:,.0f} | {beam_wps:,.1f} "
                         f"| {exact:.3f} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section("bench_gpu", body)


if __name__ == "__main__":
    main()
