"""Talk to a trained model: `instruct-tune-chat` (interactive) or `instruct-tune-chat "Name three colours."`;
`--gguf models/export/model-f16.gguf` talks to the exported GGUF through llama.cpp instead, with the same template.

Loads `models/tuned` (a full model or a LoRA adapter) as the generate stage loads it, and answers through the
generate stage's own code: the same prompt template (`train.template`), tokens (BOS included), stop strings and
clean-up. It answers greedily, so the same question gets the same answer; the study samples
(`generate.do_sample`, `generate.temperature`), so its answers to a question vary around this one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError
from instruct_tune.params import PARAMS_FILE, GenerateParams, ModelParams, Template, load_params

DEFAULT_MODEL = "models/tuned"  # the train stage's output (tests/test_contracts.py keeps it equal to dvc.yaml's)


def load_chat_model(model_dir: str, base: ModelParams) -> tuple[Any, Any]:
    """A full model folder, or a LoRA adapter folder on top of `base`: loaded as the generate stage loads it."""
    from instruct_tune.lm.generation import load_tuned
    from instruct_tune.lm.modeling import pick_device

    if not Path(model_dir).exists():
        raise UserError(f"{model_dir}: no such model folder (run `dvc repro train` first, or pass --model)")
    model, tokenizer, _ = load_tuned(base, model_dir, pick_device(base.device))
    model.eval()
    return model, tokenizer


def answer(model: Any, tokenizer: Any, instruction: str, input_text: str, template: Template | Any,
           params: GenerateParams, chat_template: str | None = None) -> str:
    """The model's greedy answer, prompted, tokenized, stopped and cleaned as the generate stage does it."""
    from instruct_tune.lm.generation import build_prompts, generate_batch
    from instruct_tune.lm.templates import stop_strings

    prompts = build_prompts([{"instruction": instruction, "input": input_text}], tokenizer, template, chat_template)
    greedy = dataclasses.replace(params, do_sample=False)
    ((text, _, _),) = generate_batch(model, tokenizer, prompts, greedy, stop_strings(template, params.stop_strings),
                                     seed=params.seed)
    return text


class GgufChat:
    """An exported GGUF run by llama.cpp, answering like `answer` does: the same prompt text (the tokenizer saved
    beside it in merged/, else the one inside the GGUF), greedy, the same stop strings and clean-up. llama.cpp's
    repetition penalty looks back 64 tokens where transformers' sees the whole text, so long answers may differ."""

    def __init__(self, gguf: str, params: ModelParams, n_ctx: int = 2048, n_threads: int = 0) -> None:
        from instruct_tune.lm.gguf_runtime import open_gguf
        from instruct_tune.lm.modeling import load_tokenizer

        self.llm = open_gguf(gguf, n_ctx, n_threads)
        merged = Path(gguf).parent / "merged"
        source = merged if (merged / "tokenizer_config.json").exists() else Path(gguf)
        self.tokenizer = load_tokenizer(dataclasses.replace(params, name=str(source), gguf_file=None, revision=None))

    def answer(self, instruction: str, input_text: str, template: Template, params: GenerateParams,
               chat_template: str | None = None) -> str:
        from instruct_tune.lm.generation import build_prompts, clean_response
        from instruct_tune.lm.gguf_runtime import adds_bos, greedy, prompt_ids
        from instruct_tune.lm.templates import stop_strings

        (prompt,) = build_prompts([{"instruction": instruction, "input": input_text}], self.tokenizer, template,
                                  chat_template)
        stops = stop_strings(template, params.stop_strings)
        ids = prompt_ids(self.llm, prompt, adds_bos(self.tokenizer, prompt))
        new, _ = greedy(self.llm, ids, params.max_new_tokens, params.repetition_penalty, stops)
        return clean_response(self.tokenizer, new, stops)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instruction", nargs="?", help="one instruction to answer; omit for an interactive prompt")
    parser.add_argument("--input", default="", help="the optional input field")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--gguf", default=None,
                        help="an exported GGUF (models/export/model-f16.gguf) instead of --model")
    parser.add_argument("--params", default=PARAMS_FILE)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: generate.max_new_tokens")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        if args.gguf:
            chat = GgufChat(args.gguf, params.model, params.export.n_ctx, params.export.n_threads)
            reply = chat.answer
        else:
            model, tokenizer = load_chat_model(args.model, params.model)

            def reply(*a: Any) -> str:
                return answer(model, tokenizer, *a)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    from instruct_tune.lm.templates import prompt_style

    template, chat_template = prompt_style(params.train), params.model.chat_template
    generate = params.generate
    if args.max_new_tokens is not None:
        generate = dataclasses.replace(generate, max_new_tokens=args.max_new_tokens)
    if args.instruction:
        print(reply(args.instruction, args.input, template, generate, chat_template))
        return
    print(f"Chatting with {args.gguf or args.model} ({template.name} template). Empty line or Ctrl-D to quit.")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        print(reply(line, "", template, generate, chat_template))


if __name__ == "__main__":
    main()
