"""Quality of CharLanguageModel with its DEFAULT hyperparameters on tiny-shakespeare, within a
wall-time budget.

``../shared/data/tinyshakespeare/train.txt`` is the first 90% of tiny-shakespeare (the rest is kept
aside for independent evaluation); its last 5% of lines is held out as development text. The
model trains epoch by epoch (``partial_fit``, the same schedule as ``fit``) until the budget is
spent or the development loss has not improved for ``patience`` epochs; the weights of the best
epoch are kept, as ``fit`` keeps them. Reported: the development loss per epoch with the elapsed
time, the best one within the budget, training characters/s, and samples at temperatures 0.5, 0.8
and 1.0.

Usage::

    python benchmarks/bench_lm.py                  # 30 minutes, update RESULTS.md
    python benchmarks/bench_lm.py --minutes 5 --no-write
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import CharLanguageModel  # noqa: E402
from tagger.workflows import read_text_lines, split_tail  # noqa: E402

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    path = DATA / "tinyshakespeare" / "train.txt"
    if not path.exists():
        sys.exit(f"{path} is missing: this benchmark needs the shared data folder")
    X, X_dev = split_tail(read_text_lines(path), 0.05)
    model = CharLanguageModel(random_state=args.seed)
    budget = args.minutes * 60
    start = time.perf_counter()
    best, best_params, rows = -math.inf, None, []
    while True:
        model.partial_fit(X, X_dev=X_dev)
        elapsed = time.perf_counter() - start
        entry = model.history_[-1]
        rows.append((entry["epoch"], entry["loss"], -entry["dev_score"], elapsed,
                     entry["chars_per_s"]))
        print(f"epoch {entry['epoch']}: train {entry['loss']:.4f}, dev "
              f"{-entry['dev_score']:.4f} nats/char, {elapsed / 60:.1f} min", flush=True)
        if entry["dev_score"] > best:
            best, best_epoch, best_time = entry["dev_score"], entry["epoch"], elapsed
            best_params = {k: v.copy() for k, v in model.params_.items()}
        waited = entry["epoch"] - best_epoch
        if elapsed >= budget or waited >= model.patience or entry["epoch"] >= model.max_epochs:
            break
    for k, v in best_params.items():
        model.params_[k][...] = v
    samples = [(t, model.sample("ROMEO:", 300, temperature=t, random_state=1))
               for t in (0.5, 0.8, 1.0)]
    speed = sorted(r[4] for r in rows)[len(rows) // 2]
    p = model.get_params()
    lines = [
        "## Character language model (`benchmarks/bench_lm.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `CharLanguageModel(random_state="
        f"{args.seed})` defaults ({p['cell']}, {p['num_layers']} layer of {p['hidden_size']}, "
        f"embeddings {p['embedding_dim']}, segments of {p['bptt']} on {p['batch_size']} "
        f"streams, dropout {p['dropout']}, {p['optimizer']} {p['learning_rate']}) on 2 cores, "
        f"a budget of {args.minutes:g} minutes: tiny-shakespeare `train.txt` "
        f"({sum(len(x) + 1 for x in X):,} characters of training text, the last 5% of its "
        f"lines, {sum(len(x) + 1 for x in X_dev):,} characters, as dev).",
        "",
        f"Best dev loss within the budget: **{-best:.4f} nats per character** "
        f"({-best / math.log(2):.3f} bits), epoch {best_epoch}, after {best_time / 60:.1f} "
        f"minutes; training at {speed:,.0f} characters/s (median epoch).",
        "",
        "| epoch | training loss (nats/char) | dev loss (nats/char) | minutes |",
        "|---:|---:|---:|---:|",
        *[f"| {e} | {loss:.4f} | {dev:.4f} | {t / 60:.1f} |" for e, loss, dev, t, _ in rows],
        "",
        "Samples from the best epoch (prefix `ROMEO:`, 300 characters, seed 1):",
        "",
        *[f"Temperature {t}:\n\n```\n{text}\n```\n" for t, text in samples],
    ]
    body = "\n".join(lines).rstrip()
    print(body)
    if not args.no_write:
        _results.write_section("bench_lm", body)


if __name__ == "__main__":
    main()
