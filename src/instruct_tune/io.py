"""Reading and writing the pipeline's files: atomic writes, JSON Lines, deterministic JSON.

Everything a stage writes goes through a temporary file and a rename (the file fsynced before, its folder
after), so an interrupted or failed stage, or a power loss, never leaves a half-written output; a stage that
writes several files in one folder writes them as a set (`write_file_set`), so a kill never leaves new files
beside old ones. Temporary files
are named `.NAME.<pid>.*.tmp` (git-ignored); those of a process that no longer runs are removed by
the next write of NAME. JSON is written with sorted keys and no timestamps, so DVC's hashes and
`dvc metrics diff` stay stable. Append-only files (caches, resumable work) survive a kill mid-append:
`read_jsonl_tolerant` drops the torn line and compacts the file before anything is appended again.
Records a stage reads are checked field by field by `read_records` (`iter_records`: with their line numbers);
files are identified by `sha256_file`.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError, where


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_temps(folder: str | Path, name: str) -> list[Path]:
    """Remove `.NAME.<pid>.*.tmp` files and folders left in `folder` by a writer that was killed.

    A temporary whose process still runs is another writer's work in progress and is left alone; one
    without a pid in its name (an older naming) is stale. Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
        pid = tmp.name[len(name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def temp_prefix(name: str) -> str:
    """`.NAME.<pid>.`: the prefix `clean_stale_temps` recognises (and removes once that process is gone)."""
    return f".{name}.{os.getpid()}."


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable: fsync the folder itself, so a power loss after the rename cannot bring
    back the old name (or no file). Where a folder cannot be opened or synced (Windows, some network and FUSE
    file systems) the rename is still atomic, only not yet durable: that is tolerated."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename, then fsync the
    folder (the file's bytes are synced before the rename, its new name after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8, newlines as written) to `path` via a temporary file and an atomic rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def write_file_set(folder: str | Path, files: dict[str, str | bytes]) -> None:
    """Make `folder` hold exactly `files` (name -> content), all new at once.

    The files are written into a temporary folder beside `folder`, which then takes its place: in one
    atomic exchange where the system has one (Linux), else by two renames, between which a kill leaves
    `folder` missing (and the next run rewrites it), never a mix of new and old files.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder.parent, folder.name)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=temp_prefix(folder.name), suffix=".tmp"))
    try:
        for name, content in files.items():
            if Path(name).name != name:
                raise ValueError(f"write_file_set: {name!r} is not a plain file name")
            with open(tmp / name, "wb") as fh:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp / name, 0o666 & ~_umask())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        fsync_dir(tmp)  # the files' names in the new folder
        if folder.exists() and _exchange(tmp, folder):
            fsync_dir(folder.parent)
            shutil.rmtree(tmp)  # after the exchange it holds the old files
            return
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=temp_prefix(folder.name), suffix=".tmp"))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        fsync_dir(folder.parent)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(path, exc.lineno)}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to read") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-blank line; a bad line raises UserError naming it."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    with fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{where(path, lineno)}: malformed JSON: {exc.msg}") from None
                except RecursionError:
                    raise UserError(f"{where(path, lineno)}: JSON nested too deeply to read") from None
                if not isinstance(record, dict):
                    raise UserError(f"{where(path, lineno)}: expected a JSON object, got {type(record).__name__}")
                yield lineno, record
        except UnicodeDecodeError as exc:
            raise UserError(f"{where(path, lineno + 1)}: not UTF-8 text (byte {exc.start})") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [record for _, record in iter_jsonl(path)]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def iter_records(
    path: str | Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    nonempty: Sequence[str] = (),
    unique: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each record of a JSON Lines file, checked as `read_records` says (an empty file
    yields nothing)."""
    path = Path(path)
    seen: dict[str, int] = {}
    for lineno, record in iter_jsonl(path):
        for name in required:
            value = record.get(name)
            if not isinstance(value, str):
                got = "missing" if name not in record else _shown(value)
                raise UserError(f"{where(path, lineno, name)}: expected a string, got {got}")
            if name in nonempty and not value:
                raise UserError(f"{where(path, lineno, name)}: expected a non-empty string, got ''")
        for name in optional:
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise UserError(f"{where(path, lineno, name)}: expected a string or null, got {_shown(value)}")
        if unique is not None:
            key = record[unique]
            if key in seen:
                raise UserError(f"{where(path, lineno, unique)}: duplicate {unique} {key!r} (also line {seen[key]})")
            seen[key] = lineno
        yield lineno, record


def read_records(
    path: str | Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    nonempty: Sequence[str] = (),
    unique: str | None = None,
    if_empty: str = "no records",
) -> list[dict[str, Any]]:
    """The records of a JSON Lines file, each checked: `required` fields are strings (`nonempty` ones not ""),
    `optional` ones strings or null (or absent), and no two records share their `unique` field. The first bad
    record is a UserError naming the file, line and field and what it holds; an empty file is `if_empty`."""
    path = Path(path)
    records = [record for _, record in iter_records(path, required, optional, nonempty, unique)]
    if not records:
        raise UserError(f"{path}: {if_empty}")
    return records


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(jsonl_line(r) for r in records))


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records and fsync: used for resumable outputs (finished work survives kill -9).

    Writers read the file with `read_jsonl_tolerant` first, which compacts a torn last line away; should a
    file still end mid-line, the new records start on a fresh line, so the fragment cannot swallow them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        torn = False
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        fh.write((b"\n" if torn else b"") + "".join(jsonl_line(r) for r in records).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl_tolerant(path: str | Path) -> list[dict[str, Any]]:
    """Read a resumable append-only file, dropping lines that do not parse (the torn last line of a process
    killed mid-append), and compact the file: rewritten atomically without them, ending with a newline, so
    the next append cannot be glued onto a fragment (and lost with it on the next read)."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records = []
    dropped = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            dropped += 1
    if dropped or (data and not data.endswith(b"\n")):
        atomic_write_text(path, "".join(jsonl_line(r) for r in records))
        if dropped:
            print(f"{path}: dropped {dropped} unreadable line(s) left by an interrupted run; compacted the file",
                  file=sys.stderr)
    return records


CHUNK = 1 << 22  # bytes read at a time when hashing


def sha256_file(path: str | Path, desc: str | None = None) -> str:
    """The SHA-256 of a file, read in chunks (with a progress bar named `desc` when given)."""
    from tqdm.auto import tqdm

    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc,
                                      disable=desc is None) as bar:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def files_digest(path: str | Path) -> str:
    """A SHA-256 over a file, or over every file under a folder (their relative names and SHA-256s): a model's
    identity."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    listing = "".join(f"{file.relative_to(path) if file != path else file.name}\0{sha256_file(file)}\n"
                      for file in files)
    return hashlib.sha256(listing.encode()).hexdigest()
