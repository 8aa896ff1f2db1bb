"""The built-in task families whose answer is a word, a phrase, a list, a letter or a date: string transforms,
letter positions, alphabetical order, list formatting, dates, spelling, plurals, past tenses, antonyms,
synonyms, capitals, chemical elements.

Each family is one function `(rng, with_input) -> (instruction, input, output, answer)` with several phrasings;
`families.FAMILIES` lists them in the stream's order.
"""

from __future__ import annotations

import datetime as dt
import random

from instruct_tune.tasks.vocabulary import (
    ACRONYM_WORDS,
    ADJECTIVES,
    ANTONYMS,
    CAPITALS,
    ELEMENTS,
    IRREGULAR_PLURALS,
    IRREGULAR_VERBS,
    ITEM_GROUPS,
    MISSPELLINGS,
    MONTHS,
    NAMES,
    NOUNS,
    REGULAR_NOUNS,
    REGULAR_VERBS,
    SYNONYMS,
    VERBS_PAST,
    WEEKDAYS,
    Task,
    join_items,
)

# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------

def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"

def _long_date(d: dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"

def _plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"

def _past(verb: str) -> str:
    if verb in IRREGULAR_VERBS:
        return IRREGULAR_VERBS[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    if verb in ("stop", "plan", "drop", "shop", "hug", "travel"):  # doubled final consonant
        return verb + verb[-1] + "ed"
    return verb + "ed"

# ---------------------------------------------------------------------------------------------------------
# Word families: (rng, with_input) -> (instruction, input, output, answer)
# ---------------------------------------------------------------------------------------------------------

def string_transform(rng: random.Random, with_input: bool) -> Task:
    # Case changes copy the input up to case, so they come without an input (prepare's leakage check).
    kinds = ["reverse", "word_order", "acronym", "no_vowels"] + ([] if with_input else ["upper", "lower", "title"])
    kind = rng.choice(kinds)
    if kind in ("reverse", "no_vowels"):
        word = rng.choice(NOUNS)
        if kind == "reverse":
            ans = word[::-1]
            out = f"'{word}' spelled backwards is '{ans}'."
            if with_input:
                return rng.choice(["Write the following word backwards.",
                                   "Reverse the letters of the word below."]), word, out, ans
            return rng.choice([f"Reverse the word '{word}'.", f"Spell '{word}' backwards."]), "", out, ans
        ans = "".join(ch for ch in word if ch not in "aeiou")
        out = f"Without its vowels, '{word}' becomes '{ans}'."
        if with_input:
            return "Remove all the vowels from the following word.", word, out, ans
        return f"Remove all the vowels from the word '{word}'.", "", out, ans
    if kind == "word_order":
        words = [rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS_PAST), rng.choice(NAMES)]
        text = " ".join(words[: rng.randint(3, 4)])
        ans = " ".join(reversed(text.split()))
        out = f"With the words in reverse order, it reads: {ans}"
        if with_input:
            return "Reverse the order of the words in the following phrase.", text, out, ans
        return f"Reverse the order of the words in '{text}'.", "", out, ans
    if kind == "acronym":
        phrase = " ".join(rng.sample(ACRONYM_WORDS, rng.randint(3, 4)))
        ans = "".join(w[0] for w in phrase.split())
        out = f"The acronym for '{phrase}' is {ans}."
        if with_input:
            return rng.choice(["Form an acronym from the following phrase.",
                               "Create an acronym using the first letter of each word below."]), phrase, out, ans
        return f"What is the acronym of '{phrase}'?", "", out, ans
    phrase = " ".join(rng.sample(NOUNS + ADJECTIVES, rng.randint(1, 3)))
    if kind == "upper":
        ans = phrase.upper()
        ins = rng.choice([f"Convert '{phrase}' to upper case.", f"Write '{phrase}' in capital letters."])
        return ins, "", f"In upper case, it is {ans}.", ans
    if kind == "lower":
        shown = phrase.title()
        ans = shown.lower()
        return f"Convert '{shown}' to lower case.", "", f"In lower case, it is {ans}.", ans
    ans = phrase.title()
    return f"Capitalize the first letter of each word in '{phrase}'.", "", f"With capitals, it reads {ans}.", ans


def letter_position(rng: random.Random, with_input: bool) -> Task:
    n = rng.randint(1, 26)
    letter = chr(ord("A") + n - 1)
    if rng.random() < 0.5:
        ans = str(n)
        out = f"{letter} is the {_ordinal(n)} letter of the English alphabet."
        if with_input:
            return "Give the position of the following letter in the English alphabet.", letter, out, ans
        return rng.choice([f"What is the position of the letter {letter} in the English alphabet?",
                           f"Which position does the letter {letter} have in the alphabet?"]), "", out, ans
    out = f"The {_ordinal(n)} letter of the English alphabet is {letter}."
    if with_input:
        return "Which letter is at the following position in the English alphabet?", str(n), out, letter
    return f"What is the {_ordinal(n)} letter of the English alphabet?", "", out, letter


def alphabetical_order(rng: random.Random, with_input: bool) -> Task:
    # The answer is one of the listed words, so the words stay in the instruction (never in an input).
    words = rng.sample(NOUNS, rng.randint(3, 4))
    first = rng.random() < 0.6
    ans = min(words) if first else max(words)
    pos = "first" if first else "last"
    ins = rng.choice([f"Which of these words comes {pos} in alphabetical order: {join_items(words)}?",
                      f"Among the words {join_items(words)}, which one comes {pos} alphabetically?"])
    return ins, "", f"In alphabetical order, '{ans}' comes {pos}.", ans


def list_format(rng: random.Random, with_input: bool) -> Task:
    group = rng.choice(list(ITEM_GROUPS))
    items = rng.sample(ITEM_GROUPS[group], rng.randint(3, 5))
    if rng.random() < 0.5:
        ans = "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))
        out = f"Here is the numbered list:\n{ans}"
        if with_input:
            return rng.choice(["Turn the following comma-separated items into a numbered list.",
                               "Format these items as a numbered list."]), ", ".join(items), out, ans
        return f"Write {join_items(items)} as a numbered list.", "", out, ans
    ans = join_items(items)
    out = f"The {group} are {ans}."
    if with_input:
        return rng.choice(["Combine the items below into one phrase, with commas and 'and' before the last item.",
                           "Join these items into a single phrase, separated by commas and 'and'."]), \
            "\n".join(items), out, ans
    return f"Rewrite '{'; '.join(items)}' as a phrase with commas and 'and'.", "", out, ans


def dates(rng: random.Random, with_input: bool) -> Task:
    d = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 29_000))
    iso = rng.random() < 0.3
    shown = d.isoformat() if iso else _long_date(d)
    kind = rng.choice(["weekday", "between", "add"])
    if kind == "weekday":
        ans = WEEKDAYS[d.weekday()]
        out = f"{_long_date(d)} falls on a {ans}."
        if with_input:
            return rng.choice(["Find the day of the week for the date below.",
                               "Which day of the week does this date fall on?"]), shown, out, ans
        return rng.choice([f"What day of the week is {shown}?", f"On which day of the week does {shown} fall?",
                           f"Which weekday is {shown}?"]), "", out, ans
    n = rng.randint(1, 400)
    if kind == "between":
        e = d + dt.timedelta(days=n)
        shown_e = e.isoformat() if iso else _long_date(e)
        ans = str(n)
        out = f"There are {ans} days between {_long_date(d)} and {_long_date(e)}." if n != 1 else \
            f"There is 1 day between {_long_date(d)} and {_long_date(e)}."
        if with_input:
            return rng.choice(["Calculate the number of days between the two dates below.",
                               "How many days are there between these dates?"]), f"{shown}\n{shown_e}", out, ans
        return rng.choice([f"How many days are there between {shown} and {shown_e}?",
                           f"Count the days from {shown} to {shown_e}."]), "", out, ans
    before = rng.random() < 0.3
    e = d - dt.timedelta(days=n) if before else d + dt.timedelta(days=n)
    ans = _long_date(e)
    way = "before" if before else "after"
    days = "day" if n == 1 else "days"
    out = f"{n} {days} {way} {_long_date(d)} is {ans}."
    if with_input:
        verb = "Subtract" if before else "Add"
        return f"{verb} the given number of days {'from' if before else 'to'} the date.", \
            f"Date: {shown}\nDays: {n}", out, ans
    return rng.choice([f"What date is {n} {days} {way} {shown}?",
                       f"What was the date {n} {days} {way} {shown}?"]), "", out, ans


