"""Tag schemes: entity reading against seqeval (the oracle), detection, conversion, constraints."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagger.errors import DataError
from tagger.text import (
    SCHEMES,
    Span,
    convert_tags,
    detect_scheme,
    normalize_scheme,
    repair_tags,
    spans_from_tags,
    tags_from_spans,
    transition_constraints,
)

seqeval_labeling = pytest.importorskip(
    "seqeval.metrics.sequence_labeling", reason="seqeval (the oracle) is not installed"
)

TYPES = ["PER", "LOC", "creative-work"]
ENTITY_SCHEMES = ["IOB1", "IOB2", "BIOES"]
# Seeded: the same examples on every run, so a failure reproduces.
SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)


def seqeval_spans(tags: list[str]) -> list[Span]:
    """seqeval's default-mode entities as Spans (its ends are inclusive)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about tags it does not recognise
        return [Span(s, e + 1, t) for t, s, e in seqeval_labeling.get_entities(list(tags))]


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

any_tag = st.one_of(
    st.just("O"),
    st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BIES"), st.sampled_from(TYPES)),
)
any_tags = st.lists(any_tag, max_size=14)


@st.composite
def spans_and_length(draw, n_types: int = 3):
    """Random non-overlapping spans (adjacent ones included) over a random length."""
    types = TYPES[:n_types]
    length = draw(st.integers(0, 14))
    spans, pos = [], 0
    while pos < length:
        step = draw(st.integers(0, 3))  # gap before the next span, often 0 (adjacent)
        pos += step
        if pos >= length:
            break
        size = draw(st.integers(1, min(4, length - pos)))
        spans.append(Span(pos, pos + size, draw(st.sampled_from(types))))
        pos += size
    return spans, length


# --------------------------------------------------------------------------------------------------
# Entity reading == seqeval default mode
# --------------------------------------------------------------------------------------------------

EDGE_CASES = [
    [],
    ["O"],
    ["O", "O", "O"],
    ["B-PER"],
    ["I-PER"],  # I- at the start begins an entity
    ["O", "I-PER", "I-PER", "O"],  # I- after O begins an entity
    ["B-PER", "I-LOC", "I-LOC"],  # type change inside: two entities
    ["B-PER", "I-PER", "I-LOC", "B-LOC"],
    ["I-PER", "B-PER", "I-PER"],  # IOB1: B- separates adjacent same-type entities
    ["B-PER", "B-PER", "B-PER"],
    ["B-creative-work", "I-creative-work", "O", "B-person"],  # hyphen inside the type
    ["I-creative-work", "I-creative-work", "B-creative-work"],
    ["B-PER", "I-PER", "E-PER", "S-LOC", "O"],  # BIOES
    ["S-PER", "S-PER", "B-LOC", "E-LOC"],
    ["B-PER", "E-PER", "E-PER"],  # E- after E- starts a new entity
    ["E-PER", "I-PER"],  # E- at the start is a one-token entity
    ["S-PER", "I-PER", "E-PER"],
    ["B-PER", "S-PER"],
    ["B-PER", "E-LOC"],
    ["I-PER", "E-PER", "I-PER"],
    ["B-PER", "I-PER"],  # entity running to the end
    ["O", "E-LOC", "O", "I-LOC"],
]


@pytest.mark.parametrize("tags", EDGE_CASES, ids=lambda t: " ".join(t) or "empty")
@pytest.mark.parametrize("scheme", ENTITY_SCHEMES)
def test_spans_match_seqeval_on_edge_cases(tags, scheme):
    assert spans_from_tags(tags, scheme) == seqeval_spans(tags)


def test_spans_known_values():
    # Pinned without the oracle, so a change in seqeval cannot hide a change here.
    assert spans_from_tags(["O", "I-PER", "I-LOC", "B-LOC", "O"], "IOB1") == [
        Span(1, 2, "PER"), Span(2, 3, "LOC"), Span(3, 4, "LOC")]
    assert spans_from_tags(["B-creative-work", "I-creative-work"], "IOB2") == [
        Span(0, 2, "creative-work")]
    assert spans_from_tags(["B-X", "I-X", "E-X", "I-X", "S-X"], "BIOES") == [
        Span(0, 3, "X"), Span(3, 4, "X"), Span(4, 5, "X")]
    assert spans_from_tags(["NOUN", "VERB"], "none") == []


@SETTINGS
@given(any_tags, st.sampled_from(ENTITY_SCHEMES))
def test_spans_match_seqeval_on_random_tags(tags, scheme):
    assert spans_from_tags(tags, scheme) == seqeval_spans(tags)


@pytest.mark.parametrize("bad", ["X", "B-", "B", "O-PER", "L-PER", "", "b-PER", 3])
def test_spans_reject_non_entity_tags(bad):
    with pytest.raises(DataError, match="tag 1"):
        spans_from_tags(["O", bad], "IOB2")


