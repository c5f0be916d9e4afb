"""CoNLL-U files (Universal Dependencies): ten tab-separated columns per word, ``#`` comments.

Part-of-speech tags go in UPOS (or XPOS). Entity tags (``O``, ``B-PER``...) are not
parts of speech: they go in MISC as ``NER=<tag>`` entries (beside the word's other MISC entries),
the way several UD treebanks and converters carry named entities, and UPOS stays ``_``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import DataError
from ._common import (
    Destination,
    Sentence,
    Source,
    UnwritableError,
    check_field,
    line_limit,
    numbered_lines,
    open_destination,
    sentence_label,
    source_name,
    tag_lists_for,
)

#: The ten CoNLL-U columns, in order.
FIELDS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
#: Column index of each tag field a tagger can learn (``ner``: the ``NER=`` entry of MISC).
TAG_FIELDS = {"upos": 3, "xpos": 4, "ner": 9}
#: The 17 universal part-of-speech tags.
UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)

_FORM = 1
_UPOS = 3
_MISC = 9
_NER_KEY = "NER"
# Multiword tokens ("1-2") and empty nodes ("8.1") are not words of the sentence: skipped.
_MULTIWORD_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
_EMPTY_NODE_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")


def _tag_index(tag_field: str | None) -> int | None:
    if tag_field is None:
        return None
    try:
        return TAG_FIELDS[tag_field.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"tag_field must be None or one of {sorted(TAG_FIELDS)}, got {tag_field!r}"
        ) from None


def _column_for(tag_index: int | None, tags: Sequence[str], where: str) -> int:
    """The column a sentence's tags go to: the one asked for, or (None) MISC for entity tags
    and UPOS for the others; entity tags asked into UPOS are refused."""
    entity = is_entity_tagging(tags)
    if tag_index is None:
        return _MISC if entity else _UPOS
    if tag_index == _UPOS and entity:
        raise UnwritableError(
            f"{where}: entity tags ({', '.join(sorted(set(tags))[:3])}...) cannot be written to "
            "UPOS, which holds parts of speech; tag_field='ner' (or None) writes them to MISC as "
            "NER=<tag>"
        )
    return tag_index


def is_entity_tagging(tags: Sequence[str]) -> bool:
    """Whether a sentence's tags are entity tags: each ``O`` or a one-letter prefix among
    B, I, E, S, L, U, a hyphen and a type (IOB1, IOB2, BIOES, BILOU).

    Parameters
    ----------
    tags : sequence of str
        One sentence's tags.

    Returns
    -------
    bool
        False for an empty sentence.
    """
    return bool(tags) and all(
        isinstance(tag, str)
        and (tag == "O" or (len(tag) > 2 and tag[1] == "-" and tag[0] in "BIESLU"))
        for tag in tags
    )


def _ner_entry(misc: str) -> str | None:
    """The value of the ``NER=`` entry of a MISC column, or None."""
    if misc == "_":
        return None
    for entry in misc.split("|"):
        key, equals, value = entry.partition("=")
        if equals and key == _NER_KEY:
            return value
    return None


def _with_ner(misc: str, tag: str) -> str:
    """A MISC column with its ``NER=`` entry set to ``tag`` and its other entries kept."""
    kept = (
        []
        if misc in ("_", "")
        else [entry for entry in misc.split("|") if entry.partition("=")[0] != _NER_KEY]
    )
    return "|".join([*kept, f"{_NER_KEY}={tag}"])


def read_conllu(
    source: Source, tag_field: str | None = None, max_line_length: int | None = None
) -> Iterator[Sentence]:
    """Read sentences from a CoNLL-U file, lazily.

    Multiword-token lines (ID ``1-2``) and empty nodes (ID ``8.1``) are skipped; the words of a
    sentence must be numbered 1, 2, 3... (a restart without a blank line is reported). Comments
    ``# key = value`` before a sentence go to its ``meta``; other comments are ignored.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from. A path is opened lazily, on the first ``next()``.
    tag_field : {None, "upos", "xpos", "ner"}, default None
        Which column gives the tags: UPOS, XPOS, or the ``NER=`` entries of MISC. None reads UPOS,
        except in a sentence whose UPOS is ``_`` throughout and whose words all have a ``NER=``
        entry (what :func:`write_conllu` writes for entity tags): there the entity tags. ``_``
        (no tag) is kept as the tag string ``"_"``.
    max_line_length : int, optional
        The longest line accepted, in characters; default :data:`tagger.io.MAX_LINE_LENGTH`.

    Yields
    ------
    Sentence
        Tokens from FORM, tags from the chosen field, ``columns`` holding all ten columns,
        ``line`` the sentence's first line (its first comment, if any).

    Raises
    ------
    DataError
        With file name and line: a line without exactly 10 columns, an ID that is not an integer
        (or out of sequence), an empty FORM or tag, no ``NER=`` entry with ``tag_field="ner"``, a
        comment inside a sentence, comments with no words after them, a line over the length
        limit, or bytes that are not UTF-8.
    """
    return _read_conllu(source, _tag_index(tag_field), line_limit(max_line_length))


def _sentence(
    tokens: list[str],
    tags: list[str],
    entities: list[str | None],
    columns: list[list[str]],
    start: int,
    meta: dict[str, Any],
    tag_index: int | None,
) -> Sentence:
    if tag_index is None and all(tag == "_" for tag in tags) and all(entities):
        tags = entities  # type: ignore[assignment]
    return Sentence(tokens, tags, columns, start, meta)


def _read_conllu(source: Source, tag_index: int | None, limit: int) -> Iterator[Sentence]:
    name = source_name(source)
    tokens: list[str] = []
    tags: list[str] = []
    entities: list[str | None] = []
    columns: list[list[str]] = []
    meta: dict[str, Any] = {}
    start = 0  # first line of the sentence being read; 0 between sentences
    for number, line in numbered_lines(source, limit):
        if not line.strip():
            if tokens:
                yield _sentence(tokens, tags, entities, columns, start, meta, tag_index)
                tokens, tags, entities, columns, meta = [], [], [], [], {}
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
        form = fields[_FORM]
        if not form:
            raise DataError("empty FORM (column 2)", name, number)
        entity = _ner_entry(fields[_MISC])
        if tag_index == _MISC:
            if not entity:
                raise DataError(f"no {_NER_KEY}=<tag> entry in MISC (column 10)", name, number)
            tag = entity
        else:
            column = _UPOS if tag_index is None else tag_index
            tag = fields[column]
            if not tag:
                raise DataError(f"empty {FIELDS[column]} (column {column + 1})", name, number)
        tokens.append(form)
        tags.append(tag)
        entities.append(entity)
        columns.append(fields)
    if tokens:
        yield _sentence(tokens, tags, entities, columns, start, meta, tag_index)
    elif start:
        raise DataError("comment lines with no words after them", name, start)


def write_conllu(
    sentences: Iterable[Sentence | Sequence[str]],
    dest: Destination,
    tags: Iterable[Sequence[str]] | None = None,
    tag_field: str | None = None,
    keep_columns: bool = True,
) -> int:
    """Write sentences as CoNLL-U: ID, FORM and the tags filled, ``_`` everywhere else.

    Each sentence's ``meta`` is written first as ``# key = value`` comments, and a blank line
    follows each sentence. Entity tags (see :func:`is_entity_tagging`) go in MISC as
    ``NER=<tag>``, other tags in UPOS, unless ``tag_field`` says where; :func:`read_conllu` reads
    both back by default.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write; streamed, one sentence at a time.
    dest : path or file object
        Written as UTF-8 with ``\\n`` newlines.
    tags : iterable of tag lists, optional
        One tag list per sentence (e.g. predictions); when None, each sentence's own tags, and
        ``_`` for sentences without tags.
    tag_field : {None, "upos", "xpos", "ner"}, default None
        The column that receives the tags: UPOS, XPOS, or MISC as ``NER=<tag>``. None chooses per
        sentence: MISC for entity tags, else UPOS.
    keep_columns : bool, default True
        For sentences read from CoNLL-U (ten ``columns`` per word), write their other columns
        (LEMMA, FEATS, HEAD, MISC entries...) as they were read, instead of ``_``.

    Returns
    -------
    int
        Number of sentences written.

    Raises
    ------
    UnwritableError
        A value :func:`read_conllu` would read back differently, naming the sentence and the value:
        empty, or holding a tab or a line break (CoNLL-U has no escape), an entity tag holding
        ``|`` (the MISC separator), or entity tags with ``tag_field="upos"`` (UPOS holds parts of
        speech). The sentence is checked whole before any of it is written.
    ValueError
        Different numbers of sentences and tag lists, or of tokens and tags, an empty sentence, or
        a ``meta`` entry that cannot be a comment line.
    """
    chosen = _tag_index(tag_field)
    count = 0
    with open_destination(dest) as out:
        for count, (sentence, sentence_tags) in enumerate(tag_lists_for(sentences, tags), 1):
            if not sentence.tokens:
                raise ValueError(f"sentence {count} has no tokens; CoNLL-U cannot represent it")
            where = sentence_label(count, sentence.line)
            lines = []
            for key, value in sentence.meta.items():
                key_text, value_text = str(key), str(value)
                if "=" in key_text or any(c in key_text + value_text for c in "\n\r"):
                    raise ValueError(f"{where}: meta {key!r} cannot be a comment line")
                lines.append(f"# {key_text} = {value_text}")
            tag_index = chosen
            if sentence_tags is not None:
                tag_index = _column_for(chosen, sentence_tags, where)
            rows = sentence.columns if keep_columns else None
            if rows is not None and any(len(row) != 10 for row in rows):
                rows = None  # columns of another format (CoNLL): nothing to keep
            for position, token in enumerate(sentence.tokens):
                if rows is None:
                    fields = ["_"] * 10
                else:
                    fields = [
                        _conllu_field(value, "column", count, sentence.line, allow_empty=True)
                        for value in rows[position]
                    ]
                fields[0] = str(position + 1)
                fields[_FORM] = _conllu_field(token, "token", count, sentence.line)
                if sentence_tags is not None:
                    tag = sentence_tags[position]
                    if tag_index == _MISC:
                        fields[_MISC] = _with_ner(
                            fields[_MISC],
                            _conllu_field(tag, "tag", count, sentence.line, forbidden="|"),
                        )
                    else:
                        fields[tag_index] = _conllu_field(tag, "tag", count, sentence.line)
                lines.append("\t".join(fields))
            lines.append("\n")
            out.write("\n".join(lines))
    return count


def is_word_line(line: str) -> bool:
    """Whether a line of a CoNLL-U sentence is a word (an integer ID), not a comment, a
    multiword token (``1-2``) or an empty node (``8.1``)."""
    word_id = line.partition("\t")[0]
    return not line.startswith("#") and word_id.isascii() and word_id.isdigit()


def retag_conllu_lines(
    lines: Sequence[str], tags: Sequence[str], tag_field: str | None = None, line: int = 0
) -> list[str]:
    """The lines of one CoNLL-U sentence as :func:`read_conllu` read them, with ``tags`` written
    into its word lines and every other line (comments, multiword tokens, empty nodes) and
    column as it was.

    Parameters
    ----------
    lines : sequence of str
        The sentence's lines, without line endings or the blank line after them.
    tags : sequence of str
        One tag per word line.
    tag_field : {None, "upos", "xpos", "ner"}, default None
        Where the tags go, as for :func:`write_conllu`: None puts entity tags in MISC as
        ``NER=<tag>`` (the word's other MISC entries kept) and other tags in UPOS.
    line : int
        The line the sentence starts at, for messages.

    Returns
    -------
    list of str

    Raises
    ------
    UnwritableError
        A tag CoNLL-U cannot hold (see :func:`write_conllu`); nothing is returned.
    ValueError
        Not one tag per word line, or a word line without ten columns.
    """
    tag_index = _column_for(_tag_index(tag_field), tags, sentence_label(1, line))
    words = [position for position, text in enumerate(lines) if is_word_line(text)]
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} word lines but {len(tags)} tags")
    out = list(lines)
    for position, tag in zip(words, tags, strict=True):
        fields = out[position].split("\t")
        if len(fields) != 10:
            raise ValueError(f"a word line with {len(fields)} columns, not 10: {lines[position]!r}")
        if tag_index == _MISC:
            fields[_MISC] = _with_ner(fields[_MISC], _conllu_field(tag, "tag", 1, line, "|"))
        else:
            fields[tag_index] = _conllu_field(tag, "tag", 1, line)
        out[position] = "\t".join(fields)
    return out


def _conllu_field(
    value: str,
    what: str,
    sentence_index: int,
    line: int,
    forbidden: str = "",
    allow_empty: bool = False,
) -> str:
    return check_field(
        value,
        what,
        sentence_index,
        forbidden="\t\n\r" + forbidden,
        format_name="CoNLL-U",
        hint="CoNLL-U has no escape for it (JSONL keeps anything)",
        line=line,
        allow_empty=allow_empty,
    )
