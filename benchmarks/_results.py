"""Each benchmark script owns one marked section of ``RESULTS.md`` and rewrites only that."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def markers(name: str) -> tuple[str, str]:
    """The comment lines around the section of benchmark ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def read_section(name: str) -> str:
    """The current body of the section (empty when there is none)."""
    start, end = markers(name)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if start in text and end in text:
        return text.split(start, 1)[1].split(end, 1)[0]
    return ""


def write_section(name: str, body: str) -> None:
    """Replace the section's body with ``body`` (or append the section)."""
    start, end = markers(name)
    section = f"{start}\n{body}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
