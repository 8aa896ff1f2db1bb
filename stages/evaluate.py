"""Stage `evaluate`: the generated answers scored, with the paired tuned - base comparison.

Reads {base,tuned}.jsonl in --generations and params `evaluate`; writes {base,tuned}.jsonl in --verification (per
response: strict and lenient correctness against the record's exact answer, repetition), --metrics (strict and
lenient accuracy, repetition rate, the paired tuned - base difference with its interval and McNemar p) and
--breakdown (per task family, empty answers). Loads no model: a new verification rule reruns this stage only.
"""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.evaluate.answers import compare_models, read_generation_rows, verification
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.params import load_params

MODELS = ("base", "tuned")


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "generations", "verification", "metrics", "breakdown")
    params = load_params().evaluate
    rows = {name: read_generation_rows(paths.generations / f"{name}.jsonl") for name in MODELS}
    checks = {name: verification(rows[name], params) for name in MODELS}
    write_file_set(paths.verification, {f"{name}.jsonl": "".join(map(jsonl_line, checks[name])) for name in MODELS})
    headline, breakdown = compare_models(rows, checks, params)
    write_json(paths.breakdown, breakdown)
    write_json(paths.metrics, headline)
    h = headline
    print(f"evaluate: strict accuracy base {h['base']['strict_accuracy']} -> tuned {h['tuned']['strict_accuracy']} "
          f"(diff {h['strict_accuracy_diff']}, 95% CI [{h['diff_ci_low']}, {h['diff_ci_high']}], "
          f"McNemar p {h['mcnemar_p']}, n {h['n']})")


if __name__ == "__main__":
    run_stage(main)
