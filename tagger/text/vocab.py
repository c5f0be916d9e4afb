"""Vocabularies (words, characters, labels) and the word-shape feature.

A :class:`Vocabulary` maps strings to consecutive integer ids with reserved entries for padding
(id 0) and unknown items (id 1), and keeps the training counts. It serialises to plain JSON-able
dicts for model files.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD = "<pad>"
UNK = "<unk>"


class Vocabulary:
    """Strings to ids, with padding (0) and unknown (1) entries and training counts.

    Parameters
    ----------
    items : sequence of str
        The entries after the two reserved ones, in id order.
    counts : sequence of int, optional
        Training count of each entry of ``items``.
    """

    def __init__(self, items: Sequence[str], counts: Sequence[int] | None = None):
        self.items = [PAD, UNK] + list(items)
        self.counts = [0, 0] + (list(counts) if counts is not None else [0] * len(items))
        if len(self.counts) != len(self.items):
            raise ValueError("counts and items differ in length")
        self._index = {item: i for i, item in enumerate(self.items)}
        if len(self._index) != len(self.items):
            raise ValueError("vocabulary entries must be unique")

    @classmethod
    def build(cls, items: Iterable[str], min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """Count ``items`` and keep those seen at least ``min_count`` times.

        Entries are ordered by decreasing count, then alphabetically, so the result does not
        depend on the order of the data. ``max_size`` keeps only the most frequent entries.
        """
        counter = Counter(items)
        kept = sorted((c, item) for item, c in counter.items() if c >= min_count)
        kept.sort(key=lambda pair: (-pair[0], pair[1]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([item for _, item in kept], [c for c, _ in kept])

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self._index

    def __eq__(self, other) -> bool:
        return (isinstance(other, Vocabulary) and self.items == other.items
                and self.counts == other.counts)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} entries)"

    def index(self, item: str) -> int:
        """Id of ``item`` (the unknown id when absent)."""
        return self._index.get(item, 1)

    def encode(self, items: Sequence[str]) -> np.ndarray:
        """Ids of ``items`` as an int64 array."""
        get = self._index.get
        return np.fromiter((get(item, 1) for item in items), dtype=np.int64, count=len(items))

    def count(self, item: str) -> int:
        """Training count of ``item`` (0 when absent)."""
        i = self._index.get(item)
        return 0 if i is None else self.counts[i]

    def to_dict(self) -> dict:
        """JSON-able form (for model files)."""
        return {"items": self.items[2:], "counts": self.counts[2:]}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        """Inverse of :meth:`to_dict`."""
        return cls(data["items"], data["counts"])


# Word shapes: a small closed set of classes that carries what lowercasing removes (capitalisation)
# and what matters for noisy text (mentions, hashtags, URLs, numbers). Id 0 is padding.
SHAPES = ("<pad>", "lower", "title", "upper", "mixed", "number", "has-digit", "punct", "url",
          "mention", "hashtag", "other")
_SHAPE_ID = {name: i for i, name in enumerate(SHAPES)}
_URL = re.compile(r"^(https?://|www\.)", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+([.,:/]\d+)*|\d*[.,]\d+)%?$")


def word_shape(token: str) -> int:
    """Id of the shape class of ``token`` (see ``SHAPES``)."""
    if _URL.match(token):
        return _SHAPE_ID["url"]
    if len(token) > 1 and token[0] == "@":
        return _SHAPE_ID["mention"]
    if len(token) > 1 and token[0] == "#":
        return _SHAPE_ID["hashtag"]
    if _NUMBER.match(token):
        return _SHAPE_ID["number"]
    letters = [c for c in token if c.isalpha()]
    if not letters:
        if any(c.isdigit() for c in token):
            return _SHAPE_ID["has-digit"]
        if all(not c.isalnum() for c in token):
            return _SHAPE_ID["punct"]
        return _SHAPE_ID["other"]
    if any(c.isdigit() for c in token):
        return _SHAPE_ID["has-digit"]
    if all(c.islower() for c in letters):
        return _SHAPE_ID["lower"]
    if all(c.isupper() for c in letters):
        return _SHAPE_ID["upper"] if len(letters) > 1 else _SHAPE_ID["title"]
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return _SHAPE_ID["title"]
    return _SHAPE_ID["mixed"]


def clip_word(token: str, max_chars: int) -> str:
    """At most ``max_chars`` characters for the character encoder: the start and the end of a
    longer token (its prefix and suffix carry the morphology; the middle of a URL does not)."""
    if len(token) <= max_chars:
        return token
    head = (max_chars + 1) // 2
    return token[:head] + token[len(token) - (max_chars - head):]
