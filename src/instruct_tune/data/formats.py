"""Normalise raw rows of each supported format into records (`instruction`, `input`, `output`, `answer`, `task`).

A row is what a source yields: a mapping (json, jsonl, csv, parquet, hub datasets) or a text line (txt).
Each row comes with its location (`file: line 3` or `file: record 3`), and every error names it and the field.
Conversation formats (sharegpt, dialogue) turn one row into several records: each assistant reply that
follows a user turn becomes a record, earlier turns go into `input` as `<|user|>` / `<|assistant|>` context
(the `dialogue` prompt template renders it the same way); with `merge_conversations` one record per row.

A source's column map (`columns:` in params, a `ColumnMap` here) sets `instruction` / `input` / `output` /
`system` from the row's own columns (a name or a template, see `text_template`); the fields it does not name
come from the format as without a map. Conversation formats make several records per row, so there a map may
set only `system`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_args

from instruct_tune.errors import UserError
from instruct_tune.params import DataFormat
from instruct_tune.text_template import MissingField, Template, column_template, columns_of, lookup_path

FORMATS = get_args(DataFormat)  # the names params.yaml allows for a source's `format`


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from (for error messages)."""

    location: str  # e.g. "data/x.jsonl: line 7" or "data/x.json: record 3"
    data: Any


def _describe(value: Any) -> str:
    name = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(type(value))
    if name is None:
        name = "a number" if isinstance(value, (int, float)) else type(value).__name__
    shown = repr(value)
    return f"{name} ({shown[:40]}{'...' if len(shown) > 40 else ''})" if value is not None else name


def _field(row: Row, names: tuple[str, ...], required: bool = True) -> str:
    """The first present field of `names` as a string; "" if absent and not required; a UserError otherwise."""
    data = row.data
    if not isinstance(data, dict):
        raise UserError(f"{row.location}: expected an object with field '{names[0]}', got {_describe(data)}")
    for name in names:
        if name in data:
            value = data[name]
            if value is None and not required:
                return ""
            if not isinstance(value, str):
                raise UserError(f"{row.location}: field '{name}': expected a string, got {_describe(value)}")
            return value
    if required:
        also = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
        raise UserError(f"{row.location}: missing field '{names[0]}'{also} (columns present: "
                        f"{', '.join(columns_of(data)) or 'none'}; map yours with the source's `columns:`)")
    return ""


