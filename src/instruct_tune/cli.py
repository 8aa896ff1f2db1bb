"""What every stage script shares: run `main`, turn a UserError into a clear message and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_stage(main: Callable[[], None]) -> None:
    from instruct_tune.errors import UserError

    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
