"""Tag schemes (IOB1, IOB2, BIOES): detection, entity spans, conversion, CRF constraints, repair.

A scheme tag is ``"O"`` or ``"<prefix>-<type>"`` with a one-letter prefix (``B``, ``I``, ``E``,
``S``) and a non-empty type that may itself contain hyphens (``"B-creative-work"`` has the type
``"creative-work"``: tags split on the *first* hyphen).

Entities are read the way conlleval and seqeval's default (non-strict) mode read them, whatever
the scheme: a chunk starts at ``B-``/``S-``, and at an ``I-``/``E-`` that does not continue a
``B-``/``I-`` of the same type; it ends before ``B-``/``S-``/``O``, after ``E-``/``S-``, and where
the type changes. That reading is lenient, so ill-formed predictions (``O I-x``) still score the
way the usual tools score them, and the same reader serves all three schemes.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from tagger.errors import DataError

__all__ = [
    "SCHEMES",
    "Span",
    "convert_tags",
    "detect_scheme",
    "normalize_scheme",
    "repair_tags",
    "spans_from_tags",
    "tags_from_spans",
    "transition_constraints",
]

#: The scheme names this module knows; ``"none"`` means plain token classification (POS tags...).
SCHEMES = ("IOB1", "IOB2", "BIOES", "none")

# Spellings seen in the wild for the same schemes.
_ALIASES = {
    "iob1": "IOB1",
    "iob2": "IOB2",
    "bio": "IOB2",
    "bioes": "BIOES",
    "iobes": "BIOES",
    # spaCy's name for the same scheme (it writes the E- and S- prefixes as L- and U-).
    "bilou": "BIOES",
    "biluo": "BIOES",
    "none": "none",
}

_ENTITY_PREFIXES = frozenset("BIES")


class Span(NamedTuple):
    """An entity: tokens ``start`` to ``end`` (exclusive) of type ``label``."""

    start: int
    end: int
    label: str


def normalize_scheme(scheme: str) -> str:
    """Return the canonical name of a scheme.

    Parameters
    ----------
    scheme : str
        ``"IOB1"``, ``"IOB2"`` (alias ``"BIO"``), ``"BIOES"`` (aliases ``"IOBES"``, and
        ``"BILOU"``/``"BILUO"`` as spaCy calls it) or ``"none"``, in any letter case. Under every
        name the tags are written with ``E-`` and ``S-``, where spaCy writes ``L-`` and ``U-``.

    Returns
    -------
    str
        One of :data:`SCHEMES`.
    """
    name = _ALIASES.get(str(scheme).lower()) if isinstance(scheme, str) else None
    if name is None:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return name


@lru_cache(maxsize=8192)
def _split_tag(tag: str) -> tuple[str, str] | None:
    """``(prefix, type)`` of a tag (``("O", "")`` for ``"O"``), or None if it is not one.

    Cached because a corpus has few distinct tags but many tokens.
    """
    if tag == "O":
        return ("O", "")
    # "O-x" is not a tag: seqeval would silently read it as "O".
    if len(tag) > 2 and tag[1] == "-" and tag[0] != "O":
        return (tag[0], tag[2:])
    return None


def _entity_tag(tag: object, what: str, i: int) -> tuple[str, str]:
    """Split a tag of an entity scheme, raising DataError (naming ``what`` ``i``) for anything
    else."""
    parts = _split_tag(tag) if isinstance(tag, str) else None
    if parts is None or (parts[0] != "O" and parts[0] not in _ENTITY_PREFIXES):
        raise DataError(
            f"{what} {i}: {tag!r} is not an entity tag (expected 'O' or B-/I-/E-/S- followed by "
            "a type, e.g. 'B-PER')"
        )
    return parts


def _check_sequences(tag_sequences: object) -> list[Sequence[str]]:
    """Sequences of tags as a list, refusing a flat list of tags (whose strings would be
    iterated character by character and silently read as a tag set without a scheme)."""
    if isinstance(tag_sequences, str):
        raise TypeError("expected a list of tag sequences, got a string")
    sequences = list(tag_sequences)
    if any(isinstance(seq, str) for seq in sequences):
        raise TypeError(
            "expected a list of tag sequences, got a flat list of tags; wrap it as [tags]"
        )
    return sequences


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the tag scheme of a corpus from all its tag sequences.

    The rules, in order: a corpus whose tags are not all ``"O"`` or ``"<prefix>-<type>"`` with a
    prefix among B, I, E, S is ``"none"`` (plain token classification, e.g. POS tags); any ``E-``
    or ``S-`` makes it ``"BIOES"``; an ``I-x`` that begins an entity (at the start, after ``O`` or
    after another type) makes it ``"IOB1"``; otherwise (including all-``O`` and empty corpora) it
    is ``"IOB2"``.

    Parameters
    ----------
    tag_sequences : iterable of sequences of str
        One tag sequence per sentence (not a flat list of tags).

    Returns
    -------
    str
        ``"IOB1"``, ``"IOB2"``, ``"BIOES"`` or ``"none"``.

    Raises
    ------
    DataError
        For BILOU tags (``L-``/``U-`` prefixes): they are not supported; mapping ``L-`` to ``E-``
        and ``U-`` to ``S-`` gives the equivalent BIOES tags. Refusing is safer than guessing,
        because the entity reader would silently treat ``L``/``U`` as unknown prefixes.
    """
    sequences = _check_sequences(tag_sequences)
    prefixes: set[str] = set()
    iob1 = False
    for seq in sequences:
        prev_prefix, prev_type = "O", ""
        for tag in seq:
            parts = _split_tag(tag) if isinstance(tag, str) else None
            if parts is None or parts[0] not in "OBIESLU":
                return "none"
            prefix, type_ = parts
            prefixes.add(prefix)
            if prefix == "I" and not (prev_prefix in "BI" and prev_type == type_):
                iob1 = True
            prev_prefix, prev_type = prefix, type_
    if prefixes & {"L", "U"}:
        raise DataError(
            "BILOU tags (L-/U- prefixes) are not supported; map L- to E- and U- to S- to get "
            "the equivalent BIOES tags"
        )
    if prefixes & {"E", "S"}:
        return "BIOES"
    return "IOB1" if iob1 else "IOB2"


