"""The extractors of strict answer verification (`tasks.verify`), one small function per kind of answer: the
committed number, the committed word, the items of a list (sorted, numbered, joined into a phrase), a rewritten
phrase; and the closed option sets (capitals and plausible wrong cities, element names and symbols, letters).
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

from instruct_tune.tasks import vocabulary
from instruct_tune.tasks.extraction import (
    ANSWER_MARKER,
    CONNECTOR,
    FILLER,
    NUMBER,
    NUMBER_HEDGE,
    SOURCE_LINK,
    WORD,
    WORD_HEDGE,
    Mention,
    Num,
    alternation,
    compare_key,
    listed_items,
    negated,
    numbers,
    quoted_spans,
    sentence_spans,
    spelled_numbers,
    word_mentions,
)

# ---------------------------------------------------------------------------------------------------------
# Extractors: one small function per kind of answer
# ---------------------------------------------------------------------------------------------------------


def committed_number(
    response: str, prompt: str, *, percent_only: bool = False, operands: set[Decimal] | None = None
) -> Num | None:
    """The first number of the response whose value is not in the prompt (operands copied from the question
    are not answers); then, when the response only repeats the prompt's numbers: the first number that
    is not one of `operands` (range: 300 - 100 = 200 with 200 listed), the first one written more often than
    the prompt writes it (16 ÷ 4 = 4), else the first number. None when it hedges ("17 or 18")."""
    nums = numbers(response) or spelled_numbers(response)  # number words only in a response without digits
    nums = [n for n in nums if not negated(response, n.start)]  # "18, not 17" commits to 18
    if percent_only:
        nums = [n for n in nums if n.percent]
    if not nums:
        return None
    prompt_nums = numbers(prompt)
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
    return None if NUMBER_HEDGE.match(response, choice.end) else choice


def prompt_word_counts(instruction: str, input_text: str) -> Counter[str]:
    """The words a response may copy from the prompt: those quoted in the instruction and the input's."""
    words = [w for span, _, _ in quoted_spans(instruction) for w in WORD.findall(span)] + WORD.findall(input_text)
    return Counter(compare_key(w) for w in words)


def word_answer(instruction: str, input_text: str, response: str) -> str | None:
    """The word a response commits to (word families): the first quoted span that is neither a copy of the
    prompt's word nor the source of a change ('stood' becomes 'stayed' commits to 'stayed'); without one,
    the word its first sentence commits to. A copy counts when written more often than the prompt does
    (the plural of 'sheep' is 'sheep')."""
    prompt = prompt_word_counts(instruction, input_text)

    def hedged(end: int) -> bool:
        return bool(WORD_HEDGE.match(response, end))

    quoted = quoted_spans(response)
    answers = [(s, end) for s, start, end in quoted
               if WORD.search(s) and not SOURCE_LINK.match(response, end) and not negated(response, start)]
    for s, end in answers:
        if any(compare_key(w) not in prompt for w in WORD.findall(s)):
            return None if hedged(end) else s
    seen: Counter[str] = Counter()
    for s, _, end in quoted:  # every quoted copy counts, sources included: 'put' becomes 'put'
        seen[compare_key(s)] += 1
        if (s, end) in answers and 0 < prompt[compare_key(s)] < seen[compare_key(s)]:
            return None if hedged(end) else s
    sentences = sentence_spans(response)
    first = list(WORD.finditer(sentences[0][0])) if sentences else []
    if len(first) == 1 and compare_key(first[0].group()) not in FILLER:  # "Sheep." answers even if it copies the prompt
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
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(sentence)]
    if not words:
        return None
    counts: Counter[str] = Counter()
    running = []
    for w, _, _ in words:
        counts[compare_key(w)] += 1
        running.append(counts[compare_key(w)])

    def ok(i: int, copies: bool) -> bool:
        word, key = words[i][0], compare_key(words[i][0])
        filler = key in FILLER and not (word.isupper() and len(word) > 1)  # NOT, ONE: acronyms
        if filler or SOURCE_LINK.match(sentence, words[i][2]) or negated(sentence, words[i][1]):
            return False
        after_marker = bool(ANSWER_MARKER.search(sentence, 0, words[i][1]))  # "The answer is sheep."
        return key not in prompt or (copies and (running[i] > prompt[key] or after_marker))

    candidates = []
    clause_end = re.search(r"[,;:(]", sentence)
    if clause_end and sum(1 for _, s, _ in words if s < clause_end.start()) == 1:
        candidates.append(0)
    for c in CONNECTOR.finditer(sentence):
        following = [i for i, (_, s, _) in enumerate(words) if s >= c.end()]
        rest = [i for i in following if compare_key(words[i][0]) not in FILLER]
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
    quoted = quoted_spans(instruction)
    if quoted and ";" in quoted[0][0]:
        return [x.strip() for x in quoted[0][0].split(";") if x.strip()]
    return listed_items(instruction)


