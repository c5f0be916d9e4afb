"""Readers and writers of tagger.io: round trips, format details, located errors, real corpora,
property-based bad input, and lazy (streaming) reading."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.errors import DataError
from tagger.io import (
    UPOS_TAGS,
    LabeledText,
    Sentence,
    detect_format,
    read_conll,
    read_conllu,
    read_jsonl,
    read_sentences,
    read_tsv,
    write_conll,
    write_conllu,
    write_jsonl,
    write_sentences,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real corpora not found at {DATA} (shared/data beside the project)"
)

SENTENCES = [
    Sentence(["Paris", "is", "nice", "."], ["B-location", "O", "O", "O"]),
    Sentence(["Ünïcode", "ok"], ["B-product", "O"]),
    Sentence(["x"], ["O"]),
]


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _tokens_and_tags(sentences):
    return [(list(s.tokens), None if s.tags is None else list(s.tags)) for s in sentences]


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize(
    ("writer", "reader", "name"),
    [
        (write_conll, read_conll, "out.conll"),
        (write_conllu, read_conllu, "out.conllu"),
        (write_jsonl, read_jsonl, "out.jsonl"),
    ],
)
def test_round_trip_through_a_file(tmp_path, writer, reader, name):
    path = tmp_path / name
    assert writer(SENTENCES, path) == len(SENTENCES)
    assert _tokens_and_tags(reader(path)) == _tokens_and_tags(SENTENCES)


@pytest.mark.parametrize("fmt", ["conll", "conllu", "jsonl"])
def test_round_trip_with_predicted_tags_overriding_own_tags(tmp_path, fmt):
    predicted = [["X"] * len(s.tokens) for s in SENTENCES]
    path = tmp_path / f"pred.{fmt}"
    write_sentences(SENTENCES, path, tags=predicted)
    assert [s.tags for s in read_sentences(path)] == predicted


def test_write_conll_echoes_input_columns_then_the_predicted_tag(tmp_path):
    path = _write(tmp_path, "gold.conll", "EU NNP B-ORG\nrejects VBZ O\n")
    predicted = [["B-ORG", "B-ORG"]]
    out = io.StringIO()
    write_conll(read_conll(path), out, tags=predicted)
    assert out.getvalue() == "EU\tNNP\tB-ORG\tB-ORG\nrejects\tVBZ\tO\tB-ORG\n\n"
    # keep_columns=False converts instead: token and tag only.
    out = io.StringIO()
    write_conll(read_conll(path), out, keep_columns=False)
    assert out.getvalue() == "EU\tB-ORG\nrejects\tO\n\n"


def test_writers_accept_plain_token_lists_and_binary_streams():
    buffer = io.BytesIO()
    write_conll([["a", "b"]], buffer, tags=[["O", "B-x"]])
    assert buffer.getvalue() == b"a\tO\nb\tB-x\n\n"
    assert not buffer.closed  # the caller's stream stays open
    buffer = io.BytesIO()
    write_jsonl([["é"]], buffer)
    assert json.loads(buffer.getvalue().decode("utf-8")) == {"tokens": ["é"]}
    assert "é".encode() in buffer.getvalue()  # ensure_ascii=False: no \u escapes


def test_write_conllu_fills_only_id_form_and_the_tag_field():
    sentence = Sentence(
        ["Hi", "there"], ["INTJ", "ADV"], meta={"sent_id": "s1", "text": "Hi there"}
    )
    out = io.StringIO()
    write_conllu([sentence], out, tag_field="xpos")
    assert out.getvalue() == (
        "# sent_id = s1\n# text = Hi there\n"
        "1\tHi\t_\t_\tINTJ\t_\t_\t_\t_\t_\n2\tthere\t_\t_\tADV\t_\t_\t_\t_\t_\n\n"
    )
    [back] = read_conllu(io.StringIO(out.getvalue()), tag_field="xpos")
    assert back.meta == {"sent_id": "s1", "text": "Hi there"}
    assert back.tags == ["INTJ", "ADV"]


def test_write_jsonl_can_carry_meta():
    out = io.StringIO()
    write_jsonl([Sentence(["a"], ["O"], meta={"id": 7})], out, include_meta=True)
    assert json.loads(out.getvalue()) == {"tokens": ["a"], "tags": ["O"], "id": 7}
    [back] = read_jsonl(io.StringIO(out.getvalue()))
    assert back.meta == {"id": 7}


@pytest.mark.parametrize("writer", [write_conll, write_conllu, write_jsonl])
def test_writers_refuse_mismatched_tags(writer):
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        writer([["a", "b"]], io.StringIO(), tags=[["O"]])
    with pytest.raises(ValueError, match="fewer tag lists"):
        writer([["a"], ["b"]], io.StringIO(), tags=[["O"]])
    with pytest.raises(ValueError, match="more tag lists"):
        writer([["a"]], io.StringIO(), tags=[["O"], ["O"]])
    with pytest.raises(ValueError, match="no tokens"):
        writer([[]], io.StringIO())
    with pytest.raises(TypeError, match="list of tokens"):
        writer(["word"], io.StringIO())


@pytest.mark.parametrize("writer", [write_conll, write_conllu])
@pytest.mark.parametrize("token", ["a\tb", "a\nb", "", "a\rb"])
def test_line_based_writers_refuse_tokens_they_could_not_read_back(writer, token):
    with pytest.raises(ValueError, match="cannot be written"):
        writer([[token]], io.StringIO())


def test_sentence_refuses_parallel_lists_of_different_lengths():
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        Sentence(["a", "b"], ["O"])


# ---------------------------------------------------------------------------------------------
# CoNLL details

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O


German JJ B-NP B-MISC
-DOCSTART- -X- -X- O
Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER"""  # no blank line at the end, two blank lines in the middle


