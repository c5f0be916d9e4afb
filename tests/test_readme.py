"""The figures the README quotes are the ones ``benchmarks/RESULTS.md`` records."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _results_row(task: str) -> list[str]:
    """The cells of the RESULTS.md table row whose first cell is ``task``."""
    for line in (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == task:
            return cells
    raise AssertionError(f"RESULTS.md has no row {task!r}")


def test_digits_accuracy_in_the_readme_is_the_benchmarked_one():
    # The README's snippet is bench_classifier.py's digits protocol with its first seed (0).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.findall(r"SequenceClassifier\(random_state=0\)\.fit\(X_train, y_train\)"
                        r"\.score\(X_test, y_test\)\s+# (\d\.\d+)", readme)
    assert len(quoted) == 1, "the README's digits example lost its figure"
    row = _results_row('digits as 8 rows of 8 pixels, `cell="lstm"`')
    assert row[2].startswith("0,"), "the first seed of the benchmark is no longer 0"
    first_seed_percent = float(row[3])
    assert float(quoted[0]) == round(first_seed_percent / 100, len(quoted[0]) - 2)
