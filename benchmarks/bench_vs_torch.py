"""The same bidirectional LSTM shapes in this library and in PyTorch's CPU ``nn.LSTM``.

Shapes (float32, bidirectional): A batch 32, length 40, input 100, hidden 128; B batch 1, length
20 (single-sentence latency); C batch 64, length 50, input 300, hidden 256; D shape A with two
layers. "train" is forward plus backward (gradients of every weight and of the input, no
optimizer step); "infer" is the forward pass alone. Runs alternate between the two libraries,
each turn after a warm-up of at least 30 ms (see ``WARMUP_SECONDS``), after a first untimed run
that compiles the kernels (or loads them from the cache), and the median of several
repeats is reported, so that the ratio holds on a noisy
shared machine even when absolute times drift.

Each configuration runs in a fresh process: 1 thread pinned to one core, and 2 threads, with
``OPENBLAS_CORETYPE`` unset (as on a user's machine) and, for information, as this machine's
environment sets it. PyTorch is optional: ``pip install torch==2.13.0`` installs a CPU build here
(plain ``torch`` would pull gigabytes of CUDA packages); without it only this library is timed.

Usage::

    python benchmarks/bench_vs_torch.py                 # everything; update RESULTS.md
    python benchmarks/bench_vs_torch.py --json --threads 1  # JSON rows; a summary on stderr
    python benchmarks/bench_vs_torch.py --json --threads 1 --shapes CD
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

SHAPES = {  # batch, length, input, hidden, layers
    "A": (32, 40, 100, 128, 1),
    "B": (1, 20, 100, 128, 1),
    "C": (64, 50, 300, 256, 1),
    "D": (32, 40, 100, 128, 2),
}


# Warm-up before each timed turn of a library: at least this long. PyTorch's OpenMP threads
# keep spinning for about 15 ms after a call, and on two cores they slowed the next three
# calls of this library's two threads by up to 2x; a turn starting on a quiet machine is
# fair to both.
WARMUP_SECONDS = 0.03


def _median(fn, repeats: int, warmup: int = 2) -> float:
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < WARMUP_SECONDS:
        fn()
        done += 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(name: str, mode: str) -> float:
    """Floating-point operations of one call: the matrix products only (input projections,
    recurrent products and, for training, their gradients), 2 per multiply-add.

    Per layer and direction, B*T steps of a (D_in -> 4H) input projection and an (H -> 4H)
    recurrent product; the forward pass is 2*B*T*4H*(D_in + H) operations. Training adds the
    backward pass's two products per forward one (the weights' gradient and the gradient of
    the product's input): 3 times the forward count. Element-wise gate work is not counted.
    """
    B, T, D, H, layers = SHAPES[name]
    forward = 0
    for layer in range(layers):
        d_in = D if layer == 0 else 2 * H
        forward += 2 * 2 * B * T * 4 * H * (d_in + H)  # two directions
    return float(forward * (3 if mode == "train" else 1))


def gemm_roof(threads: int, size: int = 1024, repeats: int = 7) -> float:
    """The machine's float32 matrix-product speed in GFLOP/s: the best of ``repeats`` NumPy
    (BLAS) ``size``-cube products on ``threads`` threads."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    out = np.empty((size, size), np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)  # warm
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def _time_shape(name: str, threads: int, repeats: int, torch) -> list[dict]:
    """Median seconds per call of both libraries for one shape, train and infer."""
    import numpy as np

    from tagger.nn.recurrent import RNNStack
    from tagger.nn.training import thread_limit

    B, T, D, H, layers = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lengths = np.full(B, T, np.int64)
    d_out = rng.standard_normal((B, T, 2 * H)).astype(np.float32)
    stack = RNNStack("lstm", D, H, layers, bidirectional=True)
    params = stack.init_params(rng)

    def ours_train():
        _, cache = stack.forward(params, x, lengths)
        stack.backward(params, cache, d_out)

    def ours_infer():  # the prediction pass (as torch.no_grad: nothing kept for a backward)
        stack.forward(params, x, lengths, need_backward=False)

    calls = {"train": [ours_train], "infer": [ours_infer]}
    if torch is not None:
        lstm = torch.nn.LSTM(D, H, num_layers=layers, bidirectional=True, batch_first=True)
        tx = torch.from_numpy(x).requires_grad_(True)
        td = torch.from_numpy(d_out)

        def torch_train():
            lstm.zero_grad(set_to_none=True)
            tx.grad = None
            out, _ = lstm(tx)
            out.backward(td)

        def torch_infer():
            with torch.no_grad():
                lstm(tx)

        calls["train"].append(torch_train)
        calls["infer"].append(torch_infer)
    rows = []
    with thread_limit(threads):
        for mode, fns in calls.items():
            for fn in fns:
                fn()  # compile or load kernels, warm caches, outside the timing
            times: list[list[float]] = [[] for _ in fns]
            for _ in range(repeats):  # alternate, so that drift hits both libraries alike
                for k, fn in enumerate(fns):
                    times[k].append(_median(fn, 3, warmup=1))
            ours = statistics.median(times[0])
            theirs = statistics.median(times[1]) if len(fns) > 1 else None
            work = flops(name, mode)
            rows.append({
                "shape": name, "mode": mode, "threads": threads,
                "tagger_gflops": work / ours / 1e9,
                "torch_gflops": work / theirs / 1e9 if theirs else None,
                "tagger_tokens_per_s": B * T / ours,
                "torch_tokens_per_s": B * T / theirs if theirs else None,
                "tagger_ms": 1e3 * ours, "torch_ms": 1e3 * theirs if theirs else None,
            })
    return rows


