"""`prepare`: sources mixed with counts and seeds, every filter counted, the stage script, real data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dvc_stages import stage_command
from instruct_tune.errors import UserError
from instruct_tune.params import DataParams, SourceParams, params_from_dict
from instruct_tune.data.prepare import RECORD_FIELDS, load_source, prepare



def jsonl(path: Path, records: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def alpaca(i: int, **kw) -> dict:
    return {"instruction": f"Write item number {i}.", "input": "", "output": f"Item {i} is here.", **kw}


def test_filters_counted_overall_and_per_source(tmp_path):
    first = jsonl(tmp_path / "a.jsonl", [
        alpaca(1), alpaca(2),
        alpaca(2),  # exact duplicate inside the source
        {"instruction": "write item number 1", "input": "", "output": "item 1 is here"},  # near duplicate
        {"instruction": "Say something.", "input": "<noinput>", "output": "<nooutput>"},  # empty after placeholders
        {"instruction": "Long.", "input": "", "output": "x" * 300},  # too long
        {"instruction": "What is 2+3?", "input": "2+3 is 5", "output": "It is 5.", "answer": "5"},  # leakage
    ])
    second = jsonl(tmp_path / "b.jsonl", [alpaca(1), alpaca(3), {"instruction": "WRITE item number 3", "output": "Item 3 is here!"}])
    data = DataParams(sources=[SourceParams(uri=first, name="a"), SourceParams(uri=second, name="b")], max_chars=200)
    records, metrics = prepare(data)

    assert sorted(r["output"] for r in records) == ["Item 1 is here.", "Item 2 is here.", "Item 3 is here."]
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)  # sorted by id
    assert all(tuple(r) == RECORD_FIELDS for r in records)
    assert {r["output"]: r["source"] for r in records} == {"Item 1 is here.": "a", "Item 2 is here.": "a", "Item 3 is here.": "b"}
    assert metrics["loaded"] == 10 and metrics["kept"] == 3
    assert metrics["dropped"] == {"empty": 1, "too_long": 1, "too_short": 0, "leakage": 1, "duplicate": 2,
                                  "near_duplicate": 2}
    a, b = metrics["sources"]["a"], metrics["sources"]["b"]
    assert (a["loaded"], a["kept"], a["available"], a["format"]) == (7, 2, 7, "alpaca")
    assert a["dropped"] == {"empty": 1, "too_long": 1, "too_short": 0, "leakage": 1, "duplicate": 1, "near_duplicate": 1}
    assert a["cross_source_duplicates"] == {"duplicate": 0, "near_duplicate": 0}
    assert (b["loaded"], b["kept"]) == (3, 1)
    assert b["cross_source_duplicates"] == {"duplicate": 1, "near_duplicate": 0}  # item 3's near copy is b's own
    assert b["dropped"]["near_duplicate"] == 1


def test_switches_and_min_output(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [
        alpaca(1), {"instruction": "write item number 1", "output": "item 1 is here"},
        {"instruction": "What is 2+3?", "input": "2+3 is 5", "output": "It is 5.", "answer": "5"},
        {"instruction": "Yes?", "output": "Ok"},
    ])
    _, metrics = prepare(DataParams(sources=[SourceParams(uri=path)], near_duplicates=False, drop_leakage=False,
                                    min_output_chars=3))
    assert metrics["kept"] == 3 and metrics["dropped"]["too_short"] == 1
    assert metrics["dropped"]["near_duplicate"] == 0 and metrics["dropped"]["leakage"] == 0


def test_count_and_seed_sample_after_cleaning(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [alpaca(i) for i in range(50)])
    def pick(seed):
        return [r["output"] for r in load_source(SourceParams(uri=path, count=10, seed=seed))]
    assert pick(1) == pick(1) != pick(2)
    assert len(pick(1)) == 10
    order = [int(o.split()[1]) for o in pick(1)]
    assert order == sorted(order)  # kept in file order
    with pytest.raises(UserError, match=r"source 'mine': `count` is 51 but it has only 50 records"):
        load_source(SourceParams(uri=path, count=51, name="mine"))


def test_bad_settings_fail_before_reading(tmp_path):
    missing = str(tmp_path / "huge_but_missing.json")
    # allowed names are checked where params.yaml is read, before any stage starts
    with pytest.raises(UserError, match=r"^params\.yaml: data\.sources\[1\]\.format: 'xml' is not one of alpaca, "
                                        r"dolly, sharegpt, dialogue, qa, auto$"):
        params_from_dict({"data": {"sources": [{"uri": missing}, {"uri": missing, "format": "xml", "name": "b"}]}})
    with pytest.raises(UserError, match=r"two sources are called"):
        prepare(DataParams(sources=[SourceParams(uri=missing), SourceParams(uri=missing)]))
    with pytest.raises(UserError, match=r"^params\.yaml: data\.sources\[0\]\.count: must be >= 1, got -1$"):
        params_from_dict({"data": {"sources": [{"uri": missing, "count": -1}]}})
    with pytest.raises(UserError, match=r"unknown URI scheme 'ftp'"):
        prepare(DataParams(sources=[SourceParams(uri="ftp://x/a.json")]))


def test_builtin_source():
    records, metrics = prepare(DataParams(sources=[SourceParams(uri="builtin:tasks", count=40, seed=1)]))
    assert metrics["loaded"] == 40 and metrics["kept"] == 40  # the generator's records pass every filter
    assert all(r["answer"] and r["answer"] in r["output"] and r["task"] for r in records)
    assert {r["source"] for r in records} == {"builtin:tasks"}
    assert records == prepare(DataParams(sources=[SourceParams(uri="builtin:tasks", count=40, seed=1)]))[0]
    assert len(load_source(SourceParams(uri="builtin:tasks"))) == 1000  # the default count


def _run_stage(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(stage_command("prepare"), cwd=workdir, capture_output=True, text=True, timeout=120)


def test_stage_writes_outputs_and_keeps_them_on_error(tmp_path):
    data = jsonl(tmp_path / "in.jsonl", [alpaca(1), alpaca(1), alpaca(2)])
    (tmp_path / "params.yaml").write_text(f"data:\n  sources:\n    - uri: {data}\n      name: mine\n")
    done = _run_stage(tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "data/prepared/records.jsonl").read_text().splitlines()]
    metrics = json.loads((tmp_path / "metrics/prepare.json").read_text())
    breakdown = json.loads((tmp_path / "metrics/breakdown/prepare.json").read_text())
    assert len(records) == 2 and metrics["kept"] == 2 and breakdown["sources"]["mine"]["dropped"]["duplicate"] == 1
    before = {p: p.read_bytes() for p in [tmp_path / "data/prepared/records.jsonl", tmp_path / "metrics/prepare.json"]}

    (tmp_path / "in.jsonl").write_text(json.dumps(alpaca(1)) + '\n{"instruction": "x", "output": 7}\n')
    failed = _run_stage(tmp_path)
    assert failed.returncode == 2
    assert "error:" in failed.stderr and "in.jsonl: line 2: field 'output': expected a string" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert {p: p.read_bytes() for p in before} == before  # earlier outputs intact


# ---- real data (../shared/data) ---------------------------------------------------------------------------


def test_alpaca_52k(shared_data):
    path = shared_data / "alpaca/alpaca_52k_en.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    with_input_raw = sum(1 for r in raw if r["input"].strip())
    assert (len(raw), with_input_raw, round(100 * with_input_raw / len(raw), 1)) == (52002, 20074, 38.6)
    records = load_source(SourceParams(uri=str(path)))
    assert len(records) == 52002
    # 74 inputs are placeholders ('""' 14, "N/A" 13, "." 10, "``" 7, "None"/"none"/"<none>" 18, ...): now empty.
    assert sum(1 for r in records if r["input"]) == 20000
    assert sum(1 for r in records if not r["output"]) == 84  # 49 empty + 35 "<nooutput>"-style outputs


def test_alpaca_verbatim_placeholders(shared_data):
    path = shared_data / "alpaca/alpaca_first2000_verbatim.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    records = load_source(SourceParams(uri=str(path)))
    emptied = {a["input"] for a, b in zip(raw, records) if a["input"] and not b["input"]}
    assert emptied == {"Noinput", "No input.", "<no input>", "No input required"}
    assert (sum(1 for r in raw if r["input"]), sum(1 for r in records if r["input"])) == (881, 856)
    emptied = sorted(a["output"] for a, b in zip(raw, records) if a["output"] and not b["output"])
    assert emptied == ["<No output>", "<noinput>", "No output required", "No output required"]
    _, metrics = prepare(DataParams(sources=[SourceParams(uri=str(path))]))
    assert metrics["dropped"]["empty"] == sum(1 for r in records if not r["output"] or not r["instruction"]) == 8


def test_reference_mix_cross_duplicates(shared_data):
    raschka = str(shared_data / "raschka_ch07/instruction-data.json")
    general = str(shared_data / "seed001/general_knowledge_1010.json")
    loaded = load_source(SourceParams(uri=general))
    raw = json.loads(Path(general).read_text(encoding="utf-8"))
    lacking = [i for i, r in enumerate(raw) if "input" not in r]
    assert lacking == [813, 978] and len(loaded) == 1010
    assert all(loaded[i]["input"] == "" and loaded[i]["output"] for i in lacking)

    _, everything = prepare(DataParams(sources=[SourceParams(uri=raschka, name="raschka"),
                                                SourceParams(uri=general, name="general")]))
    assert everything["sources"]["general"]["cross_source_duplicates"] == {"duplicate": 64, "near_duplicate": 17}

    # The reference study's mix: 1,000 + 1,000 (seed 0 each).
    _, mix = prepare(DataParams(sources=[SourceParams(uri=raschka, name="raschka", count=1000),
                                         SourceParams(uri=general, name="general", count=1000)]))
    assert mix["loaded"] == 2000
    assert mix["sources"]["general"]["cross_source_duplicates"] == {"duplicate": 56, "near_duplicate": 16}
    assert mix["dropped"] == {"empty": 0, "too_long": 0, "too_short": 0, "leakage": 1, "duplicate": 185,
                              "near_duplicate": 20}
    assert mix["kept"] == 1794


def test_dailydialog_pairs(shared_data, tmp_path):
    lines = (shared_data / "dailydialog/dialogues_text_En.txt").read_text(encoding="utf-8").split("\n")[:100]
    path = tmp_path / "dialogues_first100.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = load_source(SourceParams(uri=str(path), format="dialogue"))
    turns = [[t for t in line.split("__eou__") if t.strip()] for line in lines]
    assert len(records) == sum(len(t) - 1 for t in turns)
    assert (records[0]["instruction"], records[0]["input"], records[0]["output"]) == (
        "The kitchen stinks.", "", "I'll throw out the garbage.")
    third = records[2]  # dialogue 2, its second reply: the first turn is context, said by the assistant's speaker
    assert third["input"] == "<|assistant|>\nAre things still going badly with your houseguest?"
    assert third["instruction"].startswith("Getting worse. Now he’s eating me")
    assert all("__eou__" not in r["output"] and " ." not in r["output"] for r in records)
    merged = load_source(SourceParams(uri=str(path), format="dialogue"), merge_conversations=True)
    assert len(merged) == sum(1 for t in turns if len(t) >= 2)


# ---- inputs that used to pass with 0 records kept (issue 8) ----------------------------------------------


def test_zero_records_kept_is_an_error_naming_each_source_and_its_drops(tmp_path):
    blank = jsonl(tmp_path / "blank.jsonl", [{"instruction": "   ", "output": "\t"}, {"instruction": "\u200b", "output": " "}])
    long = jsonl(tmp_path / "long.jsonl", [{"instruction": "Say it.", "output": "x" * 50}, alpaca(1) | {"output": ""}])
    data = DataParams(sources=[SourceParams(uri=blank, name="blank"), SourceParams(uri=long, name="long")], max_chars=40)
    with pytest.raises(UserError) as caught:
        prepare(data)
    assert str(caught.value) == (
        f"prepare: no records kept after cleaning and filtering; per source: 'blank' ({blank}): 2 loaded, dropped "
        f"empty 2; 'long' ({long}): 2 loaded, dropped empty 1, too_long 1 (data.max_chars=40, data.min_output_chars=1)")


def test_a_one_turn_dialogue_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "dialogues.txt"
    path.write_text("Hi! __eou__ Hello. __eou__\n\nAnyone there? __eou__\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}: line 3: a dialogue needs at least two turns \(a message and its "
                                        r"reply\), found 1"):
        prepare(DataParams(sources=[SourceParams(uri=str(path), format="dialogue")]))
