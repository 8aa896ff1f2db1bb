"""Read a source URI into raw rows: local files, hub datasets, http(s) URLs, and the built-in generator.

URIs:
- a local file: `.json` (a list of objects), `.jsonl`, `.csv` / `.tsv`, `.parquet`, `.txt` (one row a line);
  `file://path` works too. A local directory is handed to `datasets.load_dataset` (its data files).
- `hf:owner/name`, or a bare hub id such as `tatsu-lab/alpaca` that is not a local path: `datasets.load_dataset`.
- `http://...` / `https://...`: streamed to a temporary file (size cap, overall deadline, no https -> http
  redirect, optional expected SHA-256), then read by the URL's file extension.
- `builtin:tasks`: the built-in generator of verifiable tasks (`instruct_tune.tasks.families`), rows in alpaca format.
Every error is a UserError naming the file (or URL, or hub id), the line or record, and the field.
"""

from __future__ import annotations

import csv
import email.message
import hashlib
import io
import json
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from instruct_tune.errors import UserError
from instruct_tune.data.formats import Row

FILE_TYPES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")
BUILTINS = ("tasks",)
BUILTIN_DEFAULT_COUNT = 1000  # records the generator makes when a builtin source gives no `count`
_NUL_HINT = ": the file is binary or corrupted, or not UTF-8 text (UTF-16?); save it as UTF-8"
MAX_NESTING = 64  # a record is an object of strings: deeper JSON is generated or corrupted (and crashed the parser)
URL_TIMEOUT_S = 60.0  # per read: a server that sends nothing for this long has stalled
DEFAULT_MAX_DOWNLOAD_MB = 1000.0  # data.max_download_mb
DEFAULT_DOWNLOAD_TIMEOUT_S = 600.0  # data.download_timeout_s: the whole download
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SCHEME_RE = re.compile(r"^([A-Za-z][\w+.-]+):")


def classify(uri: str) -> tuple[str, str]:
    """(kind, target) for a URI; kind is file | directory | hub | url | builtin."""
    if uri.startswith("builtin:"):
        return "builtin", uri[len("builtin:"):]
    if uri.startswith(("http://", "https://")):
        return "url", uri
    if uri.startswith("hf:"):
        return "hub", uri[len("hf:"):].lstrip("/")
    if uri.startswith("file://"):
        uri = urllib.parse.unquote(uri[len("file://"):])
    elif _SCHEME_RE.match(uri):
        raise UserError(f"{uri}: unknown URI scheme '{_SCHEME_RE.match(uri).group(1)}' "
                        f"(use a local path, hf:<dataset id>, http(s)://..., or builtin:{'|'.join(BUILTINS)})")
    path = Path(uri).expanduser()
    if path.is_dir():
        return "directory", str(path)
    if (path.exists() or path.suffix.lower() in FILE_TYPES or uri.startswith((".", "/", "~"))
            or not _HUB_ID_RE.match(uri)):
        return "file", str(path)
    return "hub", uri


def read_rows(uri: str, split: str = "train", count: int | None = None, seed: int = 0) -> list[Row]:
    """The raw rows of a source (`count` and `seed` only matter to the built-in generator)."""
    kind, target = classify(uri)
    if kind == "file":
        return read_file(Path(target))
    if kind == "url":
        return read_url(target)[0]
    if kind in ("hub", "directory"):
        return read_hub(target, split)
    return read_builtin(target, count, seed)


