"""End-to-end tagging throughput of a trained BiLSTM-CRF tagger (word embeddings, character CNN,
BiLSTM 128, CRF, decoding) on 10^4, 10^5 and 10^6 tokens: through the Python streaming API and
through ``tagger predict`` on a file, with the peak resident memory of each run, to show how the
cost grows with the input (it should not: prediction streams).

Each size runs in fresh processes (so peak memory is that run's own), several for the small
sizes (their median is reported). Usage::

    python benchmarks/bench_tagging.py             # measure, print, update RESULTS.md
    python benchmarks/bench_tagging.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def _corpus(path: Path, tokens: int) -> int:
    """Write sentences of the sample corpus, repeated, as raw text lines: ``tokens`` tokens."""
    from tagger.io import read_conll

    sentences = [s.tokens for s in read_conll(ROOT / "data" / "sample-ner" / "train.conll")]
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < tokens:
            for sentence in sentences:
                out.write(" ".join(sentence) + "\n")
                written += len(sentence)
                if written >= tokens:
                    break
    return written


def _child_api(model: str, corpus: str) -> None:
    """Tag the corpus through tag_stream in this process; print seconds and peak memory."""
    from tagger import load
    from tagger.stream import tag_stream
    from tagger.workflows import warm_up

    tagger_model = load(model)
    warm_up(tagger_model)  # kernels loaded outside the timing, as `tagger predict` does
    start = time.perf_counter()
    tokens = 0
    with open(corpus, encoding="utf-8") as lines:
        for result in tag_stream(tagger_model, lines):
            tokens += len(result["tokens"])
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens": tokens, "seconds": seconds, "peak_mb": peak_mb}))


def _tagger_command() -> list[str]:
    found = shutil.which("tagger")
    return [found] if found else [sys.executable, "-m", "tagger.cli"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--max-runs", type=int, default=5,
                        help="fresh processes per size at most (their median is reported)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        _child_api(*args.child)
        return
    from tagger import SequenceTagger
    from tagger.io import read_conll

    work = Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    train = list(read_conll(ROOT / "data" / "sample-ner" / "train.conll"))
    model = SequenceTagger(hidden_size=128, char_encoder="cnn", char_dim=25, char_hidden_size=50,
                           max_epochs=3, random_state=0)
    model.fit([s.tokens for s in train], [s.tags for s in train])
    model_path = work / "ner.tagger"
    model.save(model_path)
    # As on a user's machine: OpenBLAS picks its kernels for this CPU (see bench_vs_torch.py).
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["PYTHONPATH"] = str(ROOT)
    rows = []
    for size in args.sizes:
        corpus = work / f"corpus-{size}.txt"
        tokens = _corpus(corpus, size)
        # A run over 10^4 tokens lasts well under 0.1 s, where one hiccup of this shared
        # machine halves the rate: small sizes take the median of several fresh processes.
        runs = max(1, min(args.max_runs, 1_000_000 // max(tokens, 1)))
        api_rates, api_peaks, cli_rates, whole_rates, cli_peaks = [], [], [], [], []
        for _ in range(runs):
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                                  str(model_path), str(corpus)], env=env, capture_output=True,
                                 text=True, check=True)
            api = json.loads(out.stdout.strip().splitlines()[-1])
            api_rates.append(api["tokens"] / api["seconds"])
            api_peaks.append(api["peak_mb"])
            timer = work / "time.txt"
            start = time.perf_counter()
            done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(timer),
                                   *_tagger_command(), "predict", str(model_path), str(corpus),
                                   "-o", str(work / "out.conll")],
                                  env=env, capture_output=True, text=True, check=True)
            cli_seconds = time.perf_counter() - start
            cli_peaks.append(int(timer.read_text().split()[-1]) / 1024)
            # The command's own report: tokens, and tokens/s from its first read to its last
            # write.
            found = re.search(r": ([\d,]+) tokens in [\d.]+ s \(([\d,]+) tokens/s\)",
                              done.stderr)
            cli_tokens = int(found.group(1).replace(",", ""))
            cli_rates.append(float(found.group(2).replace(",", "")))
            whole_rates.append(cli_tokens / cli_seconds)
        rows.append((tokens, runs, statistics.median(api_rates), max(api_peaks),
                     statistics.median(cli_rates), statistics.median(whole_rates),
                     max(cli_peaks)))
        print(rows[-1], file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    lines = [
        "## End-to-end tagging throughput (`benchmarks/bench_tagging.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} logical cores, "
        "`OPENBLAS_CORETYPE` unset: a BiLSTM-CRF (word 100, character CNN 25→50, BiLSTM 128, CRF) "
        "tagging raw text lines (the command's tokenizer counts a few more tokens than the "
        "corpus's whitespace). API: `tag_stream` (spans and scores included), start-up excluded. "
        "`tagger predict` to a CoNLL file: its own report (first read to last write) and the "
        "whole command (start-up, model load, reading, writing); medians over fresh processes; "
        "peak resident memory: the largest of one process.",
        "",
        "| tokens | runs (median) | API tokens/s | API peak MB | `tagger predict` tokens/s | "
        "whole command tokens/s | `tagger predict` peak MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {t:,} | {n} | {a:,.0f} | {am:.0f} | {c:,.0f} | {w:,.0f} | {cm:.0f} |"
          for t, n, a, am, c, w, cm in rows],
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_tagging", body)


if __name__ == "__main__":
    main()
