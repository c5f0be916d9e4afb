"""The command line, through Typer's runner and as the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tagger import __version__
from tagger.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tagger {__version__}"


def test_demo_trains_both_networks_and_reports_accuracy():
    result = runner.invoke(app, ["demo", "--epochs", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("epoch  2") == 2
    assert "Held-out token accuracy: bidirectional" in result.output


def test_demo_rejects_an_unknown_cell_with_a_usage_error():
    result = runner.invoke(app, ["demo", "--cell", "transformer"])
    assert result.exit_code == 2
    assert "unknown cell 'transformer'" in result.output


def test_import_does_not_load_numba():
    code = "import sys, tagger; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(shutil.which("tagger") is None, reason="package not installed as a command")
def test_installed_console_script():
    out = subprocess.run(["tagger", "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == f"tagger {__version__}"
