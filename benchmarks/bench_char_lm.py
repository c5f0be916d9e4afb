"""Do contextual character embeddings pay? A forward and a backward character language model
trained on the raw text of the shared corpora, then taggers with and without them.

1. **Language models.** The raw text of the UD English EWT training sentences (tokens joined by
   spaces, without their tags), of the WNUT17 training tweets and of the SST-2 training phrases
   (distinct lines), shuffled by line with a fixed seed; the last 2% of lines is the models'
   development text. A forward and a backward ``CharLanguageModel`` (LSTM, one layer of
   ``--lm-hidden`` units, otherwise the defaults) train until early stopping or ``--lm-epochs``.
   They are saved under ``--work`` and reused by later runs (``--retrain`` trains them again).
2. **Taggers.** ``SequenceTagger(random_state=seed)`` with its defaults, with and without
   ``char_lm=(forward, backward)``, on only the first ``--ud-sentences`` (1,000) UD EWT training
   sentences, scored by UPOS accuracy on the UD dev set; and on all of WNUT17's training
   sentences, scored by entity F1 on its dev set. Development sets drive early stopping, as in
   ``bench_accuracy.py``; the test splits are not read.
3. **Prediction cost.** ``predict`` on the 2,001 UD dev sentences with the two UD taggers,
   alternating, after a warm-up, in a fresh process that loads their model files: the best of
   ``--repeats`` runs of each, and their ratio.

Usage::

    python benchmarks/bench_char_lm.py                 # everything; update RESULTS.md
    python benchmarks/bench_char_lm.py --lm-epochs 1 --no-write
    python benchmarks/bench_char_lm.py --timing-only    # the prediction cost again (quiet)
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import CharLanguageModel, SequenceTagger  # noqa: E402
from tagger.io import read_conll, read_conllu  # noqa: E402

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))


def tagged(path: Path):
    sentences = read_conllu(path) if path.suffix == ".conllu" else read_conll(path)
    X, y = [], []
    for s in sentences:
        X.append(s.tokens)
        y.append(s.tags)
    return X, y


def raw_text(seed: int) -> tuple[list[str], list[str]]:
    """Training and development lines for the language models (see the module docstring)."""
    lines = [" ".join(t) for t in tagged(DATA / "ud_ewt" / "train.conllu")[0]]
    lines += [" ".join(t) for t in tagged(DATA / "wnut17" / "train.conll")[0]]
    with open(DATA / "sst2" / "train.tsv", encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)  # header
        lines += list(dict.fromkeys(row[1].strip() for row in rows if len(row) >= 2))
    lines = [line for line in lines if line]
    random.Random(seed).shuffle(lines)
    cut = len(lines) - max(1, len(lines) // 50)
    return lines[:cut], lines[cut:]


def language_models(args) -> tuple[CharLanguageModel, CharLanguageModel, list[dict]]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = {d: work / f"char_lm_{d}_h{args.lm_hidden}_s{args.seed}.tagger"
             for d in ("forward", "backward")}
    X, X_dev = raw_text(args.seed)
    if not args.retrain and all(p.exists() for p in paths.values()):
        print(f"reusing {', '.join(map(str, paths.values()))}", flush=True)
        from tagger import load

        models = {direction: load(path) for direction, path in paths.items()}
    else:
        print(f"language models: {len(X):,} lines, {sum(len(x) + 1 for x in X):,} characters; "
              f"dev {len(X_dev):,} lines", flush=True)
        models = {}
        for direction, path in paths.items():
            lm = CharLanguageModel(hidden_size=args.lm_hidden, direction=direction,
                                   max_epochs=args.lm_epochs, random_state=args.seed, verbose=1)
            lm.fit(X, X_dev=X_dev)
            lm.save(path)
            models[direction] = lm
    rows = []
    for direction, lm in models.items():  # from each model's own history (saved ones too)
        best = lm.history_[lm.best_epoch_ - 1]
        rows.append({"direction": direction, "epochs": len(lm.history_),
                     "best_epoch": lm.best_epoch_, "dev": -best["dev_score"],
                     "minutes": sum(entry["seconds"] for entry in lm.history_) / 60,
                     "chars_per_s": best["chars_per_s"],
                     "chars": sum(len(x) + 1 for x in X)})
    return models["forward"], models["backward"], rows


def fit_tagger(X, y, X_dev, y_dev, seed, char_lm):
    start = time.perf_counter()
    model = SequenceTagger(random_state=seed, char_lm=char_lm, verbose=1)
    model.fit(X, y, X_dev=X_dev, y_dev=y_dev)
    return model, (time.perf_counter() - start) / 60


_TIMING_CHILD = """
import json, sys, time
from tagger import load
from tagger.io import read_conllu
without, with_lm = load(sys.argv[1]), load(sys.argv[2])
X = [s.tokens for s in read_conllu(sys.argv[3])]
for model in (without, with_lm):
    model.predict(X[:100])  # compiled and warm
