"""Prediction records: the input comes back whole with the predictions added, and spans found in
raw text say where they lie in it (JSONL, text lines, the API, streams and the HTML view)."""

from __future__ import annotations

import html
import io
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tagger import SMALL, ner_data
from typer.testing import CliRunner

from tagger import SequenceClassifier, SequenceTagger
from tagger.cli import app
from tagger.errors import DataError
from tagger.estimators.tagger import EntitySpan
from tagger.io import read_conllu
from tagger.records import ReadErrors
from tagger.stream import tag_stream
from tagger.text.tokenize import make_offset_tokenizer, make_tokenizer
from tagger.workflows import predict_files

# Unicode, runs of spaces, tabs and a no-break space: offsets must point into this, not into the
# tokens joined by single spaces.
TEXTS = ["«  Mary\tlives in   San\u00a0Diego .  »",
         "😀 we  met\t\tAnna in  New \t York",
         "Zoë  lives in Rome ."]


@pytest.fixture(scope="module")
def model():
    X, y = ner_data(120)
    return SequenceTagger(**SMALL).fit(X, y)


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "ner.tagger"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def classifier():
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "awful"]
    X = [[str(w) for w in rng.choice(words, size=4)] for _ in range(60)]
    y = ["pos" if sum(w in ("good", "fine") for w in x) >= 2 else "neg" for x in X]
    return SequenceClassifier(hidden_size=8, word_dim=8, char_encoder=None, max_epochs=2,
                              random_state=0).fit(X, y)


def predict_text(model, path, **options) -> str:
    out = io.StringIO()
    predict_files(model, [str(path)], out, **options)
    return out.getvalue()


def jsonl(model, path) -> list[dict]:
    return [json.loads(line) for line in predict_text(model, path, output_format="jsonl")
            .splitlines()]


def covered(text: str, tokens: list[str], start: int, end: int) -> str:
    """The stretch of ``text`` from the first character of token ``start`` to the last of token
    ``end - 1``, found independently of the library (tokens in order, left to right)."""
    position, found = 0, []
    for token in tokens:
        at = text.index(token, position)
        found.append((at, at + len(token)))
        position = at + len(token)
    return text[found[start][0]:found[end - 1][1]]


# -- the input comes back whole ----------------------------------------------------------------


def test_jsonl_output_keeps_every_input_key_unchanged_and_in_order(model, tmp_path):
    records = [
        {"id": "doc-1", "tokens": ["Mary", "lives", "in", "Rome", "."],
         "tags": ["B-PER", "O", "O", "O", "O"], "meta": {"source": "news", "n": [1, 2]}},
        {"tags": None, "tokens": ["we", "met", "Anna"], "id": 7, "score": 0.5},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = jsonl(model, path)
    for given_record, written in zip(records, out, strict=True):
        keys = list(written)
        assert keys[:len(given_record)] == list(given_record)  # the input's keys, in order
        assert {k: written[k] for k in given_record} == given_record  # values untouched
        assert keys[len(given_record):] == ["pred_tags", "spans"]
        assert written["pred_tags"] == model.predict([given_record["tokens"]])[0]
    assert out[0]["tags"] == ["B-PER", "O", "O", "O", "O"]  # the gold tags, not predictions


def _strict_json(line: str):
    def refuse(name):
        raise AssertionError(f"{name} in the output is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_jsonl_output_gives_each_input_line_back_byte_for_byte(model, tmp_path):
    lines = [
        '{"tokens": ["Mary", "lives"], "n": 1.0e5, "big": 1e400, "tiny": -1E-400, "z": -0.0}',
        '{"id":1,"tokens":["we","met","Anna"],"id":2,"deep":{"a":[1,{"b":2E-3}],"c":{}}}',
        '  { "text" : "Zo\\u00eb  lives in \\"Rome\\" \\ud83d\\ude00" ,"x":[ ] }\t ',
        '{"tokens": ["Zoë"], "n": 12345678901234567890123, "f": 0.1000000000000000055511}',
    ]
    path = tmp_path / "exact.jsonl"
    # The last line ends in CRLF: the line ending is not part of the record.
    path.write_bytes(("\n".join(lines) + "\r\n").encode("utf-8"))
    written = predict_text(model, path, output_format="jsonl").split("\n")
    assert written[-1] == "" and len(written) == len(lines) + 1
    for given_line, line in zip(lines, written, strict=False):
        end = given_line.rindex("}")
        head, tail = given_line[:end], given_line[end:]
        assert line.startswith(head) and line.endswith(tail)
        added = _strict_json("{" + line[len(head):len(line) - len(tail)].lstrip(", ") + "}")
        parsed = json.loads(given_line)
        tokens = parsed.get("tokens") or model._tokenizer(parsed["text"])
        assert added == {**({} if "tokens" in parsed else {"tokens": tokens}),
                         "pred_tags": model.predict([tokens])[0], "spans": added["spans"]}
        _strict_json(line)  # valid JSON: 1e400 stays 1e400, not Infinity
    assert '"n": 1.0e5, "big": 1e400, "tiny": -1E-400, "z": -0.0' in written[0]
    assert '"id":1,' in written[1] and '"id":2,' in written[1]  # repeated keys both kept
    assert "Zo\\u00eb" in written[2] and "\\ud83d\\ude00" in written[2]  # escapes as written
    assert "12345678901234567890123" in written[3] and "0.1000000000000000055511" in written[3]


def test_jsonl_input_with_nan_or_infinity_is_malformed(model, tmp_path):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"tokens": ["a"]}\n{"tokens": ["b"], "x": NaN}\n'
                    '{"tokens": ["c"], "y": [-Infinity]}\n{"tokens": ["d"], "z": Infinity}\n'
                    '{"tokens": ["e"], "w": "NaN"}\n')
    with pytest.raises(DataError, match=r"nan.jsonl:2: NaN is not JSON"):
        predict_text(model, path, output_format="jsonl")
    errors = ReadErrors()
    out = predict_text(model, path, output_format="jsonl", on_error="skip", errors=errors)
    assert [_strict_json(line)["tokens"] for line in out.splitlines()] == [["a"], ["e"]]
    assert [(e.line, e.message.split(" is")[0]) for e in errors.skipped] == [
        (2, "NaN"), (3, "-Infinity"), (4, "Infinity")]