# --------------------------------------------------------------------------------------------------
# Scheme detection and names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sequences", "expected"),
    [
        ([["B-PER", "I-PER", "O"], ["B-LOC"]], "IOB2"),
        ([["B-PER", "B-PER", "I-PER"]], "IOB2"),
        ([["O", "O"], ["O"]], "IOB2"),  # nothing contradicts IOB2
        ([], "IOB2"),
        ([["O", "I-PER", "I-PER"], ["B-LOC"]], "IOB1"),
        ([["B-PER", "I-PER"], ["I-PER", "B-PER"]], "IOB1"),  # decided by all sequences
        ([["B-PER", "I-LOC"]], "IOB1"),  # I- after another type begins an entity
        ([["I-creative-work", "B-creative-work"]], "IOB1"),
        ([["B-PER", "E-PER"], ["O"]], "BIOES"),
        ([["I-PER"], ["S-LOC"]], "BIOES"),  # E-/S- wins over an IOB1-looking I-
        ([["NOUN", "VERB", "O"]], "none"),
        ([["B-PER", "I-PER"], ["PUNCT"]], "none"),  # one foreign tag is enough
        ([["B-PER", "B"]], "none"),
    ],
)
def test_detect_scheme(sequences, expected):
    assert detect_scheme(sequences) == expected


def test_detect_scheme_refuses_bilou_and_flat_lists():
    with pytest.raises(DataError, match="BILOU"):
        detect_scheme([["B-PER", "L-PER", "U-LOC"]])
    with pytest.raises(TypeError, match="flat list"):
        detect_scheme(["B-PER", "I-PER"])


@SETTINGS
@given(spans_and_length())
def test_detect_scheme_of_written_tags(spans_length):
    spans, length = spans_length
    assert detect_scheme([tags_from_spans(spans, length, "IOB2")]) == "IOB2"
    expected_bioes = "BIOES" if spans else "IOB2"
    assert detect_scheme([tags_from_spans(spans, length, "BIOES")]) == expected_bioes
    expected_iob1 = "IOB1" if spans else "IOB2"
    assert detect_scheme([tags_from_spans(spans, length, "IOB1")]) == expected_iob1


def test_normalize_scheme():
    assert [normalize_scheme(s) for s in ("iob2", "BIO", "IOBES", "bioes", "IOB1", "None")] == [
        "IOB2", "IOB2", "BIOES", "BIOES", "IOB1", "none"]
    assert set(SCHEMES) == {"IOB1", "IOB2", "BIOES", "none"}
    # spaCy's name for BIOES, in both of its spellings.
    assert [normalize_scheme(s) for s in ("BILOU", "BILUO", "bilou")] == ["BIOES"] * 3
    with pytest.raises(ValueError, match="unknown tag scheme"):
        normalize_scheme("BILOUX")


# --------------------------------------------------------------------------------------------------
# Writing, converting, repairing
# --------------------------------------------------------------------------------------------------


def test_tags_from_spans_known_values():
    spans = [Span(0, 1, "PER"), Span(1, 3, "PER"), Span(4, 5, "LOC")]
    assert tags_from_spans(spans, 6, "IOB2") == ["B-PER", "B-PER", "I-PER", "O", "B-LOC", "O"]
    assert tags_from_spans(spans, 6, "IOB1") == ["I-PER", "B-PER", "I-PER", "O", "I-LOC", "O"]
    assert tags_from_spans(spans, 6, "BIOES") == ["S-PER", "B-PER", "E-PER", "O", "S-LOC", "O"]
    # Order of the input does not matter; plain tuples are accepted.
    assert tags_from_spans([(4, 5, "LOC"), (0, 1, "PER")], 5, "IOB2") == [
        "B-PER", "O", "O", "O", "B-LOC"]


@pytest.mark.parametrize(
    "spans",
    [[(0, 0, "X")], [(-1, 1, "X")], [(0, 4, "X")], [(0, 2, "X"), (1, 3, "Y")], [(0, 1, "")]],
)
def test_tags_from_spans_rejects_bad_spans(spans):
    with pytest.raises(ValueError):
        tags_from_spans(spans, 3, "IOB2")


def test_tags_from_spans_refuses_none_scheme():
    with pytest.raises(ValueError, match="none"):
        tags_from_spans([], 2, "none")
    with pytest.raises(ValueError, match="none"):
        convert_tags(["O"], "IOB2", "none")


@SETTINGS
@given(spans_and_length(), st.sampled_from(ENTITY_SCHEMES))
def test_write_then_read_gives_the_spans(spans_length, scheme):
    spans, length = spans_length
    tags = tags_from_spans(spans, length, scheme)
    assert len(tags) == length
    assert spans_from_tags(tags, scheme) == spans
    assert seqeval_spans(tags) == spans  # the oracle reads the same entities


@SETTINGS
@given(spans_and_length())
def test_conversion_round_trips(spans_length):
    spans, length = spans_length
    iob2 = tags_from_spans(spans, length, "IOB2")
    iob1 = tags_from_spans(spans, length, "IOB1")
    bioes = tags_from_spans(spans, length, "BIOES")
    assert convert_tags(iob2, "IOB2", "BIOES") == bioes
    assert convert_tags(convert_tags(iob2, "IOB2", "BIOES"), "BIOES", "IOB2") == iob2
    assert convert_tags(iob1, "IOB1", "IOB2") == iob2
    assert convert_tags(convert_tags(iob1, "IOB1", "IOB2"), "IOB2", "IOB1") == iob1
    assert convert_tags(bioes, "BIOES", "IOB1") == iob1
    for scheme, tags in (("IOB2", iob2), ("IOB1", iob1), ("BIOES", bioes)):
        assert convert_tags(tags, scheme, scheme) == tags
        assert repair_tags(tags, scheme) == tags  # well-formed already


