"""Speed of the built-in task generator (the default `builtin:tasks` source): records per second.

The target is 5,000 records in under 2 s on an idle core (the default study draws 1,200). A timing, so it lives
here and not in the tests, where a busy machine would make it flake.

    python bench/bench_tasks.py            # best of 5 runs of 5,000 records
"""

from __future__ import annotations

import argparse
import time

from instruct_tune.tasks.families import generate_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=2.0)
    args = parser.parse_args()
    best = float("inf")
    for run in range(args.runs):
        start = time.perf_counter()
        generate_tasks(args.records, seed=11 + run)
        best = min(best, time.perf_counter() - start)
    verdict = "within" if best < args.target_s else "OVER"
    print(f"tasks: {args.records} records in {best:.3f} s (best of {args.runs}), {args.records / best:,.0f} records/s; "
          f"{verdict} the {args.target_s:g} s target")


if __name__ == "__main__":
    main()
