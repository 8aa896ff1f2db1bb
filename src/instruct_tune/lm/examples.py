"""Training examples from split records: exact labels, packing and dynamic padding (no model, no Trainer).

- `encode_example`: prompt + response -> input ids and labels. The prompt/response boundary comes from the
  tokenizer's character offsets (never from searching for a template string); one eos id ends every response
  and stays in the labels even when pad == eos; an over-long record keeps its response (the prompt is trimmed
  from the left, or the record is dropped), and a record whose response cannot fit is dropped and counted.
- `build_examples` / `pack_examples` / `PadCollator`: the datasets and dynamic padding (padding is masked by
  position, not by token id); packing puts several examples in a row with restarting position ids, which
  transformers turns into a block-diagonal attention mask, so packed examples never see each other.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from instruct_tune.io import read_records
from instruct_tune.lm.special_tokens import plain_text
from instruct_tune.lm.templates import format_prompt
from instruct_tune.params import TrainParams

IGNORE_INDEX = -100  # label value the loss ignores


def encode_example(
    prompt: str,
    response: str,
    tokenizer: Any,
    max_length: int,
    loss_on: str = "response",
    overlong: str = "trim_prompt",
) -> tuple[dict[str, list[int]] | None, str | None]:
    """Token ids and labels for one record, or (None, reason) when it cannot train.

    Labels are -100 on prompt tokens (those whose first character lies inside the prompt text) unless
    `loss_on == "all"`; the appended eos always carries a label, so the model learns to stop.
    """
    if not response.strip():
        return None, "empty_response"
    text = prompt + response
    # A chat template that already starts with the BOS text must not get a second BOS from the tokenizer.
    add_special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special)
    ids = list(enc["input_ids"])
    # Special tokens the tokenizer adds have offset (0, 0): they count as prompt.
    n_prompt = sum(1 for start, _ in enc["offset_mapping"] if start < len(prompt))
    if n_prompt == len(ids):
        return None, "empty_response"
    ids.append(tokenizer.eos_token_id)
    n_response = len(ids) - n_prompt  # response tokens + eos
    if len(ids) > max_length:
        if overlong == "drop":
            return None, "overlong"
        keep_prompt = max_length - n_response
        if keep_prompt < 1:  # not even one prompt token left: the response alone does not fit
            return None, "response_too_long"
        ids = ids[n_prompt - keep_prompt:]
        n_prompt = keep_prompt
    labels = list(ids) if loss_on == "all" else [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    return {"input_ids": ids, "labels": labels}, None


def read_split(path: Path) -> list[dict[str, Any]]:
    """Records of a split file; a missing or mistyped `instruction`/`input`/`output` names file, line, field."""
    return read_records(path, required=("instruction", "output"), optional=("input", "system"))


def training_text(record: dict[str, Any], tokenizer: Any, train: TrainParams,
                  chat_template: str | None = None) -> tuple[str, str]:
    """The prompt and the response text the trainer encodes for `record` (the preview shows the same)."""
    prompt = format_prompt(record, train, tokenizer, chat_template)  # train: a custom template, system prompt
    return prompt, plain_text(record["output"], tokenizer)  # markers in the response stay text (special_tokens.py)


def build_examples(
    records: list[dict[str, Any]], tokenizer: Any, train: TrainParams, chat_template: str | None = None
) -> tuple[list[dict[str, list[int]]], Counter]:
    """Encode every record; return the examples and the count of dropped records per reason."""
    examples, dropped = [], Counter()
    for record in records:
        prompt, response = training_text(record, tokenizer, train, chat_template)
        example, reason = encode_example(prompt, response, tokenizer, train.max_length, train.loss_on,
                                         train.overlong)
        if example is None:
            dropped[reason] += 1
        else:
            examples.append(example)
    return examples, dropped


def pack_examples(examples: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Greedy packing in the given order into rows of at most `max_length` tokens.

    Position ids restart at 0 for each example: transformers reads that (with no attention mask) as packed
    sequences and masks attention block-diagonally. Each example's first label is -100, so no token is
    predicted across a boundary.
    """
    rows: list[dict[str, list[int]]] = []
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for ex in examples:
        n = len(ex["input_ids"])
        if row["input_ids"] and len(row["input_ids"]) + n > max_length:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": []}
        row["input_ids"] += ex["input_ids"]
        row["labels"] += [IGNORE_INDEX] + ex["labels"][1:]
        row["position_ids"] += list(range(n))
    if row["input_ids"]:
        rows.append(row)
    return rows


@dataclass
class PadCollator:
    """Right-pads a batch to its longest row; padding is masked by position (attention mask, labels -100).

    Packed rows (with `position_ids`) get no attention mask, so that transformers derives the packed
    block-diagonal mask from the position ids; their padding is a separate short segment with labels -100.
    """

    pad_id: int
    pad_to_multiple_of: int | None = None
    # Compute logits only from the first labelled position on (`logits_to_keep`): the LM head and the
    # softmax over the vocabulary are a large share of a small model's work, wasted on masked prompt tokens.
    trim_logits: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in features[0]
        ids, labels, mask, positions = [], [], [], []
        for f in features:
            n, pad = len(f["input_ids"]), longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            mask.append([1] * n + [0] * pad)
            if packed:
                positions.append(list(f["position_ids"]) + list(range(pad)))
        batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
        if self.trim_logits:
            # logits[:, j] is scored against labels[:, j + 1]: keep logits from one before the first label.
            labelled = (batch["labels"] != IGNORE_INDEX).any(dim=0).nonzero()
            start = max(int(labelled[0]) - 1, 0) if len(labelled) else 0
            batch["labels"] = batch["labels"][:, start:]
            batch["logits_to_keep"] = longest - start
        if packed:
            batch["position_ids"] = torch.tensor(positions)
        else:
            batch["attention_mask"] = torch.tensor(mask)
        return batch


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the (base) model's forward takes `logits_to_keep`, as transformers' causal LMs do."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters
