"""Outputs never destroy inputs and never leave debris: ``-o`` (or ``--output-dir``) over an input
is refused before anything is read; SIGTERM, a full disk or a failing write leave no temporary
file and no partial output; ``convert`` in place is whole or nothing."""

from __future__ import annotations

import errno
import io
import os
import signal
import stat
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


# ----------------------------------------------------------------------------------------------
# outputs that are not regular files: devices and FIFOs are written to, links are kept
# ----------------------------------------------------------------------------------------------


def test_atomic_output_keeps_a_symbolic_link_and_replaces_what_it_points_to(tmp_path):
    real_folder, link_folder = tmp_path / "real", tmp_path / "links"
    real_folder.mkdir()
    link_folder.mkdir()
    real = real_folder / "out.conll"
    real.write_text("previous\n")
    real.chmod(0o640)
    link = link_folder / "out.conll"
    link.symlink_to(Path("..") / "real" / "out.conll")
    with atomic_output(link) as out:
        out.write("new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "real", "out.conll")
    assert real.read_text() == "new\n" and (real.stat().st_mode & 0o777) == 0o640
    assert listing(real_folder) == ["out.conll"] and listing(link_folder) == ["out.conll"]
    # A link to a file yet to be written: the file is created where it points, as `>` does.
    dangling = link_folder / "new.conll"
    dangling.symlink_to(real_folder / "new.conll")
    with atomic_output(dangling) as out:
        out.write("made\n")
    assert dangling.is_symlink() and (real_folder / "new.conll").read_text() == "made\n"


def test_atomic_output_writes_through_a_character_device(tmp_path):
    # Through a link to the real /dev/null: were the node replaced, only the link would go.
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    with atomic_output(link) as out:
        out.write("discarded\n")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert listing(tmp_path) == ["null"]
    try:
        os.mknod(tmp_path / "devnull", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        return  # creating a device node takes root; the link above checked the same path
    with atomic_output(tmp_path / "devnull") as out:
        out.write("discarded\n")
    assert stat.S_ISCHR(os.stat(tmp_path / "devnull").st_mode)
    assert listing(tmp_path) == ["devnull", "null"]


def test_atomic_output_writes_through_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that opening to write never waits
    try:
        with atomic_output(fifo) as out:
            out.write("Anna\tB-PER\n")
        assert os.read(reader, 1 << 16) == b"Anna\tB-PER\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and listing(tmp_path) == ["pipe"]


def test_atomic_output_refuses_a_folder_and_a_socket_before_writing(tmp_path):
    import socket

    from tagger.errors import DataError

    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder"), atomic_output(folder):
        pytest.fail("the block must not run")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(DataError, match="is a socket"), atomic_output(tmp_path / "sock"):
            pytest.fail("the block must not run")
    assert listing(tmp_path) == ["folder", "sock"] and listing(folder) == []


def test_predict_and_convert_write_to_a_device_and_through_links(model_file, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Anna lives in Paris .\n")
    null = tmp_path / "null"
    null.symlink_to("/dev/null")
    result = CliRunner().invoke(app, ["predict", str(model_file), str(source), "-o", str(null)])
    assert result.exit_code == 0, result.output
    assert null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    conll = tmp_path / "in.conll"
    conll.write_text("Anna\tB-PER\nlives\tO\n\n")
    target = tmp_path / "target.jsonl"
    target.write_text("previous\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(target.name)
    result = CliRunner().invoke(app, ["convert", str(conll), str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and '"Anna"' in target.read_text()
    result = CliRunner().invoke(app, ["predict", str(model_file), str(source), "-o",
                                      str(tmp_path)])
    assert result.exit_code == 1 and "the output is a folder" in result.output


# ----------------------------------------------------------------------------------------------
# models, data and recipes are inputs too
# ----------------------------------------------------------------------------------------------


def _not_a_model(path: Path) -> bytes:
    # Not a model: a refusal after loading it would be a load error instead.
    path.write_bytes(b"not a model\n")
    return path.read_bytes()


def test_predict_refuses_to_write_over_the_model(tmp_path):
    model = tmp_path / "m.tagger"
    before = _not_a_model(model)
    source = tmp_path / "in.txt"
    source.write_text("Anna lives in Paris .\n")
    link = tmp_path / "link.tagger"
    link.symlink_to(model)
    for output in (model, link):
        result = CliRunner().invoke(app, ["predict", str(model), str(source), "-o", str(output)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"error: {output}: the output is the model file {model}")
        assert model.read_bytes() == before
    assert listing(tmp_path) == ["in.txt", "link.tagger", "m.tagger"]


@pytest.mark.parametrize("target", ["data", "model"])
def test_evaluate_refuses_a_report_over_its_model_or_data(tmp_path, target):
    model = tmp_path / "m.tagger"
    _not_a_model(model)
    data = tmp_path / "dev.conll"
    data.write_text("Anna\tB-PER\n\n")
    files = {"model": model, "data": data}
    before = {name: path.read_bytes() for name, path in files.items()}
    result = CliRunner().invoke(app, ["evaluate", str(model), str(data), "--report",
                                      str(files[target])])
    assert result.exit_code == 1, result.output
    assert (f"error: {files[target]}: the report is the {target} file {files[target]}"
            in result.output)
    assert {name: path.read_bytes() for name, path in files.items()} == before


@pytest.mark.parametrize("target", ["training data", "development data"])
def test_train_refuses_an_output_over_its_data(tmp_path, target):
    train, dev = tmp_path / "train.conll", tmp_path / "dev.conll"
    # Malformed, so that reading them would fail otherwise: the refusal comes first.
    train.write_text("Anna\n\n")
    dev.write_text("Paris\n\n")
    output = train if target == "training data" else dev
    result = CliRunner().invoke(app, ["train", "--train", str(train), "--dev", str(dev),
                                      "-o", str(output), "--quiet"])
    assert result.exit_code == 1, result.output
    assert f"error: {output}: the output is the {target} file {output}" in result.output
    assert train.read_text() == "Anna\n\n" and dev.read_text() == "Paris\n\n"
    assert listing(tmp_path) == ["dev.conll", "train.conll"]


def test_train_refuses_a_history_over_the_resumed_model(tmp_path):
    train = tmp_path / "train.conll"
    train.write_text("Anna\n\n")
    resume = tmp_path / "m.tagger.history.json"
    before = _not_a_model(resume)
    result = CliRunner().invoke(app, ["train", "--train", str(train), "--resume", str(resume),
                                      "-o", str(tmp_path / "m.tagger"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert f"the history file is the resumed model file {resume}" in result.output
    assert resume.read_bytes() == before


# ----------------------------------------------------------------------------------------------
# TSV predictions that would not read back
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    from test_classifier import review_data

    from tagger import SequenceClassifier

    X, y = review_data(40)
    path = tmp_path_factory.mktemp("classifier") / "c.tagger"
    SequenceClassifier(**dict(SMALL, max_epochs=1)).fit(X, y).save(path)
    return path


def test_tsv_output_refuses_a_text_holding_a_tab(classifier_file, tmp_path):
    from tagger.io import read_tsv

    source = tmp_path / "in.txt"
    source.write_text("a good film\nbad\tfilm here\n")
    output = tmp_path / "out.tsv"
    result = CliRunner().invoke(app, ["predict", str(classifier_file), str(source),
                                      "--output-format", "tsv", "-o", str(output)])
    assert result.exit_code == 1, result.output
    assert f"error: {source}:2: text 'bad\\tfilm here' cannot be written to TSV: it holds a tab" \
        in result.output
    assert listing(tmp_path) == ["in.txt"]
    source.write_text("a good film\n  bad  film  \n")  # spaces are kept, and read back as tokens
    result = CliRunner().invoke(app, ["predict", str(classifier_file), str(source),
                                      "--output-format", "tsv", "-o", str(output)])
    assert result.exit_code == 0, result.output
    texts = list(read_tsv(output, header=False))
    assert [t.tokens for t in texts] == [["a", "good", "film"], ["bad", "film"]]


@pytest.mark.parametrize(("text", "label", "reason"), [
    ("bad\nfilm", "neg", "it holds a line break"),
    ("bad\rfilm", "neg", "it holds a carriage return"),
    ("   ", "neg", "an empty text cannot be written"),
    ("bad film", "n\teg", "it holds a tab"),
    ("bad film", " neg", "labels are read stripped"),
])
def test_tsv_prediction_is_refused_before_any_of_it_is_written(text, label, reason):
    from tagger.io import UnwritableError
    from tagger.records import Record
    from tagger.workflows import write_prediction

    out = io.StringIO()
    record = Record(text.split(), 7, "in.jsonl", text=text)
    with pytest.raises(UnwritableError, match=reason) as raised:
        write_prediction(out, record, {"label": label, "proba": {}}, "tsv", classifier=True)
    assert str(raised.value).startswith("in.jsonl:7: ")
    assert out.getvalue() == ""
