"""Reading URIs: local files of each type, a real local HTTP server, a datasets folder, the hub, builtin."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from instruct_tune.errors import UserError
from instruct_tune.data.sources import classify, read_builtin, read_file, read_hub, read_rows, read_url

ALPACA = [{"instruction": "Say hi.", "input": "", "output": "Hi!"}, {"instruction": "Add 2 and 3.", "output": "5"}]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_classify(tmp_path):
    existing = write(tmp_path / "a.json", "[]")
    assert classify("builtin:tasks") == ("builtin", "tasks")
    assert classify("https://x.org/a.json") == ("url", "https://x.org/a.json")
    assert classify("hf:tatsu-lab/alpaca") == ("hub", "tatsu-lab/alpaca")
    assert classify("tatsu-lab/alpaca") == ("hub", "tatsu-lab/alpaca")
    assert classify(str(existing)) == ("file", str(existing))
    assert classify(f"file://{existing}") == ("file", str(existing))
    assert classify("data/missing.json") == ("file", "data/missing.json")  # a file name, not a hub id
    assert classify(str(tmp_path)) == ("directory", str(tmp_path))
    with pytest.raises(UserError, match=r"s3://bucket/a.json: unknown URI scheme 's3'"):
        classify("s3://bucket/a.json")


def test_json_jsonl_csv_tsv_txt(tmp_path):
    rows = read_file(write(tmp_path / "a.json", json.dumps(ALPACA)))
    assert [r.data for r in rows] == ALPACA and rows[1].location.endswith("a.json: record 2")
    rows = read_file(write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in ALPACA) + "\n\n"))
    assert [r.data for r in rows] == ALPACA and rows[1].location.endswith("a.jsonl: line 2")
    rows = read_file(write(tmp_path / "a.csv", 'instruction,input,output\n"Say, hi.",,Hi!\nAdd.,"2, 3",5\n'))
    assert [r.data for r in rows] == [{"instruction": "Say, hi.", "input": "", "output": "Hi!"},
                                      {"instruction": "Add.", "input": "2, 3", "output": "5"}]
    assert rows[1].location.endswith("a.csv: line 3")
    rows = read_file(write(tmp_path / "a.tsv", "question\tanswer\nQ?\tA.\n"))
    assert [r.data for r in rows] == [{"question": "Q?", "answer": "A."}]
    rows = read_file(write(tmp_path / "d.txt", "A __eou__ B __eou__\n\nC __eou__ D\n"))
    assert [(r.location.split(": ")[-1], r.data) for r in rows] == [("line 1", "A __eou__ B __eou__"),
                                                                    ("line 3", "C __eou__ D")]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    conv = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    pq.write_table(pa.Table.from_pylist([{"conversations": conv}]), tmp_path / "c.parquet")
    rows = read_file(tmp_path / "c.parquet")
    assert rows[0].data == {"conversations": conv} and rows[0].location.endswith("c.parquet: row 1")
    write(tmp_path / "bad.parquet", "not parquet")
    with pytest.raises(UserError, match=r"bad.parquet: not a readable parquet file"):
        read_file(tmp_path / "bad.parquet")


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"instruction": "x"}\n{"instruction": \n', r"a.jsonl: line 2: malformed JSON"),
    ("a.json", '[\n {"instruction": "x"},\n {"instruction" "y"}\n]', r"a.json: line 3: malformed JSON"),
    ("a.json", '{"instruction": "x", "output": "y"}', r"a.json: expected a JSON list of records"),
    ("a.json", "", r"a.json: the file is empty"),
    ("a.jsonl", "\n  \n", r"a.jsonl: the file is empty"),
    ("a.json", "[]", r"a.json: no records in the file"),
    ("a.jsonl", b'{"instruction": "ok"}\n{"instruction": "caf\xe9"}\n', r"a.jsonl: line 2: not UTF-8 text"),
    ("a.xml", "<a/>", r"a.xml: unsupported file type '.xml'"),
])
def test_file_errors(tmp_path, name, content, message):
    with pytest.raises(UserError, match=message):
        read_file(write(tmp_path / name, content))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope.json: file not found"):
        read_rows(str(tmp_path / "nope.json"))


@pytest.fixture
def http_dir(tmp_path):
    """A real HTTP server on 127.0.0.1 serving `tmp_path`."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_download(http_dir):
    folder, base = http_dir
    write(folder / "data.json", json.dumps(ALPACA))
    rows = read_rows(f"{base}/data.json?raw=1")
    assert [r.data for r in rows] == ALPACA and rows[0].location == f"{base}/data.json?raw=1: record 1"
    write(folder / "bad.jsonl", '{"a": 1}\nnot json\n')
    with pytest.raises(UserError, match=rf"{base}/bad.jsonl: line 2: malformed JSON"):  # errors name the URL
        read_url(f"{base}/bad.jsonl")
    with pytest.raises(UserError, match=r"missing.json: download failed: HTTP 404"):
        read_url(f"{base}/missing.json")
    with pytest.raises(UserError, match=r"cannot tell the file type from the URL"):
        read_url(f"{base}/data")


