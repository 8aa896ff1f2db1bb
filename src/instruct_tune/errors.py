"""The one exception type for bad input (stage scripts print it and exit non-zero, without a traceback), and the
helpers that shape its messages."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (params, data files, models) that they can fix.

    The message names the file, the record or line, and the field, e.g.
    `data/x.jsonl: line 12: field 'output': expected a string, got 3`.
    """


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format the location prefix of an error message: `path: line N: field 'f'`."""
    parts = [str(path)]
    if line is not None:
        parts.append(f"line {line}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)


def clip(text: str, limit: int = 300) -> str:
    """`text` on one line (runs of whitespace folded to a space), cut to at most `limit` characters with `…`."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
