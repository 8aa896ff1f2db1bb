"""Strict answer verification for the built-in task families, in the spirit of lm-evaluation-harness:
a per-family filter extracts the answer a response commits to, then an exact comparison.

`lenient_match` is the old rule (the answer's tokens anywhere in the response), kept for comparison: it
passes rambling answers that merely mention the target ("The number 326 is less than 111." for 111).
`strict_match` passes only when the answer the response commits to (`extract_answer`) is the target:

- numbers: the first number in the response that is not copied from the prompt (operands are not answers);
- closed choices (even/odd, yes/no, listed options, weekdays, capitals, elements, letters): the first option
  named outside an enumeration of options ("even or odd", "326 or 111" are echoes or hedges, not answers);
- words: the first quoted word that is not a copy of the prompt's word, else the word the first sentence
  commits to ("is X", "becomes X", its single word, its last word);
- lists and phrases: the enumeration of the prompt's items, compared item by item.

A response that reasons before it answers commits to its conclusion: when its last sentence (with the list
lines after it) is a conclusion ("Therefore, ...", "So ...", "The answer is ...", "Final answer: ..."), the
family's rule reads that sentence first, and the whole response only when the conclusion names no answer.

`RULES` describes each family's rule in one line. `task=None` or an unknown family gets a generic rule
(a numeric answer gets the number rule, any other the text rule). The module needs no torch.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from instruct_tune.tasks import families as tasks
from instruct_tune.tasks.matching import normalise_tokens

# ---------------------------------------------------------------------------------------------------------
# Shared pieces: numbers, dates, quotes, words, option mentions
# ---------------------------------------------------------------------------------------------------------

# A number: optional minus directly attached (not after a letter or digit, so 2024-01-05 and 20-9 give no
# negatives), thousands separators, decimals; a trailing % / 'percent' marks a percentage; 3rd counts as 3.
_NUMBER = re.compile(
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
_NUMBER_HEDGE = re.compile(
    r"(?:\s+[^\W\d_]+){0,2}\s*,?\s*(?:or|and/or)\s+(?:maybe\s+|perhaps\s+|possibly\s+|about\s+)?[-−]?\d", re.I
)  # "5 letters, or maybe 6"
_WORD_HEDGE = re.compile(r"\s*,?\s*(?:or|and/or)\s+['\"‘“*]*[^\W\d_]", re.I)


@dataclass(frozen=True)
class _Num:
    value: Decimal
    percent: bool
    start: int
    end: int

    def text(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def _numbers(text: str) -> list[_Num]:
    """The numbers written with digits in `text`, in order."""
    found = []
    for m in _NUMBER.finditer(text):
        digits = m["int"].replace(",", "") + (m["frac"] or "")
        value = Decimal(digits) * (-1 if m["sign"] else 1)
        suffix = (m["suffix"] or "").strip().lower()
        found.append(_Num(value, suffix == "%" or suffix.startswith("per"), m.start(), m.end()))
    return found


def _spelled_numbers(text: str) -> list[_Num]:
    """Numbers written as words (zero to ninety-nine): read only when a response has no digits at all."""
    found = []
    for m in _NUMBER_WORD.finditer(text):
        if m["small"]:
            value = _UNITS.index(m["small"].lower())
        else:
            value = 20 + 10 * _TENS.index(m["tens"].lower()) + (_UNITS.index(m["unit"].lower()) if m["unit"] else 0)
        found.append(_Num(Decimal(value), bool(m["suffix"]), m.start(), m.end()))
    return found


def _parse_number(text: str) -> _Num | None:
    nums = _numbers(text) or _spelled_numbers(text)
    return nums[0] if nums else None


def _decimals(number_text: str) -> int:
    num = _NUMBER.search(number_text)
    return len(num["frac"]) - 1 if num and num["frac"] else 0


_MONTHS = tasks.MONTHS
_MONTH_ALT = "|".join(_MONTHS + ["Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec"])
_DATE = re.compile(
    rf"\b(?P<m1>{_MONTH_ALT})\.?\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?(?:,\s*|\s+)(?P<y1>\d{{4}})\b"
    rf"|\b(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m2>{_MONTH_ALT})\.?,?\s+(?P<y2>\d{{4}})\b"
    r"|\b(?P<y3>\d{4})-(?P<m3>\d{1,2})-(?P<d3>\d{1,2})\b"
)
# Dates without a year ("March 3", "3 March"): never parsed, only removed before counting days.
_PARTIAL_DATE = re.compile(
    rf"\b(?:{_MONTH_ALT})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH_ALT})\b"
)


def _month_number(name: str) -> int:
    return next(i for i, month in enumerate(_MONTHS, 1) if month.startswith(name[:3]))


def _dates(text: str) -> list[tuple[dt.date, int, int]]:
    """The full dates (long form 'March 5, 2001', '5 March 2001', ISO '2001-03-05') in `text`, in order."""
    found = []
    for m in _DATE.finditer(text):
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


def _long_date(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


# Quoted spans: 'x', "x", ‘x’, “x”, `x`, **x**. An apostrophe inside a word (it's) opens and closes nothing.
_QUOTED = re.compile(
    r"(?<![\w'’])'(?P<a>[^'\n]{1,80}?)'(?![\w'’])|\"(?P<b>[^\"\n]{1,80}?)\"|‘(?P<c>[^’\n]{1,80}?)’"
    r"|“(?P<d>[^”\n]{1,80}?)”|`(?P<e>[^`\n]{1,80}?)`|\*\*(?P<f>[^*\n]{1,80}?)\*\*"
)
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# A word followed by one of these is the source of a change, not the result: "'stood' becomes 'stayed'".
_SOURCE_LINK = re.compile(
    r"['\"’”*]*\s*(?:becomes|turns into|changes (?:to|into)|is changed to|is corrected to"
    r"|should be(?: spelled| spelt| written)?|->|→|=>)",
    re.I,
)
# Words after which a sentence states its answer: "The past tense of stand is stood".
_CONNECTOR = re.compile(
    r"\b(?:is|are|was|were|becomes|become|would be|will be|should be|must be|gives|reads|equals)\b|[:=→]|->", re.I
)
# A copy of the prompt's word right after this is still the answer: "The answer is sheep."
_ANSWER_MARKER = re.compile(r"\banswer\s*(?:is|:)\s*['\"‘“*]*$", re.I)
# Words that are never the answer of a word family: articles, copulas, lead-ins and the tasks' own vocabulary.
_FILLER = frozenset(
    "a an the is are was were be it its it's this that these those there here so then thus yes sure certainly "
    "okay ok of in on to for with as by from and or but not answer word words form spelled spelt written "
    "spelling plural singular past tense verb noun opposite antonym synonym means meaning same correct correctly "
    "acronym backwards reversed reverse vowels letters one two i we you".split()
)
_LEAD_IN = re.compile(r"^(?:\s*(?:sure|certainly|of course|okay|ok|absolutely|great question|yes)\s*[!.,:]+)+\s*", re.I)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def _quoted(text: str) -> list[tuple[str, int, int]]:
    """Quoted spans of `text` as (content, start, end), in order."""
    return [(next(g for g in m.groups() if g is not None).strip(), m.start(), m.end()) for m in _QUOTED.finditer(text)]


def _fold(text: str) -> str:
    """Accents dropped (Brasilia matches Brasília); NFD keeps superscripts and the like as they are."""
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", text)
                                                if not unicodedata.combining(c)))


def _key(text: str) -> str:
    """A case- and accent-insensitive comparison key, surrounding punctuation dropped."""
    return " ".join(_fold(text).casefold().strip(" \t\n.,;:!?'\"‘’“”*`()").split())


def _sentences(text: str) -> list[tuple[str, int]]:
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


def _first_sentence(text: str) -> str:
    sentences = _sentences(text)
    return sentences[0][0].strip() if sentences else ""


@dataclass(frozen=True)
class _Mention:
    key: str
    start: int
    end: int


# Text between two options of one enumeration: "even or odd", "326, 111 and 5", "'forest', 'lantern'".
_LIST_SEP = re.compile(
    r"[\s'\"‘’“”*]*(?:,\s*(?:or|and|nor)?|(?:or|and|nor)\b|/|&)(?:\s+(?:an?|the)\b)?[\s'\"‘’“”*]*", re.I
)
_NEGATION = re.compile(r"\b(?:not|never|isn't|aren't|wasn't|rather than|instead of)\s+(?:an?\s+|the\s+)?['\"‘“*]*$",
                       re.I)


def _negated(text: str, start: int) -> bool:
    """Whether the word at `start` is negated: "not even", "rather than 'standed'"."""
    return bool(_NEGATION.search(text[max(0, start - 25) : start]))


def _first_option(text: str, mentions: list[_Mention], commits: Callable[[_Mention], bool] | None = None) -> str | None:
    """The first option the text commits to: the first mention outside an enumeration of two or more
    different options (an echo of the question's choices, a list, a hedge) and not negated ("not even")."""
    runs: list[list[_Mention]] = []
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
        if _negated(text, m.start) or (commits and not commits(m)):
            continue
        return m.key
    return None


@functools.lru_cache(maxsize=512)
def _alternation(written: tuple[str, ...], flags: int = re.I) -> re.Pattern[str]:
    """One compiled pattern for a set of whole-word options, longest first (New Delhi before Delhi)."""
    options = "|".join(re.escape(w) for w in sorted(written, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{options})(?![\w])", flags)


@functools.lru_cache(maxsize=512)
def _lookup(options: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {_key(w): c for w, c in options}


def _word_mentions(text: str, options: dict[str, str]) -> list[_Mention]:
    """Mentions of the options (written form -> canonical option) as whole words, any case."""
    if not options:
        return []
    lookup = _lookup(tuple(options.items()))
    return [_Mention(lookup[_key(m.group())], m.start(), m.end())
            for m in _alternation(tuple(options)).finditer(text)]


def _mentioned(text: str, names: list[str]) -> set[str]:
    """The names that occur in `text` as whole words (case- and accent-insensitive)."""
    return {m.key for m in _word_mentions(_fold(text), {_fold(n): n for n in names})}


def _listed(text: str) -> list[str]:
    """The longest enumeration 'a, b and c' / 'a, b or c' / 'a, b, c' in `text`, as items."""
    best: list[str] = []
    for m in re.finditer(r"[\w.-]+(?:,\s*[\w.-]+)*(?:,?\s+(?:and|or)\s+[\w.-]+|,\s*[\w.-]+)", text):
        items = [x.strip(".") for x in re.split(r",\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+", m.group()) if x.strip(".")]
        if len(items) > len(best):
            best = items
    return best


def _prompt(instruction: str, input_text: str) -> str:
    return f"{instruction}\n{input_text}"


# ---------------------------------------------------------------------------------------------------------
# Extractors: one small function per kind of answer
# ---------------------------------------------------------------------------------------------------------


def _committed_number(
    response: str, prompt: str, *, percent_only: bool = False, operands: set[Decimal] | None = None
) -> _Num | None:
    """The first number of the response whose value is not in the prompt (operands copied from the question
    are not answers); then, when the response only repeats the prompt's numbers: the first number that
    is not one of `operands` (range: 300 - 100 = 200 with 200 listed), the first one written more often than
    the prompt writes it (16 ÷ 4 = 4), else the first number. None when it hedges ("17 or 18")."""
    nums = _numbers(response) or _spelled_numbers(response)  # number words only in a response without digits
    nums = [n for n in nums if not _negated(response, n.start)]  # "18, not 17" commits to 18
    if percent_only:
        nums = [n for n in nums if n.percent]
    if not nums:
        return None
    prompt_nums = _numbers(prompt)
    in_prompt = {n.value for n in prompt_nums}
    choice = next((n for n in nums if n.value not in in_prompt), None)
    if choice is None and operands:
        choice = next((n for n in nums if n.value not in operands), None)
    if choice is None:
        allowed, seen = Counter(n.value for n in prompt_nums), Counter()
        for n in nums:
            seen[n.value] += 1
            if seen[n.value] > allowed[n.value]:
                choice = n
                break
    choice = choice or nums[0]
    return None if _NUMBER_HEDGE.match(response, choice.end) else choice


def _prompt_word_counts(instruction: str, input_text: str) -> Counter[str]:
    """The words a response may copy from the prompt: those quoted in the instruction and the input's."""
    words = [w for span, _, _ in _quoted(instruction) for w in _WORD.findall(span)] + _WORD.findall(input_text)
    return Counter(_key(w) for w in words)


def _word_answer(instruction: str, input_text: str, response: str) -> str | None:
    """The word a response commits to (word families): the first quoted span that is neither a copy of the
    prompt's word nor the source of a change ('stood' becomes 'stayed' commits to 'stayed'); without one,
    the word its first sentence commits to. A copy counts when written more often than the prompt does
    (the plural of 'sheep' is 'sheep')."""
    prompt = _prompt_word_counts(instruction, input_text)

    def hedged(end: int) -> bool:
        return bool(_WORD_HEDGE.match(response, end))

    quoted = _quoted(response)
    answers = [(s, end) for s, start, end in quoted
               if _WORD.search(s) and not _SOURCE_LINK.match(response, end) and not _negated(response, start)]
    for s, end in answers:
        if any(_key(w) not in prompt for w in _WORD.findall(s)):
            return None if hedged(end) else s
    seen: Counter[str] = Counter()
    for s, _, end in quoted:  # every quoted copy counts, sources included: 'put' becomes 'put'
        seen[_key(s)] += 1
        if (s, end) in answers and 0 < prompt[_key(s)] < seen[_key(s)]:
            return None if hedged(end) else s
    sentences = _sentences(response)
    first = list(_WORD.finditer(sentences[0][0])) if sentences else []
    if len(first) == 1 and _key(first[0].group()) not in _FILLER:  # "Sheep." answers even if it copies the prompt
        return None if hedged(sentences[0][1] + first[0].end()) else first[0].group()
    for sentence, offset in sentences:  # a sentence of copies ("The plural of sheep.") commits to nothing
        found = _sentence_word(sentence, prompt)
        if found:
            return None if hedged(offset + found[1]) else found[0]
    return None


def _sentence_word(sentence: str, prompt: Counter[str]) -> tuple[str, int] | None:
    """The word an unquoted sentence commits to, with its end: its only word before a comma ("Children,
    because..."), the first word after 'is'/'becomes'/':' ("The plural of child is children"), its first word
    ("Stood is the past tense of stand"), its last word ("One nucleus, two nuclei")."""
    words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(sentence)]
    if not words:
        return None
    counts: Counter[str] = Counter()
    running = []
    for w, _, _ in words:
        counts[_key(w)] += 1
        running.append(counts[_key(w)])

    def ok(i: int, copies: bool) -> bool:
        word, key = words[i][0], _key(words[i][0])
        filler = key in _FILLER and not (word.isupper() and len(word) > 1)  # NOT, ONE: acronyms
        if filler or _SOURCE_LINK.match(sentence, words[i][2]) or _negated(sentence, words[i][1]):
            return False
        after_marker = bool(_ANSWER_MARKER.search(sentence, 0, words[i][1]))  # "The answer is sheep."
        return key not in prompt or (copies and (running[i] > prompt[key] or after_marker))

    candidates = []
    clause_end = re.search(r"[,;:(]", sentence)
    if clause_end and sum(1 for _, s, _ in words if s < clause_end.start()) == 1:
        candidates.append(0)
    for c in _CONNECTOR.finditer(sentence):
        following = [i for i, (_, s, _) in enumerate(words) if s >= c.end()]
        rest = [i for i in following if _key(words[i][0]) not in _FILLER]
        if rest:
            candidates.append(rest[0])
    candidates += [0, len(words) - 1]
    for copies in (False, True):
        for i in candidates:
            if ok(i, copies):
                return words[i][0], words[i][2]
    return None


def _phrase_items(instruction: str, input_text: str) -> list[str]:
    """The items of a list task: the input's lines (or comma-separated items), else the instruction's
    first quoted span split at ';', else the instruction's enumeration."""
    if input_text.strip():
        sep = "\n" if "\n" in input_text.strip() else ","
        return [x.strip() for x in input_text.split(sep) if x.strip()]
    quoted = _quoted(instruction)
    if quoted and ";" in quoted[0][0]:
        return [x.strip() for x in quoted[0][0].split(";") if x.strip()]
    return _listed(instruction)


def _item_runs(text: str, mentions: list[_Mention], sep: re.Pattern[str]) -> list[list[_Mention]]:
    """Maximal runs of different items joined by `sep`."""
    runs: list[list[_Mention]] = []
    for m in mentions:
        last = runs[-1] if runs else None
        if last and sep.fullmatch(text, last[-1].end, m.start) and m.key not in {x.key for x in last}:
            last.append(m)
        else:
            runs.append([m])
    return runs


def _item_mentions(text: str, items: list[str]) -> list[_Mention]:
    """Mentions of list items: numbers by value (88 and 88.0 alike), words as whole words, any case."""
    if items and all(_NUMBER.fullmatch(x) for x in items):
        values = {Decimal(x.replace(",", "")): x for x in items}
        return [_Mention(values[n.value], n.start, n.end) for n in _numbers(text)
                if n.value in values and not n.percent]
    return _word_mentions(text, {x: x.casefold() for x in items})


_LIST_MARKER = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+", re.M)
# Text between two items of an enumeration: "5, 72 and 88", "5 < 72 < 88", "5 -> 72", one item per line.
_ENUM_SEP = re.compile(r"[\s'\"‘’“”*,;<>→-]*(?:(?:and|then)\s+[\s'\"‘’“”*]*)?", re.I)


def _sorted_answer(instruction: str, input_text: str, response: str) -> str | None:
    """The LAST complete enumeration of the prompt's items in the response (a numbered or bulleted list
    counts): the model may restate the unsorted list before giving the sorted one."""
    if input_text.strip():
        items = _phrase_items(instruction, input_text)
    elif re.search(r"\bnumbers\b", instruction):  # every number of "Sort the numbers 88, 5 and 72 ..."
        items = [n.text() for n in _numbers(instruction)]
    else:
        items = _listed(instruction)
    text = _LIST_MARKER.sub("", response)
    runs = _item_runs(text, _item_mentions(text, items), _ENUM_SEP)
    complete = [run for run in runs if len(run) == len(items) > 0]
    return ", ".join(text[m.start : m.end] for m in complete[-1]) if complete else None


_NUMBERED_LINE = re.compile(r"^[ \t*]*(\d+)[.)][ \t]+(.*?)[ \t]*$")
_FIRST_ITEM = re.compile(r"(?:^|[\s:*])1[.)][ \t]+(.*?)[ \t]*$")  # also after a lead-in: "Answer: 1. tea"


def _numbered_list(response: str) -> str | None:
    """The first numbered list (lines '1. x', '2. y', ... in sequence; blank lines allowed between)."""
    block: list[str] = []
    for line in response.splitlines():
        m = _NUMBERED_LINE.match(line)
        if block and m and int(m[1]) == len(block) + 1:
            block.append(m[2])
        elif block and line.strip():
            break
        elif not block and (first := _FIRST_ITEM.search(line)):
            block = [first[1]]
    return "\n".join(f"{i}. {x}" for i, x in enumerate(block, 1)) if block else None


_PHRASE_SEP = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.I)


def _joined_phrase(instruction: str, input_text: str, response: str) -> str | None:
    """The first 'a, b and c' phrase in the response that holds every item exactly once, as written."""
    items = _phrase_items(instruction, input_text)
    runs = _item_runs(response, _item_mentions(response, items), _PHRASE_SEP)
    run = next((r for r in runs if len(r) == len(items) > 0), None)
    return response[run[0].start : run[-1].end] if run else None


def _prompt_phrase(instruction: str, input_text: str) -> str:
    quoted = _quoted(instruction)
    return quoted[0][0] if quoted else input_text.strip()


def _rewritten_phrase(instruction: str, input_text: str, response: str, keep_order_is_copy: bool) -> str | None:
    """The first run of all the prompt phrase's words (space-separated, any case) that is not a copy of the
    phrase: an exact copy, or for word order any run in the original order."""
    phrase = _prompt_phrase(instruction, input_text)
    words = phrase.split()
    runs = _item_runs(response, _word_mentions(response, {w: w.casefold() for w in words}), re.compile(r"\s+"))
    for run in runs:
        if len(run) != len(words):
            continue
        text = response[run[0].start : run[-1].end]
        if text == phrase or (keep_order_is_copy and [m.key for m in run] == [w.casefold() for w in words]):
            continue
        return text
    return None


# ---------------------------------------------------------------------------------------------------------
# Closed option sets
# ---------------------------------------------------------------------------------------------------------

# Plausible wrong answers outside the tables, so that "The capital of Australia is Sydney." commits to Sydney.
_OTHER_CITIES = [
    "Sydney", "Melbourne", "Toronto", "Montreal", "Vancouver", "Rio de Janeiro", "São Paulo", "Istanbul", "Mumbai",
    "Shanghai", "Osaka", "Kyoto", "Lagos", "Zurich", "Geneva", "Casablanca", "Auckland", "New York", "Washington",
    "London", "Barcelona", "Milan", "Munich", "Frankfurt", "Hamburg", "Saint Petersburg", "St. Petersburg",
    "Alexandria", "Mombasa", "Gothenburg", "Bergen", "Kraków", "Krakow", "Thessaloniki", "Rotterdam", "The Hague",
    "Antwerp", "Ho Chi Minh City", "Busan", "Valparaíso", "Medellín", "Porto", "Marseille", "Lyon", "Naples",
    "Venice", "Florence", "Seville", "Kolkata", "Karachi", "Almaty", "Quito", "La Paz", "Montevideo", "Caracas",
    "Mexico City", "Manila", "Kuala Lumpur", "Salzburg", "Zagreb", "Bucharest", "Sofia", "Belgrade",
]
_OTHER_COUNTRIES = [
    "United States", "USA", "United Kingdom", "UK", "England", "Scotland", "Mexico", "Pakistan", "Bangladesh",
    "Algeria", "Tunisia", "Libya", "Ghana", "South Africa", "Ethiopia", "Tanzania", "Uganda", "Saudi Arabia", "Iraq",
    "Israel", "Syria", "Venezuela", "Ecuador", "Bolivia", "Uruguay", "Paraguay", "Philippines", "Malaysia",
    "Singapore", "North Korea", "Mongolia", "Nepal", "Sri Lanka", "Romania", "Bulgaria", "Serbia", "Croatia",
    "Slovakia", "Slovenia", "Estonia", "Latvia", "Lithuania", "Belarus", "Iceland", "Luxembourg", "Taiwan",
    "Cambodia", "Laos", "Myanmar", "Afghanistan", "Kazakhstan",
]
_CITY_ALIASES = {"Kiev": "Kyiv", "Berne": "Bern"}
_COUNTRY_ALIASES = {"Korea": "South Korea", "Czechia": "Czech Republic", "Holland": "Netherlands",
                    "Türkiye": "Turkey"}

_ELEMENT_NAMES = [name for name, _, _ in tasks.ELEMENTS]
_ELEMENT_SYMBOLS = [symbol for _, symbol, _ in tasks.ELEMENTS]
_OTHER_ELEMENT_NAMES = (
    "Boron Beryllium Chromium Manganese Cobalt Titanium Bromine Krypton Xenon Radon Plutonium Tungsten Cesium "
    "Caesium Barium Strontium Radium Selenium Arsenic Bismuth Cadmium Palladium Rhodium Osmium Iridium Polonium "
    "Vanadium Scandium Gallium Germanium Rubidium Francium Thorium Antimony Tellurium Zirconium Molybdenum "
    "Lanthanum Cerium Neptunium Americium Astatine Indium Thallium Rhenium Hafnium Tantalum"
).split()
# Symbols that are also English words (As, Be, In, At, No, Am) stay out: they would be read in any sentence.
_OTHER_SYMBOLS = ("B Cr Mn Co Ti Br Kr Xe Rn Pu W Cs Ba Sr Ra Se Bi Cd Pd Rh Os Ir Po V Sc Ga Ge Rb Fr Th Sb Te "
                  "Zr Mo La Ce Np Tl Re Hf Ta").split()
_ELEMENT_ALIASES = {"Aluminum": "Aluminium", "Sulphur": "Sulfur"}

_LETTER = re.compile(r"(?<![\w'’])(?:['\"‘“](?P<q>[A-Za-z])['\"’”]|(?P<u>[A-Z]))(?![\w'’])")
_WORD_AFTER = re.compile(r"\s+([a-z]+)|'[a-z]")


def _pronoun_or_article(text: str, m: _Mention) -> bool:
    """'I think', 'A letter': the word I or A, not a letter or the symbol of iodine ('I is', 'A comes' are)."""
    if text[m.start : m.end] not in ("I", "A"):
        return False
    after = _WORD_AFTER.match(text, m.end)
    return bool(after) and (after.group(1) or "") not in ("is", "was", "comes", "has", "stands")


def _symbol_mentions(text: str, symbols: list[str]) -> list[_Mention]:
    mentions = [_Mention(m.group(), m.start(), m.end()) for m in _alternation(tuple(symbols), 0).finditer(text)]
    return [m for m in mentions if not _pronoun_or_article(text, m)]


def _letter_mentions(text: str) -> list[_Mention]:
    mentions = [_Mention((m["q"] or m["u"]).upper(), m.start(), m.end()) for m in _LETTER.finditer(text)]
    return [m for m in mentions if not _pronoun_or_article(text, m)]


# ---------------------------------------------------------------------------------------------------------
# Rules: an extractor (instruction, input, response) -> answer and a comparison (extracted, target) -> bool
# ---------------------------------------------------------------------------------------------------------

_Extract = Callable[[str, str, str], "str | None"]  # (instruction, input, response) -> the committed answer
_Same = Callable[[str, str], bool]  # (extracted, target) -> equal under the family's comparison


@dataclass(frozen=True)
class _Rule:
    extract: _Extract
    same: _Same


def _same_number(places: int | None = None) -> _Same:
    """Equal values (a percentage only matches a percentage); with `places`, within half a unit of the last
    place (7.456 for 7.46, not 7.5)."""

    def same(got: str, target: str) -> bool:
        a, b = _parse_number(got), _parse_number(target)
        if a is None or b is None or a.percent != b.percent:
            return False
        if places is None:
            return a.value == b.value
        return abs(a.value - b.value) <= Decimal(5) / Decimal(10) ** (places + 1) + Decimal("1e-9")

    return same


def _same_key(got: str, target: str) -> bool:
    return _key(got) == _key(target)


def _same_exact(got: str, target: str) -> bool:
    return " ".join(got.split()) == " ".join(target.split())


def _same_acronym(got: str, target: str) -> bool:
    return _key(got).replace(".", "").replace(" ", "") == _key(target).replace(".", "").replace(" ", "")


def _same_date(got: str, target: str) -> bool:
    a, b = _dates(got), _dates(target)
    return bool(a and b) and a[0][0] == b[0][0]


def _same_sequence(got: str, target: str) -> bool:
    """The same comma-separated items in the same order: numbers by value, words case-insensitively."""
    def items(text: str) -> list[object]:
        parts = [p.strip() for p in text.split(",")]
        return [Decimal(p) if _NUMBER.fullmatch(p) else _key(p) for p in parts]
    return items(got) == items(target)


def _same_lines(got: str, target: str) -> bool:
    """The same numbered lines ('1. x'), item by item, case-insensitively: no item missing, none extra."""
    def items(text: str) -> list[str]:
        return [_key(re.sub(r"^\s*\d+[.)]\s*", "", line)) for line in text.splitlines() if line.strip()]
    return items(got) == items(target)


def _same_phrase(got: str, target: str) -> bool:
    """The same 'a, b and c' phrase up to case, spacing and an Oxford comma."""
    def norm(text: str) -> str:
        return re.sub(r",\s+and\s+", " and ", re.sub(r"\s*,\s*", ", ", _key(text)))
    return norm(got) == norm(target)


def _numeric(percent_only: bool = False, places: int | None = None, strip_dates: bool = False,
             operands: Callable[[str, str], set[Decimal]] | None = None) -> _Rule:
    def extract(instruction: str, input_text: str, response: str) -> str | None:
        if strip_dates:  # the dates restated in the answer are not the count of days
            response = _PARTIAL_DATE.sub(" ", _DATE.sub(" ", response))
        found = _committed_number(response, _prompt(instruction, input_text), percent_only=percent_only,
                                  operands=operands(instruction, input_text) if operands else None)
        return found.text() if found else None

    return _Rule(extract, _same_number(places))


def _choice(mentions: Callable[[str, str, str], list[_Mention]],
            commits: Callable[[str, _Mention], bool] | None = None, same: _Same = _same_key) -> _Rule:
    def extract(instruction: str, input_text: str, response: str) -> str | None:
        text = _fold(response)
        check = (lambda m: commits(text, m)) if commits else None
        return _first_option(text, mentions(instruction, input_text, text), check)

    return _Rule(extract, same)


def _options(names: list[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    table = {_fold(n): n for n in names}
    table.update({_fold(a): c for a, c in (aliases or {}).items()})
    return table


def _yes_no_commits(text: str, m: _Mention) -> bool:
    # "yes"/"no" only count as a standalone answer ("No, ...", "The answer is yes."), not "no doubt".
    return bool(re.match(r"[ \t]*(?:[,.!;:)*\n]|$)", text[m.end :]))


# --- family rules (each picks its kind from the instruction's wording) ---------------------------------------

_PLAIN_NUMBER = _numeric()
_WORD_RULE = _Rule(_word_answer, _same_key)


def _percentage(instruction: str, input_text: str) -> _Rule:
    asks_percent = re.search(r"what percent|what percentage|as a percent|to a percent|in percent", instruction, re.I)
    return _numeric(percent_only=bool(asks_percent))


def _comparison(instruction: str, input_text: str) -> _Rule:
    if re.search(r"\byes or no\b", instruction, re.I):
        return _choice(lambda i, x, t: _word_mentions(t, {"yes": "Yes", "no": "No"}), _yes_no_commits)
    if re.search(r"\brange\b|largest and the smallest|largest minus smallest", instruction, re.I):
        def operands(ins: str, inp: str) -> set[Decimal]:
            values = [n.value for n in _numbers(_prompt(ins, inp))]
            return {max(values), min(values)} if values else set()
        return _numeric(operands=operands)

    def listed(ins: str, inp: str, text: str) -> list[_Mention]:
        values = {n.value: n.text() for n in _numbers(_prompt(ins, inp))}
        return [_Mention(values[n.value], n.start, n.end) for n in _numbers(text) if n.value in values]
    return _choice(listed, same=_same_number())


def _even_odd(instruction: str, input_text: str) -> _Rule:
    return _choice(lambda i, x, t: _word_mentions(t, {"even": "even", "odd": "odd"}))


def _letter_position(instruction: str, input_text: str) -> _Rule:
    if _numbers(_prompt(instruction, input_text)):  # "the 12th letter", input "24": the answer is a letter
        return _choice(lambda i, x, t: _letter_mentions(t))
    return _PLAIN_NUMBER


def _alphabetical_order(instruction: str, input_text: str) -> _Rule:
    return _choice(lambda i, x, t: _word_mentions(t, {w: w for w in _listed(_prompt(i, x))}))


def _dates_rule(instruction: str, input_text: str) -> _Rule:
    if re.search(r"day of the week|weekday", instruction, re.I):
        return _choice(lambda i, x, t: _word_mentions(t, {d: d for d in tasks.WEEKDAYS}))
    if re.search(r"\bbetween\b|count the days|how many days", instruction, re.I):
        return _numeric(strip_dates=True)

    def new_date(ins: str, inp: str, response: str) -> str | None:
        given = {d for d, _, _ in _dates(_prompt(ins, inp))}
        found = _dates(response)
        pick = next((f for f in found if f[0] not in given), found[0] if found else None)
        if pick is None or re.match(r"\s*,?\s*or\s", response[pick[2] :], re.I):
            return None
        return _long_date(pick[0])
    return _Rule(new_date, _same_date)


def _capital(instruction: str, input_text: str) -> _Rule:
    prompt = _prompt(instruction, input_text)
    countries = list(tasks.CAPITALS) + _OTHER_COUNTRIES
    cities = list(tasks.CAPITALS.values()) + _OTHER_CITIES
    asked_country = _mentioned(prompt, list(tasks.CAPITALS))
    names, aliases = (cities, _CITY_ALIASES) if asked_country else (countries, _COUNTRY_ALIASES)
    own = _mentioned(prompt, names)  # the question's own city or country is no answer
    names = [n for n in names if n not in own]
    return _choice(lambda i, x, t: _word_mentions(t, _options(names, aliases)))


def _element(instruction: str, input_text: str) -> _Rule:
    prompt = _prompt(instruction, input_text)
    if re.search(r"atomic number of", instruction, re.I):
        return _PLAIN_NUMBER
    if re.search(r"symbol (?:for|of)\b", instruction, re.I):
        symbols = _ELEMENT_SYMBOLS + _OTHER_SYMBOLS
        return _choice(lambda i, x, t: _symbol_mentions(t, symbols), same=lambda a, b: a == b)
    own = _mentioned(prompt, _ELEMENT_NAMES)
    names = [n for n in _ELEMENT_NAMES + _OTHER_ELEMENT_NAMES if n not in own]
    return _choice(lambda i, x, t: _word_mentions(t, _options(names, _ELEMENT_ALIASES)))


def _string_transform(instruction: str, input_text: str) -> _Rule:
    if re.search(r"order of the words", instruction, re.I):
        return _Rule(lambda i, x, r: _rewritten_phrase(i, x, r, keep_order_is_copy=True), _same_key)
    if re.search(r"upper case|capital letters|lower case|capitalize", instruction, re.I):
        return _Rule(lambda i, x, r: _rewritten_phrase(i, x, r, keep_order_is_copy=False), _same_exact)
    if re.search(r"acronym", instruction, re.I):
        def acronym(ins: str, inp: str, response: str) -> str | None:  # "A.B.G." is one word
            return _word_answer(ins, inp, re.sub(r"\b((?:[A-Z]\.){2,})", lambda m: m[1].replace(".", ""), response))
        return _Rule(acronym, _same_acronym)
    return _WORD_RULE  # reversed word, word without vowels


def _list_format(instruction: str, input_text: str) -> _Rule:
    if re.search(r"numbered list", instruction, re.I):
        return _Rule(lambda i, x, r: _numbered_list(r), _same_lines)
    return _Rule(_joined_phrase, _same_phrase)


def _sorting(instruction: str, input_text: str) -> _Rule:
    return _Rule(_sorted_answer, _same_sequence)


_FAMILY_RULES: dict[str, Callable[[str, str], _Rule]] = {
    "arithmetic": lambda i, x: _PLAIN_NUMBER,
    "percentage": _percentage,
    "unit_conversion": lambda i, x: _numeric(places=2),
    "comparison": _comparison,
    "sorting": _sorting,
    "rounding": lambda i, x: _PLAIN_NUMBER,
    "even_odd": _even_odd,
    "number_sequence": lambda i, x: _PLAIN_NUMBER,
    "number_extraction": lambda i, x: _PLAIN_NUMBER,
    "counting": lambda i, x: _PLAIN_NUMBER,
    "string_transform": _string_transform,
    "letter_position": _letter_position,
    "alphabetical_order": _alphabetical_order,
    "list_format": _list_format,
    "dates": _dates_rule,
    "spelling": lambda i, x: _WORD_RULE,
    "plural": lambda i, x: _WORD_RULE,
    "past_tense": lambda i, x: _WORD_RULE,
    "antonym": lambda i, x: _WORD_RULE,
    "synonym": lambda i, x: _WORD_RULE,
    "capital": _capital,
    "element": _element,
}

_NUMBER_WORDS = "the first number not copied from the prompt (digits; number words only without digits)"
_WORDS = ("the first quoted word that is not the prompt's word nor the source of 'X becomes Y', else the word "
          "the first sentence commits to; case-insensitive")
RULES: dict[str, str] = {
    "arithmetic": f"{_NUMBER_WORDS}, equal in value to the result",
    "percentage": f"{_NUMBER_WORDS}, equal in value; 'what percent' questions need a percentage (35% / 35 percent)",
    "unit_conversion": f"{_NUMBER_WORDS}, within 0.005 of the result (7.456 for 7.46, not 7.5)",
    "comparison": "yes/no: the first standalone yes or no; which number: the first listed number named outside an "
                  "enumeration of the options ('326 or 111'); range: the first number that is not the largest or "
                  "smallest, equal in value",
    "sorting": "the last complete enumeration of the items in the response, in the target order",
    "rounding": f"{_NUMBER_WORDS}, equal in value (no tolerance: the rounding is the task)",
    "even_odd": "the first of even/odd named outside 'even or odd' and not negated ('not even')",
    "number_sequence": f"{_NUMBER_WORDS}, equal in value",
    "number_extraction": f"{_NUMBER_WORDS} (a count may repeat a number of the text), equal in value",
    "counting": f"{_NUMBER_WORDS}, equal in value",
    "string_transform": f"reverse, no vowels, acronym: {_WORDS}; upper/lower/title case: the first run of the "
                        "phrase's words that is not a copy, case-sensitive; word order: the first run of the "
                        "phrase's words not in the original order",
    "letter_position": "position: the first number (3rd counts as 3); letter: the first single capital or quoted "
                       "letter outside an enumeration (the words I and A excepted)",
    "alphabetical_order": "the first listed word named outside an enumeration of the listed words",
    "list_format": "numbered: the first numbered list, exactly the target items in order; phrase: the first "
                   "'a, b and c' run of all the items, same order (Oxford comma allowed)",
    "dates": "weekday: the first weekday outside an enumeration; days between: the first number once dates are "
             "removed; add/subtract: the first full date not in the prompt (long or ISO form), as a date",
    "spelling": _WORDS,
    "plural": _WORDS,
    "past_tense": _WORDS,
    "antonym": _WORDS,
    "synonym": _WORDS,
    "capital": "the first capital city (or country, when a city is given) named outside an enumeration, the "
               "question's own place excluded; accent-insensitive, a few aliases (Kiev) and wrong-answer "
               "distractors (Sydney) known",
    "element": "atomic number: the first number not in the prompt; symbol: the first element symbol, "
               "case-sensitive; name: the first element name outside an enumeration",
}
GENERIC_RULE = ("numeric answer: the first number not copied from the prompt, within half a unit of the answer's "
                "last decimal; other answers: the first quoted span not copied from the prompt, else the first "
                "sentence, which must be the answer, or begin, end or follow 'is' with it, without an 'or'")


def _generic_text(instruction: str, input_text: str, response: str) -> str | None:
    prompt = _prompt_word_counts(instruction, input_text)
    for s, _, end in _quoted(response):
        if _SOURCE_LINK.match(response, end) or all(_key(w) in prompt for w in _WORD.findall(s)):
            continue
        return None if _WORD_HEDGE.match(response, end) else s
    sentence = _first_sentence(response).strip()
    return sentence or None


def _same_generic_text(got: str, target: str) -> bool:
    have, want = normalise_tokens(got), normalise_tokens(target)
    if not want or have == want:
        return bool(want)
    if "or" in have and "or" not in want:  # a hedge between two answers
        return False
    k = len(want)
    starts = [0, len(have) - k]
    for i, token in enumerate(have):
        if token in ("is", "are", "was", "becomes", "be"):
            j = i + 1
            while j < len(have) and have[j] in ("a", "an", "the"):
                j += 1
            starts.append(j)
    return any(have[s : s + k] == want for s in starts if s >= 0)


def _generic(answer: str | None) -> _Rule:
    if answer is not None and re.fullmatch(r"\s*[-−]?[\d,]*\d(?:\.\d+)?\s*%?\s*", answer):
        return _numeric(places=_decimals(answer) or None)
    return _Rule(_generic_text, _same_generic_text)


def _drop_echo(response: str, instruction: str, input_text: str) -> str:
    """The response without verbatim copies of the question (small models often repeat it first): a copy
    commits to nothing, even when it holds the answer ("Round 42250 to the nearest ten."). A short input (a
    number, a word) goes only right after the instruction's copy: elsewhere it is also how answers read."""
    instruction, input_text = instruction.strip(), input_text.strip()
    start = response.find(instruction) if instruction and input_text else -1
    while start != -1:  # plain string search: a pattern per record would defeat re's compile cache
        after = start + len(instruction)
        after += len(response[after:]) - len(response[after:].lstrip())
        if response.startswith(input_text, after):
            response = response[:start] + " " + response[after + len(input_text) :]
        start = response.find(instruction, start + 1)
    copies = [instruction] + ([input_text] if len(input_text.split()) >= 3 or "\n" in input_text else [])
    for copy in copies:
        if copy:
            response = response.replace(copy, " ")
    return response


# A sentence that states the response's conclusion: "Therefore, ...", "So the largest is ...", "The answer is
# ...", "Final answer: ...". A response that reasons before it concludes commits to what it concludes, not
# to the first candidate it names on the way ("the GCD of 255 and 228 ... Therefore, the largest is 135.").
_CONCLUSION = re.compile(
    r"(?:^|(?<=[.!?:])\s+|\n)[ \t*#>-]*(?:(?:therefore|thus|hence|so|in conclusion|in summary|to conclude|to sum up|"
    r"finally|consequently)\b|(?:the |my )?(?:final |correct )?answer\s*(?:is\b|would be\b|:))",
    re.I | re.M,
)


_CONCLUSION_END = re.compile(r"[.!?](?=\s|$)|\n")


def _conclusion(response: str) -> str | None:
    """The response's last concluding sentence, with the list lines that follow it ("So the order is:\n1. a
    \n2. b"); None when the response states no conclusion or goes on past it (a conclusion followed by more
    reasoning is not where the response ends up)."""
    last = next(reversed(list(_CONCLUSION.finditer(response))), None)
    if last is None:
        return None
    tail = response[last.start() :]
    end = _CONCLUSION_END.search(tail, last.end() - last.start())
    rest = tail[end.end() :] if end else ""
    if any(line.strip() and not _LIST_MARKER.match(line) for line in rest.splitlines()):
        return None
    return tail


def _extract(rule: _Rule, instruction: str, input_text: str, response: str) -> str | None:
    """The answer the response commits to: in its last conclusion when that names one, else in the whole
    response (question echoes dropped first)."""
    response = _drop_echo(response, instruction, input_text)
    tail = _conclusion(response)
    if tail is not None:
        got = rule.extract(instruction, input_text, tail)
        if got is not None:
            return got
    return rule.extract(instruction, input_text, response)


def _rule(task: str | None, instruction: str, input_text: str, answer: str | None) -> _Rule:
    family = _FAMILY_RULES.get(task or "")
    return family(instruction, input_text) if family else _generic(answer)


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def extract_answer(task: str | None, instruction: str, input_text: str, response: str, *,
                   answer: str | None = None) -> str | None:
    """The answer the response commits to under the family's rule (None when it commits to none).

    For `task=None` or an unknown family, `answer` (when given) picks the generic numeric or text rule;
    the text rule returns the first non-copied quoted span or the first sentence.
    """
    input_text = input_text or ""
    return _extract(_rule(task, instruction, input_text, answer), instruction, input_text, response)


def strict_match(task: str | None, answer: str, instruction: str, input_text: str, response: str) -> bool:
    """True when the extracted answer equals the target under the family's comparison rule."""
    input_text = input_text or ""
    rule = _rule(task, instruction, input_text, answer)
    got = _extract(rule, instruction, input_text, response)
    return got is not None and rule.same(got, answer)
