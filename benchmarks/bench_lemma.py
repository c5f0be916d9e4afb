"""Lemma accuracy on UD English EWT dev: the Lemmatizer with its defaults, beside the baselines.

Trained on ``ud_ewt/train.conllu`` (FORM, UPOS, LEMMA), scored on ``dev.conllu`` (token accuracy,
every word counted; the test split is not read):

* baselines: the form itself, the lowercased form, and the training dictionary -- the most
  frequent lemma of the (form, UPOS) pair, then of the form, else the lowercased form;
* ``Lemmatizer(random_state=seed)`` with gold UPOS, and with the UPOS of a
  ``SequenceTagger(random_state=seed)`` trained on the same training file (both models are
  saved under ``--work`` and reused by later runs; ``--retrain`` trains the lemmatizer again);
* with ``--char-lm``, also with the UPOS of a ``SequenceTagger(char_lm=(forward, backward))``
  whose character language models are those of ``bench_char_lm.py`` (saved under ``--work``
  too);
* each also on the dev tokens whose (form, UPOS) pair training never showed;
* with ``--jackknife K``, lemmatizers that learn from the tags the tagger predicts for training
  sentences it did not see (K contiguous folds of the training file, each tagged by a
  ``SequenceTagger(random_state=seed)`` trained on the others; the tags and the models are kept
  under ``--work`` too), scored with the predicted dev UPOS.

Usage::

    python benchmarks/bench_lemma.py                # update RESULTS.md
    python benchmarks/bench_lemma.py --no-tagger --no-write
    python benchmarks/bench_lemma.py --char-lm     # also a tagger with contextual embeddings
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import _results  # noqa: E402

from tagger import Lemmatizer, SequenceTagger, SequenceTransducer, load  # noqa: E402
from tagger.io import read_conllu  # noqa: E402

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))


def read(path: Path):
    X, upos, lemmas = [], [], []
    for s in read_conllu(path):
        X.append(s.tokens)
        upos.append(s.tags)
        lemmas.append([columns[2] for columns in s.columns])
    return X, upos, lemmas


def flat(rows):
    return [item for row in rows for item in row]


def accuracy(predicted, gold, mask=None):
    pairs = list(zip(predicted, gold, strict=True))
    if mask is not None:
        pairs = [p for p, keep in zip(pairs, mask, strict=True) if keep]
    return 100 * sum(a == b for a, b in pairs) / max(len(pairs), 1)


def baselines(X, upos, lemmas, X_dev, upos_dev):
    by_pair, by_form = {}, {}
    for form, tag, lemma in zip(flat(X), flat(upos), flat(lemmas), strict=True):
        by_pair.setdefault((form, tag), Counter())[lemma] += 1
        by_form.setdefault(form, Counter())[lemma] += 1
    forms, tags = flat(X_dev), flat(upos_dev)
    dictionary = []
    for form, tag in zip(forms, tags, strict=True):
        counts = by_pair.get((form, tag)) or by_form.get(form)
        dictionary.append(counts.most_common(1)[0][0] if counts else form.lower())
    return {"identity": forms, "lowercase": [f.lower() for f in forms],
            "training dictionary, lowercase fallback": dictionary}, set(by_pair)


def search_only(model, X_dev, upos_dev) -> list[str]:
    """The lemmatizer's lemmas if unseen pairs took the transducer's greedy or beam output as
    it is, not the most probable of it and the form's two copies (``Lemmatizer._write``)."""
    pairs = list(zip(flat(X_dev), flat(upos_dev), strict=True))
    unseen = list(dict.fromkeys(p for p in pairs if p not in model.pair_lemmas_))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outputs cut at max_output_length
        written = dict(zip(unseen, SequenceTransducer.predict(
            model, [f for f, _ in unseen], features=[t for _, t in unseen]), strict=True))
    return [model.pair_lemmas_.get(p) or written[p] for p in pairs]


def tag_errors(with_gold, with_predicted, gold, upos, predicted) -> str:
    """Where the predicted tags cost lemmas: the tokens lemmatized right with the gold tag and
    wrong with the predicted one, by (predicted, gold) tag pair, and the accuracy if the most
    costly pair's tokens had their gold-tag lemma."""
    cost = Counter((p, g) for a, b, ref, g, p in zip(with_gold, with_predicted, gold, upos,
                                                      predicted, strict=True)
                   if a == ref and b != ref)
    if not cost:
        return ""
    top = cost.most_common(6)
    pair = top[0][0]
    swapped = {pair, pair[::-1]}
    fixed = [a if (p, g) in swapped else b for a, b, g, p in zip(with_gold, with_predicted, upos,
                                                                  predicted, strict=True)]
    listed = ", ".join(f"{p} for {g} {n}" for (p, g), n in top)
    return (f" Tokens whose lemma is right with the gold tag and wrong with the predicted one: "
            f"{sum(cost.values()):,} (predicted for gold: {listed}); with the gold-tag lemma on "
            f"the {pair[0]}/{pair[1]} confusions alone, the predicted-UPOS accuracy would be "
            f"{accuracy(fixed, gold):.2f}.")


