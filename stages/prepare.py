"""Stage `prepare`: read `data.sources` and the `synthesize` stage's records (--synth), clean and filter them, write
the records and their counts (--metrics: totals; --breakdown: per source)."""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.io import write_json, write_jsonl
from instruct_tune.params import load_params
from instruct_tune.data.prepare import prepare


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "synth", "records", "metrics", "breakdown")
    params = load_params()
    records, metrics = prepare(params.data, paths.synth)
    write_jsonl(paths.records, records)
    write_json(paths.breakdown, metrics)  # per source and reason
    headline = {k: metrics[k] for k in ("loaded", "kept", "dropped")}
    downloads = {name: src["sha256"] for name, src in sorted(metrics["sources"].items()) if "sha256" in src}
    if downloads:  # a changed remote file shows in `dvc metrics diff`
        headline["download_sha256"] = downloads
    write_json(paths.metrics, headline)
    print(f"prepare: {metrics['kept']} of {metrics['loaded']} records kept -> {paths.records}")


if __name__ == "__main__":
    run_stage(main)
