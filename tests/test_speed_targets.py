"""The targets table of ``benchmarks/run_speed.py``, read from sections as the scripts write
them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import run_speed  # noqa: E402

SECTIONS = {
    "bench_vs_torch": """
| OPENBLAS_CORETYPE | threads | shape | mode | tagger tokens/s | PyTorch tokens/s | ratio \
| tagger ms | PyTorch ms |
|---|---:|---|---|---:|---:|---:|---:|---:|
| unset | 1 | A | train | 50,000 | 40,000 | 1.25× | 25.60 | 32.00 |
| unset | 1 | A | infer | 150,000 | 200,000 | 0.75× | 8.53 | 6.40 |
| unset | 1 | B | infer | 100,000 | 50,000 | 2.00× | 0.18 | 0.40 |
| unset | 1 | C | train | 12,000 | 12,000 | 1.00× | 266.67 | 266.67 |
| unset | 2 | A | train | 75,000 | 60,000 | 1.25× | 17.07 | 21.33 |
| Haswell | 1 | C | train | 1 | 12,000 | 0.01× | 1.0 | 1.0 |
""",
    "bench_end_to_end": """
| | training tokens/s | prediction tokens/s | dev token accuracy (sanity check) |
|---|---:|---:|---:|
| SequenceTagger | 40,000 | 70,000 | 80.7 |
| ratio | 3.20× | 2.90× | |
""",
    "bench_tagging": """
| tokens | runs (median) | API tokens/s | API peak MB | `tagger predict` tokens/s \
| whole command tokens/s | `tagger predict` peak MB |
|---:|---:|---:|---:|---:|---:|---:|
| 10,005 | 5 | 1 | 1 | 120,000 | 1 | 230 |
| 1,000,003 | 1 | 1 | 1 | 160,000 | 1 | 290 |
""",
}


def test_every_target_is_judged_from_the_unset_runs_and_missing_figures_say_so():
    rows = {name: (measured, met) for name, measured, met in
            run_speed.targets(lambda section: SECTIONS.get(section, ""))}
    by_start = {name.split(":")[0]: value for name, value in rows.items()}
    assert by_start["BiLSTM training, shape A (32 × 40, 100 → 128), 1 thread"] == ("1.25×", True)
    assert by_start["BiLSTM training, shape C (64 × 50, 300 → 256), 1 thread"] == ("1.00×", True)
    assert by_start["BiLSTM inference, shape A, 1 thread"] == ("0.75×", False)
    assert by_start["Single-sentence latency, shape B (1 × 20)"] == (
        "0.500× (0.18 against 0.4 ms)", True)
    assert by_start["Training on 2 threads, shape A"] == ("1.50×", False)
    assert by_start["Training on 2 threads, shape C"] == ("not measured", None)
    assert [v for k, v in by_start.items() if k.startswith("Whole tagger")] == [
        ("3.20×", True), ("2.90×", False)]
    assert by_start["`tagger predict`, 2 cores"] == ("120,000 tokens/s", True)
    assert by_start["`tagger predict` tokens/s within 20% from 10⁴ to 10⁶ tokens (slowest / "
                    "fastest)"] == ("0.75", False)
    assert by_start["`tagger predict` peak memory growth from 10⁴ to 10⁶ tokens"] == (
        "+60 MB", False)
    assert by_start["Start-up"] == ("not measured", None)
    assert "| Training on 2 threads, shape A: ≥ 1.6× one thread | 1.50× | **no** |" in (
        run_speed.targets_section(run_speed.targets(lambda s: SECTIONS.get(s, ""))))
