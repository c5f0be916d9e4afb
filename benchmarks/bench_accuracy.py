"""Accuracy of SequenceTagger with its DEFAULT hyperparameters on the real corpora (dev sets).

* UD English EWT, UPOS: train on ``ud_ewt/train.conllu``, token accuracy on ``dev.conllu``.
* WNUT17 NER: train on ``wnut17/train.conll``, entity micro F1 on ``dev.conll`` (seqeval default).

The dev set drives early stopping, exactly as a user would call it:
``SequenceTagger(random_state=0).fit(X, y, X_dev=X_dev, y_dev=y_dev)``. The data are read from
``../shared/data`` beside the repository (or ``--data``).

Usage::

    python benchmarks/bench_accuracy.py               # both corpora, update RESULTS.md
    python benchmarks/bench_accuracy.py --task ud     # one corpus
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import SequenceTagger  # noqa: E402
from tagger.io import read_conll, read_conllu  # noqa: E402

TASKS = {
    "ud": ("UD English EWT, UPOS token accuracy", "ud_ewt", "train.conllu", "dev.conllu"),
    "wnut": ("WNUT17, entity micro F1", "wnut17", "train.conll", "dev.conll"),
}


def read(task: str, path: Path):
    sentences = read_conllu(path) if task == "ud" else read_conll(path)
    X, y = [], []
    for s in sentences:
        X.append(s.tokens)
        y.append(s.tags)
    return X, y


def run(task: str, data: Path, seed: int, threads: int | None) -> dict:
    title, folder, train_name, dev_name = TASKS[task]
    X, y = read(task, data / folder / train_name)
    X_dev, y_dev = read(task, data / folder / dev_name)
    model = SequenceTagger(random_state=seed, n_jobs=threads, verbose=1)
    start = time.perf_counter()
    model.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    score = model.score(X_dev, y_dev)
    predict_seconds = time.perf_counter() - start
    train_tokens = sum(len(s) for s in X)
    epochs = len(model.history_)
    epoch_seconds = sum(h["seconds"] for h in model.history_)
    return {
        "task": title, "score": score, "best_epoch": model.best_epoch_, "epochs": epochs,
        "train_seconds": train_seconds, "train_tokens": train_tokens,
        "train_tokens_per_s": train_tokens * epochs / epoch_seconds,
        "dev_tokens_per_s": sum(len(s) for s in X_dev) / predict_seconds,
    }


def write_section(rows: list[dict], threads: int) -> str:
    import numba
    import numpy

    lines = [
        "## Accuracy with default hyperparameters (`benchmarks/bench_accuracy.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `SequenceTagger(random_state=0)`, trained from "
        f"scratch (no pretrained embeddings) on {threads} threads; NumPy {numpy.__version__}, "
        f"Numba {numba.__version__}. Dev-set figures; the dev set drives early stopping.",
        "",
        "| corpus and metric | dev score | best epoch / epochs run | training time | training "
        "tokens/s | tagging tokens/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {100 * r['score']:.2f} | {r['best_epoch']} / {r['epochs']} | "
            f"{r['train_seconds'] / 60:.1f} min | {r['train_tokens_per_s']:,.0f} | "
            f"{r['dev_tokens_per_s']:,.0f} |")
    body = "\n".join(lines)
    _results.write_section("bench_accuracy", body)
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["ud", "wnut", "all"], default="all")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder not found: {args.data}")
    tasks = ["ud", "wnut"] if args.task == "all" else [args.task]
    rows = []
    for task in tasks:
        row = run(task, args.data, args.seed, args.threads)
        print(f"{row['task']}: {100 * row['score']:.2f} (best epoch {row['best_epoch']} of "
              f"{row['epochs']}, {row['train_seconds'] / 60:.1f} min)", flush=True)
        rows.append(row)
    if not args.no_write:
        print(write_section(rows, args.threads))


if __name__ == "__main__":
    main()
