"""Documents cut into passages of at most `passage_chars` characters (at blank lines, then sentence ends, then
spaces). A passage keeps its provenance: the document, its record or line for JSON, and its character offsets, so
that `text[start:end]` is the passage."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

from instruct_tune.synth.documents import Document


@dataclass(frozen=True)
class Passage:
    """A bounded piece of a document; `text` is the document's text[start:end]."""

    document: str
    record: int | None
    start: int
    end: int
    text: str

    @property
    def id(self) -> str:
        where = json.dumps([self.document, self.record, self.start, self.end, self.text], ensure_ascii=False)
        return hashlib.sha1(where.encode("utf-8")).hexdigest()[:16]


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+")


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """[start, end) without surrounding whitespace, or None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _pieces(text: str, start: int, end: int, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    """[start, end) cut after each match of `boundary`, each piece trimmed."""
    spans, pos = [], start
    for match in boundary.finditer(text, start, end):
        spans.append((pos, match.end()))
        pos = match.end()
    spans.append((pos, end))
    return [t for s in spans if (t := _trim(text, *s)) is not None]


def _units(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Spans of at most `max_chars`: paragraphs; a longer paragraph cut at sentence ends; a longer sentence at
    its last space before the limit (or at the limit)."""
    units = []
    for paragraph in _pieces(text, 0, len(text), _PARAGRAPH_BREAK):
        if paragraph[1] - paragraph[0] <= max_chars:
            units.append(paragraph)
            continue
        for sentence in _pieces(text, *paragraph, _SENTENCE_END):
            rest: tuple[int, int] | None = sentence
            while rest is not None and rest[1] - rest[0] > max_chars:
                cut = text.rfind(" ", rest[0] + 1, rest[0] + max_chars + 1)
                cut = cut if cut > rest[0] else rest[0] + max_chars
                units.append(_trim(text, rest[0], cut))  # type: ignore[arg-type] (non-empty: starts with a non-space)
                rest = _trim(text, cut, rest[1])
            if rest is not None:
                units.append(rest)
    return units


def passage_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) of the passages of `text`: consecutive units packed while the span stays within `max_chars`."""
    spans: list[tuple[int, int]] = []
    for start, end in _units(text, max_chars):
        if spans and end - spans[-1][0] <= max_chars:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def make_passages(docs: list[Document], max_chars: int, min_chars: int) -> tuple[list[Passage], int]:
    """Every passage of at least `min_chars` characters, in document order, and how many were shorter."""
    passages, short = [], 0
    for doc in docs:
        for start, end in passage_spans(doc.text, max_chars):
            if end - start < min_chars:
                short += 1
            else:
                passages.append(Passage(doc.name, doc.record, start, end, doc.text[start:end]))
    return passages, short


def sample_passages(passages: list[Passage], max_passages: int | None, seed: int) -> list[Passage]:
    """`max_passages` passages drawn with `random.Random(seed)`, kept in document order; all when None."""
    if max_passages is None or max_passages >= len(passages):
        return passages
    keep = sorted(random.Random(seed).sample(range(len(passages)), max_passages))
    return [passages[i] for i in keep]
