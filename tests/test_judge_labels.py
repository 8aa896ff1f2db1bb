"""The hand-labelled judge fixture (tests/fixtures/judge_labels.jsonl): what it holds, and how the judge asks for it.

The labels measure the judge on data without exact answers (bench/judge_labels.py runs the real judge on them; README,
"Is the judge fit for this data?"). These tests keep the fixture what the README says it is, and keep the judge from
being tuned on it by example.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from instruct_tune.evaluate import judge as J
from instruct_tune.evaluate import judge_prompts as JP
from instruct_tune.io import read_jsonl
from instruct_tune.params import JudgeParams

LABELS = Path(__file__).parent / "fixtures" / "judge_labels.jsonl"
FIELDS = {"id", "record_id", "source", "model", "instruction", "input", "reference", "response", "label", "open_ended",
          "note"}
ROWS = read_jsonl(LABELS)


def test_the_fixture_is_at_least_100_responses_half_open_ended_from_both_models_and_sets() -> None:
    assert len(ROWS) >= 100 and all(set(r) == FIELDS for r in ROWS) and len({r["id"] for r in ROWS}) == len(ROWS)
    assert sum(r["open_ended"] for r in ROWS) * 2 >= len(ROWS)
    assert {r["model"] for r in ROWS} == {"base", "full"} and {r["source"] for r in ROWS} == {"general", "raschka"}
    assert all(isinstance(r["label"], bool) and isinstance(r["open_ended"], bool) and r["note"] for r in ROWS)
    labels = Counter(r["label"] for r in ROWS)
    assert labels[True] >= 20 and labels[False] >= 20  # both classes, or kappa means little
    by_record: dict[str, list[dict]] = {}
    for r in ROWS:
        by_record.setdefault(r["record_id"], []).append(r)
    for rows in by_record.values():  # one record: one instruction, reference and kind; its two models' responses
        assert len({(r["instruction"], r["input"], r["reference"], r["open_ended"]) for r in rows}) == 1
        assert sorted(r["model"] for r in rows) == ["base", "full"]


def test_labelled_responses_are_graded_by_the_chosen_design() -> None:
    """No record of the fixture has an exact answer. judge.free_text: copy (the default) copies the final answer
    from the response alone, then compares it with the reference; whole shows instruction, input, reference and
    response in one prompt and asks `correct` first."""
    for r in ROWS:
        pair = J.Pair(r["record_id"], r["instruction"], r["input"], r["reference"], (r["response"], r["response"]))
        copy = J.pointwise_request(pair, r["response"], JudgeParams(), "choices")
        assert copy.kind == "choices" and "Reference answer" not in copy.messages[-1]["content"]
        assert copy.compare is not None and r["reference"] in copy.compare[-1]["content"]
        whole = J.pointwise_request(pair, r["response"], JudgeParams(free_text="whole"), "choices")
        assert whole.kind == "whole" and whole.steps == JP.WHOLE_STEPS and whole.compare is None
        user = whole.messages[-1]["content"]
        assert r["reference"] in user and f"<<<RESPONSE>>>\n{r['response']}\n<<<END RESPONSE>>>" in user


def test_the_prompts_worked_examples_are_not_labelled_records() -> None:
    """The whole-response prompt's examples were written for it: none is a labelled (or test) record, so the labels
    measure the judge, not its memory of them."""
    labelled = {r["instruction"].casefold() for r in ROWS} | {r["response"].casefold() for r in ROWS}
    for example in JP.PROMPTS["whole_examples"]:
        assert example["instruction"].casefold() not in labelled
        assert example["response"].casefold() not in labelled
