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

This module holds the rules (an extractor and a comparison per family), the conclusion handling and the public
API; the shared pieces (numbers, dates, quotes, words, option mentions) are in `extraction`, the extractors of
each kind of answer and the closed option sets in `extractors`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from instruct_tune.tasks import vocabulary
from instruct_tune.tasks.extraction import (
    DATE,
    NUMBER,
    PARTIAL_DATE,
    SOURCE_LINK,
    WORD,
    WORD_HEDGE,
    Mention,
    compare_key,
    dates,
    decimals,
    first_option,
    first_sentence,
    fold,
    listed_items,
    long_date,
    mentioned,
    numbers,
    parse_number,
    prompt_text,
    quoted_spans,
    word_mentions,
)
from instruct_tune.tasks.extractors import (
    CITY_ALIASES,
    COUNTRY_ALIASES,
    ELEMENT_ALIASES,
    ELEMENT_NAMES,
    ELEMENT_SYMBOLS,
    LIST_MARKER,
    OTHER_CITIES,
    OTHER_COUNTRIES,
    OTHER_ELEMENT_NAMES,
    OTHER_SYMBOLS,
    committed_number,
    joined_phrase,
    letter_mentions,
    numbered_list,
    prompt_word_counts,
    rewritten_phrase,
    sorted_answer,
    symbol_mentions,
    word_answer,
)
from instruct_tune.tasks.matching import normalise_tokens

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
        a, b = parse_number(got), parse_number(target)
        if a is None or b is None or a.percent != b.percent:
            return False
        if places is None:
            return a.value == b.value
        return abs(a.value - b.value) <= Decimal(5) / Decimal(10) ** (places + 1) + Decimal("1e-9")

    return same


def _same_key(got: str, target: str) -> bool:
    return compare_key(got) == compare_key(target)


def _same_exact(got: str, target: str) -> bool:
    return " ".join(got.split()) == " ".join(target.split())


def _same_acronym(got: str, target: str) -> bool:
    return compare_key(got).replace(".", "").replace(" ", "") == compare_key(target).replace(".", "").replace(" ", "")


def _same_date(got: str, target: str) -> bool:
    a, b = dates(got), dates(target)
    return bool(a and b) and a[0][0] == b[0][0]


def _same_sequence(got: str, target: str) -> bool:
    """The same comma-separated items in the same order: numbers by value, words case-insensitively."""
    def items(text: str) -> list[object]:
        parts = [p.strip() for p in text.split(",")]
        return [Decimal(p) if NUMBER.fullmatch(p) else compare_key(p) for p in parts]
    return items(got) == items(target)


def _same_lines(got: str, target: str) -> bool:
    """The same numbered lines ('1. x'), item by item, case-insensitively: no item missing, none extra."""
    def items(text: str) -> list[str]:
        return [compare_key(re.sub(r"^\s*\d+[.)]\s*", "", line)) for line in text.splitlines() if line.strip()]
    return items(got) == items(target)


def _same_phrase(got: str, target: str) -> bool:
    """The same 'a, b and c' phrase up to case, spacing and an Oxford comma."""
    def norm(text: str) -> str:
        return re.sub(r",\s+and\s+", " and ", re.sub(r"\s*,\s*", ", ", compare_key(text)))
    return norm(got) == norm(target)


def _numeric(percent_only: bool = False, places: int | None = None, strip_dates: bool = False,
             operands: Callable[[str, str], set[Decimal]] | None = None) -> _Rule:
    def extract(instruction: str, input_text: str, response: str) -> str | None:
        if strip_dates:  # the dates restated in the answer are not the count of days
            response = PARTIAL_DATE.sub(" ", DATE.sub(" ", response))
        found = committed_number(response, prompt_text(instruction, input_text), percent_only=percent_only,
                                  operands=operands(instruction, input_text) if operands else None)
        return found.text() if found else None

    return _Rule(extract, _same_number(places))


def _choice(mentions: Callable[[str, str, str], list[Mention]],
            commits: Callable[[str, Mention], bool] | None = None, same: _Same = _same_key) -> _Rule:
    def extract(instruction: str, input_text: str, response: str) -> str | None:
        text = fold(response)
        check = (lambda m: commits(text, m)) if commits else None
        return first_option(text, mentions(instruction, input_text, text), check)

    return _Rule(extract, same)


