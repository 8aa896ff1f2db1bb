"""Stage `judge`: the tuned model against the base model on the test split, by an LLM judge.

Reads {tuned,base}.jsonl in --generations, their strict verification in --verification (the `evaluate` stage's,
against which the judge's validity is measured) and params `judge`; writes --out (the judgments, JSON Lines), --metrics
(headline numbers), --breakdown (per task, judge validity in detail) and --plots (charts). Finished judgments are
cached in --cache (scratch, git-ignored, not a DVC out; keyed by content), so a rerun on unchanged inputs makes no
judge calls and an interrupted run resumes.
"""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.evaluate.judge import check_failures, judge_generations, read_verification, write_outputs
from instruct_tune.params import load_params

NAMES = ("tuned", "base")  # the tuned model's point of view: its wins, losses and ties


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "generations", "verification", "out", "cache", "metrics", "breakdown", "plots")
    params = load_params().judge
    verified = tuple(read_verification(paths.verification / f"{name}.jsonl") for name in NAMES)
    judgments, metrics, details, stats = judge_generations(
        paths.generations / "tuned.jsonl", paths.generations / "base.jsonl", NAMES, params, paths.cache,
        verified=verified,
    )
    check_failures(judgments, paths.cache, details)  # too many failed requests: exit 2, every success cached
    write_outputs(judgments, metrics, details, NAMES, paths.out, paths.metrics, paths.breakdown, paths.plots)
    # Calls depend on the cache, not on the inputs: printed, kept out of the metrics.
    print(
        f"judge ({metrics['mode']}): {metrics['n_pairs']} pairs, win rate {metrics['win_rate']} "
        f"[{metrics['win_rate_ci_low']}, {metrics['win_rate_ci_high']}], kappa vs verified {metrics['kappa']}, "
        f"controls judged right {metrics['control_right']} (AUC {metrics['control_auc']}, "
        f"{metrics['n_controls']} records), errors {metrics['errors']}; "
        f"judge_calls={stats.judge_calls} cache_hits={stats.cache_hits}"
    )


if __name__ == "__main__":
    run_stage(main)
