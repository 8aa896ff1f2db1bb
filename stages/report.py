"""Stage `report`: REPORT.md from the metrics, their breakdowns, the charts and the judgments."""

from pathlib import Path

from instruct_tune.cli import run_stage
from instruct_tune.io import atomic_write_text
from instruct_tune.params import load_params
from instruct_tune.report import build_report


def main() -> None:
    params = load_params()
    text = build_report(examples=params.report.examples)
    atomic_write_text(Path("REPORT.md"), text)
    print(f"wrote REPORT.md ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    run_stage(main)
