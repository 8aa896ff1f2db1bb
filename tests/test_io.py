"""Atomic writes, file sets that appear together, append-only files that survive a torn write, temp cleanup."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instruct_tune import io as iox
from instruct_tune.errors import UserError
from instruct_tune.io import (
    append_jsonl, atomic_write_text, clean_stale_temps, files_digest, iter_records, read_jsonl_tolerant, read_records,
    sha256_file, write_file_set, write_json,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- append-only files


def test_a_torn_last_line_is_dropped_and_the_file_compacted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, [{"key": "a"}, {"key": "b"}])
    with open(path, "ab") as fh:
        fh.write(b'{"key": "c", "raw": ["half a verd')  # a kill in the middle of an append
    assert [r["key"] for r in read_jsonl_tolerant(path)] == ["a", "b"]
    assert path.read_bytes().endswith(b'"b"}\n') and b"half" not in path.read_bytes()  # compacted before any append
    assert "dropped 1 unreadable line(s)" in capsys.readouterr().err
    append_jsonl(path, [{"key": "d"}])
    assert [r["key"] for r in read_jsonl_tolerant(path)] == ["a", "b", "d"]  # the next entry is not lost


def test_a_complete_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b"}')  # killed between the JSON and its newline
    assert [r["key"] for r in read_jsonl_tolerant(path)] == ["a", "b"]
    assert path.read_bytes() == b'{"key": "a"}\n{"key": "b"}\n'


def test_an_append_after_a_fragment_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b", "ra')  # a writer that did not read (compact) first
    append_jsonl(path, [{"key": "c"}])
    assert [r["key"] for r in read_jsonl_tolerant(path)] == ["a", "c"]


def test_torn_multibyte_text_and_non_objects_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_bytes('{"key": "é"}\n[1]\n{"key": "\u00e9'.encode()[:-1])
    assert read_jsonl_tolerant(path) == [{"key": "é"}]


# ---------------------------------------------------------------- temporary files


def test_stale_temporaries_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale_file = tmp_path / f".REPORT.md.{dead_pid}.x1y2.tmp"
    stale_dir = tmp_path / f".split.{dead_pid}.q9.tmp"
    legacy = tmp_path / ".REPORT.md.abc123.tmp"  # the naming before pids: stale
    live = tmp_path / f".REPORT.md.{os.getpid()}.zz.tmp"  # a writer still running: kept
    other = tmp_path / f".OTHER.md.{dead_pid}.x.tmp"  # another file's: left to that file's next write
    stale_file.write_text("x")
    legacy.write_text("x")
    live.write_text("x")
    other.write_text("x")
    (stale_dir / "train.jsonl").parent.mkdir()
    (stale_dir / "train.jsonl").write_text("x")
    atomic_write_text(tmp_path / "REPORT.md", "# report\n")
    assert not stale_file.exists() and not legacy.exists() and live.exists() and other.exists()
    write_file_set(tmp_path / "split", {"train.jsonl": ""})
    assert not stale_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".OTHER.md." + f"{dead_pid}.x.tmp", live.name,
                                                                 "REPORT.md", "split"])
    assert clean_stale_temps(tmp_path / "missing", "x") == []


def test_temporaries_are_git_ignored() -> None:
    names = [".REPORT.md.1234.abcd.tmp", "data/split/.train.jsonl.99.x.tmp", ".split.42.k.tmp/train.jsonl",
             "metrics/.judge.json.7.y.tmp"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=REPO, capture_output=True, text=True)
    assert done.stdout.split() == names


# ---------------------------------------------------------------- file sets


def test_a_file_set_replaces_the_folder_as_a_whole(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "split"
    write_file_set(folder, {"train.jsonl": "1\n", "val.jsonl": "1\n", "extra.txt": "old"})
    write_file_set(folder, {"train.jsonl": "2\n", "val.jsonl": b"2\n"})
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"train.jsonl": "2\n", "val.jsonl": "2\n"}
    assert [p.name for p in folder.parent.iterdir()] == ["split"]  # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~mask and ((folder / "val.jsonl").stat().st_mode & 0o777) == 0o666 & ~mask
    with pytest.raises(ValueError, match="not a plain file name"):
        write_file_set(folder, {"../escape.txt": "x"})
    assert (folder / "train.jsonl").read_text() == "2\n" and [p.name for p in folder.parent.iterdir()] == ["split"]


def test_without_an_atomic_exchange_two_renames_do_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iox, "_exchange", lambda a, b: False)
    folder = tmp_path / "split"
    write_file_set(folder, {"a": "1"})
    write_file_set(folder, {"a": "2", "b": "2"})
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "2", "b": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["split"]


_WRITER = """
import sys
from instruct_tune.io import write_file_set
version = sys.argv[2]
write_file_set(sys.argv[1], {f"{n}.jsonl": (version + "\\n") * 400_000 for n in ("train", "val", "test")})
"""


@pytest.mark.slow
def test_a_kill_never_leaves_new_and_old_files_together(tmp_path: Path) -> None:
    """SIGKILL a writer of three 2.4 MB files at random moments; every state seen is one whole version."""
    folder = tmp_path / "split"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", _WRITER, str(folder), "v0"], env=env, check=True)
    # Kills come at random moments around `delay`, which is steered toward the swap: later after a kill that found
    # the old files, earlier after one that found the new, so both kinds happen however busy the machine is.
    delay = (time.monotonic() - start) / 2
    rng = random.Random(0)
    versions, kills, deadline = set(), 0, time.monotonic() + 30
    for i in range(1, 41):
        if time.monotonic() > deadline:
            break
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), f"v{i}"], env=env)
        time.sleep(rng.uniform(0.5, 1.5) * delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        if folder.exists():  # missing only if killed between the two renames of the fallback (not on Linux)
            heads = {p.name: p.read_text()[:4].strip() for p in folder.iterdir()}
            assert sorted(heads) == ["test.jsonl", "train.jsonl", "val.jsonl"] and len(set(heads.values())) == 1, heads
            version = next(iter(heads.values()))
            versions.add(version)
            delay *= 0.7 if version == f"v{i}" else 1.4
    print(f"file set: {kills} kills, versions seen {len(versions)}, never a mix")
    assert kills >= 10 and len(versions) >= 2  # some kills landed before the swap, some after


def test_write_json_is_atomic_and_deterministic(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1.5], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_read_records_checks_required_optional_nonempty_and_unique_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    spec = {"required": ("id", "text"), "optional": ("note",), "nonempty": ("id",), "unique": "id"}
    cases = {
        '{"id": "a", "text": "x", "note": null}\n{"id": "b", "text": "y"}\n': None,
        '{"id": "a"}\n': "r.jsonl: line 1: field 'text': expected a string, got missing",
        '{"id": "a", "text": ["x"]}\n': "r.jsonl: line 1: field 'text': expected a string, got ['x']",
        '{"id": "", "text": "x"}\n': "r.jsonl: line 1: field 'id': expected a non-empty string, got ''",
        '{"id": "a", "text": "x", "note": 7}\n': "r.jsonl: line 1: field 'note': expected a string or null, got 7",
        '{"id": "a", "text": "x"}\n\n{"id": "a", "text": "y"}\n': "r.jsonl: line 3: field 'id': duplicate id 'a' "
                                                                  "(also line 1)",
        "": "r.jsonl: nothing here",
    }
    for text, message in cases.items():
        path.write_text(text)
        if message is None:
            assert [r["id"] for r in read_records(path, **spec)] == ["a", "b"]
            continue
        with pytest.raises(UserError) as exc:
            read_records(path, **spec, if_empty="nothing here")
        assert str(exc.value) == f"{tmp_path}/{message}", text


def test_iter_records_gives_each_record_with_its_line_and_the_same_checks(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert list(iter_records(path, required=("text",))) == [(1, {"text": "a"}), (3, {"text": "b"})]
    path.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(UserError) as exc:
        list(iter_records(path, required=("text",)))
    assert str(exc.value) == f"{path}: line 2: field 'text': expected a string, got missing"
    path.write_text("")
    assert list(iter_records(path, required=("text",))) == []  # an empty file is the caller's to judge


def test_file_digests(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"\0" * 10_000_000)  # more than one chunk
    assert sha256_file(tmp_path / "m" / "a.bin") == hashlib.sha256(b"\0" * 10_000_000).hexdigest()
    folder = files_digest(tmp_path / "m")
    (tmp_path / "m" / "a.bin").rename(tmp_path / "m" / "b.bin")
    assert files_digest(tmp_path / "m") != folder  # names count, not only contents


def test_atomic_writes_fsync_the_folder_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat as st

    synced: list[tuple[bool, int]] = []  # (a folder?, inode) per fsync
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((st.S_ISDIR(info.st_mode), info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    iox.atomic_write_text(tmp_path / "out.json", "{}\n")
    assert synced == [(False, (tmp_path / "out.json").stat().st_ino), (True, tmp_path.stat().st_ino)]
    synced.clear()
    iox.write_file_set(tmp_path / "set", {"a.txt": "a"})
    assert (True, tmp_path.stat().st_ino) == synced[-1]  # the folder holding the renamed set, last


def test_a_folder_that_cannot_be_synced_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_dirs(path, flags, *args, **kwargs):  # Windows and some network file systems cannot open a folder
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_dirs)
    iox.atomic_write_text(tmp_path / "out.txt", "kept\n")
    iox.write_file_set(tmp_path / "set", {"a.txt": "a"})
    assert (tmp_path / "out.txt").read_text() == "kept\n" and (tmp_path / "set" / "a.txt").read_text() == "a"
