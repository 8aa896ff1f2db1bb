"""Stage `export`: take the tuned model home. Reads --tuned (a full model or a LoRA adapter) and --test, params
`export`, `model`, `train.template` (with a custom template's text and the system prompt); writes --out (merged/
safetensors + tokenizer, model-f16.gguf, model-<type>.gguf for `export.gguf_type`, an Ollama Modelfile), --metrics
(per GGUF type: exact-match share and token agreement of greedy answers against the trained model on a seeded sample
of test prompts) and --breakdown (stop mismatches, file sizes, seconds per step, the answers). An f16 GGUF that
disagrees beyond `export.min_*` fails the stage.
"""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.io import write_json
from instruct_tune.lm.export import run_export, write_disabled
from instruct_tune.lm.generation import load_test_records
from instruct_tune.lm.templates import PromptStyle
from instruct_tune.params import load_params


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "tuned", "test", "out", "metrics", "breakdown")
    params = load_params()
    export = params.export
    if not export.enabled:
        headline, breakdown = write_disabled(paths.out)
    else:
        # the template training used: its name, a custom template's text, the system prompt
        template = PromptStyle(params.train.template, params.train.prompt_template, params.train.system_prompt)
        headline, breakdown = run_export(params.model, template, export, paths.tuned, load_test_records(paths.test),
                                         paths.out)
    write_json(paths.breakdown, breakdown)
    write_json(paths.metrics, headline)
    for name, figures in headline.items():
        if isinstance(figures, dict):
            print(f"export {name}: exact match {figures['exact_match']}, token agreement "
                  f"{figures['token_agreement']} on {figures['n']} prompts")


if __name__ == "__main__":
    run_stage(main)
