"""Prompt templates, one module for train, generate and judge.

A template turns a record (`instruction`, `input`) into the prompt text that precedes the response.
The response itself is the record's `output`; the end-of-sequence token is appended by the caller as
a token id (not as text), so it is always exactly one real eos token, even when pad == eos.

- `alpaca`: the reference study's format ("Below is an instruction that describes a task...").
- `chatml`: the tokenizer's own chat template when it has one (SmolLM2, most instruct models), else
  plain ChatML text (`<|im_start|>user ... <|im_end|>`), for models such as GPT-2 that ship none.
- `dialogue`: `<|user|>` / `<|assistant|>` turns; a record's `input` holds earlier turns as context.
- `custom`: your own text, `train.prompt_template`, over the record's fields (`{instruction}`, `{input}`,
  `{system}`, ...; `[[...]]` blocks drop when a field inside is empty; see `text_template`).

A system prompt (a record's `system`, which a column map may set, else `train.system_prompt`) is a system
message under `chatml` (through the tokenizer's chat template when it has one), replaces Alpaca's preamble, is a
`<|system|>` turn under `dialogue`, and is `{system}` in a custom template.

Callers pass a template as its name, a `PromptStyle`, or the `train` params section itself (`format_prompt(record,
params.train, ...)`), so that a custom template and the system prompt reach every place a prompt is made.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from typing import Any, get_args

from instruct_tune.lm.special_tokens import plain_text
from instruct_tune.params import Template
from instruct_tune.text_template import Block, Field, parse

TEMPLATES = get_args(Template)  # the names params.yaml allows for `train.template`

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)

# Where a generated response should stop if the model runs on into a new turn.
STOP_STRINGS = {
    "alpaca": ["### Instruction", "### Input"],
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "dialogue": ["<|user|>"],
    "custom": [],  # derived from the template's text: custom_stop_strings
}


@dataclass(frozen=True)
class PromptStyle:
    """A template's name and, for `custom`, its text; the system prompt used when a record has none."""

    name: str
    prompt_template: str | None = None
    system_prompt: str | None = None


def prompt_style(template: Any) -> PromptStyle:
    """A PromptStyle from a template name, a PromptStyle, or the `train` params section."""
    if isinstance(template, PromptStyle):
        return template
    if isinstance(template, str):
        return PromptStyle(template)
    return PromptStyle(template.template, template.prompt_template, template.system_prompt)


def describe(template: Any) -> dict[str, Any]:
    """The style as plain data (for cache keys and metrics)."""
    return asdict(prompt_style(template))


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Any:
    return parse(text)


def format_custom(record: dict[str, Any], prompt_template: str, system: str = "") -> str:
    """`train.prompt_template` filled from the record; `{system}` is the record's system prompt or the param's."""
    def lookup(name: str) -> Any:
        return system if name == "system" else record.get(name)

    return _parsed(prompt_template).render(lookup)


_HEADER_RE = re.compile(r"^\s*(#{1,6}\s*[^:#\n]+?)\s*(:|$)")


def custom_stop_strings(prompt_template: str) -> list[str]:
    """Where a response under a custom template should stop: when the model starts the template over.

    That is the template's first line of fixed text and each Markdown-style section header in it (`### Pergunta`
    from `### Pergunta: {question}`), cut before the first placeholder and any `:`.
    """
    lines: list[str] = [""]
    for part in _parsed(prompt_template).parts:
        for piece in (part.parts if isinstance(part, Block) else (part,)):
            if isinstance(piece, Field):
                lines[-1] += "\0"  # a placeholder: a line's fixed text ends here
            else:
                first, *rest = piece.split("\n")
                lines[-1] += first
                lines += rest
    fixed = [line.split("\0")[0].strip() for line in lines]
    out = []
    first = next((line for line in fixed if line), None)
    if first is not None and len(first) >= 2:
        out.append(first)
    for line in fixed:
        match = _HEADER_RE.match(line)
        if match and match.group(1).strip() not in out:
            out.append(match.group(1).strip())
    return out


def format_alpaca(instruction: str, input_text: str = "", system: str = "") -> str:
    """The reference study's prompt (rasbt/LLMs-from-scratch ch. 7 `format_input` + response header); a system
    prompt replaces its preamble."""
    text = f"{system or ALPACA_PREAMBLE}\n\n### Instruction:\n{instruction}"
    if input_text:
        text += f"\n\n### Input:\n{input_text}"
    return text + "\n\n### Response:\n"


def _user_message(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def format_chatml(instruction: str, input_text: str = "", tokenizer: Any = None,
                  chat_template: str | None = None, system: str = "") -> str:
    """The tokenizer's chat template with a generation prompt, or plain ChatML if it has none; a system prompt
    is a system message."""
    messages = [{"role": "user", "content": _user_message(instruction, input_text)}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if tokenizer is not None and template:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def format_dialogue(instruction: str, input_text: str = "", system: str = "") -> str:
    """`<|user|>` / `<|assistant|>` turns; earlier turns (the record's input) come first as context, after a
    `<|system|>` turn when there is a system prompt."""
    head = f"<|system|>\n{system}\n" if system else ""
    context = f"{input_text.strip()}\n" if input_text else ""
    return f"{head}{context}<|user|>\n{instruction}\n<|assistant|>\n"


def format_prompt(
    record: dict[str, Any], template: Any, tokenizer: Any = None, chat_template: str | None = None
) -> str:
    """The prompt for `record` under `template` (a name, a PromptStyle or the `train` params): everything the
    model sees before its response."""
    style = prompt_style(template)
    # Record text stays text: markers in it never become the template's special tokens (special_tokens.py).
    # The system prompt from params is the user's own configuration, not data.
    record = {k: plain_text(v, tokenizer) if isinstance(v, str) else v for k, v in record.items()}
    instruction = record.get("instruction", "")
    input_text = record.get("input", "") or ""
    system = record.get("system") or style.system_prompt or ""
    if style.name == "alpaca":
        return format_alpaca(instruction, input_text, system)
    if style.name == "chatml":
        return format_chatml(instruction, input_text, tokenizer, chat_template, system)
    if style.name == "dialogue":
        return format_dialogue(instruction, input_text, system)
    if style.name == "custom":
        if not style.prompt_template:
            raise ValueError("template 'custom' needs `train.prompt_template`")
        return format_custom(record, style.prompt_template, system)
    raise ValueError(f"unknown template {style.name!r} (choose one of {', '.join(TEMPLATES)})")


def stop_strings(template: Any, extra: list[str] | None = None) -> list[str]:
    """Stop strings for generation under `template` (a custom one's come from its text), plus any from params
    (deduplicated, ordered)."""
    style = prompt_style(template)
    own = (custom_stop_strings(style.prompt_template) if style.name == "custom" and style.prompt_template
           else STOP_STRINGS.get(style.name, []))
    out: list[str] = []
    for s in own + list(extra or []):
        if s and s not in out:
            out.append(s)
    return out
