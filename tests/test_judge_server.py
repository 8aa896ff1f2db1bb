"""The `openai` judge backend against real HTTP servers on 127.0.0.1 only.

- a real OpenAI-compatible server: `python -m llama_cpp.server` with the bundled GGUF (started once);
- a tiny scripted server (http.server in a thread) that answers garbage, valid grades or verdicts, errors,
  or drops the connection, to test retries, counted errors, outages and the API key's handling;
- a port nobody listens on, and a socket that accepts but never answers (the timeout).

A server returns no token probabilities, so the OpenAI backend has no `choose`: pointwise grades are
written (`scoring: generate`, what `auto` resolves to: one prompt per response, the reference beside it, never
the two-prompt `choices` protocol with its separate comparison prompt), and pairwise verdicts work as before.
`judge_calls` counts requests made (a retry is one more). Every server failure that is not an outage (5xx, no
choices, every response format rejected) is an error for that judgment and is never cached: the next run asks
again.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI
from instruct_tune.evaluate import judge as J
from instruct_tune.evaluate import judge_prompts as JP
from instruct_tune.errors import UserError
from instruct_tune.io import read_jsonl, write_jsonl
from instruct_tune.llm.backends import DUMMY_API_KEY, OpenAIBackend
from instruct_tune.params import JudgeParams

pytest.importorskip("openai")

RECORDS = [
    ("s1", "What is 7 times 8?", "", "7 times 8 is 56.", "7 times 8 is 56.", "It is 54."),
    ("s2", "Name the capital of France.", "", "The capital of France is Paris.", "Paris.", "Lyon."),
    ("s3", "Give the plural of 'mouse'.", "", "The plural of 'mouse' is 'mice'.", "mice", "mouses"),
    ("s4", "Sort these numbers in ascending order.", "9, 2, 5", "2, 5, 9", "2, 5, 9", "9, 5, 2"),
]
VALID = json.dumps({  # a pointwise grade
    "reason": "It matches the reference.", "correct": True,
    "factual_correctness": 5, "instruction_adherence": 4, "clarity_usefulness": 4,
})
VALID_PAIRWISE = json.dumps({
    "response_a": {"factual_correctness": 5, "instruction_adherence": 4, "clarity_usefulness": 4, "total": 13},
    "response_b": {"factual_correctness": 1, "instruction_adherence": 2, "clarity_usefulness": 3, "total": 6},
    "winner": "A", "justification": "A is right.",
})


def write_gens(folder: Path, n: int = len(RECORDS)) -> tuple[Path, Path]:
    for name, col in (("tuned", 4), ("base", 5)):
        write_jsonl(folder / f"{name}.jsonl", [
            {"id": r[0], "instruction": r[1], "input": r[2], "reference": r[3], "response": r[col]} for r in RECORDS[:n]
        ])
    return folder / "tuned.jsonl", folder / "base.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sent_text(server: ScriptedServer) -> list[str]:
    """Everything each request showed the judge: its messages' contents, joined."""
    return ["\n".join(m["content"] for m in r["body"]["messages"]) for r in server.requests]


def judge(tmp_path: Path, params: JudgeParams, n: int = len(RECORDS), backend: Any = None
          ) -> tuple[list, dict, dict, Any]:
    gens = write_gens(tmp_path / "gens", n)
    return J.judge_generations(gens[0], gens[1], ("tuned", "base"), params, tmp_path / "cache", backend=backend,
                               progress=False)


# ---------------------------------------------------------------- a scripted server


class ScriptedServer(FakeOpenAI):
    """fake_openai's server whose `requests` are the requests themselves (path, auth, body), not their count."""

    def __init__(self, reply: Callable[[int, dict[str, Any]], str | int | dict[str, Any] | None]) -> None:
        super().__init__(reply, error_message="scripted error {status}")

    @property
    def requests(self) -> list[dict[str, Any]]:  # type: ignore[override]
        with self.lock:
            return list(self.log)