def test_conll_2003_docstart_blank_lines_and_last_sentence(tmp_path):
    path = _write(tmp_path, "eng.conll", CONLL_2003)
    sentences = list(read_conll(path))
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["German"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-MISC"], ["B-PER", "I-PER"]]
    assert [s.line for s in sentences] == [3, 7, 9]
    assert sentences[0].columns == [["EU", "NNP", "B-NP", "B-ORG"], ["rejects", "VBZ", "B-VP", "O"]]


def test_conll_tag_column_chooses_the_column(tmp_path):
    path = _write(tmp_path, "eng.conll", CONLL_2003)
    assert [s.tags for s in read_conll(path, tag_column=1)][0] == ["NNP", "VBZ"]
    assert [s.tags for s in read_conll(path, tag_column=2)][2] == ["B-NP", "I-NP"]


def test_conll_without_tags(tmp_path):
    path = _write(tmp_path, "text.conll", "Hello\nworld\n\n\n\nagain\n")
    sentences = list(read_conll(path, has_tags=False))
    assert [s.tokens for s in sentences] == [["Hello", "world"], ["again"]]
    assert all(s.tags is None for s in sentences)
    with pytest.raises(DataError, match="has_tags=False"):
        list(read_conll(path))


def test_conll_tab_separator_keeps_spaces_in_tokens_and_crlf_is_fine(tmp_path):
    path = _write(tmp_path, "spaces.conll", "New York\tB-location\r\nis\tO\r\n\r\n")
    [sentence] = read_conll(path, separator="\t")
    assert sentence.tokens == ["New York", "is"]
    assert sentence.tags == ["B-location", "O"]


def test_conll_splits_on_spaces_and_tabs_but_not_other_unicode_blanks(tmp_path):
    path = _write(tmp_path, "nbsp.conll", "a\u00a0b \t O\n")
    [sentence] = read_conll(path)
    assert sentence.tokens == ["a\u00a0b"]


def test_utf8_bom_is_not_part_of_the_first_token(tmp_path):
    path = _write(tmp_path, "bom.conll", b"\xef\xbb\xbfa O\n")
    assert next(read_conll(path)).tokens == ["a"]


# ---------------------------------------------------------------------------------------------
# CoNLL-U details

CONLLU = """# newdoc id = d1
# sent_id = s1
# text = Don't go.
# a comment without a value
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_


# sent_id = s2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_"""


def test_conllu_skips_multiword_tokens_and_empty_nodes_and_keeps_comments(tmp_path):
    path = _write(tmp_path, "en.conllu", CONLLU)
    first, second = read_conllu(path)
    assert first.tokens == ["Do", "n't", "go", "."]
    assert first.tags == ["AUX", "PART", "VERB", "PUNCT"]
    assert first.meta == {"newdoc id": "d1", "sent_id": "s1", "text": "Don't go."}
    assert first.line == 1 and second.line == 13
    assert len(first.columns[0]) == 10
    assert second.tokens == ["Yes"] and second.meta == {"sent_id": "s2"}


def test_conllu_xpos_instead_of_upos(tmp_path):
    path = _write(tmp_path, "en.conllu", CONLLU)
    assert next(read_conllu(path, tag_field="xpos")).tags == ["VBP", "RB", "VB", "."]
    with pytest.raises(ValueError, match="tag_field"):
        read_conllu(path, tag_field="deprel")


def test_conllu_keeps_underscore_tags(tmp_path):
    path = _write(tmp_path, "u.conllu", "1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n")
    assert next(read_conllu(path)).tags == ["_"]


# ---------------------------------------------------------------------------------------------
# Labeled TSV


def test_tsv_columns_by_name_or_index(tmp_path):
    path = _write(tmp_path, "d.tsv", "label\tcontent\n1\ta fine film .\n\n0\tdull\n")
    by_index = list(read_tsv(path))
    assert by_index == [
        LabeledText(["a", "fine", "film", "."], "1", 2),
        LabeledText(["dull"], "0", 4),
    ]
    assert list(read_tsv(path, text_column="content", label_column="label")) == by_index
    no_header = list(read_tsv(path, text_column=1, label_column=0, header=False))
    assert no_header[0] == LabeledText(["content"], "label", 1)
    with pytest.raises(ValueError, match="header"):
        read_tsv(path, text_column="content", header=False)


# ---------------------------------------------------------------------------------------------
# Errors: each names the file and the right line

BAD_INPUTS = [
    # (reader, options, file name, content, line, words of the message)
    (read_conll, {}, "cols.conll", b"a O\nb O\n\nc O x\n", 4, "expected 2 columns"),
    (read_conll, {"separator": "\t"}, "tok.conll", b"a\tO\n\tO\n", 2, "empty token"),
    (read_conll, {"separator": "\t"}, "tag.conll", b"a\tO\nb\t\n", 2, "empty tag"),
    (read_conll, {}, "utf.conll", b"a O\n\nb\xff O\n", 3, "UTF-8"),
    (read_conll, {"tag_column": 4}, "range.conll", b"\n\na O\n", 3, "out of range"),
    (read_conll, {}, "one.conll", b"a\n", 1, "same column"),
    (read_conllu, {}, "nine.conllu", b"# c\n1\ta\t_\tX\t_\t_\t_\t_\t_\n", 2, "10 tab-separated"),
    (read_conllu, {}, "id.conllu", b"1\ta" + b"\t_" * 8 + b"\nx\tb" + b"\t_" * 8 + b"\n", 2, "ID"),
    (read_conllu, {}, "form.conllu", b"\n1\t" + b"\t_" * 8 + b"\n", 2, "empty FORM"),
    (
        read_conllu,
        {},
        "seq.conllu",
        b"1\ta" + b"\t_" * 8 + b"\n1\tb" + b"\t_" * 8 + b"\n",
        2,
        "seq",
    ),
    (read_conllu, {}, "cmt.conllu", b"1\ta" + b"\t_" * 8 + b"\n# x = y\n", 2, "comment line"),
    (read_conllu, {}, "dangling.conllu", b"\n\n# x = y\n", 3, "no words"),
    (read_conllu, {}, "utf.conllu", b"1\ta\xff" + b"\t_" * 8 + b"\n", 1, "UTF-8"),
    (read_jsonl, {}, "json.jsonl", b'{"tokens": ["a"]}\n\n{"tokens": [\n', 3, "invalid JSON"),
    (read_jsonl, {}, "list.jsonl", b'["a"]\n', 1, "JSON object"),
    (read_jsonl, {}, "key.jsonl", b'{"words": ["a"]}\n', 1, '"tokens"'),
    (read_jsonl, {}, "str.jsonl", b'{"tokens": "a b"}\n', 1, "list of strings"),
    (read_jsonl, {}, "int.jsonl", b'{"tokens": ["a", 1]}\n', 1, '"tokens"[1]'),
    (read_jsonl, {}, "empty.jsonl", b'{"tokens": ["a", ""]}\n', 1, "empty string"),
    (read_jsonl, {}, "none.jsonl", b'{"tokens": []}\n', 1, "is empty"),
    (
        read_jsonl,
        {},
        "len.jsonl",
        b'{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"], "tags": []}',
        2,
        "1 tokens but 0 tags",
    ),
    (read_jsonl, {"require_tags": True}, "req.jsonl", b'{"tokens": ["a"]}\n', 1, "required"),
    (read_jsonl, {}, "utf.jsonl", b'{"tokens": ["\xc3"]}\n', 1, "UTF-8"),
    (read_tsv, {}, "cols.tsv", b"label\ttext\n1\ta\n0\tb\tc\n", 3, "expected 2 columns"),
    (read_tsv, {"text_column": "sentence"}, "name.tsv", b"label\ttext\n", 1, "no text column"),
    (read_tsv, {}, "text.tsv", b"label\ttext\n1\t  \n", 2, "empty text"),
]


@pytest.mark.parametrize(
    ("reader", "options", "name", "content", "line", "words"),
    BAD_INPUTS,
    ids=[case[2] for case in BAD_INPUTS],
)
def test_malformed_input_is_located(tmp_path, reader, options, name, content, line, words):
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError) as caught:
        list(reader(path, **options))
    assert caught.value.line == line
    assert caught.value.path == str(path)
    assert f"{name}:{line}: " in str(caught.value)
    assert words in str(caught.value)