def read_file(path: Path, display: str | None = None) -> list[Row]:
    """Rows of a local file, parsed by its extension; errors name `display` (the URL for downloads)."""
    display = display or str(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise UserError(f"{display}: unsupported file type '{suffix or '(none)'}' "
                        f"(expected one of {', '.join(FILE_TYPES)})")
    if not path.is_file():
        raise UserError(f"{display}: file not found")
    if suffix == ".parquet":
        rows = _parquet_rows(path, display)
    else:
        text = _read_utf8(path, display)
        if suffix == ".json":
            rows = _json_rows(text, display)
        elif suffix == ".jsonl":
            rows = _jsonl_rows(text, display)
        elif suffix in (".csv", ".tsv"):
            rows = _csv_rows(text, display, "\t" if suffix == ".tsv" else ",")
        else:
            rows = [Row(f"{display}: line {n}", line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not rows:
        raise UserError(f"{display}: no records in the file")
    for row in rows:
        check_row(row)
    return rows


def check_row(row: Row) -> None:
    """Refuse NUL bytes and JSON nested deeper than MAX_NESTING, naming the row and the field (iteratively:
    a recursive walk would itself overflow on the input it is guarding against)."""
    stack: list[tuple[Any, str | None, int]] = [(row.data, None, 1)]
    while stack:
        value, field, depth = stack.pop()
        where = f"{row.location}: field '{field}'" if field is not None else row.location
        if isinstance(value, str):
            if "\x00" in value:
                raise UserError(f"{where}: contains a NUL byte (\\x00){_NUL_HINT}")
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_NESTING:
            raise UserError(f"{where}: JSON nested deeper than {MAX_NESTING} levels (a record is an object of strings)")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and "\x00" in key:
                raise UserError(f"{where}: a field name contains a NUL byte (\\x00){_NUL_HINT}")
            top = str(key) if field is None else field  # errors name the record's top-level field
            stack.append((item, top, depth + 1))


def _nesting_line(text: str) -> int:
    """The line where JSON nesting first exceeds MAX_NESTING (strings skipped), for the error message."""
    depth = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return text.count("\n", 0, match.start()) + 1
        elif token in "]}":
            depth -= 1
    return 1


def _read_utf8(path: Path, display: str) -> str:
    """The file's text; non-UTF-8 bytes and empty files are errors naming the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is tolerated
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{display}: line {line}: not UTF-8 text "
                        f"(byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None
    if not text.strip():
        raise UserError(f"{display}: the file is empty")
    return text.replace("\r\n", "\n")


def _json_rows(text: str, display: str) -> list[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{display}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{display}: line {_nesting_line(text)}: JSON nested deeper than {MAX_NESTING} levels "
                        "(a record is an object of strings)") from None
    if not isinstance(data, list):
        raise UserError(f"{display}: expected a JSON list of records (objects), got {type(data).__name__} "
                        "(for one record a line, name the file .jsonl)")
    return [Row(f"{display}: record {i}", item) for i, item in enumerate(data, 1)]


def _jsonl_rows(text: str, display: str) -> list[Row]:
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(Row(f"{display}: line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{display}: line {n}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise UserError(f"{display}: line {n}: JSON nested deeper than {MAX_NESTING} levels "
                            "(a record is an object of strings)") from None
    return rows


def _csv_rows(text: str, display: str, delimiter: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    try:
        return [Row(f"{display}: line {reader.line_num}", dict(row)) for row in reader]
    except csv.Error as exc:
        raise UserError(f"{display}: line {reader.line_num}: malformed CSV: {exc}") from None


def _parquet_rows(path: Path, display: str) -> list[Row]:
    import pyarrow.parquet as pq  # installed with `datasets`

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"{display}: not a readable parquet file: {exc}") from None
    return [Row(f"{display}: row {i}", item) for i, item in enumerate(table.to_pylist(), 1)]


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects between http(s) URLs only, never from https down to plain http."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: email.message.Message, newurl: str) -> urllib.request.Request | None:
        new_scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        old_scheme = urllib.parse.urlsplit(req.full_url).scheme.lower()
        if new_scheme not in ("http", "https"):
            raise UserError(f"{req.full_url}: refused a redirect to a {new_scheme or 'relative'}: URL ({newurl})")
        if old_scheme == "https" and new_scheme == "http":
            raise UserError(f"{req.full_url}: refused a redirect from https to plain http ({newurl}): the download "
                            "could be tampered with on the way; use the https URL of the final location")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, dest: Path, max_mb: float = DEFAULT_MAX_DOWNLOAD_MB,
             timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S, sha256: str | None = None) -> str:
    """Stream `url` into `dest` with a progress bar; return the SHA-256 of what was downloaded.

    Limits: at most `max_mb` megabytes (checked against Content-Length first, then while reading), one deadline
    of `timeout_s` seconds for the whole download, http(s) only with no https -> http redirect. With `sha256`,
    the download must match it.
    """
    from tqdm.auto import tqdm

    max_bytes = int(max_mb * 1_000_000)
    too_big = (f"{url}: larger than data.max_download_mb={max_mb:g} MB; raise the limit, or download the file "
               "and use the local copy")
    deadline = time.monotonic() + timeout_s
    digest = hashlib.sha256()
    opener = urllib.request.build_opener(_NoDowngradeRedirects)
    try:
        # The socket timeout bounds each read; the deadline, checked after each read, bounds the whole download.
        with opener.open(url, timeout=min(URL_TIMEOUT_S, timeout_s)) as response, open(dest, "wb") as fh:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise UserError(f"{too_big} (Content-Length: {total:,} bytes)")
            done = 0
            with tqdm(total=total, desc=f"download {Path(urllib.parse.urlsplit(url).path).name}", unit="B",
                      unit_scale=True, leave=False, disable=total is not None and total < 1 << 20) as bar:
                while chunk := response.read1(1 << 20):  # read1: returns what has arrived, so the deadline is checked
                    done += len(chunk)
                    if done > max_bytes:
                        raise UserError(f"{too_big} (stopped after {done:,} bytes)")
                    if time.monotonic() > deadline:
                        raise UserError(f"{url}: download not finished after data.download_timeout_s={timeout_s:g} s "
                                        f"({done:,} bytes so far); raise the limit or use a local copy")
                    digest.update(chunk)
                    fh.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise UserError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise UserError(f"{url}: no data for {min(URL_TIMEOUT_S, timeout_s):g} s (data.download_timeout_s="
                            f"{timeout_s:g}): the server stalled") from None
        raise UserError(f"{url}: cannot reach the URL: {reason}") from None
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise UserError(f"{url}: SHA-256 mismatch: expected {sha256.lower()}, downloaded {actual} (the remote file "
                        "changed, or the download was tampered with); check it, then update the source's `sha256`")
    return actual


def read_url(url: str, max_mb: float = DEFAULT_MAX_DOWNLOAD_MB, timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
             sha256: str | None = None) -> tuple[list[Row], str]:
    """Download `url` to a temporary file and read it by the extension of the URL's path: (rows, SHA-256)."""
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower()
    if suffix not in FILE_TYPES:
        raise UserError(f"{url}: cannot tell the file type from the URL "
                        f"(its path must end in one of {', '.join(FILE_TYPES)})")
    with tempfile.TemporaryDirectory(prefix="instruct-tune-") as tmp:
        path = Path(tmp) / f"download{suffix}"
        digest = download(url, path, max_mb, timeout_s, sha256)
        return read_file(path, display=url), digest


def read_hub(name: str, split: str) -> list[Row]:
    """A Hugging Face dataset (hub id or local data folder) through `datasets.load_dataset`."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # datasets raises many types (connection, not found, bad split): all are the user's to fix
        message = " ".join(str(exc).split())[:300]
        raise UserError(f"hub dataset '{name}' (split '{split}'): cannot load it: "
                        f"{type(exc).__name__}: {message}") from None
    rows = [Row(f"hub dataset '{name}' ({split}): row {i}", item) for i, item in enumerate(dataset, 1)]
    if not rows:
        raise UserError(f"hub dataset '{name}' (split '{split}'): no records")
    for row in rows:
        check_row(row)
    return rows


def read_builtin(name: str, count: int | None, seed: int) -> list[Row]:
    """Records of a built-in generator as alpaca rows (with `answer` and `task`)."""
    if name not in BUILTINS:
        available = ", ".join("builtin:" + b for b in BUILTINS)
        raise UserError(f"builtin:{name}: unknown built-in source (available: {available})")
    from instruct_tune.tasks.families import generate_tasks  # imported here: only builtin sources need the generator

    records: list[dict[str, Any]] = generate_tasks(BUILTIN_DEFAULT_COUNT if count is None else count, seed)
    return [Row(f"builtin:{name}: record {i}", record) for i, record in enumerate(records, 1)]
