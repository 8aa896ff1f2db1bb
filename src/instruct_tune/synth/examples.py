"""The examples the `synthesize` stage asks for and checks: the plan of example slots per passage, the generator's
prompt, schema and reply, the checks by rules that need no model, and the auditor's prompt, schema and verdict.

The prompt texts are data, in prompts/synth.yaml (read once per process); every text sent is part of a cache key,
so editing one asks the calls that used it again.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from instruct_tune.llm.client import ReplyError, json_object
from instruct_tune.llm.prompt_text import fill, load_prompts, neutralise
from instruct_tune.synth.passages import Passage

PROMPT_FILES = ["prompts/synth.yaml"]  # read by this module: deps of every stage that imports it (test_contracts)
PROMPTS = load_prompts(Path(__file__).parent / PROMPT_FILES[0])
TASKS = ("question", "summary", "rewrite", "classification", "extraction")
INPUT_TASKS = ("summary", "rewrite", "classification", "extraction")  # tasks that work on an input
VERDICTS = ("keep", "leakage", "not_answerable", "contradicts", "wrong_language", "malformed")
NOTE_CHARS = 160  # the passage sentence the auditor quotes
# Longest fields the generator may write (the local model's grammar stops a looping string there).
FIELD_CHARS = {"instruction": 300, "input": 1000, "output": 1000}


# ---------------------------------------------------------------- the generator


def plan_tasks(passage: Passage, per_passage: int, input_share: float, seed: int) -> list[str]:
    """The task of each example slot: with probability `input_share` a task on an input (the four types in
    turn, from a random one), else a question. Seeded by the passage's text, so a passage keeps its plan, and
    its cached reply, whatever other passages are added or removed."""
    rng = random.Random(f"{seed}\x1f{passage.text}")
    first = rng.randrange(len(INPUT_TASKS))
    tasks: list[str] = []
    for _ in range(per_passage):
        if rng.random() < input_share:
            tasks.append(INPUT_TASKS[(first + sum(t != "question" for t in tasks)) % len(INPUT_TASKS)])
        else:
            tasks.append("question")
    return tasks


GENERATOR_SYSTEM = PROMPTS["generator_system"]  # {language}: synth.language
TASK_SLOTS: dict[str, str] = PROMPTS["task_slots"]  # how the plan names each task type to the generator


def generator_schema(per_passage: int) -> dict[str, Any]:
    """The reply: `example_1` ... `example_N`, each with its task, instruction, input and output."""
    example = {
        "type": "object",
        "properties": {"task": {"type": "string", "enum": list(TASKS)},
                       **{name: {"type": "string", "maxLength": chars} for name, chars in FIELD_CHARS.items()}},
        "required": ["task", "instruction", "input", "output"],
        "additionalProperties": False,
    }
    slots = {f"example_{k}": example for k in range(1, per_passage + 1)}
    return {"type": "object", "properties": slots, "required": list(slots), "additionalProperties": False}


def generator_messages(passage: Passage, tasks: list[str], language: str) -> list[dict[str, str]]:
    """The system turn (the rules: the same for every passage) and the passage with its plan of examples."""
    plan = "\n".join(f"- example_{k}: {TASK_SLOTS[task]}" for k, task in enumerate(tasks, start=1))
    task = fill(PROMPTS["generator_task"], n=len(tasks), plan=plan)
    user = f"<<<PASSAGE>>>\n{neutralise(passage.text)}\n<<<END PASSAGE>>>\n\n{task}"
    return [{"role": "system", "content": GENERATOR_SYSTEM.replace("{language}", language)},
            {"role": "user", "content": user}]


def parse_examples(text: str, per_passage: int) -> list[dict[str, Any] | None]:
    """The reply's example objects by slot (None where a slot is missing or not an object). A reply without
    any example object is invalid (retried); a list under `examples` is accepted from servers without schemas."""
    data = json_object(text)
    if isinstance(data.get("examples"), list):
        items = data["examples"][:per_passage]
    else:
        items = [data.get(f"example_{k}") for k in range(1, per_passage + 1)]
    items = [item if isinstance(item, dict) else None for item in items]
    items += [None] * (per_passage - len(items))
    if not any(items):
        raise ReplyError(f"no example objects (expected the keys example_1 to example_{per_passage})")
    return items


# ---------------------------------------------------------------- candidates and checks


def candidate_id(passage: Passage, slot: int, example: dict[str, str]) -> str:
    """A stable id: the passage, the slot and the example's text."""
    material = json.dumps([passage.id, slot, example["instruction"], example["input"], example["output"]],
                          ensure_ascii=False)
    return hashlib.sha1(material.encode("utf-8")).hexdigest()[:16]


