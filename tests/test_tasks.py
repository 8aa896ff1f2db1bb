"""The built-in task generator: determinism, uniqueness, the input share, no leakage, and correct answers,
recomputed here independently of the generator (datetime, Decimal, our own conversion factors)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from decimal import ROUND_HALF_UP, Decimal

import pytest

from instruct_tune.tasks import families as tasks
from instruct_tune.tasks import vocabulary, word_families
from instruct_tune.errors import UserError
from instruct_tune.tasks.families import TASK_FAMILIES, generate_tasks


@pytest.fixture(scope="module")
def sample() -> list[dict[str, str]]:
    return generate_tasks(5000, seed=0)


def prompt(r: dict[str, str]) -> str:
    return r["instruction"] + "\n" + r["input"]


def quoted(text: str) -> str:
    return re.search(r"'([^']+)'", text).group(1)


def target(r: dict[str, str]) -> str:
    """The text a task works on: the input, or the (last) quoted text in the instruction."""
    return r["input"] or re.findall(r"'([^']+)'", r["instruction"])[-1]


# ------------------------------------------------------------------------------------------------- the stream


def test_same_seed_same_list_other_seed_other_list() -> None:
    a = generate_tasks(300, seed=7)
    assert a == generate_tasks(300, seed=7)
    assert a != generate_tasks(300, seed=8)


def test_shorter_request_is_a_prefix() -> None:
    assert generate_tasks(100, seed=3) == generate_tasks(400, seed=3)[:100]


def test_record_shape(sample: list[dict[str, str]]) -> None:
    for r in sample:
        assert set(r) == {"instruction", "input", "output", "answer", "task"}
        assert all(isinstance(v, str) for v in r.values())
        assert r["instruction"].strip() and r["output"].strip() and r["answer"].strip()
        assert r["task"] in TASK_FAMILIES
        assert len(r["instruction"]) + len(r["input"]) + len(r["output"]) <= 300, r


def test_5000_unique_records(sample: list[dict[str, str]]) -> None:
    assert len(sample) == 5000
    assert len({(r["instruction"], r["input"]) for r in sample}) == 5000
    # also unique once case and punctuation are ignored (prepare's near-duplicate check)
    assert len({tasks.normalise(r["instruction"] + " " + r["input"]) for r in sample}) == 5000


def test_whole_stream_is_unique_and_available() -> None:
    records = list(tasks.iter_tasks(0))
    assert len(records) == tasks.MAX_TASKS
    assert len({(r["instruction"], r["input"]) for r in records}) == tasks.MAX_TASKS
    # no input that prepare would read as Alpaca's "no input" placeholder (sodium's "Na", the word "empty")
    placeholders = {"na", "n/a", "none", "null", "nil", "empty", "nothing", "no input", "noinput"}
    assert not [r for r in records if r["input"].strip().lower() in placeholders]


def test_count_beyond_available_is_a_user_error() -> None:
    with pytest.raises(UserError, match=f"offers {tasks.MAX_TASKS} unique tasks"):
        generate_tasks(tasks.MAX_TASKS + 1, seed=0)
    with pytest.raises(UserError, match="count"):
        generate_tasks(-1, seed=0)
    assert generate_tasks(0, seed=0) == []


def test_at_least_15_families_mixed(sample: list[dict[str, str]]) -> None:
    assert len(TASK_FAMILIES) >= 15
    first = sample[:2000]
    counts = {f: sum(r["task"] == f for r in first) for f in TASK_FAMILIES}
    assert sum(n > 0 for n in counts.values()) >= 15
    assert all(n >= 30 for n in counts.values()), counts  # every family, none starved
    longest_run = max(len(list(g)) for _, g in itertools.groupby(r["task"] for r in first))
    assert longest_run <= 5  # interleaved, not in blocks


def test_input_share(sample: list[dict[str, str]]) -> None:
    for part in (sample[:2000], sample):
        share = sum(bool(r["input"]) for r in part) / len(part)
        assert 0.35 <= share <= 0.45, share


def test_answer_in_output_never_in_input(sample: list[dict[str, str]]) -> None:
    for r in sample:
        assert r["answer"] in r["output"], r
        assert r["answer"].lower() not in r["input"].lower(), r


def test_leak_check() -> None:
    assert tasks.leaks("Paris", "paris")
    assert tasks.leaks("milk, eggs", "milk\neggs")  # punctuation ignored
    assert not tasks.leaks("receive", "Did you recieve it?")
    assert not tasks.leaks("5", "")


# ------------------------------------------------------------------------------ answers, recomputed per family

OPS = {  # keyword pattern -> operation on (larger, smaller)
    r"divided|÷|divide|quotient|shared equally": lambda a, b: a // b if a % b == 0 else None,
    r"times|×|multiply|product|box holds": lambda a, b: a * b,
    r"minus| - |subtract|difference|gave away": lambda a, b: a - b,
    r"plus|\+|sum|add|more": lambda a, b: a + b,
}


def check_arithmetic(r: dict[str, str]) -> None:
    text = prompt(r).lower()
    a, b = sorted(map(int, re.findall(r"\d+", text)), reverse=True)
    matched = [op for pattern, op in OPS.items() if re.search(pattern, text)]
    assert len(matched) == 1, r
    assert r["answer"] == str(matched[0](a, b)), r


def check_percentage(r: dict[str, str]) -> None:
    text = prompt(r)
    if m := re.search(r"(\d+)/(\d+)", text):
        num, den = int(m[1]), int(m[2])
        assert num * 100 % den == 0 and r["answer"] == f"{num * 100 // den}%"
    elif r["answer"].endswith("%"):
        part, base = sorted(map(int, re.findall(r"\d+", text)))
        assert r["answer"] == f"{part * 100 // base}%" and part * 100 % base == 0
    else:
        m = re.search(r"(\d+)(?:%| percent) of (\d+)", text)
        assert int(m[1]) * int(m[2]) % 100 == 0 and r["answer"] == str(int(m[1]) * int(m[2]) // 100)


SI = {  # unit -> (dimension, size in a base unit)
    "kilometer": ("L", 1000), "mile": ("L", 1609.344), "meter": ("L", 1), "foot": ("L", 0.3048),
    "feet": ("L", 0.3048), "inch": ("L", 0.0254), "inche": ("L", 0.0254), "centimeter": ("L", 0.01),
    "kilogram": ("M", 1), "pound": ("M", 0.45359237), "gram": ("M", 0.001),
    "liter": ("V", 1), "gallon": ("V", 3.785411784),
    "week": ("T", 604800), "day": ("T", 86400), "hour": ("T", 3600), "minute": ("T", 60), "second": ("T", 1),
}


def convert(value: float, src: str, dst: str) -> float:
    if "Celsius" in src:
        return value * 1.8 + 32
    if "Fahrenheit" in src:
        return (value - 32) / 1.8
    (d1, f1), (d2, f2) = SI[src.removesuffix("s")], SI[dst.removesuffix("s")]
    assert d1 == d2
    return value * f1 / f2


def check_unit_conversion(r: dict[str, str]) -> None:
    m = re.fullmatch(r"(-?[\d.]+) ([a-zA-Z ]+?) (?:is|equals|converts to) (?:about |approximately |roughly )?"
                     r"(-?[\d.]+) ([a-zA-Z ]+)\.", r["output"])
    value, src, answer, dst = m.groups()
    assert answer == r["answer"] and value in prompt(r)
    assert abs(float(answer) - convert(float(value), src, dst)) <= 0.006, r
    assert dst.split()[0].rstrip("s") in prompt(r), r  # the target unit is the one asked for


def check_comparison(r: dict[str, str]) -> None:
    numbers = re.findall(r"\d+(?:\.\d+)?", prompt(r))
    if "yes or no" in r["instruction"]:
        a, b = map(float, numbers)
        assert r["answer"] == ("Yes" if a > b else "No")
    elif r["input"]:
        ints = list(map(int, numbers))
        assert r["answer"] == str(max(ints) - min(ints))
    else:
        pick = max if re.search(r"larger|greater|bigger|largest", r["instruction"]) else min
        assert r["answer"] == pick(numbers, key=float), r


def check_sorting(r: dict[str, str]) -> None:
    if r["input"]:
        items = r["input"].split(", ")
    else:
        items = re.split(r", | and ", re.match(r"Sort the (?:numbers|words) (.+?) (?:in|from) ", r["instruction"])[1])
    numeric = all(x.isdigit() for x in items)
    descending = bool(re.search(r"descending|largest to smallest", r["instruction"]))
    expected = sorted(items, key=int if numeric else str, reverse=descending)
    assert r["answer"] == ", ".join(expected) and expected != items, r


def check_rounding(r: dict[str, str]) -> None:
    text = prompt(r)
    if m := re.search(r"nearest (ten|hundred|thousand)", text):
        unit = {"ten": 10, "hundred": 100, "thousand": 1000}[m[1]]
        n = int(re.search(r"\b(\d+)\b", text.replace(m[0], ""))[1])
        assert r["answer"] == str((n + unit // 2) // unit * unit), r
    else:
        x = Decimal(re.search(r"\d+\.\d+", text)[0])
        places = 0 if "whole number" in text else 1 if "one decimal" in text else 2
        assert r["answer"] == str(x.quantize(Decimal(10) ** -places, rounding=ROUND_HALF_UP)), r


def check_even_odd(r: dict[str, str]) -> None:
    n = int(re.search(r"\d+", prompt(r))[0])
    assert r["answer"] == ("even" if n % 2 == 0 else "odd")


def check_number_sequence(r: dict[str, str]) -> None:
    seq = list(map(int, re.findall(r"-?\d+", prompt(r))))
    steps = {b - a for a, b in itertools.pairwise(seq)}
    ratios = {b / a for a, b in itertools.pairwise(seq) if a} if 0 not in seq else set()
    roots = [math.isqrt(max(x, 0)) for x in seq]
    candidates = set()
    if len(steps) == 1:
        candidates.add(seq[-1] + steps.pop())
    if len(ratios) == 1:
        candidates.add(round(seq[-1] * ratios.pop()))
    if all(q * q == x for q, x in zip(roots, seq)) and len({b - a for a, b in itertools.pairwise(roots)}) == 1:
        candidates.add((roots[-1] + 1) ** 2)
    assert int(r["answer"]) in candidates, r


def check_number_extraction(r: dict[str, str]) -> None:
    numbers = list(map(int, re.findall(r"\d+", prompt(r))))
    if re.search(r"how many|count", r["instruction"], re.I):
        assert r["answer"] == str(len(numbers))
    else:
        assert r["answer"] == str(sum(numbers))


def check_counting(r: dict[str, str]) -> None:
    text = target(r)
    if m := re.search(r"letter '(\w)'", r["instruction"]):
        expected = text.count(m[1])
    elif "vowels" in r["instruction"]:
        expected = sum(ch in "aeiou" for ch in text.lower())
    elif "words" in r["instruction"]:
        expected = len(text.split())
    else:
        expected = len(text)
    assert r["answer"] == str(expected), r


def check_string_transform(r: dict[str, str]) -> None:
    text, ins = target(r), r["instruction"]
    if "acronym" in ins:
        expected = "".join(w[0].upper() for w in text.split())
    elif "vowels" in ins:
        expected = re.sub(r"[aeiou]", "", text)
    elif "order of the words" in ins:
        expected = " ".join(text.split()[::-1])
    elif re.search(r"backwards|reverse", ins, re.I):
        expected = text[::-1]
    elif re.search(r"upper case|capital letters", ins):
        expected = text.upper()
    elif "lower case" in ins:
        expected = text.lower()
    else:
        assert "first letter of each word" in ins
        expected = " ".join(w.capitalize() for w in text.split())
    assert r["answer"] == expected, r


def check_letter_position(r: dict[str, str]) -> None:
    text = prompt(r)
    if r["answer"].isdigit():
        letter = r["input"] or re.search(r"letter ([A-Z])\b", text)[1]
        assert int(r["answer"]) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(letter) + 1
    else:
        n = int(re.search(r"\d+", text)[0])
        assert r["answer"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n - 1]


def check_alphabetical_order(r: dict[str, str]) -> None:
    listed = re.search(r"(?:alphabetical order: |the words )(.+?)(?:\?|, which)", r["instruction"])[1]
    words = re.split(r", | and ", listed)
    expected = min(words) if "first" in r["instruction"] else max(words)
    assert r["answer"] == expected, r


def check_list_format(r: dict[str, str]) -> None:
    if "numbered list" in r["instruction"]:
        listed = r["input"] or re.match(r"Write (.+) as a numbered list", r["instruction"])[1]
        items = re.split(r", | and ", listed)
        assert r["answer"].splitlines() == [f"{i}. {x}" for i, x in enumerate(items, 1)], r
    else:
        items = r["input"].splitlines() if r["input"] else quoted(r["instruction"]).split("; ")
        assert r["answer"] == ", ".join(items[:-1]) + " and " + items[-1], r


MONTH = r"(January|February|March|April|May|June|July|August|September|October|November|December) (\d{1,2}), (\d{4})"


def parse_dates(text: str) -> list[dt.date]:
    found = [(m.start(), dt.datetime.strptime(m[0], "%B %d, %Y").date()) for m in re.finditer(MONTH, text)]
    found += [(m.start(), dt.date.fromisoformat(m[0])) for m in re.finditer(r"\d{4}-\d{2}-\d{2}", text)]
    return [d for _, d in sorted(found)]


def check_dates(r: dict[str, str]) -> None:
    text = prompt(r)
    found = parse_dates(text)
    if len(found) == 2:
        assert r["answer"] == str((found[1] - found[0]).days), r
    elif re.search(r"day of the week|weekday", text):
        assert r["answer"] == found[0].strftime("%A"), r
    else:
        n = int(re.search(r"Days: (\d+)|(\d+) days? (?:before|after)", text).group(1, 2)[0 if "Days:" in text else 1])
        sign = -1 if re.search(r"before|Subtract", text) else 1
        expected = found[0] + dt.timedelta(days=sign * n)
        assert parse_dates(r["answer"]) == [expected], r


def check_fact(*pairs: tuple[str, str]):
    """Fact families: the answer is the table's entry for a word the prompt asks about (tables checked below)."""
    table: dict[str, set[str]] = {}
    for key, value in pairs:
        table.setdefault(key.lower(), set()).add(value)

    def check(r: dict[str, str]) -> None:
        text = prompt(r).lower()
        asked = [w for w in table if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text)]
        assert any(r["answer"] in table[w] for w in asked), r

    return check


