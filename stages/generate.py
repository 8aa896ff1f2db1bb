"""Stage `generate`: responses of the base and the tuned model to the test split (model inference only).

Reads --test and --tuned (a full model or a LoRA adapter), params `model`, `train.template`, `generate`; writes
{base,tuned}.jsonl in --out, --metrics (answer lengths) and --breakdown (finish reasons, speed). Scoring the answers
is the `evaluate` stage's. Resumable: finished rows sit in --work (scratch, git-ignored, not a DVC out; keyed by a
fingerprint of everything that decides them) until both models are done.
"""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.lm.generation import (
    build_prompts, clear_work, generate_responses, load_base, load_test_records, load_tuned, open_partial,
    run_summary, work_fingerprint,
)
from instruct_tune.io import jsonl_line, write_file_set, write_json
from instruct_tune.lm.modeling import pick_device
from instruct_tune.lm.templates import PromptStyle
from instruct_tune.params import load_params


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "test", "tuned", "out", "work", "metrics", "breakdown")
    params = load_params()
    # the template's name, a custom template's text, the system prompt
    template = PromptStyle(params.train.template, params.train.prompt_template, params.train.system_prompt)
    records = load_test_records(paths.test)
    device = pick_device(params.model.device)
    rows, timings, outputs = {}, {}, {}
    for name in ("base", "tuned"):
        model, tokenizer, identity = (
            load_base(params.model, device) if name == "base" else load_tuned(params.model, paths.tuned, device)
        )
        prompts = build_prompts(records, tokenizer, template, params.model.chat_template)
        fingerprint = work_fingerprint(
            identity, params.model, params.generate, template, prompts, records, device.type, str(model.dtype)
        )
        run = generate_responses(
            model, tokenizer, records, params.generate, template,
            partial_path=open_partial(paths.work, name, fingerprint), chat_template=params.model.chat_template,
            desc=name,
        )
        outputs[f"{name}.jsonl"] = "".join(map(jsonl_line, run.rows))
        rows[name], timings[name] = run.rows, run.tokens_per_s
        del model
    write_file_set(paths.out, outputs)  # both files at once: never a new base.jsonl beside an old tuned.jsonl
    headline, breakdown = run_summary(rows, timings)
    write_json(paths.breakdown, breakdown)
    write_json(paths.metrics, headline)
    # The base model's answers depend on nothing that training changes: its fingerprinted work file stays as a
    # cache, so an experiment that only retrains (Small, a new lr) does not regenerate them.
    clear_work(paths.work, names=("tuned",))


if __name__ == "__main__":
    run_stage(main)