def test_jsonl_text_records_are_tokenised_by_the_model(model, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS))
                    + json.dumps({"text": ""}) + "\n")
    out = jsonl(model, path)
    assert [r["id"] for r in out[:3]] == [0, 1, 2] and [r["text"] for r in out[:3]] == TEXTS
    for written, text in zip(out, TEXTS, strict=False):
        assert list(written) == ["id", "text", "tokens", "pred_tags", "spans"]
        assert written["tokens"] == model._tokenizer(text)
        assert written["pred_tags"] == model.predict([written["tokens"]])[0]
    assert out[3] == {"text": "", "tokens": [], "pred_tags": [], "spans": []}
    assert sum(len(r["spans"]) for r in out) >= 3


def test_conll_to_jsonl_keeps_the_gold_tags(model, tmp_path):
    path = tmp_path / "in.conll"
    path.write_text("Mary\tB-PER\nlives\tO\nin\tO\nRome\tB-LOC\n\n")
    (written,) = jsonl(model, path)
    assert list(written) == ["tokens", "tags", "pred_tags", "spans"]
    assert written["tags"] == ["B-PER", "O", "O", "B-LOC"]


def test_classifier_jsonl_keeps_the_gold_label(classifier, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "r1", "tokens": ["good", "fine", "bad"], "label": "pos"})
                    + "\n" + json.dumps({"text": "awful  bad", "label": "neg"}) + "\n")
    first, second = jsonl(classifier, path)
    assert list(first) == ["id", "tokens", "label", "pred_label", "proba"]
    assert first["label"] == "pos" and second["label"] == "neg"
    assert first["pred_label"] == classifier.predict([["good", "fine", "bad"]])[0]
    assert list(second) == ["text", "label", "tokens", "pred_label", "proba"]
    assert second["tokens"] == ["awful", "bad"]
    assert abs(sum(second["proba"].values()) - 1) < 1e-5


def test_an_input_key_where_a_prediction_goes_is_refused(model, model_file, tmp_path):
    path = tmp_path / "again.jsonl"
    path.write_text(json.dumps({"tokens": ["Mary"]}) + "\n"
                    + json.dumps({"tokens": ["Anna"], "pred_tags": ["B-PER"]}) + "\n")
    with pytest.raises(DataError, match=r'again.jsonl:2: the input already has a "pred_tags"'):
        jsonl(model, path)
    result = CliRunner().invoke(app, ["predict", str(model_file), str(path), "--output-format",
                                      "jsonl"])
    assert result.exit_code == 1 and "already has a \"pred_tags\" key" in result.output
    assert "Traceback" not in result.output


def test_jsonl_records_without_tokens_or_text_are_clear_errors(model, tmp_path):
    path = tmp_path / "bad.jsonl"
    for line, message in [('{"text": 3}', '"text" must be a string, got int'),
                          ('{"words": ["a"]}', 'no "tokens" key .* or "text" key'),
                          ('[1]', "expected a JSON object"),
                          ('{"tokens": ["a"], "tags": []}', "1 tokens but 0 tags")]:
        path.write_text('{"text": "fine"}\n' + line + "\n")
        with pytest.raises(DataError, match="bad.jsonl:2: " + message):
            jsonl(model, path)