def test_repair_known_values():
    assert repair_tags(["O", "I-PER", "I-PER"], "IOB2") == ["O", "B-PER", "I-PER"]
    assert repair_tags(["B-PER", "I-LOC"], "IOB2") == ["B-PER", "B-LOC"]
    assert repair_tags(["B-PER", "O", "I-LOC", "E-LOC"], "BIOES") == [
        "S-PER", "O", "B-LOC", "E-LOC"]
    assert repair_tags(["O", "B-PER", "B-PER"], "IOB1") == ["O", "I-PER", "B-PER"]
    assert repair_tags(["NOUN", "O"], "none") == ["NOUN", "O"]


@SETTINGS
@given(any_tags, st.sampled_from(ENTITY_SCHEMES))
def test_repair_keeps_entities_and_is_idempotent(tags, scheme):
    repaired = repair_tags(tags, scheme)
    assert seqeval_spans(repaired) == seqeval_spans(tags)
    assert repair_tags(repaired, scheme) == repaired
    start, end, trans = transition_constraints(classes_for(scheme), scheme)
    assert uses_only_allowed(repaired, classes_for(scheme), start, end, trans)


# --------------------------------------------------------------------------------------------------
# CRF transition constraints
# --------------------------------------------------------------------------------------------------


def classes_for(scheme: str, types=TYPES) -> list[str]:
    prefixes = "BIES" if scheme == "BIOES" else "BI"
    return ["O"] + [f"{p}-{t}" for t in types for p in prefixes]


def uses_only_allowed(tags, classes, start, end, trans) -> bool:
    if not tags:
        return True
    idx = [classes.index(t) for t in tags]
    inner = all(trans[a, b] for a, b in itertools.pairwise(idx))
    return bool(start[idx[0]] and end[idx[-1]] and inner)


@pytest.mark.parametrize("scheme", ENTITY_SCHEMES)
def test_constraints_are_exactly_well_formedness(scheme):
    """A sequence satisfies the masks iff it is well-formed (repair leaves it alone), and every
    allowed start, end and transition is used by some well-formed sequence."""
    rng = np.random.default_rng(0)
    classes = classes_for(scheme, TYPES[:2])
    classes = [classes[i] for i in rng.permutation(len(classes))]  # order must not matter
    start, end, trans = transition_constraints(classes, scheme)
    assert start.dtype == end.dtype == trans.dtype == np.bool_
    assert start.shape == end.shape == (len(classes),) and trans.shape == (len(classes),) * 2

    used_start = np.zeros_like(start)
    used_end = np.zeros_like(end)
    used_trans = np.zeros_like(trans)
    for length in range(1, 5):
        for idx in itertools.product(range(len(classes)), repeat=length):
            tags = [classes[i] for i in idx]
            well_formed = repair_tags(tags, scheme) == tags
            assert uses_only_allowed(tags, classes, start, end, trans) == well_formed, tags
            if well_formed:
                used_start[idx[0]] = used_end[idx[-1]] = True
                for a, b in itertools.pairwise(idx):
                    used_trans[a, b] = True
    np.testing.assert_array_equal(used_start, start)
    np.testing.assert_array_equal(used_end, end)
    np.testing.assert_array_equal(used_trans, trans)


def test_constraints_known_values():
    classes = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, end, trans = transition_constraints(classes, "IOB2")
    assert start.tolist() == [True, True, False, True, False]
    assert end.all()
    assert trans[:, 2].tolist() == [False, True, True, False, False]  # into I-PER
    assert trans[:, [0, 1, 3]].all()

    classes = ["O", "B-X", "I-X", "E-X", "S-X"]
    start, end, trans = transition_constraints(classes, "BIOES")
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]
    assert trans[1].tolist() == [False, False, True, True, False]  # after B-X
    assert trans[3].tolist() == [True, True, False, False, True]  # after E-X


@SETTINGS
@given(spans_and_length(), st.sampled_from(ENTITY_SCHEMES))
def test_written_gold_never_uses_a_forbidden_transition(spans_length, scheme):
    spans, length = spans_length
    classes = classes_for(scheme)
    start, end, trans = transition_constraints(classes, scheme)
    assert uses_only_allowed(tags_from_spans(spans, length, scheme), classes, start, end, trans)


def test_constraints_none_and_bad_classes():
    start, end, trans = transition_constraints(["NOUN", "VERB", "ADJ"], "none")
    assert start.all() and end.all() and trans.all() and trans.shape == (3, 3)
    with pytest.raises(DataError, match="class 1"):
        transition_constraints(["O", "S-PER"], "IOB2")
    with pytest.raises(DataError, match="class 0"):
        transition_constraints(["NOUN"], "BIOES")
