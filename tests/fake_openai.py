"""A tiny OpenAI-compatible chat-completions server for tests that run the judge as a subprocess.

It answers at once: `reply(n, body)` gives each request's answer, a string (the completion's content), an int (an
HTTP error status, whose message is `error_message`, `{status}` filled in), a dict (the whole JSON reply, status
200), None (the connection dropped without a response) or a `Body` (a 200 whose body, given as chunks, is sent as
it is, `delay` seconds before each chunk: a slow drip or a huge reply; `sent` counts the bytes that went out). Every request's Authorization header is kept in `auth`,
and its path, header and body in `log`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERDICT = json.dumps({
    "response_a": {"factual_correctness": 5, "instruction_adherence": 4, "clarity_usefulness": 4, "total": 13},
    "response_b": {"factual_correctness": 1, "instruction_adherence": 2, "clarity_usefulness": 3, "total": 6},
    "winner": "A", "justification": "A is right.",
})


class Body:
    """A 200 reply's raw body: `chunks` (any iterable of bytes) written one by one, `delay` seconds apart, with a
    Content-Length of `length` (None: chunked until the client hangs up)."""

    def __init__(self, chunks: Any, delay: float = 0.0, length: int | None = None) -> None:
        self.chunks, self.delay, self.length = chunks, delay, length


class FakeOpenAI:
    def __init__(self, reply: Callable[[int, dict[str, Any]], str | int | dict[str, Any] | None] = lambda n, body: VERDICT,
                 error_message: str = "scripted error", host: str = "127.0.0.1") -> None:
        self.reply = reply
        self.error_message = error_message
        self.auth: list[str | None] = []
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.sent = 0  # bytes of `Body` replies written to the socket (accepted by the kernel)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection

            def do_POST(self) -> None:  # http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.auth.append(self.headers.get("Authorization"))
                    server.log.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    n = len(server.auth)
                answer = server.reply(n, body)
                if answer is None:
                    self.close_connection = True  # no response at all: the server "went down"
                    return
                if isinstance(answer, Body):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if answer.length is not None:
                        self.send_header("Content-Length", str(answer.length))
                    self.end_headers()
                    self.close_connection = True
                    try:
                        for chunk in answer.chunks:
                            time.sleep(answer.delay)
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            with server.lock:
                                server.sent += len(chunk)
                    except OSError:  # the client hung up: what a bounded client does
                        pass
                    return
                if isinstance(answer, int):
                    status = answer
                    payload: dict[str, Any] = {"error": {"message": server.error_message.format(status=status),
                                                         "type": "invalid_request_error"}}
                elif isinstance(answer, dict):
                    payload, status = answer, 200
                else:
                    status = 200
                    payload = {
                        "id": f"c{n}", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client killed mid-request is expected here
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        with self.lock:
            return len(self.auth)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