def _words(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


_REFERS_TO_A_TEXT = re.compile(r"\b(the|this|that|above|following|given|provided)\s+"
                               r"(passage|text|article|document|paragraph|excerpt)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_NUMBER = re.compile(r"\d(?:[\d,.]*\d)?")
# Common English function words: English prose is about a fifth to a third of them, other languages almost none.
# ("a", "an" and "in" are left out: they are also words of Portuguese, Spanish, Italian, German.)
_ENGLISH_WORDS = frozenset("the of and to is was were are be been for on with as by at from that this it its which "
                           "or not have has had".split())
ENGLISH_MIN_SHARE = 0.05  # below this share of function words, a text of 8+ words is not English (lists of names: ~8%)
_SENTENCE_START = ".!?:;\n\"'(\u201c"


def english_share(text: str) -> float | None:
    """The share of English function words among the words of `text` (None below 8 words: too short to tell)."""
    words = [w.casefold() for w in _WORD.findall(text) if not any(c.isdigit() for c in w)]
    if len(words) < 8:
        return None
    return sum(w in _ENGLISH_WORDS for w in words) / len(words)


def unsupported_names(output: str, source: str) -> list[str]:
    """Numbers, and capitalised words not at the start of a sentence, of `output` that `source` lacks (words
    case-insensitive, numbers by their digits: 44,000 is 44000): facts the generator brought from elsewhere."""
    known = {w.casefold() for w in _WORD.findall(source)}
    numbers = {re.sub(r"\D", "", n) for n in _NUMBER.findall(source)}
    found = [(m.start(), m.group()) for m in _NUMBER.finditer(output) if re.sub(r"\D", "", m.group()) not in numbers]
    for match in _WORD.finditer(output):
        word = match.group()
        before = output[: match.start()].rstrip()
        if (word[0].isupper() and not any(c.isdigit() for c in word) and before and before[-1] not in _SENTENCE_START
                and word.casefold() not in known):
            found.append((match.start(), word))
    return list(dict.fromkeys(word for _, word in sorted(found)))


def check_example(item: dict[str, Any] | None, planned: str, passage: str, language: str
                  ) -> tuple[dict[str, str], str | None, str | None]:
    """The example's fields as strings, and the reason and note of a drop that needs no model (or None, None)."""
    fields = {name: (item or {}).get(name) for name in ("task", "instruction", "input", "output")}
    example = {name: value.strip() if isinstance(value, str) else "" for name, value in fields.items()}
    if example["task"] not in TASKS:
        example["task"] = planned
    if item is None:
        return example, "malformed", "missing from the generator's reply"
    for name in ("instruction", "input", "output"):
        if not isinstance(fields[name], str):
            return example, "malformed", f"field '{name}' is not a string"
    for name in ("instruction", "output"):
        if not _words(example[name]):
            return example, "malformed", f"no words in the {name}"
    if example["task"] in INPUT_TASKS and not _words(example["input"]):
        return example, "malformed", f"the {example['task']} task has no input"
    if example["input"] and _words(example["output"]) == _words(example["input"]):
        return example, "leakage", "the output repeats the input"
    if example["input"] and example["task"] != "extraction" and _words(example["output"]) in _words(example["input"]):
        return example, "leakage", "the output is contained in the input"
    if not example["input"] and _REFERS_TO_A_TEXT.search(example["instruction"]):
        return example, "not_answerable", "the instruction refers to a text it does not include"
    if language.strip().casefold() == "english":
        share = english_share(" ".join((example["instruction"], example["input"], example["output"])))
        if share is not None and share < ENGLISH_MIN_SHARE:
            return example, "wrong_language", f"not English: {100 * share:.0f}% English function words"
    new = unsupported_names(example["output"], " ".join((passage, example["instruction"], example["input"])))
    if new:
        return example, "not_answerable", f"names or numbers the passage does not give: {', '.join(new[:5])}"
    return example, None, None


# ---------------------------------------------------------------- the auditor


AUDIT_SYSTEM = PROMPTS["audit_system"]  # {language}: synth.language
AUDIT_QUESTION = PROMPTS["audit_question"]


def audit_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"evidence": {"type": "string", "maxLength": NOTE_CHARS},
                       "verdict": {"type": "string", "enum": list(VERDICTS)}},
        "required": ["evidence", "verdict"],
        "additionalProperties": False,
    }


def audit_messages(passage: Passage, example: dict[str, str], language: str) -> list[dict[str, str]]:
    """The rules in the system turn (the same for every example: a local model computes it once), the passage and
    the example in the user turn: document text is never in a system turn, and both are neutralised."""
    shown = (f"<<<PASSAGE>>>\n{neutralise(passage.text)}\n<<<END PASSAGE>>>\n\n"
             f"<<<EXAMPLE>>>\n### Instruction\n{neutralise(example['instruction'])}\n\n"
             f"### Input\n{neutralise(example['input']) or '(empty)'}\n\n"
             f"### Output\n{neutralise(example['output'])}\n<<<END EXAMPLE>>>")
    return [{"role": "system", "content": AUDIT_SYSTEM.replace("{language}", language)},
            {"role": "user", "content": f"{shown}\n\n{AUDIT_QUESTION}"}]


def parse_audit(text: str) -> dict[str, str]:
    """The auditor's verdict, and the passage sentence it quotes as evidence (its note)."""
    data = json_object(text)
    verdict = data.get("verdict")
    if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
        raise ReplyError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    evidence = data.get("evidence", "")
    if not isinstance(evidence, str):
        raise ReplyError("evidence must be a string")
    return {"verdict": verdict.strip().lower(), "note": "evidence: " + " ".join(evidence.split())[:NOTE_CHARS]}
