"""Stage `judge`: the tuned model against the base model on the test split, by an LLM judge.

Reads data/generations/{tuned,base}.jsonl and params `judge`; writes data/judgments.jsonl,
metrics/judge.json (headline numbers), metrics/breakdown/judge.json (per task, judge validity in
detail) and plots/judge/ (charts). Finished judgments are cached in data/judge_cache/ (scratch, git-ignored, keyed by
content), so a rerun on unchanged inputs makes no judge calls and an interrupted run resumes.
"""

from pathlib import Path

from instruct_tune.cli import run_stage
from instruct_tune.judge import judge_generations, write_outputs
from instruct_tune.params import load_params

NAMES = ("tuned", "base")  # the tuned model's point of view: its wins, losses and ties


def main() -> None:
    params = load_params("params.yaml").judge
    gens = Path("data/generations")
    judgments, metrics, details, stats = judge_generations(
        gens / "tuned.jsonl", gens / "base.jsonl", NAMES, params, Path("data/judge_cache")
    )
    write_outputs(judgments, metrics, details, NAMES, Path("data/judgments.jsonl"), Path("metrics/judge.json"),
                  Path("metrics/breakdown/judge.json"), Path("plots/judge"))
    # Calls depend on the cache, not on the inputs: printed, kept out of metrics/judge.json.
    print(
        f"judge ({metrics['mode']}): {metrics['n_pairs']} pairs, win rate {metrics['win_rate']} "
        f"[{metrics['win_rate_ci_low']}, {metrics['win_rate_ci_high']}], kappa vs verified {metrics['kappa']}, "
        f"errors {metrics['errors']}; judge_calls={stats.judge_calls} cache_hits={stats.cache_hits}"
    )


if __name__ == "__main__":
    run_stage(main)
