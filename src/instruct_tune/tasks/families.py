"""The built-in generator of verifiable instruction tasks: the embedded default data (no hub needed).

Every record is Alpaca-style (`instruction`, `input`, `output`) plus the exact short `answer` the output
contains and the `task` family, so exact-match accuracy is measurable beside the judge. Each family is one
small function `(rng, with_input) -> (instruction, input, output, answer)` with several phrasings; facts
(capitals, elements, antonyms, irregular forms, misspellings) are plain tables below.

The stream is deterministic for a seed (`random.Random(seed)` only), mixes families at random, drops
duplicates (by normalised instruction + input) and records whose answer already sits in the input
(`prepare` would drop them as leakage). `generate_tasks(n, seed)` is a prefix of `generate_tasks(m, seed)`
for n < m.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal

from instruct_tune.errors import UserError

MAX_TASKS = 20_000  # the stream's length per seed: plenty for CPU training, fast to make (~2 s)
INPUT_SHARE = 0.4  # target share of records with an `input`, as in Alpaca (38.6%)
MAX_MISSES = 200  # consecutive duplicates after which a family counts as exhausted

Task = tuple[str, str, str, str]  # instruction, input, output, answer
# Inputs that `prepare` reads as Alpaca's "no input" placeholders ("Na" is sodium, "empty" an adjective here).
PLACEHOLDER_INPUTS = ("noinput", "no input", "none", "n a", "na", "null", "nil", "empty", "nothing", "not applicable")

# ---------------------------------------------------------------------------------------------------------
# Fact tables and word lists (plain data)
# ---------------------------------------------------------------------------------------------------------

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasília", "Argentina": "Buenos Aires", "Egypt": "Cairo", "Kenya": "Nairobi", "Russia": "Moscow",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Greece": "Athens", "Turkey": "Ankara", "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest",
    "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogotá", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "South Korea": "Seoul", "Indonesia": "Jakarta", "Nigeria": "Abuja", "Morocco": "Rabat", "Iran": "Tehran",
    "Netherlands": "Amsterdam", "Belgium": "Brussels", "Switzerland": "Bern", "New Zealand": "Wellington",
    "Cuba": "Havana", "Ukraine": "Kyiv", "Czech Republic": "Prague",
}

ELEMENTS = [  # name, symbol, atomic number
    ("Hydrogen", "H", 1), ("Helium", "He", 2), ("Lithium", "Li", 3), ("Carbon", "C", 6), ("Nitrogen", "N", 7),
    ("Oxygen", "O", 8), ("Fluorine", "F", 9), ("Neon", "Ne", 10), ("Sodium", "Na", 11), ("Magnesium", "Mg", 12),
    ("Aluminium", "Al", 13), ("Silicon", "Si", 14), ("Phosphorus", "P", 15), ("Sulfur", "S", 16),
    ("Chlorine", "Cl", 17), ("Argon", "Ar", 18), ("Potassium", "K", 19), ("Calcium", "Ca", 20), ("Iron", "Fe", 26),
    ("Nickel", "Ni", 28), ("Copper", "Cu", 29), ("Zinc", "Zn", 30), ("Silver", "Ag", 47), ("Tin", "Sn", 50),
    ("Iodine", "I", 53), ("Platinum", "Pt", 78), ("Gold", "Au", 79), ("Mercury", "Hg", 80), ("Lead", "Pb", 82),
    ("Uranium", "U", 92),
]

ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"), ("early", "late"),
    ("strong", "weak"), ("rich", "poor"), ("young", "old"), ("open", "closed"), ("full", "empty"),
    ("hard", "soft"), ("high", "low"), ("wide", "narrow"), ("thick", "thin"), ("loud", "quiet"), ("wet", "dry"),
    ("clean", "dirty"), ("cheap", "expensive"), ("brave", "cowardly"), ("sweet", "sour"), ("true", "false"),
    ("win", "lose"), ("buy", "sell"), ("push", "pull"), ("begin", "end"), ("arrive", "depart"), ("above", "below"),
    ("inside", "outside"), ("always", "never"), ("ancient", "modern"), ("accept", "refuse"), ("float", "sink"),
    ("friend", "enemy"), ("victory", "defeat"), ("shallow", "deep"), ("generous", "selfish"), ("calm", "anxious"),
    ("rough", "smooth"), ("heavy", "light"), ("increase", "decrease"), ("north", "south"),
]

SYNONYMS = [
    ("big", "large"), ("small", "tiny"), ("happy", "joyful"), ("sad", "unhappy"), ("fast", "quick"),
    ("smart", "intelligent"), ("begin", "start"), ("end", "finish"), ("angry", "furious"), ("pretty", "beautiful"),
    ("difficult", "hard"), ("easy", "simple"), ("scared", "afraid"), ("rich", "wealthy"), ("quiet", "silent"),
    ("help", "assist"), ("buy", "purchase"), ("tired", "exhausted"), ("funny", "amusing"), ("brave", "courageous"),
    ("shout", "yell"), ("enormous", "huge"), ("correct", "right"), ("choose", "select"), ("gift", "present"),
    ("odd", "strange"), ("wealth", "fortune"), ("talk", "speak"), ("cold", "chilly"), ("answer", "reply"),
]

IRREGULAR_PLURALS = {
    "child": "children", "man": "men", "woman": "women", "tooth": "teeth", "foot": "feet", "mouse": "mice",
    "goose": "geese", "person": "people", "ox": "oxen", "cactus": "cacti", "fungus": "fungi",
    "nucleus": "nuclei", "crisis": "crises", "analysis": "analyses", "thesis": "theses", "phenomenon": "phenomena",
    "criterion": "criteria", "leaf": "leaves", "knife": "knives", "wife": "wives", "wolf": "wolves",
    "half": "halves", "life": "lives", "loaf": "loaves", "shelf": "shelves", "sheep": "sheep", "deer": "deer",
    "fish": "fish", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "louse": "lice",
}
REGULAR_NOUNS = [
    "cat", "dog", "book", "table", "chair", "river", "city", "baby", "party", "story", "box", "fox", "bus",
    "glass", "church", "brush", "dish", "day", "key", "boy", "toy", "pencil", "window", "garden", "puppy",
    "country", "lady", "watch", "match", "class", "house", "tree", "cherry", "berry", "beach", "tax",
]

IRREGULAR_VERBS = {
    "go": "went", "see": "saw", "eat": "ate", "take": "took", "give": "gave", "write": "wrote", "drive": "drove",
    "run": "ran", "swim": "swam", "sing": "sang", "drink": "drank", "begin": "began", "speak": "spoke",
    "break": "broke", "choose": "chose", "fly": "flew", "grow": "grew", "know": "knew", "throw": "threw",
    "draw": "drew", "buy": "bought", "bring": "brought", "think": "thought", "teach": "taught", "catch": "caught",
    "fight": "fought", "sell": "sold", "tell": "told", "find": "found", "build": "built", "send": "sent",
    "sleep": "slept", "feel": "felt", "leave": "left", "keep": "kept", "stand": "stood", "understand": "understood",
    "wear": "wore", "forget": "forgot", "freeze": "froze", "put": "put", "cut": "cut",
}
REGULAR_VERBS = [
    "walk", "talk", "play", "jump", "cook", "clean", "open", "watch", "help", "stop", "plan", "drop", "shop",
    "try", "cry", "carry", "study", "hurry", "dance", "smile", "live", "move", "close", "paint", "visit", "travel",
    "laugh", "ask", "answer", "climb", "listen", "fix", "hug", "marry",
]

MISSPELLINGS = [  # wrong, right, a sentence with a slot for the word
    ("recieve", "receive", "Did you {} my letter last week?"),
    ("beleive", "believe", "I can hardly {} how quickly the year went by."),
    ("seperate", "separate", "Please keep the red socks {} from the white ones."),
    ("definately", "definitely", "We will {} visit the museum tomorrow."),
    ("occured", "occurred", "The accident {} late at night."),
    ("untill", "until", "The shop stays open {} nine o'clock."),
    ("wierd", "weird", "That was a {} dream."),
    ("acheive", "achieve", "She worked hard to {} her goals."),
    ("goverment", "government", "The {} announced a new law."),
    ("enviroment", "environment", "We must protect the {} for future generations."),
    ("tommorow", "tomorrow", "The meeting has been moved to {} morning."),
    ("begining", "beginning", "The {} of the film was very slow."),
    ("calender", "calendar", "I marked the date on my {}."),
    ("neccessary", "necessary", "Is it {} to bring a passport?"),
    ("adress", "address", "Please write your {} on the form."),
    ("occassion", "occasion", "A birthday is a special {}."),
    ("publically", "publicly", "The results were announced {}."),
    ("arguement", "argument", "They had an {} about money."),
    ("existance", "existence", "Scientists debated the {} of the particle."),
    ("foriegn", "foreign", "He enjoys learning {} languages."),
    ("freind", "friend", "My best {} lives next door."),
    ("grammer", "grammar", "The teacher corrected my {}."),
    ("independant", "independent", "The country became {} in 1960."),
    ("knowlege", "knowledge", "Reading books expands your {}."),
    ("libary", "library", "I borrowed three books from the {}."),
    ("mispell", "misspell", "It is easy to {} long words."),
    ("noticable", "noticeable", "There was a {} change in the weather."),
    ("persistant", "persistent", "The {} rain flooded the streets."),
    ("posession", "possession", "The old map was in his {}."),
    ("reccomend", "recommend", "Can you {} a good restaurant?"),
    ("rythm", "rhythm", "The drummer kept a steady {}."),
    ("succesful", "successful", "The launch was very {}."),
    ("suprise", "surprise", "We planned a {} party for her."),
    ("truely", "truly", "I am {} grateful for your help."),
    ("wich", "which", "I do not know {} road to take."),
    ("accomodate", "accommodate", "The hotel can {} two hundred guests."),
    ("commitee", "committee", "The {} will vote on Friday."),
    ("embarass", "embarrass", "Please do not {} me in front of my friends."),
    ("harrass", "harass", "It is wrong to {} other people online."),
    ("millenium", "millennium", "The new {} began with fireworks."),
    ("pronounciation", "pronunciation", "Her {} of French words is excellent."),
    ("restaraunt", "restaurant", "We had dinner at a small {}."),
]

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jack", "Kofi", "Lena",
         "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Yuki", "Zoe"]
NOUNS = ["apple", "garden", "window", "river", "mountain", "pencil", "basket", "castle", "bridge", "candle",
         "guitar", "jacket", "kitchen", "ladder", "mirror", "orange", "parrot", "rabbit", "saddle", "ticket",
         "umbrella", "violin", "wallet", "button", "dragon", "forest", "harbor", "island", "lantern", "meadow",
         "planet", "rocket", "shadow", "tunnel", "valley", "whistle", "blanket", "cabinet", "dolphin", "feather",
         "giraffe", "hammer", "kettle", "lemon", "monkey", "notebook", "pillow", "sandwich", "teacher", "village"]
ADJECTIVES = ["red", "old", "quiet", "bright", "tiny", "heavy", "gentle", "shiny", "broken", "famous", "small",
              "green", "wooden", "empty", "lucky", "strange", "friendly", "golden", "noisy", "soft"]
VERBS_PAST = ["found", "painted", "carried", "watched", "cleaned", "opened", "visited", "borrowed", "fixed",
              "noticed", "bought", "dropped", "followed", "moved", "sold"]
PLACES = ["in the morning", "near the station", "after lunch", "by the lake", "at the market", "before dinner",
          "on Sunday", "in the park", "at school", "during the storm", "yesterday", "last night"]
ITEM_GROUPS = {
    "groceries": ["milk", "eggs", "bread", "butter", "cheese", "rice", "apples", "carrots", "onions", "coffee",
                  "tea", "honey", "pasta", "flour", "sugar", "yogurt"],
    "animals": ["lion", "tiger", "zebra", "panda", "koala", "otter", "eagle", "shark", "camel", "horse", "whale",
                "fox", "owl", "bear", "wolf", "deer"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white", "gray",
               "violet", "indigo", "teal"],
    "sports": ["tennis", "soccer", "hockey", "cricket", "rugby", "golf", "swimming", "cycling", "boxing",
               "rowing", "skiing", "surfing", "volleyball", "basketball"],
    "tools": ["hammer", "saw", "drill", "wrench", "pliers", "screwdriver", "chisel", "level", "tape measure",
              "sander", "ladder", "shovel"],
}
ACRONYM_WORDS = ["Advanced", "Business", "Central", "Digital", "Energy", "Federal", "Global", "Health",
                 "International", "Joint", "Knowledge", "Learning", "Modern", "National", "Open", "Public",
                 "Quality", "Research", "Science", "Technology", "United", "Virtual", "World", "Youth",
                 "Network", "Institute", "Agency", "Service", "Council", "Program", "Development", "Office"]
COUNTABLE_ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "cards", "coins", "shells",
                   "stamps", "balloons", "candies"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NUMBER_TEXTS = [  # sentences with number slots {0}, {1}, {2} and a name {n}
    "{n} walked {0} kilometers on Monday and {1} kilometers on Tuesday.",
    "The library received {0} new books in March and {1} in April.",
    "Our team scored {0} points in the first half and {1} points in the second half.",
    "There are {0} students in class A, {1} in class B and {2} in class C.",
    "The recipe needs {0} grams of flour, {1} grams of sugar and {2} grams of butter.",
    "{n} read {0} pages on Saturday and {1} pages on Sunday.",
    "A farmer has {0} cows, {1} sheep and {2} chickens.",
    "The shop sold {0} shirts, {1} hats and {2} scarves today.",
    "The bus carried {0} passengers in the morning and {1} in the evening.",
    "The museum had {0} visitors on Friday, {1} on Saturday and {2} on Sunday.",
    "{n} planted {0} tulips and {1} roses in the garden.",
    "The orchestra has {0} violins, {1} cellos and {2} flutes.",
]

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


def _fmt(x: float, places: int = 2) -> str:
    """A number rounded to `places` decimals, without trailing zeros: 8.05, 16.1, 32."""
    s = f"{x:.{places}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _join(items: list[str]) -> str:
    """`a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _long_date(d: dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _sentence(rng: random.Random) -> str:
    """A short plain sentence without digits (for counting and word-order tasks)."""
    return (f"{rng.choice(NAMES)} {rng.choice(VERBS_PAST)} the {rng.choice(ADJECTIVES)} "
            f"{rng.choice(NOUNS)} {rng.choice(PLACES)}.")


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
# Task families: (rng, with_input) -> (instruction, input, output, answer)
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
    rest = _join([n for i, n in enumerate(nums) if i != pos])
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
    return f"Sort the {what} {_join(items)} {order}.", "", out, ans


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
    listed = _join([str(x) for x in nums])
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
    ins = rng.choice([f"Which of these words comes {pos} in alphabetical order: {_join(words)}?",
                      f"Among the words {_join(words)}, which one comes {pos} alphabetically?"])
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
        return f"Write {_join(items)} as a numbered list.", "", out, ans
    ans = _join(items)
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


FAMILIES: dict[str, Callable[[random.Random, bool], Task]] = {
    "arithmetic": arithmetic, "percentage": percentage, "unit_conversion": unit_conversion,
    "comparison": comparison, "sorting": sorting, "rounding": rounding, "even_odd": even_odd,
    "number_sequence": number_sequence, "number_extraction": number_extraction, "counting": counting,
    "string_transform": string_transform, "letter_position": letter_position,
    "alphabetical_order": alphabetical_order, "list_format": list_format, "dates": dates, "spelling": spelling,
    "plural": plural, "past_tense": past_tense, "antonym": antonym, "synonym": synonym, "capital": capital,
    "element": element,
}
NO_INPUT_FAMILIES = ("alphabetical_order",)  # the answer is one of the listed words: an input would leak it
TASK_FAMILIES: tuple[str, ...] = tuple(FAMILIES)

# ---------------------------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case, punctuation and whitespace collapsed to single spaces (for duplicate and leakage checks)."""
    return " ".join(re.sub(r"[^0-9a-zà-ÿ]+", " ", text.lower()).split())


def leaks(answer: str, input_text: str) -> bool:
    """Whether the answer already sits in the input (strictly: case and punctuation ignored, as a substring)."""
    if not input_text:
        return False
    return answer.lower() in input_text.lower() or normalise(answer) in normalise(input_text)


def iter_tasks(seed: int) -> Iterator[dict[str, str]]:
    """Up to MAX_TASKS unique task records for `seed`, families mixed at random, in a deterministic order."""
    rng = random.Random(seed)
    active = list(FAMILIES)
    share = INPUT_SHARE * len(FAMILIES) / (len(FAMILIES) - len(NO_INPUT_FAMILIES))
    misses = dict.fromkeys(FAMILIES, 0)
    seen: set[str] = set()
    produced = 0
    while active and produced < MAX_TASKS:
        name = active[rng.randrange(len(active))]
        with_input = name not in NO_INPUT_FAMILIES and rng.random() < share
        instruction, input_text, output, answer = FAMILIES[name](rng, with_input)
        if answer not in output:  # a bug in a family, never the user's doing
            raise AssertionError(f"{name}: answer {answer!r} missing from output {output!r}")
        key = normalise(instruction) + "\n" + normalise(input_text)
        if key in seen or leaks(answer, input_text) or normalise(input_text) in PLACEHOLDER_INPUTS:
            misses[name] += 1
            if misses[name] >= MAX_MISSES:
                active.remove(name)
            continue
        misses[name] = 0
        seen.add(key)
        produced += 1
        yield {"instruction": instruction, "input": input_text, "output": output, "answer": answer, "task": name}


def generate_tasks(count: int, seed: int) -> list[dict[str, str]]:
    """The first `count` records of the seed's stream; a UserError if it holds fewer."""
    if count < 0:
        raise UserError(f"builtin:tasks: field 'count': must be >= 0, got {count}")
    if count > MAX_TASKS:
        raise UserError(f"builtin:tasks: field 'count': {count} requested, but the built-in generator offers "
                        f"{MAX_TASKS} unique tasks per seed")
    records: list[dict[str, str]] = []
    for record in iter_tasks(seed):
        if len(records) == count:
            break
        records.append(record)
    if len(records) < count:
        raise UserError(f"builtin:tasks: field 'count': {count} requested, but seed {seed} yields only "
                        f"{len(records)} unique tasks")
    return records
