"""Start-up cost: wall time of ``tagger predict`` on one sentence in a fresh process, with a warm
compile cache and with an empty one (the first run after installing), and of ``import tagger``;
the time of ``tagger.load`` and the size of a model file with and without optimizer state; and the
quickstart's training (``tagger train sample-ner``) with an empty compile cache, with every kernel
it compiles (function, signature, seconds).

A small model is trained once on the sample corpus (``data/sample-ner``), then each measurement
is a new process (median of several). Usage::

    python benchmarks/bench_startup.py            # measure, print, update RESULTS.md
    python benchmarks/bench_startup.py --baseline 5235e20   # and an earlier revision beside it
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _tagger_command() -> list[str]:
    found = shutil.which("tagger")
    return [found] if found else [sys.executable, "-m", "tagger.cli"]


def _wall(command: list[str], env: dict, stdin: str = "") -> float:
    start = time.perf_counter()
    subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, check=True,
                   cwd=ROOT)
    return time.perf_counter() - start


def _first_training(work: Path, env: dict, ahead: bool = True) -> tuple[list[dict], float]:
    """The quickstart's training with an empty compile cache: what this process compiles, and
    the time. With ``ahead``, as a user runs it (a second process compiles ahead of it, see
    tagger.kernels.ahead: its compilations are not in the list); without, every compilation."""
    import json

    name = tempfile.mkdtemp(prefix="first-cache-" if ahead else "first-cache-alone-", dir=work)
    env = dict(env, TAGGER_CACHE_DIR=name, TAGGER_COMPILE_AHEAD="" if ahead else "0")
    log = Path(name) / "compiles.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "_compile_log.py"), str(log), "train",
                    "sample-ner", "-o", str(work / "first.tagger"), "--quiet"], env=env,
                   check=True, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - start
    return json.loads(log.read_text()), seconds


def _baseline_training(work: Path, revision: str, env: dict) -> float:
    """The quickstart's training with an empty compile cache at an earlier ``revision`` of the
    project (a temporary git worktree run by this interpreter), for a side-by-side figure."""
    tree = work / "baseline-tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), revision],
                   cwd=ROOT, check=True, capture_output=True)
    try:
        env = dict(env, PYTHONPATH=str(tree),
                   TAGGER_CACHE_DIR=tempfile.mkdtemp(prefix="baseline-cache-", dir=work))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tagger.cli", "train", "sample-ner", "-o",
                        str(work / "baseline.tagger"), "--quiet"], env=env, check=True,
                       cwd=tree, capture_output=True)
        return time.perf_counter() - start
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       capture_output=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --baseline: rounds of the two first trainings, alternating")
    parser.add_argument("--baseline", metavar="REVISION",
                        help="also time the quickstart's first training at this git revision, "
                             "alternating with the current tree")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tagger-startup-"))
    env = dict(os.environ, TAGGER_CACHE_DIR=str(work / "cache"), PYTHONPATH=str(ROOT))
    # A newcomer's Python writes bytecode (and pip compiles what it installs).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    full = work / "sample-with-optimizer.tagger"
    model = work / "sample.tagger"
    subprocess.run([*_tagger_command(), "train", "sample-ner", "-o", str(full), "--max-epochs",
                    "1", "--quiet", "--save-optimizer"], env=env, check=True, cwd=ROOT,
                   capture_output=True)
    load_code = (
        "import statistics, sys, time, tagger\n"
        f"tagger.load({str(full)!r}).save({str(model)!r})\n"
        "times = []\n"
        f"for _ in range({max(5, args.repeats)}):\n"
        "    start = time.perf_counter()\n"
        f"    tagger.load({str(model)!r})\n"
        "    times.append(time.perf_counter() - start)\n"
        "print(statistics.median(times))\n")
    loaded = subprocess.run([sys.executable, "-c", load_code], env=env, check=True, cwd=ROOT,
                            capture_output=True, text=True)
    load_seconds = float(loaded.stdout.split()[-1])
    sentence = "Maria Lopez flew from Paris to Oslo on Monday .\n"
    predict = [*_tagger_command(), "predict", str(model)]
    cold = []
    for _ in range(max(1, args.repeats // 2)):
        shutil.rmtree(work / "cache", ignore_errors=True)
        cold.append(_wall(predict, env, sentence))
    _wall(predict, env, sentence)  # the cache is warm from here on
    warm = [_wall(predict, env, sentence) for _ in range(args.repeats)]
    # Side by side: the earlier revision and the current tree alternate, round by round.
    baseline, current = [], []
    for _ in range(args.rounds if args.baseline else 1):
        if args.baseline:
            baseline.append(_baseline_training(work, args.baseline, env))
        current.append(_first_training(work, env)[1])
    first_train = statistics.median(current)
    compiles, alone = _first_training(work, env, ahead=False)
    imports = [_wall([sys.executable, "-c", "import tagger"], env) for _ in range(args.repeats)]
    sizes = [("weights only (the default)", model.stat().st_size),
             ("with the optimizer state (`--save-optimizer`, checkpoints)", full.stat().st_size)]
    shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("`tagger predict` on one sentence, warm compile cache", statistics.median(warm)),
        ("`tagger predict` on one sentence, empty compile cache (first run)",
         statistics.median(cold)),
        ("`python -c 'import tagger'`", statistics.median(imports)),
        ("`tagger.load` of the model file (in a process that has imported tagger)",
         load_seconds),
        ("`tagger train sample-ner` (the quickstart's training), empty compile cache "
         "(a second process compiles ahead)", first_train),
        ("... without compiling ahead (`TAGGER_COMPILE_AHEAD=0`)", alone),
        ("... of which compiling kernels", sum(c["seconds"] for c in compiles
                                                if c["depth"] == 0)),
    ]
    if baseline:
        rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip() or args.baseline
        before = statistics.median(baseline)
        rows.append((f"... the same at revision `{rev}`, alternating with the current tree in "
                     f"this run (median of {len(baseline)}: "
                     f"{', '.join(f'{t:.1f}' for t in baseline)} s against "
                     f"{', '.join(f'{t:.1f}' for t in current)} s now; now / then = "
                     f"{first_train / before:.2f})", before))
    top = sorted((c for c in compiles if c["depth"] == 0), key=lambda c: -c["seconds"])
    float64 = sum("float64, " in c["signature"] and "Array(float64" in c["signature"]
                  for c in top)
    cuda = sum("cuda" in c["function"] for c in compiles)
    lines = [
        "## Start-up (`benchmarks/bench_startup.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}: wall time of a fresh process, median of "
        f"{args.repeats} (empty cache: {max(1, args.repeats // 2)}); a BiLSTM-CRF with character "
        f"CNN trained on the sample corpus; numba-cuda "
        f"{'installed' if importlib.util.find_spec('numba_cuda') else 'not installed'} (with it "
        f"and a CUDA driver, `device=\"auto\"` imports it to probe the GPU: about 0.3 s more; "
        f"without a driver the probe is one failed library load). Tagging imports neither "
        f"scikit-learn nor numba-cuda when there is no GPU.",
        "",
        "| what | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.3f} |" for name, seconds in rows],
        "",
        "| model file | bytes |",
        "|---|---:|",
        *[f"| {name} | {size:,} |" for name, size in sizes],
        "",
        f"What the quickstart's training compiles on a new machine ({len(top)} kernels called "
        f"from Python, {len(compiles)} compilations with those inside them; {float64} with "
        f"float64 arrays, {cuda} CUDA kernels); the seconds of a kernel include those of the "
        f"functions compiled inside it:",
        "",
        "| kernel | signature | seconds |",
        "|---|---|---:|",
        *[f"| `{c['function'].removeprefix('tagger.kernels.')}` | "
          f"`{c['signature'][:90]}` | {c['seconds']:.2f} |" for c in top],
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        import _results

        _results.write_section("bench_startup", body)


if __name__ == "__main__":
    main()
