"""The resume state of a training run (models/checkpoints): its fingerprint, and which checkpoints can be resumed.

Checkpoints are kept only while the fingerprint (the params but their operational fields, and the token ids and
labels trained and evaluated on) is unchanged; a checkpoint torn by a kill (a missing or truncated file) is
dropped before the Trainer sees it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from instruct_tune.io import write_json
from instruct_tune.params import ModelParams, TrainParams, fingerprint

FINGERPRINT = "fingerprint.json"


def checkpoint_fingerprint(model: ModelParams, train: TrainParams, train_rows: list[dict[str, list[int]]],
                           val_examples: list[dict[str, list[int]]]) -> dict[str, Any]:
    """What a checkpoint depends on: the `model` and `train` params but their operational fields, and the token
    ids and labels it trains and evaluates on, which carry the data, the prompt templates' text, the tokenizer and
    the label rules; so an edited prompt never resumes from checkpoints made with the old one."""
    def digest(rows: list[dict[str, list[int]]]) -> str:
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()

    return {"model": fingerprint(model), "train": fingerprint(train), "train_rows": digest(train_rows),
            "val_examples": digest(val_examples)}


def checkpoint_dirs(folder: Path) -> list[Path]:
    dirs = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name.split("-", 1)[1]))


# A checkpoint needs its state, its weights (full or LoRA adapter) and its optimizer to be resumed from.
_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _file_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be read as resuming reads it (None when it can), without loading tensors."""
    suffix = path.suffix
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:  # checks the header against the file's length
                fh.keys()
        elif suffix in (".pt", ".pth"):
            # optimizer, scheduler, RNG state: loaded as Trainer loads them (weights_only=True, numpy's RNG state
            # allowed); mmap reads the structure (zip directory, pickle) and maps tensors without reading them.
            from transformers.trainer_pt_utils import safe_globals

            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        elif suffix == ".bin":
            import zipfile

            zipfile.ZipFile(path).close()  # training_args.bin pickles an object: its zip directory must be whole
    except Exception as exc:  # each reader raises its own types for a torn file
        message = " ".join(str(exc).split())[:120]
        return f"unreadable ({type(exc).__name__}: {message})"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from, or None when it is complete.

    Complete: trainer_state.json parses (transformers writes it last, in place, so a kill during that write
    tears it), a weights file and optimizer.pt are there, and every JSON, safetensors and torch file in the
    folder reads (a truncated file fails: its length no longer matches its header or zip directory).
    """
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (killed while saving)"
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        return f"no weights ({' or '.join(_WEIGHT_FILES[:2])})"
    if not (path / "optimizer.pt").is_file():
        return "no optimizer.pt"
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        problem = _file_problem(file)
        if problem is not None:
            return f"{file.name}: {problem}"
    return None


def prepare_checkpoints(folder: Path, expected: dict[str, Any]) -> None:
    """Keep checkpoints only if they were made from the same params and data; drop incomplete or torn ones."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / FINGERPRINT
    found = json.loads(stamp.read_text()) if stamp.exists() else None
    if found != expected:
        stale = checkpoint_dirs(folder)
        if stale:
            print(f"train: discarding {len(stale)} checkpoint(s) in {folder}: made from other params or data")
        for path in stale:
            shutil.rmtree(path)
        write_json(stamp, expected)
    for path in checkpoint_dirs(folder):
        problem = checkpoint_problem(path)
        if problem is not None:  # a resume from it would crash, and a later save would mix into it
            print(f"train: discarding incomplete checkpoint {path}: {problem}")
            shutil.rmtree(path)


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint; each newer incomplete one is reported and skipped."""
    for path in reversed(checkpoint_dirs(folder)):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        print(f"train: skipping incomplete checkpoint {path}: {problem}")
    return None
