"""Training throughput: our `train` path against TRL's SFTTrainer and the reference study's plain loop.

All three train the same model on the same data (raschka_ch07 instruction data, alpaca template, each
response + eos), with the same batch size, learning rate (5e-5), weight decay (0.1) and number of steps,
in fp32 on this machine; each runs in its own fresh process (clean peak-memory figures, no allocator
settings leaking between them), one after another in this one run. Measured: non-pad training tokens per
second over the optimizer steps after `--warmup` steps (forward + backward + optimizer; evaluation,
checkpointing and loading excluded alike), and MFU = 6 x parameters x tokens/s / this machine's fp32
matmul rate (torch.matmul on 2048x2048, measured here first).

- ours: `instruct_tune.lm.training.train` (length-grouped batches, logits only where labels are, fused
  AdamW, glibc told to keep freed memory; loss on the response).
- trl: `trl.SFTTrainer` with its defaults (random order, pad to the longest, completion-only loss), except
  bf16 and gradient checkpointing, which it turns on by default: bf16 autocast runs ~100x slower on this
  CPU and checkpointing trades speed for memory, so both are off, as in ours.
- plain: the reference study's loop (rasbt ch07): random order, pad to the batch's longest with eos,
  loss on every non-pad token, torch AdamW.

    python bench/bench_train.py                   # bundled SmolLM2-135M, 30 steps of 8 (+3 warm-up)
    python bench/bench_train.py --model gpt2      # any model.name the stage accepts
    python bench/bench_train.py --quick           # a tiny random model, 3 steps: a smoke test

Run it on a quiet machine: other processes on these 2 cores make every figure meaningless.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "raschka_ch07" / "instruction-data.json"
METHODS = ("ours", "trl", "plain")
LR, WEIGHT_DECAY, MAX_LENGTH, SEED = 5e-5, 0.1, 1024, 0


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """This machine's fp32 matmul rate (FLOP/s), best of a few timed rounds."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def load_records() -> list[dict]:
    if not DATA.exists():
        sys.exit(f"error: {DATA} not found (the shared datasets sit beside the checkout)")
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    return [{"id": f"raschka-{i}", "source": "raschka_ch07", "instruction": r["instruction"],
             "input": r.get("input") or "", "output": r["output"], "answer": None, "task": None}
            for i, r in enumerate(rows)]


def tiny_model_dir(out: Path) -> str:
    """A 2-layer random Llama with the bundled tokenizer, for --quick."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from instruct_tune.lm.modeling import load_tokenizer
    from instruct_tune.params import ModelParams

    tokenizer = load_tokenizer(ModelParams())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _step_timer(warmup: int):
    """A TrainerCallback timing optimizer steps after `warmup` steps and the non-pad tokens they used."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.tokens, self.steps = 0.0, 0, 0
            self._start, self._tokens_at_warmup = 0.0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step <= warmup:
                self._tokens_at_warmup = state.num_input_tokens_seen
                return
            self.seconds += time.perf_counter() - self._start
            self.steps += 1
            self.tokens = state.num_input_tokens_seen - self._tokens_at_warmup

    return StepTimer()


def run_ours(model_name: str, records: list[dict], batch: int, steps: int, warmup: int, work: Path) -> dict:
    from instruct_tune.lm import training
    from instruct_tune.io import write_jsonl
    from instruct_tune.params import ModelParams, Params, TrainParams

    write_jsonl(work / "train.jsonl", records)
    write_jsonl(work / "val.jsonl", records[:batch])
    total = warmup + steps
    params = Params(model=ModelParams(name=model_name), train=TrainParams(
        template="alpaca", max_length=MAX_LENGTH, lr=LR, weight_decay=WEIGHT_DECAY, batch_size=batch,
        max_steps=total, eval_steps=total, save_steps=total, logging_steps=total, seed=SEED))
    timer = _step_timer(warmup)
    training._Throughput = lambda: timer  # measure our path with the same callback as TRL's
    paths = training.TrainPaths(train=work / "train.jsonl", val=work / "val.jsonl", model_dir=work / "tuned",
                                checkpoints=work / "checkpoints", metrics=work / "train.json",
                                breakdown=work / "train_breakdown.json", plots=work / "plots")
    training.train(params.model, params.train, paths)
    return {"tokens": timer.tokens, "seconds": timer.seconds, "steps": timer.steps}


