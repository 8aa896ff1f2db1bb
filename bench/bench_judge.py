"""Judge benchmark: speed, validity and stability of the local judges on the default study's generations.

For each configuration it judges the same seeded subset of test records (tuned vs base, empty cache) and
prints grades per minute, the judge's agreement with strict answer verification (Cohen's kappa), the
ROC AUC of its factual-correctness score for verified correctness, and the outcomes:
- the 1.5B default judge (Qwen2.5-Coder-1.5B-Instruct Q4_K_M), pointwise, scored from token probabilities;
- the same, pointwise with a generated reason first (`judge.scoring: generate`);
- the same, pairwise in both orders (the reference study's protocol);
- the bundled SmolLM2-135M, pointwise (the smoke judge);
- stability: the 1.5B pointwise again with another thread count (llama.cpp's reductions change with it,
  as they do between CPUs): the share of grades and of pair outcomes that change.

    python bench/bench_judge.py                      # after `dvc repro generate` (reads data/generations)
    python bench/bench_judge.py --pairs 10 --skip pairwise,generate   # quicker

Run it with nothing else on the machine: llama.cpp's threads busy-wait and slow ~10x beside other jobs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from instruct_tune.evaluate import judge as J
from instruct_tune.evaluate.answers import strict_by_id
from instruct_tune.params import BUNDLED_MODEL, load_params

ROOT = Path(__file__).resolve().parents[1]


def run(label: str, gens: Path, params, cache: Path) -> dict:
    evaluate = load_params().evaluate
    verified = (strict_by_id(gens / "tuned.jsonl", evaluate), strict_by_id(gens / "base.jsonl", evaluate))
    start = time.perf_counter()
    judgments, metrics, details, stats = J.judge_generations(gens / "tuned.jsonl", gens / "base.jsonl",
                                                             ("tuned", "base"), params, cache, progress=False,
                                                             verified=verified)
    seconds = time.perf_counter() - start
    calls = stats.judge_calls
    grades = 2 * len(judgments)  # each pair grades two responses, in either mode
    print(f"{label:<44} {len(judgments):3d} pairs, {calls:3d} calls in {seconds:6.1f} s = "
          f"{60 * grades / seconds:5.1f} grades/min ({60 * calls / seconds:5.1f} calls/min); "
          f"kappa {metrics['kappa']} (95% CI {metrics['kappa_ci_low']}-{metrics['kappa_ci_high']}), "
          f"agreement {metrics['agreement']}, AUC factual {metrics['auc_factual']}, "
          f"W/L/T {metrics['win']}/{metrics['loss']}/{metrics['tie']}, errors {metrics['errors']}, "
          f"totals base {metrics['base']['total']} tuned {metrics['tuned']['total']}", flush=True)
    return {"judgments": judgments, "metrics": metrics, "seconds": seconds}


def grade_changes(a: list[dict], b: list[dict]) -> tuple[float, float, float]:
    """Shares of responses whose `correct` changed, whose total changed, and of pairs whose outcome changed."""
    correct = total = n = 0
    for ja, jb in zip(a, b, strict=True):
        for name in ("tuned", "base"):
            ga, gb = ja["grades"][name]["grade"], jb["grades"][name]["grade"]
            if ga is None or gb is None:
                continue
            n += 1
            correct += ga["correct"] != gb["correct"]
            total += ga["total"] != gb["total"]
    outcomes = sum(ja["outcome"] != jb["outcome"] for ja, jb in zip(a, b, strict=True))
    return correct / max(n, 1), total / max(n, 1), outcomes / max(len(a), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gens", type=Path, default=ROOT / "data" / "generations")
    parser.add_argument("--pairs", type=int, default=None,
                        help="seeded subset of test records (default: params.yaml's judge.max_pairs, the study's)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the main runs")
    parser.add_argument("--alt-threads", type=int, default=1, help="thread count of the stability rerun")
    parser.add_argument("--skip", default="", help="comma-separated: generate,pairwise,smollm,stability")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if not (args.gens / "tuned.jsonl").exists():
        raise SystemExit(f"{args.gens}/tuned.jsonl not found: run `dvc repro generate` first")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    study = load_params(ROOT / "params.yaml").judge
    args.pairs = args.pairs or study.max_pairs
    base = replace(study, max_pairs=args.pairs, n_threads=args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_judge_"))
    print(f"judge benchmark: {args.pairs} test records (tuned vs base), {args.threads} threads, empty caches")

    main_run = run("1.5B pointwise, token-probability scores", args.gens,
                   replace(base, mode="pointwise", scoring="choices"),
                   tmp / "c1")
    if "generate" not in skip:
        run("1.5B pointwise, generated reason + scores", args.gens,
            replace(base, mode="pointwise", scoring="generate", max_pairs=max(4, args.pairs // 3)), tmp / "c2")
    if "pairwise" not in skip:
        run("1.5B pairwise, both orders", args.gens, replace(base, mode="pairwise", max_pairs=max(4, args.pairs // 3)),
            tmp / "c3")
    if "smollm" not in skip:
        run("135M (bundled) pointwise, token-probability", args.gens,
            replace(base, model=BUNDLED_MODEL, mode="pointwise", scoring="choices"), tmp / "c4")
    if "stability" not in skip:
        alt = run(f"1.5B pointwise, {args.alt_threads} thread(s)", args.gens,
                  replace(base, mode="pointwise", scoring="choices", n_threads=args.alt_threads), tmp / "c5")
        correct, total, outcome = grade_changes(main_run["judgments"], alt["judgments"])
        print(f"stability ({args.threads} vs {args.alt_threads} threads): `correct` changed on {correct:.1%} of "
              f"responses, total score on {total:.1%}, pair outcome on {outcome:.1%}; speed "
              f"{main_run['seconds'] / alt['seconds']:.2f}x the {args.threads}-thread time")


if __name__ == "__main__":
    main()
