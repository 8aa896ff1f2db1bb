"""The judge's API key: sent only over https or to loopback, named not pasted, never written or printed.

The end-to-end tests run the judge CLI as a subprocess (as a user would) against a fake OpenAI-compatible
server, then grep its stdout, stderr and every file under the working folder for the key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from fake_openai import VERDICT, FakeOpenAI
from instruct_tune.llm.api_keys import (
    DUMMY_API_KEY, check_endpoint, check_env_name, is_loopback, redact, resolve_api_key,
)
from instruct_tune.errors import UserError
from instruct_tune.io import write_jsonl
from instruct_tune.params import JudgeParams, load_params

pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[1]
ENV = "JUDGE_SECRET_FOR_TEST"


def new_key() -> str:
    return f"sk-proj-{uuid.uuid4().hex}{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- the rules


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://localhost:11434/v1", "http://127.0.0.1:8000/v1",
                                 "http://127.3.4.5/v1", "http://[::1]:8000/v1", "http://LOCALHOST/v1",
                                 "http://[::ffff:127.0.0.1]:80/v1"])
def test_https_and_loopback_endpoints_are_allowed(url: str) -> None:
    check_endpoint(url, allow_insecure_http=False)


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "http://10.0.0.5:8000/v1", "http://192.0.2.2/v1",
                                 "http://[2001:db8::1]/v1", "http://localhost.example.com/v1", "http://128.0.0.1/v1"])
def test_plain_http_to_another_host_is_refused_unless_opted_in(url: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UserError, match=r"judge.base_url: .* is plain http to .*not a loopback address.*"
                                        r"judge.allow_insecure_http: true"):
        check_endpoint(url, allow_insecure_http=False)
    check_endpoint(url, allow_insecure_http=True)
    assert "warning: sending the API key over plain http" in capsys.readouterr().err


def test_other_schemes_and_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(UserError, match=r"expected an http:// or https:// URL"):
        check_endpoint("ftp://example.com/v1", allow_insecure_http=True)
    with pytest.raises(UserError, match=r"expected an http:// or https:// URL"):
        check_endpoint("localhost:8000/v1", allow_insecure_http=True)
    with pytest.raises(UserError, match=r"must not contain credentials") as caught:
        check_endpoint("https://me:hunter2secret@api.example.com/v1", allow_insecure_http=False)
    assert "hunter2secret" not in str(caught.value)


def test_loopback() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.1") and is_loopback("127.255.0.9") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "JUDGE_KEY_2", "_my_key", "AZURE_OPENAI_API_KEY"])
def test_variable_names_are_accepted(name: str) -> None:
    check_env_name(name)


@pytest.mark.parametrize("value", [new_key(), "gsk_" + "a1" * 24, "hf_" + "Ab3" * 11, "AIza" + "x9" * 18,
                                   "A1b2C3d4E5f6G7h8J9k0L1m2"])
def test_a_pasted_key_is_rejected_without_echoing_it(value: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"looks like a key itself") as caught:
        check_env_name(value)
    assert value not in str(caught.value) and value[:8] not in str(caught.value)
    # ... also when it is in params.yaml: every stage fails at load, before dvc.lock could record it
    (tmp_path / "params.yaml").write_text(f"judge:\n  api_key_env: {value}\n")
    with pytest.raises(UserError, match=r"looks like a key itself") as caught:
        load_params(tmp_path / "params.yaml")
    assert value not in str(caught.value)


@pytest.mark.parametrize("value", ["my key", "1ST_KEY", "KEY-NAME", "", "X" * 65])
def test_a_value_that_is_no_variable_name_is_rejected(value: str) -> None:
    with pytest.raises(UserError, match=r"must be the NAME of an environment variable"):
        JudgeParams(api_key_env=value)


def test_resolving_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    monkeypatch.setenv(ENV, f"  {key}\n")
    assert resolve_api_key(ENV, "https://api.example.com/v1") == key  # surrounding whitespace trimmed
    monkeypatch.delenv(ENV)
    assert resolve_api_key(ENV, "http://127.0.0.1:8080/v1") == DUMMY_API_KEY  # a local server takes any key
    with pytest.raises(UserError, match=rf"the environment variable {ENV} \(named by judge.api_key_env\) is not set, "
                                        r"and the judge server https://api.example.com/v1 is not on this machine"):
        resolve_api_key(ENV, "https://api.example.com/v1")
    monkeypatch.setenv(ENV, "")  # set but empty: the same
    with pytest.raises(UserError, match="is not set"):
        resolve_api_key(ENV, "https://api.example.com/v1")
    monkeypatch.setenv(ENV, f"{key}\nX-Evil: 1")
    with pytest.raises(UserError, match="whitespace or control characters") as caught:
        resolve_api_key(ENV, "https://api.example.com/v1")
    assert key not in str(caught.value)


def test_redact_removes_the_key_and_fragments_of_it() -> None:
    key = new_key()
    text = f"Incorrect API key provided: {key}. Also {key[:12]}... and {key[-10:]} and sk-pro***{key[-4:]}"
    out = redact(text, key)
    assert key not in out and key[:12] not in out and key[-10:] not in out
    assert out.startswith("Incorrect API key provided: [redacted]")
    assert redact("nothing here", key) == "nothing here"


def test_remote_plain_http_is_refused_before_any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from instruct_tune.evaluate import judge as J
    from instruct_tune.llm.backends import OpenAIBackend

    attempts: list[object] = []

    def no_connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"a connection was attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: no_connect(None, a[0]))  # type: ignore[arg-type]
    monkeypatch.setenv(ENV, new_key())
    params = JudgeParams(backend="openai", base_url="http://203.0.113.7:8000/v1", api_key_env=ENV)
    with pytest.raises(UserError, match=r"plain http to 203\.0\.113\.7"):
        OpenAIBackend(params, J.pairwise_schema())
    assert attempts == []


# ---------------------------------------------------------------- end to end: the judge CLI as a subprocess


def _workdir(root: Path, base_url: str, **judge: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, response in (("tuned", "56"), ("base", "54")):
        write_jsonl(root / "gens" / f"{name}.jsonl", [
            {"id": f"r{i}", "instruction": f"What is 7 times {i}?", "input": "", "reference": str(7 * i),
             "response": response} for i in range(3)
        ])
    settings = {"backend": "openai", "mode": "pairwise", "base_url": base_url, "model": "judge-model", "api_key_env": ENV,
                "timeout_s": 10.0, "max_retries": 0, "concurrency": 1, **judge}
    (root / "params.yaml").write_text("judge:\n" + "".join(f"  {k}: {str(v).lower() if isinstance(v, bool) else v}\n"
                                                         for k, v in settings.items()))
    return root


def _judge_cli(root: Path, key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update({"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"})
    if key is not None:
        env[ENV] = key
    return subprocess.run(
        [sys.executable, "-m", "instruct_tune.evaluate.head_to_head", "--a", "gens/tuned.jsonl", "--b", "gens/base.jsonl",
         "--names", "tuned,base", "--out", "out", "--cache", "cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )


def _leaks(key: str, root: Path, done: subprocess.CompletedProcess) -> list[str]:
    """Where the key (or its first or last 12 characters) appears: stdout, stderr or any file under `root`."""
    pieces = [key, key[:12], key[-12:]]
    places = [name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if any(p in text for p in pieces)]
    files = [p for p in root.rglob("*") if p.is_file()]
    places += [str(p) for p in files if any(x.encode() in p.read_bytes() for x in pieces)]
    return places


def test_the_key_is_never_printed_or_written_on_success_or_on_401(tmp_path: Path) -> None:
    key = new_key()
    with FakeOpenAI(lambda n, body: f"{key} {VERDICT}") as server:  # a server that echoes the key in its reply
        root = _workdir(tmp_path / "ok", server.base_url)
        done = _judge_cli(root, key)
    assert done.returncode == 0, done.stderr
    assert server.auth and set(server.auth) == {f"Bearer {key}"}  # the key did reach the server
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    print(f"success path: {server.requests} requests with the key; exit 0; files written: {len(files)}")
    assert {"cache/judgments.jsonl", "out/judgments.jsonl", "out/judge.json"} <= set(files)
    assert _leaks(key, root, done) == []

    with FakeOpenAI(lambda n, body: 401, error_message=f"Incorrect API key provided: {key}. "
                                                       f"You can find your key at sk-...{key[-4:]}") as server:
        root = _workdir(tmp_path / "denied", server.base_url)
        denied = _judge_cli(root, key)
    assert denied.returncode == 2
    assert "refused the request (401" in denied.stderr and "[redacted]" in denied.stderr
    assert "Traceback" not in denied.stderr
    print(f"401 path: exit {denied.returncode}; stderr: {denied.stderr.strip()}")
    assert _leaks(key, root, denied) == []


def test_an_unset_key_is_an_error_for_a_remote_server_and_fine_for_loopback(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        done = _judge_cli(_workdir(tmp_path / "local", server.base_url), key=None)
    assert done.returncode == 0, done.stderr
    assert set(server.auth) == {f"Bearer {DUMMY_API_KEY}"}
    remote = _judge_cli(_workdir(tmp_path / "remote", "https://judge.invalid/v1"), key=None)
    assert remote.returncode == 2 and f"the environment variable {ENV} (named by judge.api_key_env) is not set" in remote.stderr


def _own_non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if is_loopback(address) or address == "0.0.0.0" else address


def test_a_real_server_on_a_non_loopback_address_gets_no_request_over_plain_http(tmp_path: Path) -> None:
    address = _own_non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    key = new_key()
    with FakeOpenAI(host="0.0.0.0") as server:
        url = f"http://{address}:{server.port}/v1"
        refused = _judge_cli(_workdir(tmp_path / "refused", url), key)
        assert refused.returncode == 2 and "is plain http to" in refused.stderr and "not a loopback address" in refused.stderr
        print(f"remote http refused: exit {refused.returncode}, requests received {server.requests}; "
              f"stderr: {refused.stderr.strip()}")
        assert server.requests == 0  # refused before any request: the key never left
        assert key not in refused.stdout + refused.stderr
        allowed = _judge_cli(_workdir(tmp_path / "allowed", url, allow_insecure_http=True), key)
        assert allowed.returncode == 0, allowed.stderr
        assert "warning: sending the API key over plain http" in allowed.stderr and server.requests > 0


# ---------------------------------------------------------------- proxies and query strings


class RecordingProxy:
    """A loopback HTTP proxy that records every request it gets (its first line and Authorization header) and
    answers 502: it never forwards anything."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                proxy.seen.append((self.requestline, self.headers.get("Authorization")))
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_CONNECT = _record

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "HTTPS_PROXY"])
def test_the_key_never_goes_through_a_proxy_to_a_loopback_server(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from instruct_tune.llm.backends import OpenAIBackend

    key = new_key()
    monkeypatch.setenv(ENV, key)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with RecordingProxy() as proxy, FakeOpenAI() as server:
        monkeypatch.setenv(variable, proxy.url)
        if variable == "HTTPS_PROXY":  # and the plain-http server through it too
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
        params = JudgeParams(backend="openai", base_url=server.base_url, api_key_env=ENV, timeout_s=5.0, max_retries=0)
        backend = OpenAIBackend(params, {"type": "object"})
        try:
            reply = backend.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=8)
        finally:
            backend.close()
    print(f"{variable}={proxy.url}: proxy saw {len(proxy.seen)} requests; the server saw {server.requests}")
    assert proxy.seen == []
    assert server.auth == [f"Bearer {key}"] and reply == VERDICT


