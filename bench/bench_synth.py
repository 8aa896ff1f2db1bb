"""Synthesis benchmark: your documents -> instructions with the 1.5B model, on real text.

Runs the `synthesize` stage's library (the generator writes examples from each passage, rules and the auditor
drop the bad ones) and prints candidates per minute, the accepted share, rejections by reason, and sample
accepted and rejected examples; with --check-auditor, first how far the rules + auditor agree with 16
hand-labelled examples (bench/synth_audit_check.jsonl: passages written for it, each example labelled keep or
with the reason to drop it).

Real text: by default, expository passages from Alpaca 52k (../shared/data: outputs of 600-1,500 characters
to "Describe / Explain / Compare ..." instructions, no lists; written by text-davinci-003, so they are real
English prose but not checked facts); or any folder with --documents.

    python bench/bench_synth.py --passages 4 --threads 2                  # a smoke run (~5-10 min on 2 cores)
    python bench/bench_synth.py --passages 4 --threads 2 --cache C        # the same cache again: 0 LLM calls
    python bench/bench_synth.py --check-auditor --passages 0              # only the auditor's agreement
    python bench/bench_synth.py --export-documents documents/alpaca --passages 120   # documents for `dvc repro`

Run it with nothing else on the machine (export OMP_WAIT_POLICY=PASSIVE when cores are shared): llama.cpp's
threads busy-wait, and every figure here depends on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from instruct_tune.synth import synthesize as S
from instruct_tune.synth import passages as SP
from instruct_tune.errors import clip
from instruct_tune.io import read_records, write_jsonl
from instruct_tune.llm.backends import make_backend
from instruct_tune.llm.cache import RunStats
from instruct_tune.params import SynthLLMParams, SynthParams

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca" / "alpaca_52k_en.json"
CHECK = ROOT / "bench" / "synth_audit_check.jsonl"
EXPOSITORY = ("describe", "explain", "compare", "summarize", "summarise", "outline", "discuss", "analyze")


def alpaca_passages(n: int, seed: int) -> list[dict[str, str]]:
    """`n` expository Alpaca outputs (600-1,500 characters, no bulleted or numbered lists), seeded."""
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    fit = [r for r in records if not r["input"] and r["instruction"].lower().startswith(EXPOSITORY)
           and 600 <= len(r["output"]) <= 1500 and not any(line.lstrip()[:2] in ("- ", "* ", "1.")
                                                           for line in r["output"].splitlines())]
    picked = sorted(random.Random(seed).sample(range(len(fit)), min(n, len(fit))))
    return [{"title": fit[i]["instruction"], "text": fit[i]["output"]} for i in picked]


def check_auditor(auditor: SynthLLMParams, language: str) -> None:
    """The rules and the auditor on the labelled examples: keep/drop agreement and reason agreement."""
    rows = read_records(CHECK, required=("passage", "task", "instruction", "input", "output", "expected"))
    backend = make_backend(auditor, S.audit_schema(), "synth.auditor")
    stats, agree_keep, agree_reason, start = RunStats(), 0, 0, time.perf_counter()
    print(f"\nrules + auditor on {len(rows)} hand-labelled examples ({CHECK.name}):")
    try:
        for row in rows:
            passage = SP.Passage("check", None, 0, len(row["passage"]), row["passage"])
            example, reason, note = S.check_example(row, row["task"], row["passage"], language)
            by = "rule"
            if reason is None:
                answer = S.ask_json(backend, S.audit_messages(passage, example, language), S.parse_audit, stats,
                                    temperature=auditor.temperature, max_tokens=auditor.max_tokens,
                                    policy=S.retry_policy(1))
                parsed = answer["parsed"] or {"verdict": "audit_failed", "note": answer["error"]}
                reason, note, by = parsed["verdict"], parsed["note"], "auditor"
            reason = reason or "keep"
            agree_keep += (reason == "keep") == (row["expected"] == "keep")
            agree_reason += reason == row["expected"]
            line = f"  expected {row['expected']:<15} got {reason:<15} ({by}) {row['instruction'][:60]!r}  {note or ''}"
            print(line[:220])
    finally:
        backend.close()
    seconds = time.perf_counter() - start
    print(f"  keep/drop agrees on {agree_keep} of {len(rows)}, the reason on {agree_reason} of {len(rows)}; "
          f"{stats.judge_calls} auditor calls in {seconds:.0f} s")


def show(title: str, rows: list[dict]) -> None:
    print(f"\n{title}:")
    for row in rows:
        shown = f"  [{row['task']}] {row['instruction']}"
        if row["input"]:
            shown += f"\n      input: {clip(row['input'])}"
        shown += f"\n      output: {clip(row['output'])}"
        if row["verdict"] != "keep":
            shown += f"\n      -> {row['verdict']} ({row['by']}): {row['note']}"
        print(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=4, help="passages to synthesize from (0: none)")
    parser.add_argument("--documents", type=Path, help="a folder of documents instead of the Alpaca passages")
    parser.add_argument("--per-passage", type=int, default=3)
    parser.add_argument("--model", default="pypi:qwen2.5-coder-1.5b-instruct-q4_k_m", help="the generator")
    parser.add_argument("--auditor-model", help="the auditor (default: the generator's model)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--cache", type=Path, help="LLM cache folder (default: a fresh one: every call is made)")
    parser.add_argument("--out", type=Path, help="write records.jsonl and audit.jsonl here (for training)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-auditor", action="store_true", help="first run the labelled auditor check")
    parser.add_argument("--export-documents", type=Path, help="write the Alpaca passages there as documents, exit")
    args = parser.parse_args()

    generator = SynthLLMParams(model=args.model, n_threads=args.threads)
    auditor = SynthLLMParams(model=args.auditor_model or args.model, n_threads=args.threads)
    if args.export_documents:
        args.export_documents.mkdir(parents=True, exist_ok=True)
        write_jsonl(args.export_documents / "alpaca_passages.jsonl", alpaca_passages(args.passages, args.seed))
        print(f"wrote {args.passages} passages to {args.export_documents / 'alpaca_passages.jsonl'}")
        return
    if args.check_auditor:
        check_auditor(auditor, "English")
    if args.passages <= 0:
        return
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        documents = args.documents
        if documents is None:
            documents = Path(tmp) / "documents"
            documents.mkdir()
            write_jsonl(documents / "alpaca_passages.jsonl", alpaca_passages(args.passages, args.seed))
        params = SynthParams(documents=str(documents), per_passage=args.per_passage, max_passages=args.passages,
                             seed=args.seed, generator=generator, auditor=auditor, samples=10)
        result = S.synthesize(params, args.cache or Path(tmp) / "cache", progress=True)
    m, b = result.metrics, result.breakdown
    print(f"\n{S.summary(result)}")
    print(f"generator {b['generator']}, auditor {b['auditor']}, {args.threads} llama.cpp threads")
    minutes = result.seconds / 60
    speed = (f"{m['candidates'] / minutes:.2f} candidates/min, {m['kept'] / minutes:.2f} kept/min (answers from the "
             f"cache included: {result.cache_hits})" if result.llm_calls else "every answer from the cache")
    print(f"{m['passages']} passages -> {m['candidates']} candidates in {result.seconds:.0f} s: {speed}; accepted "
          f"share {m['accepted_share']}; input share planned {b['input_share']['planned']}, kept "
          f"{b['input_share']['kept']}")
    print("rejections by reason (rules / auditor): " + ", ".join(
        f"{r} {b['dropped_by_check'][r]}/{b['dropped_by_audit'][r]}" for r in S.REASONS))
    print("per task (candidates -> kept): " + ", ".join(f"{t} {c['candidates']}->{c['kept']}"
                                                          for t, c in b["tasks"].items()))
    show("accepted (up to 10)", [r for r in result.audit if r["verdict"] == "keep"][:10])
    rejected = [r for r in result.audit if r["verdict"] != "keep"]
    by_reason = Counter(r["verdict"] for r in rejected)
    picked = [next(r for r in rejected if r["verdict"] == reason) for reason in by_reason]  # one per reason first
    picked += [r for r in rejected if r not in picked]
    show(f"rejected (up to 5 of {len(rejected)})", picked[:5])
    if args.out:
        write_jsonl(args.out / "records.jsonl", result.records)
        write_jsonl(args.out / "audit.jsonl", result.audit)
        print(f"\nwrote {args.out / 'records.jsonl'} and {args.out / 'audit.jsonl'}")


if __name__ == "__main__":
    main()
