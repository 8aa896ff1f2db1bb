"""Prompt templates, one module for train, generate and judge.

A template turns a record (`instruction`, `input`) into the prompt text that precedes the response.
The response itself is the record's `output`; the end-of-sequence token is appended by the caller as
a token id (not as text), so it is always exactly one real eos token, even when pad == eos.

- `alpaca`: the reference study's format ("Below is an instruction that describes a task...").
- `chatml`: the tokenizer's own chat template when it has one (SmolLM2, most instruct models), else
  plain ChatML text (`<|im_start|>user ... <|im_end|>`), for models such as GPT-2 that ship none.
- `dialogue`: `<|user|>` / `<|assistant|>` turns; a record's `input` holds earlier turns as context.
"""

from __future__ import annotations

from typing import Any, get_args

from instruct_tune.lm.special_tokens import plain_text
from instruct_tune.params import Template

TEMPLATES = get_args(Template)  # the names params.yaml allows for `train.template`

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)

# Where a generated response should stop if the model runs on into a new turn.
STOP_STRINGS = {
    "alpaca": ["### Instruction", "### Input"],
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "dialogue": ["<|user|>"],
}


def format_alpaca(instruction: str, input_text: str = "") -> str:
    """The reference study's prompt (rasbt/LLMs-from-scratch ch. 7 `format_input` + response header)."""
    text = f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{instruction}"
    if input_text:
        text += f"\n\n### Input:\n{input_text}"
    return text + "\n\n### Response:\n"


def _user_message(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def format_chatml(instruction: str, input_text: str = "", tokenizer: Any = None,
                  chat_template: str | None = None) -> str:
    """The tokenizer's chat template with a generation prompt, or plain ChatML if it has none."""
    messages = [{"role": "user", "content": _user_message(instruction, input_text)}]
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if tokenizer is not None and template:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
    return f"<|im_start|>user\n{messages[0]['content']}<|im_end|>\n<|im_start|>assistant\n"


def format_dialogue(instruction: str, input_text: str = "") -> str:
    """`<|user|>` / `<|assistant|>` turns; earlier turns (the record's input) come first as context."""
    context = f"{input_text.strip()}\n" if input_text else ""
    return f"{context}<|user|>\n{instruction}\n<|assistant|>\n"


def format_prompt(
    record: dict[str, Any], template: str, tokenizer: Any = None, chat_template: str | None = None
) -> str:
    """The prompt for `record` under `template`: everything the model sees before its response."""
    # Record text stays text: markers in it never become the template's special tokens (special_tokens.py).
    instruction = plain_text(record.get("instruction", ""), tokenizer)
    input_text = plain_text(record.get("input", "") or "", tokenizer)
    if template == "alpaca":
        return format_alpaca(instruction, input_text)
    if template == "chatml":
        return format_chatml(instruction, input_text, tokenizer, chat_template)
    if template == "dialogue":
        return format_dialogue(instruction, input_text)
    raise ValueError(f"unknown template {template!r} (choose one of {', '.join(TEMPLATES)})")


def stop_strings(template: str, extra: list[str] | None = None) -> list[str]:
    """Stop strings for generation under `template`, plus any from params (deduplicated, ordered)."""
    out: list[str] = []
    for s in STOP_STRINGS.get(template, []) + list(extra or []):
        if s and s not in out:
            out.append(s)
    return out
