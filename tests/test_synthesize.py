"""The `synthesize` stage: documents -> passages -> examples written by a generator -> rules -> an auditor.

LLMs here are OpenAI-compatible servers on 127.0.0.1: a scripted one (`fake_openai.FakeOpenAI`) that writes
examples from the passage it is shown and audits by a rule, and, in the slow tests, the bundled 135M GGUF run
in-process by llama.cpp. The real `python -m llama_cpp.server` end to end through `dvc repro` is in
test_synthesize_dvc.py. The passages below were written for these tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dvc_stages import stage_command, stage_paths
from fake_openai import FakeOpenAI
from instruct_tune.synth import synthesize as S
from instruct_tune.synth import examples as SE
from instruct_tune.synth import documents as SD
from instruct_tune.synth import passages as SP
from instruct_tune.errors import UserError
from instruct_tune.llm.client import ReplyError
from instruct_tune.io import read_json, read_jsonl
from instruct_tune.params import DataParams, SynthLLMParams, SynthParams, params_from_dict
from instruct_tune.data.prepare import prepare

REPO = Path(__file__).resolve().parents[1]

ARENA = """# Arena Pantanal

The Arena Pantanal is a multi-purpose stadium in Cuiabá, the capital of the Brazilian state of Mato Grosso. It was built on the site of the old Verdão stadium, which was demolished in 2010, and it opened in April 2014 with a capacity of about 44,000 seats.

The stadium hosted four group-stage matches of the 2014 FIFA World Cup, among them Chile against Australia and Russia against South Korea. Its design used wood from certified forests and a system that collects rainwater.
"""
LIGHTHOUSE = ("The Lighthouse of Alexandria, also called the Pharos, was built by the Ptolemaic Kingdom of Egypt during "
              "the reign of Ptolemy II, around 280 BC. It stood on the island of Pharos at the harbour of Alexandria "
              "and is estimated to have been about 100 metres tall. Earthquakes between 956 and 1323 damaged it "
              "badly, and its remaining stones were used in 1480 to build the Citadel of Qaitbay on the same site.")
KILIMANJARO = ("Mount Kilimanjaro is a dormant volcano in Tanzania with three volcanic cones: Kibo, Mawenzi and Shira. "
               "Its highest point, Uhuru Peak on Kibo, rises 5,895 metres above sea level, which makes it the highest "
               "mountain in Africa. The first recorded ascent to the summit was made in 1889 by Hans Meyer and "
               "Ludwig Purtscheller.")
PAGE = ("<html><head><title>Canal</title><style>p {color: red}</style></head><body><h1>The Grand Canal</h1>"
        "<p>The Grand Canal of China runs for about 1,776 kilometres from Beijing to Hangzhou, linking the Yellow "
        "River and the Yangtze River.</p><script>alert('not text')</script><p>Its oldest parts were dug in the "
        "5th century BC, and it was joined into one waterway during the Sui dynasty.</p></body></html>")


def write_documents(folder: Path) -> Path:
    """Four documents in four formats: 5 passages of at least 100 characters."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arena.md").write_text(ARENA, encoding="utf-8")
    (folder / "wonders").mkdir(exist_ok=True)
    (folder / "wonders" / "lighthouse.txt").write_text(LIGHTHOUSE + "\n", encoding="utf-8")
    (folder / "mountains.jsonl").write_text(json.dumps({"title": "Kilimanjaro", "text": KILIMANJARO}) + "\n\n"
                                            + json.dumps({"title": "stub", "text": "Too short."}) + "\n")
    (folder / "canal.html").write_text(PAGE, encoding="utf-8")
    (folder / ".notes.txt").write_text("hidden files are skipped", encoding="utf-8")
    return folder


def llm(base_url: str, **kw: Any) -> SynthLLMParams:
    return SynthLLMParams(**{"backend": "openai", "base_url": base_url, "model": "writer", "timeout_s": 10.0,
                             "max_retries": 0, "concurrency": 1, **kw})


def synth_params(docs: Path, base_url: str, auditor_url: str | None = None, **kw: Any) -> SynthParams:
    return SynthParams(**{"documents": str(docs), "passage_chars": 450, "min_passage_chars": 100, "per_passage": 2,
                          "generator": llm(base_url), "auditor": llm(auditor_url or base_url, model="checker"),
                          **kw})


# ---------------------------------------------------------------- a scripted generator and auditor


def passage_of(body: dict[str, Any]) -> str:
    text = "\n".join(m["content"] for m in body["messages"])
    return re.search(r"<<<PASSAGE>>>\n(.*?)\n<<<END PASSAGE>>>", text, re.S).group(1)


def is_generation(body: dict[str, Any]) -> bool:
    return body["messages"][0]["content"].startswith("You write training examples")