def spans_from_tags(tags: Sequence[str], scheme: str) -> list[Span]:
    """Read the entities of one tag sequence.

    For IOB1, IOB2 and BIOES this is conlleval's reading, identical to seqeval 1.2.2's default
    mode (``get_entities``): lenient, so any mix of B-/I-/E-/S- prefixes is accepted (see the
    module docstring). For ``"none"`` there are no entities.

    Parameters
    ----------
    tags : sequence of str
        The tags of one sentence.
    scheme : str
        ``"IOB1"``, ``"IOB2"``, ``"BIOES"`` or ``"none"``.

    Returns
    -------
    list of Span
        The entities in order, with ``end`` exclusive.

    Raises
    ------
    DataError
        If a tag is neither ``"O"`` nor a B-/I-/E-/S- tag with a type (for the entity schemes).
    """
    if normalize_scheme(scheme) == "none":
        return []
    spans: list[Span] = []
    start = -1  # start of the open entity, -1 when none is open
    open_type = ""
    prev_prefix = "O"
    for i, tag in enumerate(tags):
        prefix, type_ = _entity_tag(tag, "tag", i)
        # Only I-/E- directly after a B-/I- of the same type extends an entity; E- and S- close
        # theirs, so nothing continues after them.
        continues = prefix in "IE" and prev_prefix in "BI" and type_ == open_type
        if not continues:
            if start >= 0:
                spans.append(Span(start, i, open_type))
                start = -1
            if prefix != "O":
                start, open_type = i, type_
        prev_prefix = prefix
    if start >= 0:
        spans.append(Span(start, len(tags), open_type))
    return spans


