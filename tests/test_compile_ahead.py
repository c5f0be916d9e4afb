"""Compile locks between processes and the process that compiles ahead of a training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tagger.kernels import _jit, ahead

ROOT = Path(__file__).resolve().parents[1]
POSIX_FORK = sys.platform == "linux"

# A kernel that takes about a second to compile, called once by each of two processes started
# together: each reports how many times it compiled the kernel (0 when it loaded it).
_RACER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from numba.core import event
    from tagger.kernels import crf_cpu

    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            dispatcher = (ev.data or {}).get("dispatcher")
            if getattr(dispatcher, "py_func", None) is crf_cpu.viterbi_decode_serial.py_func:
                compiled.append(1)

    event.register("numba:compile", Listener())
    flag = sys.argv[1]
    while not os.path.exists(flag):  # start together
        time.sleep(0.001)
    K = 3
    em = np.zeros((2, 4, K), np.float32)
    lengths = np.array([4, 2])
    args = (em, lengths, np.zeros(K, np.float32), np.zeros(K, np.float32),
            np.zeros((K, K), np.float32), np.ones(K, np.bool_), np.ones(K, np.bool_),
            np.ones((K, K), np.bool_), np.zeros((2, 4), np.int64), np.zeros(2, np.float32))
    crf_cpu.viterbi_decode_serial(*args)
    print(json.dumps({"compiled": len(compiled)}))
""")


@pytest.mark.skipif(not POSIX_FORK, reason="POSIX file locks")
def test_two_processes_compile_a_kernel_once(tmp_path):
    env = dict(os.environ, TAGGER_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    flag = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(flag)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    flag.write_text("")
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    compiled = [json.loads(out.strip().splitlines()[-1])["compiled"] for out, _ in outputs]
    assert sorted(compiled) == [0, 1]  # one compiled it, the other waited and loaded it


@pytest.mark.skipif(not POSIX_FORK, reason="POSIX file locks")
def test_a_failed_compilation_lets_its_lock_go(tmp_path, monkeypatch):
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path))

    def broken(x):
        return x.no_such_attribute

    dispatcher = _jit.kernel()(broken)
    with pytest.raises(Exception, match="no_such_attribute"):
        dispatcher(np.zeros(2))
    assert _jit._HELD.stack == []
    locks = list(tmp_path.rglob("*.lock"))
    assert locks, "the miss took a lock"
    import fcntl

    for path in locks:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no BlockingIOError
        finally:
            os.close(fd)


def test_recording_runs_no_kernel_and_restores_the_dispatcher(tmp_path, monkeypatch):
    from numba.core.dispatcher import Dispatcher

    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path))

    def fill(out, value):
        for i in range(out.shape[0]):
            out[i] = value

    dispatcher = _jit.kernel()(fill)
    out = np.zeros(3)
    original = Dispatcher._compile_for_args
    calls = ahead._record_calls(lambda: (dispatcher(out, 2.0), dispatcher(out, 3.0),
                                         dispatcher(out[:2].astype(np.float32), 1.0)))
    assert Dispatcher._compile_for_args is original
    assert (out == 0).all()  # recorded, not run
    assert not dispatcher.overloads  # nor compiled
    assert [types for _, types in calls] == [
        (dispatcher.typeof_pyval(out), dispatcher.typeof_pyval(2.0)),
        (dispatcher.typeof_pyval(out[:2].astype(np.float32)), dispatcher.typeof_pyval(1.0))]
    dispatcher(out, 4.0)  # afterwards kernels compile and run as usual
    assert (out == 4.0).all()


def test_recording_keeps_what_came_before_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path))

    def first(out):
        out[0] = 1.0

    dispatcher = _jit.kernel()(first)

    def rehearse():
        dispatcher(np.zeros(1))
        raise IndexError("the rehearsal reads a result that was never computed")

    assert len(ahead._record_calls(rehearse)) == 1


def test_not_wanted_when_switched_off_or_with_a_used_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(_jit, "CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TAGGER_COMPILE_AHEAD", "0")
    assert not ahead.wanted()
    assert ahead.start(lambda: None) is None
    monkeypatch.delenv("TAGGER_COMPILE_AHEAD")
    for i in range(ahead._NEW_CACHE_ENTRIES):
        (tmp_path / f"k{i}.nbi").write_text("")
    assert not ahead.wanted()
    monkeypatch.setattr(_jit, "CACHE_DIR", None)
    monkeypatch.setenv("TAGGER_COMPILE_AHEAD", "1")
    assert not ahead.wanted()  # no on-disk cache: nothing to share


@pytest.mark.skipif(not POSIX_FORK, reason="fork")
def test_training_with_compiling_ahead_gives_the_same_model(tmp_path):
    """On a new cache with compiling ahead forced on, and with it off: the same weights and
    history, and no process left behind."""
    code = textwrap.dedent("""
        import json, os, sys
        import numpy as np
        import tagger
        from tagger.io import read_conll
        sentences = list(read_conll("data/sample-ner/train.conll"))[:60]
        X = [list(s.tokens) for s in sentences]
        y = [list(s.tags) for s in sentences]
        model = tagger.SequenceTagger(hidden_size=16, word_dim=16, char_dim=8,
                                      char_hidden_size=8, max_epochs=2, random_state=0)
        model.fit(X[:50], y[:50], X_dev=X[50:], y_dev=y[50:])
        total = float(sum(np.abs(v).sum() for v in model.params_.values()))
        try:
            os.waitpid(-1, os.WNOHANG)
            children = 1  # a child process is left (running or not reaped)
        except ChildProcessError:
            children = 0
        print(json.dumps({"total": total, "dev": [h["dev_score"] for h in model.history_],
                          "children": children}))
    """)
    results = {}
    for mode in ("1", "0"):
        env = dict(os.environ, TAGGER_CACHE_DIR=str(tmp_path / f"cache{mode}"),
                   TAGGER_COMPILE_AHEAD=mode, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["1"]["total"] == results["0"]["total"]
    assert results["1"]["dev"] == results["0"]["dev"]
    assert results["1"]["children"] == 0  # the compiling process was reaped
