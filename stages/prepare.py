"""Stage `prepare`: read `data.sources` and the `synthesize` stage's records, clean and filter them, write the
records and their counts (metrics/prepare.json: totals; metrics/breakdown/prepare.json: per source)."""

from pathlib import Path

from instruct_tune.cli import run_stage
from instruct_tune.io import write_json, write_jsonl
from instruct_tune.params import load_params
from instruct_tune.prepare import prepare


def main() -> None:
    params = load_params("params.yaml")
    records, metrics = prepare(params.data, Path("data/synth/records.jsonl"))
    write_jsonl("data/prepared/records.jsonl", records)
    write_json("metrics/breakdown/prepare.json", metrics)  # per source and reason
    headline = {k: metrics[k] for k in ("loaded", "kept", "dropped")}
    downloads = {name: src["sha256"] for name, src in sorted(metrics["sources"].items()) if "sha256" in src}
    if downloads:  # a changed remote file shows in `dvc metrics diff`
        headline["download_sha256"] = downloads
    write_json("metrics/prepare.json", headline)
    print(f"prepare: {metrics['kept']} of {metrics['loaded']} records kept -> data/prepared/records.jsonl")


if __name__ == "__main__":
    run_stage(main)
