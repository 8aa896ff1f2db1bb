"""Judge controls (evaluate/judge_controls.py): which controls are picked, and the figures computed from their grades."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from instruct_tune.evaluate import judge_controls as C
from instruct_tune.evaluate.judge import Pair


def pair(i: int, reference: str, answer: str | None = None) -> Pair:
    return Pair(f"r{i}", f"instruction {i}", "", reference, ("x", "y"), answer)


PAIRS = [pair(0, "The capital of France is Paris."), pair(1, "A dog is a mammal."),
         pair(2, "Water boils at 100 degrees Celsius."), pair(3, "Paris is in France.", answer="Paris"),
         pair(4, "The sum is 12.", answer="12")]


def grade(correct: bool | None, total: int, factual: int = 3) -> dict[str, Any]:
    return {"correct": correct, "p_correct": None, "total": total, "expected": None,
            "scores": {"factual_correctness": factual, "instruction_adherence": 3, "clarity_usefulness": 3}}


def test_controls_are_own_and_a_neighbours_reference_that_does_not_hold_the_answer() -> None:
    controls = C.pick_controls(PAIRS, 5, seed=0)
    assert [c.kind for c in controls] == ["own", "neighbour"] * 5
    for own, other in zip(controls[::2], controls[1::2], strict=True):
        assert own.pair is other.pair and own.response == own.pair.reference and own.neighbour_id is None
        assert other.neighbour_id != own.pair.id and other.response != own.pair.reference
        # "Paris" (r3's answer) is in r0's reference: r0's reference could be right for r3, so it is never r3's
        if own.pair.id == "r3":
            assert other.neighbour_id != "r0"
    assert C.pick_controls(PAIRS, 5, seed=0) == controls  # seeded
    assert len(C.pick_controls(PAIRS, 2, seed=0)) == 4 and C.pick_controls(PAIRS, 0, seed=0) == []
    assert C.pick_controls(PAIRS[:1], 5, seed=0) == []  # no other record to borrow a reference from
    no_reference = [Pair("n1", "i", "", None, ("x", "y")), Pair("n2", "j", "", None, ("x", "y"))]
    assert C.pick_controls(no_reference, 5, seed=0) == []


def test_figures_from_a_good_and_a_bad_judge() -> None:
    controls = C.pick_controls(PAIRS, 5, seed=0)
    good = [grade(c.kind == "own", 14 if c.kind == "own" else 3) for c in controls]
    headline, details = C.summarise(controls, good, 500, 0)
    assert set(headline) == set(C.HEADLINE)
    assert (headline["n_controls"], headline["control_right"], headline["control_auc"]) == (5, 1.0, 1.0)
    assert headline["control_right_ci_low"] == headline["control_right_ci_high"] == 1.0
    assert details["own_judged_right"] == details["neighbour_judged_right"] == 1.0 and C.trusted(headline)
    # a judge that calls everything correct and scores by length: half right, AUC at chance
    yes = [grade(True, 10) for _ in controls]
    headline, details = C.summarise(controls, yes, 500, 0)
    assert headline["control_right"] == 0.5 and headline["control_auc"] == 0.5 and C.trusted(headline) is False
    assert details["own_judged_right"] == 1.0 and details["neighbour_judged_right"] == 0.0
    assert headline["control_right_ci_low"] <= 0.5 <= headline["control_right_ci_high"]


def test_one_misgraded_control_and_an_error() -> None:
    controls = C.pick_controls(PAIRS, 4, seed=1)
    grades: list[dict[str, Any] | None] = [grade(c.kind == "own", 12 if c.kind == "own" else 2) for c in controls]
    grades[1] = grade(True, 13)  # the first neighbour judged correct, and scored above every own reference
    grades[2] = None  # the second record's own reference: no grade
    headline, details = C.summarise(controls, grades, 500, 0)
    assert details["errors"] == 1 and headline["n_controls"] == 4
    assert headline["control_right"] == pytest.approx(6 / 7, abs=1e-4)
    # AUC over the 3 records with both grades: own 12,12 vs neighbours 13,2,2 -> (0+1+1)*2/6... exactly:
    own, other = [12, 12], [13, 2, 2]
    expected = sum((o > n) + 0.5 * (o == n) for o in own for n in other) / 6
    assert headline["control_auc"] == pytest.approx(expected, abs=1e-4)
    assert headline["control_auc_ci_low"] <= headline["control_auc"] <= headline["control_auc_ci_high"]
    assert C.trusted(headline) is False  # 0.857 < 0.9


def test_without_a_reference_shown_the_factual_score_decides() -> None:
    controls = C.pick_controls(PAIRS, 2, seed=0)
    grades = [grade(None, 12, factual=5) if c.kind == "own" else grade(None, 4, factual=0) for c in controls]
    headline, _ = C.summarise(controls, grades, 200, 0)
    assert headline["control_right"] == 1.0
    assert C.summarise([], [], 200, 0)[0] == {**dict.fromkeys(C.HEADLINE), "n_controls": 0}
    assert C.trusted(C.summarise([], [], 200, 0)[0]) is None


def test_failed_control_grades_count_as_failed_judge_requests(tmp_path: Path) -> None:
    """A judge that fails its controls fails the stage like one that fails the models' grades (more than 10%)."""
    from instruct_tune.errors import UserError
    from instruct_tune.evaluate.judge import check_failures

    controls = C.pick_controls(PAIRS, 5, seed=0)
    grades: list[dict[str, Any] | None] = [grade(c.kind == "own", 10) for c in controls]
    _, details = C.summarise(controls, grades, 100, 0)
    check_failures([], tmp_path, {"controls": details})  # none failed
    grades[0] = grades[3] = None  # 2 of 10
    _, details = C.summarise(controls, grades, 100, 0)
    with pytest.raises(UserError, match=r"2 of 10 judge requests failed \(20%.*control: no grade"):
        check_failures([], tmp_path, {"controls": details})
