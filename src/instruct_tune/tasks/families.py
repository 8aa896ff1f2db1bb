"""The built-in generator of verifiable instruction tasks: the embedded default data (no hub needed).

Every record is Alpaca-style (`instruction`, `input`, `output`) plus the exact short `answer` the output
contains and the `task` family, so exact-match accuracy is measurable beside the judge. Each family is one
small function `(rng, with_input) -> (instruction, input, output, answer)` with several phrasings: the number
families in `numeric_families`, the word, list, letter and date families in `word_families`; facts (capitals,
elements, antonyms, irregular forms, misspellings) are plain tables in `vocabulary`. This module holds the
registry (`FAMILIES`) and the stream.

The stream is deterministic for a seed (`random.Random(seed)` only), mixes families at random, drops
duplicates (by normalised instruction + input) and records whose answer already sits in the input
(`prepare` would drop them as leakage). `generate_tasks(n, seed)` is a prefix of `generate_tasks(m, seed)`
for n < m.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator

from instruct_tune.errors import UserError
from instruct_tune.tasks.numeric_families import (
    arithmetic,
    comparison,
    counting,
    even_odd,
    number_extraction,
    number_sequence,
    percentage,
    rounding,
    sorting,
    unit_conversion,
)
from instruct_tune.tasks.vocabulary import Task
from instruct_tune.tasks.word_families import (
    alphabetical_order,
    antonym,
    capital,
    dates,
    element,
    letter_position,
    list_format,
    past_tense,
    plural,
    spelling,
    string_transform,
    synonym,
)

MAX_TASKS = 20_000  # the stream's length per seed: plenty for CPU training, fast to make (~2 s)
INPUT_SHARE = 0.4  # target share of records with an `input`, as in Alpaca (38.6%)
MAX_MISSES = 200  # consecutive duplicates after which a family counts as exhausted

# Inputs that `prepare` reads as Alpaca's "no input" placeholders ("Na" is sodium, "empty" an adjective here).
PLACEHOLDER_INPUTS = ("noinput", "no input", "none", "n a", "na", "null", "nil", "empty", "nothing", "not applicable")

# The families in the stream's order (the order draws from the seed's random stream: never reorder).
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
