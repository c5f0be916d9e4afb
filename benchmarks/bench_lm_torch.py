"""The character language model beside a PyTorch character LSTM of the same size, trained for the
same wall time on the same data, in one run.

Both models: character embeddings of 64, one LSTM layer of 512 units, a linear layer to the
characters; dropout 0.1 on the embedding table (one mask per segment) and on the LSTM's
output; Adam at 0.002; gradients clipped to a global norm of 5; 32 parallel streams cut into
segments of 100 characters, the state carried from segment to segment (truncated
backpropagation through time) -- ``CharLanguageModel``'s defaults, and the same character ids
(its vocabulary) for both. Data: tiny-shakespeare ``train.txt``, its last 5% of lines held out
as dev text (as in ``bench_lm.py``).

Each library trains in a fresh process for ``--seconds`` of wall time, with 1 thread pinned to
one core, then with 2 threads; the turns alternate (ours, PyTorch, ours, PyTorch). This
library's compiled kernels come from its cache (filled by a short warm-up run before the timed
ones: compiling happens once per machine, see ``bench_startup.py``). Reported per turn: the
characters trained per second (the wall time of the training steps), and the dev loss after
the budget (nats per character, the same 16 streams read in segments of 1,000 by both).
Sampling: 2,000 characters at batch 1 and temperature 1 from each trained model, 1 thread --
this library's compiled sampler against the usual PyTorch loop (one ``nn.LSTM`` step, softmax,
``torch.multinomial``).

PyTorch is optional: ``pip install torch==2.13.0`` installs a CPU build here.

Usage::

    python benchmarks/bench_lm_torch.py                    # 4 turns of 150 s; update RESULTS.md
    python benchmarks/bench_lm_torch.py --seconds 20 --no-write
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))

E, H, B, T = 64, 512, 32, 100
DROPOUT, LEARNING_RATE, CLIP = 0.1, 0.002, 5.0
SAMPLE_CHARS = 2000
EVAL_STREAMS, EVAL_SEGMENT = 16, 1000


def data():
    """Training and dev character ids, and the vocabulary size (this library's vocabulary)."""
    from tagger import CharLanguageModel
    from tagger.text.vocab import Vocabulary
    from tagger.workflows import read_text_lines, split_tail

    X, X_dev = split_tail(read_text_lines(DATA / "tinyshakespeare" / "train.txt"), 0.05)
    lm = CharLanguageModel()
    lm.vocabulary_ = Vocabulary.build((c for text in X for c in text + "\n"), min_count=1)
    return lm._stream(X), lm._stream(X_dev), len(lm.vocabulary_)


def segments(ids: np.ndarray):
    """Inputs and targets (B, N) of the training streams, as the estimator cuts them."""
    N = (len(ids) - 1) // B
    return ids[:B * N].reshape(B, N), ids[1:B * N + 1].reshape(B, N)


def eval_streams(ids: np.ndarray):
    N = (len(ids) - 1) // EVAL_STREAMS
    return ids[:EVAL_STREAMS * N].reshape(EVAL_STREAMS, N), \
        ids[1:EVAL_STREAMS * N + 1].reshape(EVAL_STREAMS, N)


def pin(threads: int) -> None:
    if threads == 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})


# ----------------------------------------------------------------------------------------------
# this library
# ----------------------------------------------------------------------------------------------


def run_ours(seconds: float, threads: int, seed: int) -> dict:
    pin(threads)
    import numba

    from tagger.kernels import lm_cpu
    from tagger.nn.language_model import CharLMNetwork
    from tagger.nn.optim import make_optimizer
    from tagger.nn.training import apply_gradients, thread_limit

    # As CharLanguageModel(n_jobs=threads) trains: that many kernel threads, BLAS on one.
    limit = thread_limit(threads)
    limit.__enter__()
    ids, dev, V = data()
    inputs, targets = segments(ids)
    rng = np.random.default_rng(seed)
    net = CharLMNetwork(V, E, "lstm", H, 1, DROPOUT)
    params = net.init_params(rng)
    optimizer = make_optimizer("adam", LEARNING_RATE)
    state, s, chars, steps = net.initial_state(B), 0, 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if s >= inputs.shape[1]:
            s, state = 0, net.initial_state(B)
        x, y = inputs[:, s:s + T], targets[:, s:s + T]
        loss, grads, state = net.loss_and_grads(params, x, y, state, rng)
        apply_gradients(params, grads, loss, optimizer, CLIP)
        s += T
        chars += x.size
        steps += 1
    elapsed = time.perf_counter() - start
    dx, dy = eval_streams(dev)
    total, count, state = 0.0, 0, net.initial_state(EVAL_STREAMS)
    for k in range(0, dx.shape[1], EVAL_SEGMENT):
        logp, n, state = net.log_likelihood(params, dx[:, k:k + EVAL_SEGMENT],
                                            dy[:, k:k + EVAL_SEGMENT], state)
        total += logp
        count += n
    limit.__exit__(None, None, None)
    numba.set_num_threads(1)
    lm_cpu.sample("lstm", params, 1, None, 0, 10, 1.0, 0, [0, 1], seed)  # compiled and warm
    start = time.perf_counter()
    lm_cpu.sample("lstm", params, 1, None, 0, SAMPLE_CHARS, 1.0, 0, [0, 1], seed)
    sample_seconds = time.perf_counter() - start
    return {"chars_per_s": chars / elapsed, "steps": steps, "seconds": elapsed,
            "dev": -total / count, "sample_chars_per_s": SAMPLE_CHARS / sample_seconds}


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------