def measure(threads: int, repeats: int, shapes=tuple(SHAPES)) -> list[dict]:
    """Tokens/s and GFLOP/s of both libraries for ``shapes`` and both modes, in this process,
    and the machine's matrix-product roof."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(threads)
    rows = []
    roof = gemm_roof(threads)  # measured before and after the shapes: the best of both
    for name in shapes:
        rows.extend(_time_shape(name, threads, repeats, torch))
    roof = max(roof, gemm_roof(threads))
    for row in rows:
        row["roof_gflops"] = roof
    return rows


def _child(threads: int, coretype: str | None, repeats: int) -> list[dict]:
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    command = [sys.executable, str(Path(__file__).resolve()), "--json", "--threads",
               str(threads), "--repeats", str(repeats)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if threads == 1 and cores and Path("/usr/bin/taskset").exists():
        command = ["taskset", "-c", str(cores[-1])] + command
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row["coretype"] = coretype or "unset"
    return rows


def _roofs(rows: list[dict]) -> dict[tuple[str, int], float]:
    """The roof of each (OPENBLAS_CORETYPE, threads) run."""
    return {(r["coretype"], r["threads"]): r["roof_gflops"] for r in rows}


def _section(rows: list[dict]) -> str:
    import platform

    import numba
    import numpy

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "## BiLSTM beside PyTorch's CPU `nn.LSTM` (`benchmarks/bench_vs_torch.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu}, {os.cpu_count()} logical cores; NumPy "
        f"{numpy.__version__}, Numba {numba.__version__}, PyTorch {torch_version}. float32, "
        "bidirectional; train = forward + backward, infer = forward; medians of alternating runs. "
        "1 thread runs pinned to one core.",
        "",
        "GFLOP/s count the matrix products only (input projections, recurrent products and, "
        "for training, their gradients: 3 times the forward count); the roof is this machine's "
        "float32 NumPy 1024-cube matrix product on the same number of threads (best of 7, "
        "measured before and after the shapes in each run). "
        + ", ".join(f"Roof{' (OPENBLAS_CORETYPE ' + c + ')' if c != 'unset' else ''}, "
                    f"{t} thread{'s' if t > 1 else ''}: {roof:.1f} GFLOP/s"
                    for (c, t), roof in _roofs(rows).items()) + ".",
        "",
        "| OPENBLAS_CORETYPE | threads | shape | mode | tagger tokens/s | PyTorch tokens/s | "
        "ratio | tagger GFLOP/s (of roof) | PyTorch GFLOP/s (of roof) | tagger ms | PyTorch ms |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        torch_tps = r["torch_tokens_per_s"]
        ratio = f"{r['tagger_tokens_per_s'] / torch_tps:.2f}×" if torch_tps else "—"
        torch_rate = f"{torch_tps:,.0f}" if torch_tps else "—"
        torch_ms = f"{r['torch_ms']:.2f}" if r["torch_ms"] else "—"
        roof = r["roof_gflops"]
        ours = f"{r['tagger_gflops']:.1f} ({r['tagger_gflops'] / roof:.0%})"
        theirs = (f"{r['torch_gflops']:.1f} ({r['torch_gflops'] / roof:.0%})"
                  if r["torch_gflops"] else "—")
        lines.append(
            f"| {r['coretype']} | {r['threads']} | {r['shape']} | {r['mode']} | "
            f"{r['tagger_tokens_per_s']:,.0f} | {torch_rate} | {ratio} | {ours} | {theirs} | "
            f"{r['tagger_ms']:.2f} | {torch_ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true",
                        help="measure in this process and print one JSON object per line")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default="".join(SHAPES),
                        help="with --json: the shapes to time (e.g. CD)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.json:
        shapes = [name for name in args.shapes.upper() if name in SHAPES]
        if not shapes or len(shapes) != len(args.shapes):
            parser.error(f"--shapes takes letters of {''.join(SHAPES)}")
        rows = measure(args.threads, args.repeats, shapes)
        for row in rows:
            print(json.dumps(row), flush=True)
        if rows:
            print(f"float32 matrix-product roof, {args.threads} thread(s): "
                  f"{rows[0]['roof_gflops']:.1f} GFLOP/s", file=sys.stderr)
            for row in rows:
                torch_part = (f"  PyTorch {row['torch_gflops']:6.1f} GFLOP/s "
                              f"({row['torch_gflops'] / row['roof_gflops']:4.0%})  ratio "
                              f"{row['tagger_tokens_per_s'] / row['torch_tokens_per_s']:.2f}x"
                              if row["torch_gflops"] else "")
                print(f"{row['shape']} {row['mode']:5}  tagger {row['tagger_gflops']:6.1f} "
                      f"GFLOP/s ({row['tagger_gflops'] / row['roof_gflops']:4.0%}){torch_part}",
                      file=sys.stderr)
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed (pip install torch==2.13.0): timing this library only",
              file=sys.stderr)
    # A first run compiles the kernels (once per machine, and again for a checkout at a new
    # path): it is not timed. Measured with a cold cache, its compilation fell inside the
    # timed calls of the first configurations and made them look 3-8x slower.
    _child(1, None, 1)
    rows = []
    coretypes = [None] + ([os.environ["OPENBLAS_CORETYPE"]]
                          if os.environ.get("OPENBLAS_CORETYPE") else [])
    for coretype in coretypes:
        for threads in (1, 2):
            rows.extend(_child(threads, coretype, args.repeats))
            print(f"done: OPENBLAS_CORETYPE={coretype or 'unset'}, {threads} thread(s)",
                  file=sys.stderr, flush=True)
    body = _section(rows)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_vs_torch", body)


if __name__ == "__main__":
    main()
