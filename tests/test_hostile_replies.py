"""A hostile or broken LLM server, and hostile documents: every reply parser ends in a valid answer or a ReplyError
(never another exception), every call to a server is bounded in time and in bytes, a stage with too many failed
requests exits 2 and its rerun asks only for those, and documents cannot bring in links or stall the HTML reader.

Accepted on purpose: a JSON object inside code fences or text, an integer written as a float (`4.0` is 4), unknown
keys (a key with a NUL among them), a NUL inside a string. Refused (ReplyError): everything else below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from fake_openai import Body, FakeOpenAI
from instruct_tune.errors import UserError
from instruct_tune.evaluate.judge_replies import parse_grade, parse_verdict
from instruct_tune.evaluate.rubric import CRITERIA
from instruct_tune.io import write_jsonl
from instruct_tune.llm.backends import BackendUnavailable, JudgmentFailed, OpenAIBackend, reply_cap
from instruct_tune.llm.client import ReplyError
from instruct_tune.synth.documents import html_to_text, html_tokens, read_documents
from instruct_tune.synth.examples import parse_audit, parse_examples
from instruct_tune.params import JudgeParams

REPO = Path(__file__).resolve().parents[1]
GRADE = {"reason": "ok", "correct": True, "factual_correctness": 5, "instruction_adherence": 4, "clarity_usefulness": 3}


def grade_with(**changes: Any) -> str:
    return json.dumps({**GRADE, **changes})


CORPUS: list[tuple[str, str]] = [
    ("empty", ""), ("whitespace", " \n\t "), ("html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("list", "[]"), ("null", "null"), ("empty object", "{}"), ("a JSON string", json.dumps(json.dumps(GRADE))),
    ("truncated", json.dumps(GRADE)[:40]), ("truncated nested", '{"response_a": {"factual_correctness": 5'),
    ("NaN", grade_with().replace('"factual_correctness": 5', '"factual_correctness": NaN')),
    ("Infinity", grade_with().replace('"factual_correctness": 5', '"factual_correctness": -Infinity')),
    ("1e400", grade_with().replace('"factual_correctness": 5', '"factual_correctness": 1e400')),
    ("5000 digits", grade_with().replace('"factual_correctness": 5', '"factual_correctness": ' + "9" * 5000)),
    ("100k-deep array", '{"reason": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("10 MB of [", "{" + "[" * 10_000_000),
    ("10 MB of [ closed", '{"a": ' + "[" * 10_000_000 + "}"),
    ("content as a number", "123"), ("score as a string", grade_with(factual_correctness="5")),
    ("score as a list", grade_with(factual_correctness=[5])), ("score true", grade_with(factual_correctness=True)),
    ("score null", grade_with(factual_correctness=None)), ("score -1", grade_with(factual_correctness=-1)),
    ("score 6", grade_with(factual_correctness=6)), ("score 4.5", grade_with(factual_correctness=4.5)),
    ("score 4.0 (accepted)", grade_with(factual_correctness=4.0)), ("correct as a string", grade_with(correct="yes")),
    ("reason as an object", grade_with(reason={"a": 1})),
    ("duplicate keys", grade_with()[:-1] + ', "factual_correctness": 0}'),
    ("key with NUL (accepted)", grade_with()[:-1] + ', "x\\u0000y": 1}'),
    ("NUL in reason (accepted)", grade_with(reason="a\x00b")),
    ("fenced (accepted)", "```json\n" + grade_with() + "\n```"),
    ("valid grade", grade_with()),
    ("valid verdict", json.dumps({"response_a": {c: 4 for c in CRITERIA}, "response_b": {c: 2 for c in CRITERIA},
                                  "winner": "A", "justification": "A."})),
    ("verdict sides as lists", json.dumps({"response_a": [4, 4, 4], "response_b": [2], "winner": "A"})),
    ("winner as a number", json.dumps({"response_a": {c: 4 for c in CRITERIA}, "response_b": {c: 2 for c in CRITERIA},
                                       "winner": 1})),
    ("valid examples", json.dumps({"example_1": {"task": "question", "instruction": "Why?", "input": "",
                                                 "output": "Because."}})),
    ("examples as a string", json.dumps({"examples": "none"})),
    ("examples of numbers", json.dumps({"examples": [1, 2, 3]})),
    ("example fields as numbers", json.dumps({"example_1": {"task": 1, "instruction": 2, "input": 3, "output": 4}})),
    ("valid audit", json.dumps({"evidence": "It says so.", "verdict": "keep"})),
    ("audit verdict as a list", json.dumps({"evidence": "x", "verdict": ["keep"]})),
    ("audit evidence as a number", json.dumps({"evidence": 1e308, "verdict": "keep"})),
    ("binary garbage", "\x00\xff{\x01}\ud800"),
]
PARSERS = {"judge pointwise (reference)": lambda t: parse_grade(t, True),
           "judge pointwise (no reference)": lambda t: parse_grade(t, False),
           "judge pairwise": parse_verdict, "synth generator": lambda t: parse_examples(t, 2),
           "synth auditor": parse_audit}


def valid(parser: str, result: Any) -> bool:
    if parser.startswith("judge pointwise"):
        return all(type(result["scores"][c]) is int and 0 <= result["scores"][c] <= 5 for c in CRITERIA)
    if parser == "judge pairwise":
        return result["winner"] in ("A", "B", "Tie") and all(
            type(result[s][c]) is int and 0 <= result[s][c] <= 5 for s in ("response_a", "response_b") for c in CRITERIA)
    if parser == "synth generator":
        return len(result) == 2 and any(isinstance(x, dict) for x in result)
    return result["verdict"] in ("keep", "leakage", "not_answerable", "contradicts", "wrong_language", "malformed")


def test_every_parser_ends_every_hostile_reply_in_an_answer_or_a_reply_error() -> None:
    outcomes = {"valid": 0, "ReplyError": 0}
    for parser_name, parse in PARSERS.items():
        for name, text in CORPUS:
            try:
                result = parse(text)
            except ReplyError as exc:
                assert str(exc), (parser_name, name)
                outcomes["ReplyError"] += 1
                continue
            assert valid(parser_name, result), (parser_name, name, result)
            outcomes["valid"] += 1
    print(f"hostile replies: {len(CORPUS)} texts x {len(PARSERS)} parsers = {len(CORPUS) * len(PARSERS)}: {outcomes}")
    assert sum(outcomes.values()) == len(CORPUS) * len(PARSERS)
    for name in ("NaN", "1e400", "5000 digits", "100k-deep array", "10 MB of [", "score true", "score 4.5",
                 "duplicate keys", "score 6"):
        with pytest.raises(ReplyError):
            parse_grade(dict(CORPUS)[name], True)
    assert parse_grade(dict(CORPUS)["score 4.0 (accepted)"], True)["scores"]["factual_correctness"] == 4


# ---------------------------------------------------------------- bounded calls


def backend(url: str, **kw: Any) -> OpenAIBackend:
    params = JudgeParams(**{**dict(backend="openai", base_url=url, model="m", api_key_env="JUDGE_TEST_KEY",
                                   timeout_s=2.0, max_retries=0, concurrency=1), **kw})
    return OpenAIBackend(params, {"type": "object"})


MESSAGES = [{"role": "user", "content": "Grade this."}]


def test_a_dripping_server_is_stopped_at_the_whole_call_deadline() -> None:
    reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "{}"}}]}).encode()
    drip = Body((reply[i:i + 1] for i in range(len(reply))), delay=0.1, length=len(reply))  # ~7 s in all
    with FakeOpenAI(lambda n, body: drip) as server:
        llm = backend(server.base_url)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"did not finish its reply within 2\.5s .*for the whole call"):
            llm.complete(MESSAGES, temperature=0.0, max_tokens=10)
        elapsed = time.monotonic() - started
        llm.close()
    print(f"drip: stopped after {elapsed:.2f}s (deadline {llm.deadline_s}s), {server.sent} of {len(reply)} bytes sent")
    assert elapsed < llm.deadline_s + 1.0


def test_a_huge_reply_is_stopped_at_the_cap() -> None:
    chunk = b" " * 65536
    total = 400 * 1024 * 1024
    huge = Body((chunk for _ in range(total // len(chunk))), length=total)
    with FakeOpenAI(lambda n, body: huge) as server:
        llm = backend(server.base_url)
        tracemalloc.start()
        started = time.monotonic()
        with pytest.raises(JudgmentFailed, match=r"larger than 65536 bytes for max_tokens=10 \(stopped reading"):
            llm.complete(MESSAGES, temperature=0.0, max_tokens=10)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        llm.close()
    print(f"huge body: stopped after {elapsed:.2f}s, peak traced memory {peak / 2**20:.2f} MiB, server wrote "
          f"{server.sent / 2**20:.1f} MiB of {total / 2**20:.0f} MiB (cap {reply_cap(10)} bytes)")
    assert reply_cap(10) == 65536 and elapsed < llm.deadline_s + 1.0
    assert peak < reply_cap(10) + 4 * 2**20  # the cap and one chunk, plus the client's own objects
    assert server.sent < 32 * 2**20  # the client hung up: the rest never went out (socket buffers aside)


@pytest.mark.parametrize("answer, error", [
    (Body([b"<html>oops</html>"], length=17), r"not a chat completion \(malformed JSON"),
    (Body([b"[]"], length=2), r"returned no choices"),
    ({"choices": [{}]}, r"has no message in its first choice"),
    ({"choices": [{"message": {"content": 123}}]}, r"content is not text \(got int\)"),
    ({"choices": [{"message": {"content": "x"}}]}, None),
])
def test_a_200_that_is_not_a_chat_completion_is_a_named_error(answer: Any, error: str | None) -> None:
    with FakeOpenAI(lambda n, body: answer) as server:
        llm = backend(server.base_url)
        if error is None:
            assert llm.complete(MESSAGES, temperature=0.0, max_tokens=10) == "x"
        else:
            with pytest.raises(JudgmentFailed, match=error):
                llm.complete(MESSAGES, temperature=0.0, max_tokens=10)
        llm.close()


# ---------------------------------------------------------------- failure is failure


RECORDS = [("s1", "What is 7 times 8?", "7 times 8 is 56.", "56", "54"),
           ("s2", "Name the capital of France.", "Paris.", "Paris", "Lyon"),
           ("s3", "Give the plural of 'mouse'.", "mice", "mice", "mouses"),
           ("s4", "What is 2 + 2?", "4", "4", "5")]


def run_judge_stage(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "judge.py"), "--generations", "gens", "--verification", "ver",
         "--out", "out/judgments.jsonl", "--cache", "cache", "--metrics", "out/judge.json",
         "--breakdown", "out/breakdown.json", "--plots", "out/plots"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_a_failing_judge_exits_2_and_its_rerun_asks_only_for_what_failed(tmp_path: Path) -> None:
    for name, col in (("tuned", 3), ("base", 4)):
        write_jsonl(tmp_path / "gens" / f"{name}.jsonl", [
            {"id": r[0], "instruction": r[1], "input": "", "reference": r[2], "response": r[col]} for r in RECORDS])
        write_jsonl(tmp_path / "ver" / f"{name}.jsonl", [{"id": r[0], "strict": col == 3} for r in RECORDS])
    state = {"fail": lambda body: True}

    def reply(n: int, body: dict[str, Any]) -> str | int:
        return 500 if state["fail"](body) else grade_with()

    with FakeOpenAI(reply, error_message="scripted error {status}") as server:
        (tmp_path / "params.yaml").write_text(
            f"judge:\n  backend: openai\n  model: judge-model\n  api_key_env: JUDGE_TEST_KEY\n  base_url: "
            f"{server.base_url}\n  concurrency: 1\n  max_retries: 0\n  timeout_s: 5\n"
            "  controls: 0\n")  # the models' 8 grades only (control failures: test_judge_controls)
        first = run_judge_stage(tmp_path)
        print("all-500 run:", first.returncode, first.stderr.strip().splitlines()[-1])
        assert first.returncode == 2 and server.requests == 8
        assert "8 of 8 judge requests failed (100%, more than the 10% allowed); most common: 8x 'judge server " \
               "error 500:" in first.stderr and "rerun to ask only for the failed ones" in first.stderr
        state["fail"] = lambda body: any(w in json.dumps(body) for w in ("Lyon", "mouses"))  # 2 of 8 still fail
        second = run_judge_stage(tmp_path)
        assert second.returncode == 2 and server.requests == 8 + 8
        assert "2 of 8 judge requests failed (25%" in second.stderr
        state["fail"] = lambda body: False
        third = run_judge_stage(tmp_path)
        print("fixed server run:", third.returncode, third.stdout.strip().splitlines()[-1])
        assert third.returncode == 0, third.stderr
        assert server.requests == 8 + 8 + 2  # only the two that failed
        assert "judge_calls=2 cache_hits=6" in third.stdout


# ---------------------------------------------------------------- documents


def test_a_symlink_in_the_documents_folder_is_refused_by_name(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("A document.", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the LLM", encoding="utf-8")
    (docs / "b.txt").symlink_to(secret)
    with pytest.raises(UserError, match=rf"{docs / 'b.txt'}: a symbolic link in the documents folder \(to "
                                        rf"{secret}\)"):
        read_documents(docs, "text")
    (docs / "b.txt").unlink()
    (docs / "sub").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UserError, match=r"sub: a symbolic link"):
        read_documents(docs, "text")


def test_binary_and_non_utf8_documents_are_errors_naming_the_file(tmp_path: Path) -> None:
    for name, data, error in (("bin.txt", b"abc\x00\x01", r"bin\.txt: line 1: contains a NUL byte"),
                              ("latin.md", "caf\xe9".encode("latin-1"), r"latin\.md: line 1: not UTF-8 text")):
        docs = tmp_path / name.replace(".", "_")
        docs.mkdir()
        (docs / name).write_bytes(data)
        with pytest.raises(UserError, match=error):
            read_documents(docs, "text")


def test_malformed_html_is_read_in_one_linear_pass() -> None:
    assert html_to_text("<p>Prices rose 5% <![ note: draft ]> in 2024.</p>") == "Prices rose 5% in 2024."
    assert html_to_text("<p>a &amp; b<script>x = '</p><p>hidden'</script></p><style>p{}</style><p>c < d") \
        == "a & b\n\nc < d"
    assert html_to_text("<p>unclosed <!-- comment <p>gone") == "unclosed"
    for page in ("<a" * 500_000, "<!--" * 250_000, "<![" * 350_000, "<script>" * 130_000, "</" * 500_000,
                 "<p " + "x" * 1_000_000):  # about 1 MB each
        tokens = html_tokens(page)
        # one step per `<` at most, and the steps cover the page once: linear work, whatever the markup
        assert len(tokens) <= page.count("<") + 1
        assert sum(len(v) for k, v in tokens if k == "text") <= len(page)
