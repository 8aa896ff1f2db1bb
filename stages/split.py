"""Stage `split`: stratified train / val / test -> data/split/{train,val,test}.jsonl and metrics/split.json."""

from instruct_tune.cli import run_stage
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.params import load_params
from instruct_tune.split import read_records, stratified_split

RECORDS = "data/prepared/records.jsonl"


def main() -> None:
    params = load_params().split
    splits, metrics = stratified_split(read_records(RECORDS), params)
    # The three files appear together: a kill never leaves a new train.jsonl beside an old val.jsonl.
    write_file_set("data/split", {f"{name}.jsonl": "".join(map(jsonl_line, rows)) for name, rows in splits.items()})
    write_json("metrics/breakdown/split.json", metrics)  # strata, shares per split
    write_json("metrics/split.json", {"max_stratum_deviation": metrics["max_stratum_deviation"], **metrics["sizes"]})
    sizes = metrics["sizes"]
    print(f"split: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} of {sizes['population']}; "
          f"max stratum deviation {metrics['max_stratum_deviation']}")


if __name__ == "__main__":
    run_stage(main)
