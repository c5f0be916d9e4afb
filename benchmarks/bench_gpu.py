"""GPU speed of the recurrent kernels beside PyTorch's cuDNN ``nn.LSTM``.

One bidirectional LSTM layer, float32, length 40, input 100, hidden 256: forward+backward
tokens/s at batch 8, 64 and 256, and inference latency (forward only) at batch 1. The tagger's
side runs ``tagger.kernels.rnn_cuda`` on arrays that stay on the device (the two directions one
after the other, as the engine runs them); PyTorch's side runs ``torch.nn.LSTM(bidirectional=True)``
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


def tagger_lstm(B: int, repeats: int) -> tuple[float, float]:
    """(forward+backward seconds, forward seconds) of one BiLSTM layer on the tagger's kernels."""
    from numba import cuda

    from tagger.kernels import rnn_cuda

    rng = np.random.default_rng(0)
    f32 = np.float32

    def dev(*shape, scale=0.1):
        return cuda.to_device((rng.standard_normal(shape) * scale).astype(f32))

    x = dev(B, T, D, scale=1.0)
    lengths = cuda.to_device(np.full(B, T, np.int64))
    dirs = []
    for _ in range(2):
        dirs.append({
            "W": dev(D, 4 * H), "U": dev(H, 4 * H), "b": dev(4 * H),
            "h0": cuda.to_device(np.zeros((B, H), f32)),
            "c0": cuda.to_device(np.zeros((B, H), f32)),
            **{k: cuda.device_array((B, T, H), f32) for k in ("h_out", "c_out", "h_prev")},
            "gates": cuda.device_array((B, T, 4 * H), f32),
            "h_last": cuda.device_array((B, H), f32), "c_last": cuda.device_array((B, H), f32),
            "d_gates": cuda.device_array((B, T, 4 * H), f32),
            "dx": cuda.device_array((B, T, D), f32), "dW": cuda.device_array((D, 4 * H), f32),
            "dU": cuda.device_array((H, 4 * H), f32), "db": cuda.device_array(4 * H, f32),
            "dh0": cuda.device_array((B, H), f32), "dc0": cuda.device_array((B, H), f32),
        })
    d_h = dev(B, T, H, scale=1.0)
    zeros = cuda.to_device(np.zeros((B, H), f32))

    def forward():
        for reverse, p in enumerate(dirs):
            rnn_cuda.lstm_forward(x, lengths, p["W"], p["U"], p["b"], p["h0"], p["c0"],
                                  bool(reverse), p["h_out"], p["c_out"], p["gates"], p["h_prev"],
                                  p["h_last"], p["c_last"])

    def forward_backward():
        forward()
        for reverse, p in enumerate(dirs):
            rnn_cuda.lstm_backward(x, lengths, p["W"], p["U"], p["c0"], bool(reverse),
                                   p["gates"], p["c_out"], p["h_prev"], d_h, zeros, zeros,
                                   p["d_gates"], p["dx"], p["dW"], p["dU"], p["db"], p["dh0"],
                                   p["dc0"])

    sync = cuda.synchronize
    return (_median_seconds(forward_backward, sync, repeats),
            _median_seconds(forward, sync, repeats))


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
        ours = tagger_lstm(B, args.repeats)
        theirs = torch_lstm(B, args.repeats)
        rows.append((B, ours, theirs))
        print(B, ours, theirs, flush=True)
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
        "| batch | tagger fwd+bwd tokens/s | cuDNN fwd+bwd tokens/s | ratio | tagger forward ms "
        "| cuDNN forward ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for B, (fb, fw), theirs in rows:
        tok = B * T
        if theirs is None:
            lines.append(f"| {B} | {tok / fb:,.0f} | — | — | {1e3 * fw:.3f} | — |")
        else:
            lines.append(f"| {B} | {tok / fb:,.0f} | {tok / theirs[0]:,.0f} | "
                         f"{theirs[0] / fb:.2f}× | {1e3 * fw:.3f} | {1e3 * theirs[1]:.3f} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section("bench_gpu", body)


if __name__ == "__main__":
    main()
