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
.sentence { margin: 0.6rem 0; }
.entity { padding: 0.1em 0.3em; border-radius: 0.3em; }
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
                         proba: dict | None = None) -> str:
    """One sentence as a ``<p class="sentence">`` with its entities highlighted.

    Parameters
    ----------
    tokens : list of str
        The sentence's tokens, shown joined by single spaces.
    spans : list of dict
        Entities, each with ``start``, ``end`` (exclusive token indices), ``label`` and ``score``
        (0..1, or None); each is wrapped in a ``<mark>`` coloured by its type.
    label : str, optional
        For a classifier: the predicted label, shown as a badge after the text.
    proba : dict, optional
        Class probabilities; ``proba[label]`` is shown in the badge when present.

    Returns
    -------
    str
        The paragraph, with every text escaped.

    Raises
    ------
    ValueError
        If spans overlap, are empty, or fall outside the tokens.
    """
    ordered = _check_spans(spans, len(tokens))
    pieces: list[str] = []
    position = 0
    for span in ordered:
        pieces.extend(escape(token) for token in tokens[position:span["start"]])
        name = str(span["label"])
        score = _number(span.get("score"))
        tip = name if score is None else f"{name} {score:.2f}"
        words = " ".join(escape(token) for token in tokens[span["start"]:span["end"]])
        pieces.append(f'<mark class="entity" style="background: {_colour(name)}" '
                      f'title="{escape(tip)}">{words} <span class="label">{escape(name)}</span>'
                      f"</mark>")
        position = span["end"]
    pieces.extend(escape(token) for token in tokens[position:])
    text = " ".join(pieces)
    if label is not None:
        name = str(label)
        p = _number(proba.get(label, proba.get(name))) if proba else None
        shown = name if p is None else f"{name} {p:.2f}"
        text += (f' <span class="badge" style="background: {_colour(name)}">{escape(shown)}'
                 f"</span>")
    return f'<p class="sentence">{text}</p>\n'


def _bar_chart(rows: dict[str, dict]) -> str:
    """Horizontal bars of F1 per type, one ``<rect>`` per row, as inline SVG."""
    names = list(rows)
    label_w = min(200, 8 + 7 * max(len(n) for n in names))
    bar_w, row_h = 300, 22
    width, height = label_w + bar_w + 70, row_h * len(names) + 8
    parts = [f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="F1 per type">']
    for i, name in enumerate(names):
        f1 = _number(rows[name].get("f1-score"))
        length = 0.0 if f1 is None else bar_w * min(max(f1, 0.0), 1.0)
        y = 4 + i * row_h
        shown = name if len(name) <= 28 else name[:27] + "\u2026"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
                     f"{escape(shown)}</text>"
                     f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row_h - 6}" '
                     f'fill="{_colour(name)}" stroke="#666"><title>{escape(name)} F1 '
                     f"{_pct(f1)}</title></rect>"
                     f'<text x="{label_w + length + 5:.1f}" y="{y + 15}">{_pct(f1)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(title: str, series: list[tuple[str, str, list[tuple[int, float]]]],
                best: int | None = None) -> str:
    """A line chart over epochs as inline SVG: axes, min/max ticks, epoch numbers, a legend,
    and a dashed line at the ``best`` epoch. ``series`` holds (name, colour, points)."""
    points = [p for _, _, pts in series for p in pts]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    left, top, w, h = 60, 24, 420, 180
    width, height = left + w + 20, top + h + 40

    def sx(x: float) -> float:
        return left + (w / 2 if x1 == x0 else (x - x0) / (x1 - x0) * w)

    def sy(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    parts = [f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>']
    for value in (y0, y1):
        parts.append(f'<text x="{left - 5}" y="{sy(value) + 4:.1f}" text-anchor="end">'
                     f"{_short(value)}</text>")
    epochs = sorted(set(xs))
    step = math.ceil(len(epochs) / 12)
    for epoch in epochs[::step] + ([epochs[-1]] if (len(epochs) - 1) % step else []):
        parts.append(f'<text x="{sx(epoch):.1f}" y="{top + h + 16}" text-anchor="middle">'
                     f"{epoch}</text>")
    parts.append(f'<text x="{left + w / 2:.0f}" y="{top + h + 34}" text-anchor="middle">'
                 f"epoch</text>")
    if best is not None and x0 <= best <= x1:
        parts.append(f'<line x1="{sx(best):.1f}" y1="{top}" x2="{sx(best):.1f}" y2="{top + h}" '
                     f'stroke="#c00" stroke-dasharray="4 3"/><text x="{sx(best) + 4:.1f}" '
                     f'y="{top + 12}" fill="#c00">best epoch {best}</text>')
    for k, (name, colour, pts) in enumerate(series):
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"/>')
        parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                     f"<title>{escape(name)} epoch {x}: {_short(y)}</title></circle>"
                     for x, y in pts)
        parts.append(f'<text x="{left + w - 4}" y="{top + 12 + 14 * k}" text-anchor="end" '
                     f'fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curves(history: list[dict], best: int | None) -> str:
    """The learning curves of a training history: loss, and dev score when there is one."""
    def points(key: str) -> list[tuple[int, float]]:
        pts = [(i + 1 if row.get("epoch") is None else int(row["epoch"]), _number(row.get(key)))
               for i, row in enumerate(history)]
        return [(x, y) for x, y in pts if y is not None]

    scores = points("dev_score")
    if best is None and scores:
        best = max(scores, key=lambda p: p[1])[0]
    losses = [s for s in (("training loss", "#1f77b4", points("loss")),
                          ("dev loss", "#ff7f0e", points("dev_loss"))) if s[2]]
    parts = ["<h2>Learning curves</h2>"]
    if losses:
        parts.append(_line_chart("Loss per epoch", losses, best))
    if scores:
        parts.append(_line_chart("Dev score per epoch", [("dev score", "#2ca02c", scores)], best))
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
        parts.append(_curves(history, None if best is None else int(best)))
    parts.append(entity_page_end())
    return "\n".join(parts)
