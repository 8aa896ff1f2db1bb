"""EDA numbers on a hand-made set, LDA and chart determinism, the stage end to end, and Alpaca 52k verbs."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from dvc_stages import stage_command
from instruct_tune.report.charts import bar_png, histogram_png, line_png
from instruct_tune.data.eda import (
    compute_eda,
    flesch_scores,
    lda_topics,
    leading_verb,
    length_histogram,
    summarise,
    top_verbs,
    write_eda_plots,
)
from instruct_tune.params import EdaParams

FAST = EdaParams(lda_topics=2, lda_top_words=4, lda_passes=2, lda_max_docs=200, top_verbs=2, seed=0)


def rec(instruction: str, inp: str, output: str, source: str = "hand") -> dict:
    rid = hashlib.sha1(json.dumps([instruction, inp, output]).encode()).hexdigest()
    return {"id": rid, "source": source, "instruction": instruction, "input": inp, "output": output,
            "answer": None, "task": None}


# instruction chars 10, 12, 14, 16 (words 2, 2, 4, 3); two inputs; outputs of 1, 2, 3, 6 words.
HAND = [
    rec("Write this", "", "Yes."),
    rec("Sort, please", "b a", "a b."),
    rec("Write a poem x", "", "Roses are red."),
    rec("Name two things.", "topic: sea", "The sea is very, very big."),
]


def test_hand_made_numbers():
    m = compute_eda(HAND, FAST)["overall"]
    assert m["records"] == 4 and m["with_input"] == 2 and m["input_share"] == 0.5
    ins = m["lengths"]["instruction"]
    assert ins["chars"] == {"count": 4, "mean": 13.0, "median": 13.0, "std": 2.2361, "min": 10.0, "max": 16.0}
    assert ins["words"]["mean"] == 2.75
    assert m["lengths"]["input"]["chars"] == {"count": 2, "mean": 6.5, "median": 6.5, "std": 3.5, "min": 3.0, "max": 10.0}
    assert m["lengths"]["output"]["words"]["mean"] == 3.0
    assert m["top_verbs"] == [{"verb": "write", "count": 2, "share": 0.5}, {"verb": "name", "count": 1, "share": 0.25}]
    assert set(m["flesch_reading_ease"]) == {"mean", "median", "std"}


def test_by_source_has_each_source_apart():
    records = HAND + [rec("Explain why", "", "Because it is."), rec("Explain how", "in short", "Like this.")]
    records[-1]["source"] = records[-2]["source"] = "other"
    m = compute_eda(records, FAST)
    assert sorted(m["by_source"]) == ["hand", "other"]
    assert m["by_source"]["other"]["records"] == 2
    assert m["by_source"]["other"]["top_verbs"] == [{"verb": "explain", "count": 2, "share": 1.0}]
    assert m["by_source"]["hand"]["with_input"] == 2 and m["overall"]["with_input"] == 3


def test_leading_verbs_and_summaries():
    assert leading_verb("  Rewrite, the sentence") == "rewrite"
    assert leading_verb("\"Translate\" this") == "translate"
    assert leading_verb("123 go") is None and leading_verb("") is None
    assert top_verbs(["Give a", "give b", "Add c", "Bake d", "Add e"], 2) == [
        {"verb": "add", "count": 2, "share": 0.4}, {"verb": "give", "count": 2, "share": 0.4}]
    assert summarise([])["mean"] is None
    # Flesch: 206.835 - 1.015 * (6 words / 1 sentence) - 84.6 * (6 syllables / 6 words)
    assert flesch_scores(["The cat sat on the mat."]) == [pytest.approx(116.145)]


def _topic_corpus() -> list[dict]:
    pets = "cat dog kitten puppy leash collar veterinarian fur paws whiskers".split()
    money = "stock market bond investor dividend portfolio inflation interest broker equity".split()
    records = []
    for i in range(60):
        words = pets if i % 2 else money
        text = " ".join(words[(i + j) % len(words)] for j in range(7))
        records.append(rec(f"Describe {text}", "", f"{text} {i}"))
    return records


def test_lda_topics_are_seeded_and_capped():
    params = EdaParams(lda_topics=2, lda_top_words=5, lda_passes=5, lda_max_docs=40, seed=1)
    a = lda_topics(_topic_corpus(), params)
    assert a == lda_topics(list(reversed(_topic_corpus())), params)  # sampled by id hash, not by order
    assert a["documents"] == 40 and len(a["topics"]) == 2
    assert all(len(t["words"]) == 5 and len(t["weights"]) == 5 for t in a["topics"])
    # The two themes land in different topics: each topic's top words come mostly from one theme.
    pets = set("cat dog kitten puppy leash collar veterinarian fur paws whiskers".split())
    shares = sorted(sum(w in pets for w in t["words"]) for t in a["topics"])
    assert shares[0] <= 1 and shares[1] >= 4, a["topics"]


def test_lda_on_too_little_text_is_reported_not_a_crash():
    out = lda_topics([rec("Go", "", "ok")], FAST)
    assert out["topics"] == [] and "too few" in out["note"]


def test_length_histogram_bins_are_shared_and_complete():
    hist = length_histogram(HAND, "chars", bins=4)
    assert hist["edges"][0] == 0 and hist["edges"][-1] > hist["cap"]
    assert sum(hist["counts"]["instruction"]) == 4 and sum(hist["counts"]["input"]) == 2


def test_plots_and_metrics_are_deterministic(tmp_path):
    m1, m2 = compute_eda(HAND, FAST), compute_eda(HAND, FAST)
    assert m1 == m2
    write_eda_plots(HAND, m1, tmp_path / "a")
    write_eda_plots(HAND, m2, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["lengths_chars.csv", "lengths_chars.png", "lengths_words.csv", "lengths_words.png",
                     "top_verbs.csv", "top_verbs.png"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "top_verbs.csv").read_text() == "verb,count,share\nwrite,2,0.5\nname,1,0.25\n"
    header = (tmp_path / "a" / "lengths_words.csv").read_text().splitlines()[0]
    assert header == "bin_start,bin_end,instruction,input,output"


def test_chart_helpers_write_stable_pngs_without_software_tag(tmp_path):
    for k in range(2):
        histogram_png(tmp_path / f"h{k}.png", {"a": [1, 2, 2, 3], "b": [2, 3]}, bins=[0, 1, 2, 3, 4], title="h")
        bar_png(tmp_path / f"b{k}.png", ["x", "y"], {"base": [1, 2], "tuned": [2, 3]}, title="b")
        line_png(tmp_path / f"l{k}.png", {"loss": ([1, 2, 3], [3.0, 2.0, 1.5])}, title="l", log_y=True)
    for stem in "hbl":
        data = (tmp_path / f"{stem}0.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data == (tmp_path / f"{stem}1.png").read_bytes()
        assert b"matplotlib" not in data.lower()


def test_stage_end_to_end(tmp_path):
    prepared = tmp_path / "data" / "prepared" / "records.jsonl"
    prepared.parent.mkdir(parents=True)
    prepared.write_text("".join(json.dumps(r) + "\n" for r in _topic_corpus() + HAND), encoding="utf-8")
    (tmp_path / "params.yaml").write_text("eda:\n  lda_topics: 2\n  lda_passes: 1\n", encoding="utf-8")
    done = subprocess.run(stage_command("eda"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    headline = json.loads((tmp_path / "metrics" / "eda.json").read_text())
    assert sorted(headline) == ["flesch_mean", "input_share", "input_words_mean", "instruction_words_mean", "output_words_mean",
                                "records"] and headline["records"] == 64  # headline numbers only
    metrics = json.loads((tmp_path / "metrics" / "breakdown" / "eda.json").read_text())
    assert metrics["overall"]["records"] == 64 and list(metrics["by_source"]) == ["hand"]
    assert len(metrics["overall"]["lda_topics"]) == 2
    assert (tmp_path / "plots" / "eda" / "lengths_words.png").stat().st_size > 1000


def test_alpaca_52k_leading_verbs(shared_data):
    raw = json.loads((shared_data / "alpaca" / "alpaca_52k_en.json").read_text(encoding="utf-8"))
    verbs = top_verbs([r["instruction"] for r in raw], 5)
    assert [v["verb"] for v in verbs] == ["generate", "create", "describe", "write", "what"]
    assert verbs[0]["count"] == 4691