def _options(names: list[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    table = {fold(n): n for n in names}
    table.update({fold(a): c for a, c in (aliases or {}).items()})
    return table


def _yes_no_commits(text: str, m: Mention) -> bool:
    # "yes"/"no" only count as a standalone answer ("No, ...", "The answer is yes."), not "no doubt".
    return bool(re.match(r"[ \t]*(?:[,.!;:)*\n]|$)", text[m.end :]))


# --- family rules (each picks its kind from the instruction's wording) ---------------------------------------

_PLAIN_NUMBER = _numeric()
_WORD_RULE = _Rule(word_answer, _same_key)


def _percentage(instruction: str, input_text: str) -> _Rule:
    asks_percent = re.search(r"what percent|what percentage|as a percent|to a percent|in percent", instruction, re.I)
    return _numeric(percent_only=bool(asks_percent))


def _comparison(instruction: str, input_text: str) -> _Rule:
    if re.search(r"\byes or no\b", instruction, re.I):
        return _choice(lambda i, x, t: word_mentions(t, {"yes": "Yes", "no": "No"}), _yes_no_commits)
    if re.search(r"\brange\b|largest and the smallest|largest minus smallest", instruction, re.I):
        def operands(ins: str, inp: str) -> set[Decimal]:
            values = [n.value for n in numbers(prompt_text(ins, inp))]
            return {max(values), min(values)} if values else set()
        return _numeric(operands=operands)

    def listed(ins: str, inp: str, text: str) -> list[Mention]:
        values = {n.value: n.text() for n in numbers(prompt_text(ins, inp))}
        return [Mention(values[n.value], n.start, n.end) for n in numbers(text) if n.value in values]
    return _choice(listed, same=_same_number())


def _even_odd(instruction: str, input_text: str) -> _Rule:
    return _choice(lambda i, x, t: word_mentions(t, {"even": "even", "odd": "odd"}))


def _letter_position(instruction: str, input_text: str) -> _Rule:
    if numbers(prompt_text(instruction, input_text)):  # "the 12th letter", input "24": the answer is a letter
        return _choice(lambda i, x, t: letter_mentions(t))
    return _PLAIN_NUMBER


def _alphabetical_order(instruction: str, input_text: str) -> _Rule:
    return _choice(lambda i, x, t: word_mentions(t, {w: w for w in listed_items(prompt_text(i, x))}))


def _dates_rule(instruction: str, input_text: str) -> _Rule:
    if re.search(r"day of the week|weekday", instruction, re.I):
        return _choice(lambda i, x, t: word_mentions(t, {d: d for d in vocabulary.WEEKDAYS}))
    if re.search(r"\bbetween\b|count the days|how many days", instruction, re.I):
        return _numeric(strip_dates=True)

    def new_date(ins: str, inp: str, response: str) -> str | None:
        given = {d for d, _, _ in dates(prompt_text(ins, inp))}
        found = dates(response)
        pick = next((f for f in found if f[0] not in given), found[0] if found else None)
        if pick is None or re.match(r"\s*,?\s*or\s", response[pick[2] :], re.I):
            return None
        return long_date(pick[0])
    return _Rule(new_date, _same_date)


def _capital(instruction: str, input_text: str) -> _Rule:
    prompt = prompt_text(instruction, input_text)
    countries = list(vocabulary.CAPITALS) + OTHER_COUNTRIES
    cities = list(vocabulary.CAPITALS.values()) + OTHER_CITIES
    asked_country = mentioned(prompt, list(vocabulary.CAPITALS))
    names, aliases = (cities, CITY_ALIASES) if asked_country else (countries, COUNTRY_ALIASES)
    own = mentioned(prompt, names)  # the question's own city or country is no answer
    names = [n for n in names if n not in own]
    return _choice(lambda i, x, t: word_mentions(t, _options(names, aliases)))


def _element(instruction: str, input_text: str) -> _Rule:
    prompt = prompt_text(instruction, input_text)
    if re.search(r"atomic number of", instruction, re.I):
        return _PLAIN_NUMBER
    if re.search(r"symbol (?:for|of)\b", instruction, re.I):
        symbols = ELEMENT_SYMBOLS + OTHER_SYMBOLS
        return _choice(lambda i, x, t: symbol_mentions(t, symbols), same=lambda a, b: a == b)
    own = mentioned(prompt, ELEMENT_NAMES)
    names = [n for n in ELEMENT_NAMES + OTHER_ELEMENT_NAMES if n not in own]
    return _choice(lambda i, x, t: word_mentions(t, _options(names, ELEMENT_ALIASES)))


def _string_transform(instruction: str, input_text: str) -> _Rule:
    if re.search(r"order of the words", instruction, re.I):
        return _Rule(lambda i, x, r: rewritten_phrase(i, x, r, keep_order_is_copy=True), _same_key)
    if re.search(r"upper case|capital letters|lower case|capitalize", instruction, re.I):
        return _Rule(lambda i, x, r: rewritten_phrase(i, x, r, keep_order_is_copy=False), _same_exact)
    if re.search(r"acronym", instruction, re.I):
        def acronym(ins: str, inp: str, response: str) -> str | None:  # "A.B.G." is one word
            return word_answer(ins, inp, re.sub(r"\b((?:[A-Z]\.){2,})", lambda m: m[1].replace(".", ""), response))
        return _Rule(acronym, _same_acronym)
    return _WORD_RULE  # reversed word, word without vowels


def _list_format(instruction: str, input_text: str) -> _Rule:
    if re.search(r"numbered list", instruction, re.I):
        return _Rule(lambda i, x, r: numbered_list(r), _same_lines)
    return _Rule(joined_phrase, _same_phrase)


def _sorting(instruction: str, input_text: str) -> _Rule:
    return _Rule(sorted_answer, _same_sequence)


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
    prompt = prompt_word_counts(instruction, input_text)
    for s, _, end in quoted_spans(response):
        if SOURCE_LINK.match(response, end) or all(compare_key(w) in prompt for w in WORD.findall(s)):
            continue
        return None if WORD_HEDGE.match(response, end) else s
    sentence = first_sentence(response).strip()
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
        return _numeric(places=decimals(answer) or None)
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
    if any(line.strip() and not LIST_MARKER.match(line) for line in rest.splitlines()):
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
