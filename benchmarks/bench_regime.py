"""Training regimes of ``SequenceTagger`` compared over seeds: the dev score each setting reaches,
its spread across seeds, its speed and the time it takes to reach its best epoch.

A setting is a set of ``SequenceTagger`` parameters over the defaults (``--settings`` names
them from ``SETTINGS``, or gives a JSON object of name → parameters). Each runs with every seed
of ``--seeds`` on a shared corpus, its dev set driving early stopping as in ``bench_accuracy.py``
(the test splits are not read):

- ``wnut17``: WNUT17 train / dev, entity F1;
- ``ud1000``: the first 1,000 UD EWT training sentences, UPOS accuracy on UD dev;
- ``ud``: all of UD EWT train, UPOS accuracy on dev;
- ``sst2``: ``SequenceClassifier`` on SST-2 train / dev, accuracy (the settings are its
  parameters over its defaults).

Reported per setting: the mean dev score and its spread (max - min) over the seeds, the mean
best epoch and epochs run, training tokens per second (mean over epochs, compilation left out),
the minutes to the best epoch and in all.

Usage::

    python benchmarks/bench_regime.py --corpus wnut17 --settings defaults,patience10
    python benchmarks/bench_regime.py --corpus ud1000 --seeds 0 --no-write

A study in several sittings: ``--log FILE`` appends every run to a JSON-lines file, and
``--from-log FILE`` writes the table of every setting that file holds for the corpus (the last
run of each setting and seed counts) without training anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import _results  # noqa: E402
from bench_char_lm import tagged  # noqa: E402
from bench_classifier import read_sst2  # noqa: E402

from tagger import SequenceClassifier, SequenceTagger  # noqa: E402

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))

#: Named settings: parameters over SequenceTagger's defaults.
SETTINGS: dict[str, dict] = {
    "defaults": {},
    "patience10": {"patience": 10},
    "no-lr-decay": {"lr_decay": 0.0},
    "batch32": {"batch_size": 32},
    "batch32-lr3e-3": {"batch_size": 32, "learning_rate": 3e-3},
    "dropout0.33": {"dropout": 0.33},
    "average0.5": {"average_decay": 0.5},
    "average0.7": {"average_decay": 0.7},
    "average0.5-patience10": {"average_decay": 0.5, "patience": 10},
}

CORPORA = {  # name: (train file, dev file, first N training sentences, measure)
    "wnut17": ("wnut17/train.conll", "wnut17/dev.conll", None, "entity F1"),
    "ud1000": ("ud_ewt/train.conllu", "ud_ewt/dev.conllu", 1000, "UPOS accuracy"),
    "ud": ("ud_ewt/train.conllu", "ud_ewt/dev.conllu", None, "UPOS accuracy"),
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", None, "accuracy"),
}


def run(corpus: str, params: dict, seed: int) -> dict:
    train, dev, first, _ = CORPORA[corpus]
    if corpus == "sst2":
        X, y = read_sst2(DATA / train)
        X_dev, y_dev = read_sst2(DATA / dev)
        estimator = SequenceClassifier
    else:
        X, y = tagged(DATA / train)
        if first:
            X, y = X[:first], y[:first]
        X_dev, y_dev = tagged(DATA / dev)
        estimator = SequenceTagger
    start = time.perf_counter()
    model = estimator(random_state=seed, **params).fit(X, y, X_dev=X_dev, y_dev=y_dev)
    minutes = (time.perf_counter() - start) / 60
    history = model.history_
    to_best = sum(e["seconds"] for e in history[:model.best_epoch_]) / 60
    return {"score": 100 * model.score(X_dev, y_dev), "best_epoch": model.best_epoch_,
            "epochs": len(history), "minutes": minutes, "minutes_to_best": to_best,
            "tokens_per_s": statistics.mean(e["tokens_per_s"] for e in history),
            "dev_curve": [round(100 * e["dev_score"], 2) for e in history]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=tuple(CORPORA), default="wnut17")
    parser.add_argument("--settings", default="defaults",
                        help=f"names of {', '.join(SETTINGS)} (comma-separated), or a JSON "
                             f"object of name -> parameters")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--log", help="append each run to this JSON-lines file")
    parser.add_argument("--from-log", help="the table of the runs in this file; no training")
    args = parser.parse_args(argv)
    if args.from_log:
        runs: dict = {}
        for line in Path(args.from_log).read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("corpus") == args.corpus:
                runs.setdefault(entry["setting"], {})[entry["seed"]] = entry
        rows = []
        for name, by_seed in runs.items():
            done = [by_seed[k] for k in sorted(by_seed)]
            scores = [r["score"] for r in done]
            rows.append((name, done[0]["params"], done, statistics.mean(scores),
                         max(scores) - min(scores)))
        return write_table(args, rows, sorted({k for r in runs.values() for k in r}))
    if args.settings.lstrip().startswith("{"):
        chosen = json.loads(args.settings)
    else:
        unknown = [n for n in args.settings.split(",") if n not in SETTINGS]
        if unknown:
            parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
        chosen = {n: SETTINGS[n] for n in args.settings.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    if not (DATA / CORPORA[args.corpus][0]).is_file():
        sys.exit(f"{DATA / CORPORA[args.corpus][0]} is missing: this benchmark needs the "
                 f"shared data folder")
    rows = []
    for name, params in chosen.items():
        runs = []
        for seed in seeds:
            result = run(args.corpus, params, seed)
            runs.append(result)
            line = json.dumps({"corpus": args.corpus, "setting": name, "params": params,
                               "seed": seed, **result})
            print(line, flush=True)
            if args.log:
                with open(args.log, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
        scores = [r["score"] for r in runs]
        rows.append((name, params, runs, statistics.mean(scores), max(scores) - min(scores)))
    write_table(args, rows, seeds)


def write_table(args, rows: list, seeds: list[int]) -> None:
    """The study's table for one corpus: printed, and written to RESULTS.md unless
    ``--no-write``."""
    measure = CORPORA[args.corpus][3]
    lines = [
        f"### {args.corpus}: {measure} on dev (`benchmarks/bench_regime.py --corpus "
        f"{args.corpus}`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on 2 cores; seeds {', '.join(map(str, seeds))}.",
        "",
        "| setting | parameters | mean | spread | per seed | best epoch | epochs | tokens/s | "
        "minutes to best | minutes |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, params, runs, mean, spread in rows:
        per_seed = ", ".join(f"{r['score']:.2f}" for r in runs)
        lines.append(
            f"| {name} | {json.dumps(params) if params else 'defaults'} | {mean:.2f} | "
            f"{spread:.2f} | {per_seed} | "
            f"{statistics.mean(r['best_epoch'] for r in runs):.1f} | "
            f"{statistics.mean(r['epochs'] for r in runs):.1f} | "
            f"{statistics.mean(r['tokens_per_s'] for r in runs):,.0f} | "
            f"{statistics.mean(r['minutes_to_best'] for r in runs):.1f} | "
            f"{statistics.mean(r['minutes'] for r in runs):.1f} |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section(f"bench_regime_{args.corpus}", body)


if __name__ == "__main__":
    main()