def jackknife_tags(X, upos, X_dev, upos_dev, folds: int, seed: int, work: Path) -> list:
    """The UPOS of every training sentence as predicted by a tagger trained on the other folds
    (contiguous blocks of the file, close to a split by document: folds of every K-th sentence
    leave a sentence's neighbours in training, and their tags come out 1.5 points better than
    the dev set's)."""
    import json

    path = work / f"jackknife{folds}_s{seed}_upos.json"
    if path.exists():
        return json.loads(path.read_text())
    tags = [None] * len(X)
    for k in range(folds):
        lo, hi = k * len(X) // folds, (k + 1) * len(X) // folds
        rest = [i for i in range(len(X)) if not lo <= i < hi]
        tagger = SequenceTagger(random_state=seed)
        tagger.fit([X[i] for i in rest], [upos[i] for i in rest], X_dev=X_dev, y_dev=upos_dev)
        for i, row in zip(range(lo, hi), tagger.predict(X[lo:hi]), strict=True):
            tags[i] = list(row)
        print(f"fold {k + 1}/{folds}: {accuracy(flat(tags[lo:hi]), flat(upos[lo:hi])):.2f} "
              f"UPOS accuracy", flush=True)
    path.write_text(json.dumps(tags))
    return tags


def jackknife_rows(model, data, predicted_upos, folds: int, seed: int, work: Path) -> dict:
    """Dev lemmas, with the predicted UPOS, of lemmatizers built on jackknifed training tags:
    ``model``'s transducer with a dictionary of (form, jackknifed UPOS) pairs, with that
    dictionary's counts pooled with the gold-tag ones, and a lemmatizer trained on those tags
    throughout (its early stopping reads the predicted dev tags)."""
    X, upos, lemmas, X_dev, upos_dev, lemmas_dev = data
    tags = jackknife_tags(X, upos, X_dev, upos_dev, folds, seed, work)
    print(f"jackknifed training UPOS accuracy {accuracy(flat(tags), flat(upos)):.2f}", flush=True)

    def dictionary(*tag_sets):
        counts: dict[tuple, Counter] = {}
        for tag_rows in tag_sets:
            for pair, lemma in zip(zip(flat(X), flat(tag_rows), strict=True), flat(lemmas),
                                   strict=True):
                counts.setdefault(pair, Counter())[lemma] += 1
        return {pair: c.most_common(1)[0][0] for pair, c in counts.items()}

    rows = {}
    gold_dictionary = model.pair_lemmas_
    try:
        for name, tag_sets in ((f"... its dictionary on {folds}-fold jackknifed tags", (tags,)),
                               ("... its dictionary on gold and jackknifed tags (counts pooled)",
                                (upos, tags))):
            model.pair_lemmas_ = dictionary(*tag_sets)
            rows[name] = flat(model.predict(X_dev, predicted_upos))
    finally:
        model.pair_lemmas_ = gold_dictionary
    path = work / f"lemma_jackknife{folds}_s{seed}.tagger"
    if path.exists():
        trained = load(path)
    else:
        trained = Lemmatizer(random_state=seed, verbose=1)
        trained.fit(X, lemmas, tags, X_dev=X_dev, y_dev=lemmas_dev, upos_dev=predicted_upos)
        trained.save(path)
    rows[f"Lemmatizer trained on {folds}-fold jackknifed tags, predicted UPOS"] = flat(
        trained.predict(X_dev, predicted_upos))
    return rows


