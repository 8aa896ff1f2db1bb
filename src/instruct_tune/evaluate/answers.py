"""Scores of the generated answers, the `evaluate` stage's: strict verification, the lenient match, repetition,
ROUGE-L against the reference, and the paired tuned - base comparisons that `metrics/evaluate.json` reports.

ROUGE-L F1 is Google's `rouge-score` (the package behind HF `evaluate` and most papers' numbers) over our own
Unicode-aware tokens (`tasks.matching.normalise_tokens`), without stemming: its default tokenizer keeps only ASCII
letters and digits, which would score "Título" as "t tulo" and any CJK answer as empty.

Reads generation rows (`data/generations/{base,tuned}.jsonl`) and nothing of the model: a change to a verification
rule, a task family or a metric reruns this stage only, never generation.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

from instruct_tune.evaluate.stats import mcnemar_exact_p, paired_difference
from instruct_tune.io import read_records
from instruct_tune.params import EvaluateParams
from instruct_tune.tasks.matching import lenient_match, normalise_tokens
from instruct_tune.tasks.verify import strict_match

HEADLINE_KEYS = ("strict_accuracy", "lenient_accuracy", "rouge_l", "repetition_rate")


class _Tokens:
    """rouge-score's tokenizer interface over `normalise_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return normalise_tokens(text)


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokens())


def rouge_l(reference: str, response: str) -> float | None:
    """ROUGE-L F1 of `response` against `reference` (longest common token subsequence); None without a reference."""
    if not reference.strip():
        return None
    return round(_rouge_scorer().score(reference, response)["rougeL"].fmeasure, 4)


def read_generation_rows(path: Path) -> list[dict[str, Any]]:
    """One model's generation rows; a missing or mistyped field or a repeated id is a UserError naming the line."""
    return read_records(path, required=("id", "instruction", "input", "response"),
                        optional=("reference", "answer", "task"), unique="id",
                        if_empty="no generations")


def is_repetitive(text: str, n: int, min_repeats: int) -> bool:
    """True when some word n-gram occurs at least `min_repeats` times: the response is caught in a loop."""
    words = normalise_tokens(text)
    if n < 1 or len(words) < n:
        return False
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(counts.values()) >= min_repeats


def has_answer(row: dict[str, Any]) -> bool:
    """The record carries an exact answer to verify against."""
    return isinstance(row.get("answer"), str) and bool(row["answer"].strip())


def is_strictly_correct(row: dict[str, Any]) -> bool:
    """Strict verification of one generation row against its `answer` (by its task family's rule)."""
    return strict_match(row.get("task"), row["answer"], row["instruction"], row.get("input") or "", row["response"])


def verification(rows: list[dict[str, Any]], params: EvaluateParams) -> list[dict[str, Any]]:
    """Per response: strict and lenient correctness (None without an answer) and whether it repeats itself.

    Written as `data/verification/<model>.jsonl`: the judge reads it to measure its agreement with verification.
    """
    out = []
    for row in rows:
        graded = has_answer(row)
        out.append({
            "id": row["id"],
            "strict": is_strictly_correct(row) if graded else None,
            "lenient": lenient_match(row["answer"], row["response"]) if graded else None,
            "rouge_l": rouge_l(row.get("reference") or "", row["response"]),
            "repetitive": is_repetitive(row["response"], params.repetition_ngram, params.repetition_min_repeats),
        })
    return out


def strict_by_id(path: Path, params: EvaluateParams) -> dict[str, bool | None]:
    """One generation file's strict verification by record id: what the judge's validity is measured against (the
    evaluate stage writes it to data/verification/; head_to_head and the judge benchmark compute it on the spot)."""
    return {c["id"]: c["strict"] for c in verification(read_generation_rows(path), params)}


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def answer_metrics(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's scores: empty and repetition rates over all rows; strict and lenient accuracy over the rows
    whose `answer` is a non-empty string, overall and by `task`; mean ROUGE-L over the rows with a reference."""
    n = len(rows)
    overlap = [c["rouge_l"] for c in checks if c["rouge_l"] is not None]
    graded = [(row, check) for row, check in zip(rows, checks) if check["strict"] is not None]
    by_task: dict[str, list[tuple[bool, bool]]] = {}
    for row, check in graded:
        by_task.setdefault(row.get("task") or "none", []).append((check["strict"], check["lenient"]))
    return {
        "n": n,
        "empty_rate": _rate(sum(not r["response"].strip() for r in rows), n),
        "repetition_rate": _rate(sum(c["repetitive"] for c in checks), n),
        "n_with_answer": len(graded),
        "strict_accuracy": _rate(sum(c["strict"] for _, c in graded), len(graded)),
        "lenient_accuracy": _rate(sum(c["lenient"] for _, c in graded), len(graded)),
        "n_with_reference": len(overlap),
        "rouge_l": _mean(overlap),
        "by_task": {
            task: {"n": len(h), "strict_accuracy": _rate(sum(s for s, _ in h), len(h)),
                   "lenient_accuracy": _rate(sum(le for _, le in h), len(h))}
            for task, h in sorted(by_task.items())
        },
    }


def compare_models(rows_by_model: dict[str, list[dict[str, Any]]], checks_by_model: dict[str, list[dict[str, Any]]],
                   params: EvaluateParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics/evaluate.json (headline numbers) and its breakdown, for the base and the tuned model.

    The headline difference is paired: tuned - base strict accuracy over the same records, with a seeded
    paired-bootstrap 95% interval and an exact McNemar p-value on the records only one model got right.
    """
    details = {name: answer_metrics(rows, checks_by_model[name]) for name, rows in rows_by_model.items()}
    headline: dict[str, Any] = {name: {k: d[k] for k in HEADLINE_KEYS} for name, d in details.items()}
    base = {c["id"]: c for c in checks_by_model["base"]}
    both = [(t, base[t["id"]]) for t in checks_by_model["tuned"] if t["id"] in base and t["strict"] is not None]
    tuned_ok = [t["strict"] for t, _ in both]
    base_ok = [b["strict"] for _, b in both]
    diff = paired_difference([float(x) for x in tuned_ok], [float(x) for x in base_ok],
                             params.bootstrap_samples, params.seed)
    only_tuned = sum(t and not b for t, b in zip(tuned_ok, base_ok))
    only_base = sum(b and not t for t, b in zip(tuned_ok, base_ok))
    # ROUGE-L is paired over every record with a reference, answer or not: the measure for open-ended data.
    overlap = [(t["rouge_l"], base[t["id"]]["rouge_l"]) for t in checks_by_model["tuned"]
               if t["id"] in base and t["rouge_l"] is not None]
    rouge = paired_difference([t for t, _ in overlap], [b for _, b in overlap], params.bootstrap_samples, params.seed)
    headline.update({
        "n": len(both),
        "strict_accuracy_diff": diff["diff"], "diff_ci_low": diff["ci_low"], "diff_ci_high": diff["ci_high"],
        # no record with an exact answer: no test to report (McNemar on zero pairs would say p = 1)
        "mcnemar_p": mcnemar_exact_p(only_tuned, only_base) if both else None,
        "only_tuned": only_tuned, "only_base": only_base,
        "n_rouge": len(overlap), "rouge_l_diff": rouge["diff"], "rouge_l_diff_ci_low": rouge["ci_low"],
        "rouge_l_diff_ci_high": rouge["ci_high"],
    })
    return headline, details
