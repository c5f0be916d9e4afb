"""Speed of the recurrent kernels: BiLSTM forward and forward+backward tokens/s, compile, start.

Shapes (float32, one bidirectional LSTM layer, all sequences full length):

* A: batch 32, length 40, input 100, hidden 128
* B: batch 1, length 20, input 100, hidden 128 (single-sentence latency)
* C: batch 64, length 50, input 300, hidden 256

Every figure is measured in a fresh child process pinned to one core with one Numba and one BLAS
thread: the median of several repeats after a warm-up. The machines this project runs on set
``OPENBLAS_CORETYPE=Haswell``, which keeps OpenBLAS on its AVX2 kernels; a user's machine normally
has no such setting, so the figures are given with the variable unset and, for information, as set.

Usage::

    python benchmarks/bench_kernels.py            # measure, print, update benchmarks/RESULTS.md
    python benchmarks/bench_kernels.py --no-write # measure and print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHAPES = {"A": (32, 40, 100, 128), "B": (1, 20, 100, 128), "C": (64, 50, 300, 256)}


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[-1]})


def child_speed(repeats: int) -> dict:
    """Run in the child: tokens/s of BiLSTM forward and forward+backward at every shape."""
    _pin_one_core()
    import numpy as np

    from tagger.nn.recurrent import RNNStack
    from tagger.nn.training import thread_limit

    rng = np.random.default_rng(0)
    out = {}
    with thread_limit(1):
        for name, (B, T, D, H) in SHAPES.items():
            stack = RNNStack("lstm", D, H, num_layers=1, bidirectional=True)
            params = stack.init_params(rng)
            x = rng.normal(size=(B, T, D)).astype(np.float32)
            lengths = np.full(B, T, np.int64)
            d_out = np.ones((B, T, 2 * H), np.float32)
            inner = max(1, int(2000 / (B * T)))  # enough calls per sample to time small shapes

            def forward(stack=stack, params=params, x=x, lengths=lengths):
                return stack.forward(params, x, lengths)

            def train(stack=stack, params=params, x=x, lengths=lengths, d_out=d_out):
                _, cache = stack.forward(params, x, lengths)
                stack.backward(params, cache, d_out)

            row = {}
            for mode, fn in (("forward", forward), ("forward_backward", train)):
                fn()
                samples = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for _ in range(inner):
                        fn()
                    samples.append((time.perf_counter() - t0) / inner)
                seconds = float(np.median(samples))
                row[mode] = {"ms": seconds * 1e3, "tokens_per_s": B * T / seconds}
            out[name] = row
        out["crf"] = crf_timings(rng, repeats)
    return out


def crf_timings(rng, repeats: int, B: int = 32, T: int = 40, K: int = 17) -> dict:
    """Milliseconds per call of the CRF kernels on a batch like shape A with K tags."""
    import numpy as np

    from tagger.kernels import crf_cpu

    em = rng.normal(size=(B, T, K)).astype(np.float32)
    tags = rng.integers(0, K, size=(B, T))
    lengths = np.full(B, T, np.int64)
    start, end = np.zeros(K, np.float32), np.zeros(K, np.float32)
    trans = rng.normal(size=(K, K)).astype(np.float32)
    ok_k, ok_kk = np.ones(K, bool), np.ones((K, K), bool)
    scores = (start, end, trans, ok_k, ok_k, ok_kk)
    nll, d_em = np.empty(B, np.float32), np.empty_like(em)
    d_start, d_end, d_trans = np.empty_like(start), np.empty_like(end), np.empty_like(trans)
    path, best = np.empty((B, T), np.int64), np.empty(B, np.float32)
    calls = {
        "crf_nll (loss and gradients)": lambda: crf_cpu.crf_nll(
            em, tags, lengths, *scores, nll, d_em, d_start, d_end, d_trans),
        "viterbi_decode": lambda: crf_cpu.viterbi_decode(em, lengths, *scores, path, best),
    }
    out = {}
    for name, fn in calls.items():
        fn()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(100):
                fn()
            samples.append((time.perf_counter() - t0) / 100)
        out[name] = float(np.median(samples)) * 1e3
    return out


def child_start() -> dict:
    """Run in the child: import plus the first BiLSTM forward+backward (compiles or loads)."""
    t0 = time.perf_counter()
    import numpy as np

    from tagger.nn.recurrent import RNNStack

    t_import = time.perf_counter() - t0
    stack = RNNStack("lstm", 8, 4, bidirectional=True)
    params = stack.init_params(np.random.default_rng(0))
    x = np.zeros((2, 3, 8), np.float32)
    out, cache = stack.forward(params, x, np.array([3, 2]))
    stack.backward(params, cache, out)
    return {"import_s": t_import, "first_call_s": time.perf_counter() - t0}


def run_child(mode: str, env_changes: dict, repeats: int = 7) -> dict:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--child", mode, "--repeats", str(repeats)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    import numpy

    return (f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, Numba {numba.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=["speed", "start"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.child == "speed":
        print(json.dumps(child_speed(args.repeats)))
        return
    if args.child == "start":
        print(json.dumps(child_start()))
        return

    coretype = os.environ.get("OPENBLAS_CORETYPE")
    variants = {"OPENBLAS_CORETYPE unset": {"OPENBLAS_CORETYPE": None}}
    if coretype:
        variants[f"OPENBLAS_CORETYPE={coretype}"] = {"OPENBLAS_CORETYPE": coretype}
    speed = {label: run_child("speed", env, args.repeats) for label, env in variants.items()}
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child("start", {"TAGGER_CACHE_DIR": cache})
        warm = run_child("start", {"TAGGER_CACHE_DIR": cache})

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_description()}.",
        "One core, one thread, float32, one bidirectional LSTM layer; tokens/s = batch × length "
        "/ median time per call.",
        "",
        "| shape | B × T, D → H | OpenBLAS | forward tokens/s | forward+backward tokens/s "
        "| forward+backward ms |",
        "|---|---|---|---:|---:|---:|",
    ]
    for label, table in speed.items():
        for name, (B, T, D, H) in SHAPES.items():
            row = table[name]
            lines.append(
                f"| {name} | {B} × {T}, {D} → {H} | {label} | "
                f"{row['forward']['tokens_per_s']:,.0f} | "
                f"{row['forward_backward']['tokens_per_s']:,.0f} | "
                f"{row['forward_backward']['ms']:.2f} |")
    first = next(iter(speed.values()))
    lines += ["", "| CRF kernel, batch 32 × length 40, 17 tags, float32, 1 thread | ms per call |",
              "|---|---:|"]
    lines += [f"| `{name}` | {ms:.3f} |" for name, ms in first["crf"].items()]
    lines += [
        "",
        "| start-up (import + first BiLSTM forward+backward, fresh process) | seconds |",
        "|---|---:|",
        f"| empty cache: compiles the float32 LSTM kernels | {cold['first_call_s']:.2f} |",
        f"| warm cache: loads them | {warm['first_call_s']:.2f} |",
        f"| `import tagger.nn.recurrent` alone (warm) | {warm['import_s']:.2f} |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(text)


def write_section(body: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it)."""
    _results.write_section("bench_kernels",
                           f"## Kernels (`benchmarks/bench_kernels.py`)\n\n{body}")


if __name__ == "__main__":
    main()