def test_tag_stream_gives_dicts_back_whole(model):
    items = [{"id": 1, "text": TEXTS[0]}, {"tokens": ["we", "met", "Anna"], "tags": None}]
    first, second = tag_stream(model, items, batch_size=1)
    assert list(first) == ["id", "text", "tokens", "pred_tags", "spans"]
    assert first["text"] == TEXTS[0] and items[0] == {"id": 1, "text": TEXTS[0]}
    for span in first["spans"]:
        assert first["text"][span["start_char"]:span["end_char"]] == covered(
            TEXTS[0], first["tokens"], span["start"], span["end"])
    assert list(second) == ["tokens", "tags", "pred_tags", "spans"] and second["tags"] is None


# -- character offsets ---------------------------------------------------------------------------

_TEXT = st.lists(st.sampled_from([*"aBé1,.'-😀", " ", "  ", "\t", "\u00a0", "\u3000", "\n"]),
                 max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_offset_tokenizers_give_the_same_tokens_and_where_they_are(text):
    for spec in ("regex", "whitespace", r"(\w)+", str.split, lambda s: s.lower().split()):
        tokens, offsets = make_offset_tokenizer(spec)(text)
        assert tokens == make_tokenizer(spec)(text)
        if offsets is not None:
            assert [text[a:b] for a, b in offsets] == tokens
        else:  # only a function that changes its tokens loses where they are
            assert tokens != text.split() and not isinstance(spec, str)


def test_predict_spans_on_strings_carries_character_offsets(model):
    spans = model.predict_spans(TEXTS)
    by_tokens = model.predict_spans([model._tokenizer(t) for t in TEXTS])
    assert spans == by_tokens  # the same (start, end, label, score) tuples
    assert sum(map(len, spans)) >= 3
    for text, found in zip(TEXTS, spans, strict=True):
        tokens = model._tokenizer(text)
        for span in found:
            start, end, label, score = span  # still a 4-tuple
            assert isinstance(span, EntitySpan) and span.label == label
            assert text[span.start_char:span.end_char] == covered(text, tokens, start, end)
    new_york = [s for s in spans[1] if s.label == "LOC"]
    assert [TEXTS[1][s.start_char:s.end_char] for s in new_york] == ["New \t York"]
    assert all(s.start_char is None for row in by_tokens for s in row)


def test_text_lines_and_stream_strings_carry_character_offsets(model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS) + "\n\n")
    written = jsonl(model, path)
    streamed = list(tag_stream(model, [t + "\n" for t in TEXTS]))
    assert [r["text"] for r in written] == TEXTS  # the lines as they are, spaces kept
    for text, out, result in zip(TEXTS, written, streamed, strict=True):
        assert out["spans"] == result["spans"]
        for span in out["spans"]:
            assert set(span) == {"start", "end", "label", "score", "start_char", "end_char"}
            assert text[span["start_char"]:span["end_char"]] == covered(
                text, out["tokens"], span["start"], span["end"])
    conll = tmp_path / "in.conll"
    conll.write_text("Mary\nlives\nin\nRome\n\n")
    assert all("start_char" not in s for s in jsonl(model, conll)[0]["spans"])  # no raw text


# -- the HTML view -----------------------------------------------------------------------------


def _shown(paragraph: str) -> str:
    """The text a paragraph of the view shows, without entity labels and line names."""
    paragraph = re.sub(r' ?<span class="(label|side)">[^<]*</span>', "", paragraph)
    return html.unescape(re.sub(r"<[^>]+>", "", paragraph))


def test_html_shows_raw_text_as_given(model, tmp_path):
    path = tmp_path / "in.txt"
    text = TEXTS[1] + " <b>&"
    path.write_text(text + "\n")
    page = predict_text(model, path, output_format="html")
    paragraphs = re.findall(r'<p class="sentence">(.*?)</p>', page, re.S)
    assert [_shown(p) for p in paragraphs] == [text]
    assert page.count("<mark") >= 2 and "&lt;b&gt;&amp;" in page
    assert " ".join(model._tokenizer(text)) not in _shown(page)  # never the tokens joined
    assert "white-space: pre-wrap" in page  # the runs of spaces and tabs show as they are


