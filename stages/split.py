"""Stage `split`: stratified train / val / test -> {train,val,test}.jsonl in --out, and --metrics (+ --breakdown)."""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.params import load_params
from instruct_tune.data.split import read_records, stratified_split


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "records", "out", "metrics", "breakdown")
    params = load_params().split
    splits, metrics = stratified_split(read_records(paths.records), params)
    # The three files appear together: a kill never leaves a new train.jsonl beside an old val.jsonl.
    write_file_set(paths.out, {f"{name}.jsonl": "".join(map(jsonl_line, rows)) for name, rows in splits.items()})
    write_json(paths.breakdown, metrics)  # strata, shares per split
    write_json(paths.metrics, {"max_stratum_deviation": metrics["max_stratum_deviation"], **metrics["sizes"]})
    sizes = metrics["sizes"]
    print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} of {sizes['population']}; "
          f"max stratum deviation {metrics['max_stratum_deviation']}")


if __name__ == "__main__":
    run_stage(main)
