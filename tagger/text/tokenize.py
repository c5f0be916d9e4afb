"""Tokenizers that turn raw strings into token lists.

A tokenizer is named by a string so that it can be written into a model file: ``"regex"`` (the
default: words, numbers with their inner separators, and every other non-space character as a
token of its own), ``"whitespace"`` (split on runs of whitespace, for pre-tokenized text such as
SST-2), or any other string, read as a regular expression whose matches are the tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Words may hold inner apostrophes and hyphens (don't, state-of-the-art); numbers inner dots and
# commas (3.14, 1,000); anything else that is not a space stands alone (punctuation, emoji).
DEFAULT_PATTERN = r"\w+(?:['’\-]\w+)*(?:[.,]\d+)*|[^\w\s]"

TOKENIZERS = ("regex", "whitespace")


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

    return tokenize
