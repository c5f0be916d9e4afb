"""Tests of tagger.html: well-formed, escaped, self-contained pages."""

import math
import re
from html.parser import HTMLParser

import pytest

from tagger.html import entity_page_end, entity_page_start, entity_sentence_html, report_page

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class _TagChecker(HTMLParser):
    """Tracks open tags and fails on a close tag that does not match the innermost open one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <line ... />: opened and closed at once
        self.tags.append(tag)

    def handle_endtag(self, tag):
        assert tag not in _VOID, f"closing void element </{tag}>"
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()


def check_balanced(page: str) -> _TagChecker:
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def check_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "@import" not in page and "url(" not in page


def _span(start, end, label, score=0.9):
    return {"start": start, "end": end, "label": label, "score": score}


def _background(mark: str) -> str:
    return re.search(r'style="background: (#[0-9a-f]{6})"', mark).group(1)


TAG_REPORT = {
    "task": "tag", "file": "dev<1>.conll", "n_examples": 12, "token_accuracy": 0.9512,
    "entities": {
        "PER": {"precision": 0.9, "recall": 0.8, "f1-score": 0.8471, "support": 10},
        "LOC": {"precision": 1.0, "recall": 0.5, "f1-score": 0.6667, "support": 4},
        "B&W<x>": {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1},
        "micro avg": {"precision": 0.9, "recall": 0.7, "f1-score": 0.78751, "support": 15},
        "macro avg": {"precision": 0.63, "recall": 0.43, "f1-score": 0.5046, "support": 15},
        "weighted avg": {"precision": 0.87, "recall": 0.67, "f1-score": 0.75, "support": 15},
    },
    "confusions": [{"gold": "B-PER", "predicted": "O", "count": 3},
                   {"gold": "<O>", "predicted": "I-LOC", "count": 1}],
}

CLASSIFY_REPORT = {
    "task": "classify", "file": "dev.tsv", "n_examples": 40, "accuracy": 0.825,
    "classes": {
        "pos": {"precision": 0.8, "recall": 0.9, "f1-score": 0.847, "support": 20},
        "neg": {"precision": 0.85, "recall": 0.75, "f1-score": 0.797, "support": 20},
        "macro avg": {"precision": 0.825, "recall": 0.825, "f1-score": 0.822, "support": 40},
        "weighted avg": {"precision": 0.825, "recall": 0.825, "f1-score": 0.822, "support": 40},
    },
    "confusions": [{"gold": "pos", "predicted": "neg", "count": 2}],
}

HISTORY = [{"epoch": 1, "loss": 12.5, "dev_score": 0.61},
           {"epoch": 2, "loss": 7.25, "dev_score": 0.74, "dev_loss": 8.0},
           {"epoch": 3, "loss": 5.0, "dev_score": 0.72, "dev_loss": 7.5}]


def _bars(page: str) -> str:
    return re.search(r'<svg class="bars".*?</svg>', page, re.S).group(0)


def _curves(page: str) -> list[str]:
    return re.findall(r'<svg class="curve".*?</svg>', page, re.S)


def _yticks(chart: str) -> list[str]:
    return re.findall(r'<text class="ytick"[^>]*>([^<]*)</text>', chart)


# ---------------------------------------------------------------------------- entity pages


def test_streamed_page_is_balanced_and_self_contained():
    sentences = [(["John", "lives", "in", "New", "York", "."],
                  [_span(0, 1, "PER", 0.97), _span(3, 5, "LOC", 0.88)]),
                 (["No", "entities", "here"], []),
                 (["<script>alert(1)</script>", "&", "Co"], [_span(0, 3, "ORG")])]
    page = entity_page_start("My <page>") + "".join(
        entity_sentence_html(t, s) for t, s in sentences) + entity_page_end()
    checker = check_balanced(page)
    check_self_contained(page)
    assert checker.doctype.lower() == "doctype html"
    assert checker.tags.count("style") == 1 and checker.tags.count("p") == 3
    assert '<html lang="en">' in page and '<meta charset="utf-8">' in page
    assert "<title>My &lt;page&gt;</title>" in page and "<h1>My &lt;page&gt;</h1>" in page


def test_tokens_are_escaped():
    html = entity_sentence_html(["<script>", "a&b", '"q"'], [_span(1, 2, "<X>")])
    check_balanced(html)
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "a&amp;b" in html and "&quot;q&quot;" in html
    assert '<span class="label">&lt;X&gt;</span>' in html and 'title="&lt;X&gt; 0.90"' in html


def test_spans_wrap_exactly_their_tokens():
    tokens = ["John", "Smith", "visited", "New", "York", "City", "today"]
    html = entity_sentence_html(tokens, [_span(3, 6, "LOC", 0.5), _span(0, 2, "PER", 0.974)])
    marks = re.findall(r"<mark [^>]*>(.*?) <span class=\"label\">(.*?)</span></mark>", html)
    assert marks == [("John Smith", "PER"), ("New York City", "LOC")]
    assert 'title="PER 0.97"' in html and 'title="LOC 0.50"' in html
    text = re.sub(r'<span class="label">.*?</span>', "", html)
    assert re.sub(r"<[^>]+>", "", text).split() == tokens
    assert html.startswith('<p class="sentence">')


def test_colours_are_per_type_and_stable():
    tokens = ["a", "b", "c", "d"]
    first = entity_sentence_html(tokens, [_span(0, 1, "PER"), _span(1, 2, "LOC"),
                                          _span(2, 3, "ORG"), _span(3, 4, "MISC")])
    marks = re.findall(r"<mark [^>]*>", first)
    colours = [_background(m) for m in marks]
    assert len(set(colours)) == 4
    second = entity_sentence_html(["x", "y", "z"], [_span(2, 3, "PER"), _span(0, 1, "ORG")])
    again = {m.split("</span>")[0][-3:]: _background(m)
             for m in re.findall(r"<mark .*?</mark>", second)}
    assert again == {"ORG": colours[2], "PER": colours[0]}
    # an uncommon type gets a colour that does not depend on the process (no hash())
    assert _background(entity_sentence_html(["q"], [_span(0, 1, "DISEASE")])) == \
        _background(entity_sentence_html(["r", "s"], [_span(1, 2, "DISEASE")]))


@pytest.mark.parametrize("spans", [
    [_span(0, 2, "PER"), _span(1, 3, "LOC")],
    [_span(1, 3, "PER"), _span(0, 2, "LOC")],
    [_span(0, 3, "PER"), _span(1, 2, "LOC")],
])
def test_overlapping_spans_raise(spans):
    with pytest.raises(ValueError, match="overlap"):
        entity_sentence_html(["a", "b", "c"], spans)


@pytest.mark.parametrize("span", [_span(2, 4, "PER"), _span(-1, 1, "PER"), _span(1, 1, "PER"),
                                  _span(3, 2, "PER")])
def test_spans_outside_the_tokens_raise(span):
    with pytest.raises(ValueError, match="outside"):
        entity_sentence_html(["a", "b", "c"], [span])


def test_adjacent_spans_and_missing_score():
    html = entity_sentence_html(["a", "b"], [_span(0, 1, "PER", None), _span(1, 2, "PER")])
    assert html.count("<mark") == 2 and 'title="PER"' in html


def test_classifier_badge():
    html = entity_sentence_html(["great", "<film>"], [], label="pos",
                                proba={"pos": 0.934, "neg": 0.066})
    check_balanced(html)
    assert "<mark" not in html and "great &lt;film&gt;" in html
    assert re.search(r'<span class="badge"[^>]*>pos 0\.93</span>', html)
    plain = entity_sentence_html(["ok"], [], label="<neg>")
    assert re.search(r'<span class="badge"[^>]*>&lt;neg&gt;</span>', plain)


def _visible(html: str) -> str:
    """The text a sentence shows, without its entity labels and line names."""
    import html as html_module

    html = re.sub(r' ?<span class="(label|side)">[^<]*</span>', "", html)
    return html_module.unescape(re.sub(r"<[^>]+>", "", html)).strip("\n")


def test_raw_text_is_shown_as_given():
    text = " «Zoë»  met\tJohn  Smith  in <New York>. "
    tokens = ["«", "Zoë", "»", "met", "John", "Smith", "in", "<", "New", "York", ">", "."]
    offsets, position = [], 0
    for token in tokens:
        position = text.index(token, position)
        offsets.append((position, position + len(token)))
        position += len(token)
    html = entity_sentence_html(tokens, [_span(4, 6, "PER"), _span(8, 10, "LOC")], text=text,
                                offsets=offsets)
    check_balanced(html)
    assert _visible(html) == text  # once, spaces and tabs as they are, never tokens joined
    marks = re.findall(r"<mark [^>]*>(.*?) <span class=\"label\">", html)
    assert marks == ["John  Smith", "New York"]
    assert "&lt;" in html and "<New" not in html
    with pytest.raises(ValueError, match="offsets"):
        entity_sentence_html(tokens, [], text=text)


def test_gold_is_shown_beside_predicted():
    tokens = ["Anna", "met", "Bo", "in", "Oslo"]
    html = entity_sentence_html(tokens, [_span(0, 1, "PER"), _span(4, 5, "ORG")],
                                gold=[{"start": 0, "end": 1, "label": "PER"},
                                      {"start": 2, "end": 3, "label": "PER"},
                                      {"start": 4, "end": 5, "label": "LOC"}])
    check_balanced(html)
    predicted, gold = re.findall(r'<p class="sentence( gold)?">(.*?)</p>', html)
    assert (predicted[0], gold[0]) == ("", " gold")
    assert _visible(predicted[1]) == _visible(gold[1]) == "Anna met Bo in Oslo"
    assert re.findall(r'class="entity gold"[^>]*>(\w+) <span class="label">(\w+)', gold[1]) == [
        ("Anna", "PER"), ("Bo", "PER"), ("Oslo", "LOC")]
    assert "entity gold" not in predicted[1] and predicted[1].count("<mark") == 2
    assert '<span class="side">predicted</span>' in predicted[1]
    with pytest.raises(ValueError, match="outside"):
        entity_sentence_html(tokens, [], gold=[{"start": 4, "end": 6, "label": "LOC"}])


# ---------------------------------------------------------------------------- report pages


def test_tagger_report_page():
    page = report_page(TAG_REPORT)
    check_balanced(page)
    check_self_contained(page)
    assert "entity micro F1 78.75%" in page
    assert "token accuracy 95.12%" in page
    assert "dev&lt;1&gt;.conll" in page and "dev<1>" not in page
    for name in ("PER", "LOC", "B&amp;W&lt;x&gt;", "micro avg", "macro avg", "weighted avg"):
        assert f"<td>{name}</td>" in page
    rows = re.findall(r"<tr[^>]*><td>(.*?)</td>", page)
    assert rows[:6] == ["PER", "LOC", "B&amp;W&lt;x&gt;", "micro avg", "macro avg",
                        "weighted avg"]
    assert "<td class=\"num\">84.71%</td>" in page and "<td class=\"num\">10</td>" in page
    bars = _bars(page)
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', bars)]
    assert bars.count("<rect") == 3
    assert widths[0] / widths[1] == pytest.approx(0.8471 / 0.6667, rel=1e-2)
    assert 0 < widths[2] <= 2 and "0.00%" in bars  # F1 0 is a visible sliver, not nothing
    assert "84.71%" in bars and "avg" not in bars
    assert "<td>&lt;O&gt;</td><td>I-LOC</td>" in page and "<td>B-PER</td><td>O</td>" in page
    assert _curves(page) == []


def test_tagger_report_without_entities_uses_token_accuracy():
    report = {"task": "tag", "file": "x", "n_examples": 1, "token_accuracy": 0.5,
              "confusions": []}
    page = report_page(report)
    check_balanced(page)
    assert "token accuracy 50.00%" in page and "<svg" not in page
    assert "No confusions" in page


def test_classifier_report_page():
    page = report_page(CLASSIFY_REPORT, title="Sentiment")
    check_balanced(page)
    assert "accuracy 82.50%" in page and "<title>Sentiment</title>" in page
    assert "<td>pos</td>" in page and "<td>neg</td>" in page
    assert _bars(page).count("<rect") == 2


def test_learning_curves():
    page = report_page(TAG_REPORT, HISTORY)
    check_balanced(page)
    check_self_contained(page)
    loss, score = _curves(page)
    assert "Training and dev loss per epoch" in loss and "Dev entity F1 per epoch" in score
    assert _yticks(loss) == ["0", "2.5", "5", "7.5", "10", "12.5"]
    assert _yticks(score) == ["0", "0.2", "0.4", "0.6", "0.8"]
    assert "0.74" in score and "0.61" in score
    for epoch in ("1", "2", "3"):
        assert f">{epoch}</text>" in loss and f">{epoch}</text>" in score
    assert "dev loss" in loss and loss.count("<polyline") == 2
    assert "best epoch 2" in score  # highest dev score
    marked = report_page({**TAG_REPORT, "best_epoch": 3}, HISTORY)
    assert "best epoch 3" in _curves(marked)[1] and "best epoch 2" not in marked


def test_curves_name_the_dev_metric_and_say_when_there_is_no_dev_loss():
    tagger_history = [{k: v for k, v in row.items() if k != "dev_loss"} for row in HISTORY]
    page = report_page(TAG_REPORT, tagger_history)
    loss, score = _curves(page)
    assert "Training loss per epoch" in loss and "dev loss" not in loss
    assert "No dev loss is recorded" in page and "entity F1" in page
    assert ">dev entity F1</text>" in score  # the legend names the measure too
    classifier = _curves(report_page(CLASSIFY_REPORT, HISTORY))
    assert "Dev accuracy per epoch" in classifier[1] and classifier[0].count("<polyline") == 2
    untyped = {"task": "tag", "file": "x", "n_examples": 1, "token_accuracy": 0.5,
               "confusions": []}
    assert "Dev token accuracy per epoch" in _curves(report_page(untyped, HISTORY))[1]


def _y(element: str) -> float:
    return float(re.search(r' y="([0-9.]+)"', element).group(1))


@pytest.mark.parametrize("best", [1, 2, 3])
def test_best_epoch_label_is_clear_of_the_legend_and_the_plot(best):
    for chart in _curves(report_page({**TAG_REPORT, "best_epoch": best}, HISTORY)):
        label = re.search(r'<text class="best"[^>]*>best epoch \d+</text>', chart).group(0)
        plot_top = min(_y(t) for t in re.findall(r'<text class="ytick"[^>]*>', chart)) - 4
        legends = re.findall(r'<g class="legend">.*?</g>', chart)
        assert legends and _y(label) < plot_top  # above the plot, the legend below it
        assert all(_y(re.search(r"<text[^>]*>", g).group(0)) > plot_top + 180 for g in legends)
        x = float(re.search(r' x="([0-9.]+)"', label).group(1))
        width = float(re.search(r'width="([0-9.]+)"', chart).group(1))
        anchor = re.search(r'text-anchor="(\w+)"', label).group(1)
        assert (x - 7 * len("best epoch 3") if anchor == "end" else x) >= 0
        assert (x if anchor == "end" else x + 7 * len("best epoch 3")) <= width


def test_history_with_nones_single_epoch_and_zeros():
    nones = [{"epoch": 1, "loss": 3.0, "dev_score": None},
             {"epoch": 2, "loss": 2.0, "dev_score": None}]
    page = report_page(TAG_REPORT, nones)
    check_balanced(page)
    assert len(_curves(page)) == 1 and "Dev score" not in page and "best epoch" not in page

    partial = [{"epoch": 1, "loss": 3.0, "dev_score": None},
               {"epoch": 2, "loss": 2.0, "dev_score": 0.5}]
    assert _curves(report_page(TAG_REPORT, partial))[1].count("<circle") == 1

    for history in ([{"epoch": 1, "loss": 0.7, "dev_score": 0.9}],
                    [{"epoch": 1, "loss": 0.0, "dev_score": 0.0},
                     {"epoch": 2, "loss": 0.0, "dev_score": 0.0}]):
        page = report_page(TAG_REPORT, history)
        check_balanced(page)
        assert len(_curves(page)) == 2 and "best epoch 1" in page
        assert "nan" not in page.lower()


def test_nan_and_missing_scores_render_as_na():
    report = {"task": "tag", "file": "f", "n_examples": 0, "token_accuracy": math.nan,
              "entities": {"PER": {"precision": None, "recall": math.nan,
                                   "f1-score": math.nan, "support": 0},
                           "micro avg": {"precision": 0.0, "recall": 0.0, "f1-score": None,
                                         "support": 0}},
              "confusions": []}
    history = [{"epoch": 1, "loss": math.nan, "dev_score": math.nan}]
    page = report_page(report, history)
    check_balanced(page)
    assert "entity micro F1 n/a" in page and "token accuracy n/a" in page
    assert "<td>PER</td><td class=\"num\">n/a</td>" in page
    assert _bars(page).count("<rect") == 0 and "n/a" in _bars(page)  # no score, no bar
    assert "nan" not in page.lower()
    assert _curves(page) == [] and "No loss or dev score" in page


def test_no_entity_types():
    report = {"task": "tag", "file": "f", "n_examples": 3, "token_accuracy": 1.0,
              "entities": {"micro avg": {"precision": 0.0, "recall": 0.0, "f1-score": 0.0,
                                         "support": 0}},
              "confusions": []}
    page = report_page(report, [])
    check_balanced(page)
    assert "entity micro F1 0.00%" in page and 'class="bars"' not in page
    assert "No type scores" in page


def test_numpy_indices_and_bad_indices():
    np = pytest.importorskip("numpy")
    html = entity_sentence_html(["a", "b"], [_span(np.int64(0), np.int64(2), "PER")])
    assert "<mark" in html and "a b <span" in html
    with pytest.raises(ValueError, match="integer"):
        entity_sentence_html(["a", "b"], [_span(0.0, 1.5, "PER")])
    with pytest.raises(ValueError, match="integer"):
        entity_sentence_html(["a", "b"], [{"label": "PER"}])