def test_text_streams_report_bad_utf8_as_data_error(tmp_path):
    path = _write(tmp_path, "stream.conll", b"a O\n\nb\xff O\n")
    with open(path, encoding="utf-8") as text_file, pytest.raises(DataError, match="stream.conll"):
        list(read_conll(text_file))
    # stdin in a C locale decodes with surrogateescape: the bad byte is still caught, on its line.
    stream = io.TextIOWrapper(io.BytesIO(path.read_bytes()), errors="surrogateescape")
    with pytest.raises(DataError, match="<stream>:3: not valid UTF-8"):
        list(read_conll(stream))


def test_format_detection_and_dispatch(tmp_path):
    assert [detect_format(f"x{ext}") for ext in (".conll", ".CONLLU", ".jsonl", ".tsv")] == [
        "conll",
        "conllu",
        "jsonl",
        "tsv",
    ]
    with pytest.raises(DataError, match=r"\.conll, \.conllu, \.jsonl, \.tsv"):
        detect_format("notes.txt")
    path = _write(tmp_path, "a.tsv", "label\ttext\n1\thi\n")
    assert list(read_sentences(path)) == [LabeledText(["hi"], "1", 2)]
    assert next(read_sentences(io.StringIO("a O\n"), format="conll")).tags == ["O"]
    with pytest.raises(DataError, match="name the format"):
        read_sentences(io.StringIO("a O\n"))
    with pytest.raises(DataError, match="unknown format"):
        read_sentences(path, format="xml")
    with pytest.raises(DataError, match="cannot write"):
        write_sentences(SENTENCES, tmp_path / "out.tsv")


