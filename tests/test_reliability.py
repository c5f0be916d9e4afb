"""Against bad days: a process killed while saving, no pickle anywhere near model files, recipes as
data only, and a large input with a few malformed records."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_tagger import SMALL, ner_data

import tagger
from tagger import SequenceTagger

ROOT = Path(__file__).resolve().parents[1]


def test_a_process_killed_while_saving_leaves_the_previous_model_intact(tmp_path):
    X, y = ner_data(40)
    path = tmp_path / "model.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=1)).fit(X, y).save(path)
    before = path.read_bytes()
    # A child saves another model to the same path and stops inside the save, once the new
    # model's bytes are written and synced but before the rename: there it says so and waits
    # on its standard input, so that the kill lands in the save on every run.
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        from tagger import SequenceTagger
        from test_tagger import SMALL, ner_data
        X, y = ner_data(40)
        other = SequenceTagger(**dict(SMALL, hidden_size=24, max_epochs=1)).fit(X, y)
        real_fsync = os.fsync
        def fsync_then_wait(fd):
            real_fsync(fd)
            print("in save", flush=True)
            sys.stdin.readline()
        os.fsync = fsync_then_wait
        other.save({str(path)!r})
        print("saved", flush=True)  # only if the save never synced its file
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "in save"
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".model.tagger.")]
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # the new bytes, unrenamed
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # the old model, never a torn or half-renamed file
    assert tagger.load(path).hidden_size == SMALL["hidden_size"]


def test_no_code_path_unpickles_a_model_file():
    sources = [p for p in (ROOT / "tagger").rglob("*.py")]
    offending = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in sources
                 for m in re.finditer(r"pickle\.loads?\(|allow_pickle\s*=\s*True|"
                                      r"joblib\.load\(|np\.load\([^)]*allow_pickle=True",
                                      p.read_text())]
    assert offending == []


def test_recipes_are_data_never_evaluated(tmp_path):
    from tagger.errors import DataError
    from tagger.recipes import load_recipe

    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.toml"
    recipe.write_text(f'task = "tag"\ntrain = "t.conll"\n[params]\n'
                      f'cell = "__import__(\'os\').system(\'touch {marker}\')"\n')
    (tmp_path / "t.conll").write_text("a\tO\n")
    loaded = load_recipe(str(recipe), tmp_path)
    assert loaded.params["cell"].startswith("__import__")  # a string, as written
    with pytest.raises(ValueError, match="cell must be one of"):
        SequenceTagger(**loaded.params).fit([["a"]], [["O"]])
    assert not marker.exists()
    recipe.write_text("task = 'tag'\ntrain = \n")
    with pytest.raises(DataError, match=r"evil.toml:2: not valid TOML"):
        load_recipe(str(recipe), tmp_path)


def test_a_large_jsonl_input_with_a_few_bad_records(tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    X, y = ner_data(40)
    model = tmp_path / "m.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=1)).fit(X, y).save(model)
    rng = np.random.default_rng(0)
    bad_lines = {1_234, 5_000, 9_999}
    lines = []
    for number in range(1, 10_001):
        if number in bad_lines:
            lines.append('{"tokens": ["broken", ' if number != 5_000 else '{"words": ["x"]}')
        else:
            lines.append(json.dumps({"tokens": list(rng.choice(["Anna", "met", "Rome"], 3))}))
    data = tmp_path / "big.jsonl"
    data.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(model), str(data)])
    assert result.exit_code == 1 and "big.jsonl:1234:" in result.output
    result = runner.invoke(app, ["predict", str(model), str(data), "--on-error", "skip",
                                 "--output-format", "jsonl"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 10_000 - 3  # every good record, once
    assert "skipped 3 malformed record(s)" in result.stderr
    for number in bad_lines:
        assert f"big.jsonl:{number}:" in result.stderr
