"""Batched, resumable generation for the test split: model inference only (scoring is `evaluate.answers`).

How a run goes:
- every record's prompt comes from `templates.format_prompt` (the template the model was trained with);
- prompts are sorted by token length and cut into batches (less padding), padded on the LEFT so every
  row's next token sits in the last column, and decoded with the KV cache (`model.generate`);
- a row ends at an eos token, at a stop string (a new `### Instruction`, `<|user|>`, `<|im_start|>`, ...),
  or after `max_new_tokens`; its text is cut at the first stop string;
- each batch is seeded from `generate.seed` and the ids of its records, and batches are formed from the
  whole test set, so a record's output never depends on where an interrupted run resumed;
- finished rows are appended (and fsynced) to a partial file every `save_every` records; a rerun with
  the same fingerprint (model files and params, generate params, prompts and records, stop strings, this
  code) skips them.

Public entry points: `generate_responses` (one model over records) and `generation_stats` (what the run did:
lengths, finish reasons, speed), reused by the stage script and the benchmark.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from instruct_tune.errors import UserError
from instruct_tune.io import (
    append_jsonl, atomic_write_text, files_digest, read_jsonl_tolerant, read_records, sha256_file, write_jsonl,
)
from instruct_tune.lm.modeling import load_model, load_tokenizer, resolve_source
from instruct_tune.params import GenerateParams, ModelParams, fingerprint
from instruct_tune.lm.templates import format_prompt, stop_strings

FINISH_REASONS = ("eos", "stop", "length")


# ---------------------------------------------------------------------------------------------- input


def load_test_records(path: str | Path) -> list[dict[str, Any]]:
    """The test split, checked field by field; an error names the file, line and field."""
    return read_records(path, required=("id", "instruction"), nonempty=("id", "instruction"),
                        optional=("input", "output", "answer", "task", "system"), unique="id",
                        if_empty="no records to generate for")


def build_prompts(
    records: list[dict[str, Any]], tokenizer: Any, template: Any, chat_template: str | None = None
) -> list[str]:
    """The prompts under `template` (a name, a templates.PromptStyle or the `train` params section)."""
    return [format_prompt(r, template, tokenizer, chat_template) for r in records]


def encode_prompts(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids per prompt, as training tokenizes them: special tokens (a BOS) are added unless the
    prompt text already starts with the BOS text, as a chat template's output may."""
    bos = tokenizer.bos_token
    return [tokenizer(p, add_special_tokens=not (bos and p.startswith(bos)))["input_ids"] for p in prompts]


def left_pad(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch padded on the LEFT, so every row's last prompt token sits in the last column, where
    generation continues; the attention mask hides the padding."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------- models


def base_identity(params: ModelParams) -> dict[str, Any]:
    """What identifies the base model's weights: its files' digest when local (the bundled GGUF too)."""
    source = resolve_source(params)
    local = Path(source.path) / source.gguf_file if source.gguf_file else Path(source.path)
    ident: dict[str, Any] = {"name": params.name, "revision": params.revision, "gguf_file": source.gguf_file}
    if local.exists():
        ident["files"] = files_digest(local)
    return ident


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / "adapter_config.json").exists()