def test_unreachable_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=rf"http://127.0.0.1:{port}/a.json: cannot reach the URL"):
        read_url(f"http://127.0.0.1:{port}/a.json")


def test_datasets_folder_goes_through_load_dataset(tmp_path):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write(folder / "train.jsonl", "\n".join(json.dumps(r | {"input": r.get("input", "")}) for r in ALPACA))
    rows = read_rows(str(folder))
    assert [r.data["instruction"] for r in rows] == ["Say hi.", "Add 2 and 3."]
    assert rows[0].location == f"hub dataset '{folder}' (train): row 1"


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    import datasets

    def offline(name, split):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match=r"hub dataset 'tatsu-lab/alpaca' \(split 'train'\): cannot load it: "
                                        r"ConnectionError: Couldn't reach"):
        read_rows("hf:tatsu-lab/alpaca")
    with pytest.raises(UserError, match=r"hub dataset 'tatsu-lab/alpaca' \(split 'test'\)"):
        read_hub("tatsu-lab/alpaca", "test")


def test_builtin():
    rows = read_builtin("tasks", 20, seed=3)
    assert len(rows) == 20
    assert all(r.data["answer"] in r.data["output"] and r.data["task"] for r in rows)
    assert [r.data for r in read_builtin("tasks", 20, seed=3)] == [r.data for r in rows]
    with pytest.raises(UserError, match=r"builtin:nope: unknown built-in source \(available: builtin:tasks\)"):
        read_rows("builtin:nope")


# ---------------------------------------------------------------- malformed inputs (issue 8)


def _nested(depth: int) -> str:
    return "[" * (depth - 1) + '"x"' + "]" * (depth - 1)


@pytest.mark.parametrize("name, content, message", [
    # nesting that parses, but is deeper than any record: named by line and field
    ("a.jsonl", '{"instruction": "ok", "output": "ok"}\n{"instruction": "x", "input": %s, "output": "y"}\n' % _nested(70),
     r"a.jsonl: line 2: field 'input': JSON nested deeper than 64 levels"),
    ("a.json", '[{"instruction": "x", "output": {"a": %s}}]' % _nested(64), r"a.json: record 1: field 'output': JSON nested"),
    # nesting that used to crash the parser with a RecursionError (traceback, exit 1)
    ("a.jsonl", '{"instruction": "ok", "output": "ok"}\n{"input": %s}\n' % _nested(200_000),
     r"a.jsonl: line 2: JSON nested deeper than 64 levels"),
    ("a.json", '[\n{"instruction": "ok"},\n{"input": %s}\n]' % _nested(200_000), r"a.json: line 3: JSON nested deeper than 64"),
    # NUL bytes: raw in a CSV (Python's csv reader accepts them), escaped in JSON, raw in a text line
    ("a.csv", 'instruction,output\nSay hi.,Hi!\nAdd.,5\x00\n', r"a.csv: line 3: field 'output': contains a NUL byte"),
    ("a.jsonl", '{"instruction": "ok", "output": "a\\u0000b"}\n', r"a.jsonl: line 1: field 'output': contains a NUL byte"),
    ("a.jsonl", '{"instruction": "ok", "in\\u0000put": "b"}\n', r"a.jsonl: line 1: a field name contains a NUL byte"),
    ("d.txt", "A __eou__ B\nC \x00__eou__ D\n", r"d.txt: line 2: contains a NUL byte"),
    ("u16.csv", "instruction,output\nSay hi.,Hi!\n".encode("utf-16-le"), r"u16.csv: line 2: a field name contains a NUL byte \(\\x00\): .*UTF-16"),
])
def test_malformed_inputs_are_clear_errors(tmp_path, name, content, message):
    with pytest.raises(UserError, match=message):
        read_file(write(tmp_path / name, content))


def test_nesting_at_the_limit_is_fine(tmp_path):
    rows = read_file(write(tmp_path / "a.jsonl", '{"instruction": "x", "input": %s}\n' % _nested(63)))
    assert rows[0].data["instruction"] == "x"


# ---------------------------------------------------------------- URL limits (issue 8)

ROWS_JSONL = "".join(json.dumps(r) + "\n" for r in ALPACA).encode()