def written_examples(body: dict[str, Any]) -> str:
    """Valid examples made from the passage: the plan's task types, the first sentence as the answer."""
    passage = passage_of(body)
    sentence = re.split(r"(?<=[.!?])\s+", passage.lstrip("# ").split("\n")[-1])[0]
    tasks = re.findall(r"^- example_\d+: an? (\w+)", body["messages"][1]["content"], re.M)
    examples = {}
    for k, task in enumerate(tasks, start=1):
        if task == "question":
            examples[f"example_{k}"] = {"task": task, "instruction": f"Say what {sentence.split()[1]} is ({k}).",
                                        "input": "", "output": sentence}
        else:
            examples[f"example_{k}"] = {"task": task, "instruction": f"Do a {task} of this sentence ({k}).",
                                        "input": sentence, "output": f"A {task} of it, in short ({k})."}
    return json.dumps(examples)


def audit_by_slot(body: dict[str, Any]) -> str:
    """Keeps every example but the second of each passage, which it calls malformed."""
    rejected = "(2)." in body["messages"][-1]["content"]
    return json.dumps({"evidence": "The first sentence.", "verdict": "malformed" if rejected else "keep"})


def scripted(n: int, body: dict[str, Any]) -> str:
    return written_examples(body) if is_generation(body) else audit_by_slot(body)


# ---------------------------------------------------------------- documents and passages


def test_documents_of_every_type_are_read_with_their_record_or_line(tmp_path: Path) -> None:
    docs, files = S.read_documents(write_documents(tmp_path / "docs"), "text")
    assert files == 4  # .notes.txt is hidden
    names = [(Path(d.name).name, d.record) for d in docs]
    assert names == [("arena.md", None), ("canal.html", None), ("mountains.jsonl", 1), ("mountains.jsonl", 3),
                     ("lighthouse.txt", None)]
    canal = docs[1].text
    assert canal.startswith("The Grand Canal\n\nThe Grand Canal of China runs") and "alert" not in canal
    assert "color" not in canal and "Canal\n\nThe Grand" in canal  # no head, style or script; blocks are paragraphs
    assert docs[2].text == KILIMANJARO and docs[4].text == LIGHTHOUSE + "\n"


@pytest.mark.parametrize("name, content, message", [
    ("a.json", '[{"text": "fine"}, {"body": "no text field"}]',
     r"a\.json: record 2: missing field 'text' \(synth\.text_field names the field that holds the text\)"),
    ("a.json", '{"text": ["not", "a", "string"]}', r"a\.json: record 1: field 'text': expected a string, got list"),
    ("a.jsonl", '{"text": "fine"}\n\n"just a string"\n',
     r"a\.jsonl: line 3: expected a JSON object, got str$"),
    ("a.jsonl", '{"text": "fine"}\n{"body": "no text field"}\n',
     r"a\.jsonl: line 2: field 'text': expected a string, got missing$"),
    ("a.jsonl", "\n \n", r"a\.jsonl: the document is empty$"),
    ("a.jsonl", '{"text": "fine"}\n{"text": "cut\n',
     r"a\.jsonl: line 2: malformed JSON: Invalid control character at$"),
    ("a.txt", b"fine\n\xff\xfe broken", r"a\.txt: line 2: not UTF-8 text \(byte 5\)"),
    ("a.txt", "fine\nzero \x00 byte", r"a\.txt: line 2: contains a NUL byte"),
    ("a.md", " \n\n ", r"a\.md: the document is empty"),
    ("a.pdf", "%PDF-1.4", r"a\.pdf: unsupported document type '\.pdf' \(synth reads \.txt, .*move it out"),
])
def test_bad_documents_name_the_file_the_record_or_line_and_the_field(tmp_path: Path, name: str,
                                                                      content: str | bytes, message: str) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ok.txt").write_text("A good document.")
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=f"^{re.escape(str(folder))}/{message}"):
        S.read_documents(folder, "text")


def test_an_empty_or_missing_documents_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").write_text("")
    with pytest.raises(UserError, match=r"empty: no documents in the folder named by synth\.documents \(expected "):
        S.synthesize(SynthParams(documents=str(tmp_path / "empty")), tmp_path / "cache", progress=False)
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.documents: .*nowhere: not found$"):
        S.synthesize(SynthParams(documents=str(tmp_path / "nowhere")), tmp_path / "cache", progress=False)


