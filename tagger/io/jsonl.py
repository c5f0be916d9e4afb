"""JSON Lines: one ``{"tokens": [...], "tags": [...]}`` object per line."""

from __future__ import annotations

import json
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
    source_name,
    tag_lists_for,
)


def _string_list(value: Any, key: str, name: str, number: int) -> list[str]:
    if not isinstance(value, list):
        raise DataError(
            f'"{key}" must be a list of strings, got {type(value).__name__}', name, number
        )
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(
                f'"{key}"[{position}] must be a string, got {type(item).__name__}', name, number
            )
        if not item:
            raise DataError(f'"{key}"[{position}] is an empty string', name, number)
    return value


def read_jsonl(
    source: Source,
    tokens_key: str = "tokens",
    tags_key: str = "tags",
    require_tags: bool = False,
    max_line_length: int | None = None,
) -> Iterator[Sentence]:
    """Read sentences from a JSON Lines file, lazily: one object per line, blank lines skipped.

    Parameters
    ----------
    source : path, file object or iterable of lines
        Where to read from. A path is opened lazily, on the first ``next()``.
    tokens_key : str, default "tokens"
        Key of the list of tokens (non-empty strings; at least one).
    tags_key : str, default "tags"
        Key of the list of tags, one per token. Missing or null means untagged.
    require_tags : bool, default False
        True makes a line without tags an error (training data).
    max_line_length : int, optional
        The longest line accepted, in characters; default :data:`tagger.io.MAX_LINE_LENGTH`.

    Yields
    ------
    Sentence
        With ``columns`` None and the object's other keys in ``meta``.

    Raises
    ------
    DataError
        With file name and line: invalid JSON, not an object, missing or malformed tokens or
        tags, tags of another length than the tokens, missing tags with ``require_tags``, a line
        over the length limit, or bytes that are not UTF-8.
    """
    limit = line_limit(max_line_length)
    return _read_jsonl(source, tokens_key, tags_key, require_tags, limit)


def _read_jsonl(
    source: Source, tokens_key: str, tags_key: str, require_tags: bool, limit: int
) -> Iterator[Sentence]:
    name = source_name(source)
    for number, line in numbered_lines(source, limit):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"invalid JSON: {error.msg} (column {error.colno})", name, number
            ) from None
        except RecursionError:
            raise DataError("invalid JSON: nested too deeply", name, number) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, got {type(record).__name__}", name, number)
        if tokens_key not in record:
            raise DataError(f'no "{tokens_key}" key', name, number)
        tokens = _string_list(record[tokens_key], tokens_key, name, number)
        if not tokens:
            raise DataError(f'"{tokens_key}" is empty', name, number)
        tags = record.get(tags_key)
        if tags is None:
            if require_tags:
                raise DataError(f'no "{tags_key}" key (tags are required)', name, number)
        else:
            tags = _string_list(tags, tags_key, name, number)
            if len(tags) != len(tokens):
                raise DataError(f"{len(tokens)} tokens but {len(tags)} tags", name, number)
        meta = {key: value for key, value in record.items() if key not in (tokens_key, tags_key)}
        yield Sentence(tokens, tags, None, number, meta)


def _checked(values: Sequence[str], what: str, sentence_index: int, line: int) -> list[str]:
    # Refuse what read_jsonl would refuse (and lone surrogates, which UTF-8 cannot encode), so
    # that every file written reads back as written.
    for value in values:
        if not isinstance(value, str):
            raise UnwritableError(f"sentence {sentence_index}: {what} {value!r} is not a str")
        check_field(value, what, sentence_index, forbidden="", format_name="JSONL", line=line)
    return list(values)


def write_jsonl(
    sentences: Iterable[Sentence | Sequence[str]],
    dest: Destination,
    tags: Iterable[Sequence[str]] | None = None,
    include_meta: bool = False,
) -> int:
    """Write sentences as JSON Lines, ``{"tokens": [...], "tags": [...]}`` per line.

    Parameters
    ----------
    sentences : iterable of Sentence or of token lists
        What to write; streamed, one sentence at a time.
    dest : path or file object
        Written as UTF-8 (not ``\\u`` escapes) with ``\\n`` newlines.
    tags : iterable of tag lists, optional
        One tag list per sentence (e.g. predictions); when None, each sentence's own tags, and no
        ``"tags"`` key for sentences without tags.
    include_meta : bool, default False
        True also writes each sentence's ``meta`` entries (e.g. CoNLL-U ``sent_id``, extra JSONL
        keys), after the tokens and tags.

    Returns
    -------
    int
        Number of sentences written.

    Raises
    ------
    UnwritableError
        A token or tag that is not a non-empty string, or holds a lone surrogate; the sentence is
        checked whole before any of it is written.
    ValueError
        Different numbers of sentences and tag lists, of tokens and tags, or an empty sentence.
    """
    count = 0
    with open_destination(dest) as out:
        for count, (sentence, sentence_tags) in enumerate(tag_lists_for(sentences, tags), 1):
            if not sentence.tokens:
                raise ValueError(f"sentence {count} has no tokens; read_jsonl would refuse it")
            line = sentence.line
            record: dict[str, Any] = {"tokens": _checked(sentence.tokens, "token", count, line)}
            if sentence_tags is not None:
                record["tags"] = _checked(sentence_tags, "tag", count, line)
            if include_meta:
                for key, value in sentence.meta.items():
                    record.setdefault(key, value)
            out.write(json.dumps(record, ensure_ascii=False))
            out.write("\n")
    return count