def spelling(rng: random.Random, with_input: bool) -> Task:
    wrong, right, frame = rng.choice(MISSPELLINGS)
    if with_input:
        ins = rng.choice(["Find the misspelled word in the following sentence and correct it.",
                          "Correct the spelling mistake in this sentence.",
                          "Which word is spelled wrong in the sentence below? Give the correct spelling."])
        sentence = frame.format(wrong)
        fixed = frame.format(right)
        return ins, sentence, f"'{wrong}' should be spelled '{right}': {fixed}", right
    ins = rng.choice([f"Correct the spelling of the word '{wrong}'.", f"How do you spell '{wrong}' correctly?",
                      f"The word '{wrong}' is misspelled. What is the correct spelling?"])
    return ins, "", f"The correct spelling is '{right}'.", right


def plural(rng: random.Random, with_input: bool) -> Task:
    noun = rng.choice(list(IRREGULAR_PLURALS) + REGULAR_NOUNS)
    ans = _plural(noun)
    out = rng.choice([f"The plural of '{noun}' is '{ans}'.", f"One {noun}, two {ans}."])
    if with_input:
        return rng.choice(["Give the plural form of the following noun.", "Write the plural of this word."]), \
            noun, out, ans
    return rng.choice([f"What is the plural of '{noun}'?", f"Give the plural form of '{noun}'."]), "", out, ans


