"""The judge's replies read into grades and verdicts: a generated pointwise grade or pairwise verdict checked
against the rubric (a `ReplyError` names what is wrong), and a grade computed from the forced skeletons' choice
probabilities (`choices` scoring). Cached judgments are graded again by this code on every read (judge.regrade).
"""

from __future__ import annotations

import re
from typing import Any

from instruct_tune.evaluate.judge_prompts import REASON_CHARS
from instruct_tune.evaluate.rubric import CRITERIA, MAX_SCORE, MAX_TOTAL
from instruct_tune.llm.client import ReplyError, json_object
from instruct_tune.tasks.matching import lenient_match

NO_ANSWER = ("", "none", "several")  # the judge's own reading: no single final answer, so not correct
# `correct` when p(same answer) exceeds this. The judge leans to "same" (p about 0.5-0.75 for a related word
# or a word of the question); on the held-out records of judge_prompts.COMPARE_RULES, kappa is 0.79 at 0.5,
# 0.82 at 0.6, 0.86 at 0.7 and 0.85 at 0.8 (a plateau, not a peak), so 0.7.
CORRECT_THRESHOLD = 0.7


def _score(value: Any, name: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ReplyError(f"{name} must be an integer, got {value!r}")
    if not 0 <= int(value) <= top:
        raise ReplyError(f"{name} must be between 0 and {top}, got {value!r}")
    return int(value)


def parse_grade(text: str, with_reference: bool) -> dict[str, Any]:
    """Validate a pointwise reply (`generate` scoring); return the grade with `total` computed."""
    data = json_object(text)
    scores = {c: _score(data.get(c), c, MAX_SCORE) for c in CRITERIA}
    correct = data.get("correct")
    if with_reference and not isinstance(correct, bool):
        raise ReplyError(f"correct must be true or false, got {correct!r}")
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise ReplyError("reason must be a string")
    return {"correct": correct if with_reference else None, "p_correct": None, "scores": scores,
            "expected": None, "total": sum(scores.values()), "reason": reason.strip()[:REASON_CHARS]}


# A list item's marker at the start of a line ("1.", "2)", "-", "*", "•"): formatting, not words of the answer.
_LIST_MARKER = re.compile(r"(?m)^[ \t]*(?:\d{1,3}[.)]|[-*•])[ \t]+")


def read_an_answer(copied: str, response: str) -> bool:
    """Whether the judge's copy of the final answer is an answer found in the response: not "none" or
    "several", and (a copy being word for word) its words are a contiguous run of the response's words,
    case, punctuation and list numbering aside (the judge writes a numbered list on one line, since its
    copy ends at the first newline). A copy that is not in the response is the judge's invention, so
    there is nothing to compare with the reference."""
    if copied.strip().strip(".").casefold() in NO_ANSWER:
        return False
    return lenient_match(copied, response) or lenient_match(copied, _LIST_MARKER.sub("", response))


def response_of(messages: list[dict[str, str]]) -> str:
    """The response text of a pointwise request's messages (between its delimiters, as the judge saw it)."""
    user = messages[-1]["content"]
    return user.split("<<<RESPONSE>>>\n", 1)[-1].rsplit("\n<<<END RESPONSE>>>", 1)[0]


def grade_from_choices(first: list[Any], second: list[Any] | None, with_reference: bool = True) -> dict[str, Any]:
    """A pointwise grade from the two forced skeletons: the judge's copy of the final answer, the most
    likely value of each field, and the probability-weighted means (`expected`). With a reference but no
    `second` (the judge read no answer in the response), the response is not correct and scores 0 on
    factual correctness."""
    dists: dict[str, dict[str, float]] = {}
    correct = p_correct = final_answer = None
    if not with_reference:
        dists = dict(zip(CRITERIA, first, strict=True))
    elif second is None:
        final_answer = str(first[0])[:REASON_CHARS]
        no = {str(v): float(v == 0) for v in range(MAX_SCORE + 1)}
        dists = {"instruction_adherence": first[1], "clarity_usefulness": first[2], "factual_correctness": no}
        p_correct, correct = 0.0, False
    else:
        final_answer = str(first[0])[:REASON_CHARS]
        dists = {"instruction_adherence": first[1], "clarity_usefulness": first[2], "factual_correctness": second[1]}
        p_correct = round(second[0]["true"], 4)  # the judge's p(same answer as the reference)
        correct = second[0]["true"] > CORRECT_THRESHOLD
    scores = {c: int(max(dists[c], key=lambda k: (dists[c][k], -int(k)))) for c in CRITERIA}
    expected = {c: round(sum(int(k) * p for k, p in dists[c].items()), 4) for c in CRITERIA}
    return {"correct": correct, "p_correct": p_correct, "scores": scores, "expected": expected,
            "total": sum(scores.values()), "reason": None, "final_answer": final_answer}


# `correct` for a record without an exact answer when the judge's p(correct) exceeds this (the whole-response
# prompt, judge_prompts.WHOLE_SYSTEM): the comparison prompt's CORRECT_THRESHOLD, fixed before measuring, since the
# 1.5B judge leans to true there too. On the 130 hand-labelled responses (tests/fixtures/judge_labels.jsonl) kappa
# is 0.38 at 0.5, 0.51 at 0.7 and at most 0.52 (at 0.75): the threshold is not what limits this judge (README).
WHOLE_THRESHOLD = CORRECT_THRESHOLD


def grade_from_whole(first: list[Any]) -> dict[str, Any]:
    """A pointwise grade from the whole-response skeleton (`correct`, then the three scores): the most likely
    value of each field and the probability-weighted means (`expected`)."""
    dists = dict(zip(CRITERIA, first[1:], strict=True))
    p_correct = round(first[0]["true"], 4)
    scores = {c: int(max(dists[c], key=lambda k: (dists[c][k], -int(k)))) for c in CRITERIA}
    expected = {c: round(sum(int(k) * p for k, p in dists[c].items()), 4) for c in CRITERIA}
    return {"correct": first[0]["true"] > WHOLE_THRESHOLD, "p_correct": p_correct, "scores": scores,
            "expected": expected, "total": sum(scores.values()), "reason": None, "final_answer": None}


def parse_verdict(text: str) -> dict[str, Any]:
    """Validate a pairwise reply; return it normalised (`total` recomputed from the criteria)."""
    data = json_object(text)
    verdict: dict[str, Any] = {}
    for side in ("response_a", "response_b"):
        block = data.get(side)
        if not isinstance(block, dict):
            raise ReplyError(f"{side} must be an object with the three scores")
        scores = {c: _score(block.get(c), f"{side}.{c}", MAX_SCORE) for c in CRITERIA}
        scores["total"] = sum(scores[c] for c in CRITERIA)
        if block.get("total") is not None:
            scores["stated_total"] = _score(block["total"], f"{side}.total", MAX_TOTAL)
        verdict[side] = scores
    winner = data.get("winner")
    label = winner.strip().lower().removeprefix("response").strip() if isinstance(winner, str) else None
    if label not in ("a", "b", "tie"):
        raise ReplyError(f"winner must be 'A', 'B' or 'Tie', got {winner!r}")
    verdict["winner"] = {"a": "A", "b": "B", "tie": "Tie"}[label]
    justification = data.get("justification", "")
    if not isinstance(justification, str):
        raise ReplyError("justification must be a string")
    verdict["justification"] = justification.strip()[:100]
    return verdict
