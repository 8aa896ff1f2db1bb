"""Small text templates over a record's fields: column maps (`data.sources[].columns`) and `train.prompt_template`.

The language, all of it:
- `{name}` is the value of field `name`; `{meta.title}` follows a dotted path into nested objects;
- `{{` and `}}` are a literal `{` and `}`;
- `[[ ... ]]` is an optional block: it is dropped when a field inside it is empty (or absent), as unsloth's
  `merged_prompt` does, so `"Title: {title}[[\n\nContext: {context}]]"` has no dangling "Context:" line.
Numbers and booleans are written as text; null is empty; an object or a list is an error (name a field inside it).
A column map value without `{` is a plain column name (`"title"` = `"{title}"`; `"Product Title"` too); a text with
no column in it is not a column map's business (a constant system prompt is `train.system_prompt`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_TOKEN_RE = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{[^{}]*\}|[{}]")
_NAME_RE = re.compile(r"[^.{}\[\]]+(\.[^.{}\[\]]+)*")  # a column name (spaces allowed: CSV headers), dotted path


class TemplateError(ValueError):
    """A template that cannot be parsed (unbalanced braces or blocks, an empty placeholder)."""


class MissingField(KeyError):
    """A placeholder names a field the record does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Template:
    """A parsed template: `parts` are literal strings, `Field`s and `Block`s."""

    source: str
    parts: tuple[Any, ...]

    @property
    def fields(self) -> list[str]:
        """Every placeholder's name, in order of appearance (repeats kept once)."""
        out: list[str] = []
        for part in self.parts:
            names = [part.name] if isinstance(part, Field) else part.fields if isinstance(part, Block) else []
            out += [n for n in names if n not in out]
        return out

    def render(self, lookup: Callable[[str], Any]) -> str:
        """The text with every placeholder replaced by `lookup(name)`; `lookup` raises MissingField for an
        absent field (inside a `[[...]]` block an absent field counts as empty and drops the block)."""
        return "".join(_render_part(part, lookup) for part in self.parts)


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Block:
    parts: tuple[Any, ...]

    @property
    def fields(self) -> list[str]:
        return [p.name for p in self.parts if isinstance(p, Field)]


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__
    raise TypeError(f"field '{name}' holds {kind}, not text (name a field inside it, e.g. '{name}.<key>')")


def _render_part(part: Any, lookup: Callable[[str], Any]) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Field):
        return _text(lookup(part.name), part.name)
    values = []
    for inner in part.parts:
        if isinstance(inner, Field):
            try:
                value = _text(lookup(inner.name), inner.name)
            except MissingField:
                return ""
            if not value.strip():
                return ""
            values.append(value)
        else:
            values.append(inner)
    return "".join(values)


def parse(text: str) -> Template:
    """Parse a template; a TemplateError says what is wrong and where."""
    parts: list[Any] = []
    block: list[Any] | None = None
    pos = 0

    def add(item: Any) -> None:
        target = block if block is not None else parts
        if isinstance(item, str) and target and isinstance(target[-1], str):
            target[-1] += item
        elif item != "":
            target.append(item)

    for match in _TOKEN_RE.finditer(text):
        add(text[pos:match.start()])
        pos = match.end()
        token = match.group()
        where = f"at character {match.start() + 1}"
        if token == "{{":
            add("{")
        elif token == "}}":
            add("}")
        elif token == "[[":
            if block is not None:
                raise TemplateError(f"a '[[' block inside another one {where} (blocks do not nest)")
            block = []
        elif token == "]]":
            if block is None:
                raise TemplateError(f"']]' without an opening '[[' {where}")
            parts.append(Block(tuple(block)))
            block = None
        elif token in ("{", "}"):
            raise TemplateError(f"a lone '{token}' {where} (write '{token * 2}' for a literal brace)")
        else:
            name = token[1:-1].strip()
            if not _NAME_RE.fullmatch(name):
                raise TemplateError(f"placeholder {token!r} {where} is not a field name (write '{{{{' for a "
                                    "literal brace)")
            add(Field(name))
    add(text[pos:])
    if block is not None:
        raise TemplateError("a '[[' block is never closed with ']]'")
    return Template(text, tuple(parts))


def column_template(value: str) -> Template:
    """A column map value: a template if it has a `{` or a `[[` block, else the name of one column."""
    if "{" in value or "[[" in value:
        return parse(value)
    name = value.strip()
    if not _NAME_RE.fullmatch(name):
        raise TemplateError(f"{value!r} is neither a column name nor a template with {{column}} placeholders")
    return Template(value, (Field(name),))


def lookup_path(data: Any, name: str) -> Any:
    """The value at dotted path `name` in nested mappings; MissingField if any step is absent.

    A key that itself contains dots (`"meta.title"` as one column) is found before the path is followed."""
    if isinstance(data, dict) and name in data:
        return data[name]
    node = data
    for key in name.split("."):
        if not isinstance(node, dict) or key not in node:
            raise MissingField(name)
        node = node[key]
    return node


def columns_of(data: Any) -> list[str]:
    """The field names of a row, nested ones as dotted paths (one level of nesting shown in full)."""
    if not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += [f"{key}.{inner}" for inner in value]
        else:
            out.append(str(key))
    return out
