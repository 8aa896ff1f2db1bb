"""The `synthesize` stage: instruction records written by an LLM from your documents, audited by an LLM.

The reference study's data method, in five steps:
1. read every document under `synth.documents` (sorted, hidden files skipped): `.txt` and `.md` as text (UTF-8,
   a byte-order mark tolerated), `.html`/`.htm` as their text content, `.json` (a list of objects, or one object;
   read by `io.read_json`) and `.jsonl` (one object a line; read by `io.iter_records`) with the text in the field
   `synth.text_field`; any other file is an error naming it;
2. split each document into passages of at most `passage_chars` characters (at blank lines, then sentence
   ends, then spaces). A passage keeps its provenance: the document, its record or line for JSON, and its
   character offsets, so that `text[start:end]` is the passage. Passages shorter than `min_passage_chars`
   are skipped and counted; `max_passages` keeps a seeded sample;
3. generate: per passage, a plan of `per_passage` example slots (a question, or, with probability
   `input_share`, a task on an input: summary, rewrite, classification, extraction) and one call to the
   generator under a JSON schema. An invalid reply is asked again at temperature 0, shown what was wrong,
   then counted as a generation failure;
4. check each example by rules, without a model: `malformed` (a field missing or without words, a task that
   needs an input without one), `leakage` (the output repeats the input, or is contained in it, extraction
   excepted),
   `not_answerable` (an instruction that refers to "the passage" with no input to show it, or an output
   with a name or number found neither in the passage nor in the instruction and input), `wrong_language`
   (English requested, and hardly any English function words in a text of eight words or more);
5. audit each remaining example: the auditor sees the passage and the example, copies the sentence of the
   passage that states the output's facts (its note), and keeps the example or names its first problem
   (`leakage`, `not_answerable`, `contradicts`, `wrong_language`, `malformed`). An audit that fails is
   `audit_failed`, and the example is dropped.
The rules come first because a 1.5B auditor misses what they catch (measured on hand-labelled examples: it
kept a Portuguese example, an answer naming an architect the passage never mentions, and the reference
study's own "Name the stadium" leak).
Kept examples go to data/synth/records.jsonl, which `prepare` reads as one more source (its leakage and
duplicate filters apply there too). Every call is cached (`llm.cache.JudgeCache`, as the judge's; the stage's
--cache, data/synth_cache/) under a hash of everything that decides its answer: the messages (the prompt text as
sent), the schema, the model's identity and every param of the LLM's section that can change an answer (all but
those params.py marks `operational`). A rerun on the same passages and prompts makes no call, and a killed run
resumes after its last finished call. This module imports neither the judge nor its prompts: editing those never
reruns this stage.

Modules: documents (step 1), passages (step 2), examples (the prompts, data in prompts/synth.yaml, the replies and
the rule checks of steps 3-5); this one runs the steps, asking through llm/client.py.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError, clip
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.llm import client as llm_client
from instruct_tune.llm.api_keys import check_endpoint
from instruct_tune.llm.backends import make_backend
from instruct_tune.llm.cache import JudgeCache, RunStats, answer_all
from instruct_tune.llm.cache import check_failures as cache_failures
from instruct_tune.llm.client import RetryPolicy, ask_json
from instruct_tune.params import SynthLLMParams, SynthParams
from instruct_tune.synth.documents import read_documents
from instruct_tune.synth.examples import (INPUT_TASKS, PROMPTS, TASKS, audit_messages, audit_schema, candidate_id,
                                          check_example, generator_messages, generator_schema, parse_audit,
                                          parse_examples, plan_tasks)
from instruct_tune.synth.passages import make_passages, sample_passages

REASONS = ("malformed", "leakage", "not_answerable", "contradicts", "wrong_language", "audit_failed")
RECORD_FIELDS = ("id", "instruction", "input", "output", "task", "document", "record", "start", "end", "passage_id")


# ---------------------------------------------------------------- calls, cached


@dataclass(frozen=True)
class Call:
    """One question to an LLM, and the key under which its answer is cached."""

    key: str
    messages: list[dict[str, str]]


def call_key(kind: str, messages: list[dict[str, str]], schema: dict[str, Any], llm: SynthLLMParams, model_id: str,
             max_tokens: int, retries: int) -> str:
    """Everything that decides an answer, hashed: change any of it and a cached answer is not reused."""
    return llm_client.request_key({
        "kind": kind, "messages": messages, "schema": schema, "model": model_id, "retries": retries,
        "max_tokens": max_tokens, "params": llm_client.keyed_params(llm),
    })


def retry_policy(retries: int) -> RetryPolicy:
    """An invalid reply is asked again up to `retries` times, shown the first 500 characters of the reply."""
    return RetryPolicy(retries=retries, shown_chars=500, retry=PROMPTS["retry"],
                       failure=PROMPTS["failure"] if retries else PROMPTS["failure_without_retry"],
                       result_field="parsed")


# ---------------------------------------------------------------- the stage


@dataclass
class SynthResult:
    """What the stage writes, and how the run went (calls depend on the cache: printed, never in metrics)."""

    records: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    metrics: dict[str, Any]
    breakdown: dict[str, Any]
    llm_calls: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


def check_params(params: SynthParams) -> None:
    """Fail on settings that cannot work (the ranges that params.py's types do not say), before any document is
    read: `params.yaml: synth.KEY: what, got value`."""
    rules: list[tuple[str, Any, bool, str]] = [
        ("passage_chars", params.passage_chars, params.passage_chars >= 100, "must be >= 100"),
        ("min_passage_chars", params.min_passage_chars, 0 <= params.min_passage_chars <= params.passage_chars,
         "must be between 0 and synth.passage_chars"),
        ("max_passages", params.max_passages, params.max_passages is None or params.max_passages >= 1,
         "must be >= 1 or null"),
        ("per_passage", params.per_passage, params.per_passage >= 1, "must be >= 1"),
        ("input_share", params.input_share, 0.0 <= params.input_share <= 1.0, "must be between 0 and 1"),
        ("retries", params.retries, params.retries >= 0, "must be >= 0"),
        ("samples", params.samples, params.samples >= 0, "must be >= 0"),
        ("language", params.language, bool(params.language.strip()), "must not be empty"),
        ("text_field", params.text_field, bool(params.text_field), "must not be empty"),
    ]
    for role, llm in (("generator", params.generator), ("auditor", params.auditor)):
        rules += [(f"{role}.max_tokens", llm.max_tokens, llm.max_tokens >= 1, "must be >= 1"),
                  (f"{role}.concurrency", llm.concurrency, llm.concurrency >= 1, "must be >= 1")]
    for key, value, ok, rule in rules:
        if not ok:
            raise UserError(f"params.yaml: synth.{key}: {rule}, got {value!r}")
    for role, llm in (("generator", params.generator), ("auditor", params.auditor)):
        if llm.backend == "openai":  # the key's rules, for both LLMs before either is asked anything
            check_endpoint(llm.base_url, llm.allow_insecure_http, f"synth.{role}")


def empty_result(params: SynthParams) -> SynthResult:
    """No documents configured: empty outputs, the same on every run, and no model loaded."""
    metrics = {"n_documents": 0, "passages": 0, "generation_failures": 0, "candidates": 0, "kept": 0, "dropped": 0,
               "accepted_share": None}
    breakdown = {"documents_folder": None, "dropped": {reason: 0 for reason in REASONS}}
    return SynthResult([], [], metrics, breakdown)


def check_tracked(documents: str, deps: list[str]) -> None:
    """The documents folder must lie inside a dep of the `synthesize` stage, or DVC would not rerun the stage
    when a document changes. The stage passes its --documents folder, which dvc.yaml lists as its dep
    (tests/test_contracts.py keeps the two the same); paths relative to the working directory."""
    target = Path(documents).resolve()
    for dep in deps:
        folder = Path(dep).resolve()
        if target == folder or folder in target.parents:
            return
    data_deps = [d for d in deps if not d.startswith(("src/", "stages/"))]
    raise UserError(
        f"params.yaml: synth.documents: {documents} is not inside a dep of the `synthesize` stage in dvc.yaml "
        f"({', '.join(data_deps) or 'none'}), so DVC would not rerun it when a document changes: put the "
        f"documents under documents/, or make their folder the stage's --documents in its cmd and its dep in place "
        f"of documents"
    )


def _ask_all(llm: SynthLLMParams, section: str, kind: str, schema: dict[str, Any],
             messages: list[list[dict[str, str]]], max_tokens: int, parse: Callable[[str], Any], retries: int,
             cache: JudgeCache, desc: str, progress: bool) -> tuple[list[dict[str, Any]], RunStats, str]:
    """One answer per message list (in order) from the backend that `llm` names, the run's counts, and the
    model's identity. The backend lives only for this step (a local model is freed before the next one)."""
    backend = make_backend(llm, schema, section)
    try:
        calls = [Call(call_key(kind, m, schema, llm, backend.model_id, max_tokens, retries), m) for m in messages]
        results, stats = answer_all(
            calls, backend, cache,
            lambda call, stats: ask_json(backend, call.messages, parse, stats, temperature=llm.temperature,
                                         max_tokens=max_tokens, policy=retry_policy(retries)),
            desc=desc, noun="calls", model_field="model", progress=progress)
    finally:
        backend.close()
    return [results[call.key] for call in calls], stats, backend.model_id


def _samples(rows: list[dict[str, Any]], verdict: str, k: int, seed: int) -> list[dict[str, Any]]:
    """Up to `k` candidates with this verdict, a seeded sample kept in run order."""
    matching = [row for row in rows if row["verdict"] == verdict]
    picked = sorted(random.Random(f"{seed}\x1f{verdict}").sample(range(len(matching)), min(k, len(matching))))
    fields = ("id", "task", "instruction", "input", "output", "by", "note", "document")
    return [{f: matching[i][f] for f in fields} for i in picked]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def synthesize(params: SynthParams, cache_dir: Path, progress: bool = True) -> SynthResult:
    """Documents -> passages -> candidates (generator) -> checks -> audit (auditor) -> kept records.

    Raises UserError on bad documents, when no passage is long enough, when the generator gives no usable
    reply at all, and when nothing is kept (an empty training set is never passed on silently).
    """
    # Long on purpose: the five steps of the module docstring, in order, over the same candidate rows.
    check_params(params)
    if params.documents is None:
        return empty_result(params)
    started = time.monotonic()
    docs, n_files = read_documents(Path(params.documents), params.text_field)
    passages, too_short = make_passages(docs, params.passage_chars, params.min_passage_chars)
    if not passages:
        raise UserError(f"{params.documents}: no passage of at least synth.min_passage_chars="
                        f"{params.min_passage_chars} characters in {len(docs)} document(s) ({too_short} shorter "
                        f"passages skipped)")
    available = len(passages)
    passages = sample_passages(passages, params.max_passages, params.seed)
    plans = [plan_tasks(p, params.per_passage, params.input_share, params.seed) for p in passages]
    cache = JudgeCache(Path(cache_dir))

    n = params.per_passage
    replies, gen_stats, generator = _ask_all(
        params.generator, "synth.generator", "synth-generate", generator_schema(n),
        [generator_messages(p, tasks, params.language) for p, tasks in zip(passages, plans, strict=True)],
        params.generator.max_tokens * n, lambda text: parse_examples(text, n), params.retries, cache,
        "synthesize: generate", progress)
    rows: list[dict[str, Any]] = []  # one per candidate: a line of data/synth/audit.jsonl
    failures = []
    by_id = {p.id: p for p in passages}
    for passage, tasks, reply in zip(passages, plans, replies, strict=True):
        where = {"passage_id": passage.id, "document": passage.document, "record": passage.record,
                 "start": passage.start, "end": passage.end}
        if reply["parsed"] is None:
            failures.append({**where, "error": reply["error"]})
            continue
        for slot, (planned, item) in enumerate(zip(tasks, reply["parsed"], strict=True), start=1):
            example, reason, note = check_example(item, planned, passage.text, params.language)
            rows.append({"id": candidate_id(passage, slot, example), **where, "slot": slot, "planned_task": planned,
                         **example, "verdict": reason or "keep", "by": "check" if reason else None, "note": note})
    if not rows:
        raise UserError(
            f"synthesize: the generator ({generator}) gave no usable reply for any of the {len(passages)} passages; "
            f"the first error: {failures[0]['error']}. Check synth.generator (a larger model, a larger max_tokens)")

    to_audit = [row for row in rows if row["by"] is None]
    auditor, aud_stats = None, RunStats()
    if to_audit:
        verdicts, aud_stats, auditor = _ask_all(
            params.auditor, "synth.auditor", "synth-audit", audit_schema(),
            [audit_messages(by_id[row["passage_id"]], row, params.language) for row in to_audit],
            params.auditor.max_tokens, parse_audit, params.retries, cache, "synthesize: audit", progress)
        for row, verdict in zip(to_audit, verdicts, strict=True):
            if verdict["parsed"] is None:
                row.update(verdict="audit_failed", by="audit", note=clip(verdict["error"]))
            else:
                row.update(verdict=verdict["parsed"]["verdict"], by="audit", note=verdict["parsed"]["note"])

    kept = [row for row in rows if row["verdict"] == "keep"]
    dropped = Counter(row["verdict"] for row in rows if row["verdict"] != "keep")
    if not kept:
        samples = "; ".join(f"{reason} {count} (e.g. {next(r['note'] for r in rows if r['verdict'] == reason)!r})"
                            for reason, count in dropped.most_common())
        raise UserError(
            f"synthesize: no candidate kept: all {len(rows)} candidates from {len(passages)} passages were rejected: "
            f"{samples}. Nothing was written, so no empty training set reaches `prepare`. Look at a stronger "
            f"synth.auditor or synth.generator; the verdicts are cached in {cache.path}")
    records = [{field: row[field] for field in RECORD_FIELDS} for row in kept]
    metrics = {  # `n_documents`, not `documents`: `dvc exp show` would fold it into the `documents` dep's column
        "n_documents": len(docs), "passages": len(passages), "generation_failures": len(failures),
        "candidates": len(rows), "kept": len(kept), "dropped": len(rows) - len(kept),
        "accepted_share": _share(len(kept), len(rows)),
    }
    planned = [task for tasks in plans for task in tasks]
    breakdown = {
        "documents_folder": params.documents, "files": n_files, "documents": len(docs),
        "passages_available": available, "passages_too_short": too_short, "passages": len(passages),
        "per_passage": n, "language": params.language, "generator": generator, "auditor": auditor,
        "dropped": {reason: dropped[reason] for reason in REASONS},
        "dropped_by_check": {reason: sum(1 for r in rows if r["verdict"] == reason and r["by"] == "check")
                             for reason in REASONS},
        "dropped_by_audit": {reason: sum(1 for r in rows if r["verdict"] == reason and r["by"] == "audit")
                             for reason in REASONS},
        "tasks": {task: {"planned": planned.count(task), "candidates": sum(r["task"] == task for r in rows),
                         "kept": sum(r["task"] == task for r in kept)} for task in TASKS},
        "input_share": {"planned": _share(sum(t in INPUT_TASKS for t in planned), len(planned)),
                        "candidates": _share(sum(bool(r["input"]) for r in rows), len(rows)),
                        "kept": _share(sum(bool(r["input"]) for r in kept), len(kept))},
        "generation_failures": failures[:20],
        "samples": {verdict: _samples(rows, verdict, params.samples, params.seed)
                    for verdict in ("keep", *REASONS)},
    }
    return SynthResult(records, rows, metrics, breakdown, gen_stats.judge_calls + aud_stats.judge_calls,
                       gen_stats.cache_hits + aud_stats.cache_hits, time.monotonic() - started)


def check_failures(result: SynthResult, cache_dir: Path) -> None:
    """Fail the stage when more than llm.cache.MAX_ERROR_SHARE of its calls failed (generator replies that never
    parsed, audits that failed; see there): every success is cached, and the rerun asks only for the failures."""
    m = result.metrics
    audits = [row for row in result.audit if row["by"] == "audit"]
    failed_audits = [row["note"] for row in audits if row["verdict"] == "audit_failed"]
    errors = [f["error"] for f in result.breakdown.get("generation_failures", [])] + failed_audits
    cache_failures(m["generation_failures"] + len(failed_audits), m["passages"] + len(audits), errors,
                   "synthesize calls", Path(cache_dir) / "judgments.jsonl")


def write_outputs(result: SynthResult, data_dir: Path, metrics_path: Path, breakdown_path: Path) -> None:
    """data/synth/{records,audit}.jsonl (swapped in together), the breakdown, then the headline metrics."""
    write_file_set(data_dir, {"records.jsonl": "".join(jsonl_line(r) for r in result.records),
                              "audit.jsonl": "".join(jsonl_line(r) for r in result.audit)})
    write_json(breakdown_path, result.breakdown)
    write_json(metrics_path, result.metrics)


def summary(result: SynthResult) -> str:
    """One line for the log: counts, drops by reason, calls and the rate (which depends on the machine)."""
    m = result.metrics
    if not m["passages"]:
        return "synthesize: no documents configured (synth.documents is null): empty outputs, no model loaded"
    drops = ", ".join(f"{reason} {count}" for reason, count in result.breakdown["dropped"].items() if count) or "none"
    if not result.llm_calls:
        speed = "every answer from the cache"
    elif result.cache_hits:  # a resumed run: its candidates were partly written before, so no candidates/min
        speed = f"{60 * result.llm_calls / result.seconds:.1f} LLM calls/min (a resumed run: no candidates/min)"
    else:
        speed = f"{m['candidates'] / (result.seconds / 60):.2f} candidates/min"
    return (f"synthesize: kept {m['kept']} of {m['candidates']} candidates ({100 * m['accepted_share']:.1f}%) from "
            f"{m['passages']} passages of {m['n_documents']} documents; dropped: {drops}; generation failures "
            f"{m['generation_failures']}; llm_calls={result.llm_calls} cache_hits={result.cache_hits}; "
            f"{result.seconds:.1f} s, {speed}")