def run_trl(model_name: str, records: list[dict], batch: int, steps: int, warmup: int, work: Path) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from instruct_tune.lm.modeling import load_model, load_tokenizer
    from instruct_tune.params import ModelParams
    from instruct_tune.lm.templates import format_prompt

    params = ModelParams(name=model_name)
    tokenizer, model = load_tokenizer(params), load_model(params)
    data = Dataset.from_list([{"prompt": format_prompt(r, "alpaca"), "completion": r["output"]} for r in records])
    config = SFTConfig(output_dir=str(work / "trl"), per_device_train_batch_size=batch, max_steps=warmup + steps,
                       learning_rate=LR, weight_decay=WEIGHT_DECAY, seed=SEED, report_to="none", save_strategy="no",
                       use_cpu=True, bf16=False, gradient_checkpointing=False, max_length=MAX_LENGTH,
                       include_num_input_tokens_seen="non_padding", logging_steps=warmup + steps)
    timer = _step_timer(warmup)
    SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer, callbacks=[timer]).train()
    return {"tokens": timer.tokens, "seconds": timer.seconds, "steps": timer.steps}


def run_plain(model_name: str, records: list[dict], batch: int, steps: int, warmup: int, work: Path) -> dict:
    """rasbt ch07: shuffled DataLoader, pad to the longest with eos (-100 on padding), AdamW, loss on all tokens."""
    from instruct_tune.lm.modeling import load_model, load_tokenizer
    from instruct_tune.params import ModelParams
    from instruct_tune.lm.templates import format_prompt

    params = ModelParams(name=model_name)
    tokenizer, model = load_tokenizer(params), load_model(params)
    model.config.use_cache = False
    model.train()
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(format_prompt(r, "alpaca") + r["output"])["input_ids"][: MAX_LENGTH - 1] + [eos]
               for r in records]

    def collate(items: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
        longest = max(len(x) for x in items)
        inputs = torch.tensor([x + [eos] * (longest - len(x)) for x in items])
        targets = torch.tensor([x[1:] + [-100] * (longest - len(x) + 1) for x in items])
        return inputs, targets, sum(len(x) for x in items)

    torch.manual_seed(SEED)
    loader = torch.utils.data.DataLoader(encoded, batch_size=batch, shuffle=True, collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    seconds, tokens, done = 0.0, 0, 0
    for step, (inputs, targets, n_tokens) in enumerate(loader, start=1):
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        if step > warmup:
            seconds += time.perf_counter() - start
            tokens += n_tokens
            done += 1
        if step == warmup + steps:
            break
    return {"tokens": tokens, "seconds": seconds, "steps": done}


def worker(args: argparse.Namespace) -> None:
    from instruct_tune.lm.modeling import load_model
    from instruct_tune.params import ModelParams

    torch.manual_seed(SEED)
    records = load_records()
    run = {"ours": run_ours, "trl": run_trl, "plain": run_plain}[args.worker]
    with tempfile.TemporaryDirectory(prefix=f"bench_train_{args.worker}_") as tmp:
        result = run(args.model, records, args.batch_size, args.steps, args.warmup, Path(tmp))
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["parameters"] = load_model(ModelParams(name=args.model)).num_parameters()
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per method")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocation, page faults)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="a tiny random model and 3 steps: a smoke test")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        if args.quick:
            args.model, args.steps, args.warmup = tiny_model_dir(Path(tmp) / "tiny"), 3, 1
        flops = matmul_flops()
        print(f"fp32 matmul (2048x2048): {flops / 1e9:.1f} GFLOP/s; model {args.model}; batch {args.batch_size}, "
              f"{args.steps} timed steps after {args.warmup} warm-up steps; data {DATA.name}")
        results = {}
        for method in METHODS:
            cmd = [sys.executable, __file__, "--worker", method, "--model", args.model, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                sys.exit(f"error: {method} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            results[method] = json.loads(lines[-1][len("RESULT "):])
            r = results[method]
            r["tokens_per_s"] = r["tokens"] / r["seconds"]
            r["mfu"] = 6 * r["parameters"] * r["tokens_per_s"] / flops
            print(f"{method:>6}: {r['tokens_per_s']:8.1f} non-pad tokens/s  ({r['tokens']} tokens in "
                  f"{r['steps']} steps, {r['seconds']:.1f} s)  MFU {r['mfu']:6.1%}  "
                  f"peak memory {r['peak_memory_mb']:,.0f} MB", flush=True)
    ours = results["ours"]["tokens_per_s"]
    print(f"ours / trl:   {ours / results['trl']['tokens_per_s']:.2f}x  (target >= 1.2x)")
    print(f"ours / plain: {ours / results['plain']['tokens_per_s']:.2f}x  (target >= 1.5x)")
    print(f"ours MFU:     {results['ours']['mfu']:.1%}  (target >= 50%)")


if __name__ == "__main__":
    main()