# ---------------------------------------------------------------------------------------------
# Real corpora


@needs_data
@pytest.mark.parametrize(("split", "count"), [("train", 3394), ("dev", 1009)])
def test_wnut17(split, count):
    path = DATA / "wnut17" / f"{split}.conll"
    sentences = list(read_conll(path))
    assert len(sentences) == count
    types = {"person", "location", "corporation", "product", "creative-work", "group"}
    tags = {tag for s in sentences for tag in s.tags}
    assert tags == {"O"} | {f"{prefix}-{kind}" for prefix in "BI" for kind in types}
    # The file is exactly what write_conll produces from what was read: nothing lost or added.
    out = io.StringIO()
    write_conll(sentences, out, keep_columns=False)
    assert out.getvalue() == path.read_text(encoding="utf-8")


@needs_data
def test_ud_ewt_dev():
    sentences = list(read_conllu(DATA / "ud_ewt" / "dev.conllu"))
    assert len(sentences) == 2001
    assert {tag for s in sentences for tag in s.tags} <= UPOS_TAGS
    assert all("sent_id" in s.meta and "text" in s.meta for s in sentences)


@needs_data
def test_sst2_dev():
    texts = list(read_tsv(DATA / "sst2" / "dev.tsv"))
    assert len(texts) == 872
    assert {text.label for text in texts} == {"0", "1"}
    assert texts[0].tokens == ["one", "long", "string", "of", "cliches", "."]


# ---------------------------------------------------------------------------------------------
# Properties

