"""Stage `report`: --out (REPORT.md) from the metrics and their breakdowns in --metrics, the charts in --plots and
the judgments."""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.io import atomic_write_text
from instruct_tune.params import load_params
from instruct_tune.report.build import build_report


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "metrics", "plots", "judgments", "out")
    params = load_params()
    text = build_report(paths.metrics, paths.plots, paths.judgments, paths.out, examples=params.report.examples)
    atomic_write_text(paths.out, text)
    print(f"wrote {paths.out} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    run_stage(main)
