"""REPORT.md from fixture metrics: it leads with the verified answer and its intervals, says when the judge
must not be quoted, shows every section's numbers in the right place, and renders text from data and models as inert
characters."""

from __future__ import annotations

from pathlib import Path

from instruct_tune.io import write_json, write_jsonl
from instruct_tune.report.build import build_report

HOSTILE = '<script>alert(1)</script> <img src=x onerror=alert(2)> ![t](http://tracker.example/p.gif) [x](javascript:alert(3))'


GOOD_CONTROLS = {"n_controls": 10, "control_right": 1.0, "control_right_ci_low": 1.0, "control_right_ci_high": 1.0,
                 "control_auc": 0.98, "control_auc_ci_low": 0.93, "control_auc_ci_high": 1.0}


def fixture(tmp_path: Path, kappa: float | None, controls: dict | None = None) -> Path:
    m = tmp_path / "metrics"
    write_json(m / "prepare.json", {"loaded": 1200, "kept": 1200, "dropped": {"empty": 0}})
    write_json(m / "split.json", {"max_stratum_deviation": 0.0033, "train": 800, "val": 100, "test": 200,
                                  "pool": 1050, "population": 1200})
    write_json(m / "train.json", {"base_val_loss": 1.234, "val_loss": 0.3245, "val_perplexity": 1.3833,
                                  "train_loss": 0.59, "train_tokens_per_s": 171.4, "steps": 100, "n_train_examples": 800})
    model = {"strict_accuracy": 0.11, "lenient_accuracy": 0.19, "mean_new_tokens": 88.0, "repetition_rate": 0.01}
    write_json(m / "generate.json", {"base": model, "tuned": {**model, "strict_accuracy": 0.275}, "n": 200,
                                     "strict_accuracy_diff": 0.165, "diff_ci_low": 0.11, "diff_ci_high": 0.22,
                                     "mcnemar_p": 1.2e-07, "only_tuned": 36, "only_base": 3})
    scores = {"factual_correctness": 2.0, "instruction_adherence": 3.0, "clarity_usefulness": 4.0, "total": 9.0}
    write_json(m / "judge.json", {"tuned": scores, "base": {**scores, "total": 6.5}, "win": 30, "loss": 10, "tie": 20,
                                  "errors": 0, "n_pairs": 60, "win_rate": 0.6667, "win_rate_ci_low": 0.58,
                                  "win_rate_ci_high": 0.75, "total_diff": 2.5, "total_diff_ci_low": 1.5,
                                  "total_diff_ci_high": 3.5, "position_consistency": None, "kappa": kappa,
                                  "agreement": 0.9, "auc_factual": 0.93, "mode": "pointwise", **(controls or {})})
    write_json(m / "breakdown" / "judge.json", {"judge_model": "local:sha256:abc", "mode": "pointwise", "scoring": "choices",
                                                "validity": {"n": 120, "judge_true_verified_true": 20,
                                                             "judge_true_verified_false": 4, "judge_false_verified_true": 3,
                                                             "judge_false_verified_false": 93},
                                                "by_task": {"arithmetic": {"n": 3, "base_total": 5.0, "tuned_total": 9.0,
                                                                           "win": 2, "loss": 0, "tie": 1}},
                                                "controls": {"own_judged_right": 1.0, "neighbour_judged_right": 0.9}})
    by_task = {HOSTILE: {"n": 1, "strict_accuracy": 0.0, "lenient_accuracy": 1.0}}
    write_json(m / "breakdown" / "generate.json", {name: {"n": 200, "by_task": by_task, **model} for name in ("base", "tuned")})
    grade = {"total": 12, "correct": True, "scores": {}}
    write_jsonl(tmp_path / "judgments.jsonl", [{
        "id": "r1", "instruction": HOSTILE, "input": "", "reference": HOSTILE, "outcome": "win", "winner": "tuned",
        "grades": {"tuned": {"response": HOSTILE, "grade": grade, "verified": True},
                   "base": {"response": "plain text", "grade": {**grade, "total": 3, "correct": False}, "verified": False}},
    }])
    return m