def _optional(row: Row, name: str) -> str | None:
    """An optional string field (`answer`, `task`): None when absent or null."""
    value = row.data.get(name) if isinstance(row.data, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{row.location}: field '{name}': expected a string or null, got {_describe(value)}")
    return value


def _record(instruction: str, input_text: str, output: str, answer: str | None = None, task: str | None = None) -> dict:
    return {"instruction": instruction, "input": input_text, "output": output, "answer": answer, "task": task}


# The columns each simple format reads per record field (the first one present wins); `input` is optional.
SIMPLE_FORMATS = {
    "alpaca": {"instruction": ("instruction",), "input": ("input",), "output": ("output",)},
    "dolly": {"instruction": ("instruction",), "input": ("context",), "output": ("response",)},
    "qa": {"instruction": ("question", "q"), "input": ("context",), "output": ("answer", "a")},
}


@dataclass(frozen=True)
class ColumnMap:
    """A source's `columns:`, parsed: record field -> template over the row's columns."""

    source: str  # how errors name the source (its `name`, else its URI)
    templates: dict[str, Template]

    @classmethod
    def parse(cls, source: str, columns: dict[str, str] | None) -> ColumnMap | None:
        if not columns:
            return None
        return cls(source, {field: column_template(value) for field, value in columns.items()})

    @property
    def reads(self) -> set[str]:
        """Every column the map reads (first step of a dotted path too)."""
        return {name.split(".")[0] for t in self.templates.values() for name in t.fields} | {
            name for t in self.templates.values() for name in t.fields}

    def values(self, row: Row) -> dict[str, str]:
        """The mapped fields of one row; a missing column names the source, the row, the column and those present."""
        data = row.data
        if not isinstance(data, dict):
            raise UserError(f"source {self.source!r}: {row.location}: a column map needs rows with named columns, "
                            f"got {_describe(data)}")
        out = {}
        for field, template in self.templates.items():
            try:
                out[field] = template.render(lambda name: lookup_path(data, name))
            except MissingField as exc:
                raise UserError(
                    f"source {self.source!r}: {row.location}: columns.{field} = {template.source!r} asks for "
                    f"column '{exc.name}', which is not there (columns present: "
                    f"{', '.join(columns_of(data)) or 'none'})") from None
            except TypeError as exc:
                raise UserError(f"source {self.source!r}: {row.location}: columns.{field}: {exc}") from None
        return out


def from_simple(row: Row, fmt: str, mapped: dict[str, str] | None = None, reads: set[str] = frozenset()) -> list[dict]:
    """One record from a row of a simple format; fields in `mapped` (a column map's values) replace the format's.

    alpaca keeps `answer` and `task` when present, unless the column map reads those columns as text."""
    mapped = mapped or {}
    spec = SIMPLE_FORMATS[fmt]
    if not isinstance(row.data, dict):
        raise UserError(f"{row.location}: expected an object with field '{spec['instruction'][0]}', "
                        f"got {_describe(row.data)}")
    values = {field: mapped[field] if field in mapped else _field(row, names, required=field != "input")
              for field, names in spec.items()}
    extra = {name: _optional(row, name) if fmt == "alpaca" and name not in reads else None
             for name in ("answer", "task")}
    record = _record(values["instruction"], values["input"], values["output"], extra["answer"], extra["task"])
    if mapped.get("system"):
        record["system"] = mapped["system"]
    return [record]


def from_alpaca(row: Row) -> list[dict]:
    """instruction / input (optional: some files omit it) / output; `answer` and `task` kept when present."""
    return from_simple(row, "alpaca")


def from_dolly(row: Row) -> list[dict]:
    """Databricks Dolly: instruction / context (optional) / response."""
    return from_simple(row, "dolly")


def from_qa(row: Row) -> list[dict]:
    """question (or q) / answer (or a); an optional `context` becomes the input."""
    return from_simple(row, "qa")


# Role names seen in ShareGPT exports and chat datasets, mapped to the three roles a record knows.
_ROLES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "model": "assistant", "system": "system",
}


def format_context(turns: Iterable[tuple[str, str]]) -> str:
    """Earlier turns as the `dialogue` template shows them: `<|role|>` on its own line, then the text."""
    return "\n".join(f"<|{role}|>\n{text}" for role, text in turns)


def conversation_records(turns: list[tuple[str, str]], merge: bool) -> list[dict]:
    """Records from (role, text) turns: one per user -> assistant pair, or one for the whole conversation."""
    pairs = [i for i in range(1, len(turns)) if turns[i][0] == "assistant" and turns[i - 1][0] == "user"]
    if merge:
        pairs = pairs[-1:]  # the last reply is the output; everything before its question is context
    return [_record(turns[i - 1][1], format_context(turns[: i - 1]), turns[i][1]) for i in pairs]


def from_sharegpt(row: Row, merge: bool = False) -> list[dict]:
    """`conversations` (or `messages`): a list of {from, value} or {role, content} turns."""
    data = row.data
    if not isinstance(data, dict):
        raise UserError(f"{row.location}: expected an object with field 'conversations', got {_describe(data)}")
    key = next((k for k in ("conversations", "messages", "conversation") if k in data), None)
    if key is None:
        raise UserError(f"{row.location}: missing field 'conversations' (or 'messages')")
    if not isinstance(data[key], list):
        raise UserError(f"{row.location}: field '{key}': expected a list of turns, got {_describe(data[key])}")
    turns = []
    for i, turn in enumerate(data[key]):
        turn_row = Row(f"{row.location}: field '{key}[{i}]'", turn)
        if not isinstance(turn, dict):
            raise UserError(f"{turn_row.location}: expected a turn object, got {_describe(turn)}")
        role_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
        role = _field(turn_row, (role_key,))
        if role.lower() not in _ROLES:
            raise UserError(f"{turn_row.location}: field '{role_key}': unknown role {role!r} "
                            f"(expected one of {', '.join(sorted(_ROLES))})")
        turns.append((_ROLES[role.lower()], _field(turn_row, (text_key,))))
    return conversation_records(turns, merge)


