"""Controls whose right grade is known, graded by the same judge as the models' responses: the judge's validity on
data without exact answers.

Agreement with strict verification (kappa) needs records with an exact answer; on Alpaca, on a general-knowledge set
or on anyone's own data there is none. Two controls per record of a seeded subset of the judged test records work on
any data with a reference:
- `own`: the record's own reference answer, offered as the response. Right: judged correct (and a high total).
- `neighbour`: the reference answer of another judged record (fluent and on-format, but an answer to another
  instruction), whose text does not contain this record's answer. Right: judged wrong (and a low total).
From them: the share of controls judged right and the ROC AUC of the total between own and neighbour references,
each with a seeded bootstrap interval over records. A judge that cannot tell a record's own reference from another
record's is not reading the answers, whatever its verdict says. (An echo of the instruction and a truncated
reference were considered: the neighbour already tests "fluent but wrong", and each more control costs a grade per
record.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruct_tune.evaluate.rubric import CRITERIA, MAX_SCORE
from instruct_tune.tasks.matching import lenient_match

KINDS = ("own", "neighbour")
# Below either figure REPORT.md warns that the judge's verdict is not to be quoted. Controls are the easiest grades
# there are (the reference itself, and an answer to another question), so a judge that misgrades one in ten of them
# is not reading the answers. Passing is necessary, not sufficient: on the 130 hand-labelled responses the 1.5B
# default judge got 19 of 20 own and 19 of 20 neighbour controls right (AUC 0.955) with a kappa of only 0.51 against
# the labels (judge.free_text: whole; README, "Is the judge fit for this data?").
CONTROL_TRUSTED = 0.9
HEADLINE = ("n_controls", "control_right", "control_right_ci_low", "control_right_ci_high", "control_auc",
            "control_auc_ci_low", "control_auc_ci_high")  # the keys in metrics/judge.json


@dataclass(frozen=True)
class Control:
    """One control response: the record it answers (`pair`: id, instruction, input, reference), which kind it is,
    and its text (the record's own reference, or the neighbour's)."""

    pair: Any  # judge.Pair (not imported: judge imports this module)
    kind: str  # "own" | "neighbour"
    response: str
    neighbour_id: str | None = None


def _answer_of(pair: Any) -> str:
    return pair.answer or pair.reference


def pick_controls(pairs: Sequence[Any], n_records: int, seed: int) -> list[Control]:
    """Two controls for each of a seeded sample of `n_records` records with a reference: its own reference, and the
    reference of another record whose text does not hold this record's answer (else it could be right)."""
    with_reference = [p for p in pairs if p.reference]
    if n_records <= 0 or len(with_reference) < 2:
        return []
    rng = random.Random(seed)
    chosen = rng.sample(with_reference, min(n_records, len(with_reference)))
    controls: list[Control] = []
    for pair in chosen:
        others = [q for q in with_reference if q.id != pair.id and q.reference.strip() != pair.reference.strip()
                  and not lenient_match(_answer_of(pair), q.reference)]
        if not others:
            continue
        neighbour = others[rng.randrange(len(others))]
        controls.append(Control(pair, "own", pair.reference))
        controls.append(Control(pair, "neighbour", neighbour.reference, neighbour.id))
    return controls


def judged_right(control: Control, grade: dict[str, Any]) -> bool:
    """Own reference judged correct, neighbour's judged wrong; without a `correct` (no reference shown), the
    factual score's upper or lower half decides."""
    correct = grade.get("correct")
    if correct is None:
        correct = grade["scores"]["factual_correctness"] > MAX_SCORE / 2
    return bool(correct) == (control.kind == "own")


def _total(grade: dict[str, Any]) -> float:
    """The probability-weighted total where the judge gave probabilities (it ranks more finely), else the total."""
    expected = grade.get("expected")
    return float(sum(expected[c] for c in CRITERIA)) if expected else float(grade["total"])


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _auc(own: np.ndarray, other: np.ndarray) -> float:
    return float(((own[:, None] > other[None, :]) + 0.5 * (own[:, None] == other[None, :])).mean())


def summarise(controls: Sequence[Control], grades: Sequence[dict[str, Any] | None], samples: int,
              seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The headline control figures (share judged right, AUC own vs neighbour, each with a seeded bootstrap interval
    over records, and how many records) and their breakdown (per kind, and every control)."""
    rows = []
    for control, grade in zip(controls, grades, strict=True):
        row = {"id": control.pair.id, "kind": control.kind, "neighbour_id": control.neighbour_id,
               "response": control.response, "error": grade is None}
        if grade is not None:
            row.update(correct=grade.get("correct"), p_correct=grade.get("p_correct"), total=_r(_total(grade)),
                       right=judged_right(control, grade))
        rows.append(row)
    graded = [r for r in rows if not r["error"]]
    records = sorted({r["id"] for r in graded})
    by_kind = {k: [r for r in graded if r["kind"] == k] for k in KINDS}
    headline: dict[str, Any] = {**dict.fromkeys(HEADLINE), "n_controls": len(records)}
    details: dict[str, Any] = {
        "n_records": len(records), "errors": len(rows) - len(graded), "trusted_at": CONTROL_TRUSTED,
        **{f"{k}_judged_right": _r(sum(r["right"] for r in by_kind[k]) / len(by_kind[k])) if by_kind[k] else None
           for k in KINDS},
        "rows": rows,
    }
    if not graded:
        return headline, details
    index = {rid: i for i, rid in enumerate(records)}
    right = np.zeros(len(records))
    count = np.zeros(len(records))
    for r in graded:
        right[index[r["id"]]] += r["right"]
        count[index[r["id"]]] += 1
    draws = np.random.default_rng(seed).integers(0, len(records), size=(samples, len(records)))
    shares = right[draws].sum(axis=1) / count[draws].sum(axis=1)
    headline.update(control_right=_r(right.sum() / count.sum()),
                    control_right_ci_low=_r(np.percentile(shares, 2.5)),
                    control_right_ci_high=_r(np.percentile(shares, 97.5)))
    own = {r["id"]: r["total"] for r in by_kind["own"]}
    other = {r["id"]: r["total"] for r in by_kind["neighbour"]}
    both = [rid for rid in records if rid in own and rid in other]
    if both:
        o, n = np.array([own[rid] for rid in both]), np.array([other[rid] for rid in both])
        aucs = [_auc(o[d], n[d]) for d in np.random.default_rng(seed).integers(0, len(both), (samples, len(both)))]
        headline.update(control_auc=_r(_auc(o, n)), control_auc_ci_low=_r(np.percentile(aucs, 2.5)),
                        control_auc_ci_high=_r(np.percentile(aucs, 97.5)))
    return headline, details


def trusted(headline: dict[str, Any]) -> bool | None:
    """Whether the controls clear CONTROL_TRUSTED (both figures); None when there are none."""
    values = [headline.get("control_right"), headline.get("control_auc")]
    if any(v is None for v in values):
        return None
    return min(values) >= CONTROL_TRUSTED
