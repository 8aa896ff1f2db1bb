"""Generation throughput: our batched path against the reference study's way, on the same prompts.

Ours: `instruct_tune.lm.generation.generate_responses` (prompts sorted by length, left-padded batches,
KV cache, per-row stop at eos / stop strings). Reference: a transformers `pipeline("text-generation")`
called once per example. Same model object, same 100 prompts (raschka_ch07 instruction data, alpaca
template), greedy, same max_new_tokens and stop strings; both outputs go through the same clean-up, so
they can be compared text for text. Prints tokens/s both ways, the ratio (target >= 5x) and the
share of identical outputs (left padding can move fp32 logits by rounding, which can flip a near-tie
in greedy decoding: `--unpadded-check` reruns our path with batch size 1 to tell padding from bugs).

    python bench/bench_generate.py                # bundled SmolLM2-135M, 100 prompts, 64 new tokens
    python bench/bench_generate.py --quick        # a tiny random model, 8 prompts: a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from instruct_tune.lm.generation import build_prompts, clean_response, eos_token_ids, generate_responses
from instruct_tune.lm.modeling import load_model, load_tokenizer, pick_device
from instruct_tune.params import GenerateParams, ModelParams
from instruct_tune.lm.templates import stop_strings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "raschka_ch07" / "instruction-data.json"
TEMPLATE = "alpaca"


def tiny_model_dir(out: Path) -> str:
    """A 2-layer random Llama with the bundled tokenizer, for --quick (no download, seconds to build)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer(ModelParams())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def load_records(n: int) -> list[dict]:
    if not DATA.exists():
        sys.exit(f"error: {DATA} not found (the shared datasets sit beside the checkout)")
    data = json.loads(DATA.read_text(encoding="utf-8"))[:n]
    return [
        {"id": f"raschka-{i}", "instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]}
        for i, r in enumerate(data)
    ]


def run_pipeline(model, tokenizer, prompts: list[str], params: GenerateParams, stops: list[str], pipeline_stops: bool):
    """The reference way: one pipeline call per prompt. Returns (responses, new tokens, seconds).

    As the reference study, the pipeline stops at eos only (unless `pipeline_stops`: transformers'
    StopStringCriteria, whose per-call set-up over the vocabulary costs time); its text is then cut
    at the stop strings like ours. Token ids are returned (`return_tensors`) to count new tokens exactly.
    """
    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    eos = set(eos_token_ids(model, tokenizer))
    kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=False, repetition_penalty=params.repetition_penalty,
                  return_tensors=True)
    if pipeline_stops:
        kwargs["stop_sequence"] = stops
    pipe(prompts[0], **dict(kwargs, max_new_tokens=2))  # warm-up, as for ours
    responses, tokens = [], 0
    start = time.perf_counter()
    for prompt in prompts:
        ids = pipe(prompt, **kwargs)[0]["generated_token_ids"]
        new = ids[len(tokenizer(prompt)["input_ids"]) :]
        tokens += len(new)
        new = new[: next((i for i, t in enumerate(new) if t in eos), len(new))]
        responses.append(clean_response(tokenizer, new, stops))
    return responses, tokens, time.perf_counter() - start


def run_ours(model, tokenizer, records: list[dict], params: GenerateParams):
    generate_responses(model, tokenizer, records[:1], dataclasses.replace(params, max_new_tokens=2), TEMPLATE,
                       desc="warm-up")
    start = time.perf_counter()
    run = generate_responses(model, tokenizer, records, params, TEMPLATE, desc="ours")
    return [r["response"] for r in run.rows], run.new_tokens, time.perf_counter() - start


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct", help="model.name: bundled, a hub id or a dir")
    ap.add_argument("--n", type=int, default=100, help="prompts")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="tiny random model, 8 prompts, 8 new tokens")
    ap.add_argument("--pipeline-stops", action="store_true", help="give the pipeline the stop strings too")
    ap.add_argument("--unpadded-check", action="store_true", help="also run ours with batch size 1")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        args.model, args.n, args.max_new_tokens = tiny_model_dir(Path(tmp.name)), 8, 8
        args.batch_size = min(args.batch_size, 4)

    device = pick_device(args.device)
    mp = ModelParams(name=args.model, device=args.device)
    model, tokenizer = load_model(mp, device), load_tokenizer(mp)
    model.eval()
    records = load_records(args.n)
    params = GenerateParams(do_sample=False, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            repetition_penalty=1.0, no_repeat_ngram_size=0)
    stops = stop_strings(TEMPLATE, params.stop_strings)
    prompts = build_prompts(records, tokenizer, TEMPLATE)

    ours, ours_tokens, ours_s = run_ours(model, tokenizer, records, params)
    ref, ref_tokens, ref_s = run_pipeline(model, tokenizer, prompts, params, stops, args.pipeline_stops)
    ours_tps, ref_tps = ours_tokens / ours_s, ref_tokens / ref_s
    same = [a == b for a, b in zip(ours, ref)]

    print(f"model: {args.model} on {device.type} ({torch.get_num_threads()} threads), {len(records)} prompts, "
          f"greedy, max_new_tokens={args.max_new_tokens}, template={TEMPLATE}, stop strings={stops}")
    for label, secs, tokens, tps in (
        (f"ours (batch {args.batch_size}, left padding, KV cache)", ours_s, ours_tokens, ours_tps),
        ("reference (pipeline, one call per example" + (", stops)" if args.pipeline_stops else ")"), ref_s, ref_tokens,
         ref_tps),
    ):
        print(f"{label + ':':<52} {secs:8.2f} s  {tokens:6d} new tokens  {tps:9.1f} tokens/s")
    print(f"speed-up: {ours_tps / ref_tps:.2f}x tokens/s, {ref_s / ours_s:.2f}x wall time (target >= 5x)")
    print(f"identical outputs: {sum(same)}/{len(same)} ({sum(same) / len(same):.1%})")
    for i, ok in enumerate(same):
        if not ok:
            at = first_difference(ours[i], ref[i])
            print(f"  first mismatch: {records[i]['id']} at char {at}: ours {ours[i][max(0, at - 20):at + 40]!r} "
                  f"| reference {ref[i][max(0, at - 20):at + 40]!r}")
            break
    if args.unpadded_check:
        single, _, single_s = run_ours(model, tokenizer, records, dataclasses.replace(params, batch_size=1))
        print(f"ours with batch size 1 (no padding): {single_s:.2f} s; identical to the reference: "
              f"{sum(a == b for a, b in zip(single, ref))}/{len(ref)}; to ours batched: "
              f"{sum(a == b for a, b in zip(single, ours))}/{len(ref)}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
