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
