"""The built-in task families whose answer is a number or a set of numbers: arithmetic, percentages, unit
conversion, comparison, sorting, rounding, even/odd, sequences, numbers in a text, counting.

Each family is one function `(rng, with_input) -> (instruction, input, output, answer)` with several phrasings;
`families.FAMILIES` lists them in the stream's order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from instruct_tune.tasks.vocabulary import (
    ADJECTIVES,
    COUNTABLE_ITEMS,
    ITEM_GROUPS,
    NAMES,
    NOUNS,
    NUMBER_TEXTS,
    PLACES,
    VERBS_PAST,
    Task,
    join_items,
)

# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------

def _fmt(x: float, places: int = 2) -> str:
    """A number rounded to `places` decimals, without trailing zeros: 8.05, 16.1, 32."""
    s = f"{x:.{places}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s

def _sentence(rng: random.Random) -> str:
    """A short plain sentence without digits (for counting and word-order tasks)."""
    return (f"{rng.choice(NAMES)} {rng.choice(VERBS_PAST)} the {rng.choice(ADJECTIVES)} "
            f"{rng.choice(NOUNS)} {rng.choice(PLACES)}.")

# ---------------------------------------------------------------------------------------------------------
# Number families: (rng, with_input) -> (instruction, input, output, answer)
# ---------------------------------------------------------------------------------------------------------

def arithmetic(rng: random.Random, with_input: bool) -> Task:
    op = rng.choice("+-*/")
    lo, hi = rng.choice([(2, 20), (10, 99), (100, 999)])
    if op in "+-":
        a, b = sorted((rng.randint(lo, hi), rng.randint(lo, hi)), reverse=True)
        r = a + b if op == "+" else a - b
    else:
        a, b = rng.randint(2, 99), rng.randint(2, 20)
        r = a * b
        if op == "/":
            a, r = r, a  # a exact quotient
    item, name = rng.choice(COUNTABLE_ITEMS), rng.choice(NAMES)
    symbol = {"+": "+", "-": "-", "*": "×", "/": "÷"}[op]
    plain = {
        "+": [f"What is {a} plus {b}?", f"Calculate {a} + {b}.", f"Add {a} and {b}.",
              f"What is the sum of {a} and {b}?", f"Find the sum of {a} and {b}."],
        "-": [f"What is {a} minus {b}?", f"Calculate {a} - {b}.", f"Subtract {b} from {a}.",
              f"What is the difference between {a} and {b}?"],
        "*": [f"What is {a} times {b}?", f"Calculate {a} × {b}.", f"Multiply {a} by {b}.",
              f"What is the product of {a} and {b}?"],
        "/": [f"What is {a} divided by {b}?", f"Calculate {a} ÷ {b}.", f"Divide {a} by {b}.",
              f"What is the quotient of {a} and {b}?"],
    }[op]
    story = {
        "+": f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
        "-": f"{name} had {a} {item} and gave away {b}. How many {item} are left?",
        "*": f"A box holds {b} {item}. How many {item} are in {a} boxes?",
        "/": f"{a} {item} are shared equally among {b} friends. How many {item} does each friend get?",
    }[op]
    worded = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}[op]
    outputs = [f"{a} {worded} {b} equals {r}.", f"{a} {symbol} {b} = {r}.", f"The answer is {r}."]
    story_out = {
        "+": f"{name} now has {a} + {b} = {r} {item}.",
        "-": f"{a} - {b} = {r}, so {r} {item} are left.",
        "*": f"{a} boxes × {b} {item} = {r} {item}.",
        "/": f"Each friend gets {a} ÷ {b} = {r} {item}.",
    }[op]
    if with_input:
        if rng.random() < 0.3:
            return rng.choice(["Answer the following word problem.", "Solve this math word problem."]), \
                story, story_out, str(r)
        instruction = rng.choice(["Solve the following arithmetic problem.", "Evaluate the expression below.",
                                  "Compute the result of this calculation.", "Work out the value of the expression."])
        return instruction, f"{a} {symbol} {b}", rng.choice(outputs), str(r)
    if rng.random() < 0.25:
        return story, "", story_out, str(r)
    return rng.choice(plain), "", rng.choice(outputs), str(r)


def percentage(rng: random.Random, with_input: bool) -> Task:
    kind = rng.choice(["of", "what_percent", "fraction"])
    if kind == "fraction":
        den = rng.choice([2, 4, 5, 10, 20, 25, 50])
        num = rng.randint(1, den - 1)
        p = str(num * 100 // den) + "%"
        if with_input:
            ins = rng.choice(["Express the following fraction as a percentage.", "Convert this fraction to a percent."])
            return ins, f"{num}/{den}", f"The fraction {num}/{den} is equal to {p}.", p
        ins = rng.choice([f"Convert {num}/{den} to a percentage.", f"What is {num}/{den} as a percentage?"])
        return ins, "", f"{num}/{den} as a percentage is {p}.", p
    pct, base = 5 * rng.randint(1, 19), 20 * rng.randint(1, 25)
    part = pct * base // 100
    if kind == "of":
        if with_input:
            ins = rng.choice(["Calculate the following percentage.", "Work out this percentage of a number."])
            return ins, f"{pct}% of {base}", f"{pct}% of {base} is {part}.", str(part)
        ins = rng.choice([f"What is {pct}% of {base}?", f"Calculate {pct} percent of {base}.",
                          f"Find {pct}% of {base}."])
        return ins, "", rng.choice([f"{pct}% of {base} is {part}.", f"The answer is {part}."]), str(part)
    p = f"{pct}%"
    if with_input:
        ins = "What percentage of the second number is the first number?"
        return ins, f"{part} and {base}", f"{part} is {p} of {base}.", p
    ins = rng.choice([f"What percentage of {base} is {part}?", f"{part} is what percent of {base}?"])
    return ins, "", f"{part} is {p} of {base}.", p


# (quantity, source singular, source plural, source abbreviation, target singular, target plural, function)
CONVERSIONS: list[tuple[str, str, str, str, str, str, Callable[[float], float]]] = [
    ("distance", "kilometer", "kilometers", "km", "mile", "miles", lambda v: v * 0.621371),
    ("distance", "mile", "miles", "mi", "kilometer", "kilometers", lambda v: v * 1.609344),
    ("distance", "kilometer", "kilometers", "km", "meter", "meters", lambda v: v * 1000),
    ("weight", "kilogram", "kilograms", "kg", "pound", "pounds", lambda v: v * 2.204623),
    ("weight", "pound", "pounds", "lb", "kilogram", "kilograms", lambda v: v * 0.453592),
    ("weight", "kilogram", "kilograms", "kg", "gram", "grams", lambda v: v * 1000),
    ("length", "meter", "meters", "m", "foot", "feet", lambda v: v * 3.28084),
    ("length", "foot", "feet", "ft", "meter", "meters", lambda v: v * 0.3048),
    ("length", "inch", "inches", "inches", "centimeter", "centimeters", lambda v: v * 2.54),
    ("length", "centimeter", "centimeters", "cm", "inch", "inches", lambda v: v / 2.54),
    ("length", "meter", "meters", "m", "centimeter", "centimeters", lambda v: v * 100),
    ("volume", "liter", "liters", "L", "gallon", "gallons", lambda v: v * 0.264172),
    ("volume", "gallon", "gallons", "gal", "liter", "liters", lambda v: v * 3.785412),
    ("temperature", "degree Celsius", "degrees Celsius", "°C", "degree Fahrenheit", "degrees Fahrenheit",
     lambda v: v * 9 / 5 + 32),
    ("temperature", "degree Fahrenheit", "degrees Fahrenheit", "°F", "degree Celsius", "degrees Celsius",
     lambda v: (v - 32) * 5 / 9),
    ("time", "hour", "hours", "h", "minute", "minutes", lambda v: v * 60),
    ("time", "minute", "minutes", "min", "second", "seconds", lambda v: v * 60),
    ("time", "day", "days", "days", "hour", "hours", lambda v: v * 24),
    ("time", "week", "weeks", "weeks", "day", "days", lambda v: v * 7),
]


def unit_conversion(rng: random.Random, with_input: bool) -> Task:
    quantity, src1, src, abbr, dst1, dst, convert = rng.choice(CONVERSIONS)
    if quantity == "temperature":
        v = rng.randint(-40, 120)
    elif quantity == "time":
        v = rng.randint(1, 90)
    else:
        v = rng.choice([rng.randint(1, 500), rng.randint(5, 999) / 10])
    result = convert(v)
    v = _fmt(v)  # 12.0 -> "12"
    ans = _fmt(result)
    approx = "" if abs(result - round(result, 2)) < 1e-9 else rng.choice(["about ", "approximately ", "roughly "])
    src_name = src1 if v == "1" else src
    dst_name = dst1 if ans == "1" else dst
    out = f"{v} {src_name} {rng.choice(['is', 'equals', 'converts to'])} {approx}{ans} {dst_name}."
    if with_input:
        ins = rng.choice([f"Convert the following {quantity} to {dst}.", f"Express the following {quantity} in {dst}.",
                          f"How many {dst} is this?", f"Change this measurement into {dst}."])
        return ins, f"{v} {abbr}", out, ans
    ins = rng.choice([f"Convert {v} {src_name} to {dst}.", f"How many {dst} are in {v} {src_name}?",
                      f"What is {v} {abbr} in {dst}?", f"Express {v} {src_name} in {dst}."])
    return ins, "", out, ans


def comparison(rng: random.Random, with_input: bool) -> Task:
    if rng.random() < 0.3:  # decimals, where the number of digits misleads
        nums = [_fmt(rng.randint(1, 99) / rng.choice([10, 100])) for _ in range(2)]
    else:
        nums = [str(rng.randint(1, 999)) for _ in range(rng.choice([2, 2, 3]))]
    values = [float(n) for n in nums]
    if len(set(values)) < len(values):
        return comparison(rng, with_input)
    if with_input:
        a, b = nums[0], nums[1]
        if rng.random() < 0.5:
            yes = float(a) > float(b)
            ans = "Yes" if yes else "No"
            out = f"Yes, {a} is greater than {b}." if yes else f"No, {a} is not greater than {b}."
            return "Is the first number greater than the second? Answer yes or no.", f"{a} and {b}", out, ans
        more = [str(rng.randint(1, 999)) for _ in range(rng.randint(3, 5))]
        ints = [int(x) for x in more]
        r = str(max(ints) - min(ints))
        ins = rng.choice(["What is the difference between the largest and the smallest number in this list?",
                          "Find the range of the following numbers (largest minus smallest)."])
        out = f"The largest is {max(ints)} and the smallest is {min(ints)}, so the range is {r}."
        return ins, ", ".join(more), out, r
    larger = rng.random() < 0.5
    pos = values.index(max(values) if larger else min(values))
    ans = nums[pos]
    rest = join_items([n for i, n in enumerate(nums) if i != pos])
    if len(nums) == 2:
        word = rng.choice(["larger", "greater", "bigger"]) if larger else rng.choice(["smaller", "less"])
        ins = rng.choice([f"Which is {word}, {nums[0]} or {nums[1]}?",
                          f"Which number is {word}: {nums[0]} or {nums[1]}?"])
        return ins, "", f"{ans} is {word} than {rest}.", ans
    word = "largest" if larger else "smallest"
    ins = rng.choice([f"What is the {word} of {nums[0]}, {nums[1]} and {nums[2]}?",
                      f"Which is the {word} number: {nums[0]}, {nums[1]} or {nums[2]}?"])
    return ins, "", f"The {word} number is {ans}.", ans


def sorting(rng: random.Random, with_input: bool) -> Task:
    if rng.random() < 0.5:
        items = [str(n) for n in rng.sample(range(1, 200), rng.randint(3, 6))]
        descending = rng.random() < 0.4
        ordered = sorted(items, key=int, reverse=descending)
        order = rng.choice(["from largest to smallest", "in descending order"]) if descending else \
            rng.choice(["from smallest to largest", "in ascending order"])
        what = "numbers"
    else:
        group = rng.choice(list(ITEM_GROUPS))
        items = rng.sample([w for w in ITEM_GROUPS[group] if " " not in w], rng.randint(3, 6))
        ordered = sorted(items)
        order, what = "in alphabetical order", "words"
    if ordered == items:
        return sorting(rng, with_input)
    ans = ", ".join(ordered)
    out = rng.choice([f"Sorted {order}: {ans}.", f"Here they are {order}: {ans}.", f"The sorted list is {ans}."])
    if with_input:
        ins = rng.choice([f"Sort the following {what} {order}.", f"Arrange these {what} {order}.",
                          f"Put the {what} below {order}."])
        return ins, ", ".join(items), out, ans
    return f"Sort the {what} {join_items(items)} {order}.", "", out, ans


def rounding(rng: random.Random, with_input: bool) -> Task:
    if with_input or rng.random() < 0.4:  # integers to a power of ten: the answer never copies the input
        n = rng.randint(11, 99999)
        unit, name = rng.choice([(10, "ten"), (100, "hundred"), (1000, "thousand")])
        if n < unit:
            return rounding(rng, with_input)
        ans = str(int((Decimal(n) / unit).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * unit)
        out = f"{n} rounded to the nearest {name} is {ans}."
        if with_input:
            ins = rng.choice([f"Round the following number to the nearest {name}.",
                              f"Round this number to the nearest {name}."])
            return ins, str(n), out, ans
        return f"Round {n} to the nearest {name}.", "", out, ans
    x = Decimal(f"{rng.randint(0, 999)}.{rng.randint(0, 9999):04d}")
    places, phrase = rng.choice([(0, "the nearest whole number"), (1, "one decimal place"),
                                 (2, "two decimal places")])
    ans = str(x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
    ins = rng.choice([f"Round {x} to {phrase}.", f"What is {x} rounded to {phrase}?"])
    return ins, "", f"{x} rounded to {phrase} is {ans}.", ans


def even_odd(rng: random.Random, with_input: bool) -> Task:
    n = rng.randint(1, 9999)
    ans = "even" if n % 2 == 0 else "odd"
    out = rng.choice([f"{n} is an {ans} number.", f"The number {n} is {ans}."])
    if n % 2 == 0:
        out += " It is divisible by 2."
    if with_input:
        return rng.choice(["Classify the following number as even or odd.", "Is this number even or odd?"]), \
            str(n), out, ans
    return rng.choice([f"Is {n} even or odd?", f"Is {n} an even or an odd number?"]), "", out, ans


def number_sequence(rng: random.Random, with_input: bool) -> Task:
    kind = rng.choice(["arithmetic", "arithmetic", "geometric", "squares"])
    length = rng.randint(4, 5)
    if kind == "arithmetic":
        start, step = rng.randint(1, 60), rng.choice([-1, 1]) * rng.randint(2, 15)
        seq = [start + i * step for i in range(length + 1)]
        rule = f"each number {'increases' if step > 0 else 'decreases'} by {abs(step)}"
    elif kind == "geometric":
        start, ratio = rng.randint(1, 6), rng.choice([2, 3])
        seq = [start * ratio**i for i in range(length + 1)]
        rule = f"each number is multiplied by {ratio}"
    else:
        start = rng.randint(1, 12)
        seq = [(start + i) ** 2 for i in range(length + 1)]
        rule = "these are consecutive square numbers"
    shown, ans = ", ".join(map(str, seq[:-1])), str(seq[-1])
    out = f"The next number is {ans}, because {rule}."
    if with_input:
        return rng.choice(["Find the next number in the following sequence.", "What number comes next in this series?",
                           "Continue the sequence below with one more number."]), shown, out, ans
    return rng.choice([f"What is the next number in the sequence {shown}?",
                       f"What comes next: {shown}, ...?"]), "", out, ans


def number_extraction(rng: random.Random, with_input: bool) -> Task:
    frame = rng.choice(NUMBER_TEXTS)
    k = frame.count("{") - frame.count("{n}")
    nums = [rng.randint(2, 250) for _ in range(k)]
    text = frame.format(*nums, n=rng.choice(NAMES))
    listed = join_items([str(x) for x in nums])
    if rng.random() < 0.7:
        ans = str(sum(nums))
        out = f"The numbers are {listed}, and their sum is {ans}."
        if with_input:
            ins = rng.choice(["Add up all the numbers in the following text.",
                              "What is the total of the numbers mentioned in the text below?",
                              "Extract the numbers from this sentence and give their sum."])
            return ins, text, out, ans
        return f"Find the sum of the numbers in this sentence: {text}", "", out, ans
    ans = str(k)
    out = f"The text mentions {ans} numbers: {listed}."
    if with_input:
        return rng.choice(["How many numbers are mentioned in the following text?",
                           "Count the numbers that appear in this sentence."]), text, out, ans
    return f"How many numbers appear in this sentence? {text}", "", out, ans


def counting(rng: random.Random, with_input: bool) -> Task:
    kind = rng.choice(["letters", "letter", "vowels", "words"])
    if kind == "words" or (kind == "vowels" and rng.random() < 0.5):
        text, unit = _sentence(rng), "sentence"
    else:
        text, unit = rng.choice(NOUNS + ADJECTIVES), "word"
    if kind == "words":
        ans = str(len(text.split()))
        out = f"There are {ans} words in the sentence."
        if with_input:
            return rng.choice(["Count the words in the following sentence.",
                               "How many words does this sentence have?"]), text, out, ans
        return f"How many words are in the sentence '{text}'?", "", out, ans
    if kind == "vowels":
        ans = str(sum(ch in "aeiou" for ch in text.lower()))
        out = f"The {unit} contains {ans} vowels." if ans != "1" else f"The {unit} contains 1 vowel."
        if with_input:
            return rng.choice([f"How many vowels are in the following {unit}?",
                               f"Count the vowels (a, e, i, o, u) in this {unit}."]), text, out, ans
        return f"How many vowels are there in the {unit} '{text}'?", "", out, ans
    if kind == "letters":
        ans = str(len(text))
        out = f"The word '{text}' has {ans} letters."
        if with_input:
            return rng.choice(["How many letters are in the following word?",
                               "Count the letters in this word."]), text, out, ans
        return rng.choice([f"How many letters are in the word '{text}'?",
                           f"Count the letters in '{text}'."]), "", out, ans
    letter = rng.choice(text) if rng.random() < 0.85 else rng.choice("abcdefghijklmnopqrstuvwxyz")
    n = text.count(letter)
    ans = str(n)
    times = "time" if n == 1 else "times"
    out = f"The letter '{letter}' appears {ans} {times} in '{text}'."
    if with_input:
        return f"How many times does the letter '{letter}' appear in the following word?", text, out, ans
    return f"How many times does the letter '{letter}' appear in '{text}'?", "", out, ans