def test_report_leads_with_the_verified_answer_and_its_intervals(tmp_path: Path) -> None:
    text = build_report(fixture(tmp_path, 0.81), tmp_path / "plots", tmp_path / "judgments.jsonl", tmp_path / "REPORT.md",
                        examples=5)
    verdict = text.split("## Verdict", 1)[1].split("## 1.", 1)[0]
    assert "base **11.0% → tuned 27.5%**" in verdict and "**+16.5 points**" in verdict
    assert "interval +11.0 to +22.0" in verdict and "McNemar p = 1.2e-07" in verdict
    assert "36 records only the tuned model got right, 3 only the base" in verdict
    assert "base 6.50 → tuned 9.00" in verdict and "win rate (W + ½T)/N **0.667**" in verdict
    assert "Cohen's kappa **0.810**" in verdict and "do not quote" not in verdict
    assert "base 1.234 → tuned **0.325**" in verdict
    assert text.index("## Verdict") < text.index("## 1. Data")


def test_a_judge_below_the_trust_threshold_is_flagged(tmp_path: Path) -> None:
    for kappa in (0.42, None):
        text = build_report(fixture(tmp_path, kappa), tmp_path / "plots", tmp_path / "judgments.jsonl",
                            tmp_path / "REPORT.md", examples=5)
        assert "do not quote this judge's verdict" in text.split("## 1.", 1)[0]


def test_controls_stand_beside_kappa_and_alone_where_there_is_no_exact_answer(tmp_path: Path) -> None:
    def verdict(kappa: float | None, controls: dict | None) -> str:
        text = build_report(fixture(tmp_path, kappa, controls), tmp_path / "plots", tmp_path / "judgments.jsonl",
                            tmp_path / "REPORT.md", examples=5)
        return text.split("## 1.", 1)[0]

    both = verdict(0.81, GOOD_CONTROLS)
    assert "Cohen's kappa **0.810**" in both and "**Controls** (10 records" in both and "do not quote" not in both
    assert "judged right 100.0% (95% CI 100.0%–100.0%" in both and "own vs neighbour 0.980 (95% CI 0.930–1.000)" in both
    assert "neighbour's judged wrong 90.0%" in both
    alone = verdict(None, GOOD_CONTROLS)  # e.g. Alpaca: no exact answers, so no kappa; the controls pass
    assert "do not quote" not in alone and "kappa cannot be measured: the controls are this judge's validity" in alone
    for bad in ({**GOOD_CONTROLS, "control_right": 0.75}, {**GOOD_CONTROLS, "control_auc": 0.6}):
        for kappa in (0.81, None):  # a judge that misgrades its controls is flagged, whatever its kappa
            assert "misgrades its controls" in verdict(kappa, bad) and "do not quote" in verdict(kappa, bad)


def test_text_from_data_and_models_is_inert(tmp_path: Path) -> None:
    text = build_report(fixture(tmp_path, 0.8), tmp_path / "plots", tmp_path / "judgments.jsonl", tmp_path / "REPORT.md",
                        examples=5)
    for live in ("<script>", "<img", "](http://tracker", "](javascript:", "onerror=alert(2)>"):
        assert live not in text
    assert "&lt;script&gt;" in text  # still readable as characters