def load_base(params: ModelParams, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """The base model, its tokenizer and its identity (for the resume fingerprint)."""
    return load_model(params, device), load_tokenizer(params), base_identity(params)


def load_tuned(params: ModelParams, folder: str | Path, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """The train stage's output: a full model folder, or a LoRA adapter applied to the base and merged.

    Merging (`merge_and_unload`) makes generation as fast as the base model's; the tokenizer comes from
    the folder when it holds one (train saves it there), else from the base.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: the tuned model is missing (run the train stage first)")
    has_tokenizer = (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists()
    local = dataclasses.replace(params, name=str(folder), gguf_file=None, revision=None)
    if is_adapter(folder):
        from peft import PeftModel

        base = load_model(params, device)
        try:
            model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder}: cannot load the LoRA adapter: {exc}") from None
        tokenizer = load_tokenizer(local if has_tokenizer else params)
        ident = {"adapter": files_digest(folder), "base": base_identity(params)}
    else:
        model, tokenizer = load_model(local, device), load_tokenizer(local)
        ident = {"model": files_digest(folder)}
    return model, tokenizer, ident


# ---------------------------------------------------------------------------------------------- resume


def work_fingerprint(
    model_identity: dict[str, Any],
    model: ModelParams,
    params: GenerateParams,
    template: Any,  # a name, a PromptStyle or the train section
    prompts: list[str],
    records: list[dict[str, Any]],
    device: str,
    dtype: str,
) -> str:
    """A hash of everything that decides the rows: a partial file from another fingerprint is discarded.

    Nothing here is kept by hand: the model's files and params, the generate params but their operational
    fields, the exact prompts with the whole records, the stop strings in force, the source of the code that
    turns them into rows (this module and templates.py), and the versions of torch and transformers.
    """
    import transformers

    from instruct_tune.lm import templates

    payload = {
        "model": model_identity,
        "model_params": fingerprint(model),
        "generate": fingerprint(params),
        "template": templates.describe(template),
        "stops": stop_strings(template, params.stop_strings),
        "records": hashlib.sha256(
            json.dumps([[r, p] for r, p in zip(records, prompts)], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest(),
        "code": [sha256_file(__file__), sha256_file(templates.__file__)],
        "device": device,
        "dtype": dtype,
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def open_partial(work_dir: str | Path, name: str, fingerprint: str) -> Path:
    """The partial file for `name` in `work_dir`; emptied when its stored fingerprint differs."""
    work_dir = Path(work_dir)
    partial = work_dir / f"{name}.partial.jsonl"
    stamp = work_dir / f"{name}.fingerprint"
    if not stamp.exists() or stamp.read_text(encoding="utf-8").strip() != fingerprint:
        partial.unlink(missing_ok=True)  # before the new stamp: a crash in between leaves no stale rows
        atomic_write_text(stamp, fingerprint + "\n")
    return partial


def clear_work(work_dir: str | Path, names: tuple[str, ...] = ("base", "tuned")) -> None:
    """Remove the partial files once the final outputs exist, so nothing stale outlives a finished run."""
    for name in names:
        for suffix in (".partial.jsonl", ".fingerprint"):
            (Path(work_dir) / f"{name}{suffix}").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- generation


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Record indices in batches of similar prompt length (longest first, ties in test-set order).

    Depends only on the whole test set, never on which records are already done, so a resumed run
    forms (and seeds) exactly the batches an uninterrupted one would.
    """
    if batch_size < 1:
        raise UserError(f"params.yaml: `generate.batch_size` must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batch_seed(seed: int, ids: list[str]) -> int:
    """A seed for one batch from `generate.seed` and its records' ids (stable across processes)."""
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return (seed + int(digest[:15], 16)) % (2**63)


class StopCriteria:
    """Stops each row at an eos token or once its new text contains a stop string, and records why and when.

    Called by `generate` after every step with the batch's ids; only the last few new tokens are
    decoded (a stop string of L characters spans at most L tokens), so the check stays cheap.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[str], eos_ids: list[int], batch: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.eos_ids = set(eos_ids)
        self.window = max((len(s) for s in stops), default=0) + 1
        self.length: list[int | None] = [None] * batch  # new tokens, up to and including the one that ended it
        self.reason: list[str | None] = [None] * batch

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :]
        steps = new.shape[1]
        tails = new[:, -self.window :].tolist() if steps else [[] for _ in range(new.shape[0])]
        for row, tail in enumerate(tails):
            if self.reason[row] is not None or not tail:
                continue
            if tail[-1] in self.eos_ids:
                self.length[row], self.reason[row] = steps, "eos"
            elif self.stops:
                text = self.tokenizer.decode(tail, skip_special_tokens=False)
                if any(s in text for s in self.stops):
                    self.length[row], self.reason[row] = steps, "stop"
        done = [r is not None for r in self.reason]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def clean_response(tokenizer: Any, ids: list[int], stops: list[str]) -> str:
    """The response text: cut at the first stop string, special tokens dropped, whitespace stripped.

    Decoding keeps special tokens first because some stop strings are special tokens (`<|im_start|>`);
    dropping their text afterwards gives what `skip_special_tokens=True` gives.
    """
    text = tokenizer.decode(ids, skip_special_tokens=False)
    cuts = [text.find(s) for s in stops if s in text]
    if cuts:
        text = text[: min(cuts)]
    for special in tokenizer.all_special_tokens:
        text = text.replace(special, "")
    return text.strip()


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def generate_kwargs(params: GenerateParams) -> dict[str, Any]:
    """`model.generate` settings from params, every one explicit (the model's own defaults never leak in)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "do_sample": params.do_sample,
        "repetition_penalty": params.repetition_penalty,
        "no_repeat_ngram_size": params.no_repeat_ngram_size,
        "use_cache": True,
    }
    if params.do_sample:
        kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    return kwargs


def generate_batch(
    model: Any, tokenizer: Any, prompts: list[str], params: GenerateParams, stops: list[str], seed: int
) -> list[tuple[str, int, str]]:
    """(response, new_tokens, finish) per prompt, for one left-padded batch."""
    device = next(model.parameters()).device
    enc = {k: v.to(device) for k, v in left_pad(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id).items()}
    prompt_len = enc["input_ids"].shape[1]
    eos_ids = eos_token_ids(model, tokenizer)
    criteria = StopCriteria(tokenizer, prompt_len, stops, eos_ids, len(prompts))
    from transformers import StoppingCriteriaList

    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            **generate_kwargs(params),
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([criteria]),
        )
    results = []
    for row, ids in enumerate(out[:, prompt_len:].tolist()):
        n = criteria.length[row] if criteria.length[row] is not None else len(ids)
        finish = criteria.reason[row] or "length"
        kept = ids[: n - 1] if finish == "eos" else ids[:n]  # the eos token is no part of the text
        results.append((clean_response(tokenizer, kept, stops), n, finish))
    return results


@dataclass
class GenerationRun:
    """One model's rows in test-set order, and the timing of the work behind them."""

    rows: list[dict[str, Any]]
    generated: int  # records generated by this call (the rest came from the partial file)
    new_tokens: int  # over all rows
    seconds: float  # generation wall time over all rows, including the resumed ones

    @property
    def tokens_per_s(self) -> float | None:
        return self.new_tokens / self.seconds if self.seconds > 0 else None


def _row(record: dict[str, Any], prompt: str, response: str, new_tokens: int, finish: str) -> dict[str, Any]:
    return {
        "id": record["id"],
        "instruction": record["instruction"],
        "input": record.get("input") or "",
        "reference": record.get("output") or "",
        "answer": record.get("answer"),
        "task": record.get("task"),
        "prompt": prompt,
        "response": response,
        "new_tokens": new_tokens,
        "finish": finish,
    }


def generate_responses(
    model: Any,
    tokenizer: Any,
    records: list[dict[str, Any]],
    params: GenerateParams,
    template: Any,  # a name, a PromptStyle or the train section
    partial_path: str | Path | None = None,
    chat_template: str | None = None,
    desc: str = "generate",
) -> GenerationRun:
    """Responses of `model` to `records` (rows in the records' order); resumes from `partial_path` if given.

    The partial file holds finished rows plus their share of batch wall time (`seconds`); rows are
    appended every `params.save_every` records, so a killed run loses at most that many.
    """
    from tqdm.auto import tqdm

    model.eval()
    stops = stop_strings(template, params.stop_strings)
    prompts = build_prompts(records, tokenizer, template, chat_template)
    lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
    wanted = {r["id"] for r in records}
    done: dict[str, dict[str, Any]] = {}
    if partial_path is not None:
        done = {r["id"]: r for r in read_jsonl_tolerant(partial_path) if r.get("id") in wanted}
        write_jsonl(partial_path, done.values())  # compacted: a torn last line would corrupt the next append
    pending: list[dict[str, Any]] = []
    generated = 0
    with tqdm(total=len(records), initial=len(done), desc=desc, unit="rec") as bar:
        for batch in plan_batches(lengths, params.batch_size):
            todo = [i for i in batch if records[i]["id"] not in done]
            if not todo:
                continue
            # The whole batch is regenerated even when part of it is done: same batch, same seed, same outputs.
            start = time.perf_counter()
            results = generate_batch(
                model, tokenizer, [prompts[i] for i in batch], params, stops,
                batch_seed(params.seed, [records[i]["id"] for i in batch]),
            )
            share = (time.perf_counter() - start) / len(batch)
            for i, (response, n, finish) in zip(batch, results):
                if records[i]["id"] in done:
                    continue
                row = _row(records[i], prompts[i], response, n, finish) | {"seconds": share}
                done[row["id"]] = row
                pending.append(row)
            generated += len(todo)
            if partial_path is not None and len(pending) >= params.save_every:
                append_jsonl(partial_path, pending)
                pending = []
            bar.update(len(todo))
    if partial_path is not None and pending:
        append_jsonl(partial_path, pending)
    ordered = [done[r["id"]] for r in records]
    seconds = sum(float(r.get("seconds", 0.0)) for r in ordered)
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in ordered]
    return GenerationRun(rows, generated, sum(r["new_tokens"] for r in rows), seconds)


# ---------------------------------------------------------------------------------------------- statistics


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 4) if n else None


