"""The encoder–decoder beside a PyTorch encoder–decoder with attention of the same sizes, on the
same lemma data, in one run.

Data: the distinct (form, UPOS) pairs of UD English EWT ``train.conllu`` with their most frequent
lemma (what ``Lemmatizer`` trains its transducer on): the form's characters in, the UPOS tag as
a per-example feature, the lemma's characters out. Decoding reads the development set's
(form, UPOS) pairs that training never showed (what the lemmatizer sends to its transducer).

Both models are ``SequenceTransducer``'s defaults: character embeddings of 64, a feature
embedding of 16 joined to every source step, a bidirectional LSTM encoder of 128 units per
direction, an LSTM decoder of 128 with input feeding, its initial state from the encoder's
summary, attention ``softmax(enc . (h W))``, the attentional state ``tanh([ctx; h] W + b)``, a
linear layer to the output characters; dropout 0.3 on the encoder's input and the attentional
state; Adam at 0.002, gradients clipped to a global norm of 5, batches of 32 pairs in a random
order. The PyTorch model is written as a PyTorch user would: ``nn.LSTM`` over packed sequences
for the encoder, ``nn.LSTMCell`` stepped in Python for the decoder, and beam search over a
batch of hypotheses per word with ``torch.topk``, as this library's is.

Each library runs in a fresh process pinned to one core (1 thread): one training epoch, timed
without kernel compilation (this library's kernels come from its cache, filled by a warm-up
run first), then beam search (beam 5, no length penalty) on the unseen development pairs. The
turns alternate (ours, PyTorch, ours, PyTorch); the median of each is reported. Training speed
is in target symbols per second (each lemma's characters and its end symbol); decoding in words
per second.

PyTorch is optional: ``pip install torch==2.13.0`` installs a CPU build here.

Usage::

    python benchmarks/bench_transducer_torch.py                 # update RESULTS.md
    python benchmarks/bench_transducer_torch.py --rounds 1 --max-pairs 3000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

DATA = Path(os.environ.get("TAGGER_DATA_DIR", ROOT.parent / "shared" / "data"))

E, F, H = 64, 16, 128
DROPOUT, LEARNING_RATE, CLIP, BATCH, BEAM = 0.3, 0.002, 5.0, 32, 5


def lemma_pairs(max_pairs: int | None = None):
    """Training (forms, UPOS, lemmas) and the unseen development (forms, UPOS)."""
    from tagger.io import read_conllu

    def read(path):
        out = []
        for s in read_conllu(path):
            out.extend((c[1], c[3], c[2]) for c in s.columns)
        return out

    counts: dict[tuple, Counter] = {}
    for form, upos, lemma in read(DATA / "ud_ewt" / "train.conllu"):
        counts.setdefault((form, upos), Counter())[lemma] += 1
    train = [(form, upos, c.most_common(1)[0][0]) for (form, upos), c in counts.items()]
    unseen = list(dict.fromkeys((form, upos)
                                for form, upos, _ in read(DATA / "ud_ewt" / "dev.conllu")
                                if (form, upos) not in counts))
    if max_pairs:
        train = train[:max_pairs]
        unseen = unseen[:max(1, max_pairs // 10)]
    return train, unseen


def ours(train, unseen, threads: int) -> dict:
    from tagger import SequenceTransducer

    forms, upos, lemmas = (list(column) for column in zip(*train, strict=True))
    model = SequenceTransducer(random_state=0, max_epochs=1, early_stopping=False,
                               n_jobs=threads)
    model.fit(forms, lemmas, features=upos)
    entry = model.history_[0]
    symbols = sum(len(lemma) + 1 for lemma in lemmas)
    train_seconds = entry["seconds"] - entry.get("compile_seconds", 0.0)
    model.set_params(beam_size=BEAM)
    words = [form for form, _ in unseen]
    tags = [tag for _, tag in unseen]
    model.predict(words[:20], features=tags[:20])  # warm
    start = time.perf_counter()
    outputs = model.predict(words, features=tags)
    decode_seconds = time.perf_counter() - start
    return {"symbols_per_s": symbols / train_seconds, "train_seconds": train_seconds,
            "loss": entry["loss"], "words_per_s": len(words) / decode_seconds,
            "decode_seconds": decode_seconds,
            "outputs": sum(len(o) for o in outputs) / max(len(outputs), 1)}


def theirs(train, unseen, threads: int) -> dict:
    import numpy as np
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    chars = {c: i + 2 for i, c in enumerate(sorted({c for f, _, _ in train for c in f}))}
    out_chars = {c: i + 2 for i, c in enumerate(sorted({c for _, _, lemma in train
                                                        for c in lemma}))}
    tags = {t: i + 2 for i, t in enumerate(sorted({t for _, t, _ in train}))}
    BOS, EOS = 0, 1
    V_in, V_out, V_tag = len(chars) + 2, len(out_chars) + 2, len(tags) + 2

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.src = nn.Embedding(V_in, E)
            self.tag = nn.Embedding(V_tag, F)
            self.enc = nn.LSTM(E + F, H, batch_first=True, bidirectional=True)
            self.init = nn.Linear(2 * H, H)
            self.tgt = nn.Embedding(V_out, E)
            self.cell = nn.LSTMCell(E + H, H)
            self.att = nn.Linear(H, 2 * H, bias=False)
            self.comb = nn.Linear(3 * H, H)
            self.out = nn.Linear(H, V_out)
            self.drop = nn.Dropout(DROPOUT)

        def encode(self, src, lengths, tag):
            x = torch.cat([self.src(src), self.tag(tag)[:, None, :].expand(-1, src.shape[1],
                                                                            -1)], dim=2)
            packed = pack_padded_sequence(self.drop(x), lengths, batch_first=True,
                                          enforce_sorted=False)
            enc, (h_n, _) = self.enc(packed)
            enc, _ = pad_packed_sequence(enc, batch_first=True)
            mask = torch.arange(enc.shape[1])[None, :] < lengths[:, None]
            h0 = torch.tanh(self.init(torch.cat([h_n[0], h_n[1]], dim=1)))
            return enc, mask, h0

        def step(self, enc, mask, y, a, h, c):
            h, c = self.cell(torch.cat([self.tgt(y), a], dim=1), (h, c))
            scores = torch.bmm(enc, self.att(h)[:, :, None])[:, :, 0]
            alpha = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            ctx = torch.bmm(alpha[:, None, :], enc)[:, 0]
            a = torch.tanh(self.comb(torch.cat([ctx, h], dim=1)))
            return a, h, c

        def loss(self, src, lengths, tag, tgt_in, tgt_out, tgt_mask):
            enc, mask, h = self.encode(src, lengths, tag)
            c = torch.zeros_like(h)
            a = torch.zeros_like(h)
            logits = []
            for t in range(tgt_in.shape[1]):
                a, h, c = self.step(enc, mask, tgt_in[:, t], a, h, c)
                logits.append(self.out(self.drop(a)))
            logits = torch.stack(logits, dim=1)
            losses = nn.functional.cross_entropy(logits.reshape(-1, V_out),
                                                 tgt_out.reshape(-1), reduction="none")
            return (losses * tgt_mask.reshape(-1)).sum() / tgt_mask.sum()

    def pad(rows, width=None):
        width = width or max(len(r) for r in rows)
        out = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return torch.from_numpy(out)

    model = Seq2Seq()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    symbols = 0
    losses = []
    model.train()
    start = time.perf_counter()
    for k in range(0, len(order), BATCH):
        batch = [train[i] for i in order[k:k + BATCH]]
        src = pad([[chars[c] for c in f] for f, _, _ in batch])
        lengths = torch.tensor([len(f) for f, _, _ in batch])
        tag = torch.tensor([tags[t] for _, t, _ in batch])
        targets = [[out_chars[c] for c in lemma] for _, _, lemma in batch]
        tgt_in = pad([[BOS] + t for t in targets])
        tgt_out = pad([t + [EOS] for t in targets])
        tgt_mask = (torch.arange(tgt_in.shape[1])[None, :]
                    < torch.tensor([len(t) + 1 for t in targets])[:, None]).float()
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(src, lengths, tag, tgt_in, tgt_out, tgt_mask)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        symbols += int(tgt_mask.sum())
        losses.append(float(loss))
    train_seconds = time.perf_counter() - start

    limit = 2 * max(len(lemma) for _, _, lemma in train) + 10

    @torch.no_grad()
    def beam_search(form, tag):
        src = torch.tensor([[chars.get(c, 1) for c in form]])
        enc, mask, h = model.encode(src, torch.tensor([len(form)]),
                                    torch.tensor([tags.get(tag, 1)]))
        c = torch.zeros_like(h)
        a = torch.zeros_like(h)
        live = [([], 0.0)]
        y = torch.tensor([BOS])
        finished = []
        for _ in range(limit):
            m = len(live)
            a, h, c = model.step(enc.expand(m, -1, -1), mask.expand(m, -1), y, a, h, c)
            logp = torch.log_softmax(model.out(a), dim=1)
            totals = torch.tensor([s for _, s in live])[:, None] + logp
            scores, best = torch.topk(totals.reshape(-1), min(BEAM, totals.numel()))
            rows, keep, new_live = [], [], []
            for score, index in zip(scores.tolist(), best.tolist(), strict=True):
                row, symbol = divmod(index, V_out)
                if symbol == EOS:
                    finished.append((live[row][0], score))
                else:
                    new_live.append((live[row][0] + [symbol], score))
                    rows.append(row)
                    keep.append(symbol)
            if len(finished) >= BEAM or not new_live:
                break
            live = new_live
            index = torch.tensor(rows)
            a, h, c = a[index], h[index], c[index]
            y = torch.tensor(keep)
        best = max(finished or live, key=lambda r: r[1])
        return best[0]

    model.eval()
    for form, tag in unseen[:20]:  # warm
        beam_search(form, tag)
    start = time.perf_counter()
    outputs = [beam_search(form, tag) for form, tag in unseen]
    decode_seconds = time.perf_counter() - start
    return {"symbols_per_s": symbols / train_seconds, "train_seconds": train_seconds,
            "loss": float(np.mean(losses)), "words_per_s": len(unseen) / decode_seconds,
            "decode_seconds": decode_seconds,
            "outputs": sum(len(o) for o in outputs) / max(len(outputs), 1)}


def _child(library: str, threads: int, max_pairs: int | None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", library, "--threads",
               str(threads)] + (["--max-pairs", str(max_pairs)] if max_pairs else [])
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if threads == 1 and cores and Path("/usr/bin/taskset").exists():
        command = ["taskset", "-c", str(cores[-1])] + command
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the {library} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=("ours", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-pairs", type=int, default=None,
                        help="train on the first N pairs only (a quick check)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not (DATA / "ud_ewt").is_dir():
        sys.exit(f"{DATA / 'ud_ewt'} is missing: this benchmark needs the shared data folder")
    if args.child:
        train, unseen = lemma_pairs(args.max_pairs)
        run = ours if args.child == "ours" else theirs
        print(json.dumps(run(train, unseen, args.threads)), flush=True)
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not installed (pip install torch==2.13.0)")
    train, unseen = lemma_pairs(args.max_pairs)
    _child("ours", args.threads, 300)  # fills the kernel cache: compiling is not timed
    runs: dict[str, list[dict]] = {"ours": [], "torch": []}
    for round_ in range(args.rounds):
        for library in ("ours", "torch"):
            runs[library].append(_child(library, args.threads, args.max_pairs))
            r = runs[library][-1]
            print(f"round {round_ + 1} {library}: {r['symbols_per_s']:,.0f} symbols/s "
                  f"(loss {r['loss']:.3f}), beam {BEAM}: {r['words_per_s']:,.1f} words/s",
                  file=sys.stderr, flush=True)
    med = {lib: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
           for lib, rs in runs.items()}
    train_ratio = med["ours"]["symbols_per_s"] / med["torch"]["symbols_per_s"]
    decode_ratio = med["ours"]["words_per_s"] / med["torch"]["words_per_s"]
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    import torch

    lines = [
        "## Encoder–decoder beside PyTorch (`benchmarks/bench_transducer_torch.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu}, {args.threads} thread(s) pinned to one "
        f"core; PyTorch {torch.__version__}. Both models at `SequenceTransducer`'s default sizes "
        f"(embeddings 64, feature 16, BiLSTM encoder 128 per direction, LSTM decoder 128 with "
        f"input feeding and attention, dropout 0.3, Adam, batches of 32), one epoch on the "
        f"{len(train):,} distinct (form, UPOS) → lemma pairs of UD EWT train, then beam search "
        f"(beam {BEAM}) on the {len(unseen):,} unseen (form, UPOS) pairs of dev. Medians of "
        f"{args.rounds} alternating runs.",
        "",
        "| | tagger | PyTorch | ratio |",
        "|---|---:|---:|---:|",
        f"| training, target symbols/s | {med['ours']['symbols_per_s']:,.0f} | "
        f"{med['torch']['symbols_per_s']:,.0f} | **{train_ratio:.2f}×** |",
        f"| training loss after the epoch | {med['ours']['loss']:.3f} | "
        f"{med['torch']['loss']:.3f} | |",
        f"| beam-{BEAM} decoding, words/s | {med['ours']['words_per_s']:,.1f} | "
        f"{med['torch']['words_per_s']:,.1f} | **{decode_ratio:.2f}×** |",
        f"| mean output length (symbols) | {med['ours']['outputs']:.2f} | "
        f"{med['torch']['outputs']:.2f} | |",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_transducer_torch", body)


if __name__ == "__main__":
    main()
