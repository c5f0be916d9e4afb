"""Text processing: tag schemes, vocabularies, embeddings."""

from tagger.text.schemes import (
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