def test_passages_are_bounded_and_their_offsets_point_into_the_document() -> None:
    long_sentence = "word " * 120 + "end."  # longer than a passage: cut at a space
    text = "\n\n".join([ARENA, LIGHTHOUSE, long_sentence, "x" * 450, KILIMANJARO]) + "\n"
    spans = SP.passage_spans(text, 200)
    assert all(0 < end - start <= 200 for start, end in spans)
    assert [text[s:e] for s, e in spans] == [text[s:e].strip() for s, e in spans]  # trimmed
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # in order, no overlap
    # nothing is lost: the passages hold every non-space character of the document, in order
    assert "".join(text[s:e] for s, e in spans).replace(" ", "").replace("\n", "") == \
        text.replace(" ", "").replace("\n", "")
    assert sum(1 for s, e in spans if text[s:e] == "x" * 200) == 2  # a word longer than a passage: hard cuts
    doc = SD.Document("d.txt", None, text)
    note = SD.Document("note.txt", None, "A short note.\n")
    passages, short = S.make_passages([doc, note], 400, 150)
    assert all(text[p.start:p.end] == p.text and 150 <= len(p.text) <= 400 for p in passages)
    assert short == 1 + sum(1 for s, e in SP.passage_spans(text, 400) if e - s < 150)
    assert {p.document for p in passages} == {"d.txt"}
    ids = [p.id for p in passages]
    assert len(set(ids)) == len(ids) and ids == [p.id for p in S.make_passages([doc], 400, 150)[0]]  # stable


def test_the_plan_has_about_the_input_share_and_a_passage_keeps_its_plan() -> None:
    passages = [SP.Passage("d", None, 0, 10, f"passage number {i}") for i in range(400)]
    plans = [S.plan_tasks(p, 3, 0.4, seed=0) for p in passages]
    with_input = sum(t != "question" for plan in plans for t in plan) / 1200
    assert 0.35 < with_input < 0.45
    assert {t for plan in plans for t in plan} == set(S.TASKS)
    assert plans[7] == S.plan_tasks(passages[7], 3, 0.4, seed=0)  # the same passage, the same plan
    assert S.plan_tasks(passages[7], 3, 0.0, seed=0) == ["question"] * 3
    assert all(t in S.INPUT_TASKS for t in S.plan_tasks(passages[7], 3, 1.0, seed=0))
    assert [S.plan_tasks(p, 3, 0.4, seed=1) for p in passages] != plans  # the seed changes the plans


@pytest.mark.parametrize("item, reason, note", [
    (None, "malformed", "missing from the generator's reply"),
    ({"task": "question", "instruction": "Who?", "input": "", "output": 3}, "malformed",
     "field 'output' is not a string"),
    ({"task": "question", "instruction": "...", "input": "", "output": "Cuiabá."}, "malformed",
     "no words in the instruction"),
    ({"task": "summary", "instruction": "Summarise it.", "input": " ", "output": "Short."}, "malformed",
     "the summary task has no input"),
    ({"task": "question", "instruction": "Name the stadium built in Cuiabá for the 2014 World Cup.",
      "input": "Arena Pantanal", "output": "Arena Pantanal."}, "leakage", "the output repeats the input"),
    ({"task": "question", "instruction": "Which stadium did Cuiabá build for the 2014 World Cup?",
      "input": "Cuiabá built the Arena Pantanal.", "output": "The Arena Pantanal"}, "leakage",
     "the output is contained in the input"),
    ({"task": "question", "instruction": "What does the passage say about the stadium?", "input": "",
      "output": "It is in Cuiabá."}, "not_answerable", "the instruction refers to a text it does not include"),
    ({"task": "question", "instruction": "Quando foi inaugurada a Arena Pantanal em Cuiabá?", "input": "",
      "output": "A Arena Pantanal foi inaugurada em abril de 2014."}, "wrong_language", "not English: 0% English"),
    ({"task": "question", "instruction": "In which city is the Arena Pantanal?", "input": "",
      "output": "The Arena Pantanal is in Curitiba, in the state of Paraná, and opened in 2012."}, "not_answerable",
     "names or numbers the passage does not give: Curitiba, Paraná, 2012"),
    ({"task": "extraction", "instruction": "List the years in this sentence.", "input": "It opened in 2014.",
      "output": "2014"}, None, None),  # extraction takes its output from the input: not leakage
    ({"task": "extraction", "instruction": "List the items in this sentence.", "input": "It opened in 2014.",
      "output": "It opened in 2014"}, "leakage", "the output repeats the input"),  # ... but not all of it
    ({"task": "question", "instruction": "How many seats does the Arena Pantanal have?", "input": "",
      "output": "About 44,000 seats, since it opened in April 2014."}, None, None),
])
def test_rules_drop_what_needs_no_model(item: dict[str, Any] | None, reason: str | None, note: str | None) -> None:
    _, got_reason, got_note = S.check_example(item, "question", ARENA, "English")
    assert got_reason == reason and (got_note or "").startswith(note or "")


