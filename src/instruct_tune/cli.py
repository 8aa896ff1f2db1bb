"""What every stage script shares: its paths from the command line, and a UserError as a message with exit code 2.

A stage's paths are named once, in its dvc.yaml `cmd` (as `--name PATH`), beside the same paths in its deps and
outs; tests/test_contracts.py keeps the two in step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def stage_paths(argv: list[str] | None, description: str | None, *names: str) -> argparse.Namespace:
    """The paths a stage reads and writes: one required `--name PATH` option each (`model_dir`: `--model-dir`)."""
    parser = argparse.ArgumentParser(description=description)
    for name in names:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=Path, required=True, metavar="PATH")
    return parser.parse_args(argv)


def run_stage(main: Callable[[], None]) -> None:
    from instruct_tune.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