def test_every_section_shows_the_numbers_of_its_metrics(tmp_path: Path) -> None:
    m = fixture(tmp_path, 0.81)
    write_json(m / "breakdown" / "prepare.json", {"sources": {"builtin:tasks": {"loaded": 1200, "kept": 1190}}})
    write_json(m / "breakdown" / "eda.json", {"overall": {
        "with_input": 300, "input_share": 0.25, "top_verbs": [{"verb": "add", "count": 120}],
        "lengths": {"instruction": {"words": {"mean": 9.5, "median": 9.0, "std": 2.25, "min": 3, "max": 20}}},
        "flesch_reading_ease": {"mean": 71.25, "median": 70.0}, "lda_topics": [{"words": ["sum", "number"]}]}})
    write_json(m / "breakdown" / "train.json", {"runtime_s": 812.5, "peak_memory_mb": 2048.0, "epochs": 1.0})
    base = {"n": 200, "strict_accuracy": 0.11, "lenient_accuracy": 0.19, "mean_new_tokens": 88.0, "empty_rate": 0.02,
            "repetition_rate": 0.01, "tokens_per_s": 41.5,
            "by_task": {"arithmetic": {"n": 40, "strict_accuracy": 0.1, "lenient_accuracy": 0.3}}}
    tuned = {**base, "strict_accuracy": 0.275, "mean_new_tokens": 31.0, "tokens_per_s": 52.25,
             "by_task": {"arithmetic": {"n": 40, "strict_accuracy": 0.45, "lenient_accuracy": 0.5}}}
    write_json(m / "breakdown" / "generate.json", {"base": base, "tuned": tuned})
    (tmp_path / "plots" / "train").mkdir(parents=True)
    (tmp_path / "plots" / "train" / "loss.png").write_bytes(b"\x89PNG")
    text = build_report(m, tmp_path / "plots", tmp_path / "judgments.jsonl", tmp_path / "REPORT.md", examples=5)
    lines = set(text.splitlines())
    expected = [
        # 1. data: counts per source, the EDA table and facts, the split
        "Loaded **1200** records, kept **1200**; dropped: none.", r"| builtin\:tasks | 1200 | 1190 |",
        "| instruction (words) | 9.500 | 9.000 | 2.250 | 3 | 20 |", "- records with an input: 300 (25.0%)",
        "- top leading words: add (120)", "- Flesch reading ease of outputs: mean 71.2, median 70.0",
        "- LDA topics: 1: sum, number",
        "Stratified by instruction-length quartile × has-input: train 800, validation 100, test 200; largest stratum "
        "deviation from the population **0.0033**.",
        # 2. fine-tuning: headline and breakdown figures, the loss chart linked relative to the report
        "| validation loss before training (base model) | 1.234 |",
        "| validation loss after training (whole set, best checkpoint) | 0.325 |",
        "| validation perplexity after training | 1.383 |", "| mean training loss | 0.590 |",
        "| optimizer steps | 100 |", "| training examples | 800 |", "| runtime (s) | 812.500 |",
        "| peak memory (MB) | 2048.000 |", "![loss curves](plots/train/loss.png)",
        # 3. generation: each model in its own column, and per task family
        "| verified accuracy (strict) | 11.0% | 27.5% |", "| answer anywhere in the response (lenient) | 19.0% | 19.0% |",
        "| mean new tokens | 88.000 | 31.000 |", "| empty responses | 2.0% | 2.0% |",
        "| caught in a repetition loop | 1.0% | 1.0% |", "| tokens/s | 41.500 | 52.250 |",
        "| arithmetic | 40 | 10% / 30% | 45% / 50% |",
        # 4. judge: mean scores, the agreement table, totals by task family
        "| factual correctness | 2.000 | 2.000 |", "| total | 6.500 | 9.000 |",
        "| judge: correct | 20 | 4 |", "| judge: wrong | 3 | 93 |", "| arithmetic | 3 | 5.000 | 9.000 | 2 | 0 | 1 |",
        # 5. examples: each model's verification and judge total, and the outcome
        "| base | plain text | no | 3 (correct: no) |", "Outcome: **tuned**.",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, "\n".join(missing)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Verdict", "## 1. Data", "## 2. Fine-tuning", "## 3. Generation on the test split",
                        "## 4. LLM-as-judge", "## 5. Examples (test split, base vs tuned)", "## How answers are verified",
                        "## Caveats"]


def test_a_report_of_an_unfinished_pipeline_has_only_what_exists(tmp_path: Path) -> None:
    write_json(tmp_path / "metrics" / "prepare.json", {"loaded": 10, "kept": 9, "dropped": {"empty": 1}})
    text = build_report(tmp_path / "metrics", tmp_path / "plots", tmp_path / "absent.jsonl", tmp_path / "REPORT.md",
                        examples=5)
    assert "Loaded **10** records, kept **9**; dropped: empty 1." in text
    assert "## Verdict" not in text and "## 2. Fine-tuning" not in text and "## 5. Examples" not in text
