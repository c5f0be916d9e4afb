"""CoNLL-U files (Universal Dependencies): ten tab-separated columns per word, ``#`` comments."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import DataError
from ._common import (
    Destination,
    Sentence,
    Source,
    check_field,
    numbered_lines,
    open_destination,
    source_name,
    tag_lists_for,
)

#: The ten CoNLL-U columns, in order.
FIELDS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
#: Column index of each tag field a tagger can learn.
TAG_FIELDS = {"upos": 3, "xpos": 4}
#: The 17 universal part-of-speech tags.
UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)

_FORM = 1
# Multiword tokens ("1-2") and empty nodes ("8.1") are not words of the sentence: skipped.
_MULTIWORD_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
_EMPTY_NODE_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")


def _tag_index(tag_field: str) -> int:
    try:
        return TAG_FIELDS[tag_field.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"tag_field must be one of {sorted(TAG_FIELDS)}, got {tag_field!r}"
        ) from None


def read_conllu(source: Source, tag_field: str = "upos") -> Iterator[Sentence]:
    """Read sentences from a CoNLL-U file, lazily.

    Multiword-token lines (ID ``1-2``) and empty nodes (ID ``8.1``) are skipped; the words of a
    sentence must be numbered 1, 2, 3... (a restart without a blank line is reported). Comments
    ``# key = value`` before a sentence go to its ``meta``; other comments are ignored.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from. A path is opened lazily, on the first ``next()``.
    tag_field : {"upos", "xpos"}, default "upos"
        Which column gives the tags. ``_`` (no tag) is kept as the tag string ``"_"``.

    Yields
    ------
    Sentence
        Tokens from FORM, tags from the chosen field, ``columns`` holding all ten columns,
        ``line`` the sentence's first line (its first comment, if any).

    Raises
    ------
    DataError
        With file name and line: a line without exactly 10 columns, an ID that is not an integer
        (or out of sequence), an empty FORM or tag, a comment inside a sentence, comments with no
        words after them, or bytes that are not UTF-8.
    """
    return _read_conllu(source, _tag_index(tag_field))


def _read_conllu(source: Source, tag_index: int) -> Iterator[Sentence]:
    name = source_name(source)
    tokens: list[str] = []
    tags: list[str] = []
    columns: list[list[str]] = []
    meta: dict[str, Any] = {}
    start = 0  # first line of the sentence being read; 0 between sentences
    for number, line in numbered_lines(source):
        if not line.strip():
            if tokens:
                yield Sentence(tokens, tags, columns, start, meta)
                tokens, tags, columns, meta = [], [], [], {}
            elif start:
                raise DataError("comment lines with no words after them", name, start)
            start = 0
            continue
        if not start:
            start = number
        if line.startswith("#"):
            if tokens:
                raise DataError(
                    "comment line inside a sentence (is a blank line missing before it?)",
                    name,
                    number,
                )
            key, equals, value = line[1:].partition("=")
            if equals:
                meta[key.strip()] = value.strip()
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(f"expected 10 tab-separated columns, found {len(fields)}", name, number)
        word_id = fields[0]
        if not (word_id.isascii() and word_id.isdigit()):
            if _MULTIWORD_ID.fullmatch(word_id) or _EMPTY_NODE_ID.fullmatch(word_id):
                continue
            raise DataError(f"ID {word_id!r} is not an integer, a range or a decimal", name, number)
        if int(word_id) != len(tokens) + 1:
            raise DataError(
                f"word ID {word_id} out of sequence, expected {len(tokens) + 1} "
                "(is a blank line missing before it?)",
                name,
                number,
            )
        form, tag = fields[_FORM], fields[tag_index]
        if not form:
            raise DataError("empty FORM (column 2)", name, number)
        if not tag:
            raise DataError(f"empty {FIELDS[tag_index]} (column {tag_index + 1})", name, number)
        tokens.append(form)
        tags.append(tag)
        columns.append(fields)
    if tokens:
        yield Sentence(tokens, tags, columns, start, meta)
    elif start:
        raise DataError("comment lines with no words after them", name, start)


def write_conllu(
    sentences: Iterable[Sentence | Sequence[str]],
    dest: Destination,
    tags: Iterable[Sequence[str]] | None = None,
    tag_field: str = "upos",
) -> int:
    """Write sentences as CoNLL-U: ID, FORM and one tag column filled, ``_`` everywhere else.

    Each sentence's ``meta`` is written first as ``# key = value`` comments, and a blank line
    follows each sentence.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write; streamed, one sentence at a time.
    dest : path or file object
        Written as UTF-8 with ``\\n`` newlines.
    tags : iterable of tag lists, optional
        One tag list per sentence (e.g. predictions); when None, each sentence's own tags, and
        ``_`` for sentences without tags.
    tag_field : {"upos", "xpos"}, default "upos"
        The column that receives the tags.

    Returns
    -------
    int
        Number of sentences written.

    Raises
    ------
    ValueError
        Different numbers of sentences and tag lists, or of tokens and tags, an empty sentence,
        or a value that is empty or contains a tab or line break.
    """
    tag_index = _tag_index(tag_field)
    count = 0
    with open_destination(dest) as out:
        for count, (sentence, sentence_tags) in enumerate(tag_lists_for(sentences, tags), 1):
            if not sentence.tokens:
                raise ValueError(f"sentence {count} has no tokens; CoNLL-U cannot represent it")
            lines = []
            for key, value in sentence.meta.items():
                key_text, value_text = str(key), str(value)
                if "=" in key_text or any(c in key_text + value_text for c in "\n\r"):
                    raise ValueError(f"sentence {count}: meta {key!r} cannot be a comment line")
                lines.append(f"# {key_text} = {value_text}")
            for position, token in enumerate(sentence.tokens):
                fields = ["_"] * 10
                fields[0] = str(position + 1)
                fields[_FORM] = check_field(token, "token", count)
                if sentence_tags is not None:
                    fields[tag_index] = check_field(sentence_tags[position], "tag", count)
                lines.append("\t".join(fields))
            lines.append("\n")
            out.write("\n".join(lines))
    return count
