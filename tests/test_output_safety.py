"""Outputs never destroy inputs and never leave debris: ``-o`` (or ``--output-dir``) over an input
is refused before anything is read; SIGTERM, a full disk or a failing write leave no temporary
file and no partial output; ``convert`` in place is whole or nothing."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_tagger import SMALL, ner_data
from typer.testing import CliRunner

from tagger import SequenceTagger
from tagger._atomic import atomic_output, same_file_as
from tagger.cli import app

ROOT = Path(__file__).resolve().parents[1]
RUN_CLI = "from tagger.cli import main; main()"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    X, y = ner_data(60)
    path = tmp_path_factory.mktemp("safety") / "ner.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=3)).fit(X, y).save(path)
    return path


def text_lines(n: int, seed: int = 7) -> str:
    X, _ = ner_data(n, seed=seed)
    return "".join(" ".join(s) + "\n" for s in X)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("spelling", ["same", "other spelling", "symlink", "in an input folder"])
def test_predict_refuses_an_output_that_is_an_input(model_file, tmp_path, spelling):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    source = corpus / "in.conll"
    source.write_text("Anna\nlives\nin\nParis\n.\n\n")
    before = source.read_bytes()
    inputs, output = [str(source)], source
    if spelling == "other spelling":
        output = corpus / ".." / "corpus" / "in.conll"
    elif spelling == "symlink":
        output = tmp_path / "link.conll"
        output.symlink_to(source)
    elif spelling == "in an input folder":
        inputs = [str(corpus)]
    result = CliRunner().invoke(app, ["predict", str(model_file), *inputs, "-o", str(output)])
    assert result.exit_code == 1, result.output
    assert "the output is the input file" in result.output
    assert source.read_bytes() == before
    assert listing(corpus) == ["in.conll"]


def test_the_refusal_comes_before_anything_is_read(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Anna lives in Paris .\n")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "missing.tagger"), str(source),
                                      "-o", str(source)])
    assert result.exit_code == 1
    assert "the output is the input file" in result.output  # not the missing model


def test_dask_refuses_an_output_folder_of_inputs(model_file, tmp_path):
    pytest.importorskip("distributed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.conll").write_text("Anna\nlives\nin\nParis\n.\n\n")
    before = (corpus / "a.conll").read_bytes()
    for inputs in ([str(corpus)], [str(corpus / "*.conll")], [str(corpus / "a.conll")]):
        result = CliRunner().invoke(app, ["predict", str(model_file), *inputs, "--engine", "dask",
                                          "--output-dir", str(corpus / "." / "")])
        assert result.exit_code == 1, result.output
        assert "the output folder is the input folder" in result.output
        assert (corpus / "a.conll").read_bytes() == before
        assert listing(corpus) == ["a.conll"]


def test_convert_in_place_is_whole_and_leaves_nothing_else(tmp_path):
    # Decided behaviour: OUT may be IN. The input is read to its end before the converted file is
    # renamed over it, so the conversion is in place, like `sed -i`, never a half-read input.
    path = tmp_path / "a.conll"
    path.write_text("New B-LOC\nYork I-LOC\nis O\n\nParis B-LOC\n\n")
    result = CliRunner().invoke(app, ["convert", str(path), str(path), "--to-scheme", "BIOES"])
    assert result.exit_code == 0, result.output
    assert path.read_text() == "New\tB-LOC\nYork\tE-LOC\nis\tO\n\nParis\tS-LOC\n\n"
    assert listing(tmp_path) == ["a.conll"]


def test_sigterm_during_predict_leaves_no_temporary_and_no_output(model_file, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text(text_lines(3000) * 80)  # 5.4 MB: about ten seconds of tagging
    assert big.stat().st_size > 5_000_000
    output = tmp_path / "out.conll"
    child = subprocess.Popen([sys.executable, "-c", RUN_CLI, "predict", str(model_file),
                              str(big), "-o", str(output)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        # Wait for the temporary to grow: the signal lands mid-way through writing the output.
        while not any(p.name.endswith(".tmp") and p.stat().st_size > 100_000
                      for p in tmp_path.iterdir() if p.exists()):
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            time.sleep(0.02)
        temporaries = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert all(name.startswith(".out.conll.") for name in temporaries)  # hidden
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, stderr  # as Ctrl-C
    assert b"Traceback" not in stderr
    assert listing(tmp_path) == ["big.txt"]


def test_a_full_disk_leaves_no_temporary(model_file, tmp_path):
    """A file size limit makes writes fail past 64 kB as a full disk does: the write of a batch
    fails, then so does the flush in close(), which must not keep the temporary alive."""
    source = tmp_path / "in.txt"
    source.write_text(text_lines(3000))
    output = tmp_path / "out.conll"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from tagger import load
        from tagger.workflows import warm_up
        warm_up(load({str(model_file)!r}), False)  # compile-cache files written before the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        sys.argv[1:] = ["predict", {str(model_file)!r}, {str(source)!r}, "-o", {str(output)!r}]
        {RUN_CLI}
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert child.returncode == 1, child.stderr
    assert child.stderr.splitlines()[-1].startswith("error: ") and "Traceback" not in child.stderr
    assert listing(tmp_path) == ["in.txt"]


class _FullDisk(io.TextIOWrapper):
    """A text file on a disk that fills up after ``room`` characters: writes fail, and so does
    the flush that close() makes."""

    room = 1000

    def write(self, text):
        type(self).room -= len(text)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)

    def close(self):
        if not self.closed:
            super().close()
            raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_output_removes_its_temporary_when_write_and_close_fail(tmp_path, monkeypatch):
    import tagger._atomic

    def full_disk_open(fd, mode, encoding, newline):
        return _FullDisk(open(fd, "wb"), encoding=encoding, newline=newline)  # noqa: SIM115

    monkeypatch.setattr(tagger._atomic, "open", full_disk_open, raising=False)
    target = tmp_path / "out.conll"
    target.write_text("previous\n")
    with pytest.raises(OSError) as raised, atomic_output(target) as out:
        for _ in range(100):
            out.write("Anna\tB-PER\n")
    assert raised.value.errno == errno.ENOSPC
    assert listing(tmp_path) == ["out.conll"] and target.read_text() == "previous\n"
    # and a failure at the very end, in the flush to disk, leaves nothing either
    monkeypatch.setattr(tagger._atomic, "open", open, raising=False)

    def failing_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError), atomic_output(target) as out:
        out.write("new\n")
    assert listing(tmp_path) == ["out.conll"] and target.read_text() == "previous\n"


def test_atomic_output_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "out.conll"
    target.write_text("previous\n")
    target.chmod(0o640)
    with atomic_output(target) as out:
        out.write("new\n")
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640
    assert listing(tmp_path) == ["out.conll"]


def test_same_file_as_sees_through_links(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    (tmp_path / "hard.txt").hardlink_to(a)
    (tmp_path / "soft.txt").symlink_to(a)
    assert same_file_as(tmp_path / "hard.txt", ["-", str(a)]) == str(a)
    assert same_file_as(tmp_path / "soft.txt", [str(a)]) == str(a)
    assert same_file_as(tmp_path / "new.txt", [str(a)]) is None
    assert same_file_as(a, ["-", str(tmp_path / "soft.txt")]) == str(tmp_path / "soft.txt")


def test_a_failed_history_write_leaves_no_temporary(tmp_path, monkeypatch):
    from tagger import workflows

    X, y = ner_data(20)
    model = SequenceTagger(**dict(SMALL, max_epochs=1)).fit(X, y)
    replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".history.json"):
            raise OSError(errno.EACCES, "Permission denied", str(dst))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        workflows.save_with_history(model, tmp_path / "m.tagger")
    assert listing(tmp_path) == ["m.tagger"]