def _item_runs(text: str, mentions: list[Mention], sep: re.Pattern[str]) -> list[list[Mention]]:
    """Maximal runs of different items joined by `sep`."""
    runs: list[list[Mention]] = []
    for m in mentions:
        last = runs[-1] if runs else None
        if last and sep.fullmatch(text, last[-1].end, m.start) and m.key not in {x.key for x in last}:
            last.append(m)
        else:
            runs.append([m])
    return runs


def _item_mentions(text: str, items: list[str]) -> list[Mention]:
    """Mentions of list items: numbers by value (88 and 88.0 alike), words as whole words, any case."""
    if items and all(NUMBER.fullmatch(x) for x in items):
        values = {Decimal(x.replace(",", "")): x for x in items}
        return [Mention(values[n.value], n.start, n.end) for n in numbers(text)
                if n.value in values and not n.percent]
    return word_mentions(text, {x: x.casefold() for x in items})


LIST_MARKER = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+", re.M)
# Text between two items of an enumeration: "5, 72 and 88", "5 < 72 < 88", "5 -> 72", one item per line.
_ENUM_SEP = re.compile(r"[\s'\"‘’“”*,;<>→-]*(?:(?:and|then)\s+[\s'\"‘’“”*]*)?", re.I)


def sorted_answer(instruction: str, input_text: str, response: str) -> str | None:
    """The LAST complete enumeration of the prompt's items in the response (a numbered or bulleted list
    counts): the model may restate the unsorted list before giving the sorted one."""
    if input_text.strip():
        items = _phrase_items(instruction, input_text)
    elif re.search(r"\bnumbers\b", instruction):  # every number of "Sort the numbers 88, 5 and 72 ..."
        items = [n.text() for n in numbers(instruction)]
    else:
        items = listed_items(instruction)
    text = LIST_MARKER.sub("", response)
    runs = _item_runs(text, _item_mentions(text, items), _ENUM_SEP)
    complete = [run for run in runs if len(run) == len(items) > 0]
    return ", ".join(text[m.start : m.end] for m in complete[-1]) if complete else None


_NUMBERED_LINE = re.compile(r"^[ \t*]*(\d+)[.)][ \t]+(.*?)[ \t]*$")
_FIRST_ITEM = re.compile(r"(?:^|[\s:*])1[.)][ \t]+(.*?)[ \t]*$")  # also after a lead-in: "Answer: 1. tea"


def numbered_list(response: str) -> str | None:
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


def joined_phrase(instruction: str, input_text: str, response: str) -> str | None:
    """The first 'a, b and c' phrase in the response that holds every item exactly once, as written."""
    items = _phrase_items(instruction, input_text)
    runs = _item_runs(response, _item_mentions(response, items), _PHRASE_SEP)
    run = next((r for r in runs if len(r) == len(items) > 0), None)
    return response[run[0].start : run[-1].end] if run else None


def _prompt_phrase(instruction: str, input_text: str) -> str:
    quoted = quoted_spans(instruction)
    return quoted[0][0] if quoted else input_text.strip()