# U+FEFF is left out: at the start of a file it reads as a byte-order mark, not as text.
_whitespace_free_token = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="\ufeff"
    ),
    min_size=1,
    max_size=8,
).filter(lambda token: not any(c.isspace() for c in token) and token != "-DOCSTART-")
_tagged_sentences = st.lists(
    st.lists(st.tuples(_whitespace_free_token, _whitespace_free_token), min_size=1, max_size=6),
    min_size=1,
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(sentences=_tagged_sentences, separator=st.sampled_from([None, "\t"]))
def test_property_conll_round_trip(sentences, separator):
    records = [Sentence([t for t, _ in pairs], [g for _, g in pairs]) for pairs in sentences]
    out = io.StringIO()
    write_conll(records, out)
    back = list(read_conll(io.BytesIO(out.getvalue().encode("utf-8")), separator=separator))
    assert _tokens_and_tags(back) == _tokens_and_tags(records)


_any_token = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=100, deadline=None)
@given(
    sentences=st.lists(
        st.lists(st.tuples(_any_token, _any_token), min_size=1, max_size=6), min_size=1, max_size=5
    )
)
def test_property_jsonl_round_trip_is_exact(sentences):
    records = [Sentence([t for t, _ in pairs], [g for _, g in pairs]) for pairs in sentences]
    out = io.StringIO()
    write_jsonl(records, out)
    back = list(read_jsonl(io.BytesIO(out.getvalue().encode("utf-8"))))
    assert _tokens_and_tags(back) == _tokens_and_tags(records)


# Lines built from pieces that make valid and invalid files both likely.
_pieces = st.sampled_from(
    [b"a", b"O", b"B-x", b" ", b"\t", b"\n", b"\n\n", b"\r\n", b"\xff", b"\xc3\xa9", b"-DOCSTART-"]
)
_messy_bytes = st.one_of(st.binary(max_size=80), st.lists(_pieces, max_size=30).map(b"".join))


@settings(max_examples=100, deadline=None)
@given(data=_messy_bytes, separator=st.sampled_from([None, "\t"]), has_tags=st.booleans())
def test_property_conll_parses_or_raises_data_error(data, separator, has_tags):
    try:
        sentences = list(read_conll(io.BytesIO(data), separator=separator, has_tags=has_tags))
    except DataError as error:
        assert error.line is not None
        return
    # Every token line comes out as exactly one token: nothing dropped, nothing invented.
    lines = [x[:-1] if x.endswith(b"\r") else x for x in data.split(b"\n")]
    lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is not text
    first_fields = [
        re.split(rb"[ \t]+", x.strip(b" \t"))[0] if separator is None else x.split(b"\t")[0]
        for x in lines
        if x.strip(b" \t")
    ]
    n_token_lines = sum(field != b"-DOCSTART-" for field in first_fields)
    assert sum(len(s.tokens) for s in sentences) == n_token_lines
    assert all(token for s in sentences for token in s.tokens)


@settings(max_examples=100, deadline=None)
@given(data=_messy_bytes)
def test_property_other_readers_parse_or_raise_data_error(data):
    for reader in (read_conllu, read_jsonl, read_tsv):
        try:
            list(reader(io.BytesIO(data)))
        except DataError:
            pass


# ---------------------------------------------------------------------------------------------
# Laziness


class _GuardedLines:
    """Lines of a file that fail the test when read past ``limit``."""

    def __init__(self, text: str, limit: int):
        self.lines = iter(text.splitlines(keepends=True))
        self.limit = limit
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.read >= self.limit:
            raise AssertionError(f"the reader went on past line {self.limit}")
        self.read += 1
        return next(self.lines)


@pytest.mark.parametrize(
    ("reader", "first", "rest"),
    [
        (read_conll, "a O\nb O\n\n", "c O\n\n"),
        (read_conllu, "# sent_id = 1\n1\ta" + "\t_" * 8 + "\n\n", "1\tc" + "\t_" * 8 + "\n\n"),
        (read_jsonl, '{"tokens": ["a"]}\n', '{"tokens": ["c"]}\n'),
        (read_tsv, "label\ttext\n1\ta b\n", "0\tc\n"),
    ],
)
def test_first_sentence_is_read_without_reading_the_rest(reader, first, rest):
    lines = _GuardedLines(first + rest * 10_000, limit=first.count("\n"))
    next(reader(lines))
    assert lines.read == first.count("\n")


def test_reading_a_path_streams_in_constant_memory(tmp_path):
    path = _write(tmp_path, "big.conll", "a O\nb O\n\n" * 200_000)  # 2.4 MB
    sentences = read_conll(path)  # opens nothing yet
    with open(path, "rb") as binary_file:
        from_file = read_conll(binary_file)
        assert next(from_file).tokens == ["a", "b"]
        assert binary_file.tell() < 64 * 1024  # one buffer, not the whole file
    tracemalloc.start()
    try:
        assert next(sentences).tokens == ["a", "b"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # the 600,000 lines held at once would take some 30 MB
    sentences.close()
    missing = read_conll(tmp_path / "missing.conll")  # lazy: fails on first use
    with pytest.raises(FileNotFoundError):
        next(missing)