@pytest.mark.parametrize("url", ["https://api.example.com/v1?api_key=sk-proj-abcdef0123456789secret",
                                 "https://api.example.com/v1?key=sk-proj-abcdef0123456789secret#frag",
                                 "http://127.0.0.1:8000/v1?token=sk-proj-abcdef0123456789secret",
                                 "https://api.example.com/v1#sk-proj-abcdef0123456789secret",
                                 "https://api.example.com/v1?"])
def test_a_query_string_or_fragment_in_the_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(UserError) as caught:
        check_endpoint(url, allow_insecure_http=True)
    message = str(caught.value)
    assert "must not contain a query string or fragment" in message and "judge.api_key_env" in message
    assert "abcdef0123456789" not in message and "?" not in message.split("(")[0]
    print(message)


def test_the_judges_identity_never_holds_credentials_or_a_query(monkeypatch: pytest.MonkeyPatch) -> None:
    from instruct_tune.llm.backends import OpenAIBackend

    monkeypatch.delenv(ENV, raising=False)
    backend = OpenAIBackend(JudgeParams(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key_env=ENV),
                            {"type": "object"})
    try:
        assert backend.model_id == "openai:m@http://127.0.0.1:9/v1"
    finally:
        backend.close()


def test_plain_http_to_a_remote_host_through_a_proxy_says_the_proxy_sees_the_key(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@proxy.example.com:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    check_endpoint("http://10.0.0.5:8000/v1", allow_insecure_http=True)
    err = capsys.readouterr().err
    assert "through the proxy http://proxy.example.com:3128/, which sees it too" in err or \
        "through the proxy http://proxy.example.com:3128, which sees it too" in err
    assert "pw" not in err