def rewritten_phrase(instruction: str, input_text: str, response: str, keep_order_is_copy: bool) -> str | None:
    """The first run of all the prompt phrase's words (space-separated, any case) that is not a copy of the
    phrase: an exact copy, or for word order any run in the original order."""
    phrase = _prompt_phrase(instruction, input_text)
    words = phrase.split()
    runs = _item_runs(response, word_mentions(response, {w: w.casefold() for w in words}), re.compile(r"\s+"))
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
OTHER_CITIES = [
    "Sydney", "Melbourne", "Toronto", "Montreal", "Vancouver", "Rio de Janeiro", "São Paulo", "Istanbul", "Mumbai",
    "Shanghai", "Osaka", "Kyoto", "Lagos", "Zurich", "Geneva", "Casablanca", "Auckland", "New York", "Washington",
    "London", "Barcelona", "Milan", "Munich", "Frankfurt", "Hamburg", "Saint Petersburg", "St. Petersburg",
    "Alexandria", "Mombasa", "Gothenburg", "Bergen", "Kraków", "Krakow", "Thessaloniki", "Rotterdam", "The Hague",
    "Antwerp", "Ho Chi Minh City", "Busan", "Valparaíso", "Medellín", "Porto", "Marseille", "Lyon", "Naples",
    "Venice", "Florence", "Seville", "Kolkata", "Karachi", "Almaty", "Quito", "La Paz", "Montevideo", "Caracas",
    "Mexico City", "Manila", "Kuala Lumpur", "Salzburg", "Zagreb", "Bucharest", "Sofia", "Belgrade",
]
OTHER_COUNTRIES = [
    "United States", "USA", "United Kingdom", "UK", "England", "Scotland", "Mexico", "Pakistan", "Bangladesh",
    "Algeria", "Tunisia", "Libya", "Ghana", "South Africa", "Ethiopia", "Tanzania", "Uganda", "Saudi Arabia", "Iraq",
    "Israel", "Syria", "Venezuela", "Ecuador", "Bolivia", "Uruguay", "Paraguay", "Philippines", "Malaysia",
    "Singapore", "North Korea", "Mongolia", "Nepal", "Sri Lanka", "Romania", "Bulgaria", "Serbia", "Croatia",
    "Slovakia", "Slovenia", "Estonia", "Latvia", "Lithuania", "Belarus", "Iceland", "Luxembourg", "Taiwan",
    "Cambodia", "Laos", "Myanmar", "Afghanistan", "Kazakhstan",
]
CITY_ALIASES = {"Kiev": "Kyiv", "Berne": "Bern"}
COUNTRY_ALIASES = {"Korea": "South Korea", "Czechia": "Czech Republic", "Holland": "Netherlands",
                    "Türkiye": "Turkey"}

ELEMENT_NAMES = [name for name, _, _ in vocabulary.ELEMENTS]
ELEMENT_SYMBOLS = [symbol for _, symbol, _ in vocabulary.ELEMENTS]
OTHER_ELEMENT_NAMES = (
    "Boron Beryllium Chromium Manganese Cobalt Titanium Bromine Krypton Xenon Radon Plutonium Tungsten Cesium "
    "Caesium Barium Strontium Radium Selenium Arsenic Bismuth Cadmium Palladium Rhodium Osmium Iridium Polonium "
    "Vanadium Scandium Gallium Germanium Rubidium Francium Thorium Antimony Tellurium Zirconium Molybdenum "
    "Lanthanum Cerium Neptunium Americium Astatine Indium Thallium Rhenium Hafnium Tantalum"
).split()
# Symbols that are also English words (As, Be, In, At, No, Am) stay out: they would be read in any sentence.
OTHER_SYMBOLS = ("B Cr Mn Co Ti Br Kr Xe Rn Pu W Cs Ba Sr Ra Se Bi Cd Pd Rh Os Ir Po V Sc Ga Ge Rb Fr Th Sb Te "
                  "Zr Mo La Ce Np Tl Re Hf Ta").split()
ELEMENT_ALIASES = {"Aluminum": "Aluminium", "Sulphur": "Sulfur"}

_LETTER = re.compile(r"(?<![\w'’])(?:['\"‘“](?P<q>[A-Za-z])['\"’”]|(?P<u>[A-Z]))(?![\w'’])")
_WORD_AFTER = re.compile(r"\s+([a-z]+)|'[a-z]")


def _pronoun_or_article(text: str, m: Mention) -> bool:
    """'I think', 'A letter': the word I or A, not a letter or the symbol of iodine ('I is', 'A comes' are)."""
    if text[m.start : m.end] not in ("I", "A"):
        return False
    after = _WORD_AFTER.match(text, m.end)
    return bool(after) and (after.group(1) or "") not in ("is", "was", "comes", "has", "stands")


def symbol_mentions(text: str, symbols: list[str]) -> list[Mention]:
    mentions = [Mention(m.group(), m.start(), m.end()) for m in alternation(tuple(symbols), 0).finditer(text)]
    return [m for m in mentions if not _pronoun_or_article(text, m)]


def letter_mentions(text: str) -> list[Mention]:
    mentions = [Mention((m["q"] or m["u"]).upper(), m.start(), m.end()) for m in _LETTER.finditer(text)]
    return [m for m in mentions if not _pronoun_or_article(text, m)]
