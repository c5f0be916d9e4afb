"""The whole SequenceTagger beside a plain PyTorch BiLSTM-CRF of exactly the same sizes, one core.

Both: word embeddings 100 + character CNN (characters 25, 50 filters of width 3, max over the
word) + BiLSTM 128 per direction + linear-chain CRF; dropout 0.5; Adam 2e-3; batch 32; gradient
norm clipped at 5. The PyTorch tagger is written here for the comparison: packed sequences for
the LSTM, a vectorised CRF forward algorithm for the loss and a vectorised Viterbi. Data: the
first 2,000 sentences of UD English EWT's training set (UPOS tags) for training tokens/s, its dev
set for prediction tokens/s. One thread each, in one run, with ``OPENBLAS_CORETYPE`` unset.

Usage (PyTorch optional: ``pip install torch==2.13.0``)::

    env -u OPENBLAS_CORETYPE taskset -c 1 python benchmarks/bench_end_to_end.py
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
sys.path.insert(0, str(HERE))

EPOCHS = 2


def read_ud(path: Path, limit: int | None = None):
    from tagger.io import read_conllu

    X, y = [], []
    for sentence in read_conllu(path):
        X.append(sentence.tokens)
        y.append(sentence.tags)
        if limit and len(X) >= limit:
            break
    return X, y


def ours(X, y, X_dev, y_dev, n_jobs: int | None = 1) -> tuple[float, float, float]:
    """(training tokens/s, prediction tokens/s, dev token accuracy) of SequenceTagger on
    ``n_jobs`` threads (None: all cores)."""
    from tagger import SequenceTagger

    model = SequenceTagger(word_dim=100, char_encoder="cnn", char_dim=25, char_hidden_size=50,
                           hidden_size=128, shape_dim=0, batch_size=32, max_epochs=1,
                           early_stopping=False, word_dropout=0.0, n_jobs=n_jobs,
                           random_state=0, device="cpu")
    model.fit(X[:64], y[:64])  # compile or load the kernels outside the timing
    model.set_params(max_epochs=EPOCHS)
    model.fit(X, y)
    tokens = sum(len(s) for s in X)
    train = tokens * EPOCHS / sum(h["seconds"] for h in model.history_)
    model.predict(X_dev[:32])
    start = time.perf_counter()
    predicted = model.predict(X_dev)
    predict = sum(len(s) for s in X_dev) / (time.perf_counter() - start)
    from tagger.metrics import token_accuracy

    return train, predict, token_accuracy(y_dev, predicted)


def theirs(X, y, X_dev, y_dev) -> tuple[float, float, float] | None:
    """(training tokens/s, prediction tokens/s, dev token accuracy) of the plain PyTorch
    BiLSTM-CRF."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    words = {w: i + 2 for i, w in enumerate(sorted({t.lower() for s in X for t in s}))}
    chars = {c: i + 2 for i, c in enumerate(sorted({c for s in X for t in s for c in t}))}
    tags = {t: i for i, t in enumerate(sorted({t for s in y for t in s}))}
    K = len(tags)

    def encode(batch, batch_tags=None):
        B, T = len(batch), max(len(s) for s in batch)
        L = max(len(t) for s in batch for t in s)
        w = torch.zeros(B, T, dtype=torch.long)
        c = torch.zeros(B, T, min(L, 30), dtype=torch.long)
        g = torch.zeros(B, T, dtype=torch.long)
        for b, sentence in enumerate(batch):
            for t, token in enumerate(sentence):
                w[b, t] = words.get(token.lower(), 1)
                for k, ch in enumerate(token[:30]):
                    c[b, t, k] = chars.get(ch, 1)
                if batch_tags is not None:
                    g[b, t] = tags[batch_tags[b][t]]
        lengths = torch.tensor([len(s) for s in batch])
        mask = torch.arange(T)[None, :] < lengths[:, None]
        return w, c, g, lengths, mask

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(len(words) + 2, 100, padding_idx=0)
            self.char = nn.Embedding(len(chars) + 2, 25, padding_idx=0)
            self.conv = nn.Conv1d(25, 50, 3, padding=1)
            self.lstm = nn.LSTM(150, 128, bidirectional=True, batch_first=True)
            self.drop = nn.Dropout(0.5)
            self.out = nn.Linear(256, K)
            self.start = nn.Parameter(torch.zeros(K))
            self.end = nn.Parameter(torch.zeros(K))
            self.trans = nn.Parameter(torch.zeros(K, K))

        def emissions(self, w, c, lengths):
            B, T, Lc = c.shape
            ce = self.char(c.view(B * T, Lc)).transpose(1, 2)
            cf = self.conv(ce).max(dim=2).values.view(B, T, 50)
            x = self.drop(torch.cat([self.word(w), cf], dim=2))
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                       enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=T)
            return self.out(self.drop(h))

        def nll(self, em, g, mask):
            B, T, _ = em.shape
            alpha = self.start + em[:, 0]
            for t in range(1, T):
                nxt = torch.logsumexp(alpha[:, :, None] + self.trans[None], dim=1) + em[:, t]
                alpha = torch.where(mask[:, t, None], nxt, alpha)
            log_z = torch.logsumexp(alpha + self.end, dim=1)
            score = self.start[g[:, 0]] + em[:, 0].gather(1, g[:, :1]).squeeze(1)
            for t in range(1, T):
                step = self.trans[g[:, t - 1], g[:, t]] + em[:, t].gather(1, g[:, t:t + 1]
                                                                           ).squeeze(1)
                score = score + step * mask[:, t]
            last = g.gather(1, (mask.sum(1) - 1)[:, None]).squeeze(1)
            return (log_z - score - self.end[last]).mean()

        def viterbi(self, em, mask):
            B, T, _ = em.shape
            delta = self.start + em[:, 0]
            back = []
            for t in range(1, T):
                scores, idx = (delta[:, :, None] + self.trans[None]).max(dim=1)
                nxt = scores + em[:, t]
                back.append(torch.where(mask[:, t, None], idx,
                                        torch.arange(K)[None, :].expand(B, K)))
                delta = torch.where(mask[:, t, None], nxt, delta)
            best = (delta + self.end).argmax(dim=1)
            path = [best]
            for idx in reversed(back):
                best = idx.gather(1, best[:, None]).squeeze(1)
                path.append(best)
            return torch.stack(path[::-1], dim=1)

    model = Tagger()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    order = np.argsort([-len(s) for s in X], kind="stable")
    batches = [order[i:i + 32] for i in range(0, len(order), 32)]
    tokens = sum(len(s) for s in X)
    model.train()
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for idx in np.random.default_rng(0).permutation(len(batches)):
            batch = batches[idx]
            w, c, g, lengths, mask = encode([X[i] for i in batch], [y[i] for i in batch])
            optimizer.zero_grad()
            loss = model.nll(model.emissions(w, c, lengths), g, mask)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
    train = tokens * EPOCHS / (time.perf_counter() - start)
    model.eval()
    dev_order = np.argsort([-len(s) for s in X_dev], kind="stable")
    start = time.perf_counter()
    paths = []
    with torch.no_grad():
        for i in range(0, len(dev_order), 256):
            batch = [X_dev[j] for j in dev_order[i:i + 256]]
            w, c, _, lengths, mask = encode(batch)
            paths.append(model.viterbi(model.emissions(w, c, lengths), mask))
    predict = sum(len(s) for s in X_dev) / (time.perf_counter() - start)
    names = sorted(tags)
    correct = total = 0
    for i, path in zip(range(0, len(dev_order), 256), paths, strict=True):
        for row, j in enumerate(dev_order[i:i + 256]):
            gold = y_dev[j]
            correct += sum(names[k] == g for k, g in zip(path[row].tolist(), gold, strict=False))
            total += len(gold)
    return train, predict, correct / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    X, y = read_ud(args.data / "ud_ewt" / "train.conllu", args.sentences)
    X_dev, y_dev = read_ud(args.data / "ud_ewt" / "dev.conllu")
    our_train, our_predict, our_accuracy = ours(X, y, X_dev, y_dev)
    torch_rates = theirs(X, y, X_dev, y_dev)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    all_cores = ours(X, y, X_dev, y_dev, n_jobs=None) if (cores or 1) >= 2 else None
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    lines = [
        "## The whole tagger beside a plain PyTorch BiLSTM-CRF (`benchmarks/bench_end_to_end.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, one thread each, `OPENBLAS_CORETYPE` {coretype}: "
        f"word 100 + character CNN (25, 50 filters) + BiLSTM 128 + CRF, Adam, batch 32; "
        f"{len(X):,} UD EWT training sentences ({sum(map(len, X)):,} tokens, {EPOCHS} epochs) "
        f"and the dev set ({sum(map(len, X_dev)):,} tokens) for prediction.",
        "",
        "| | training tokens/s | prediction tokens/s | dev token accuracy (sanity check) |",
        "|---|---:|---:|---:|",
        f"| SequenceTagger | {our_train:,.0f} | {our_predict:,.0f} | "
        f"{100 * our_accuracy:.1f} |",
    ]
    if torch_rates is not None:
        lines.append(f"| plain PyTorch BiLSTM-CRF | {torch_rates[0]:,.0f} | "
                     f"{torch_rates[1]:,.0f} | {100 * torch_rates[2]:.1f} |")
        lines.append(f"| ratio | {our_train / torch_rates[0]:.2f}× | "
                     f"{our_predict / torch_rates[1]:.2f}× | |")
    if all_cores is not None:
        lines += ["", f"The same SequenceTagger on all {cores} cores (`n_jobs=None`): "
                      f"training {all_cores[0]:,.0f} tokens/s ({all_cores[0] / our_train:.2f}× "
                      f"one thread), prediction {all_cores[1]:,.0f} tokens/s "
                      f"({all_cores[1] / our_predict:.2f}×)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_end_to_end", body)


if __name__ == "__main__":
    main()