PLURALS = [*vocabulary.IRREGULAR_PLURALS.items(), *((n, word_families._plural(n)) for n in vocabulary.REGULAR_NOUNS)]
PASTS = [*vocabulary.IRREGULAR_VERBS.items(), *((v, word_families._past(v)) for v in vocabulary.REGULAR_VERBS)]
ELEMENT_FACTS = [pair for name, symbol, number in vocabulary.ELEMENTS
                 for pair in ((name, symbol), (symbol, name), (str(number), name), (name, str(number)))]
CAPITAL_FACTS = [pair for country, city in vocabulary.CAPITALS.items() for pair in ((country, city), (city, country))]
CHECKS = {
    "arithmetic": check_arithmetic, "percentage": check_percentage, "unit_conversion": check_unit_conversion,
    "comparison": check_comparison, "sorting": check_sorting, "rounding": check_rounding,
    "even_odd": check_even_odd, "number_sequence": check_number_sequence,
    "number_extraction": check_number_extraction, "counting": check_counting,
    "string_transform": check_string_transform, "letter_position": check_letter_position,
    "alphabetical_order": check_alphabetical_order, "list_format": check_list_format, "dates": check_dates,
    "spelling": check_fact(*((wrong, right) for wrong, right, _ in vocabulary.MISSPELLINGS)),
    "plural": check_fact(*PLURALS), "past_tense": check_fact(*PASTS),
    "antonym": check_fact(*vocabulary.ANTONYMS, *((b, a) for a, b in vocabulary.ANTONYMS)),
    "synonym": check_fact(*vocabulary.SYNONYMS),
    "capital": check_fact(*CAPITAL_FACTS),
    "element": check_fact(*ELEMENT_FACTS),
}


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_answers_are_correct(sample: list[dict[str, str]], family: str) -> None:
    records = [r for r in sample if r["task"] == family]
    assert len(records) >= 50
    assert any(r["input"] for r in records) or family in tasks.NO_INPUT_FAMILIES
    for r in records:
        CHECKS[family](r)