_MARKER_RE = re.compile(r"<\|(user|assistant|system)\|>")
# DailyDialog is tokenised ("Hello , how are you ?", "I ’ m"): undo the spaces it put around punctuation.
# `(?<! )` and ` ++`: a run of spaces is tried once, from its start (a plain ` +` retried every suffix: quadratic).
_SPACE_BEFORE_PUNCT_RE = re.compile(r"(?<! ) ++([.,!?;:%)\]}])")
_SPACE_AFTER_OPEN_RE = re.compile(r"([(\[{$]) +")
_SPACED_APOSTROPHE_RE = re.compile(r"(\w) ?([’']) ?(?=(?:s|t|m|d|ll|re|ve|S|T|M|D|LL|RE|VE|Ll|Re|Ve)\b)")


def detokenize(text: str) -> str:
    """'Well , how long ? I ’ m' -> 'Well, how long? I’m' (DailyDialog's tokenised spacing)."""
    text = _SPACED_APOSTROPHE_RE.sub(r"\1\2", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    return _SPACE_AFTER_OPEN_RE.sub(r"\1", text).strip()


def dialogue_turns(text: str, location: str) -> list[tuple[str, str]]:
    """Turns of one dialogue: `<|user|>` / `<|assistant|>` markers, or DailyDialog's `__eou__` separators.

    DailyDialog has two speakers and no roles: each turn answers the one before it, so every turn after the
    first is a reply; the speaker of the reply is the assistant and the other speaker the user (roles are
    assigned relative to each reply by `dialogue_records`).
    """
    if _MARKER_RE.search(text):
        parts = _MARKER_RE.split(text)
        if parts[0].strip():
            raise UserError(f"{location}: text before the first <|user|> / <|assistant|> marker: "
                            f"{parts[0].strip()[:40]!r}")
        return [(role, body.strip()) for role, body in zip(parts[1::2], parts[2::2])]
    turns = [detokenize(t) for t in text.split("__eou__")]
    if turns and not turns[-1]:
        turns.pop()  # the line ends with a separator
    return [("", t) for t in turns]


def dialogue_records(turns: list[tuple[str, str]], merge: bool) -> list[dict]:
    """Records from dialogue turns; unlabelled (DailyDialog) turns: every consecutive pair is user -> assistant."""
    if any(role for role, _ in turns):
        return conversation_records(turns, merge)
    n = len(turns)
    ends = [n - 1] if merge else range(1, n)
    records = []
    for end in ends:
        if end < 1:
            continue
        # The reply's speaker is the assistant; turns alternate, so same parity = assistant.
        roles = [("assistant" if (end - i) % 2 == 0 else "user", t) for i, (_, t) in enumerate(turns[: end + 1])]
        records.append(_record(roles[end - 1][1], format_context(roles[: end - 1]), roles[end][1]))
    return records


def from_dialogue(row: Row, merge: bool = False) -> list[dict]:
    """A line of text (txt), or an object whose `dialogue` / `text` field holds one."""
    text = row.data
    if isinstance(text, dict):
        text = _field(row, ("dialogue", "text"))
    if not isinstance(text, str):
        raise UserError(f"{row.location}: expected a line of dialogue text, got {_describe(text)}")
    turns = dialogue_turns(text, row.location)
    # A dialogue without a reply gives no record: an error, not a silent zero (it used to surface stages later).
    if len(turns) < 2:
        raise UserError(f"{row.location}: a dialogue needs at least two turns (a message and its reply), found "
                        f"{len(turns)} (turns are separated by __eou__ or marked <|user|> / <|assistant|>)")
    records = dialogue_records(turns, merge)
    if not records:
        raise UserError(f"{row.location}: no <|user|> turn is followed by an <|assistant|> reply")
    return records


def detect_format(row: Row) -> str:
    """Guess a format from the first row's keys (or a text line: dialogue)."""
    data = row.data
    if isinstance(data, str):
        return "dialogue"
    if isinstance(data, dict):
        keys = set(data)
        if keys & {"conversations", "messages", "conversation"}:
            return "sharegpt"
        if "instruction" in keys and "response" in keys:
            return "dolly"
        if "instruction" in keys and "output" in keys:
            return "alpaca"
        if keys & {"question", "q"} and keys & {"answer", "a"}:
            return "qa"
        if keys & {"dialogue", "text"}:
            return "dialogue"
        found = ", ".join(sorted(map(str, keys))) or "none"
    else:
        found = _describe(data)
    raise UserError(f"{row.location}: cannot detect the format (fields: {found}); set the source's `format` to one of "
                    f"{', '.join(f for f in FORMATS if f != 'auto')}")


def normaliser(fmt: str, merge_conversations: bool = False) -> Callable[[Row], list[dict]]:
    """The function turning one row of format `fmt` into records."""
    simple = {"alpaca": from_alpaca, "dolly": from_dolly, "qa": from_qa}
    if fmt in simple:
        return simple[fmt]
    if fmt == "sharegpt":
        return lambda row: from_sharegpt(row, merge_conversations)
    if fmt == "dialogue":
        return lambda row: from_dialogue(row, merge_conversations)
    raise UserError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def resolve_format(rows: list[Row], fmt: str, columns: ColumnMap | None = None) -> str:
    """`fmt` checked, with `auto` replaced by the format detected from the first row (alpaca when the column
    map names both `instruction` and `output` and the row's own keys fit no format)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "auto" and rows:
        if columns is not None and {"instruction", "output"} <= set(columns.templates):
            try:
                return detect_format(rows[0])
            except UserError:
                return "alpaca"
        return detect_format(rows[0])
    return fmt


def _check_map_covers(rows: list[Row], columns: ColumnMap) -> None:
    """A column named only inside `[[...]]` blocks is optional per row, but a name no row has is a typo."""
    wanted = {name for t in columns.templates.values() for name in t.fields}
    missing = set(wanted)
    for row in rows:
        if isinstance(row.data, dict):
            for name in list(missing):
                try:
                    lookup_path(row.data, name)
                    missing.discard(name)
                except MissingField:
                    pass
        if not missing:
            return
    name = sorted(missing)[0]
    field = next(f for f, t in columns.templates.items() if name in t.fields)
    raise UserError(f"source {columns.source!r}: {rows[0].location}: columns.{field} = "
                    f"{columns.templates[field].source!r} asks for column '{name}', which no row has (columns present: "
                    f"{', '.join(columns_of(rows[0].data)) or 'none'})")


def normalise_rows(rows: list[Row], fmt: str, merge_conversations: bool = False,
                   columns: ColumnMap | None = None) -> list[dict]:
    """All records of `rows` in format `fmt` (`auto`: detected from the first row), with `columns` applied."""
    fmt = resolve_format(rows, fmt, columns)
    if not rows:
        return []
    if fmt != "dialogue" and isinstance(rows[0].data, str):
        raise UserError(f"{rows[0].location}: format '{fmt}' needs records with fields, but this source gives lines "
                        "of text (use format 'dialogue', or a json/jsonl/csv/parquet file)")
    if columns is None:
        convert = normaliser(fmt, merge_conversations)
        return [record for row in rows for record in convert(row)]
    _check_map_covers(rows, columns)
    if fmt in SIMPLE_FORMATS:
        reads = columns.reads
        return [record for row in rows for record in from_simple(row, fmt, columns.values(row), reads)]
    if set(columns.templates) - {"system"}:
        raise UserError(f"source {columns.source!r}: format {fmt!r} makes several records per row, so its column map "
                        f"may set only `system` (it sets {', '.join(sorted(columns.templates))}); use format "
                        "alpaca, dolly or qa to map instruction / input / output")
    convert = normaliser(fmt, merge_conversations)
    records = []
    for row in rows:
        system = columns.values(row).get("system")
        for record in convert(row):
            if system:
                record["system"] = system
            records.append(record)
    return records
