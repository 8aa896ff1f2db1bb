"""JSON from an LLM or its server, read as hostile data: `loads` turns every reply that is not plain, bounded JSON
into a `BadJSON` (a ValueError naming what is wrong), never another exception.

Refused: nesting deeper than `MAX_DEPTH` (checked by one linear scan before parsing, so 10 MB of `[` never reaches
the recursive parser), `NaN`/`Infinity`, a float that overflows to infinity (`1e400`), an integer of more than
`MAX_INT_DIGITS` digits (Python's int-string limit would raise deep inside the parser), and a key repeated in one
object (which of two scores would count is anyone's guess). Strings may hold raw control characters and NULs
(`strict=False`): they stay text.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 100

# A JSON string (skipped whole: brackets inside it are text) or one bracket. Unrolled, so linear on any input.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


class BadJSON(ValueError):
    """Text that is not bounded, plain JSON."""


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `limit`, stopping at the first bracket past it (linear in the text)."""
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                raise BadJSON(f"JSON nested deeper than {limit} levels")
        elif token in "]}":
            depth -= 1


def _constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadJSON(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(f"the number {text[:40]} is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise BadJSON(f"the key {repeated[:40]!r} appears twice in one object")
    return data


def loads(text: str | bytes) -> Any:
    """`text` parsed as JSON, or a BadJSON saying why not."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadJSON("not UTF-8 text") from None
    check_depth(text)
    try:
        return json.loads(text, strict=False, parse_constant=_constant, parse_int=_int, parse_float=_float,
                          object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise BadJSON(f"malformed JSON: {exc.msg}") from None
    except RecursionError:  # not reachable after check_depth; kept as the parser's own limit
        raise BadJSON("JSON nested too deeply") from None