def run_torch(seconds: float, threads: int, seed: int) -> dict:
    pin(threads)
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    ids, dev, V = data()
    inputs, targets = (torch.from_numpy(a.astype(np.int64)) for a in segments(ids))

    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, E)
            self.drop = nn.Dropout(DROPOUT)
            self.lstm = nn.LSTM(E, H, batch_first=True)
            self.out = nn.Linear(H, V)

        def forward(self, x, state=None):
            # Dropout on the embedding table, one mask per segment (as CharLanguageModel).
            table = self.drop(self.emb.weight)
            h, state = self.lstm(nn.functional.embedding(x, table), state)
            return self.out(self.drop(h)), state

    model = CharLSTM()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    state, s, chars, steps = None, 0, 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if s >= inputs.shape[1]:
            s, state = 0, None
        x, y = inputs[:, s:s + T], targets[:, s:s + T]
        logits, state = model(x, state)
        state = tuple(t.detach() for t in state)
        loss = loss_fn(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        s += T
        chars += x.numel()
        steps += 1
    elapsed = time.perf_counter() - start
    model.eval()
    dx, dy = (torch.from_numpy(a.astype(np.int64)) for a in eval_streams(dev))
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for k in range(0, dx.shape[1], EVAL_SEGMENT):
            logits, state = model(dx[:, k:k + EVAL_SEGMENT], state)
            logp = torch.log_softmax(logits.double(), dim=-1)
            total += float(logp.gather(-1, dy[:, k:k + EVAL_SEGMENT, None]).sum())
            count += dy[:, k:k + EVAL_SEGMENT].numel()
    torch.set_num_threads(1)

    def sample(n):
        generator = torch.Generator().manual_seed(seed)
        x, state, out = torch.zeros((1, 1), dtype=torch.int64), None, []
        with torch.no_grad():
            for _ in range(n):
                logits, state = model(x, state)
                probs = torch.softmax(logits[0, -1] / 1.0, dim=-1)
                probs[:2] = 0  # padding and unknown are never drawn, as in this library
                x = torch.multinomial(probs, 1, generator=generator).view(1, 1)
                out.append(int(x))
        return out

    sample(10)
    start = time.perf_counter()
    sample(SAMPLE_CHARS)
    sample_seconds = time.perf_counter() - start
    return {"chars_per_s": chars / elapsed, "steps": steps, "seconds": elapsed,
            "dev": -total / count, "sample_chars_per_s": SAMPLE_CHARS / sample_seconds,
            "version": torch.__version__}


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------


def turn(library: str, seconds: float, threads: int, seed: int) -> dict:
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)  # as on a user's machine
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", library, "--threads", str(threads),
         "--seconds", str(seconds), "--seed", str(seed)],
        env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{library} with {threads} thread(s) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run = run_ours if args.worker == "ours" else run_torch
        print(json.dumps(run(args.seconds, args.threads, args.seed)))
        return
    if not (DATA / "tinyshakespeare" / "train.txt").exists():
        sys.exit("tinyshakespeare/train.txt is missing: this benchmark needs the shared data")
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not installed: pip install torch==2.13.0 (a CPU build)")
    turn("ours", 3, 1, args.seed)  # fills the kernel cache: no turn below compiles
    rows = {}
    for threads in (1, 2):
        for library in ("ours", "torch"):
            rows[(library, threads)] = r = turn(library, args.seconds, threads, args.seed)
            print(f"{library} {threads} thread(s): {r['chars_per_s']:,.0f} chars/s, dev "
                  f"{r['dev']:.4f}, sampling {r['sample_chars_per_s']:,.0f} chars/s",
                  flush=True)
    version = rows[("torch", 1)]["version"]
    lines = [
        "## Character language model beside PyTorch (`benchmarks/bench_lm_torch.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, PyTorch {version} (CPU build): embeddings "
        f"{E}, one LSTM layer of {H}, dropout {DROPOUT} (on the embedding table, one mask per "
        f"segment, and on the output), Adam {LEARNING_RATE}, clipping "
        f"{CLIP:g}, {B} streams x {T} characters, on tiny-shakespeare (last 5% of lines as "
        f"dev); each library {args.seconds:g} s of training per turn, turns alternating, in one "
        f"run.",
        "",
        "| threads | library | training characters/s | steps | dev nats/char after the "
        "budget | sampling characters/s (batch 1, 1 thread) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for (library, threads), r in rows.items():
        lines.append(f"| {threads} | {'tagger' if library == 'ours' else 'PyTorch'} | "
                     f"{r['chars_per_s']:,.0f} | {r['steps']} | {r['dev']:.4f} | "
                     f"{r['sample_chars_per_s']:,.0f} |")
    ratios = [rows[("ours", t)]["chars_per_s"] / rows[("torch", t)]["chars_per_s"]
              for t in (1, 2)]
    sampling = [rows[("ours", t)]["sample_chars_per_s"] / rows[("torch", t)]["sample_chars_per_s"]
                for t in (1, 2)]
    lines += [
        "",
        f"Training characters/s, tagger over PyTorch: **{ratios[0]:.2f}x** on 1 thread, "
        f"**{ratios[1]:.2f}x** on 2. Sampling: **{min(sampling):.1f}x** or more. Dev loss "
        f"after the same wall time: tagger {rows[('ours', 1)]['dev']:.4f} / "
        f"{rows[('ours', 2)]['dev']:.4f}, PyTorch {rows[('torch', 1)]['dev']:.4f} / "
        f"{rows[('torch', 2)]['dev']:.4f} (1 / 2 threads).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_lm_torch", body)
    if not all(math.isfinite(r["dev"]) for r in rows.values()):
        sys.exit("a dev loss is not finite")


if __name__ == "__main__":
    main()