def openai_params(base_url: str, **kw: Any) -> JudgeParams:
    defaults = dict(backend="openai", base_url=base_url, model="judge-model", api_key_env="JUDGE_TEST_KEY",
                    timeout_s=5.0, max_retries=0, concurrency=1, controls=0)  # the models' grades only: exact counts
    return JudgeParams(**{**defaults, **kw})


# ---------------------------------------------------------------- a real llama.cpp server


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` with the bundled GGUF on a free 127.0.0.1 port; killed at teardown."""
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from instruct_tune.bundled import bundled_gguf_path

    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()), "--model_alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
            stdout=fh, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not come up in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_llama_cpp_server_grades_responses(tmp_path: Path, llama_server: str) -> None:
    params = openai_params(llama_server, model="smollm2", timeout_s=120.0, concurrency=2)
    backend = OpenAIBackend(params, J.pointwise_schema(True))
    judgments, metrics, details, stats = judge(tmp_path, params, n=2, backend=backend)
    assert metrics["n_pairs"] == 2 and metrics["errors"] == 0 and metrics["mode"] == "pointwise", judgments
    assert stats.judge_calls == 4  # 2 pairs x 2 responses, each graded alone, no retry needed under the schema
    assert details["scoring"] == "generate" and details["judge_model"] == f"openai:smollm2@{llama_server}"
    for line in judgments:
        for g in line["grades"].values():
            assert isinstance(g["grade"]["correct"], bool) and 0 <= g["grade"]["total"] <= JP.MAX_TOTAL
    # llama-cpp-python's server rejects `json_schema` (a 500 naming response_format), takes `json_object` + schema
    # (each request steps down from json_schema on its own: the format is never remembered across requests)
    again = judge(tmp_path, params, n=2, backend=OpenAIBackend(params, J.pointwise_schema(True)))
    assert again[3].judge_calls == 0 and again[3].cache_hits == 4 and again[:3] == (judgments, metrics, details)


# ---------------------------------------------------------------- a scripted server


def test_pointwise_grades_go_out_under_the_schema(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: VALID) as server:
        judgments, metrics, details, stats = judge(tmp_path, openai_params(server.base_url), n=2)
    assert stats.judge_calls == 4 and len(server.requests) == 4 and details["scoring"] == "generate"
    body = server.requests[0]["body"]
    assert server.requests[0]["path"] == "/v1/chat/completions" and body["model"] == "judge-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"].count("<<<RESPONSE>>>") == 1
    # blind and one prompt per response: the reference beside it, no model name, no `choices` comparison
    for r, text in zip(server.requests, sent_text(server), strict=True):
        user = r["body"]["messages"][1]["content"]
        assert not re.search(r"\b(tuned|base)\b", text, re.I)
        assert user.count("### Reference answer (correct)") == 1
        assert r["body"]["messages"][0]["content"] not in (JP.COMPARE_SYSTEM, JP.CHOICES_SYSTEM)
        assert not re.search(r"^(Proposed answer|Short reference answer): ", text, re.M) and "ANSWER>>>" not in text
        assert '"reason":"one short sentence' in r["body"]["messages"][0]["content"]  # the written grade's form
    responses = [re.search(r"<<<RESPONSE>>>\n(.*)\n<<<END RESPONSE>>>", t, re.S).group(1) for t in sent_text(server)]
    assert sorted(responses) == sorted(r[c] for r in RECORDS[:2] for c in (4, 5))
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["reason", "correct", *J.CRITERIA] and "maxLength" not in json.dumps(schema)
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.0, 256, 0)
    assert judgments[0]["grades"]["tuned"]["grade"]["total"] == 13 and metrics["tie"] == 2


def test_scoring_choices_needs_the_local_backend(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: VALID) as server:
        with pytest.raises(UserError, match=r"judge\.scoring: choices needs judge\.backend: local .*use generate$"):
            judge(tmp_path, openai_params(server.base_url, scoring="choices"), n=1)
    assert server.requests == []


def test_pairwise_verdicts_from_a_server(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: VALID_PAIRWISE) as server:
        judgments, metrics, _, stats = judge(tmp_path, openai_params(server.base_url, mode="pairwise"), n=2)
    assert stats.judge_calls == 4 and len(server.requests) == 4  # 2 pairs x 2 orders
    assert "<<<RESPONSE A>>>" in server.requests[0]["body"]["messages"][1]["content"]
    assert not [t for t in sent_text(server) if re.search(r"\b(tuned|base)\b", t, re.I)]  # blind
    schema = server.requests[0]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["response_a", "response_b", "winner", "justification"]
    assert metrics["tie"] == 2 and metrics["position_consistency"] == 0.0  # "A" in both orders: a flip
    assert [v["outcome"] for v in judgments[0]["verdicts"]] == ["win", "loss"]


def test_garbage_answers_are_retried_then_counted_as_errors(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: "Sure! The response is correct, obviously.") as server:
        judgments, metrics, details, stats = judge(tmp_path, openai_params(server.base_url, temperature=0.5), n=2)
    assert metrics["errors"] == 2 and metrics["win_rate"] is None and details["n_judged"] == 0
    assert stats.judge_calls == 8 and len(server.requests) == 8  # 2 pairs x 2 responses x (call + retry)
    assert [r["body"]["temperature"] for r in server.requests] == [0.5, 0.0] * 4
    assert server.requests[0]["body"]["response_format"]["type"] == "json_schema"
    retry = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert retry[3]["content"] == ("That reply is not valid (no JSON object in the reply). "
                                   "Reply with the JSON object only.")
    assert all(j["outcome"] == "error" and "retry" in j["error"] for j in judgments)


def test_unsupported_response_formats_fall_back(tmp_path: Path) -> None:
    def no_json_schema(n: int, body: dict[str, Any]) -> str | int:
        fmt = body.get("response_format") or {}
        return 400 if fmt.get("type") == "json_schema" or "schema" in fmt else VALID

    with ScriptedServer(no_json_schema) as server:
        backend = OpenAIBackend(openai_params(server.base_url), J.pointwise_schema(True))
        _, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=2, backend=backend)
    assert metrics["errors"] == 0 and stats.judge_calls == 4
    # every request steps down on its own (a 400 to one request never weakens the format of another, whose
    # cache key says the schema): json_schema, json_object + schema, then plain json_object, which works
    kinds = [((r["body"].get("response_format") or {}).get("type"), "schema" in (r["body"].get("response_format") or {}))
             for r in server.requests]
    assert kinds == [("json_schema", False), ("json_object", True), ("json_object", False)] * 4


def test_every_format_rejected_is_an_error_not_cached(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: 400) as server:
        judgments, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=1)
        assert len(server.requests) == 2 * 4  # each response: json_schema, json_object + schema, json_object, none
        assert metrics["errors"] == 1 and stats.judge_calls == 2  # a failure is not retried by the judge
        assert re.fullmatch(r"judge server rejected every response format \(last: 400: .*scripted error 400.*\)",
                            judgments[0]["grades"]["tuned"]["error"])
        assert not (tmp_path / "cache" / "judgments.jsonl").exists()
        # the server may be fixed by the next run: it asks again
        _, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=1)
    assert len(server.requests) == 2 * 2 * 4 and stats.judge_calls == 2 and stats.cache_hits == 0
    assert metrics["errors"] == 1


def test_a_reply_without_choices_is_an_error_not_cached(tmp_path: Path) -> None:
    empty = {"id": "c", "object": "chat.completion", "created": 0, "model": "judge-model", "choices": [],
             "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}}
    with ScriptedServer(lambda n, body: empty if n == 1 else VALID) as server:
        judgments, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=1)
        assert judgments[0]["grades"]["tuned"]["error"] == "judge server returned no choices"
        assert judgments[0]["grades"]["base"]["error"] is None
        assert metrics["errors"] == 1 and stats.judge_calls == 2 and len(server.requests) == 2
        assert len(read_jsonl(tmp_path / "cache" / "judgments.jsonl")) == 1  # the good grade only
        _, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=1)
    assert metrics["errors"] == 0 and stats.judge_calls == 1 and stats.cache_hits == 1


def test_a_transient_server_error_is_counted_and_not_cached(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: 503 if n == 1 else VALID) as server:
        judgments, metrics, details, stats = judge(tmp_path, openai_params(server.base_url), n=2)
        assert metrics["errors"] == 1 and details["n_judged"] == 1 and stats.judge_calls == 4
        assert judgments[0]["grades"]["tuned"]["error"].startswith("judge server error 503: ")
        _, metrics, _, stats = judge(tmp_path, openai_params(server.base_url), n=2)  # the failed one is tried again
    assert metrics["errors"] == 0 and stats.judge_calls == 1 and stats.cache_hits == 3


def test_server_going_down_stops_with_a_clear_error_and_keeps_finished_work(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: VALID if n <= 3 else None) as server:
        with pytest.raises(UserError, match=r"unreachable.*3 of 8 new judgments finished and are kept"):
            judge(tmp_path, openai_params(server.base_url))
    assert len(read_jsonl(tmp_path / "cache" / "judgments.jsonl")) == 3
    # nobody listens there any more: the cached three are served, the next call fails at once
    dead = openai_params(server.base_url)  # the same URL: the judge's identity (model@url) keys the cache
    # refused at once (a connection error), not waited out (a timeout)
    with pytest.raises(UserError, match=r"judge server http://127\.0\.0\.1:\d+/v1 unreachable \(APIConnectionError.*"
                                        r"0 of 5 new"):
        judge(tmp_path, dead)
    assert len(read_jsonl(tmp_path / "cache" / "judgments.jsonl")) == 3


def test_a_refused_request_stops_the_run(tmp_path: Path) -> None:
    with ScriptedServer(lambda n, body: 401) as server:
        with pytest.raises(UserError, match=r"refused the request \(401: .*JUDGE_TEST_KEY.*0 of 2 new judgments"):
            judge(tmp_path, openai_params(server.base_url), n=1)
    assert len(server.requests) == 1


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    connections: list[socket.socket] = []

    def accept_and_stay_silent(listener: socket.socket) -> None:
        try:
            while True:
                connections.append(listener.accept()[0])
        except OSError:  # the listener closed
            pass

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        threading.Thread(target=accept_and_stay_silent, args=(silent,), daemon=True).start()
        params = openai_params(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", timeout_s=1.0)
        with pytest.raises(UserError, match=r"unreachable \(APITimeoutError.*; timeout 1s, 0 retries\)"):
            judge(tmp_path, params, n=1)
    assert len(connections) == 1  # one request, timed out, not retried
    for conn in connections:
        conn.close()


def test_the_api_key_is_sent_but_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("JUDGE_TEST_KEY", secret)
    with ScriptedServer(lambda n, body: VALID) as server:
        params = openai_params(server.base_url)
        judgments, metrics, details, _ = judge(tmp_path, params, n=2)
        J.write_outputs(judgments, metrics, details, ("tuned", "base"), tmp_path / "out" / "judgments.jsonl",
                        tmp_path / "out" / "judge.json", tmp_path / "out" / "judge_breakdown.json",
                        tmp_path / "out" / "plots")
    assert {r["auth"] for r in server.requests} == {f"Bearer {secret}"}
    assert metrics["win"] == 0 and metrics["tie"] == 2  # the same grade for every response: equal totals
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 9
    assert not [p for p in written if secret.encode() in p.read_bytes()]
    monkeypatch.delenv("JUDGE_TEST_KEY")
    with ScriptedServer(lambda n, body: VALID) as server:
        judge(tmp_path / "nokey", openai_params(server.base_url), n=1)
    assert server.requests[0]["auth"] == f"Bearer {DUMMY_API_KEY}"
    assert os.environ.get("JUDGE_TEST_KEY") is None
