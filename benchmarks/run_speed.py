"""The CPU speed suite in one command, and the table of its targets.

Runs, one after the other (each in its own process, each rewriting its own section of
``RESULTS.md``): ``bench_vs_torch.py`` (one BiLSTM layer beside PyTorch, with ``OPENBLAS_CORETYPE``
unset and as set), ``bench_end_to_end.py`` (the whole tagger beside a plain PyTorch BiLSTM-CRF),
``bench_tagging.py`` (``tagger predict`` from 10^4 to 10^6 tokens) and ``bench_startup.py``. Then it
reads the figures back from those sections and writes the section ``speed_targets``: every target,
the figure measured and whether it is met. Usage::

    python benchmarks/run_speed.py               # everything (about 15 minutes on 2 cores)
    python benchmarks/run_speed.py --targets-only  # only rebuild the targets from RESULTS.md

PyTorch is optional (``pip install torch==2.13.0``); without it the comparisons say so and their
targets read "not measured".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _results  # noqa: E402

SCRIPTS = ["bench_vs_torch.py", "bench_end_to_end.py", "bench_tagging.py", "bench_startup.py"]


def _number(cell: str) -> float | None:
    text = cell.strip().strip("`").replace(",", "").replace("×", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def tables(section: str) -> list[list[dict[str, str]]]:
    """The Markdown tables of a section's text, each as a list of rows keyed by the header."""
    found, header, rows = [], None, []
    for line in section.splitlines() + [""]:
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line[1:-1].split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= set("-: ") for c in cells):
                rows.append(dict(zip(header, cells, strict=False)))
            continue
        if header is not None:
            found.append(rows)
        header, rows = None, []
    return found


def _torch_rows(text: str) -> dict:
    """(threads, shape, mode) -> row of the OPENBLAS_CORETYPE-unset runs."""
    out = {}
    for table in tables(text):
        for row in table:
            if row.get("OPENBLAS_CORETYPE") == "unset":
                out[(row["threads"], row["shape"], row["mode"])] = row
    return out


def targets(read=_results.read_section) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every CPU speed target; met is None where nothing was
    measured."""
    result = []

    def add(name, value, met, fmt):
        result.append((name, fmt.format(value) if value is not None else "not measured",
                       None if value is None else bool(met(value))))

    torch = _torch_rows(read("bench_vs_torch"))

    def cell(threads, shape, mode, column):
        row = torch.get((str(threads), shape, mode))
        return None if row is None else _number(row[column])

    add("BiLSTM training, shape A (32 × 40, 100 → 128), 1 thread: ≥ 1.0× PyTorch",
        cell(1, "A", "train", "ratio"), lambda v: v >= 1.0, "{:.2f}×")
    add("BiLSTM training, shape C (64 × 50, 300 → 256), 1 thread: ≥ 1.0× PyTorch",
        cell(1, "C", "train", "ratio"), lambda v: v >= 1.0, "{:.2f}×")
    add("BiLSTM inference, shape A, 1 thread: ≥ 0.8× PyTorch",
        cell(1, "A", "infer", "ratio"), lambda v: v >= 0.8, "{:.2f}×")
    # The time ratio from the tokens/s columns: the ms columns are rounded to 0.01 ms.
    ours, theirs = (cell(1, "B", "infer", c) for c in ("tagger tokens/s", "PyTorch tokens/s"))
    ms = cell(1, "B", "infer", "tagger ms"), cell(1, "B", "infer", "PyTorch ms")
    add("Single-sentence latency, shape B (1 × 20): ≤ 0.5× PyTorch's time",
        None if ours is None or theirs is None else theirs / ours, lambda v: v <= 0.5,
        f"{{:.3f}}× ({ms[0]} against {ms[1]} ms)")
    for shape in ("A", "C"):
        one, two = (cell(t, shape, "train", "tagger tokens/s") for t in (1, 2))
        add(f"Training on 2 threads, shape {shape}: ≥ 1.6× one thread",
            None if one is None or two is None else two / one, lambda v: v >= 1.6, "{:.2f}×")

    whole = {row[""]: row for table in tables(read("bench_end_to_end")) for row in table
             if "" in row}
    ratio = whole.get("ratio", {})
    for column, what in (("training tokens/s", "training"), ("prediction tokens/s",
                                                             "prediction")):
        add(f"Whole tagger {what} beside a plain PyTorch BiLSTM-CRF, 1 thread: ≥ 3×",
            _number(ratio[column]) if column in ratio else None, lambda v: v >= 3.0, "{:.2f}×")

    runs = [row for table in tables(read("bench_tagging")) for row in table
            if "`tagger predict` tokens/s" in row]
    speeds = [_number(row["`tagger predict` tokens/s"]) for row in runs]
    peaks = [_number(row["`tagger predict` peak MB"]) for row in runs]
    add("`tagger predict`, 2 cores: ≥ 100k tokens/s (slowest size)",
        min(speeds) if speeds else None, lambda v: v >= 100_000, "{:,.0f} tokens/s")
    add("`tagger predict` tokens/s within 20% from 10⁴ to 10⁶ tokens (slowest / fastest)",
        min(speeds) / max(speeds) if speeds else None, lambda v: v >= 0.8, "{:.2f}")
    add("`tagger predict` peak memory growth from 10⁴ to 10⁶ tokens: < 50 MB",
        peaks[-1] - peaks[0] if len(peaks) > 1 else None, lambda v: v < 50, "{:+.0f} MB")

    startup = {row["what"]: row for table in tables(read("bench_startup")) for row in table
               if "what" in row}
    warm = startup.get("`tagger predict` on one sentence, warm compile cache")
    add("Start-up: `tagger predict` on one sentence, warm cache: ≤ 1.0 s",
        _number(warm["seconds"]) if warm else None, lambda v: v <= 1.0, "{:.2f} s")
    return result


def targets_section(rows) -> str:
    lines = ["## Speed targets (`benchmarks/run_speed.py`)", "",
             "Read from the sections below as last written (`OPENBLAS_CORETYPE` unset). That "
             "`import tagger` compiles nothing is checked by `tests/test_cli.py` (it does not "
             "even import Numba).", "", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in rows:
        verdict = {True: "yes", False: "**no**", None: "–"}[met]
        lines.append(f"| {name} | {measured} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets-only", action="store_true",
                        help="only rebuild the targets section from RESULTS.md")
    args = parser.parse_args(argv)
    failed = []
    if not args.targets_only:
        for script in SCRIPTS:
            print(f"== {script}", file=sys.stderr, flush=True)
            if subprocess.run([sys.executable, str(HERE / script)]).returncode != 0:
                failed.append(script)
    rows = targets()
    _results.write_section("speed_targets", targets_section(rows))
    for name, measured, met in rows:
        print(f"{'met' if met else 'NOT MET' if met is False else '-':8} {measured:>28}  {name}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
