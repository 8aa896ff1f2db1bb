"""The pipeline's stages as dvc.yaml declares them, for tests that run a stage script as DVC runs it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]


def stages() -> dict[str, dict[str, Any]]:
    return YAML(typ="safe", pure=True).load(REPO / "dvc.yaml")["stages"]


def stage_command(name: str) -> list[str]:
    """Stage `name`'s dvc.yaml `cmd` as an argv: this interpreter, the script's absolute path, its arguments."""
    python, script, *args = shlex.split(stages()[name]["cmd"])
    assert python == "python", f"stage {name}: cmd must start `python stages/...`"
    return [sys.executable, str(REPO / script), *args]


def stage_paths(name: str) -> dict[str, str]:
    """Stage `name`'s `--option PATH` arguments by option name (`--model-dir` -> `model_dir`)."""
    args = stage_command(name)[2:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), f"stage {name}: {args}"
    return {option[2:].replace("-", "_"): path for option, path in zip(args[::2], args[1::2])}