def test_html_shows_gold_beside_predicted(model, tmp_path):
    path = tmp_path / "gold.conll"
    path.write_text("we\tO\nmet\tO\nAnna\tB-PER\nin\tO\nRome\tB-LOC\n\n"
                    "Mary\tB-ORG\nlives\tO\n\n")
    page = predict_text(model, path, output_format="html")
    assert page.count('<div class="compare">') == 2
    predicted = re.findall(r'<p class="sentence">(.*?)</p>', page, re.S)
    gold = re.findall(r'<p class="sentence gold">(.*?)</p>', page, re.S)
    assert [_shown(p) for p in predicted] == [_shown(g) for g in gold] == [
        "we met Anna in Rome", "Mary lives"]
    assert re.findall(r'class="entity gold"[^>]*>([^<]*)<span class="label">(\w+)', gold[0]) == [
        ("Anna ", "PER"), ("Rome ", "LOC")]
    assert ">ORG<" in gold[1]
    assert 'class="entity"' in predicted[0] and "entity gold" not in "".join(predicted)
    untagged = tmp_path / "plain.conll"
    untagged.write_text("we\nmet\nAnna\n\n")
    assert "compare" not in predict_text(model, untagged, output_format="html").split("<body>")[1]


# -- CoNLL-U input -------------------------------------------------------------------------------

CONLLU_INPUT = ("# sent_id = 1\n# a comment with no key\n# another\n"
                "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
                "1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\tSpaceAfter=No\n"
                "2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_\n"
                "2.1\tgo\t_\t_\t_\t_\t_\t_\t1:conj\t_\n"
                "3\tMary\tMary\tPROPN\t_\t_\t1\tobj\t_\tNER=B-PER|SpaceAfter=No\n"
                "\n"
                "1\tRome\tRome\tPROPN\t_\tNumber=Sing\t0\troot\t_\t_\n\n")


def _word(line: str) -> bool:
    return not line.startswith("#") and line.split("\t")[0].isdigit()


def test_conllu_input_comes_back_as_conllu_with_the_predicted_tags(model, tmp_path):
    path = tmp_path / "in.conllu"
    path.write_text(CONLLU_INPUT)
    predicted = model.predict([["do", "n't", "Mary"], ["Rome"]])
    written = predict_text(model, path)  # CoNLL-U in: CoNLL-U out by default
    assert written == predict_text(model, path, output_format="conllu")
    given, lines = CONLLU_INPUT.split("\n"), written.split("\n")
    assert len(lines) == len(given)
    tags = iter(tag for sentence in predicted for tag in sentence)
    for before, after in zip(given, lines, strict=True):
        if not _word(before):  # comments, the multiword token, the empty node, blank lines
            assert after == before
            continue
        old, new = before.split("\t"), after.split("\t")
        assert new[:9] == old[:9]  # entity tags go to MISC: every other column as it was
        kept = [e for e in old[9].split("|") if e != "_" and not e.startswith("NER=")]
        assert new[9].split("|") == [*kept, f"NER={next(tags)}"]
    assert next(tags, None) is None
    with pytest.warns(UserWarning, match=r"CoNLL output keeps word lines only: 5 comment/"
                                         r"multiword/empty-node line\(s\) of CoNLL-U input"):
        conll = predict_text(model, path, output_format="conll")
    assert conll.split("\n")[0].split("\t")[1:] == ["do", "do", "AUX"] + ["_"] * 2 + [
        "0", "root", "_", "SpaceAfter=No", predicted[0][0]]


def test_the_command_writes_conllu_for_conllu_input(model_file, model, tmp_path):
    path, out = tmp_path / "in.conllu", tmp_path / "out.conllu"
    path.write_text(CONLLU_INPUT)
    result = CliRunner().invoke(app, ["predict", str(model_file), str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [line for line in out.read_text().split("\n") if not _word(line)] == [
        line for line in CONLLU_INPUT.split("\n") if not _word(line)]
    assert [s.tags for s in read_conllu(out, tag_field="ner")] == model.predict(
        [["do", "n't", "Mary"], ["Rome"]])
    text = tmp_path / "in.txt"
    text.write_text("Mary  lives in Rome\n")
    result = CliRunner().invoke(app, ["predict", str(model_file), str(text), "--output-format",
                                      "conllu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    [sentence] = read_conllu(out, tag_field="ner")
    assert sentence.meta == {"text": "Mary  lives in Rome"}
    assert sentence.tokens == ["Mary", "lives", "in", "Rome"]
    assert sentence.tags == model.predict([sentence.tokens])[0]
    with pytest.warns(UserWarning, match="5 comment/multiword/empty-node line"):
        result = CliRunner().invoke(app, ["predict", str(model_file), str(path),
                                          "--output-format", "conll"])
    assert result.exit_code == 0, result.output
