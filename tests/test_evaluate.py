"""The `evaluate` stage's scores: verification per response, accuracy by family, the paired comparison."""

from __future__ import annotations

from instruct_tune.evaluate.answers import answer_metrics, compare_models, is_repetitive, rouge_l, verification
from instruct_tune.params import EvaluateParams
from instruct_tune.tasks.matching import normalise_tokens


def test_metrics_on_hand_made_rows():
    rows = [
        {"instruction": "What is 40 plus 2?", "response": "The answer is 42.", "answer": "42", "task": "arithmetic",
         "new_tokens": 6, "finish": "eos"},
        {"instruction": "What is 40 plus 2?", "response": "It is 4.2 or so", "answer": "42", "task": "arithmetic",
         "new_tokens": 8, "finish": "stop"},
        {"instruction": "Say hi.", "response": "", "answer": None, "task": None, "new_tokens": 1, "finish": "eos"},
        # rambling: mentions the answer, commits to the other option (passes lenient, fails strict)
        {"instruction": "Which is smaller, 326 or 111?", "response": "The number 326 is less than 111. " * 3,
         "answer": "111", "task": "comparison", "new_tokens": 20, "finish": "length"},
    ]
    rows = [{"id": f"r{i}", "input": "", **r} for i, r in enumerate(rows)]
    params = EvaluateParams(repetition_ngram=3, repetition_min_repeats=3)
    checks = verification(rows, params)
    assert [c["strict"] for c in checks] == [True, False, None, False]
    assert [c["lenient"] for c in checks] == [True, False, None, True]
    m = answer_metrics(rows, checks)
    assert m["n"] == 4 and m["n_with_answer"] == 3
    assert m["strict_accuracy"] == round(1 / 3, 4) and m["lenient_accuracy"] == round(2 / 3, 4)
    assert m["by_task"] == {"arithmetic": {"n": 2, "strict_accuracy": 0.5, "lenient_accuracy": 0.5},
                            "comparison": {"n": 1, "strict_accuracy": 0.0, "lenient_accuracy": 1.0}}
    assert m["empty_rate"] == 0.25 and m["repetition_rate"] == 0.25


def test_paired_comparison_of_the_two_models():
    """tuned - base strict accuracy on the same records, with a paired interval and an exact McNemar p."""
    def rows(correct: list[bool]) -> list[dict]:
        return [{"id": f"r{i}", "instruction": f"What is {i} plus 1?", "input": "", "answer": str(i + 1),
                 "task": "arithmetic", "response": f"It is {i + 1 if ok else i + 7}.", "new_tokens": 3, "finish": "eos"}
                for i, ok in enumerate(correct)]
    # 30 records: both right on 10, only tuned on 12, only base on 2, both wrong on 6
    tuned = [True] * 10 + [True] * 12 + [False] * 2 + [False] * 6
    base = [True] * 10 + [False] * 12 + [True] * 2 + [False] * 6
    params = EvaluateParams(bootstrap_samples=1000, seed=0)
    answers = {"base": rows(base), "tuned": rows(tuned)}
    checks = {name: verification(r, params) for name, r in answers.items()}
    headline, details = compare_models(answers, checks, params)
    assert headline["n"] == 30 and (headline["only_tuned"], headline["only_base"]) == (12, 2)
    assert headline["base"]["strict_accuracy"] == 0.4 and headline["tuned"]["strict_accuracy"] == round(22 / 30, 4)
    assert headline["strict_accuracy_diff"] == round(10 / 30, 4)
    assert headline["diff_ci_low"] < headline["strict_accuracy_diff"] < headline["diff_ci_high"]
    assert 0.1 < headline["diff_ci_low"] and headline["diff_ci_high"] < 0.56
    # exact two-sided binomial test of 12 vs 2 discordant pairs: 2 * P(X <= 2 | n=14, p=1/2) = 0.0129
    assert headline["mcnemar_p"] == 0.0129
    assert "by_task" in details["base"] and set(headline["tuned"]) == {"strict_accuracy", "lenient_accuracy",
                                                                     "rouge_l", "repetition_rate"}
    assert compare_models(answers, checks, params)[0] == headline  # seeded


def test_answer_normalisation():
    assert normalise_tokens("Paris, FRANCE!") == ["paris", "france"]
    assert normalise_tokens("It was -3.5 on 2024-01-05") == ["it", "was", "-3.5", "on", "2024", "01", "05"]


def test_repetition_detector():
    assert is_repetitive("a b c a b c a b c", 3, 3)
    assert not is_repetitive("a b c a b c d", 3, 3)
    assert not is_repetitive("short", 4, 3)


def test_rouge_l_is_rouge_score_over_unicode_tokens():
    from rouge_score import rouge_scorer

    # the package's own number on ASCII text (its tokenizer, no stemming) is ours
    plain = rouge_scorer.RougeScorer(["rougeL"]).score("The capital of France is Paris.", "Paris is the capital.")
    assert rouge_l("The capital of France is Paris.", "Paris is the capital.") == round(plain["rougeL"].fmeasure, 4)
    assert rouge_l("mice", "The plural of 'mouse' is 'mice'.") == round(2 * (1 / 6) / (1 + 1 / 6), 4)
    # accents and non-Latin scripts count as words (the package's default tokenizer would drop them)
    assert rouge_l("Título do produto", "título do produto") == 1.0
    assert rouge_l("東京", "東京") == 1.0 and rouge_l("東京", "大阪") == 0.0
    assert rouge_l("", "anything") is None and rouge_l("a b", "") == 0.0


def test_rouge_l_is_paired_over_records_with_a_reference():
    def rows(responses: list[str]) -> list[dict]:
        return [{"id": f"r{i}", "instruction": "Describe it.", "input": "", "reference": ref, "response": resp}
                for i, (ref, resp) in enumerate(zip(["a b c d", "e f g h", "", "i j k l"], responses))]
    tuned, base = rows(["a b c d", "e f x x", "z", "i j k l"]), rows(["x x x x", "e f g h", "z", "i x x x"])
    params = EvaluateParams(bootstrap_samples=1000, seed=0)
    checks = {"tuned": verification(tuned, params), "base": verification(base, params)}
    headline, details = compare_models({"tuned": tuned, "base": base}, checks, params)
    assert [c["rouge_l"] for c in checks["tuned"]] == [1.0, 0.5, None, 1.0]
    assert [c["rouge_l"] for c in checks["base"]] == [0.0, 1.0, None, 0.25]
    assert headline["n_rouge"] == 3 and headline["rouge_l_diff"] == round((1.0 - 0.5 + 0.75) / 3, 4)
    assert headline["rouge_l_diff_ci_low"] <= headline["rouge_l_diff"] <= headline["rouge_l_diff_ci_high"]
    assert headline["tuned"]["rouge_l"] == round(2.5 / 3, 4) and details["base"]["n_with_reference"] == 3
    assert headline["n"] == 0 and headline["strict_accuracy_diff"] is None  # no exact answers: no accuracy
    assert headline["mcnemar_p"] is None  # and no test: not p = 1 over zero pairs