class _Routes(http.server.BaseHTTPRequestHandler):
    """Scripted answers: a good file, too big (declared or not), slow, stalled, and redirects."""

    routes: dict[str, str] = {}  # path -> target URL for redirects, set per server
    slow_sent: list[int] = [0]  # bytes of /slow.jsonl sent before the client hung up (the last request's)

    def do_GET(self) -> None:  # http.server's naming
        path = self.path.split("?")[0]
        try:
            if path in self.routes:
                self.send_response(302)
                self.send_header("Location", self.routes[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path == "/data.jsonl":
                self._send(ROWS_JSONL)
            elif path == "/big.jsonl":
                self.send_response(200)
                self.send_header("Content-Length", str(3_000_000))
                self.end_headers()
                self.wfile.write(b" " * 3_000_000)
            elif path == "/unsized.jsonl":  # no Content-Length: the body ends when the connection closes
                self.send_response(200)
                self.end_headers()
                for _ in range(30):
                    self.wfile.write(b" " * 100_000)
            elif path == "/slow.jsonl":  # a byte every 50 ms: every read is in time, the whole never is
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for sent in range(1000):
                    self.slow_sent[-1] = sent
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
                self.slow_sent[-1] = 1000
            elif path == "/stall.jsonl":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.flush()
                time.sleep(5)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(routes: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None):
    handler = type("Handler", (_Routes,), {"routes": routes or {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def http_base():
    server = _serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_size_cap(http_base):
    with pytest.raises(UserError, match=rf"{http_base}/big.jsonl: larger than data.max_download_mb=1 MB; raise the "
                                        r"limit, or download the file and use the local copy \(Content-Length: 3,000,000"):
        read_url(f"{http_base}/big.jsonl", max_mb=1)
    with pytest.raises(UserError, match=r"unsized.jsonl: larger than data.max_download_mb=0.5 MB.*\(stopped after"):
        read_url(f"{http_base}/unsized.jsonl", max_mb=0.5)
    rows, digest = read_url(f"{http_base}/data.jsonl", max_mb=1)
    assert [r.data for r in rows] == ALPACA and digest == hashlib.sha256(ROWS_JSONL).hexdigest()


def test_download_deadline_with_a_slow_or_stalled_server(http_base):
    with pytest.raises(UserError, match=r"slow.jsonl: download not finished after data.download_timeout_s=0.5 s"):
        read_url(f"{http_base}/slow.jsonl", timeout_s=0.5)  # 1000 bytes at 20/s would take 50 s
    assert _Routes.slow_sent[-1] < 1000  # it hung up on the slow server, long before the body's end
    with pytest.raises(UserError, match=r"stall.jsonl: no data for 0.5 s .*the server stalled"):
        read_url(f"{http_base}/stall.jsonl", timeout_s=0.5)  # the server stalls 5 s, then ends the body short


def test_expected_sha256(http_base):
    good = hashlib.sha256(ROWS_JSONL).hexdigest()
    assert read_url(f"{http_base}/data.jsonl", sha256=good.upper())[1] == good
    with pytest.raises(UserError, match=rf"data.jsonl: SHA-256 mismatch: expected {'0' * 64}, downloaded {good}"):
        read_url(f"{http_base}/data.jsonl", sha256="0" * 64)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, trusted by this test through SSL_CERT_FILE."""
    x509 = pytest.importorskip("cryptography.x509")
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_redirects_never_downgrade_https_to_http(tmp_path, http_base, monkeypatch):
    tls = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    https = _serve(tls=tls)
    base = f"https://127.0.0.1:{https.server_address[1]}"
    https.RequestHandlerClass.routes.update({
        "/to-http.jsonl": f"{http_base}/data.jsonl",
        "/to-https.jsonl": f"{base}/data.jsonl",
        "/to-file.jsonl": "file:///etc/passwd",
        "/to-ftp.jsonl": "ftp://127.0.0.1/data.jsonl",
    })
    try:
        rows, _ = read_url(f"{base}/to-https.jsonl")  # https -> https: followed
        assert [r.data for r in rows] == ALPACA
        with pytest.raises(UserError, match=rf"{base}/to-http.jsonl: refused a redirect from https to plain http "
                                            rf"\({http_base}/data.jsonl\)"):
            read_url(f"{base}/to-http.jsonl")
        with pytest.raises(UserError, match=r"to-ftp.jsonl: refused a redirect to a ftp: URL"):
            read_url(f"{base}/to-ftp.jsonl")
        with pytest.raises(UserError, match=r"to-file.jsonl: download failed: HTTP 302 .*file:///etc/passwd' is not allowed"):
            read_url(f"{base}/to-file.jsonl")  # urllib itself refuses this one
    finally:
        https.shutdown()
        https.server_close()


def test_prepare_records_the_sha256_of_a_url_source(http_base):
    from instruct_tune.params import DataParams, SourceParams
    from instruct_tune.data.prepare import prepare

    good = hashlib.sha256(ROWS_JSONL).hexdigest()
    _, metrics = prepare(DataParams(sources=[SourceParams(uri=f"{http_base}/data.jsonl", name="web", sha256=good)]))
    assert metrics["sources"]["web"]["sha256"] == good and metrics["kept"] == 2
    with pytest.raises(UserError, match=r"`data.sources\[0\].sha256` applies to http\(s\) sources only"):
        prepare(DataParams(sources=[SourceParams(uri="builtin:tasks", sha256=good)]))
    with pytest.raises(UserError, match=r"`data.sources\[0\].sha256` must be 64 hexadecimal digits"):
        prepare(DataParams(sources=[SourceParams(uri=f"{http_base}/data.jsonl", sha256="abc")]))
