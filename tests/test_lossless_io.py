"""Batch reading and writing that lose nothing: a malformed record is skipped alone and reading
goes on, writers refuse what would read back differently, lines are bounded, closed standard
streams give one clear error, and entity tags in CoNLL-U go to MISC."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_tagger import SMALL, ner_data

from tagger import SequenceTagger
from tagger.errors import DataError
from tagger.io import (
    LabeledText,
    Sentence,
    UnwritableError,
    _common,
    read_conll,
    read_conllu,
    read_jsonl,
    read_tsv,
    write_conll,
    write_conllu,
    write_jsonl,
    write_tsv,
)
from tagger.records import ReadErrors, iter_records
from tagger.workflows import convert


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    X, y = ner_data(40)
    path = tmp_path_factory.mktemp("lossless") / "ner.tagger"
    SequenceTagger(**dict(SMALL, max_epochs=1)).fit(X, y).save(path)
    return path


def _cli(*args: str, stdin=None, close_fd: int | None = None, timeout: float = 120):
    """Run ``tagger`` in a fresh process; ``close_fd`` 0 or 1 starts it with that descriptor
    closed (as ``tagger ... <&-`` or ``>&-`` in a shell would)."""
    command = [sys.executable, "-m", "tagger.cli", *args]
    if close_fd is not None:
        wrapper = "import os, sys; os.close(int(sys.argv[1])); os.execv(sys.argv[2], sys.argv[2:])"
        command = [sys.executable, "-c", wrapper, str(close_fd), *command]
    # On the CPU: with the [cuda] extra installed and no GPU, "auto" would add a warning line to
    # the standard error these tests read.
    env = {**os.environ, "TAGGER_DEVICE": "cpu"}
    return subprocess.run(command, stdin=stdin, capture_output=True, timeout=timeout, env=env)


# ---------------------------------------------------------------------------------------------
# --on-error skip skips exactly the malformed record


def test_one_bad_byte_skips_one_record_of_a_large_file(model_file, tmp_path):
    lines = [f"Anna met Bob {i}".encode() for i in range(20_000)]
    lines[9_999] = b"Anna met \xff Bob"
    text = tmp_path / "big.txt"
    text.write_bytes(b"\n".join(lines) + b"\n")
    blocks = [f"Anna\tB-PER\nmet\tO\nx{i}\tO\n".encode() for i in range(5_000)]
    blocks[2_499] = b"Anna\tB-PER\nm\xffet\tO\nx\tO\n"
    conll = tmp_path / "big.conll"
    conll.write_bytes(b"\n".join(blocks))
    for path, n_records, output_format, bad_line in [
        (text, 20_000, "jsonl", 10_000),
        (conll, 5_000, "conll", 2_499 * 4 + 2),
    ]:
        out = tmp_path / f"{path.name}.out"
        result = _cli(
            "predict",
            str(model_file),
            str(path),
            "--on-error",
            "skip",
            "--output-format",
            output_format,
            "-o",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        written = out.read_text(encoding="utf-8")
        n_out = written.count("\n") if output_format == "jsonl" else written.count("\n\n")
        stderr = result.stderr.decode()
        assert n_out == n_records - 1  # records in = records out + skipped
        assert "skipped 1 malformed record(s)" in stderr
        assert f"{path.name}:{bad_line}: not valid UTF-8" in stderr


def test_a_dask_worker_skips_exactly_the_bad_record(model_file, tmp_path):
    pytest.importorskip("distributed")
    from tagger.distributed import _model_bytes, _tag_file

    lines = [json.dumps({"tokens": ["Anna", "met", f"x{i}"]}).encode() for i in range(300)]
    lines[100] = b'{"tokens": ["Anna", "\xff"]}'
    lines[200] = b'{"tokens": ["broken", '
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    target = tmp_path / "out.jsonl"
    data = _model_bytes(str(model_file))
    result = _tag_file(data, str(source), str(target), None, "jsonl", 64, "skip")
    assert result["records"] == 298 and len(result["skipped"]) == 2
    assert len(target.read_text(encoding="utf-8").splitlines()) == 298
    assert "in.jsonl:101:" in result["skipped"][0] and "in.jsonl:201:" in result["skipped"][1]


# Generated records of each input format, written one by one, some of them made bad.
_LIMIT = 512  # line limit in the property test; no good line comes near it
_line_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\ufeff")
_text_line = st.text(_line_char, min_size=1, max_size=20).filter(str.strip)
_cell = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\t\ufeff"),
    min_size=1,
    max_size=6,
)
_conll_field = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\t \ufeff"),
    min_size=1,
    max_size=6,
)
_json_token = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=5)
_GOOD = {
    "text": _text_line,
    "jsonl": st.lists(st.tuples(_json_token, _json_token), min_size=1, max_size=4),
    "tsv": st.tuples(_conll_field, _text_line).filter(lambda r: "\t" not in r[1]),
    "conll": st.lists(st.tuples(_conll_field, _conll_field), min_size=1, max_size=4),
    "conllu": st.lists(st.tuples(_cell, _cell), min_size=1, max_size=4),
}
# What a record of bad content looks like, where a format has such a thing.
_MALFORMED = {
    "jsonl": [b'{"tokens": [', b'{"words": ["a"]}', b"[1, 2]"],
    "conll": [b"a\tO\nb\tO\tX"],
    "conllu": [b"1\ta", b"1\ta" + b"\t_" * 8 + b"\n3\tb" + b"\t_" * 8],
}


def _lines_of(fmt: str, record) -> list[bytes]:
    if fmt == "text":
        return [record.encode()]
    if fmt == "jsonl":
        tokens, tags = [t for t, _ in record], [g for _, g in record]
        return [json.dumps({"tokens": tokens, "tags": tags}, ensure_ascii=False).encode()]
    if fmt == "tsv":
        return [f"{record[0]}\t{record[1]}".encode()]
    if fmt == "conll":
        return [f"{t}\t{g}".encode() for t, g in record]
    return [f"{i}\t{t}\t_\t{g}\t_\t_\t_\t_\t_\t_".encode() for i, (t, g) in enumerate(record, 1)]


def _expected(fmt: str, record) -> tuple[list[str], object]:
    if fmt == "text":
        return record.split(), None
    if fmt == "tsv":
        return record[1].split(), record[0]
    return [t for t, _ in record], [g for _, g in record]


@st.composite
def _files(draw, fmt: str):
    """``(data, good, bad)``: a file's bytes, each good record's ``(first line, tokens, gold)``
    and each bad record's line span."""
    kinds = draw(
        st.lists(st.sampled_from(["good"] * 3 + ["byte", "long", "malformed"]), max_size=8)
    )
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    blocks = fmt in ("conll", "conllu")
    chunks: list[bytes] = []
    good, bad = [], []
    number = 1
    for kind in kinds:
        if kind == "malformed" and fmt not in _MALFORMED:
            kind = "byte"
        if kind == "malformed":
            lines = draw(st.sampled_from(_MALFORMED[fmt])).split(b"\n")
        else:
            record = draw(_GOOD[fmt])
            lines = _lines_of(fmt, record)
            assume(all(len(line.decode()) <= _LIMIT for line in lines))
            where = draw(st.integers(0, len(lines) - 1))
            if kind == "byte":
                line = lines[where]
                at = draw(st.integers(0, len(line)))
                lines[where] = (
                    line[:at] + draw(st.sampled_from([b"\xff", b"\x80", b"\xc3"])) + (line[at:])
                )
                assume(not _decodes(lines[where]))
            elif kind == "long":
                lines[where] = b"y" * draw(st.integers(_LIMIT + 1, _LIMIT + 200))
        if kind == "good":
            good.append((number, *_expected(fmt, record)))
        else:
            bad.append((number, number + len(lines) - 1))
        chunks.append(ending.join(lines) + ending)
        number += len(lines)
        if blocks:
            chunks.append(ending)
            number += 1
    return b"".join(chunks), good, bad


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("fmt", ["text", "conll", "conllu", "jsonl", "tsv"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_property_skip_loses_exactly_the_bad_records(fmt, data):
    raw, good, bad = data.draw(_files(fmt))
    options = {"tsv_label_column": 0} if fmt == "tsv" else {}
    # Small read chunks, so that lines of every length span several of them.
    with mock.patch.object(_common, "_READ_CHUNK", 7):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
            errors = ReadErrors()
            records = list(
                iter_records(
                    "-", fmt, on_error="skip", errors=errors, max_line_length=_LIMIT, **options
                )
            )
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
            stopped = None
            try:
                list(iter_records("-", fmt, max_line_length=_LIMIT, **options))
            except DataError as error:
                stopped = error
    assert len(records) + errors.count == len(good) + len(bad)
    assert [(r.line, r.tokens, r.gold) for r in records] == good
    assert errors.count == len(bad)
    for error, (first, last) in zip(errors.skipped, bad, strict=True):
        assert error.path == "<stdin>" and first <= error.line <= last
    if bad:
        assert stopped is not None and bad[0][0] <= stopped.line <= bad[0][1]
    else:
        assert stopped is None


# ---------------------------------------------------------------------------------------------
# Writers never write what reads back differently


def test_conll_refuses_tokens_it_would_split_naming_token_and_sentence():
    for token, what in [("New York", "a space"), ("new\nline", "a line break"), ("a\tb", "a tab")]:
        out = io.StringIO()
        sentences = [Sentence(["ok"], ["O"]), Sentence(["x", token], ["O", "B-LOC"], line=7)]
        with pytest.raises(UnwritableError, match="sentence 2 \\(line 7\\): token") as caught:
            write_conll(sentences, out)
        assert repr(token) in str(caught.value) and what in str(caught.value)
        assert out.getvalue() == "ok\tO\n\n"  # nothing of the refused sentence
    with pytest.raises(UnwritableError, match="document boundary"):
        write_conll([["-DOCSTART-", "x"]], io.StringIO(), tags=[["O", "O"]])
    with pytest.raises(UnwritableError, match="same number"):
        write_conll([Sentence(["a"], ["O"]), Sentence(["b"])], io.StringIO())


def test_convert_refuses_a_token_conll_cannot_hold_and_conllu_keeps_it(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"tokens": ["New York", "is", "big"], "tags": ["B-LOC", "O", "O"]}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(UnwritableError, match="sentence 1 \\(line 1\\): token 'New York'"):
        convert(source, tmp_path / "out.conll")
    assert not (tmp_path / "out.conll").exists()
    convert(source, tmp_path / "out.conllu")
    [sentence] = read_conllu(tmp_path / "out.conllu")
    assert sentence.tokens == ["New York", "is", "big"]
    assert sentence.tags == ["B-LOC", "O", "O"]


# Any token or tag, the line breaks of str.splitlines included (lone surrogates are not text).
_BREAKS = [
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "_",
    "|",
    "-DOCSTART-",
]
_unicode_value = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
    st.lists(st.sampled_from(_BREAKS) | st.text(max_size=2), max_size=4).map("".join),
)
_entity_tag = st.sampled_from(["O", "B-PER", "I-LOC", "E-x y", "S-a|b", "B-\n"])


_WRITERS = {
    "conll": (write_conll, lambda f: read_conll(f)),
    "conllu": (write_conllu, lambda f: read_conllu(f)),
    "jsonl": (write_jsonl, lambda f: read_jsonl(f)),
}


@pytest.mark.parametrize("fmt", ["conll", "conllu", "jsonl", "tsv"])
@settings(max_examples=150, deadline=None)
@given(
    sentences=st.lists(
        st.lists(st.tuples(_unicode_value, _unicode_value | _entity_tag), min_size=1, max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_property_writers_round_trip_exactly_or_refuse(fmt, sentences):
    if fmt == "tsv":
        items = [LabeledText([t for t, _ in pairs], pairs[0][1]) for pairs in sentences]
        writer, reader = write_tsv, read_tsv
        expected = [(item.tokens, item.label) for item in items]
    else:
        items = [Sentence([t for t, _ in pairs], [g for _, g in pairs]) for pairs in sentences]
        writer, reader = _WRITERS[fmt]
        expected = [(item.tokens, item.tags) for item in items]
    out = io.BytesIO()
    try:
        writer(items, out)
        refused = None
    except UnwritableError as error:
        refused = error
    data = out.getvalue()
    # Read back as bytes (a path or stdin) and as text with universal newlines (open(path)).
    for source in (io.BytesIO(data), io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")):
        back = [(item.tokens, item.label if fmt == "tsv" else item.tags) for item in reader(source)]
        if refused is None:
            assert back == expected
        else:
            # Refused before anything of the sentence was written: the ones before it, whole.
            index = int(str(refused).split()[1].rstrip(":"))
            assert back == expected[: index - 1]


# ---------------------------------------------------------------------------------------------
# Unbounded lines, closed standard streams


@pytest.mark.parametrize(
    ("reader", "good", "around"),
    [
        (read_conll, b"a\tO\n", (b"", b"\tO")),
        (read_conllu, b"1\ta" + b"\t_" * 8 + b"\n", (b"2\t", b"\t_" * 8)),
        (read_jsonl, b'{"tokens": ["a"]}\n', (b'{"tokens": ["', b'"]}')),
        (read_tsv, b"label\ttext\n", (b"1\t", b"")),
    ],
)
def test_a_line_over_the_limit_is_a_located_data_error(tmp_path, reader, good, around):
    path = tmp_path / "long.txt"
    # A valid line of 101 characters, ended by "\r\n" (which does not count).
    long_line = around[0] + b"x" * (101 - len(around[0]) - len(around[1])) + around[1]
    path.write_bytes(good + long_line + b"\r\n")
    with pytest.raises(DataError, match="long.txt:2: line longer than 100 characters"):
        list(reader(path, max_line_length=100))
    with pytest.raises(DataError, match=":2: line longer than 100 characters"):
        list(reader(io.BytesIO(path.read_bytes()), max_line_length=100))
    list(reader(path, max_line_length=101))  # the limit is on characters, ending excluded
    with pytest.raises(ValueError, match="max_line_length"):
        reader(path, max_line_length=0)


def test_a_long_line_is_never_held_whole(tmp_path):
    path = tmp_path / "long.conll"
    path.write_bytes(b"a\tO\n\n" + b"x" * 8_400_000 + b"\tO\n\nb\tO\n")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=":3: line longer than 1,048,576 characters"):
            list(read_conll(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 1024 * 1024  # the limit and a chunk, not 8.4 MB (and its decoded copy)
    # Multi-byte characters count as one each.
    path.write_bytes(("é" * 50).encode() + b"\tO\n")
    assert next(read_conll(path, max_line_length=52)).tokens == ["é" * 50]
    # Skipped: one record, the rest read.
    errors = ReadErrors()
    path.write_bytes(b"a\tO\n\n" + b"x" * 2_000_000 + b"\tO\n\nb\tO\n")
    records = list(iter_records(str(path), "conll", on_error="skip", errors=errors))
    assert [r.tokens for r in records] == [["a"], ["b"]] and errors.count == 1


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_is_one_error_not_a_memory_error():
    with pytest.raises(DataError, match="/dev/zero:1: line longer than"):
        next(read_conll("/dev/zero"))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_closed_and_empty_standard_streams_on_the_command_line(model_file, tmp_path):
    with open("/dev/zero", "rb") as zero:
        result = _cli("predict", str(model_file), stdin=zero)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "error: <stdin>:1: line longer than 1,048,576 characters (raise the limit with "
        "max_line_length, or --max-line-length on the command line)"
    ]
    assert result.stdout == b""
    result = _cli("predict", str(model_file), close_fd=0)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "error: <stdin>: standard input is closed; give input files"
    ]
    text = tmp_path / "in.txt"
    text.write_text("Anna met Bob\n", encoding="utf-8")
    result = _cli("predict", str(model_file), str(text), close_fd=1)
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "error: standard output is closed; give --output FILE"
    ]
    result = _cli("predict", str(model_file), stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_max_line_length_option(model_file, tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    path = tmp_path / "in.txt"
    path.write_text("Anna met Bob\n" + "x " * 60 + "\nBob went home\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["predict", str(model_file), str(path), "--max-line-length", "100", "--on-error", "skip"],
    )
    assert result.exit_code == 0
    assert result.stdout.count("\n\n") == 2
    assert "skipped 1 malformed record(s)" in result.stderr and "in.txt:2: line longer" in (
        result.stderr
    )
    result = runner.invoke(app, ["predict", str(model_file), str(path), "--max-line-length", "120"])
    assert result.exit_code == 0 and result.stdout.count("\n\n") == 3


# ---------------------------------------------------------------------------------------------
# CoNLL-U: entity tags in MISC


def test_conllu_writes_entity_tags_to_misc_and_parts_of_speech_to_upos():
    out = io.StringIO()
    write_conllu(
        [
            Sentence(["Anna", "sings"], ["B-PER", "O"]),
            Sentence(["Anna", "sings"], ["PROPN", "VERB"]),
        ],
        out,
    )
    assert out.getvalue() == (
        "1\tAnna\t_\t_\t_\t_\t_\t_\t_\tNER=B-PER\n2\tsings\t_\t_\t_\t_\t_\t_\t_\tNER=O\n\n"
        "1\tAnna\t_\tPROPN\t_\t_\t_\t_\t_\t_\n2\tsings\t_\tVERB\t_\t_\t_\t_\t_\t_\n\n"
    )
    entities, parts = read_conllu(io.StringIO(out.getvalue()))
    assert entities.tags == ["B-PER", "O"] and parts.tags == ["PROPN", "VERB"]
    with pytest.raises(UnwritableError, match="cannot be written to UPOS"):
        write_conllu([Sentence(["Anna"], ["B-PER"])], io.StringIO(), tag_field="upos")


def test_conllu_keeps_the_other_misc_entries_and_columns():
    ud = "1\tAnna\tAnna\tPROPN\tNNP\t_\t2\tnsubj\t_\tSpaceAfter=No|NER=B-ORG\n"
    [sentence] = read_conllu(io.StringIO(ud))
    assert sentence.tags == ["PROPN"]  # a treebank with UPOS reads as UPOS by default
    assert next(read_conllu(io.StringIO(ud), tag_field="ner")).tags == ["B-ORG"]
    out = io.StringIO()
    write_conllu([sentence], out, tags=[["B-PER"]])
    assert out.getvalue() == ud.replace("B-ORG", "B-PER") + "\n"
    with pytest.raises(DataError, match="no NER=<tag> entry"):
        list(read_conllu(io.StringIO("1\tAnna" + "\t_" * 8 + "\n"), tag_field="ner"))


def test_convert_ner_conll_to_conllu_and_back(tmp_path):
    source = tmp_path / "in.conll"
    source.write_text("Anna\tB-PER\nsings\tO\n\n", encoding="utf-8")
    convert(source, tmp_path / "mid.conllu")
    assert "NER=B-PER" in (tmp_path / "mid.conllu").read_text(encoding="utf-8")
    convert(tmp_path / "mid.conllu", tmp_path / "back.conll")
    assert (tmp_path / "back.conll").read_text(encoding="utf-8") == source.read_text(
        encoding="utf-8"
    )
