"""Self-contained HTML views: entity-highlighted sentences and evaluation reports.

Everything is plain string building with the standard library: every text is escaped with
:func:`html.escape`, the style sheet is one inline ``<style>`` block, charts are inline ``<svg>``,
and there is no JavaScript and nothing fetched from elsewhere, so a page can be opened offline or
attached to an e-mail. Entity pages are streamed: write :func:`entity_page_start`, then one
:func:`entity_sentence_html` per sentence, then :func:`entity_page_end`.

Each entity type has one colour on every page: the CoNLL and OntoNotes types have fixed colours
(so ``PER``, ``LOC``, ``ORG`` and ``MISC`` never share one), and any other type gets a colour of
the same palette indexed by the CRC-32 of its name (Python's ``hash`` changes between processes).
"""

from __future__ import annotations

import math
import operator
import zlib
from html import escape

__all__ = ["entity_page_end", "entity_page_start", "entity_sentence_html", "report_page"]

_PALETTE = ("#ffadad", "#a0c4ff", "#caffbf", "#ffd6a5", "#bdb2ff", "#fdffb6",
            "#9bf6ff", "#ffc6ff", "#d0f4de", "#fcd5ce", "#e4c1f9", "#b9fbc0")
_FIXED = {"PER": 0, "PERSON": 0, "LOC": 1, "ORG": 2, "MISC": 3, "GPE": 4, "DATE": 5,
          "TIME": 6, "MONEY": 7, "NORP": 8, "EVENT": 9, "PRODUCT": 10, "CARDINAL": 11}

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.6; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.sentence { margin: 0.6rem 0; white-space: pre-wrap; }
.compare { margin: 0.8rem 0; } .compare .sentence { margin: 0.1rem 0; }
.side { display: inline-block; width: 5.5em; font-size: 0.75em; color: #666; }
.entity { padding: 0.1em 0.3em; border-radius: 0.3em; }
.entity.gold { outline: 2px dashed #555; outline-offset: -2px; }
.label, .badge { font-size: 0.7em; font-weight: bold; text-transform: uppercase; }
.label { margin-left: 0.3em; color: #444; }
.badge { margin-left: 0.6em; padding: 0.1em 0.5em; border-radius: 0.3em; }
.headline { font-size: 2rem; font-weight: bold; margin: 0.5rem 0; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { padding: 0.2rem 0.7rem; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.avg td { font-style: italic; background: #f6f6f6; }
svg { display: block; margin: 0.5rem 0; font-size: 11px; }
"""


def _colour(name: str) -> str:
    """The background colour of an entity type (the same in every process)."""
    index = _FIXED.get(name)
    if index is None:
        index = zlib.crc32(name.encode("utf-8")) % len(_PALETTE)
    return _PALETTE[index]


def _number(value) -> float | None:
    """``value`` as a finite float, or None for None, NaN, infinities and non-numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pct(value) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{100 * number:.2f}%"


def _short(value) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.4g}"


def entity_page_start(title: str = "tagger") -> str:
    """The start of a streamed HTML page of sentences.

    Parameters
    ----------
    title : str
        Page title, shown in the browser tab and as the heading.

    Returns
    -------
    str
        Doctype, ``<head>`` with the inline style sheet, the opening ``<body>`` and an ``<h1>``;
        close the page with :func:`entity_page_end`.
    """
    text = escape(title)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{text}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{text}</h1>\n")


def entity_page_end() -> str:
    """The end of a page opened with :func:`entity_page_start`.

    Returns
    -------
    str
        The closing ``</body>`` and ``</html>`` tags.
    """
    return "</body>\n</html>\n"


def _check_spans(spans: list[dict], n_tokens: int) -> list[dict]:
    """The spans sorted by start; ValueError for spans out of range or overlapping."""
    checked = []
    for span in spans:
        try:  # NumPy integers are fine, floats and strings are not
            start, end = operator.index(span["start"]), operator.index(span["end"])
        except (KeyError, TypeError):
            raise ValueError(f"entity span needs integer 'start' and 'end': {span!r}") from None
        if not 0 <= start < end <= n_tokens:
            raise ValueError(f"entity span [{start}, {end}) ({span.get('label')!r}) is empty or "
                             f"outside the sentence's {n_tokens} tokens")
        checked.append({**span, "start": start, "end": end})
    checked.sort(key=lambda s: (s["start"], s["end"]))
    for previous, span in zip(checked, checked[1:], strict=False):
        if span["start"] < previous["end"]:
            raise ValueError(f"entity spans overlap: [{previous['start']}, {previous['end']}) "
                             f"({previous.get('label')!r}) and [{span['start']}, {span['end']}) "
                             f"({span.get('label')!r})")
    return checked


def entity_sentence_html(tokens: list[str], spans: list[dict], label: str | None = None,
                         proba: dict | None = None, *, text: str | None = None,
                         offsets: list[tuple[int, int]] | None = None,
                         gold: list[dict] | None = None) -> str:
    """One sentence as a ``<p class="sentence">`` with its entities highlighted.

    Parameters
    ----------
    tokens : list of str
        The sentence's tokens, shown joined by single spaces (unless ``text`` is given).
    spans : list of dict
        Entities, each with ``start``, ``end`` (exclusive token indices), ``label`` and ``score``
        (0..1, or None); each is wrapped in a ``<mark>`` coloured by its type.
    label : str, optional
        For a classifier: the predicted label, shown as a badge after the text.
    proba : dict, optional
        Class probabilities; ``proba[label]`` is shown in the badge when present.
    text : str, optional
        The raw text the tokens were read from, shown as it is (spaces and tabs kept) instead
        of the tokens; needs ``offsets``.
    offsets : list of (int, int), optional
        Where each token lies in ``text``.
    gold : list of dict, optional
        Gold entities (``start``, ``end``, ``label``): the sentence is then shown twice, the
        predicted entities over the gold ones (``<p class="sentence gold">``, marks of class
        ``entity gold``), each line named.

    Returns
    -------
    str
        The paragraph (with ``gold``: a ``<div class="compare">`` of two), every text escaped.

    Raises
    ------
    ValueError
        If spans overlap, are empty, or fall outside the tokens, or if ``text`` comes without
        one offset per token.
    """
    if text is not None and (offsets is None or len(offsets) != len(tokens)):
        raise ValueError(f"text needs the offsets of its {len(tokens)} tokens, got "
                         f"{'none' if offsets is None else len(offsets)}")
    body = _marked(tokens, _check_spans(spans, len(tokens)), text, offsets, "entity")
    if label is not None:
        name = str(label)
        p = _number(proba.get(label, proba.get(name))) if proba else None
        shown = name if p is None else f"{name} {p:.2f}"
        body += (f' <span class="badge" style="background: {_colour(name)}">{escape(shown)}'
                 f"</span>")
    if gold is None:
        return f'<p class="sentence">{body}</p>\n'
    gold_body = _marked(tokens, _check_spans(gold, len(tokens)), text, offsets, "entity gold")
    return (f'<div class="compare">\n<p class="sentence"><span class="side">predicted</span>'
            f'{body}</p>\n<p class="sentence gold"><span class="side">gold</span>{gold_body}'
            f"</p>\n</div>\n")


def _marked(tokens: list[str], ordered: list[dict], text: str | None,
            offsets: list[tuple[int, int]] | None, css: str) -> str:
    """The sentence's text, escaped, with each of the ordered spans in a ``<mark>``: the raw text
    between the spans as it is, or else the tokens joined by single spaces."""
    pieces: list[str] = []
    position = 0  # a character of text, or a token
    for span in ordered:
        name = str(span["label"])
        score = _number(span.get("score"))
        tip = name if score is None else f"{name} {score:.2f}"
        if text is not None:
            start, end = offsets[span["start"]][0], offsets[span["end"] - 1][1]
            pieces.append(escape(text[position:start]))
            words = escape(text[start:end])
        else:
            start, end = span["start"], span["end"]
            pieces.extend(escape(token) + " " for token in tokens[position:start])
            words = " ".join(escape(token) for token in tokens[start:end])
        pieces.append(f'<mark class="{css}" style="background: {_colour(name)}" '
                      f'title="{escape(tip)}">{words} <span class="label">{escape(name)}</span>'
                      f"</mark>")
        if text is None and end < len(tokens):
            pieces.append(" ")
        position = end
    if text is not None:
        pieces.append(escape(text[position:]))
    else:
        pieces.append(" ".join(escape(token) for token in tokens[position:]))
    return "".join(pieces)


def _bar_chart(rows: dict[str, dict]) -> str:
    """Horizontal bars of F1 per type, one ``<rect>`` per row, as inline SVG.

    A bar is at least two pixels wide, so that an F1 of 0 shows as a bar at the axis rather than
    as nothing (a missing score, shown "n/a", has no bar).
    """
    names = list(rows)
    label_w = min(200, 8 + 7 * max(len(n) for n in names))
    bar_w, row_h = 300, 22
    width, height = label_w + bar_w + 70, row_h * len(names) + 8
    parts = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="F1 per type">',
             f'<line x1="{label_w}" y1="2" x2="{label_w}" y2="{height - 2}" stroke="#333"/>']
    for i, name in enumerate(names):
        f1 = _number(rows[name].get("f1-score"))
        y = 4 + i * row_h
        shown = name if len(name) <= 28 else name[:27] + "\u2026"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
                     f"{escape(shown)}</text>")
        length = 0.0
        if f1 is not None:
            length = max(bar_w * min(max(f1, 0.0), 1.0), 2.0)
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" '
                         f'height="{row_h - 6}" fill="{_colour(name)}" stroke="#666">'
                         f"<title>{escape(name)} F1 {_pct(f1)}</title></rect>")
        parts.append(f'<text x="{label_w + length + 5:.1f}" y="{y + 15}">{_pct(f1)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2, 2.5 or 5 times a power of ten) from ``low``
    (itself a multiple of the step, 0 for non-negative data) up to at least ``high``."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _tick_label(value: float) -> str:
    return f"{value:.6g}"


def _line_chart(title: str, series: list[tuple[str, str, list[tuple[int, float]]]],
                best: int | None = None, y_label: str = "") -> str:
    """A line chart over epochs as inline SVG.

    The value axis starts at zero (below it only for negative values) with round ticks and
    grid lines, so that the height of a curve reads as its size; the epochs are numbered; the
    legend sits under the chart and the label of the ``best`` epoch's dashed line above the
    plot, where neither can cover the other or a curve. ``series`` holds (name, colour, points).
    """
    points = [p for _, _, pts in series for p in pts]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    ticks = _ticks(min(ys), max(ys))
    y0, y1 = ticks[0], ticks[-1]
    left, top, w, h = 64, 40, 420, 180
    legend_y = top + h + 54
    width, height = left + w + 20, legend_y + 10

    def sx(x: float) -> float:
        return left + (w / 2 if x1 == x0 else (x - x0) / (x1 - x0) * w)

    def sy(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    parts = [f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>']
    for value in ticks:
        y = sy(value)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" '
                     f'stroke="#e4e4e4"/><line x1="{left - 4}" y1="{y:.1f}" x2="{left}" '
                     f'y2="{y:.1f}" stroke="#333"/><text class="ytick" x="{left - 7}" '
                     f'y="{y + 4:.1f}" text-anchor="end">{_tick_label(value)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#333"/>'
                 f'<line x1="{left}" y1="{sy(max(y0, 0.0)):.1f}" x2="{left + w}" '
                 f'y2="{sy(max(y0, 0.0)):.1f}" stroke="#333"/>')
    if y_label:
        parts.append(f'<text x="14" y="{top + h / 2:.0f}" text-anchor="middle" '
                     f'transform="rotate(-90 14 {top + h / 2:.0f})">{escape(y_label)}</text>')
    epochs = sorted(set(xs))
    step = math.ceil(len(epochs) / 12)
    for epoch in epochs[::step] + ([epochs[-1]] if (len(epochs) - 1) % step else []):
        parts.append(f'<text class="xtick" x="{sx(epoch):.1f}" y="{top + h + 16}" '
                     f'text-anchor="middle">{epoch}</text>')
    parts.append(f'<text x="{left + w / 2:.0f}" y="{top + h + 32}" text-anchor="middle">'
                 f"epoch</text>")
    if best is not None and x0 <= best <= x1:
        x = sx(best)
        # Above the plot, on the side of the line with room for the text.
        anchor, dx = ("end", -4) if x > left + w / 2 else ("start", 4)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + h}" '
                     f'stroke="#c00" stroke-dasharray="4 3"/><text class="best" '
                     f'x="{x + dx:.1f}" y="{top - 10}" text-anchor="{anchor}" fill="#c00">'
                     f"best epoch {best}</text>")
    legend_x = left
    for name, colour, pts in series:
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"/>')
        parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                     f"<title>{escape(name)} epoch {x}: {_short(y)}</title></circle>"
                     for x, y in pts)
        parts.append(f'<g class="legend"><line x1="{legend_x}" y1="{legend_y - 4}" '
                     f'x2="{legend_x + 18}" y2="{legend_y - 4}" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{legend_x + 22}" y="{legend_y}">'
                     f"{escape(name)}</text></g>")
        legend_x += 40 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _curves(history: list[dict], best: int | None, metric: str = "score") -> str:
    """The learning curves of a training history: the training loss, beside the dev loss when
    the history records one, and the dev score, named ``metric`` (e.g. "entity F1")."""
    def points(key: str) -> list[tuple[int, float]]:
        pts = [(i + 1 if row.get("epoch") is None else int(row["epoch"]), _number(row.get(key)))
               for i, row in enumerate(history)]
        return [(x, y) for x, y in pts if y is not None]

    scores = points("dev_score")
    if best is None and scores:
        best = max(scores, key=lambda p: p[1])[0]
    training, dev = points("loss"), points("dev_loss")
    parts = ["<h2>Learning curves</h2>"]
    if dev:
        parts.append(_line_chart("Training and dev loss per epoch",
                                 [s for s in (("training loss", "#1f77b4", training),
                                              ("dev loss", "#ff7f0e", dev)) if s[2]],
                                 best, "loss"))
    elif training:
        parts.append(_line_chart("Training loss per epoch",
                                 [("training loss", "#1f77b4", training)], best, "loss"))
        if scores:
            # Taggers score the dev set by its tags, not by the training objective.
            parts.append(f'<p class="meta">No dev loss is recorded for this model: the dev '
                         f"set is measured by its {escape(metric)}, below.</p>")
    if scores:
        parts.append(_line_chart(f"Dev {metric} per epoch",
                                 [(f"dev {metric}", "#2ca02c", scores)], best, metric))
    if len(parts) == 1:
        parts.append("<p>No loss or dev score recorded.</p>")
    return "\n".join(parts)


def report_page(report: dict, history: list[dict] | None = None,
                title: str = "Evaluation report") -> str:
    """A complete self-contained HTML page for an evaluation report.

    Parameters
    ----------
    report : dict
        As returned by :func:`tagger.workflows.evaluate`: ``task``, ``file``, ``n_examples``,
        ``confusions``; for a tagger ``token_accuracy`` and optionally ``entities``; for a
        classifier ``accuracy`` and ``classes``. An optional ``best_epoch`` marks the curves.
    history : list of dict, optional
        Per-epoch ``epoch``, ``loss``, ``dev_score`` (or None) and optionally ``dev_loss``;
        when given, the page has learning curves.
    title : str
        Page title and heading.

    Returns
    -------
    str
        The page: headline score, per-type (per-class) table with the averages last, an SVG bar
        chart of F1, the confusions, and the learning curves. Missing or NaN scores read "n/a".
    """
    classify = report.get("task") == "classify"
    table = report.get("classes" if classify else "entities") or {}
    rows = {str(k): v for k, v in table.items() if isinstance(v, dict)}
    types = {k: v for k, v in rows.items() if not k.endswith(" avg")}
    averages = {k: v for k, v in rows.items() if k.endswith(" avg")}
    if classify:
        headline, score = "accuracy", report.get("accuracy")
    elif "micro avg" in averages:
        headline, score = "entity micro F1", averages["micro avg"].get("f1-score")
    else:
        headline, score = "token accuracy", report.get("token_accuracy")
    unit = "texts" if classify else "sentences"
    parts = [entity_page_start(title),
             f'<p class="meta">{escape(str(report.get("file", "")))}: '
             f"{escape(str(report.get('n_examples', 'n/a')))} {unit}</p>",
             f'<p class="headline">{escape(headline)} {_pct(score)}</p>']
    if not classify and headline != "token accuracy":
        parts.append(f"<p>token accuracy {_pct(report.get('token_accuracy'))}</p>")

    kind = "class" if classify else "type"
    parts.append(f"<h2>Scores per {kind}</h2>")
    if rows:
        parts.append(f"<table>\n<tr><th>{kind}</th><th>precision</th><th>recall</th>"
                     f"<th>F1</th><th>support</th></tr>")
        for name, row in [*types.items(), *averages.items()]:
            support = row.get("support")
            css = ' class="avg"' if name in averages else ""
            parts.append(f"<tr{css}>"
                         f"<td>{escape(name)}</td>"
                         + "".join(f'<td class="num">{_pct(row.get(k))}</td>'
                                   for k in ("precision", "recall", "f1-score"))
                         + f'<td class="num">{"n/a" if support is None else escape(str(support))}'
                         f"</td></tr>")
        parts.append("</table>")
    if types:
        parts.append(_bar_chart(types))
    else:
        parts.append(f"<p>No {kind} scores.</p>")

    parts.append("<h2>Most frequent confusions</h2>")
    confusions = report.get("confusions") or []
    if confusions:
        parts.append("<table>\n<tr><th>gold</th><th>predicted</th><th>count</th></tr>")
        parts.extend(f"<tr><td>{escape(str(c.get('gold')))}</td>"
                     f"<td>{escape(str(c.get('predicted')))}</td>"
                     f'<td class="num">{escape(str(c.get("count")))}</td></tr>'
                     for c in confusions)
        parts.append("</table>")
    else:
        parts.append("<p>No confusions.</p>")

    if history:
        best = _number(report.get("best_epoch"))
        # The estimators' dev score: entity F1 for entity tags, token accuracy for other tags,
        # accuracy for a classifier (the headline's measure, averaged over the dev set).
        metric = ("accuracy" if classify else "entity F1" if "micro avg" in averages
                  else "token accuracy")
        parts.append(_curves(history, None if best is None else int(best), metric))
    parts.append(entity_page_end())
    return "\n".join(parts)
