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


def roc_auc(scores: Sequence[float], truth: Sequence[bool]) -> float | None:
    """ROC AUC of a score for a true/false truth (None when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    if len(set(truth)) < 2:
        return None
    return _r(roc_auc_score([bool(t) for t in truth], list(scores)))
