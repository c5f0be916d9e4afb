"""Tokenizers that turn raw strings into token lists.

A tokenizer is named by a string so that it can be written into a model file: ``"regex"`` (the
default: words, numbers with their inner separators, and every other non-space character as a
token of its own), ``"whitespace"`` (split on runs of whitespace, for pre-tokenized text such as
SST-2), or any other string, read as a regular expression whose matches are the tokens.
:func:`make_offset_tokenizer` gives the same tokens with where each one lies in the string.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Words may hold inner apostrophes and hyphens (don't, state-of-the-art); numbers inner dots and
# commas (3.14, 1,000); anything else that is not a space stands alone (punctuation, emoji).
DEFAULT_PATTERN = r"\w+(?:['’\-]\w+)*(?:[.,]\d+)*|[^\w\s]"

TOKENIZERS = ("regex", "whitespace")

# The runs of characters that str.split() keeps: both use Python's Unicode whitespace.
_NON_SPACE = re.compile(r"\S+")

#: Token character offsets: ``(start, end)`` per token, ``end`` exclusive.
Offsets = list[tuple[int, int]]


def make_tokenizer(spec: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The tokenizer function a ``tokenizer`` parameter names.

    Parameters
    ----------
    spec : str or callable
        ``"regex"``, ``"whitespace"``, a regular expression matching tokens, or a function from a
        string to its tokens.

    Returns
    -------
    callable
        A function from a string to a list of tokens.

    Raises
    ------
    ValueError
        When ``spec`` is a string that is not a valid regular expression, or a pattern that can
        match the empty string (which would produce empty tokens).
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"tokenizer must be 'regex', 'whitespace', a regular expression or a "
                        f"function, got {type(spec).__name__}")
    if spec == "whitespace":
        return str.split
    pattern = DEFAULT_PATTERN if spec == "regex" else spec
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"tokenizer {spec!r} is not a valid regular expression: {exc}") from None
    if compiled.fullmatch(""):
        raise ValueError(f"tokenizer pattern {spec!r} matches the empty string")
    return compiled.findall if compiled.groups == 0 else _whole_matches(compiled)


def _whole_matches(compiled: re.Pattern) -> Callable[[str], list[str]]:
    # findall returns groups when the pattern has any; tokens are always the whole matches.
    def tokenize(text: str) -> list[str]:
        return [m.group(0) for m in compiled.finditer(text)]

    tokenize._token_pattern = compiled  # read by make_offset_tokenizer
    return tokenize


def make_offset_tokenizer(
    spec: str | Callable[[str], list[str]],
) -> Callable[[str], tuple[list[str], Offsets | None]]:
    """The tokenizer ``spec`` names, also giving where each token lies in the string.

    The tokens are exactly those of ``make_tokenizer(spec)``. For ``"whitespace"`` (and
    ``str.split``) the offsets come from a scan for runs of non-space characters, for ``"regex"``
    and other patterns from the matches themselves. A function of your own is run as it is, and
    each of its tokens is looked up in the string after the previous one: when a token is not
    found verbatim (the function changed it), the offsets are None.

    Parameters
    ----------
    spec : str or callable
        As for :func:`make_tokenizer`.

    Returns
    -------
    callable
        A function from a string to ``(tokens, offsets)``, where ``text[start:end]`` of
        ``offsets[i]`` is ``tokens[i]``.

    Raises
    ------
    ValueError, TypeError
        As :func:`make_tokenizer`.
    """
    tokenizer = make_tokenizer(spec)
    pattern = _pattern_of(tokenizer)
    if pattern is None:
        return _located(tokenizer)

    def tokenize(text: str) -> tuple[list[str], Offsets]:
        matches = list(pattern.finditer(text))
        return [m.group(0) for m in matches], [m.span() for m in matches]

    return tokenize


def _pattern_of(tokenizer: Callable[[str], list[str]]) -> re.Pattern | None:
    """The pattern whose whole matches are the tokens of ``tokenizer``, when it has one."""
    if tokenizer is str.split:
        return _NON_SPACE
    owner = getattr(tokenizer, "__self__", None)
    if isinstance(owner, re.Pattern) and tokenizer.__name__ == "findall" and owner.groups == 0:
        return owner
    pattern = getattr(tokenizer, "_token_pattern", None)
    return pattern if isinstance(pattern, re.Pattern) else None


def _located(tokenizer: Callable[[str], list[str]]) -> Callable[[str], tuple[list[str],
                                                                            Offsets | None]]:
    def tokenize(text: str) -> tuple[list[str], Offsets | None]:
        tokens = tokenizer(text)
        offsets, position = [], 0
        for token in tokens:
            start = text.find(token, position) if isinstance(token, str) and token else -1
            if start < 0:
                return tokens, None
            position = start + len(token)
            offsets.append((start, position))
        return tokens, offsets

    return tokenize