def test_every_family_has_a_check() -> None:
    assert set(CHECKS) == set(TASK_FAMILIES)


def test_fact_tables_spot_checks() -> None:
    assert vocabulary.CAPITALS["France"] == "Paris" and vocabulary.CAPITALS["Japan"] == "Tokyo"
    assert vocabulary.CAPITALS["Australia"] == "Canberra" and vocabulary.CAPITALS["Canada"] == "Ottawa"
    assert ("Gold", "Au", 79) in vocabulary.ELEMENTS and ("Iron", "Fe", 26) in vocabulary.ELEMENTS
    assert ("Sodium", "Na", 11) in vocabulary.ELEMENTS
    assert [word_families._plural(n) for n in ("child", "city", "box", "day", "mouse")] == \
        ["children", "cities", "boxes", "days", "mice"]
    assert [word_families._past(v) for v in ("go", "stop", "try", "dance", "play")] == \
        ["went", "stopped", "tried", "danced", "played"]
    assert len(vocabulary.CAPITALS) >= 40 and len(vocabulary.ELEMENTS) >= 30 and len(vocabulary.ANTONYMS) >= 40
    assert len(vocabulary.IRREGULAR_VERBS) >= 30 and len(vocabulary.IRREGULAR_PLURALS) >= 30
    assert len(vocabulary.MISSPELLINGS) >= 40
    assert len({wrong for wrong, _, _ in vocabulary.MISSPELLINGS}) == len(vocabulary.MISSPELLINGS)