def tags_from_spans(spans: Iterable[Span | tuple[int, int, str]], length: int,
                    scheme: str) -> list[str]:
    """Write entities as the well-formed tag sequence of a scheme.

    Parameters
    ----------
    spans : iterable of Span or (start, end, label)
        Non-overlapping entities with ``0 <= start < end <= length``, in any order.
    length : int
        Number of tokens.
    scheme : str
        ``"IOB1"`` (``I-`` everywhere, ``B-`` only for an entity that directly follows one of the
        same type), ``"IOB2"`` (``B-`` then ``I-``) or ``"BIOES"`` (``S-`` for one token, else
        ``B-``, ``I-``..., ``E-``).

    Returns
    -------
    list of str
        ``length`` tags; ``spans_from_tags`` of it gives ``spans`` back (sorted).

    Raises
    ------
    ValueError
        For the scheme ``"none"``, out-of-range, empty or overlapping spans, or an empty label.
    """
    scheme = normalize_scheme(scheme)
    if scheme == "none":
        raise ValueError("the scheme 'none' has no entity tags")
    ordered = sorted(Span(operator.index(s), operator.index(e), lab) for s, e, lab in spans)
    tags = ["O"] * length
    prev_end, prev_label = -1, None
    for start, end, label in ordered:
        if not (0 <= start < end <= length):
            raise ValueError(f"span ({start}, {end}, {label!r}) is empty or outside 0..{length}")
        if start < prev_end:
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps the previous span")
        if not isinstance(label, str) or not label:
            raise ValueError(f"span ({start}, {end}) has an invalid label {label!r}")
        if scheme == "IOB2":
            tags[start] = f"B-{label}"
            tags[start + 1:end] = [f"I-{label}"] * (end - start - 1)
        elif scheme == "IOB1":
            # B- only where an I- would merge this entity into the one just before it.
            adjacent = start == prev_end and label == prev_label
            tags[start] = f"{'B' if adjacent else 'I'}-{label}"
            tags[start + 1:end] = [f"I-{label}"] * (end - start - 1)
        elif end - start == 1:
            tags[start] = f"S-{label}"
        else:
            tags[start] = f"B-{label}"
            tags[start + 1:end - 1] = [f"I-{label}"] * (end - start - 2)
            tags[end - 1] = f"E-{label}"
        prev_end, prev_label = end, label
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert one tag sequence between IOB1, IOB2 and BIOES.

    Goes through the entities (``spans_from_tags`` then ``tags_from_spans``), so the result is
    well-formed and has the same entities as conlleval reads from ``tags``; a well-formed sequence
    converted there and back is unchanged.

    Parameters
    ----------
    tags : sequence of str
        The tags of one sentence.
    source, target : str
        ``"IOB1"``, ``"IOB2"`` or ``"BIOES"``.

    Returns
    -------
    list of str
        The tags in the target scheme.
    """
    source, target = normalize_scheme(source), normalize_scheme(target)
    if "none" in (source, target):
        raise ValueError("cannot convert to or from the scheme 'none' (tags without entities)")
    return tags_from_spans(spans_from_tags(tags, source), len(tags), target)


def repair_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """Make a tag sequence well-formed without changing its entities.

    For example IOB2 ``O I-x I-x`` becomes ``O B-x I-x`` and BIOES ``B-x O`` becomes ``S-x O``,
    so that training data satisfies :func:`transition_constraints`. Entities are read as by
    :func:`spans_from_tags`; for ``"none"`` the tags are returned unchanged.

    Parameters
    ----------
    tags : sequence of str
        The tags of one sentence.
    scheme : str
        ``"IOB1"``, ``"IOB2"``, ``"BIOES"`` or ``"none"``.

    Returns
    -------
    list of str
        The repaired tags (a new list).
    """
    scheme = normalize_scheme(scheme)
    if scheme == "none":
        return list(tags)
    return tags_from_spans(spans_from_tags(tags, scheme), len(tags), scheme)


def transition_constraints(classes: Sequence[str],
                           scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which starts, ends and transitions a CRF may use to produce well-formed tags.

    The masks allow exactly what the well-formed sequences of :func:`tags_from_spans` use:

    * IOB2: ``I-x`` only after ``B-x`` or ``I-x``, never first.
    * IOB1: ``B-x`` only after ``B-x`` or ``I-x`` (it separates two adjacent entities of type
      ``x``), never first; ``I-x`` anywhere. Training data with ``O B-x`` should go through
      :func:`repair_tags` first.
    * BIOES: after ``B-x`` or ``I-x`` only ``I-x`` or ``E-x``; after ``E-*``, ``S-*`` or ``O``
      only ``B-*``, ``S-*`` or ``O``; never first ``I-``/``E-``, never last ``B-``/``I-``.
    * none: everything allowed.

    Parameters
    ----------
    classes : sequence of str
        The label list, in the order of the CRF's tag indices.
    scheme : str
        ``"IOB1"``, ``"IOB2"``, ``"BIOES"`` or ``"none"``.

    Returns
    -------
    allowed_start : ndarray of bool, shape (K,)
    allowed_end : ndarray of bool, shape (K,)
    allowed_trans : ndarray of bool, shape (K, K)
        ``allowed_trans[i, j]`` says whether ``classes[j]`` may follow ``classes[i]``.

    Raises
    ------
    DataError
        If a class is not a tag of the scheme (e.g. ``S-x`` for IOB2).
    """
    scheme = normalize_scheme(scheme)
    k = len(classes)
    allowed_start = np.ones(k, dtype=bool)
    allowed_end = np.ones(k, dtype=bool)
    allowed_trans = np.ones((k, k), dtype=bool)
    if scheme == "none":
        return allowed_start, allowed_end, allowed_trans

    valid = "OBI" if scheme in ("IOB1", "IOB2") else "OBIES"
    parts = []
    for i, tag in enumerate(classes):
        prefix, type_ = _entity_tag(tag, "class", i)
        if prefix not in valid:
            raise DataError(f"class {i}: {tag!r} is not a tag of the scheme {scheme}")
        parts.append((prefix, type_))

    for j, (pj, tj) in enumerate(parts):
        for i, (pi, ti) in enumerate(parts):
            inside_same = pi in "BI" and ti == tj  # i is B-/I- of tj
            if scheme == "IOB2":
                ok = inside_same if pj == "I" else True
            elif scheme == "IOB1":
                ok = inside_same if pj == "B" else True
            elif pi in "BI":  # BIOES: an open entity must go on or end with its own type
                ok = pj in "IE" and ti == tj
            else:
                ok = pj in "OBS"
            allowed_trans[i, j] = ok
        if scheme == "IOB2":
            allowed_start[j] = pj != "I"
        elif scheme == "IOB1":
            allowed_start[j] = pj != "B"
        else:
            allowed_start[j] = pj in "OBS"
            allowed_end[j] = pj in "OES"
    return allowed_start, allowed_end, allowed_trans