def generation_stats(rows: list[dict[str, Any]], tokens_per_s: float | None = None) -> dict[str, Any]:
    """What one model's run did: its rows, new tokens and characters per answer, finish reasons, speed.

    A deterministic function of the rows except `tokens_per_s` (a timing, passed in). Scores of the answers
    (accuracy, repetition) are the `evaluate` stage's, so a scoring change never reruns generation.
    """
    n = len(rows)
    finish = Counter(r["finish"] for r in rows)
    return {
        "n": n,
        "tokens_per_s": round(tokens_per_s, 2) if tokens_per_s is not None else None,
        "mean_new_tokens": _mean(sum(r["new_tokens"] for r in rows), n),
        "mean_chars": _mean(sum(len(r["response"]) for r in rows), n),
        "finish": {reason: finish.get(reason, 0) for reason in FINISH_REASONS},
    }


HEADLINE_KEYS = ("mean_new_tokens",)


def run_summary(rows_by_model: dict[str, list[dict[str, Any]]],
                timings: dict[str, float | None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics/generate.json (headline: answer lengths) and its breakdown (finish reasons, speed), per model."""
    details = {name: generation_stats(rows, timings.get(name)) for name, rows in rows_by_model.items()}
    headline: dict[str, Any] = {name: {k: d[k] for k in HEADLINE_KEYS} for name, d in details.items()}
    headline["n"] = len(rows_by_model.get("tuned", []))
    return headline, details
