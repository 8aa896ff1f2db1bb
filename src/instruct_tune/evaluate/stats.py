"""The statistics behind every headline number: seeded bootstrap intervals, McNemar, agreement.

Every comparison of the base and the tuned model is paired (the same test records), so intervals on a
difference resample records, keeping each record's two outcomes together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def bootstrap_ci(values: Sequence[float], samples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean; seeded, so the same data gives the same interval."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_difference(first: Sequence[float], second: Sequence[float], samples: int,
                      seed: int) -> dict[str, float | None]:
    """mean(first - second) over paired records, with a seeded paired-bootstrap 95% interval."""
    if len(first) != len(second):
        raise ValueError(f"paired samples differ in length: {len(first)} and {len(second)}")
    if not first:
        return {"diff": None, "ci_low": None, "ci_high": None}
    diffs = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    low, high = bootstrap_ci(diffs, samples, seed)
    return {"diff": _r(diffs.mean()), "ci_low": _r(low), "ci_high": _r(high)}


def mcnemar_exact_p(only_first: int, only_second: int) -> float | None:
    """Exact two-sided McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    from scipy.stats import binomtest

    n = only_first + only_second
    if n == 0:
        return 1.0
    p = binomtest(only_first, n, 0.5, alternative="two-sided").pvalue
    return float(f"{p:.3g}")  # significant digits: a small p must not round to 0


def agreement(judged: Sequence[bool], truth: Sequence[bool]) -> dict[str, float | int | None]:
    """How a judge's true/false agrees with verified truth: share, Cohen's kappa, n and the confusion counts."""
    from sklearn.metrics import cohen_kappa_score

    pairs = list(zip(judged, truth, strict=True))
    n = len(pairs)
    counts = {
        "judge_true_verified_true": sum(j and t for j, t in pairs),
        "judge_true_verified_false": sum(j and not t for j, t in pairs),
        "judge_false_verified_true": sum(t and not j for j, t in pairs),
        "judge_false_verified_false": sum(not j and not t for j, t in pairs),
    }
    if n == 0:
        return {"n": 0, "agreement": None, "kappa": None, **counts}
    agree = sum(j == t for j, t in pairs) / n
    if len({bool(x) for pair in pairs for x in pair}) < 2:
        return {"n": n, "agreement": _r(agree), "kappa": None, **counts}  # one label only: kappa is undefined
    kappa = cohen_kappa_score([bool(j) for j, _ in pairs], [bool(t) for _, t in pairs], labels=[False, True])
    return {"n": n, "agreement": _r(agree), "kappa": None if np.isnan(kappa) else _r(kappa), **counts}


def kappa_ci(judged: Sequence[bool], truth: Sequence[bool], groups: Sequence[str], samples: int, seed: int
             ) -> tuple[float | None, float | None]:
    """Seeded 95% bootstrap interval of Cohen's kappa, resampling whole groups (records): the two responses
    to one record are graded on the same question, so they are not independent draws. Resamples in which
    kappa is undefined (one label only) are left out; None when every resample is."""
    if len(judged) != len(truth) or len(judged) != len(groups):
        raise ValueError(f"kappa_ci: {len(judged)} judged, {len(truth)} truths and {len(groups)} groups")
    ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    if not ids:
        return None, None
    index = np.array([ids[g] for g in groups])
    j, t = np.asarray(judged, dtype=float), np.asarray(truth, dtype=float)
    per_group = np.stack([np.bincount(index, weights=w, minlength=len(ids))
                          for w in (np.ones_like(j), j * t + (1 - j) * (1 - t), j, t)])  # n, agree, judged, truth
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(samples, len(ids)))
    n, agree, pj, pt = per_group[:, draws].sum(axis=2)
    pj, pt = pj / n, pt / n
    p_e = pj * pt + (1 - pj) * (1 - pt)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappas = (agree / n - p_e) / (1 - p_e)
    kappas = kappas[np.isfinite(kappas)]
    if not len(kappas):
        return None, None
    low, high = np.percentile(kappas, [2.5, 97.5])
    return _r(low), _r(high)


def roc_auc(scores: Sequence[float], truth: Sequence[bool]) -> float | None:
    """ROC AUC of a score for a true/false truth (None when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    if len(set(truth)) < 2:
        return None
    return _r(roc_auc_score([bool(t) for t in truth], list(scores)))
