"""Judge any two generation files against each other, e.g. the Full and the Small tuned models on the same test
records: `python -m instruct_tune.evaluate.head_to_head --a full/tuned.jsonl --b small/tuned.jsonl --names full,small
--out head_to_head/`.

Both files are verified here (the `evaluate` stage's rules) so the judge's validity is measured as in the study.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from instruct_tune.errors import UserError
from instruct_tune.evaluate.answers import strict_by_id
from instruct_tune.evaluate.judge import DEFAULT_CACHE, judge_generations, write_outputs
from instruct_tune.params import PARAMS_FILE, load_params


def main(argv: Sequence[str] | None = None) -> None:
    """Judge any two generation files against each other, e.g. the Full and the Small tuned models."""
    parser = argparse.ArgumentParser(prog="python -m instruct_tune.evaluate.head_to_head", description=main.__doc__)
    parser.add_argument("--a", required=True, type=Path, help="generations of the model whose point of view counts")
    parser.add_argument("--b", required=True, type=Path, help="generations of the model it is compared with")
    parser.add_argument("--names", default="a,b", help="two names for the models, comma-separated (e.g. full,small)")
    parser.add_argument("--out", required=True, type=Path, help="folder for judgments.jsonl, judge.json and plots/")
    parser.add_argument("--params", default=PARAMS_FILE, type=Path,
                        help="params file (its judge and evaluate sections are used)")
    parser.add_argument("--cache", default=Path(DEFAULT_CACHE), type=Path, help="judge cache folder")
    args = parser.parse_args(argv)
    parts = [n.strip() for n in args.names.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"--names: expected two comma-separated names, got {args.names!r}")
    names = (parts[0], parts[1])
    params = load_params(args.params)
    verified = (strict_by_id(args.a, params.evaluate), strict_by_id(args.b, params.evaluate))
    judgments, metrics, details, stats = judge_generations(args.a, args.b, names, params.judge, args.cache,
                                                           verified=verified)
    write_outputs(judgments, metrics, details, names, args.out / "judgments.jsonl", args.out / "judge.json",
                  args.out / "judge_breakdown.json", args.out / "plots")
    print(f"judge: {metrics['n_pairs']} pairs, {names[0]} win rate {metrics['win_rate']}, "
          f"judge_calls={stats.judge_calls}, cache_hits={stats.cache_hits}")


if __name__ == "__main__":
    from instruct_tune.cli import run_stage

    run_stage(main)
