"""LLM-as-judge: the reference study's rubric, graded blind, cached, aggregated with its validity.

The rubric: factual correctness, instruction adherence, clarity and usefulness, each 0-5 (total 0-15),
plus `correct` (true/false) when the record has a reference answer. Two protocols (`judge.mode`):
- `pointwise` (default; FastChat's single-answer grading with a reference): each response is graded
  alone, blind to which model wrote it. A pair's outcome comes from the two grades (higher total wins,
  equal totals tie), so position bias cannot arise.
  With `judge.scoring: choices` (the default on the local backend) the judge is not asked to write its
  verdict: the verdict's JSON skeleton is forced token by token and, at each field, the probability of
  every allowed value is read (G-Eval). The grade is the most likely value; the probability-weighted
  mean is kept beside it (`expected`), which ranks responses far more finely than 0-5. With
  `judge.scoring: generate` (any backend) the judge writes `reason`, `correct` and the scores as JSON
  under the schema, reason first (a critique before the grade keeps a small judge from giving 5/5/5).
- `pairwise` (the reference study's protocol): both responses in one prompt, labels A and B only,
  judged in both orders; a verdict that flips with the order is a tie, and the share of pairs whose
  two verdicts agree is `position_consistency`.

Both: untrusted text sits between delimiters that no data can reproduce (`neutralise`); invalid replies
are retried once at temperature 0, then counted as errors and left out of rates (and asked again by the next run;
more than 10% of failed requests fail the stage: llm/cache.check_failures); every finished
judgment is cached (data/judge_cache/) under a hash of everything that decides it (the exact messages,
the schema or forced skeleton, the judge's identity and every judge param that can change a verdict), so an
unchanged rerun makes zero judge calls and an edited prompt can never reuse an old verdict.

Run as `python -m instruct_tune.evaluate.judge --a A.jsonl --b B.jsonl --names full,small --out DIR` to judge
any two sets of generations (e.g. the Full and the Small tuned models) against each other.

Modules: judge_prompts (the prompt texts, data in prompts/judge.yaml, and the messages, schemas and
skeletons built from them), judge_replies (replies read into grades), judge_summary (metrics, validity, charts);
this one pairs the generations, plans and asks the requests (through llm/client.py) and combines the answers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError
from instruct_tune.evaluate import judge_controls
from instruct_tune.evaluate import judge_prompts as prompts
from instruct_tune.evaluate.judge_prompts import (FINAL_ANSWER, WHOLE_STEPS, choice_steps, compare_messages,
                                                  pairwise_messages, pairwise_schema, pointwise_messages,
                                                  pointwise_schema, whole_messages)
from instruct_tune.evaluate.judge_replies import (grade_from_choices, grade_from_whole, parse_grade, parse_verdict,
                                                  read_an_answer, response_of)
from instruct_tune.evaluate.judge_summary import aggregate, write_plots
from instruct_tune.evaluate.rubric import CRITERIA
from instruct_tune.io import iter_records, read_records, write_json, write_jsonl
from instruct_tune.llm import client as llm_client
from instruct_tune.llm.backends import Backend, JudgmentFailed, make_backend
from instruct_tune.llm.cache import JudgeCache, RunStats, answer_all
from instruct_tune.llm.cache import check_failures as cache_failures
from instruct_tune.llm.client import ReplyError, RetryPolicy
from instruct_tune.llm.prompt_text import neutralise
from instruct_tune.params import JudgeParams

# An invalid generated reply: one retry at temperature 0, shown the first 1000 characters of the reply.
RETRY_POLICY = RetryPolicy(retries=1, shown_chars=1000, retry=prompts.RETRY, failure=prompts.FAILURE,
                           result_field="verdict")


# ---------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """One test record answered by two models: `responses[0]` from the model whose point of view counts."""

    id: str
    instruction: str
    input: str
    reference: str | None
    responses: tuple[str, str]
    answer: str | None = None
    task: str | None = None
    verified: tuple[bool | None, bool | None] = (None, None)  # strict verification of each response (evaluate)


Verified = dict[str, bool | None]  # record id -> strict verification of one model's response (None: no answer)


def read_verification(path: Path) -> Verified:
    """The `evaluate` stage's verification of one model's responses: record id -> strict correctness."""
    rows = iter_records(path, required=("id",), unique="id")
    out: Verified = {}
    for line, row in rows:
        strict = row.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise UserError(f"{path}: line {line}: field 'strict': expected true, false or null, got {strict!r}")
        out[row["id"]] = strict
    return out


def read_generations(path: Path) -> dict[str, dict[str, Any]]:
    """Generations by id; a missing or mistyped field or a repeated id is a UserError naming the line."""
    records = read_records(path, required=("id", "instruction", "input", "response"),
                           optional=("reference", "answer", "task"), unique="id", if_empty="no generations")
    return {rec["id"]: rec for rec in records}


def make_pairs(a_path: Path, b_path: Path, max_pairs: int | None = None, seed: int = 0,
               verified: tuple[Verified, Verified] | None = None) -> list[Pair]:
    """Pair two generation files by `id`, in the order of the first; both must cover the same records.

    With `max_pairs`, a seeded random subset of that many records (kept in file order). `verified` (from the
    `evaluate` stage, one map per file) gives each response's strict correctness; without it, None.
    """
    a, b = read_generations(a_path), read_generations(b_path)
    for src, src_path, dst, dst_path in ((a, a_path, b, b_path), (b, b_path, a, a_path)):
        missing = [i for i in src if i not in dst]
        if missing:
            raise UserError(f"{dst_path}: no record with id {missing[0]!r} (present in {src_path}; {len(missing)} "
                            f"such ids)")
    pairs = []
    for rid, ra in a.items():
        rb = b[rid]
        for name in ("instruction", "input"):
            if ra[name] != rb[name]:
                raise UserError(f"{b_path}: record {rid!r}: field '{name}' differs from {a_path}")
        checked = (verified[0].get(rid), verified[1].get(rid)) if verified else (None, None)
        pairs.append(Pair(rid, ra["instruction"], ra["input"], ra.get("reference"), (ra["response"], rb["response"]),
                          ra.get("answer"), ra.get("task"), checked))
    if max_pairs is not None and max_pairs < len(pairs):
        keep = set(random.Random(seed).sample(range(len(pairs)), max_pairs))
        pairs = [p for i, p in enumerate(pairs) if i in keep]
    return pairs


# ---------------------------------------------------------------- requests and the cache


@dataclass(frozen=True)
class Request:
    """One call to the judge: how to ask (`kind`), what is sent, and the key that caches its answer."""

    kind: str  # "choices" (copy the answer, then compare) | "whole" | "pointwise" (generated grade) | "pairwise"
    messages: list[dict[str, str]]
    with_reference: bool
    steps: list[tuple[str, Any]] = field(default_factory=list)
    compare: list[dict[str, str]] | None = None  # choices with a reference: the second prompt's template
    key: str = ""


def request_key(request: Request, params: JudgeParams, judge_id: str, schema: dict[str, Any] | None) -> str:
    """Everything that decides a verdict, hashed: change any of it and the cached verdict is not reused. Left out
    of the params: those that cannot apply (a `choices` request is read from probabilities, never sampled)."""
    forced = request.kind in ("choices", "whole")  # read from probabilities, never sampled
    skip = ("temperature", "max_tokens", "seed") if forced else ()
    decided_by = {
        "kind": request.kind,
        "messages": request.messages,
        "schema": None if forced else schema,
        "steps": request.steps,
        "compare": [request.compare, prompts.COMPARE_STEPS] if request.compare else None,
        "judge": judge_id,
        "params": llm_client.keyed_params(params, skip),
    }
    if forced:  # the local judge evaluates each prompt's record part as its own batch, which moves its logits a little
        decided_by["record_parts"] = [prompts.record_part(m) for m in (request.messages, request.compare or [])]
    return llm_client.request_key(decided_by)


def reply_parser(request: Request) -> Callable[[str], dict[str, Any]]:
    """How a generated reply to this request is read into a verdict (raises ReplyError)."""
    if request.kind == "pairwise":
        return parse_verdict
    return lambda text: parse_grade(text, request.with_reference)


def ask(backend: Backend, request: Request, params: JudgeParams, stats: RunStats) -> dict[str, Any]:
    """One judgment. A generated reply that does not validate gets one retry at temperature 0, told what
    was wrong; then it is an error. Verdicts, invalid replies (asked again by the next run) and failures that
    would repeat (a prompt longer than the local judge's context) are cached; a transport or server failure
    never is, so the next run asks again."""
    if request.kind == "whole":
        stats.add_calls(1)
        try:
            first = backend.choose(request.messages, request.steps,  # type: ignore[attr-defined]
                                   shared=prompts.record_part(request.messages))
        except JudgmentFailed as exc:
            return {"raw": [], "verdict": None, "error": str(exc), "cacheable": exc.cacheable}
        return {"raw": [json.dumps(first, sort_keys=True)], "verdict": grade_from_whole(first), "error": None,
                "cacheable": True}
    if request.kind == "choices":
        stats.add_calls(1)
        try:
            first = backend.choose(request.messages, request.steps,  # type: ignore[attr-defined]
                                   shared=prompts.record_part(request.messages))
            second = None
            if request.compare is not None and read_an_answer(str(first[0]), response_of(request.messages)):
                stats.add_calls(1)
                answer = neutralise(" ".join(str(first[0]).split()))  # one line: a copy cannot add lines
                messages = [{**m, "content": m["content"].replace(FINAL_ANSWER, answer)} for m in request.compare]
                second = backend.choose(messages, prompts.COMPARE_STEPS,  # type: ignore[attr-defined]
                                        shared=prompts.record_part(messages))
        except JudgmentFailed as exc:
            return {"raw": [], "verdict": None, "error": str(exc), "cacheable": exc.cacheable}
        return {"raw": [json.dumps([first, second], sort_keys=True)],
                "verdict": grade_from_choices(first, second, request.compare is not None),
                "error": None, "cacheable": True}
    return llm_client.ask_json(backend, request.messages, reply_parser(request), stats,
                               temperature=params.temperature, max_tokens=params.max_tokens, policy=RETRY_POLICY)


def regrade(request: Request, entry: dict[str, Any]) -> dict[str, Any]:
    """A cached judgment with its grade computed again from the judge's raw replies: the cache keeps what
    the judge said, so a change to the grading code (the `correct` threshold, a parser) applies to every
    cached judgment instead of leaving verdicts graded by older code. Errors stay errors."""
    if entry.get("verdict") is None or not entry.get("raw"):
        return entry
    try:
        if request.kind == "whole":
            verdict = grade_from_whole(json.loads(entry["raw"][0]))
        elif request.kind == "choices":
            first, second = json.loads(entry["raw"][0])
            verdict = grade_from_choices(first, second, request.compare is not None)
        else:
            verdict = reply_parser(request)(entry["raw"][-1])
    except ReplyError as exc:
        return {**entry, "verdict": None, "error": f"invalid reply: {exc}"}
    return {**entry, "verdict": verdict}


# ---------------------------------------------------------------- planning


def resolve_scoring(params: JudgeParams, backend: Backend) -> str:
    """`auto`: score-token probabilities where the backend can give them (local), generated JSON elsewhere."""
    can_choose = callable(getattr(backend, "choose", None))
    if params.scoring == "choices" and not can_choose:
        raise UserError("params.yaml: judge.scoring: choices needs judge.backend: local (a server returns no "
                        "score-token probabilities); use generate")
    if params.scoring == "auto":
        return "choices" if can_choose else "generate"
    return params.scoring


def pointwise_request(pair: Pair, response: str, params: JudgeParams, scoring: str) -> Request:
    reference = pair.reference if params.use_reference else None
    with_reference = reference is not None
    messages = pointwise_messages(pair.instruction, pair.input, reference, response, scoring)
    if scoring == "choices" and with_reference and not pair.answer and params.free_text == "whole":
        # No exact answer, and judge.free_text: whole (open-ended data: a sentence, a rewrite, one of many valid
        # answers): the whole response beside the reference, where copying "the final answer" compares the wrong
        # things. Measured against hand labels in README, "Is the judge fit for this data?".
        return Request("whole", whole_messages(pair.instruction, pair.input, reference, response), True,
                       WHOLE_STEPS)
    if scoring == "choices":
        compare = compare_messages(pair.instruction, pair.input, reference, pair.answer) if with_reference else None
        return Request("choices", messages, with_reference, choice_steps(reference), compare)
    return Request("pointwise", messages, with_reference)


def pairwise_request(pair: Pair, order: int, params: JudgeParams) -> Request:
    reference = pair.reference if params.use_reference else None
    a, b = pair.responses if order == 0 else pair.responses[::-1]
    return Request("pairwise", pairwise_messages(pair.instruction, pair.input, reference, a, b), reference is not None)


def plan(pairs: Sequence[Pair], params: JudgeParams, scoring: str, judge_id: str) -> list[list[Request]]:
    """Per pair, its requests: the two responses (pointwise) or the two orders (pairwise), keys filled in."""
    planned = []
    for pair in pairs:
        if params.mode == "pointwise":
            reqs = [pointwise_request(pair, r, params, scoring) for r in pair.responses]
            schema = pointwise_schema(reqs[0].with_reference) if scoring == "generate" else None
        else:
            reqs = [pairwise_request(pair, o, params) for o in ((0, 1) if params.both_orders else (0,))]
            schema = pairwise_schema()
        planned.append([Request(r.kind, r.messages, r.with_reference, r.steps, r.compare,
                                request_key(r, params, judge_id, schema)) for r in reqs])
    return planned


def plan_controls(controls: Sequence[judge_controls.Control], params: JudgeParams, scoring: str,
                  judge_id: str) -> list[Request]:
    """The controls' requests: each control graded exactly as a model's response to its record would be."""
    schema = pointwise_schema(True) if scoring == "generate" else None
    out = []
    for control in controls:
        r = pointwise_request(control.pair, control.response, params, scoring)
        out.append(Request(r.kind, r.messages, r.with_reference, r.steps, r.compare,
                           request_key(r, params, judge_id, schema)))
    return out


# ---------------------------------------------------------------- combining


def outcome_for_first(verdict: dict[str, Any], order: int) -> str:
    """A pairwise verdict from the first model's point of view: win, loss or tie."""
    if verdict["winner"] == "Tie":
        return "tie"
    first_label = "A" if order == 0 else "B"
    return "win" if verdict["winner"] == first_label else "loss"


def combine_pointwise(pair: Pair, entries: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """One judgments.jsonl line: each model's grade and verified correctness, and the pair's outcome."""
    line: dict[str, Any] = {"id": pair.id, "instruction": pair.instruction, "input": pair.input,
                            "reference": pair.reference, "answer": pair.answer, "task": pair.task}
    grades = {}
    for name, response, checked, entry in zip(names, pair.responses, pair.verified, entries, strict=True):
        grades[name] = {"response": response, "grade": entry.get("verdict"), "error": entry.get("error"),
                        "verified": checked, "raw": entry.get("raw", [])}
    line["grades"] = grades
    errors = [f"{n}: {g['error']}" for n, g in grades.items() if g["grade"] is None]
    if errors:
        return {**line, "outcome": "error", "winner": None, "scores": None, "error": "; ".join(errors)}
    totals = [grades[n]["grade"]["total"] for n in names]
    outcome = "win" if totals[0] > totals[1] else "loss" if totals[0] < totals[1] else "tie"
    scores = {n: {**grades[n]["grade"]["scores"], "total": grades[n]["grade"]["total"]} for n in names}
    return {**line, "outcome": outcome, "winner": {"win": names[0], "loss": names[1], "tie": "tie"}[outcome],
            "scores": scores, "error": None}


def combine_pairwise(pair: Pair, entries: list[dict[str, Any]], names: tuple[str, str]) -> dict[str, Any]:
    """One judgments.jsonl line: both orders' verdicts, scores per model, the final outcome."""
    verdicts = []
    for order, entry in enumerate(entries):
        labels = names if order == 0 else names[::-1]
        v = entry.get("verdict")
        verdicts.append({"A": labels[0], "B": labels[1], "raw": entry.get("raw", []), "verdict": v,
                         "error": entry.get("error"), "outcome": outcome_for_first(v, order) if v else None})
    line: dict[str, Any] = {"id": pair.id, "instruction": pair.instruction, "input": pair.input,
                            "reference": pair.reference, "answer": pair.answer, "task": pair.task,
                            "responses": dict(zip(names, pair.responses, strict=True)),
                            "verified": dict(zip(names, pair.verified, strict=True)),
                            "verdicts": verdicts}
    errors = [f"order {o + 1} ({v['A']} as A): {v['error']}" for o, v in enumerate(verdicts) if v["verdict"] is None]
    if errors:
        return {**line, "outcome": "error", "winner": None, "consistent": None, "scores": None,
                "error": "; ".join(errors)}
    outcomes = {v["outcome"] for v in verdicts}
    outcome = outcomes.pop() if len(outcomes) == 1 else "tie"  # a verdict that flips with the order is a tie
    own = [v["verdict"]["response_a" if o == 0 else "response_b"] for o, v in enumerate(verdicts)]
    other = [v["verdict"]["response_b" if o == 0 else "response_a"] for o, v in enumerate(verdicts)]
    def mean(blocks: list[dict[str, Any]]) -> dict[str, float]:
        return {k: round(sum(b[k] for b in blocks) / len(blocks), 4) for k in (*CRITERIA, "total")}
    return {
        **line, "outcome": outcome, "winner": {"win": names[0], "loss": names[1], "tie": "tie"}[outcome],
        "consistent": len({v["outcome"] for v in verdicts}) == 1 if len(verdicts) == 2 else None,
        "scores": {names[0]: mean(own), names[1]: mean(other)}, "error": None,
    }


def failed_requests(judgments: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """How many requests of the judgments ended without a grade or verdict, and each one's error text."""
    slots = [s for j in judgments for s in (j["grades"].values() if "grades" in j else j["verdicts"])]
    return len(slots), [s["error"] or "no verdict" for s in slots if s.get("grade", s.get("verdict")) is None]


def check_failures(judgments: list[dict[str, Any]], cache_dir: Path, details: dict[str, Any] | None = None) -> None:
    """Fail the stage when more than llm.cache.MAX_ERROR_SHARE of the judge's requests (the controls' among
    them, from `details`) failed (see there)."""
    total, errors = failed_requests(judgments)
    controls = (details or {}).get("controls", {}).get("rows", [])
    total += len(controls)
    errors += ["control: no grade" for row in controls if row["error"]]
    cache_failures(len(errors), total, errors, "judge requests", Path(cache_dir) / "judgments.jsonl")


# ---------------------------------------------------------------- entry points


def judge_generations(a_path: Path, b_path: Path, names: tuple[str, str], params: JudgeParams, cache_dir: Path,
                      backend: Backend | None = None, progress: bool = True,
                      verified: tuple[Verified, Verified] | None = None,
                      ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], RunStats]:
    """Judge two generation files against each other (the first one's point of view).

    `verified`: each file's strict verification (the `evaluate` stage's), which the judge's validity is measured
    against. Returns the judgments.jsonl lines, the headline metrics, their breakdown, and the run's call counts.
    """
    if len(set(names)) != 2:
        raise UserError(f"judge: the two models need different names, got {names!r}")
    pairs = make_pairs(a_path, b_path, params.max_pairs, params.seed, verified)
    schema = pairwise_schema() if params.mode == "pairwise" else pointwise_schema(
        params.use_reference and any(p.reference is not None for p in pairs))
    own = backend is None
    backend = backend or make_backend(params, schema)
    try:
        scoring = resolve_scoring(params, backend) if params.mode == "pointwise" else "generate"
        planned = plan(pairs, params, scoring, backend.model_id)
        controls = judge_controls.pick_controls(pairs, params.controls, params.seed) \
            if params.mode == "pointwise" else []
        control_requests = plan_controls(controls, params, scoring, backend.model_id)
        requests = {r.key: r for reqs in planned for r in reqs}  # identical prompts are judged once
        requests.update({r.key: r for r in control_requests})
        results, stats = answer_all(requests.values(), backend, JudgeCache(cache_dir),
                                    lambda req, stats: ask(backend, req, params, stats), desc=f"judge ({params.mode})",
                                    noun="judgments", model_field="judge_model", progress=progress, on_hit=regrade)
    finally:
        if own:
            backend.close()
    combine = combine_pointwise if params.mode == "pointwise" else combine_pairwise
    judgments = [combine(p, [results[r.key] for r in reqs], names) for p, reqs in zip(pairs, planned, strict=True)]
    headline, details = aggregate(judgments, names, params, backend.model_id, scoring)
    control_headline, details["controls"] = judge_controls.summarise(
        controls, [results[r.key].get("verdict") for r in control_requests], params.bootstrap_samples, params.seed)
    headline.update(control_headline)
    return judgments, headline, details, stats


def write_outputs(judgments: list[dict[str, Any]], metrics: dict[str, Any], details: dict[str, Any],
                  names: tuple[str, str], judgments_path: Path, metrics_path: Path, breakdown_path: Path,
                  plots_dir: Path) -> None:
    """judgments.jsonl, the headline metrics, their breakdown, and the charts."""
    write_jsonl(judgments_path, judgments)
    write_json(breakdown_path, details)
    write_plots(judgments, metrics, names, plots_dir)
    write_json(metrics_path, metrics)


DEFAULT_CACHE = "data/judge_cache"  # the judge stage's cache, shared (tests/test_contracts.py keeps it dvc.yaml's)
