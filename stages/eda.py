"""Stage `eda`: the exploratory analysis of the prepared records -> --metrics (headline), --breakdown
(everything) and --plots."""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.data.eda import compute_eda, write_eda_plots
from instruct_tune.io import write_json
from instruct_tune.params import load_params
from instruct_tune.data.split import read_records


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "records", "plots", "metrics", "breakdown")
    params = load_params().eda
    records = read_records(paths.records)
    metrics = compute_eda(records, params)
    write_eda_plots(records, metrics, paths.plots)
    write_json(paths.breakdown, metrics)  # per source, lengths, verbs, topics
    overall = metrics["overall"]
    lengths = overall["lengths"]
    write_json(paths.metrics, {
        "records": overall["records"], "input_share": overall["input_share"],
        "flesch_mean": overall["flesch_reading_ease"]["mean"],
        **{f"{field}_words_mean": ((lengths.get(field) or {}).get("words") or {}).get("mean")
           for field in ("instruction", "input", "output")},
    })
    print(f"eda: {overall['records']} records, {overall['with_input']} with an input "
          f"({overall['input_share']:.1%}), {len(overall['lda_topics'])} LDA topics")


if __name__ == "__main__":
    run_stage(main)
