"""The shared pieces of strict answer verification (`tasks.verify`): numbers (digits and number words), dates,
quoted spans, words and sentences, mentions of a set of options, and the first option a text commits to outside
an enumeration. No task family's rule lives here: `extractors` and `verify` build theirs from these.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from instruct_tune.tasks import vocabulary

# A number: optional minus directly attached (not after a letter or digit, so 2024-01-05 and 20-9 give no
# negatives), thousands separators, decimals; a trailing % / 'percent' marks a percentage; 3rd counts as 3.
NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−]?)(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
    r"(?P<suffix>\s?%|\s+per\s?cent\b|(?:st|nd|rd|th)\b)?"
)
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER_WORD = re.compile(
    rf"\b(?:(?P<tens>{'|'.join(_TENS)})(?:[-\s](?P<unit>{'|'.join(_UNITS[1:10])}))?|(?P<small>{'|'.join(_UNITS)}))"
    r"\b(?P<suffix>\s?%|\s+per\s?cent\b)?",
    re.I,
)
# "17 or 18", "'stood' or 'standed'": a hedge between two answers commits to neither.
NUMBER_HEDGE = re.compile(
    r"(?:\s+[^\W\d_]+){0,2}\s*,?\s*(?:or|and/or)\s+(?:maybe\s+|perhaps\s+|possibly\s+|about\s+)?[-−]?\d", re.I
)  # "5 letters, or maybe 6"
WORD_HEDGE = re.compile(r"\s*,?\s*(?:or|and/or)\s+['\"‘“*]*[^\W\d_]", re.I)


@dataclass(frozen=True)
class Num:
    value: Decimal
    percent: bool
    start: int
    end: int

    def text(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def numbers(text: str) -> list[Num]:
    """The numbers written with digits in `text`, in order."""
    found = []
    for m in NUMBER.finditer(text):
        digits = m["int"].replace(",", "") + (m["frac"] or "")
        value = Decimal(digits) * (-1 if m["sign"] else 1)
        suffix = (m["suffix"] or "").strip().lower()
        found.append(Num(value, suffix == "%" or suffix.startswith("per"), m.start(), m.end()))
    return found


def spelled_numbers(text: str) -> list[Num]:
    """Numbers written as words (zero to ninety-nine): read only when a response has no digits at all."""
    found = []
    for m in _NUMBER_WORD.finditer(text):
        if m["small"]:
            value = _UNITS.index(m["small"].lower())
        else:
            value = 20 + 10 * _TENS.index(m["tens"].lower()) + (_UNITS.index(m["unit"].lower()) if m["unit"] else 0)
        found.append(Num(Decimal(value), bool(m["suffix"]), m.start(), m.end()))
    return found


def parse_number(text: str) -> Num | None:
    nums = numbers(text) or spelled_numbers(text)
    return nums[0] if nums else None


def decimals(number_text: str) -> int:
    num = NUMBER.search(number_text)
    return len(num["frac"]) - 1 if num and num["frac"] else 0


_MONTHS = vocabulary.MONTHS
_MONTH_ALT = "|".join(_MONTHS + ["Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec"])
DATE = re.compile(
    rf"\b(?P<m1>{_MONTH_ALT})\.?\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?(?:,\s*|\s+)(?P<y1>\d{{4}})\b"
    rf"|\b(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m2>{_MONTH_ALT})\.?,?\s+(?P<y2>\d{{4}})\b"
    r"|\b(?P<y3>\d{4})-(?P<m3>\d{1,2})-(?P<d3>\d{1,2})\b"
)
# Dates without a year ("March 3", "3 March"): never parsed, only removed before counting days.
PARTIAL_DATE = re.compile(
    rf"\b(?:{_MONTH_ALT})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH_ALT})\b"
)


def _month_number(name: str) -> int:
    return next(i for i, month in enumerate(_MONTHS, 1) if month.startswith(name[:3]))


def dates(text: str) -> list[tuple[dt.date, int, int]]:
    """The full dates (long form 'March 5, 2001', '5 March 2001', ISO '2001-03-05') in `text`, in order."""
    found = []
    for m in DATE.finditer(text):
        try:
            if m["m1"]:
                day = dt.date(int(m["y1"]), _month_number(m["m1"]), int(m["d1"]))
            elif m["m2"]:
                day = dt.date(int(m["y2"]), _month_number(m["m2"]), int(m["d2"]))
            else:
                day = dt.date(int(m["y3"]), int(m["m3"]), int(m["d3"]))
        except ValueError:  # February 30 and the like: not a date
            continue
        found.append((day, m.start(), m.end()))
    return found


def long_date(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


# Quoted spans: 'x', "x", ‘x’, “x”, `x`, **x**. An apostrophe inside a word (it's) opens and closes nothing.
_QUOTED = re.compile(
    r"(?<![\w'’])'(?P<a>[^'\n]{1,80}?)'(?![\w'’])|\"(?P<b>[^\"\n]{1,80}?)\"|‘(?P<c>[^’\n]{1,80}?)’"
    r"|“(?P<d>[^”\n]{1,80}?)”|`(?P<e>[^`\n]{1,80}?)`|\*\*(?P<f>[^*\n]{1,80}?)\*\*"
)
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# A word followed by one of these is the source of a change, not the result: "'stood' becomes 'stayed'".
SOURCE_LINK = re.compile(
    r"['\"’”*]*\s*(?:becomes|turns into|changes (?:to|into)|is changed to|is corrected to"
    r"|should be(?: spelled| spelt| written)?|->|→|=>)",
    re.I,
)
# Words after which a sentence states its answer: "The past tense of stand is stood".
CONNECTOR = re.compile(
    r"\b(?:is|are|was|were|becomes|become|would be|will be|should be|must be|gives|reads|equals)\b|[:=→]|->", re.I
)
# A copy of the prompt's word right after this is still the answer: "The answer is sheep."
ANSWER_MARKER = re.compile(r"\banswer\s*(?:is|:)\s*['\"‘“*]*$", re.I)
# Words that are never the answer of a word family: articles, copulas, lead-ins and the tasks' own vocabulary.
FILLER = frozenset(
    "a an the is are was were be it its it's this that these those there here so then thus yes sure certainly "
    "okay ok of in on to for with as by from and or but not answer word words form spelled spelt written "
    "spelling plural singular past tense verb noun opposite antonym synonym means meaning same correct correctly "
    "acronym backwards reversed reverse vowels letters one two i we you".split()
)
_LEAD_IN = re.compile(r"^(?:\s*(?:sure|certainly|of course|okay|ok|absolutely|great question|yes)\s*[!.,:]+)+\s*", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def quoted_spans(text: str) -> list[tuple[str, int, int]]:
    """Quoted spans of `text` as (content, start, end), in order."""
    return [(next(g for g in m.groups() if g is not None).strip(), m.start(), m.end()) for m in _QUOTED.finditer(text)]


def fold(text: str) -> str:
    """Accents dropped (Brasilia matches Brasília); NFD keeps superscripts and the like as they are."""
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", text)
                                                if not unicodedata.combining(c)))


def compare_key(text: str) -> str:
    """A case- and accent-insensitive comparison key, surrounding punctuation dropped."""
    return " ".join(fold(text).casefold().strip(" \t\n.,;:!?'\"‘’“”*`()").split())


def sentence_spans(text: str) -> list[tuple[str, int]]:
    """The sentences of `text` (a line counts as one) with their offsets, a lead-in ('Sure!') skipped."""
    lead = _LEAD_IN.match(text)
    pos, found = (lead.end() if lead else 0), []
    for end in _SENTENCE_END.finditer(text, pos):
        if text[pos : end.start()].strip():
            found.append((text[pos : end.start()], pos))
        pos = end.end()
    if text[pos:].strip():
        found.append((text[pos:], pos))
    return found


def first_sentence(text: str) -> str:
    sentences = sentence_spans(text)
    return sentences[0][0].strip() if sentences else ""


@dataclass(frozen=True)
class Mention:
    key: str
    start: int
    end: int


# Text between two options of one enumeration: "even or odd", "326, 111 and 5", "'forest', 'lantern'".
_LIST_SEP = re.compile(
    r"[\s'\"‘’“”*]*(?:,\s*(?:or|and|nor)?|(?:or|and|nor)\b|/|&)(?:\s+(?:an?|the)\b)?[\s'\"‘’“”*]*", re.I
)
_NEGATION = re.compile(r"\b(?:not|never|isn't|aren't|wasn't|rather than|instead of)\s+(?:an?\s+|the\s+)?['\"‘“*]*$",
                       re.I)


def negated(text: str, start: int) -> bool:
    """Whether the word at `start` is negated: "not even", "rather than 'standed'"."""
    return bool(_NEGATION.search(text[max(0, start - 25) : start]))


def first_option(text: str, mentions: list[Mention], commits: Callable[[Mention], bool] | None = None) -> str | None:
    """The first option the text commits to: the first mention outside an enumeration of two or more
    different options (an echo of the question's choices, a list, a hedge) and not negated ("not even")."""
    runs: list[list[Mention]] = []
    for m in mentions:
        last = runs[-1] if runs else None
        if last and _LIST_SEP.fullmatch(text, last[-1].end, m.start) and m.key not in {x.key for x in last}:
            last.append(m)
        else:
            runs.append([m])
    for run in runs:
        if len(run) > 1:
            continue
        m = run[0]
        if negated(text, m.start) or (commits and not commits(m)):
            continue
        return m.key
    return None


@functools.lru_cache(maxsize=512)
def alternation(written: tuple[str, ...], flags: int = re.I) -> re.Pattern[str]:
    """One compiled pattern for a set of whole-word options, longest first (New Delhi before Delhi)."""
    options = "|".join(re.escape(w) for w in sorted(written, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{options})(?![\w])", flags)


@functools.lru_cache(maxsize=512)
def _lookup(options: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {compare_key(w): c for w, c in options}


def word_mentions(text: str, options: dict[str, str]) -> list[Mention]:
    """Mentions of the options (written form -> canonical option) as whole words, any case."""
    if not options:
        return []
    lookup = _lookup(tuple(options.items()))
    return [Mention(lookup[compare_key(m.group())], m.start(), m.end())
            for m in alternation(tuple(options)).finditer(text)]


def mentioned(text: str, names: list[str]) -> set[str]:
    """The names that occur in `text` as whole words (case- and accent-insensitive)."""
    return {m.key for m in word_mentions(fold(text), {fold(n): n for n in names})}


def listed_items(text: str) -> list[str]:
    """The longest enumeration 'a, b and c' / 'a, b or c' / 'a, b, c' in `text`, as items."""
    best: list[str] = []
    for m in re.finditer(r"[\w.-]+(?:,\s*[\w.-]+)*(?:,?\s+(?:and|or)\s+[\w.-]+|,\s*[\w.-]+)", text):
        items = [x.strip(".") for x in re.split(r",\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+", m.group()) if x.strip(".")]
        if len(items) > len(best):
            best = items
    return best


def prompt_text(instruction: str, input_text: str) -> str:
    return f"{instruction}\n{input_text}"
