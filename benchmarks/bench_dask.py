"""Throughput of batch tagging: one process (``tagger.stream``) against Dask with 1 and 2 worker
processes on this machine (``tagger.distributed.tag_bag`` on a ``local_cluster``).

A BiLSTM-CRF with character CNN is trained for a few epochs on the sample corpus; the corpus to
tag is its sentences repeated. Each Dask figure is the second of two runs on a started cluster
(the first loads and warms the model on every worker). Usage::

    python benchmarks/bench_dask.py                # measure, print, update RESULTS.md
    python benchmarks/bench_dask.py --sentences 20000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=30_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import dask.bag as db
    from distributed import Client

    from tagger import SequenceTagger
    from tagger.distributed import local_cluster, tag_bag
    from tagger.io import read_conll
    from tagger.stream import tag_stream

    train = list(read_conll(ROOT / "data" / "sample-ner" / "train.conll"))
    model = SequenceTagger(max_epochs=3, random_state=0, hidden_size=128)
    model.fit([s.tokens for s in train], [s.tags for s in train])
    sentences = [s.tokens for s in train]
    corpus = (sentences * (args.sentences // len(sentences) + 1))[: args.sentences]
    tokens = sum(len(s) for s in corpus)
    path = Path(tempfile.mkdtemp()) / "ner.tagger"
    model.save(path)
    rows = []
    start = time.perf_counter()
    n = sum(1 for _ in tag_stream(model, corpus))
    rows.append(("one process (`tag_stream`), all cores", time.perf_counter() - start))
    assert n == len(corpus)
    for workers in (1, 2):
        cluster = local_cluster(workers, dashboard_address=None)
        with Client(cluster):
            bag = db.from_sequence(corpus, npartitions=8 * workers)
            tag_bag(path, bag).compute()  # load and warm the model on every worker
            start = time.perf_counter()
            results = tag_bag(path, bag).compute()
            rows.append((f"Dask `tag_bag`, {workers} worker process(es)",
                         time.perf_counter() - start))
            assert len(results) == len(corpus)
        cluster.close()
    lines = [
        "## Distributed batch tagging (`benchmarks/bench_dask.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} logical cores: "
        f"{len(corpus):,} sentences ({tokens:,} tokens) of the sample corpus, a BiLSTM-CRF "
        "(hidden 128, character CNN); Dask figures on a started local cluster with the model "
        "already loaded on the workers.",
        "",
        "| engine | seconds | tokens/s |",
        "|---|---:|---:|",
        *[f"| {name} | {seconds:.2f} | {tokens / seconds:,.0f} |" for name, seconds in rows],
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_dask", body)


if __name__ == "__main__":
    main()
