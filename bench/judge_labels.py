"""The judge against hand labels: its `correct` on real responses to records without an exact answer, and its
controls on the same records.

tests/fixtures/judge_labels.jsonl holds base and tuned SmolLM2-135M responses to test records of the general-knowledge
and Raschka ch. 7 sets (the 2,000-instruction study, README), each labelled correct or not by hand (how: the file's
README section "Is the judge fit for this data?"). This prints, for a judge design:
- agreement and Cohen's kappa of the judge's `correct` with the labels (with a bootstrap interval over records),
  overall, on the open-ended records (a sentence, a rewrite, a list, one of many valid answers) and on the others;
- the controls (judge_controls.py) on the labelled records: own reference judged correct, a neighbour's judged wrong;
- grades per minute (the judge alone, with an empty cache).

    python bench/judge_labels.py                    # judge.free_text: copy (copy the final answer, then compare)
    python bench/judge_labels.py --design whole     # judge.free_text: whole (the whole response beside the reference)

Run it with nothing else on the machine: llama.cpp's threads busy-wait and slow ~10x beside other jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from instruct_tune.evaluate import judge as J
from instruct_tune.evaluate import judge_controls
from instruct_tune.evaluate.stats import agreement, kappa_ci
from instruct_tune.io import read_jsonl
from instruct_tune.llm.backends import make_backend
from instruct_tune.llm.cache import JudgeCache, answer_all
from instruct_tune.params import load_params

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "fixtures" / "judge_labels.jsonl"


def pair_of(row: dict[str, Any]) -> J.Pair:
    return J.Pair(row["record_id"], row["instruction"], row["input"], row["reference"],
                  (row["response"], row["response"]))


def request(pair: J.Pair, response: str, params: Any, design: str) -> J.Request:
    """The judge's request for one response: as the judge asks it now, or by the copy-then-compare design."""
    return J.pointwise_request(pair, response, dataclasses.replace(params, free_text=design), "choices")


def with_key(r: J.Request, params: Any, judge_id: str) -> J.Request:
    return J.Request(r.kind, r.messages, r.with_reference, r.steps, r.compare, J.request_key(r, params, judge_id, None))


def kappa_line(name: str, rows: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    judged, truth = [r["judged"] for r in rows], [r["label"] for r in rows]
    stats = agreement(judged, truth)
    low, high = kappa_ci(judged, truth, [r["record_id"] for r in rows], samples, 0) if rows else (None, None)
    print(f"  {name:<22} n {stats['n']:3d}  agreement {stats['agreement']}  kappa {stats['kappa']} "
          f"(95% CI {low} to {high})  judge true/label true {stats['judge_true_verified_true']}, "
          f"judge true/label false {stats['judge_true_verified_false']}, "
          f"judge false/label true {stats['judge_false_verified_true']}")
    return {**stats, "kappa_ci_low": low, "kappa_ci_high": high}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--design", choices=("copy", "whole"), default="copy", help="judge.free_text")
    parser.add_argument("--controls", type=int, default=20, help="records of the fixture to grade controls for")
    parser.add_argument("--cache", type=Path, default=None, help="judge cache (default: a fresh temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="write every grade and the figures as JSON here")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml").judge
    rows = read_jsonl(args.labels)
    pairs = {r["record_id"]: pair_of(r) for r in rows}
    controls = judge_controls.pick_controls(list(pairs.values()), args.controls, params.seed)
    backend = make_backend(params, {})
    cache_dir = args.cache or Path(tempfile.mkdtemp(prefix="judge-labels-"))
    try:
        graded = [with_key(request(pairs[r["record_id"]], r["response"], params, args.design), params,
                           backend.model_id) for r in rows]
        control_requests = [with_key(request(c.pair, c.response, params, args.design), params, backend.model_id)
                            for c in controls]
        todo = {r.key: r for r in [*graded, *control_requests]}
        start = time.perf_counter()
        results, stats = answer_all(todo.values(), backend, JudgeCache(cache_dir),
                                    lambda req, s: J.ask(backend, req, params, s), desc=f"judge ({args.design})",
                                    noun="grades", model_field="judge_model", on_hit=J.regrade)
        seconds = time.perf_counter() - start
    finally:
        backend.close()
    for row, req in zip(rows, graded, strict=True):
        grade = results[req.key]["verdict"]
        row["judged"] = bool(grade and grade["correct"])
        row["p_correct"] = grade and grade["p_correct"]
        row["checks"] = grade and grade.get("checks")
    asked = len(todo) - stats.cache_hits
    print(f"judge {backend.model_id} design {args.design}: {len(rows)} labelled responses to {len(pairs)} records; "
          f"{asked} grades asked in {seconds:.0f} s" + (f" = {60 * asked / seconds:.1f} grades/min" if asked else ""))
    samples = params.bootstrap_samples
    figures = {"all": kappa_line("all", rows, samples),
               "open_ended": kappa_line("open-ended", [r for r in rows if r["open_ended"]], samples),
               "short_answer": kappa_line("short answer", [r for r in rows if not r["open_ended"]], samples)}
    for key in sorted({(r["source"], r["model"]) for r in rows}):
        figures["/".join(key)] = kappa_line("/".join(key), [r for r in rows if (r["source"], r["model"]) == key],
                                            samples)
    headline, details = judge_controls.summarise(
        controls, [results[r.key]["verdict"] for r in control_requests], samples, params.seed)
    print(f"  controls: {headline['n_controls']} records, judged right {headline['control_right']} "
          f"(95% CI {headline['control_right_ci_low']} to {headline['control_right_ci_high']}; own reference "
          f"{details['own_judged_right']}, neighbour {details['neighbour_judged_right']}), AUC own vs neighbour "
          f"{headline['control_auc']} (95% CI {headline['control_auc_ci_low']} to {headline['control_auc_ci_high']})")
    wrong = [r for r in rows if r["judged"] != r["label"]]
    print(f"  disagreements ({len(wrong)}):")
    for r in wrong:
        print(f"    {r['id']} label {r['label']} judge {r['judged']} (p {r['p_correct']}): "
              f"{r['instruction'][:60]!r} -> {r['response'][:70]!r}")
    if args.out:
        args.out.write_text(json.dumps({"design": args.design, "judge": backend.model_id, "seconds": seconds,
                                        "figures": figures, "controls": headline, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
