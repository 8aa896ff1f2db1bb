"""The split contract: disjoint, val/test fixed by the seed, Small ⊂ Full and stratified, clear errors."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from dvc_stages import stage_command
from instruct_tune.errors import UserError
from instruct_tune.params import SplitParams
from instruct_tune.data.split import read_records, split_report, strata_labels, stratified_order, stratified_split



def make_record(instruction: str, inp: str, output: str, source: str = "test") -> dict:
    content = json.dumps([instruction, inp, output])
    return {"id": hashlib.sha1(content.encode()).hexdigest(), "source": source, "instruction": instruction,
            "input": inp, "output": output, "answer": None, "task": None}


@pytest.fixture(scope="module")
def population() -> list[dict]:
    """2,000 records with varied instruction lengths, about 40% with an input."""
    rng = random.Random(7)
    words = "sort list number word city river answer convert explain write count letters".split()
    records = []
    for i in range(2000):
        instruction = f"Task {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
        inp = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) if rng.random() < 0.4 else ""
        records.append(make_record(instruction, inp, f"Answer {i}."))
    return records


def ids(records: list[dict]) -> set[str]:
    return {r["id"] for r in records}


def test_splits_are_disjoint_and_sized(population):
    splits, metrics = stratified_split(population, SplitParams(train_size=800, val_size=100, test_size=150, seed=3))
    assert {k: len(v) for k, v in splits.items()} == {"train": 800, "val": 100, "test": 150}
    assert not ids(splits["train"]) & ids(splits["val"])
    assert not ids(splits["train"]) & ids(splits["test"])
    assert not ids(splits["val"]) & ids(splits["test"])
    assert metrics["sizes"] == {"population": 2000, "pool": 1750, "train": 800, "val": 100, "test": 150}
    assert metrics["stratification"]["test"] == "length_quantile x input"
    assert len(metrics["population"]) == 8  # 4 length quartiles x has-input


def test_val_and_test_do_not_depend_on_train_size_and_small_is_subset_of_full(population):
    full, _ = stratified_split(population, SplitParams(train_size=1600, val_size=100, test_size=150, seed=3))
    small, _ = stratified_split(population, SplitParams(train_size=400, val_size=100, test_size=150, seed=3))
    assert full["val"] == small["val"]
    assert full["test"] == small["test"]
    assert ids(small["train"]) < ids(full["train"])


def test_every_train_size_is_stratified(population):
    for size in (100, 400, 1000, 1750):
        _, metrics = stratified_split(population, SplitParams(train_size=size, val_size=100, test_size=150, seed=3))
        # A stratified prefix is within about one record per stratum of the population's shares.
        assert metrics["splits"]["train"]["max_stratum_deviation"] <= 1.5 / size + 0.005, size
    assert metrics["max_stratum_deviation"] <= 0.02


def test_deterministic_for_a_seed_and_seed_matters(population):
    params = SplitParams(train_size=500, val_size=100, test_size=150, seed=11)
    a, ma = stratified_split(population, params)
    b, mb = stratified_split(list(population), params)
    assert a == b and ma == mb
    c, _ = stratified_split(population, SplitParams(train_size=500, val_size=100, test_size=150, seed=12))
    assert ids(a["test"]) != ids(c["test"])


def test_stratified_order_prefixes_track_the_strata():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    record_ids = [f"r{i}" for i in range(100)]
    order = stratified_order(range(100), labels, record_ids, seed=0)
    assert sorted(order) == list(range(100))
    for m in (10, 20, 50):
        counts = {s: sum(labels[i] == s for i in order[:m]) for s in "abc"}
        for s, share in {"a": 0.6, "b": 0.3, "c": 0.1}.items():
            assert abs(counts[s] - share * m) <= 1, (m, counts)


def test_split_report_deviation_by_hand():
    labels = ["x", "x", "y", "y"]
    report, worst = split_report(labels, {"train": [0, 1, 2], "val": [3], "test": []})
    assert report["train"]["strata"]["x"] == {"count": 2, "share": 0.6667, "population_share": 0.5, "deviation": 0.1667}
    assert report["val"]["max_stratum_deviation"] == 0.5
    assert report["test"]["max_stratum_deviation"] is None  # an empty split has no shares
    assert worst == 0.5


def test_quartiles_come_from_the_whole_population():
    records = [make_record("x" * n, "in" if n % 2 else "", "o") for n in range(1, 101)]
    labels, edges = strata_labels(records, 4)
    assert edges == [25.75, 50.5, 75.25]
    assert labels[0] == "q1_input" and labels[1] == "q1_noinput" and labels[99] == "q4_noinput"


def test_sizes_beyond_the_pool_are_a_clear_error(population):
    with pytest.raises(UserError, match=r"split.train_size. = 1900 is more than the 1750 records available"):
        stratified_split(population, SplitParams(train_size=1900, val_size=100, test_size=150))
    with pytest.raises(UserError, match=r"leaves no training records: only 2000 records"):
        stratified_split(population, SplitParams(train_size=1, val_size=1000, test_size=1000))
    with pytest.raises(ValueError, match="train_size"):  # refused when params.yaml is read (test_params)
        SplitParams(train_size=0)


def test_val_size_zero_and_whole_pool(population):
    splits, metrics = stratified_split(population, SplitParams(train_size=1850, val_size=0, test_size=150))
    assert splits["val"] == [] and metrics["splits"]["val"]["max_stratum_deviation"] is None
    assert len(splits["train"]) == 1850 and metrics["max_stratum_deviation"] is not None


def test_tiny_strata_fall_back_without_crashing():
    # 7 records: one long instruction with an input is a stratum of one; sklearn cannot stratify on it.
    records = [make_record("w " * n, "i" if n == 40 else "", str(n)) for n in (1, 2, 3, 4, 5, 6, 40)]
    splits, metrics = stratified_split(records, SplitParams(train_size=3, val_size=2, test_size=2, seed=0))
    assert sum(len(v) for v in splits.values()) == 7
    assert metrics["stratification"]["test"] != "length_quantile x input"
    assert metrics["stratification"]["notes"] and "could not stratify" in metrics["stratification"]["notes"][0]


def test_duplicate_ids_are_rejected(population):
    with pytest.raises(UserError, match="record 3: field 'id': duplicate id"):
        stratified_split(population[:2] + population[:1], SplitParams(train_size=1, val_size=0, test_size=0))


def test_read_records_names_line_and_field(tmp_path):
    path = tmp_path / "records.jsonl"
    good = make_record("Sort these", "", "Done.")
    bad = {k: v for k, v in good.items() if k != "output"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"records.jsonl: line 2: field 'output': expected a string, got missing"):
        read_records(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="no records"):
        read_records(path)


def _run_stage(workdir: Path, params: str) -> subprocess.CompletedProcess:
    (workdir / "params.yaml").write_text(params, encoding="utf-8")
    return subprocess.run(stage_command("split"), cwd=workdir, capture_output=True, text=True, timeout=120)


def test_stage_writes_outputs_and_fails_cleanly(tmp_path, population):
    prepared = tmp_path / "data" / "prepared" / "records.jsonl"
    prepared.parent.mkdir(parents=True)
    prepared.write_text("".join(json.dumps(r) + "\n" for r in population[:400]), encoding="utf-8")
    done = _run_stage(tmp_path, "split:\n  train_size: 200\n  val_size: 40\n  test_size: 40\n")
    assert done.returncode == 0, done.stderr
    train = read_records(tmp_path / "data" / "split" / "train.jsonl")
    assert len(train) == 200 and set(train[0]) == set(population[0])
    metrics = json.loads((tmp_path / "metrics" / "split.json").read_text())
    assert metrics["test"] == 40 and metrics["max_stratum_deviation"] < 0.05  # headline: sizes and the deviation
    breakdown = json.loads((tmp_path / "metrics" / "breakdown" / "split.json").read_text())
    assert breakdown["sizes"]["test"] == 40 and "stratification" in breakdown
    before = (tmp_path / "metrics" / "split.json").read_bytes()
    failed = _run_stage(tmp_path, "split:\n  train_size: 500\n  val_size: 40\n  test_size: 40\n")
    assert failed.returncode == 2
    assert "error: params.yaml: `split.train_size` = 500 is more than the 320 records available" in failed.stderr
    assert (tmp_path / "metrics" / "split.json").read_bytes() == before  # earlier outputs intact


def load_alpaca(shared_data: Path) -> list[dict]:
    """Alpaca 52k as records: id = sha1 of the content, input "" when absent; exact duplicates kept once."""
    raw = json.loads((shared_data / "alpaca" / "alpaca_52k_en.json").read_text(encoding="utf-8"))
    records = {}
    for r in raw:
        record = make_record(r["instruction"], r.get("input") or "", r["output"], source="alpaca")
        records.setdefault(record["id"], record)
    return list(records.values())


def test_alpaca_52k_seed000_style_sample_is_stratified(shared_data):
    records = load_alpaca(shared_data)
    with_input = sum(1 for r in records if r["input"].strip())
    assert len(records) == 52002
    assert with_input == 20074 and round(with_input / len(records), 3) == 0.386
    splits, metrics = stratified_split(records, SplitParams(train_size=3000, val_size=0, test_size=3000, seed=0))
    assert len(splits["train"]) == 3000 and len(splits["test"]) == 3000
    assert metrics["max_stratum_deviation"] <= 0.01
    assert metrics["stratification"]["test"] == "length_quantile x input"
