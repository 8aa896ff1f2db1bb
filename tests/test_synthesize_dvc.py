"""Your documents -> instructions -> `prepare`, end to end through `dvc repro`, with a real LLM server.

A scratch repository holds this checkout's `synthesize` and `prepare` stages (their dvc.yaml entries,
params.yaml, the stage scripts and src/) and two documents written for the test under documents/. The
generator is `python -m llama_cpp.server` running the bundled 135M GGUF on 127.0.0.1 (the session fixture of
test_judge_server.py); the auditor is another server, a scripted one that keeps what it is shown, because the
135M model cannot audit (asked to, it rejected every example it was shown). What is checked is the pipeline: DVC
runs the stage, its records reach `prepare` with their provenance, an unchanged rerun runs nothing, a forced
rerun makes no LLM call, a new document costs only its own calls, and `dvc exp run -S synth.per_passage=3` works.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fake_openai import FakeOpenAI
from test_dvc import _dvc, _run
from test_judge_server import llama_server  # noqa: F401 (the fixture: a real llama.cpp server, session-wide)
from test_synthesize import KILIMANJARO, LIGHTHOUSE

from instruct_tune.io import read_json, read_jsonl

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("dvc")
pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
OUTPUTS = ("data/synth/records.jsonl", "data/synth/audit.jsonl", "metrics/synthesize.json",
           "metrics/breakdown/synthesize.json", "data/prepared/records.jsonl")
CANAL = ("The Grand Canal of China runs for about 1,776 kilometres from Beijing to Hangzhou, linking the Yellow River "
         "and the Yangtze River. Its oldest parts were dug in the 5th century BC, and it was joined into one "
         "waterway during the Sui dynasty.")


def make_repo(root: Path, base_url: str, auditor_url: str) -> Path:
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "stages").mkdir()
    for stage in ("synthesize", "prepare"):
        shutil.copy(REPO / "stages" / f"{stage}.py", root / "stages" / f"{stage}.py")
    yaml = YAML()
    stages = yaml.load(REPO / "dvc.yaml")["stages"]
    yaml.dump({"stages": {"synthesize": stages["synthesize"], "prepare": stages["prepare"]}}, root / "dvc.yaml")
    params = yaml.load(REPO / "params.yaml")
    params["data"]["sources"] = []  # the documents' records alone
    llm = {"backend": "openai", "base_url": base_url, "model": "smollm2", "timeout_s": 300.0, "max_retries": 0,
           "concurrency": 2, "max_tokens": 150}
    params["synth"].update({"documents": "documents", "per_passage": 2, "min_passage_chars": 100, "retries": 1})
    params["synth"]["generator"].update(llm)
    params["synth"]["auditor"].update({**llm, "base_url": auditor_url, "model": "keeper"})
    yaml.dump(params, root / "params.yaml")
    (root / "documents").mkdir()
    (root / "documents" / ".gitkeep").write_text("")
    (root / "documents" / "lighthouse.txt").write_text(LIGHTHOUSE + "\n")
    (root / "documents" / "mountains.jsonl").write_text(json.dumps({"text": KILIMANJARO}) + "\n")
    assert _run(root, "git", "init", "-q").returncode == 0
    assert _dvc(root, "init", "-q").returncode == 0
    return root


def calls(output: str) -> tuple[int, int]:
    found = re.search(r"llm_calls=(\d+) cache_hits=(\d+)", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


@pytest.mark.slow
def test_documents_to_prepared_records_through_dvc_and_a_real_llama_cpp_server(tmp_path: Path,
                                                                              llama_server: str) -> None:  # noqa: F811
    keeper = FakeOpenAI(lambda n, body: json.dumps({"evidence": "as the passage says", "verdict": "keep"}))
    with keeper:
        check_end_to_end(tmp_path / "repo", llama_server, keeper.base_url)


def check_end_to_end(root: Path, generator_url: str, auditor_url: str) -> None:
    make_repo(root, generator_url, auditor_url)
    done = _dvc(root, "repro", "prepare")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    print("\n" + next(line for line in output.splitlines() if line.startswith("synthesize: kept")))
    metrics = read_json(root / "metrics/synthesize.json")
    assert metrics["n_documents"] == 2 and metrics["passages"] == 2 and metrics["candidates"] == 4, metrics
    first_calls, _ = calls(output)
    audited = sum(r["by"] == "audit" for r in read_jsonl(root / "data/synth/audit.jsonl"))
    assert first_calls >= 2 + audited  # a reply per passage (and its retries), a verdict per audited candidate
    records = read_jsonl(root / "data/synth/records.jsonl")
    assert len(records) == metrics["kept"] >= 1
    texts = {"documents/lighthouse.txt": LIGHTHOUSE + "\n", "documents/mountains.jsonl": KILIMANJARO}
    for record in records:  # provenance: the passage it came from is the document's text[start:end]
        assert record["document"] in texts and record["record"] in (None, 1)
        assert 0 <= record["start"] < record["end"] <= len(texts[record["document"]])
    prepared = read_jsonl(root / "data/prepared/records.jsonl")
    assert {r["source"] for r in prepared} == {"synth"} and 1 <= len(prepared) <= len(records)
    assert read_json(root / "metrics/prepare.json")["loaded"] == len(records)

    assert _run(root, "git", "add", "-A").returncode == 0
    assert _run(root, "git", "commit", "-qm", "synthesized").returncode == 0
    before = {p: (root / p).read_bytes() for p in OUTPUTS}
    again = _dvc(root, "repro", "prepare")
    assert again.returncode == 0 and "synthesize: kept" not in again.stdout  # nothing changed: nothing ran
    forced = _dvc(root, "repro", "--force", "synthesize")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert calls(forced.stdout)[0] == 0  # every answer from the cache: no LLM call
    assert {p: (root / p).read_bytes() for p in OUTPUTS} == before

    (root / "documents" / "canal.txt").write_text(CANAL + "\n")  # a new document: only its calls are made
    grown = _dvc(root, "repro", "prepare")
    assert grown.returncode == 0, grown.stdout + grown.stderr
    new_calls, hits = calls(grown.stdout)
    assert hits == 2 + audited  # the two old passages' replies and verdicts, from the cache
    assert read_json(root / "metrics/synthesize.json")["passages"] == 3 and 1 <= new_calls <= 2 + 2 * 2

    assert _run(root, "git", "add", "-A").returncode == 0
    assert _run(root, "git", "commit", "-qm", "a third document").returncode == 0
    exp = _dvc(root, "exp", "run", "-S", "synth.per_passage=3")
    assert exp.returncode == 0, exp.stdout + exp.stderr
    assert read_json(root / "metrics/synthesize.json")["candidates"] == 9  # three per passage
    assert calls(exp.stdout)[0] >= 3  # new prompts (three examples each): asked anew
