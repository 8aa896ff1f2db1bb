"""Stage `generate`: responses of the base and the tuned model to the test split, and their statistics.

Reads data/split/test.jsonl, models/tuned/ (a full model or a LoRA adapter), params `model`, `train.template`,
`generate`; writes data/generations/{base,tuned}.jsonl and metrics/generate.json. Resumable: finished rows
sit in data/generate_work/ (persisted by DVC) until both models are done.
"""

from __future__ import annotations

from pathlib import Path

from instruct_tune.cli import run_stage
from instruct_tune.generation import (
    build_prompts, check_template, clear_work, generate_responses, generation_metrics, load_base, load_test_records,
    load_tuned, open_partial, work_fingerprint,
)
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.modeling import pick_device
from instruct_tune.params import load_params

TEST = Path("data/split/test.jsonl")
TUNED = Path("models/tuned")
OUT = Path("data/generations")
WORK = Path("data/generate_work")
METRICS = Path("metrics/generate.json")


def main() -> None:
    params = load_params("params.yaml")
    template = check_template(params.train.template)
    records = load_test_records(TEST)
    device = pick_device(params.model.device)
    metrics, outputs = {}, {}
    for name in ("base", "tuned"):
        model, tokenizer, identity = (
            load_base(params.model, device) if name == "base" else load_tuned(params.model, TUNED, device)
        )
        prompts = build_prompts(records, tokenizer, template, params.model.chat_template)
        fingerprint = work_fingerprint(
            identity, params.generate, template, prompts, records, device.type, str(model.dtype)
        )
        run = generate_responses(
            model, tokenizer, records, params.generate, template,
            partial_path=open_partial(WORK, name, fingerprint), chat_template=params.model.chat_template, desc=name,
        )
        outputs[f"{name}.jsonl"] = "".join(map(jsonl_line, run.rows))
        metrics[name] = generation_metrics(run.rows, params.generate, run.tokens_per_s)
        del model
    write_file_set(OUT, outputs)  # both files at once: never a new base.jsonl beside an old tuned.jsonl
    write_json(METRICS, metrics)
    clear_work(WORK)


if __name__ == "__main__":
    run_stage(main)