times = {"without": [], "with": []}
for _ in range(int(sys.argv[4])):
    for name, model in (("without", without), ("with", with_lm)):
        start = time.perf_counter()
        model.predict(X)
        times[name].append(time.perf_counter() - start)
print(json.dumps({name: min(values) for name, values in times.items()}))
"""


def prediction_cost(without: SequenceTagger, with_lm: SequenceTagger, work: Path,
                    repeats: int) -> tuple[float, float]:
    """The best of ``repeats`` alternating ``predict`` runs of each tagger on the UD dev set,
    in a fresh process that loads them from their model files, as a user runs them (timed in
    the process that trained four taggers, the same prediction with the language models ran
    twice as slowly as in a fresh one)."""
    import json
    import subprocess

    paths = [work / "ud_without_char_lm.tagger", work / "ud_with_char_lm.tagger"]
    without.save(paths[0])
    with_lm.save(paths[1])
    out = subprocess.run([sys.executable, "-c", _TIMING_CHILD, *map(str, paths),
                          str(DATA / "ud_ewt" / "dev.conllu"), str(repeats)],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    best = json.loads(out.stdout.strip().splitlines()[-1])
    return best["without"], best["with"]


_PREDICTION = "Prediction on the "


def prediction_line(X_dev, base: float, with_lm: float, repeats: int) -> str:
    tokens = sum(len(s) for s in X_dev)
    return (f"{_PREDICTION}{len(X_dev):,} UD EWT dev sentences ({tokens:,} tokens), best of "
            f"{repeats}: {base:.2f} s without ({tokens / base:,.0f} tokens/s), {with_lm:.2f} s "
            f"with the two language models ({tokens / with_lm:,.0f} tokens/s): "
            f"**{with_lm / base:.2f}x** the time.")


def time_again(args) -> None:
    """``--timing-only``: time the two UD taggers a full run saved under ``--work`` again (on a
    quiet machine, say) and rewrite the prediction line of the section."""
    work = Path(args.work)
    paths = [work / "ud_without_char_lm.tagger", work / "ud_with_char_lm.tagger"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"{', '.join(missing)} missing: run the whole benchmark first")
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", _TIMING_CHILD, *map(str, paths),
                          str(DATA / "ud_ewt" / "dev.conllu"), str(args.repeats)],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    best = json.loads(out.stdout.strip().splitlines()[-1])
    X_dev, _ = tagged(DATA / "ud_ewt" / "dev.conllu")
    line = prediction_line(X_dev, best["without"], best["with"], args.repeats)
    print(line)
    section = _results.read_section("bench_char_lm")
    if not args.no_write and _PREDICTION in section:
        body = "\n".join(line if row.startswith(_PREDICTION) else row
                         for row in section.strip("\n").split("\n"))
        _results.write_section("bench_char_lm", body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm-hidden", type=int, default=128)
    parser.add_argument("--lm-epochs", type=int, default=8)
    parser.add_argument("--ud-sentences", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", default=str(ROOT / ".bench_work"))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--skip-wnut", action="store_true")
    parser.add_argument("--timing-only", action="store_true",
                        help="time the taggers a full run saved under --work again and rewrite "
                             "the prediction line only")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.timing_only:
        time_again(args)
        return
    for folder in ("ud_ewt", "wnut17", "sst2"):
        if not (DATA / folder).is_dir():
            sys.exit(f"{DATA / folder} is missing: this benchmark needs the shared data folder")
    forward, backward, lm_rows = language_models(args)
    pair = (forward, backward)

    X, y = tagged(DATA / "ud_ewt" / "train.conllu")
    X, y = X[:args.ud_sentences], y[:args.ud_sentences]
    X_dev, y_dev = tagged(DATA / "ud_ewt" / "dev.conllu")
    results = {}
    for name, lm in (("without", None), ("with", pair)):
        model, minutes = fit_tagger(X, y, X_dev, y_dev, args.seed, lm)
        results[("ud", name)] = (100 * model.score(X_dev, y_dev), minutes, model)
        print(f"UD EWT UPOS {name} char_lm: {results[('ud', name)][0]:.2f} "
              f"({minutes:.1f} min)", flush=True)
    if not args.skip_wnut:
        W, wy = tagged(DATA / "wnut17" / "train.conll")
        W_dev, wy_dev = tagged(DATA / "wnut17" / "dev.conll")
        for name, lm in (("without", None), ("with", pair)):
            model, minutes = fit_tagger(W, wy, W_dev, wy_dev, args.seed, lm)
            results[("wnut", name)] = (100 * model.score(W_dev, wy_dev), minutes, model)
            print(f"WNUT17 F1 {name} char_lm: {results[('wnut', name)][0]:.2f} "
                  f"({minutes:.1f} min)", flush=True)
    base, with_lm = prediction_cost(results[("ud", "without")][2], results[("ud", "with")][2],
                                    Path(args.work), args.repeats)

    gain = results[("ud", "with")][0] - results[("ud", "without")][0]
    lines = [
        "## Contextual character embeddings (`benchmarks/bench_char_lm.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on 2 cores, seed {args.seed}. Language models: "
        f"LSTM, one layer of {args.lm_hidden} units, otherwise `CharLanguageModel` defaults, "
        f"trained on the raw text of the UD EWT training sentences, the WNUT17 training tweets "
        f"and the distinct SST-2 training phrases (last 2% of the shuffled lines as their dev "
        f"text), at most {args.lm_epochs} epochs.",
        "",
    ]
    if lm_rows:
        lines += [
            "| language model | characters | epochs | best epoch | dev nats/char | "
            "characters/s | minutes |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *[f"| {r['direction']} | {r['chars']:,} | {r['epochs']} | {r['best_epoch']} | "
              f"{r['dev']:.4f} | {r['chars_per_s']:,.0f} | {r['minutes']:.1f} |"
              for r in lm_rows],
            "",
        ]
    lines += [
        f"Taggers: `SequenceTagger(random_state={args.seed})` defaults, without and with "
        f"`char_lm=(forward, backward)`; dev sets drive early stopping.",
        "",
        "| task | without | with char_lm | gain | training minutes (without / with) |",
        "|---|---:|---:|---:|---:|",
        f"| UD EWT UPOS accuracy, first {len(X):,} training sentences | "
        f"{results[('ud', 'without')][0]:.2f} | {results[('ud', 'with')][0]:.2f} | "
        f"**{gain:+.2f}** | {results[('ud', 'without')][1]:.1f} / "
        f"{results[('ud', 'with')][1]:.1f} |",
    ]
    if ("wnut", "with") in results:
        lines.append(
            f"| WNUT17 entity F1, all training sentences | "
            f"{results[('wnut', 'without')][0]:.2f} | {results[('wnut', 'with')][0]:.2f} | "
            f"{results[('wnut', 'with')][0] - results[('wnut', 'without')][0]:+.2f} | "
            f"{results[('wnut', 'without')][1]:.1f} / {results[('wnut', 'with')][1]:.1f} |")
    lines += ["", prediction_line(X_dev, base, with_lm, args.repeats)]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section("bench_char_lm", body)


if __name__ == "__main__":
    main()
