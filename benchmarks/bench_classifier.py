"""Accuracy of SequenceClassifier with its DEFAULT hyperparameters (only ``cell`` changed where
named).

* SST-2 sentiment: train on ``sst2/train.tsv``, accuracy on ``dev.tsv``, from scratch (no
  pretrained embeddings). Two protocols: the dev set drives early stopping, as a user passing a
  dev set would call it (``fit(X, y, X_dev=X_dev, y_dev=y_dev)``); and, with ``--protocol both``,
  early stopping on a held-out share of the training data (``fit(X, y)``) so that the dev set is
  never seen before the final measurement.
* scikit-learn's digits read as sequences of 8 rows of 8 pixels (a small version of the
  pixel-by-pixel MNIST experiment of the IRNN paper): accuracy on a stratified 25% held-out split,
  ``fit(X, y)`` (early stopping on a 10% share of the training part), with an LSTM and with the
  ``irnn`` cell, for several seeds.

Usage::

    python benchmarks/bench_classifier.py                 # everything, update RESULTS.md
    python benchmarks/bench_classifier.py --task digits   # one task
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import SequenceClassifier  # noqa: E402
from tagger.io import read_tsv  # noqa: E402


def read_sst2(path: Path):
    texts = list(read_tsv(path))
    return [t.tokens for t in texts], [t.label for t in texts]


def run_sst2(data: Path, seed: int, threads: int | None, protocol: str) -> dict:
    X, y = read_sst2(data / "sst2" / "train.tsv")
    X_dev, y_dev = read_sst2(data / "sst2" / "dev.tsv")
    model = SequenceClassifier(random_state=seed, n_jobs=threads, verbose=1)
    start = time.perf_counter()
    if protocol == "dev":
        model.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    else:
        model.fit(X, y)
    seconds = time.perf_counter() - start
    epochs = len(model.history_)
    return {
        "task": "SST-2 sentiment, dev accuracy",
        "setting": ("early stopping on dev.tsv" if protocol == "dev"
                    else "early stopping on 10% of train.tsv"),
        "seeds": [seed], "scores": [model.score(X_dev, y_dev)], "seconds": [seconds],
        "epochs": [f"{model.best_epoch_} / {epochs}"],
        # The estimator's own count (an epoch is a part of a pass with epoch_size), without
        # the compiling of the first epoch.
        "tokens_per_s": float(np.mean([h["tokens_per_s"] for h in model.history_])),
    }


def run_digits(cell: str, seeds: list[int], threads: int | None) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    row = {"task": f"digits as 8 rows of 8 pixels, `cell=\"{cell}\"`",
           "setting": "held-out 25%", "seeds": seeds, "scores": [], "seconds": [],
           "epochs": []}
    steps = 0.0
    for seed in seeds:
        model = SequenceClassifier(cell=cell, random_state=seed, n_jobs=threads)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        row["seconds"].append(time.perf_counter() - start)
        row["scores"].append(model.score(X_test, y_test))
        row["epochs"].append(f"{model.best_epoch_} / {len(model.history_)}")
        steps = np.mean([h["tokens_per_s"] for h in model.history_])
        print(f"  {cell} seed {seed}: {100 * row['scores'][-1]:.2f}", flush=True)
    row["tokens_per_s"] = steps
    return row


def write_section(rows: list[dict], threads: int) -> str:
    import numba
    import sklearn

    lines = [
        "## Classifier accuracy with default hyperparameters (`benchmarks/bench_classifier.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `SequenceClassifier(random_state=seed)` "
        f"(only `cell` changed where named), from scratch, on {threads} threads; NumPy "
        f"{np.__version__}, Numba {numba.__version__}, scikit-learn {sklearn.__version__}.",
        "",
        "| task | protocol | seeds | accuracy (first seed) | mean / min over seeds | best epoch "
        "/ epochs run (first seed) | training time (first seed) | training tokens (steps)/s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    measured = {(r["task"], r["setting"]) for r in rows}
    for line in _results.read_section("bench_classifier").splitlines():  # rows not re-measured
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] != "task" and \
                (cells[0], cells[1]) not in measured:
            lines.append(line)
    for r in rows:
        scores = 100 * np.array(r["scores"])
        spread = (f"{scores.mean():.2f} / {scores.min():.2f}" if len(scores) > 1 else "—")
        seconds = r["seconds"][0]
        duration = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
        lines.append(
            f"| {r['task']} | {r['setting']} | {', '.join(map(str, r['seeds']))} | "
            f"{scores[0]:.2f} | {spread} | {r['epochs'][0]} | {duration} | "
            f"{r['tokens_per_s']:,.0f} |")
    body = "\n".join(lines)
    _results.write_section("bench_classifier", body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["sst2", "digits", "all"], default="all")
    parser.add_argument("--protocol", choices=["dev", "both"], default="dev",
                        help="SST-2: early stopping on the dev set, or both protocols")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0, help="SST-2 seed")
    parser.add_argument("--digits-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = []
    if args.task in ("digits", "all"):
        for cell in ("lstm", "irnn"):
            rows.append(run_digits(cell, args.digits_seeds, args.threads))
    if args.task in ("sst2", "all"):
        if not (args.data / "sst2").is_dir():
            sys.exit(f"data folder not found: {args.data / 'sst2'}")
        for protocol in (["dev", "split"] if args.protocol == "both" else ["dev"]):
            row = run_sst2(args.data, args.seed, args.threads, protocol)
            print(f"{row['task']} ({row['setting']}): {100 * row['scores'][0]:.2f} "
                  f"({row['seconds'][0] / 60:.1f} min)", flush=True)
            rows.append(row)
    if not args.no_write:
        print(write_section(rows, args.threads))


if __name__ == "__main__":
    main()