def past_tense(rng: random.Random, with_input: bool) -> Task:
    verb = rng.choice(list(IRREGULAR_VERBS) + REGULAR_VERBS)
    ans = _past(verb)
    out = rng.choice([f"The past tense of '{verb}' is '{ans}'.", f"In the past tense, '{verb}' becomes '{ans}'."])
    if with_input:
        return rng.choice(["Write the past tense of the following verb.",
                           "Give the simple past form of this verb."]), verb, out, ans
    return rng.choice([f"What is the past tense of '{verb}'?", f"Give the simple past form of '{verb}'."]), \
        "", out, ans


def antonym(rng: random.Random, with_input: bool) -> Task:
    a, b = rng.choice(ANTONYMS)
    word, ans = (a, b) if rng.random() < 0.6 else (b, a)
    out = rng.choice([f"The opposite of '{word}' is '{ans}'.", f"An antonym of '{word}' is '{ans}'."])
    if with_input:
        return rng.choice(["Give an antonym for the following word.", "What is the opposite of this word?"]), \
            word, out, ans
    return rng.choice([f"What is the opposite of '{word}'?", f"Give an antonym for '{word}'.",
                       f"Name a word that means the opposite of '{word}'."]), "", out, ans


def synonym(rng: random.Random, with_input: bool) -> Task:
    word, ans = rng.choice(SYNONYMS)
    out = rng.choice([f"A synonym for '{word}' is '{ans}'.", f"'{ans}' means the same as '{word}'."])
    if with_input:
        return rng.choice(["Give a synonym for the following word.",
                           "Suggest a word with the same meaning as the word below."]), word, out, ans
    return rng.choice([f"What is a synonym for '{word}'?", f"Give a word that means the same as '{word}'."]), \
        "", out, ans


def capital(rng: random.Random, with_input: bool) -> Task:
    country = rng.choice(list(CAPITALS))
    city = CAPITALS[country]
    if rng.random() < 0.65:
        out = rng.choice([f"The capital of {country} is {city}.", f"{city} is the capital city of {country}."])
        if with_input:
            return rng.choice(["What is the capital of the following country?",
                               "Name the capital city of the country below."]), country, out, city
        return rng.choice([f"What is the capital of {country}?", f"Name the capital city of {country}.",
                           f"Which city is the capital of {country}?"]), "", out, city
    out = f"{city} is the capital of {country}."
    if with_input:
        return "Which country has the following city as its capital?", city, out, country
    return rng.choice([f"{city} is the capital of which country?", f"Which country's capital is {city}?"]), \
        "", out, country


def element(rng: random.Random, with_input: bool) -> Task:
    name, symbol, number = rng.choice(ELEMENTS)
    kind = rng.choice(["symbol", "name", "number", "by_number"])
    if kind == "symbol" and not with_input:  # a symbol is often the name's first letters: never from an input
        return rng.choice([f"What is the chemical symbol for {name.lower()}?",
                           f"Give the element symbol of {name.lower()}."]), "", \
            f"The chemical symbol for {name.lower()} is {symbol}.", symbol
    if kind in ("symbol", "name"):
        out = f"{symbol} is the chemical symbol for {name.lower()}, so the element is {name}."
        if with_input:
            return "Name the chemical element with the following symbol.", symbol, out, name
        return f"Which chemical element has the symbol {symbol}?", "", out, name
    if kind == "number":
        ans = str(number)
        out = f"The atomic number of {name.lower()} is {ans}."
        if with_input:
            return "What is the atomic number of the following element?", name, out, ans
        return f"What is the atomic number of {name.lower()}?", "", out, ans
    out = f"The element with atomic number {number} is {name}."
    if with_input:
        return "Which element has the atomic number given below?", str(number), out, name
    return f"Which element has atomic number {number}?", "", out, name
