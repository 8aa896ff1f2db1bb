"""The statistics behind the headline numbers, against values worked out by hand."""

from __future__ import annotations

import pytest

from instruct_tune.evaluate.stats import agreement, bootstrap_ci, kappa_ci, mcnemar_exact_p, paired_difference, roc_auc


def test_mcnemar_exact_p_matches_the_binomial_test() -> None:
    # 2 * P(X <= 1 | n = 10, p = 1/2) = 2 * 11 / 1024
    assert mcnemar_exact_p(9, 1) == float(f"{22 / 1024:.3g}")
    assert 0 < mcnemar_exact_p(40, 0) < 1e-11  # never rounded to 0
    assert mcnemar_exact_p(1, 9) == mcnemar_exact_p(9, 1)  # two-sided
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(0, 0) == 1.0


def test_paired_difference_resamples_records_not_models() -> None:
    first = [1.0, 1.0, 1.0, 0.0] * 10
    second = [1.0, 0.0, 0.0, 0.0] * 10
    d = paired_difference(first, second, 2000, 0)
    assert d["diff"] == 0.5 and d["ci_low"] < 0.5 < d["ci_high"]
    assert d == paired_difference(first, second, 2000, 0)
    # identical outcomes: the paired difference is exactly 0 in every resample (an unpaired one would not be)
    assert paired_difference(first, first, 500, 1) == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert paired_difference([], [], 10, 0) == {"diff": None, "ci_low": None, "ci_high": None}
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0], [1.0, 0.0], 10, 0)


def test_bootstrap_interval_is_seeded_and_contains_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 10 + [0.5] * 10
    assert bootstrap_ci(values, 1000, 0) == bootstrap_ci(values, 1000, 0)
    low, high = bootstrap_ci(values, 1000, 0)
    assert low < 0.7 < high and high - low < 0.3
    assert bootstrap_ci([1.0] * 5, 100, 0) == (1.0, 1.0)


def test_agreement_and_kappa_by_hand() -> None:
    # judge vs truth on 10: 4 true/true, 1 true/false, 1 false/true, 4 false/false
    judged = [True] * 4 + [True] + [False] + [False] * 4
    truth = [True] * 4 + [False] + [True] + [False] * 4
    a = agreement(judged, truth)
    # p_o = 0.8, p_e = 0.5 * 0.5 + 0.5 * 0.5 = 0.5, kappa = (0.8 - 0.5) / 0.5 = 0.6
    assert a == {"n": 10, "agreement": 0.8, "kappa": 0.6, "judge_true_verified_true": 4,
                 "judge_true_verified_false": 1, "judge_false_verified_true": 1, "judge_false_verified_false": 4}
    # a judge that always says true: agreement is the base rate, kappa 0
    assert agreement([True] * 10, truth)["kappa"] == 0.0
    assert agreement([], [])["kappa"] is None


def test_roc_auc_by_hand() -> None:
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert roc_auc([0.9, 0.2, 0.3, 0.1], [True, True, False, False]) == 0.75
    assert roc_auc([1.0, 2.0], [True, True]) is None


def test_kappa_interval_resamples_records_and_brackets_the_kappa() -> None:
    # 20 records, two responses each: 16 agreeing true/true or false/false, 4 records with one disagreement
    judged, truth, groups = [], [], []
    for r in range(20):
        pattern = [(True, True), (False, False)] if r < 16 else [(True, False), (False, False)]
        if r % 2:
            pattern = [(False, False), (True, True)] if r < 16 else [(False, True), (False, False)]
        for jv, tv in pattern:
            judged.append(jv), truth.append(tv), groups.append(f"r{r}")
    kappa = agreement(judged, truth)["kappa"]
    low, high = kappa_ci(judged, truth, groups, 2000, 0)
    assert low < kappa < high and high <= 1.0 and low > -1.0
    assert (low, high) == kappa_ci(judged, truth, groups, 2000, 0)  # seeded
    # the interval of a perfect judge is a point at 1
    assert kappa_ci(truth, truth, groups, 500, 0) == (1.0, 1.0)
    # resampling records, not responses: a copy of every response inside its own record changes no record's
    # shares, so the interval is exactly the same (a per-response bootstrap would narrow it)
    assert kappa_ci(judged * 2, truth * 2, groups * 2, 2000, 0) == (low, high)
    # ...while the same responses as independent records give a narrower one
    independent = kappa_ci(judged * 2, truth * 2, [f"{g}-{i}" for i, g in enumerate(groups * 2)], 2000, 0)
    assert independent[1] - independent[0] < high - low
    # one label only in every resample: no interval
    assert kappa_ci([True] * 4, [True] * 4, ["a", "a", "b", "b"], 100, 0) == (None, None)
    with pytest.raises(ValueError, match="kappa_ci"):
        kappa_ci([True], [True, False], ["a"], 10, 0)
