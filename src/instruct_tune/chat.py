"""Talk to a trained model: `instruct-tune-chat` (interactive) or `instruct-tune-chat "Name three colours."`.

Loads `models/tuned` (a full model or a LoRA adapter) with the prompt template it was trained with
(`train.template` in params.yaml) and generates greedily, so the answer you see is the one the study measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from instruct_tune.errors import UserError
from instruct_tune.params import ModelParams, load_params
from instruct_tune.templates import format_prompt, stop_strings


def load_chat_model(model_dir: str, base: ModelParams) -> tuple[Any, Any]:
    """A full model folder, or a LoRA adapter folder on top of `base`: loaded as the generate stage loads it."""
    from instruct_tune.generation import load_tuned
    from instruct_tune.modeling import pick_device

    if not Path(model_dir).exists():
        raise UserError(f"{model_dir}: no such model folder (run `dvc repro train` first, or pass --model)")
    model, tokenizer, _ = load_tuned(base, model_dir, pick_device(base.device))
    model.eval()
    return model, tokenizer


def answer(model: Any, tokenizer: Any, instruction: str, input_text: str, template: str, max_new_tokens: int) -> str:
    prompt = format_prompt({"instruction": instruction, "input": input_text}, template, tokenizer)
    batch = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            stop_strings=stop_strings(template),
            tokenizer=tokenizer,
        )
    text = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    for stop in stop_strings(template):
        text = text.split(stop)[0]
    return text.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instruction", nargs="?", help="one instruction to answer; omit for an interactive prompt")
    parser.add_argument("--input", default="", help="the optional input field")
    parser.add_argument("--model", default="models/tuned", help="model folder (default: models/tuned)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        model, tokenizer = load_chat_model(args.model, params.model)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    template = params.train.template
    if args.instruction:
        print(answer(model, tokenizer, args.instruction, args.input, template, args.max_new_tokens))
        return
    print(f"Chatting with {args.model} ({template} template). Empty line or Ctrl-D to quit.")
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        print(answer(model, tokenizer, line, "", template, args.max_new_tokens))


if __name__ == "__main__":
    main()
