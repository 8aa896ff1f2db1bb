"""Text cleaning, record ids and the filters `prepare` applies (each drop counted by its reason).

Cleaning never drops a record by itself: it returns cleaned text (placeholders become ""), and the
filters in `drop_reason` / `Deduplicator` decide what is kept, so every drop is counted.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from typing import Any

# The reasons a record is dropped, in the order the filters run (metrics list all of them, zeros included).
DROP_REASONS = ("empty", "too_long", "too_short", "leakage", "duplicate", "near_duplicate")

# Elements that format prose (scraped text, rich-text exports). Document structure (`<html>`, `<title>`,
# `<form>`) is left alone: it only appears in markup that is itself the content, and "<title>" is also a
# placeholder in prose. `<mask>`, `<insert name>` or `<|user|>` are content, not markup.
_HTML_TAGS = (
    "a abbr audio b big blockquote br caption center cite code dd del div dl dt em figcaption figure font h1 h2 h3 "
    "h4 h5 h6 hr i img ins kbd li mark ol p picture pre q s samp small source span strike strong sub sup table tbody "
    "td tfoot th thead tr tt u ul video"
).split()
_TAG_NAMES = frozenset(_HTML_TAGS)
# A tag candidate: `<`, an optional `/`, a name, then everything up to the next `>` with no `<` inside.
# Possessive quantifiers (`*+`) never backtrack, and a candidate's scan ends at the next `<`, so finding
# every tag is linear in the text's length (the old single regex was quadratic after a `<b` with no `>`).
_TAG_CANDIDATE_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*+)([^<>]*+)>")
_BARE_TAG_TAIL_RE = re.compile(r"\s*+/?")
_ENTITY_RE = re.compile(r"&(?:#\d++|#x[0-9a-fA-F]++|[A-Za-z]++);")
_HTML_BREAK_RE = re.compile(r"(?:<br\s*+/?>|</(?:p|div|li|tr|h[1-6])>)[ \t]*+\n?", re.IGNORECASE)
# `<script>` and `<style>` blocks are code, not text: removed with their content (scraped pages carry them).
_SCRIPT_STYLE_OPEN_RE = re.compile(r"<(script|style)\b[^<>]*+>", re.IGNORECASE)
_SCRIPT_STYLE_CLOSE_RE = {name: re.compile(rf"</{name}\s*+>", re.IGNORECASE) for name in ("script", "style")}
_SCRIPT_STYLE_TAG_RE = re.compile(r"</?(?:script|style)\b[^<>]*+>", re.IGNORECASE)
# A record that is *about* markup or code (write an HTML page, fix this XML, make a word bold) keeps its
# tags: they are the content. So does a field that starts with a tag: it is markup, not prose with formatting.
_MARKUP_TOPIC_RE = re.compile(
    r"\b(?:html5?|xml|css|svg|markup|tags?|elements?|web ?pages?|websites?|forms?|code|program|script|function|"
    r"javascript|jsx|react|dom|template|email|bold|bolded|italics?|underlined?|highlight(?:ed)?|hyperlinks?|links?|embed)\b",
    re.IGNORECASE)

# Control and invisible format characters; newline and tab are handled by the whitespace rules.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]")
_SPACES_RE = re.compile(r"(?<=\S)[ \t\u00a0\u2000-\u200a\u3000]+")  # runs inside a line (indentation is kept)
_BLANK_LINES_RE = re.compile(r"\n{3,}")

# Alpaca's placeholders for "nothing here", compared after lowercasing and dropping `<>` and punctuation.
_PUNCTUATION_PLACEHOLDER_RE = re.compile(r"[\"'`.,:;\\/|_~^*+<>=#-]{1,3}")  # an input of '""', '.' or '``'
_INPUT_PLACEHOLDERS = {
    "noinput", "no input", "no input required", "no input needed", "no input necessary", "none", "n a", "na",
    "null", "nil", "empty", "nothing", "not applicable",
}
_OUTPUT_PLACEHOLDERS = {
    "nooutput", "no output", "no output required", "no output needed", "no output necessary", "noinput", "no input",
}


def _is_tag(match: re.Match[str]) -> bool:
    """A real element (`<p>`, `</b>`, `<br/>`) or one with attributes (`<a href="x">`): "<a link to a painting>" is
    prose, not a tag, and `<mask>` or `<insert name>` are content."""
    if match.group(2).lower() not in _TAG_NAMES:
        return False
    tail = match.group(3)
    return bool(_BARE_TAG_TAIL_RE.fullmatch(tail)) or (tail[:1].isspace() and "=" in tail)


def has_tag(text: str) -> bool:
    """True if `text` holds an HTML tag of a real element (linear time)."""
    return any(_is_tag(m) for m in _TAG_CANDIDATE_RE.finditer(text))


def starts_with_tag(text: str) -> bool:
    match = _TAG_CANDIDATE_RE.match(text)
    return match is not None and _is_tag(match)


def strip_script_style(text: str) -> str:
    """Remove `<script>...</script>` and `<style>...</style>` blocks, content included (linear time)."""
    if "<" not in text:
        return text
    parts, pos, unclosed = [], 0, set()
    while (opening := _SCRIPT_STYLE_OPEN_RE.search(text, pos)) is not None:
        name = opening.group(1).lower()
        closing = None if name in unclosed else _SCRIPT_STYLE_CLOSE_RE[name].search(text, opening.end())
        if closing is None:  # no closing tag after here, nor after any later opening: stop looking (stays linear)
            unclosed.add(name)
            parts.append(text[pos : opening.end()])
            pos = opening.end()
            continue
        parts.append(text[pos : opening.start()])
        pos = closing.end()
    parts.append(text[pos:])
    return _SCRIPT_STYLE_TAG_RE.sub("", "".join(parts))  # a lone opening or closing tag goes too, its text stays


def strip_html(text: str) -> str:
    """Remove HTML markup (real element names only, script and style blocks whole), keeping line breaks and
    decoding entities. Linear in the length of `text`."""
    if "<" not in text and "&" not in text:
        return text
    text = strip_script_style(text)
    if not has_tag(text) and not _ENTITY_RE.search(text):
        return text
    text = _HTML_BREAK_RE.sub("\n", text)
    text = _TAG_CANDIDATE_RE.sub(lambda m: "" if _is_tag(m) else m.group(0), text)
    return html.unescape(text)


def normalise_whitespace(text: str) -> str:
    """Unix newlines, no trailing spaces, single spaces inside lines (indentation kept), at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    lines = [_SPACES_RE.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()


def clean_text(text: str, keep_markup: bool = False) -> str:
    """NFC, no control characters, no HTML tags (unless `keep_markup`), tidy whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_RE.sub("", text)
    if not keep_markup:
        text = strip_html(text)
    return normalise_whitespace(text)


def _placeholder_key(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def is_placeholder(text: str, field: str) -> bool:
    """True for Alpaca-style stand-ins for an empty field: `<noinput>`, "No input.", "N/A" (input), `<nooutput>`...

    Any whole field in angle brackets that reads as a placeholder counts (`<N/A>`, `<no output>`); bare
    words such as "None" or "N/A" count for `input` only, since they can be a real answer in `output`.
    """
    stripped = text.strip()
    if len(stripped) > 40:  # placeholders are short; skip the work for real text
        return False
    key = _placeholder_key(stripped)
    if stripped.startswith("<") and stripped.endswith(">") and key in _INPUT_PLACEHOLDERS | _OUTPUT_PLACEHOLDERS:
        return True
    if field == "input":
        return (key != "" and key in _INPUT_PLACEHOLDERS) or bool(_PUNCTUATION_PLACEHOLDER_RE.fullmatch(stripped))
    if field == "output":
        return key != "" and key in _OUTPUT_PLACEHOLDERS  # punctuation-only output stays (it may be the answer)
    return False


def _has_markup(text: str) -> bool:
    return has_tag(text) or bool(_ENTITY_RE.search(text)) or bool(_SCRIPT_STYLE_OPEN_RE.search(text))


def clean_record(record: dict[str, Any], max_chars: int | None = None) -> dict[str, Any]:
    """Clean instruction, input and output (and answer) of a normalised record; placeholders become "".

    With `max_chars`, a record longer than that after the cheap steps (control characters, whitespace) is
    returned without HTML stripping: the length filter drops it anyway (markup counts towards the limit),
    so the stripper only ever sees text within the limit.
    """
    fields = ("instruction", "input", "output")
    out = dict(record)
    if max_chars is not None and sum(len(record[f]) for f in fields) > max_chars:  # only long raw text pays for this
        light = {f: clean_text(record[f], keep_markup=True) for f in fields}
        light = {f: "" if is_placeholder(text, f) else text for f, text in light.items()}
        if sum(map(len, light.values())) > max_chars:
            out.update(light)
            out["id"] = record_id(out)
            return out
    text = "\n".join(record[f] for f in fields)
    # Words inside script/style blocks or tags do not make a record "about markup" (`<script>` says "script").
    about_markup = _has_markup(text) and (
        bool(_MARKUP_TOPIC_RE.search(strip_script_style(text)))
        or any(starts_with_tag(record[f].lstrip()) for f in ("input", "output")))
    for field in fields:
        text = clean_text(record[field], keep_markup=about_markup)
        out[field] = "" if is_placeholder(text, field) else text
    if out.get("answer") is not None:
        out["answer"] = clean_text(out["answer"], keep_markup=True)
    if out.get("system"):
        out["system"] = clean_text(out["system"], keep_markup=True)
    out["id"] = record_id(out)
    return out


def record_id(record: dict[str, Any]) -> str:
    """Stable id: sha1 of the cleaned instruction, input and output (and system, when there is one), first 16
    hex digits."""
    fields = ("instruction", "input", "output") + (("system",) if record.get("system") else ())
    content = "\x1f".join(record[f] for f in fields)
    return hashlib.sha1(content.encode("utf-8")).hexdigest()[:16]


def near_duplicate_key(record: dict[str, Any]) -> str:
    """The text two near duplicates share: lowercase, no punctuation, no whitespace (instruction+input+output)."""
    text = "".join((record["instruction"], record["input"], record["output"])).lower()
    return hashlib.sha1(re.sub(r"[\W_]+", "", text).encode("utf-8")).hexdigest()


def _contains_phrase(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` as whole words (case-insensitive): "3" is not in "13"."""
    needle = needle.strip().lower()
    if not needle:
        return False
    pattern = r"(?<!\w)" + re.escape(needle) + r"(?!\w)"
    return re.search(pattern, haystack.lower()) is not None


def is_leaky(record: dict[str, Any]) -> bool:
    """The expected answer is already given in the input.

    With an `answer` (verifiable records): the answer occurs in the input as whole words. Without one, only
    an output that merely repeats the input counts: a short output found *inside* the input is usually the
    task itself (extraction, "odd one out", picking from a list), not a leak.
    """
    if not record["input"]:
        return False
    if record.get("answer"):
        return _contains_phrase(record["input"], record["answer"])
    return record["output"] == record["input"]


def drop_reason(record: dict[str, Any], max_chars: int, min_output_chars: int, drop_leakage: bool) -> str | None:
    """The first per-record filter `record` fails (duplicates are checked by `Deduplicator`), or None."""
    if not record["instruction"] or not record["output"]:
        return "empty"
    if len(record["instruction"]) + len(record["input"]) + len(record["output"]) > max_chars:
        return "too_long"
    if len(record["output"]) < min_output_chars:
        return "too_short"
    if drop_leakage and is_leaky(record):
        return "leakage"
    return None


class Deduplicator:
    """Remembers kept records across sources; the first occurrence wins, later ones are dropped."""

    def __init__(self, near_duplicates: bool) -> None:
        self.near_duplicates = near_duplicates
        self._exact: dict[str, str] = {}  # id -> source of the first occurrence
        self._near: dict[str, str] = {}

    def check(self, record: dict[str, Any]) -> tuple[str | None, str | None]:
        """(reason, source of the earlier record) if `record` duplicates a kept one, else (None, None) and remember
        it."""
        if record["id"] in self._exact:
            return "duplicate", self._exact[record["id"]]
        near = near_duplicate_key(record) if self.near_duplicates else None
        if near is not None and near in self._near:
            return "near_duplicate", self._near[near]
        self._exact[record["id"]] = record["source"]
        if near is not None:
            self._near[near] = record["source"]
        return None, None
