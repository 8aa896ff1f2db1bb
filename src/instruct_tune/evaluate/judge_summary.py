"""The judge's judgments summed up: the headline metrics (means, win rate with its interval, position
consistency), the judge's validity against strict verification, best and worst per model, per-task cells, and the
charts of plots/judge/ (CSV for `dvc plots`, PNG for people)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instruct_tune.evaluate.rubric import CRITERIA, MAX_SCORE, MAX_TOTAL
from instruct_tune.evaluate.stats import agreement, bootstrap_ci, kappa_ci, paired_difference, roc_auc
from instruct_tune.io import atomic_write_text
from instruct_tune.params import JudgeParams
from instruct_tune.report.charts import bar_png

OUTCOMES = ("win", "loss", "tie", "error")


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def model_summary(judged: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Mean of each criterion and of the total over the judged pairs."""
    if not judged:
        return {k: None for k in (*CRITERIA, "total")}
    return {k: _r(sum(j["scores"][name][k] for j in judged) / len(judged)) for k in (*CRITERIA, "total")}


def graded_responses(judgments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pointwise grade with its verified correctness (one per model and pair, errors left out)."""
    rows = []
    for j in judgments:
        for name, g in j.get("grades", {}).items():
            if g["grade"] is not None:
                rows.append({"id": j["id"], "model": name, "task": j.get("task"), **g})
    return rows


def validity(judgments: list[dict[str, Any]], mode: str, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How far the judge can be trusted: its `correct` against strict verification (pointwise; kappa with a
    seeded bootstrap interval over records), the ROC AUC of its factual score for verified correctness,
    and (pairwise) how often it picks the verified answer."""
    if mode == "pointwise":
        rows = [r for r in graded_responses(judgments)
                if r["verified"] is not None and r["grade"]["correct"] is not None]
        judged, truth = [r["grade"]["correct"] for r in rows], [r["verified"] for r in rows]
        low, high = kappa_ci(judged, truth, [r["id"] for r in rows], samples, seed)
        factual = [(r["grade"]["expected"] or r["grade"]["scores"])["factual_correctness"] for r in rows]
        return {**agreement(judged, truth), "kappa_ci_low": low, "kappa_ci_high": high,
                "auc_factual": roc_auc(factual, truth), "picked_verified": None, "n_one_verified": None}
    one = [j for j in judgments if j["outcome"] != "error" and j.get("verified")
           and None not in j["verified"].values() and sum(j["verified"].values()) == 1]
    names = list(judgments[0]["verified"]) if judgments else []
    picked = [j["winner"] == next(n for n in names if j["verified"][n]) for j in one]
    own = [(j["scores"][n]["factual_correctness"], j["verified"][n]) for j in judgments
           if j["outcome"] != "error" and j.get("verified") for n in names if j["verified"][n] is not None]
    return {"n": len(own), "agreement": None, "kappa": None, "kappa_ci_low": None, "kappa_ci_high": None,
            "auc_factual": roc_auc([s for s, _ in own], [t for _, t in own]),
            "picked_verified": _r(sum(picked) / len(picked)) if picked else None, "n_one_verified": len(one)}


def _response(judgment: dict[str, Any], name: str) -> str:
    if "grades" in judgment:
        return judgment["grades"][name]["response"]
    return judgment["responses"][name]


LENGTH_CLOSE = 0.2  # pairs whose lengths differ by less than 20% of the longer one: a rough length-controlled view


def length_preference(judgments: list[dict[str, Any]], names: tuple[str, str], samples: int,
                      seed: int) -> dict[str, Any]:
    """The judge's preference for longer answers, LLM judges' best-known bias (alpaca_eval reports it for every
    evaluator): among decided pairs whose responses differ in length (characters), the share won by the longer one,
    with a seeded bootstrap interval; and the same among pairs whose lengths differ by less than 20%."""
    def share(rows: list[bool]) -> dict[str, Any]:
        if not rows:
            return {"n": 0, "longer_won": None, "ci_low": None, "ci_high": None}
        low, high = bootstrap_ci([float(x) for x in rows], samples, seed)
        return {"n": len(rows), "longer_won": _r(sum(rows) / len(rows)), "ci_low": _r(low), "ci_high": _r(high)}

    every, close = [], []
    for j in judgments:
        if j["outcome"] not in ("win", "loss"):
            continue
        lengths = [len(_response(j, n)) for n in names]
        if lengths[0] == lengths[1]:
            continue
        winner = 0 if j["outcome"] == "win" else 1
        longer_won = lengths[winner] > lengths[1 - winner]
        every.append(longer_won)
        if abs(lengths[0] - lengths[1]) < LENGTH_CLOSE * max(lengths):
            close.append(longer_won)
    return {"all": share(every), "close_lengths": share(close)}


def aggregate(judgments: list[dict[str, Any]], names: tuple[str, str], params: JudgeParams, judge_model: str,
              scoring: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics/judge.json (headline numbers only) and the breakdown written beside it."""
    judged = [j for j in judgments if j["outcome"] != "error"]
    counts = {o: sum(1 for j in judgments if j["outcome"] == o) for o in OUTCOMES}
    n = len(judged)
    values = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[j["outcome"]] for j in judged]
    low, high = bootstrap_ci(values, params.bootstrap_samples, params.seed) if n else (None, None)
    both = [j for j in judged if j.get("consistent") is not None]
    totals = paired_difference([j["scores"][names[0]]["total"] for j in judged],
                               [j["scores"][names[1]]["total"] for j in judged], params.bootstrap_samples, params.seed)
    valid = validity(judgments, params.mode, params.bootstrap_samples, params.seed)
    headline = {
        names[0]: model_summary(judged, names[0]),
        names[1]: model_summary(judged, names[1]),
        "win": counts["win"], "loss": counts["loss"], "tie": counts["tie"], "errors": counts["error"],
        "n_pairs": len(judgments),
        "win_rate": _r(sum(values) / n) if n else None,
        "win_rate_ci_low": _r(low), "win_rate_ci_high": _r(high),
        "total_diff": totals["diff"], "total_diff_ci_low": totals["ci_low"], "total_diff_ci_high": totals["ci_high"],
        "position_consistency": _r(sum(j["consistent"] for j in both) / len(both)) if both else None,
        "kappa": valid["kappa"], "kappa_ci_low": valid["kappa_ci_low"], "kappa_ci_high": valid["kappa_ci_high"],
        "agreement": valid["agreement"], "auc_factual": valid["auc_factual"],
        "mode": params.mode,
    }
    if params.mode == "pairwise":
        headline["picked_verified"] = valid["picked_verified"]
    lengths = length_preference(judgments, names, params.bootstrap_samples, params.seed)
    headline["longer_won"] = lengths["all"]["longer_won"]
    details = {
        "judge_model": judge_model, "judge_backend": params.backend, "mode": params.mode, "scoring": scoring,
        "pov": names[0], "n_judged": n, "validity": valid,
        "score_pct": {m: _r(100 * headline[m]["total"] / MAX_TOTAL) if headline[m]["total"] is not None else None
                      for m in names},
        "best_worst": {m: _best_worst(judged, m) for m in names},
        "by_task": _by_task(judgments, names),
        "length_preference": lengths,
    }
    return headline, details


def _best_worst(judged: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    if not judged:
        return None
    totals = [(j["scores"][name]["total"], j["id"]) for j in judged]
    best = min(totals, key=lambda t: (-t[0], t[1]))  # ties broken by id: deterministic
    worst = min(totals, key=lambda t: (t[0], t[1]))
    return {"best": {"id": best[1], "total": _r(best[0])}, "worst": {"id": worst[1], "total": _r(worst[0])}}


def _by_task(judgments: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j in judgments:
        if j["outcome"] == "error":
            continue
        cell = out.setdefault(j.get("task") or "(none)", {"n": 0, **{f"{m}_total": 0.0 for m in names}, "win": 0,
                                                          "loss": 0, "tie": 0})
        cell["n"] += 1
        cell[j["outcome"]] += 1
        for m in names:
            cell[f"{m}_total"] += j["scores"][m]["total"]
    for cell in out.values():
        for m in names:
            cell[f"{m}_total"] = _r(cell[f"{m}_total"] / cell["n"])
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- plots


def _csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def score_counts(judgments: list[dict[str, Any]], names: tuple[str, str], key: str, top: int) -> dict[str, list[int]]:
    """Per model, how many judged pairs gave each score 0..top for `key` (means of two orders are rounded)."""
    counts = {n: [0] * (top + 1) for n in names}
    for j in judgments:
        if j["outcome"] == "error":
            continue
        for n in names:
            counts[n][int(round(j["scores"][n][key]))] += 1
    return counts


def write_plots(judgments: list[dict[str, Any]], metrics: dict[str, Any], names: tuple[str, str],
                out_dir: Path) -> None:
    """plots/judge/: score distributions and outcomes as CSV (for `dvc plots`) and PNG (for people)."""
    out_dir = Path(out_dir)
    a, b = names
    totals = score_counts(judgments, names, "total", MAX_TOTAL)
    _csv(out_dir / "totals.csv", ["total", a, b], [[s, totals[a][s], totals[b][s]] for s in range(MAX_TOTAL + 1)])
    rows = []
    for crit in CRITERIA:
        counts = score_counts(judgments, names, crit, MAX_SCORE)
        rows += [[crit, s, counts[a][s], counts[b][s]] for s in range(MAX_SCORE + 1)]
    _csv(out_dir / "criteria.csv", ["criterion", "score", a, b], rows)
    n = metrics["n_pairs"] or 1
    counts = [metrics["win"], metrics["loss"], metrics["tie"], metrics["errors"]]
    _csv(out_dir / "outcomes.csv", ["outcome", "count", "share"],
         [[o, c, round(c / n, 4)] for o, c in zip(OUTCOMES, counts, strict=True)])

    bar_png(out_dir / "totals.png", [str(s) for s in range(MAX_TOTAL + 1)], {a: totals[a], b: totals[b]},
            title=f"Judge ({metrics['mode']}): distribution of total scores (0-{MAX_TOTAL})",
            xlabel="total score", ylabel="responses", annotate=False)
    means = {m: [metrics[m][c] or 0.0 for c in CRITERIA] for m in names}
    bar_png(out_dir / "criteria.png", [c.replace("_", " ") for c in CRITERIA], means,
            title=f"Judge: mean score per criterion (0-{MAX_SCORE})", ylabel="mean score")
    bar_png(out_dir / "outcomes.png", [f"{a} wins", f"{b} wins", "tie", "error"], counts,
            title=f"Judge: {a} vs {b} over {metrics['n_pairs']} pairs, win rate {metrics['win_rate']} "
                  f"(95% CI {metrics['win_rate_ci_low']}-{metrics['win_rate_ci_high']})", ylabel="pairs")
