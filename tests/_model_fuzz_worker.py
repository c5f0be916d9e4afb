"""Runs model files through load, ``tagger info``'s report, predict and resumed training, one
after another, and reports each outcome as a JSON line (used by ``test_model_file_attacks``).

Usage: ``python _model_fuzz_worker.py JOB.json FIRST``, where the job file holds ``{"warm": path,
"X": [...], "y": [...], "raw": "...", "data_limit_mb": n, "cases": [[id, path], ...]}``. The worker
runs ``warm`` and a model of each structure once (so that the compiled kernels are in memory
before any case is timed), prints ``{"ready": ...}``, then for each case from index FIRST prints
``{"start": id}``, ``{"step": name}`` as each step begins, and ``{"case": id, "steps": [...],
"seconds": s, "rss_growth_mb": m}`` when the case is over. A step is ``{"step": name, "ok":
true}`` or ``{"step": name, "ok": false, "type": ..., "value_error": bool, "message": ...,
"traceback": ...}``; a case stops at its first failed step. The protocol goes to the original
standard output; whatever the library prints goes to standard error.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
import warnings


def _vm_data_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1])
    return 0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _failure(step: str, exc: BaseException) -> dict:
    return {"step": step, "ok": False, "type": type(exc).__name__,
            "value_error": isinstance(exc, ValueError), "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(exc))[-3000:]}


class NonFiniteWeights(Exception):
    """Training ended without an error but left weights that are NaN or infinite."""


def _check_finite(model) -> None:
    import numpy as np

    bad = sorted(k for k, v in model.params_.items() if not np.isfinite(v).all())
    if bad:
        raise NonFiniteWeights(f"{len(bad)} parameter arrays hold NaN or infinity after "
                               f"training, e.g. {bad[0]}")


def run_case(path: str, X, y, raw: str, send=None) -> list[dict]:
    import tagger

    steps = []

    def step(name, action):
        if send is not None:
            send({"step": name})
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every outcome is reported, the test judges it
            steps.append(_failure(name, exc))
            return False
        steps.append({"step": name, "ok": True})
        return True

    model = None

    def load():
        nonlocal model
        model = tagger.load(path)

    def predict():
        tags = model.predict(X) + model.predict([raw])
        lengths = [len(s) for s in X] + [len(model._tokenizer(raw))]
        if [len(t) for t in tags] != lengths:
            raise AssertionError(f"predict returned {len(tags)} sequences of lengths "
                                 f"{[len(t) for t in tags]}, expected {lengths}")
        classes = set(model.classes_)
        strays = {t for seq in tags for t in seq} - classes
        if strays:
            raise AssertionError(f"predict returned tags outside classes_: {sorted(strays)[:5]}")

    def info():
        from tagger import workflows

        workflows.format_info(workflows.model_info(path))

    def partial_fit():
        model.partial_fit(X, y)
        _check_finite(model)

    def continue_fit():
        resumed = tagger.load(path)
        resumed.set_params(max_epochs=len(resumed.history_) + 1)
        resumed.continue_fit(X, y, X_dev=X, y_dev=y)
        _check_finite(resumed)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, action in (("load", load), ("info", info), ("predict", predict),
                             ("partial_fit", partial_fit), ("continue_fit", continue_fit)):
            if not step(name, action):
                break
    return steps


# Each structure a fuzzed file can ask for, trained once before the cases are timed: with a cold
# kernel cache, compiling belongs to the warm-up, not to a case's time limit.
WARM_VARIANTS = ({"cell": "gru"}, {"cell": "rnn"}, {"cell": "irnn"}, {"bidirectional": False},
                 {"crf": False}, {"char_encoder": "lstm"}, {"char_encoder": None},
                 {"optimizer": "sgd"}, {"shape_dim": 0}, {"num_layers": 2})


def warm_up(path: str, X, y, raw: str) -> list[dict]:
    import tagger

    steps = run_case(path, X, y, raw)
    base = tagger.load(path).get_params()
    for variant in WARM_VARIANTS:
        model = type(tagger.load(path))(**{**base, **variant, "max_epochs": 1})
        model.fit(X, y)
        model.predict(X)
        model.predict([raw])
    return steps


def main() -> None:
    job_path, first = sys.argv[1], int(sys.argv[2])
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    # The protocol keeps the real standard output; the library's prints go to standard error.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    X, y, raw = job["X"], job["y"], job["raw"]
    warm = warm_up(job["warm"], X, y, raw)  # imports, kernels from the cache, thread pools
    if not all(step["ok"] for step in warm):
        send({"warm_failed": warm})
        return
    # A guard, not the measure: past it an allocation fails with MemoryError (reported as a
    # failure) instead of taking the machine's memory. RLIMIT_AS cannot serve: Numba and LLVM
    # reserve address space far beyond what they use.
    limit = (_vm_data_kb() * 1024) + job["data_limit_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    baseline = _peak_rss_mb()
    send({"ready": True, "rss_mb": baseline})
    for case_id, path in job["cases"][first:]:
        send({"start": case_id})
        start = time.perf_counter()
        steps = run_case(path, X, y, raw, send)
        send({"case": case_id, "steps": steps, "seconds": time.perf_counter() - start,
              "rss_growth_mb": _peak_rss_mb() - baseline})


if __name__ == "__main__":
    main()