def char_lm_upos(X, upos, X_dev, upos_dev, seed: int, work: Path) -> tuple[str, list]:
    """(row name, dev UPOS) of ``SequenceTagger(random_state=seed, char_lm=(forward,
    backward))``, its language models those of ``bench_char_lm.py`` (one LSTM layer of 128, 8
    epochs at most, on the raw text of the UD EWT, WNUT17 and SST-2 training files), trained or
    reused under ``work`` like the tagger."""
    import bench_char_lm

    forward, backward, _ = bench_char_lm.language_models(argparse.Namespace(
        work=str(work), lm_hidden=128, lm_epochs=8, seed=seed, retrain=False))
    path = work / f"upos_charlm_s{seed}.tagger"
    if path.exists():
        tagger = load(path)
    else:
        tagger = SequenceTagger(random_state=seed, char_lm=(forward, backward), verbose=1)
        tagger.fit(X, upos, X_dev=X_dev, y_dev=upos_dev)
        tagger.save(path)
    predicted = tagger.predict(X_dev)
    return (f"Lemmatizer, UPOS of `SequenceTagger(char_lm=...)` "
            f"({accuracy(flat(predicted), flat(upos_dev)):.2f})", predicted)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / ".bench_work"))
    parser.add_argument("--retrain", action="store_true",
                        help="train the lemmatizer again even when --work holds one")
    parser.add_argument("--no-tagger", action="store_true",
                        help="skip the run with predicted UPOS")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--jackknife", type=int, default=0, metavar="K",
                        help="also lemmatizers built on K-fold jackknifed training tags")
    parser.add_argument("--char-lm", action="store_true",
                        help="also the UPOS of a tagger with contextual character embeddings "
                             "(bench_char_lm.py's language models, trained or reused under "
                             "--work)")
    args = parser.parse_args(argv)
    folder = DATA / "ud_ewt"
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: this benchmark needs the shared data folder")
    X, upos, lemmas = read(folder / "train.conllu")
    X_dev, upos_dev, lemmas_dev = read(folder / "dev.conllu")
    gold = flat(lemmas_dev)
    rows, seen = baselines(X, upos, lemmas, X_dev, upos_dev)
    unseen = [(f, t) not in seen for f, t in zip(flat(X_dev), flat(upos_dev), strict=True)]

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = work / f"lemma_s{args.seed}.tagger"
    if saved.exists() and not args.retrain:
        print(f"reusing {saved}", flush=True)
        model = load(saved)
    else:
        model = Lemmatizer(random_state=args.seed, verbose=1)
        model.fit(X, lemmas, upos, X_dev=X_dev, y_dev=lemmas_dev, upos_dev=upos_dev)
        model.save(saved)
    train_minutes = sum(entry["seconds"] for entry in model.history_) / 60
    start = time.perf_counter()
    rows["Lemmatizer, gold UPOS"] = flat(model.predict(X_dev, upos_dev))
    predict_seconds = time.perf_counter() - start
    rows["... the transducer's search output alone (no choice with the form's copies)"] = \
        search_only(model, X_dev, upos_dev)
    tagger_note = ""
    if not args.no_tagger:
        path = work / f"upos_s{args.seed}.tagger"
        if path.exists():
            tagger = load(path)
        else:
            tagger = SequenceTagger(random_state=args.seed, verbose=1)
            tagger.fit(X, upos, X_dev=X_dev, y_dev=upos_dev)
            tagger.save(path)
        predicted_upos = tagger.predict(X_dev)
        upos_accuracy = accuracy(flat(predicted_upos), flat(upos_dev))
        rows["Lemmatizer, predicted UPOS"] = flat(model.predict(X_dev, predicted_upos))
        tagger_note = (f" Predicted UPOS: `SequenceTagger(random_state={args.seed})` trained on "
                       f"the same file, {upos_accuracy:.2f} dev accuracy."
                       + tag_errors(rows["Lemmatizer, gold UPOS"],
                                    rows["Lemmatizer, predicted UPOS"], gold,
                                    flat(upos_dev), flat(predicted_upos)))
        if args.jackknife:
            rows.update(jackknife_rows(model, (X, upos, lemmas, X_dev, upos_dev, lemmas_dev),
                                       predicted_upos, args.jackknife, args.seed, work))
        if args.char_lm:
            name, lm_upos = char_lm_upos(X, upos, X_dev, upos_dev, args.seed, work)
            rows[name] = flat(model.predict(X_dev, lm_upos))
            errors = tag_errors(rows["Lemmatizer, gold UPOS"], rows[name], gold,
                                flat(upos_dev), flat(lm_upos)).strip()
            if errors:
                tagger_note += f" With contextual character embeddings: {errors}"
    n_unseen = sum(unseen)
    lines = [
        "## Lemmas on UD English EWT (`benchmarks/bench_lemma.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on 2 cores: `Lemmatizer(random_state="
        f"{args.seed})` defaults, trained on `ud_ewt/train.conllu` ({len(flat(X)):,} tokens, "
        f"{len(model.pair_lemmas_):,} distinct (form, UPOS) pairs): {len(model.history_)} "
        f"epochs of its transducer, best {model.best_epoch_}, {train_minutes:.1f} minutes; "
        f"token accuracy on `dev.conllu` ({len(gold):,} tokens, of which {n_unseen:,} = "
        f"{100 * n_unseen / len(gold):.1f}% have a (form, UPOS) pair training never showed). "
        f"Lemmatizing the dev set with gold UPOS took {predict_seconds:.1f} s.{tagger_note}",
        "",
        "| method | dev accuracy | on unseen (form, UPOS) pairs |",
        "|---|---:|---:|",
        *[f"| {name} | {accuracy(pred, gold):.2f} | {accuracy(pred, gold, unseen):.2f} |"
          for name, pred in rows.items()],
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        _results.write_section("bench_lemma", body)


if __name__ == "__main__":
    main()
