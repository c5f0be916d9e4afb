"""Batch tagging on Dask: a LocalCluster of two spawned worker processes gives the single-process
results in order, loads the model once per worker, survives the loss of a worker or of all of
them mid-job, and writes output folders that only ever hold whole outputs."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

dask_bag = pytest.importorskip("dask.bag")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

from test_tagger import SMALL, ner_data  # noqa: E402

from tagger import SequenceTagger  # noqa: E402
from tagger.distributed import local_cluster, tag_bag, tag_dataframe  # noqa: E402
from tagger.stream import tag_stream  # noqa: E402
from tagger.workflows import READ_AHEAD  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    X, y = ner_data(60)
    path = tmp_path_factory.mktemp("dask") / "ner.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=3)).fit(X, y).save(path)
    return path


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def same(results, expected):
    """Tags and spans exactly equal; span scores equal up to float32 rounding (batches are cut
    at other places in partitions than in one stream, which changes the last bits)."""
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        assert got["tokens"] == want["tokens"] and got["tags"] == want["tags"]
        assert [(s["start"], s["end"], s["label"]) for s in got["spans"]] == [
            (s["start"], s["end"], s["label"]) for s in want["spans"]]
        assert [s["score"] for s in got["spans"]] == pytest.approx(
            [s["score"] for s in want["spans"]], abs=1e-5)
    return True


def corpus(n=3000):
    X, _ = ner_data(n, seed=7)
    return X


def test_bag_results_equal_one_process_in_order(client, model_file):
    from tagger import load

    X = corpus()
    expected = list(tag_stream(load(model_file), X))
    results = tag_bag(model_file, dask_bag.from_sequence(X, npartitions=12)).compute()
    assert same(results, expected)
    again = tag_bag(model_file, dask_bag.from_sequence(X[:500], npartitions=6)).compute()
    assert same(again, expected[:500])  # a second job: the workers reuse their loaded model
    # Partitions cut at multiples of a stream's read (batch size x READ_AHEAD) batch exactly
    # as one stream does: then the results are the single-process ones bit for bit, scores
    # included.
    aligned = tag_bag(model_file, dask_bag.from_sequence(X, partition_size=64 * READ_AHEAD),
                      batch_size=64).compute()
    assert aligned == list(tag_stream(load(model_file), X, batch_size=64))
    # every worker loaded (and warmed) the model once, whatever the number of partitions
    loaded = client.run(lambda: len(__import__("tagger.distributed").distributed._models))
    assert sorted(loaded.values()) == [1, 1]
    pids = set(client.run(os.getpid).values())
    assert os.getpid() not in pids  # worker processes, not threads of this one
    threads = client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    assert set(threads.values()) == {max(1, (os.cpu_count() or 1) // 2)}  # cores / workers


def test_dataframe_column(client, model_file):
    from tagger import load

    texts = [" ".join(s) for s in corpus(200)]
    import dask.dataframe as dd

    frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=4)
    out = tag_dataframe(model_file, frame, "text").compute()
    assert list(out["text"]) == texts
    expected = list(tag_stream(load(model_file), texts))
    assert same(list(out["tagged"]), expected)


def test_a_worker_killed_mid_job_loses_nothing(client, model_file):
    from tagger import load

    X = corpus(6000)
    future = client.compute(tag_bag(model_file, dask_bag.from_sequence(X, npartitions=60),
                                    batch_size=16))
    while not client.processing() or not any(client.processing().values()):
        time.sleep(0.05)  # wait until the workers are busy with it
    time.sleep(0.3)
    victim = next(iter(client.run(os.getpid).values()))
    assert not future.done()  # the kill lands in the middle of the job
    os.kill(victim, signal.SIGKILL)
    results = future.result(timeout=240)
    assert victim not in set(client.run(os.getpid).values())
    assert len(results) == len(X)
    assert same(results, list(tag_stream(load(model_file), X)))  # each record once, in order


def test_the_job_survives_the_loss_of_every_worker(client, model_file):
    """The model's bytes are a task of the graph, not data scattered to the workers: when every
    worker that held them dies, the scheduler recomputes them for the restarted workers."""
    from tagger import load

    X = corpus(6000)
    expected = list(tag_stream(load(model_file), X))
    client.wait_for_workers(2)
    future = client.compute(tag_bag(model_file, dask_bag.from_sequence(X, npartitions=60),
                                    batch_size=16))
    while not client.processing() or not any(client.processing().values()):
        time.sleep(0.05)  # wait until the workers are busy with it
    time.sleep(0.3)
    victims = set(client.run(os.getpid).values())
    assert len(victims) == 2 and not future.done()  # the kill lands in the middle of the job
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    results = future.result(timeout=120)
    assert len(results) == len(X)
    assert same(results, expected)  # every record once, in order
    client.wait_for_workers(2)
    assert victims.isdisjoint(client.run(os.getpid).values())


def test_an_output_folder_only_ever_holds_whole_outputs(client, model_file, tmp_path):
    from tagger.distributed import tag_files

    corpus_dir, out = tmp_path / "corpus", tmp_path / "out"
    corpus_dir.mkdir()
    for k in range(4):
        (corpus_dir / f"part{k}.txt").write_text(
            "".join(" ".join(s) + "\n" for s in corpus(1500)) * 2)
    out.mkdir()
    stale = out / ".part0.conll.0123abcd.tmp"  # as a worker killed while writing leaves it
    stale.write_text("partial")
    seen: set[str] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(os.listdir(out))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = tag_files(str(model_file), [str(corpus_dir)], out, client)
    finally:
        done.set()
        watcher.join()
    targets = {f"part{k}.conll" for k in range(4)}
    assert {Path(r["target"]).name for r in results} == targets
    assert {r["records"] for r in results} == {3000}
    # `cat out/*` never sees a temporary: those are hidden, and gone when the job ends
    assert {name for name in seen if not name.startswith(".")} <= targets
    assert sorted(os.listdir(out)) == sorted(targets)


def test_predict_command_on_a_local_dask_cluster(model_file, tmp_path):
    from typer.testing import CliRunner

    from tagger import load
    from tagger.cli import app
    from tagger.workflows import predict_files

    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    X = corpus(300)
    for k in range(3):
        (corpus_dir / f"part{k}.txt").write_text(
            "".join(" ".join(s) + "\n" for s in X[k * 100:(k + 1) * 100]))
    (corpus_dir / "bad.jsonl").write_text('{"tokens": ["Anna"]}\n{"tokens": [\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(model_file), str(corpus_dir / "*.txt"),
                                      str(corpus_dir / "bad.jsonl"), "--engine", "dask",
                                      "--workers", "2", "--output-dir", str(out),
                                      "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 file(s), 301 record(s)" in result.output and "bad.jsonl:2" in result.output
    model = load(model_file)
    for k in range(3):
        import io

        expected = io.StringIO()
        predict_files(model, [str(corpus_dir / f"part{k}.txt")], expected)
        assert (out / f"part{k}.conll").read_text() == expected.getvalue()
    assert not list(out.glob("*.tmp"))
    result = CliRunner().invoke(app, ["predict", str(model_file), str(corpus_dir / "*.txt"),
                                      "--engine", "dask"])
    assert result.exit_code == 2 and "--output-dir" in result.output


def test_a_tagger_with_contextual_character_embeddings(client, tmp_path):
    """The language models travel inside the tagger's model file: workers give the
    single-process results."""
    from tagger import CharLanguageModel, load

    text = [" ".join(s) for s in corpus(200)]
    lms = [CharLanguageModel(hidden_size=8, embedding_dim=4, bptt=20, batch_size=4, max_epochs=1,
                             direction=direction, random_state=0).fit(text)
           for direction in ("forward", "backward")]
    X, y = ner_data(60)
    path = tmp_path / "context.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=1, char_lm=tuple(lms))).fit(X, y).save(path)
    X = corpus(300)
    expected = list(tag_stream(load(path), X))
    results = tag_bag(path, dask_bag.from_sequence(X, npartitions=3)).compute()
    assert same(results, expected)