def test_replies_that_are_not_examples_are_refused() -> None:
    with pytest.raises(ReplyError, match="^no JSON object in the reply$"):
        S.parse_examples("Sure! Here are your examples.", 2)
    with pytest.raises(ReplyError, match="^malformed JSON: "):
        S.parse_examples('{"example_1": {"task": "question", "instruction": "Wh', 2)
    with pytest.raises(ReplyError, match=r"^no example objects \(expected the keys example_1 to example_2\)$"):
        S.parse_examples('{"answer": 42}', 2)
    one = {"task": "question", "instruction": "Who?", "input": "", "output": "Me."}
    assert S.parse_examples(json.dumps({"example_2": one}), 2) == [None, one]
    assert S.parse_examples("```json\n" + json.dumps({"examples": [one, one, one]}) + "\n```", 2) == [one, one]
    assert S.parse_audit('{"evidence": "It opened in 2014.", "verdict": "Keep"}') == \
        {"verdict": "keep", "note": "evidence: It opened in 2014."}
    with pytest.raises(ReplyError, match="^verdict must be one of keep, leakage, "):
        S.parse_audit('{"evidence": "", "verdict": "fine"}')


# ---------------------------------------------------------------- end to end with a scripted server


def test_documents_become_audited_records_with_provenance_and_a_rerun_makes_no_call(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")
    with FakeOpenAI(scripted) as server:
        params = synth_params(docs, server.base_url)
        result = S.synthesize(params, tmp_path / "cache", progress=False)
        calls = server.requests
        again = S.synthesize(params, tmp_path / "cache", progress=False)
        assert server.requests == calls  # every answer came from the cache
    m, b = result.metrics, result.breakdown
    assert m["n_documents"] == 5 and m["passages"] == 5 and b["passages_too_short"] == 1  # "Too short."
    assert m["candidates"] == 10 and m["generation_failures"] == 0
    assert result.llm_calls == calls == 5 + 10  # a reply per passage, a verdict per candidate
    assert again.llm_calls == 0 and again.cache_hits == calls
    assert (again.records, again.audit, again.metrics, again.breakdown) == (result.records, result.audit, m, b)
    assert b["dropped_by_audit"]["malformed"] == 5 and m["kept"] == 5 and m["accepted_share"] == 0.5
    assert b["generator"] == f"openai:writer@{server.base_url}" and b["auditor"] == f"openai:checker@{server.base_url}"
    texts = {str(docs / "arena.md"): ARENA, str(docs / "wonders" / "lighthouse.txt"): LIGHTHOUSE + "\n",
             str(docs / "mountains.jsonl"): KILIMANJARO}
    for record in result.records:
        assert list(record) == list(S.RECORD_FIELDS) and "(1)" in record["instruction"]
        if record["document"] in texts:  # provenance: the passage is the document's text[start:end]
            passage = texts[record["document"]][record["start"]:record["end"]]
            assert (record["input"] or record["output"]) in passage
    assert len({r["id"] for r in result.audit}) == 10
    assert [r["verdict"] for r in result.audit].count("keep") == 5
    assert b["samples"]["keep"][0]["instruction"] and len(b["samples"]["malformed"]) == 3


def test_an_edited_prompt_or_a_result_param_is_asked_anew_and_an_operational_param_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache keys follow the prompt text as sent and the typed params (params.py's `operational` marks), with no
    version constant to bump: an edited generator prompt re-asks the generator only (its examples are unchanged,
    so every verdict comes from the cache), a new temperature re-asks that LLM, and settings that cannot change
    an answer (concurrency, timeouts, threads) re-ask nothing."""
    docs = write_documents(tmp_path / "docs")
    with FakeOpenAI(scripted) as server:
        params = synth_params(docs, server.base_url)
        first = S.synthesize(params, tmp_path / "cache", progress=False)
        assert first.llm_calls == 15
        quiet = SynthParams(**{**params.__dict__, "samples": 1, "generator": llm(server.base_url, concurrency=3,
                                                                                 timeout_s=20.0, n_threads=2)})
        assert S.synthesize(quiet, tmp_path / "cache", progress=False).llm_calls == 0
        hotter = SynthParams(**{**params.__dict__, "auditor": llm(server.base_url, model="checker", temperature=0.5)})
        assert S.synthesize(hotter, tmp_path / "cache", progress=False).llm_calls == 10  # every verdict, no reply
        monkeypatch.setattr(SE, "GENERATOR_SYSTEM", SE.GENERATOR_SYSTEM.replace("Rules:", "Rules (all of them):"))
        edited = S.synthesize(params, tmp_path / "cache", progress=False)
        assert (edited.llm_calls, edited.cache_hits) == (5, 10)  # every reply again; the same examples' verdicts


def test_the_stage_writes_its_outputs_and_prepare_reads_them_as_one_more_source(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")
    with FakeOpenAI(scripted) as server:
        result = S.synthesize(synth_params(docs, server.base_url), tmp_path / "cache", progress=False)
    S.write_outputs(result, tmp_path / "synth", tmp_path / "synthesize.json", tmp_path / "breakdown.json")
    assert read_jsonl(tmp_path / "synth" / "records.jsonl") == result.records
    assert len(read_jsonl(tmp_path / "synth" / "audit.jsonl")) == 10
    assert read_json(tmp_path / "synthesize.json") == result.metrics
    records, metrics = prepare(DataParams(sources=[]), tmp_path / "synth" / "records.jsonl")
    assert metrics["sources"]["synth"]["loaded"] == 5 and {r["source"] for r in records} == {"synth"}
    assert {r["instruction"] for r in records} == {r["instruction"] for r in result.records}
    # prepare's own filters still apply: a kept record whose output repeats its input is dropped there
    leaky = {**result.records[0], "input": result.records[0]["output"]}
    (tmp_path / "synth" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*result.records, leaky]))
    _, metrics = prepare(DataParams(sources=[]), tmp_path / "synth" / "records.jsonl")
    assert metrics["dropped"]["leakage"] == 1 and metrics["kept"] == 5


def test_without_documents_the_stage_loads_nothing_and_writes_the_same_empty_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S, "make_backend", lambda *a: pytest.fail("a model was loaded"))
    outs = []
    for _ in range(2):
        result = S.synthesize(SynthParams(), tmp_path / "cache", progress=False)
        S.write_outputs(result, tmp_path / "synth", tmp_path / "m.json", tmp_path / "b.json")
        outs.append([(tmp_path / p).read_bytes()
                     for p in ("synth/records.jsonl", "synth/audit.jsonl", "m.json", "b.json")])
    assert outs[0] == outs[1] and outs[0][:2] == [b"", b""]
    assert json.loads(outs[0][2]) == {"n_documents": 0, "passages": 0, "generation_failures": 0, "candidates": 0,
                                      "kept": 0, "dropped": 0, "accepted_share": None}
    assert S.summary(result).startswith("synthesize: no documents configured")
    # prepare sees no synth source: its records and metrics are those of data.sources alone
    data = params_from_dict({"data": {"sources": [{"uri": "builtin:tasks", "count": 30}]}}).data
    assert prepare(data, tmp_path / "synth" / "records.jsonl") == prepare(data)


def test_malformed_generator_output_is_retried_at_temperature_0_then_counted(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")

    def reply(n: int, body: dict[str, Any]) -> str:
        if not is_generation(body):
            return json.dumps({"evidence": "x", "verdict": "keep"})
        if "Lighthouse" in passage_of(body):
            return "I cannot write JSON today."  # both tries: a counted failure
        if "Kilimanjaro" in passage_of(body):  # one example missing, the other without an output
            return json.dumps({"example_1": {"task": "question", "instruction": "Where is it?", "input": "",
                                             "output": ""}})
        return written_examples(body)

    with FakeOpenAI(reply) as server:
        result = S.synthesize(synth_params(docs, server.base_url, input_share=0.0), tmp_path / "cache", progress=False)
        requests = server.requests
        # an invalid reply after the retry is recorded, not a permanent answer: the rerun asks for it again only
        assert S.synthesize(synth_params(docs, server.base_url, input_share=0.0), tmp_path / "cache",
                            progress=False).llm_calls == 2  # the Lighthouse passage: the call and its retry
        assert server.requests == requests + 2
    m, b = result.metrics, result.breakdown
    assert m["generation_failures"] == 1 and m["candidates"] == 8
    failure = b["generation_failures"][0]
    assert failure["document"].endswith("lighthouse.txt")
    assert failure["start"] == 0 and failure["end"] == len(LIGHTHOUSE)
    assert failure["error"] == "invalid reply after 1 retry at temperature 0: no JSON object in the reply"
    assert b["dropped_by_check"]["malformed"] == 2
    assert {s["note"] for s in b["samples"]["malformed"]} == {"no words in the output",
                                                              "missing from the generator's reply"}
    assert m["kept"] == 6 and result.llm_calls == 5 + 1 + 6  # 5 passages, 1 retry, 6 audits


def test_the_retry_shows_the_reply_and_the_error_at_temperature_0(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "k.txt").write_text(KILIMANJARO)
    bodies = []

    def reply(n: int, body: dict[str, Any]) -> str:
        bodies.append(body)
        if is_generation(body):
            return "not json" if n == 1 else written_examples(body)
        return json.dumps({"evidence": "x", "verdict": "keep"})

    with FakeOpenAI(reply) as server:
        params = synth_params(docs, server.base_url, generator=llm(server.base_url, temperature=0.7))
        result = S.synthesize(params, tmp_path / "cache", progress=False)
    assert result.metrics["generation_failures"] == 0 and result.metrics["kept"] == 2
    assert [bodies[0]["temperature"], bodies[1]["temperature"]] == [0.7, 0.0]
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user", "assistant", "user"]
    assert bodies[1]["messages"][2]["content"] == "not json"
    assert bodies[1]["messages"][3]["content"].startswith("That reply is not valid (no JSON object in the reply).")
    assert bodies[0]["response_format"]["type"] == "json_schema"  # the schema goes out with the request
    schema = bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["example_1", "example_2"] and "maxLength" not in json.dumps(schema)


def test_an_auditor_that_rejects_everything_stops_with_a_clear_message(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")

    def reply(n: int, body: dict[str, Any]) -> str:
        if is_generation(body):
            return written_examples(body)
        return json.dumps({"evidence": "none", "verdict": "not_answerable"})

    with FakeOpenAI(reply) as server:
        with pytest.raises(UserError) as caught:
            S.synthesize(synth_params(docs, server.base_url), tmp_path / "cache", progress=False)
    assert re.fullmatch(
        r"synthesize: no candidate kept: all 10 candidates from 5 passages were rejected: not_answerable 10 "
        r"\(e\.g\. 'evidence: none'\)\. Nothing was written, so no empty training set reaches `prepare`\. .*"
        r"the verdicts are cached in .*judgments\.jsonl", str(caught.value))


def test_an_auditor_that_rejects_everything_fails_the_stage_and_keeps_the_old_outputs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_documents(root / "documents")
    (root / "data" / "synth").mkdir(parents=True)
    (root / "data" / "synth" / "records.jsonl").write_text('{"old": true}\n')

    def reply(n: int, body: dict[str, Any]) -> str:
        return written_examples(body) if is_generation(body) else json.dumps({"evidence": "", "verdict": "leakage"})

    with FakeOpenAI(reply) as server:
        write_params(root, server.base_url)
        done = run_stage(root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("error: synthesize: no candidate kept: all 10 candidates from 5 passages were rejected: leakage 10"
            in done.stderr)
    assert (root / "data" / "synth" / "records.jsonl").read_text() == '{"old": true}\n'
    assert not (root / "metrics" / "synthesize.json").exists()


def test_generator_and_auditor_can_be_different_servers_with_bounded_concurrency(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def slow_audit(n: int, body: dict[str, Any]) -> str:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return audit_by_slot(body)

    with FakeOpenAI(lambda n, body: written_examples(body)) as writer, FakeOpenAI(slow_audit) as checker:
        params = synth_params(docs, writer.base_url, checker.base_url,
                              auditor=llm(checker.base_url, model="checker", concurrency=3))
        result = S.synthesize(params, tmp_path / "cache", progress=False)
        assert (writer.requests, checker.requests) == (5, 10)
    assert state["most"] == 3  # at most auditor.concurrency at once, and that many in use
    assert result.breakdown["auditor"] == f"openai:checker@{checker.base_url}" and result.metrics["kept"] == 5


def test_an_unreachable_server_stops_the_run_and_keeps_finished_calls(tmp_path: Path) -> None:
    docs = write_documents(tmp_path / "docs")
    with FakeOpenAI(scripted) as server:
        params = synth_params(docs, server.base_url)
        url = server.base_url
        S.synthesize(SynthParams(**{**params.__dict__, "max_passages": 2}), tmp_path / "cache", progress=False)
    with pytest.raises(UserError, match=r"^synth\.generator server http://127\.0\.0\.1:\d+/v1 unreachable .*"
                                        r"0 of 3 new calls finished and are kept in .*judgments\.jsonl; rerun"):
        S.synthesize(synth_params(docs, url), tmp_path / "cache", progress=False)


def test_the_key_rules_apply_to_the_generator_and_the_auditor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = write_documents(tmp_path / "docs")
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("SYNTH_TEST_KEY", secret)
    with FakeOpenAI(scripted) as server:
        params = synth_params(docs, server.base_url, max_passages=1,
                              generator=llm(server.base_url, api_key_env="SYNTH_TEST_KEY"),
                              auditor=llm(server.base_url, api_key_env="SYNTH_TEST_KEY"))
        result = S.synthesize(params, tmp_path / "cache", progress=False)
        S.write_outputs(result, tmp_path / "synth", tmp_path / "m.json", tmp_path / "b.json")
        assert set(server.auth) == {f"Bearer {secret}"}
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.auditor\.base_url: http://203\.0\.113\.9/v1 is plain "
                                        r"http to 203\.0\.113\.9, .*set synth\.auditor\.allow_insecure_http: true"):
        S.synthesize(synth_params(docs, server.base_url, auditor=llm("http://203.0.113.9/v1")), tmp_path / "c2",
                     progress=False)
    monkeypatch.delenv("SYNTH_TEST_KEY")
    with pytest.raises(UserError, match=r"^the environment variable SYNTH_TEST_KEY \(named by synth\.generator"
                                        r"\.api_key_env\) is not set, and the synth\.generator server https://"):
        S.synthesize(synth_params(docs, "https://api.example.com/v1",
                                  generator=llm("https://api.example.com/v1", api_key_env="SYNTH_TEST_KEY")),
                     tmp_path / "c3", progress=False)
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.auditor\.api_key_env must be the NAME .*like a key"):
        params_from_dict({"synth": {"auditor": {"api_key_env": "sk-proj-" + "Zx9" * 16}}})


def test_settings_that_cannot_work_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^params.yaml: synth.min_passage_chars: must be between 0 and "
                                        r"synth.passage_chars, got 5000$"):
        S.synthesize(SynthParams(documents="docs", min_passage_chars=5000), tmp_path, progress=False)
    # A single value out of its range is refused where params.yaml is read (params.py), before any stage runs.
    for key, value, message in [("per_passage", 0, "synth.per_passage: must be >= 1, got 0"),
                                ("input_share", 1.5, "synth.input_share: must be <= 1, got 1.5")]:
        with pytest.raises(UserError, match=f"^params.yaml: {re.escape(message)}$"):
            params_from_dict({"synth": {"documents": "docs", key: value}})
    # An unknown backend and a mistyped value are params.yaml errors (params.py's types), before any stage runs.
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.generator\.backend: 'cloud' is not one of local, "
                                        r"openai$"):
        params_from_dict({"synth": {"generator": {"backend": "cloud"}}})
    with pytest.raises(ValueError, match="backend"):
        SynthLLMParams(backend="cloud")
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.generator\.temperature: must be a number, got 'hot'$"):
        params_from_dict({"synth": {"generator": {"temperature": "hot"}}})


def test_the_stage_shares_the_judges_cache_and_backends_but_not_its_prompts() -> None:
    """A judge prompt edit must not rerun this stage: it imports the cache, the call counting and `neutralise` from
    their own modules (the judge imports the same objects), never judge.py."""
    from test_contracts import import_closure

    from instruct_tune.evaluate import judge
    from instruct_tune.llm import cache as llm_cache
    from instruct_tune.llm import prompt_text

    closure = import_closure(REPO / "stages" / "synthesize.py")
    assert "instruct_tune.evaluate.judge" not in closure and "instruct_tune.evaluate.rubric" not in closure
    assert {"instruct_tune.llm.cache", "instruct_tune.llm.prompt_text", "instruct_tune.llm.backends"} <= set(closure)
    assert (judge.JudgeCache, judge.RunStats, judge.neutralise) == (llm_cache.JudgeCache, llm_cache.RunStats,
                                                                   prompt_text.neutralise)
    assert (S.JudgeCache, S.RunStats, SE.neutralise) == (judge.JudgeCache, judge.RunStats, judge.neutralise)


def test_documents_outside_the_stage_deps_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "documents" / "mine").mkdir(parents=True)
    S.check_tracked("documents/mine", ["stages/synthesize.py", "documents"])
    S.check_tracked("documents", ["documents"])
    with pytest.raises(UserError, match=r"^params\.yaml: synth\.documents: elsewhere is not inside a dep of the "
                                        r"`synthesize` stage in dvc\.yaml \(documents\), so DVC would not rerun it"):
        S.check_tracked("elsewhere", ["stages/synthesize.py", "documents", "src/instruct_tune/synth/synthesize.py"])


# ---------------------------------------------------------------- the stage script, killed and resumed


def write_params(root: Path, base_url: str, **synth: Any) -> None:
    """The project's params.yaml with `synth` reading root/documents through a server at `base_url`."""
    from ruamel.yaml import YAML

    yaml = YAML()
    params = yaml.load(REPO / "params.yaml")
    section = {"backend": "openai", "base_url": base_url, "model": "writer", "timeout_s": 10.0, "max_retries": 0,
               "concurrency": 1}
    params["synth"].update({"documents": "documents", "passage_chars": 450, "min_passage_chars": 100,
                            "per_passage": 2, **synth})
    params["synth"]["generator"].update(section)
    params["synth"]["auditor"].update(section)
    yaml.dump(params, root / "params.yaml")


def run_stage(root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The stage script with dvc.yaml's exact command (its paths relative to `root`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(stage_command("synthesize"), cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


OUTPUTS = ("data/synth/records.jsonl", "data/synth/audit.jsonl", "metrics/synthesize.json",
           "metrics/breakdown/synthesize.json")


@pytest.mark.slow
def test_killed_mid_run_it_resumes_with_only_the_missing_calls(tmp_path: Path) -> None:
    """SIGKILL while the stage waits on the server, after some answers were cached; the rerun asks only
    for the rest, and its outputs are byte-identical to an uninterrupted run's."""

    def slow(n: int, body: dict[str, Any]) -> str:
        time.sleep(0.15)
        return scripted(n, body)

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    with FakeOpenAI(slow) as server:
        for root in (clean, killed):
            write_documents(root / "documents")
            write_params(root, server.base_url)
        done = run_stage(clean)
        assert done.returncode == 0, done.stderr
        total = server.requests
        cache = killed / stage_paths("synthesize")["cache"] / "judgments.jsonl"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(stage_command("synthesize"), cwd=killed, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (cache.exists() and cache.read_text().count("\n") >= 7) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cached = cache.read_text().count("\n")
        assert 7 <= cached < total and not (killed / "metrics" / "synthesize.json").exists()
        before = server.requests
        done = run_stage(killed)
        assert done.returncode == 0, done.stderr
        resumed = server.requests - before
    print(f"\nkill -9 after {cached} of {total} answers were cached: the rerun made {resumed} calls "
          f"({done.stdout.strip()})")
    assert resumed == total - cached
    assert f"llm_calls={resumed} cache_hits={cached}" in done.stdout
    assert [(killed / p).read_bytes() for p in OUTPUTS] == [(clean / p).read_bytes() for p in OUTPUTS]


# ---------------------------------------------------------------- the bundled GGUF in-process


@pytest.mark.slow
def test_the_local_backend_writes_and_audits_under_the_schema(tmp_path: Path) -> None:
    """The bundled 135M GGUF through llama.cpp's JSON-schema grammar: replies parse as the schemas say (its
    examples are poor; the point is the plumbing: the grammar, the passage-per-system-turn audit prompt)."""
    pytest.importorskip("llama_cpp")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lighthouse.txt").write_text(LIGHTHOUSE)
    local = SynthLLMParams(model="bundled:smollm2-135m-instruct", n_threads=1, n_ctx=2048, max_tokens=150)
    params = SynthParams(documents=str(docs), per_passage=2, generator=local, auditor=local, retries=0)
    try:
        result = S.synthesize(params, tmp_path / "cache", progress=False)
    except UserError as exc:  # a 135M auditor may reject all: that path is a clear message too
        assert str(exc).startswith("synthesize: no candidate kept: all 2 candidates from 1 passages")
        entries = read_jsonl(tmp_path / "cache" / "judgments.jsonl")
    else:
        assert result.metrics["candidates"] == 2 and result.breakdown["generator"].startswith("local:sha256:")
        entries = read_jsonl(tmp_path / "cache" / "judgments.jsonl")
    generated = [e for e in entries if e["parsed"] is not None and isinstance(e["parsed"], list)]
    assert len(generated) == 1 and len(generated[0]["parsed"]) == 2  # the grammar made a valid reply
    assert all(e["error"] is None for e in entries)


def test_report_shows_the_synthesis_only_when_it_ran(tmp_path: Path) -> None:
    from instruct_tune.report.build import build_report

    docs = write_documents(tmp_path / "docs")
    with FakeOpenAI(scripted) as server:
        result = S.synthesize(synth_params(docs, server.base_url), tmp_path / "cache", progress=False)
    metrics = tmp_path / "metrics"
    empty = S.empty_result(SynthParams())
    S.write_outputs(empty, tmp_path / "synth", metrics / "synthesize.json", metrics / "breakdown" / "synthesize.json")
    without = build_report(metrics, tmp_path / "plots", tmp_path / "none.jsonl", tmp_path / "REPORT.md", examples=5)
    assert "documents" not in without.lower()
    result.audit[0]["instruction"] = result.breakdown["samples"]["keep"][0]["instruction"] = "<img src=x> | **bold**"
    S.write_outputs(result, tmp_path / "synth", metrics / "synthesize.json", metrics / "breakdown" / "synthesize.json")
    text = build_report(metrics, tmp_path / "plots", tmp_path / "none.jsonl", tmp_path / "REPORT.md", examples=5)
    section = text.split("## Instructions written from your documents\n", 1)[1].split("\n## ", 1)[0]
    assert "into 5 passages" in section and "wrote 10 candidate examples" in section and "**5 kept (50.0%)**" in section
    assert "| malformed | 5 | 0 | 5 |" in section and "### Dropped as malformed (sample)" in section
    assert "_auditor: evidence\\: The first sentence._" in section and "### Kept (sample)" in section
    assert "<img" not in section and "&lt;img src=x&gt;" in section  # text from models stays text


def test_summary_gives_candidates_per_minute_only_for_a_run_that_wrote_every_candidate_itself() -> None:
    metrics = {"n_documents": 2, "passages": 10, "generation_failures": 0, "candidates": 30, "kept": 11,
               "dropped": 19, "accepted_share": 0.3667}
    breakdown = {"dropped": {"leakage": 1, "malformed": 18}}

    def line(calls: int, hits: int, seconds: float) -> str:
        return S.summary(S.SynthResult([], [], metrics, breakdown, llm_calls=calls, cache_hits=hits, seconds=seconds))

    fresh = line(calls=40, hits=0, seconds=120.0)
    assert "kept 11 of 30 candidates (36.7%)" in fresh and "leakage 1, malformed 18" in fresh
    assert fresh.endswith("120.0 s, 15.00 candidates/min")
    resumed = line(calls=16, hits=16, seconds=120.0)  # half the answers came from a killed run's cache
    assert resumed.endswith("8.0 LLM calls/min (a resumed run: no candidates/min)")
    assert "llm_calls=16 cache_hits=16" in resumed
    assert line(calls=0, hits=32, seconds=0.0).endswith("0.0 s, every answer from the cache")
