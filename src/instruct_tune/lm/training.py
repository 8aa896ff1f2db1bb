"""Fine-tuning a causal LM on the split records: exact labels, length-grouped batches, a transformers Trainer run.

The pieces, one idea each:
- `lm.examples`: `encode_example` (prompt + response -> input ids and exact labels), `build_examples`,
  `pack_examples` and `PadCollator` (the datasets, packing and dynamic padding).
- `lm.checkpoints`: the checkpoint fingerprint and which checkpoints can be resumed.
- `train`: the Trainer run (full or LoRA), resumable from `models/checkpoints` (guarded by a fingerprint of
  the params and the token ids trained on), logged with DVCLive, evaluated on the whole validation set, best
  checkpoint kept.

Why transformers' Trainer and not TRL's SFTTrainer: the label rules above (offsets, kept eos, trim-left,
drop-and-count) are this project's own, and SFTTrainer would re-tokenise and re-mask by its own rules; the
Trainer gives the rest (schedulers, optimizers, accumulation, checkpoint/resume with RNG state, DDP,
length-grouped sampling) with nothing in the way.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from instruct_tune.errors import UserError
from instruct_tune.io import write_json
from instruct_tune.lm.checkpoints import checkpoint_dirs, checkpoint_fingerprint, last_checkpoint, prepare_checkpoints
from instruct_tune.lm.examples import PadCollator, accepts_logits_to_keep, build_examples, pack_examples, read_split
from instruct_tune.lm.modeling import check_quantisation, load_model, load_tokenizer, pick_device, pick_dtype
from instruct_tune.params import LoraParams, ModelParams, TrainParams

if TYPE_CHECKING:  # for the callbacks' annotations only
    from transformers import TrainerControl, TrainerState, TrainingArguments

# Per-architecture LoRA targets: the attention projections, as in the LoRA paper's default.
LORA_TARGETS = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
                "qwen2": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "phi3": ["qkv_proj"]}


@dataclass
class TrainPaths:
    """Where the stage reads and writes (dvc.yaml's `cmd` names them: `--train PATH --val PATH ...`)."""

    train: Path
    val: Path
    model_dir: Path
    checkpoints: Path  # scratch resume state, git-ignored, not a DVC out
    metrics: Path
    breakdown: Path
    plots: Path


# The numbers metrics/train.json declares to DVC; the rest of a run's figures go to the breakdown file.
HEADLINE_KEYS = ("base_val_loss", "val_loss", "val_perplexity", "train_loss", "train_tokens_per_s", "steps",
                 "n_train_examples")


# ---------------------------------------------------------------- checks before any heavy work


def check_train_params(train: TrainParams, model: ModelParams, device: torch.device) -> None:
    """Reject out-of-range or inconsistent values and CPU-incompatible options before the model is loaded (the
    allowed names of `template`, `scheduler`, `optimizer`, ... are checked when params.yaml is read)."""
    positive = {"max_length": 2, "batch_size": 1, "grad_accum": 1, "eval_steps": 1, "logging_steps": 1, "save_steps": 1}
    for name, low in positive.items():
        if getattr(train, name) < low:
            raise UserError(f"params.yaml: `train.{name}` must be >= {low}, got {getattr(train, name)}")
    if train.save_steps % train.eval_steps:
        raise UserError(f"params.yaml: `train.save_steps` ({train.save_steps}) must be a multiple of "
                        f"`train.eval_steps` ({train.eval_steps}): the best checkpoint is chosen among evaluated ones")
    if train.warmup_steps and train.warmup_ratio:
        raise UserError("params.yaml: set `train.warmup_steps` or `train.warmup_ratio`, not both")
    if not 0 <= train.warmup_ratio < 1:
        raise UserError(f"params.yaml: `train.warmup_ratio` must be in [0, 1), got {train.warmup_ratio}")
    if train.max_steps <= 0 and train.epochs <= 0:
        raise UserError("params.yaml: `train.epochs` must be > 0 when `train.max_steps` is -1")
    if device.type != "cuda" and any(k in train.optimizer for k in ("8bit", "4bit", "bnb", "paged")):
        raise UserError(f"params.yaml: `train.optimizer`: {train.optimizer} (bitsandbytes) needs CUDA; "
                        f"this run is on {device.type}: use adamw_torch")
    pick_dtype(model.dtype, device)
    check_quantisation(model, device)
    if model.load_in and not train.lora.enabled:
        raise UserError("params.yaml: `model.load_in` (8bit/4bit) trains only with `train.lora.enabled: true`")


# ---------------------------------------------------------------- LoRA


def lora_targets(model: Any, lora: LoraParams) -> list[str]:
    """The modules LoRA adapts: `train.lora.target_modules`, else the default for the architecture."""
    if lora.target_modules:
        return list(lora.target_modules)
    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if model_type in PEFT_DEFAULTS:
        return list(PEFT_DEFAULTS[model_type])
    raise UserError(f"params.yaml: `train.lora.target_modules`: no default for architecture {model_type!r}; name them")


def apply_lora(model: Any, lora: LoraParams, seed: int) -> Any:
    """Wrap `model` with a LoRA adapter (peft); the adapter's random init is seeded."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora_targets(model, lora),
                        fan_in_fan_out=model.config.model_type == "gpt2")  # GPT-2's Conv1D stores weights transposed
    torch.manual_seed(seed)
    return get_peft_model(model, config)


# ---------------------------------------------------------------- callbacks


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _Throughput(_callback_base()):
    """Seconds spent inside optimizer steps (no eval, no saving) and the non-pad tokens they consumed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self._start = 0.0
        self._tokens_before: int | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._tokens_before = state.num_input_tokens_seen

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self.seconds += time.perf_counter() - self._start
        self.tokens = state.num_input_tokens_seen - (self._tokens_before or 0)


class _EvalAtEnd(_callback_base()):
    """Evaluate and save after the last step too, so the final weights compete for 'best'."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> TrainerControl:
        if state.global_step >= state.max_steps:
            control.should_log = True
            control.should_evaluate = True
            control.should_save = True
        return control


# DVCLive metric name for each Trainer log key we plot.
LIVE_KEYS = {"loss": "train/loss", "eval_loss": "eval/loss", "learning_rate": "train/learning_rate",
             "grad_norm": "train/grad_norm"}


class _LiveLogger(_callback_base()):
    """Logs loss, eval loss, learning rate and grad norm to DVCLive at the Trainer's global step.

    DVCLive's own HF callback steps once per log call (train and eval logs land on different steps) and
    a resumed run would lose the history before the checkpoint; this one replays the restored history first.
    """

    def __init__(self, live: Any) -> None:
        self.live = live

    def _log(self, logs: dict[str, Any], step: int) -> None:
        self.live.step = step
        logged = False
        for key, name in LIVE_KEYS.items():
            if key in logs:
                self.live.log_metric(name, round(float(logs[key]), 6))
                logged = True
        if logged:
            self.live.make_summary()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        for entry in state.log_history:  # restored from a checkpoint when resuming
            self._log(entry, entry["step"])

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            self._log(logs, state.global_step)


def _live(folder: Path) -> Any:
    """DVCLive, writing nothing to dvc.yaml and making no experiment of its own.

    Without its system monitor: CPU/RAM/disk samples are machine telemetry logged at step 0 every few seconds, so
    each run rewrote ~1,000 committed lines that no plot could use and `git diff plots/` drowned in them.
    """
    from dvclive import Live

    return Live(dir=str(folder), dvcyaml=False, save_dvc_exp=False, monitor_system=False)


def _tidy_live_dir(folder: Path) -> None:
    """Leave plot data only: drop DVCLive's summary (metrics/train.json has the run's figures) and its
    wall-clock column (the system monitor writes one), so outputs carry no timestamps."""
    (folder / "metrics.json").unlink(missing_ok=True)
    for tsv in folder.rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if lines and lines[0].split("\t")[0] == "timestamp":
            tsv.write_text("".join("\t".join(line.split("\t")[1:]) + "\n" for line in lines))


# ---------------------------------------------------------------- the run


def training_arguments(
    train: TrainParams, output_dir: Path, device: torch.device, autocast_dtype: torch.dtype | None = None
) -> Any:
    """TrainingArguments from `train.*`: every knob passed through, nothing hidden.

    `autocast_dtype` (bf16/fp16, CUDA only) turns on mixed precision: the optimizer keeps fp32 weights.
    """
    from transformers import TrainingArguments

    warmup: float = train.warmup_steps or train.warmup_ratio  # transformers reads a value < 1 as a ratio
    report_to = [r for r in train.report_to if r not in ("none", "dvclive")]
    for tracker in report_to:
        try:
            __import__(tracker)
        except ImportError:
            raise UserError(f"params.yaml: `train.report_to`: {tracker} is not installed") from None
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        weight_decay=train.weight_decay,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        warmup_steps=warmup,
        lr_scheduler_type=train.scheduler,
        optim=train.optimizer,
        max_grad_norm=train.max_grad_norm,
        activation_checkpointing=train.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        seed=train.seed,
        data_seed=train.seed,
        train_sampling_strategy="group_by_length" if train.group_by_length and not train.packing else "random",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        report_to=report_to or "none",
        use_cpu=device.type == "cpu",
        bf16=autocast_dtype == torch.bfloat16,
        fp16=autocast_dtype == torch.float16,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def keep_freed_memory() -> None:
    """Ask glibc to reuse freed memory instead of returning big blocks to the OS after every step.

    By default every tensor over 32 MB (logits, embedding gradients) is a fresh mmap, and touching it again
    costs hundreds of thousands of page faults per training step on CPU; a custom allocator (jemalloc,
    tcmalloc) is the usual cure, `mallopt` the same effect with no new dependency. No-op off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve big blocks from the heap
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep freed heap memory for the next step
    except (OSError, AttributeError):
        pass


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished output folder into place, so a failed run leaves the previous one intact."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def save_trained(trainer: Any, tokenizer: Any, lora: LoraParams, out: Path) -> None:
    """models/tuned: full safetensors, a LoRA adapter, or (lora.merge) the merged full weights; with the tokenizer."""
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model = trainer.model
    if lora.enabled and lora.merge:
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    _replace_dir(tmp, out)


def best_eval_loss(trainer: Any) -> float:
    """Validation loss of the best model (loaded by load_best_model_at_end) over the whole validation set.

    The Trainer already evaluated exactly these weights on the whole set at the best step (evaluation is
    deterministic), so that logged value is reused; evaluate again only when no evaluation was logged.
    """
    state = trainer.state
    best = state.best_global_step or state.global_step
    for entry in reversed(state.log_history):
        if "eval_loss" in entry and entry["step"] == best:
            return float(entry["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def summarise(state: Any, history: list[dict[str, Any]], val_loss: float, throughput: _Throughput,
              runtime: float) -> dict[str, Any]:
    """The metrics of a run, from the Trainer's log history (restored on resume, so resume-proof)."""
    losses, last_step = [], 0
    for entry in history:
        if "loss" in entry:
            losses.append((entry["step"] - last_step, entry["loss"]))
            last_step = entry["step"]
    steps = sum(n for n, _ in losses)
    train_loss = sum(n * loss for n, loss in losses) / steps if steps else float("nan")
    base = next((e["eval_loss"] for e in history if e.get("step") == 0 and "eval_loss" in e), None)
    return {
        "base_val_loss": round(base, 6) if base is not None else None,
        "base_val_perplexity": round(math.exp(base), 4) if base is not None else None,
        "train_loss": round(train_loss, 6),  # mean over all steps, as the Trainer reports it
        "train_loss_last": round(losses[-1][1], 6) if losses else None,  # the last logging window
        "val_loss": round(val_loss, 6),
        "val_perplexity": round(math.exp(val_loss), 4),
        "steps": state.global_step,
        "epochs": round(state.epoch or 0.0, 4),
        "best_step": state.best_global_step or state.global_step,
        "train_tokens_per_s": round(throughput.tokens / throughput.seconds, 1) if throughput.seconds else 0.0,
        "train_tokens": throughput.tokens,
        "runtime_s": round(runtime, 1),
    }


def write_loss_chart(history: list[dict[str, Any]], path: Path) -> None:
    from instruct_tune.report.charts import line_png

    train = [(e["step"], e["loss"]) for e in history if "loss" in e]
    val = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
    series = {name: ([s for s, _ in pts], [v for _, v in pts])
              for name, pts in (("train", train), ("validation", val)) if pts}
    line_png(path, series, title="Loss by step", xlabel="step", ylabel="loss", markers=True)


def train(model_params: ModelParams, train_params: TrainParams, paths: TrainPaths) -> dict[str, Any] | None:
    """Run the `train` stage; return the metrics (on the main process; None on the others)."""
    # Long (~100 lines) on purpose: one straight sequence (check, encode, load, train, save, report) whose order
    # matters (checks before any load, seed before init, DVCLive closed on failure); its pieces are already helpers.
    from transformers import Trainer, set_seed

    tp, mp = train_params, model_params
    device = pick_device(mp.device)
    check_train_params(tp, mp, device)
    if tp.num_threads > 0:
        torch.set_num_threads(tp.num_threads)

    tokenizer = load_tokenizer(mp)
    train_examples, dropped = build_examples(read_split(paths.train), tokenizer, tp, mp.chat_template)
    val_examples, val_dropped = build_examples(read_split(paths.val), tokenizer, tp, mp.chat_template)
    if not train_examples:
        raise UserError(f"{paths.train}: no record fits `train.max_length` = {tp.max_length} with a trainable "
                        f"response (dropped: {dict(dropped)})")
    if not val_examples:
        raise UserError(f"{paths.val}: no validation record fits `train.max_length` = {tp.max_length} "
                        f"(dropped: {dict(val_dropped)})")
    n_train_examples = len(train_examples)
    if tp.packing:
        train_examples = pack_examples(train_examples, tp.max_length)

    # bf16/fp16 means mixed precision: a full fine-tune keeps fp32 master weights (pure-bf16 AdamW updates lose
    # most small steps to rounding) and autocasts; LoRA keeps the frozen base in bf16 and its adapters in fp32.
    compute_dtype = pick_dtype(mp.dtype, device)
    autocast_dtype = compute_dtype if compute_dtype in (torch.bfloat16, torch.float16) else None
    if autocast_dtype is not None and not tp.lora.enabled:
        mp = replace(mp, dtype="float32")
    # (creating the arguments initialises torch.distributed under torchrun)
    args = training_arguments(tp, paths.checkpoints, device, autocast_dtype)
    with args.main_process_first(desc="checkpoints"):
        if args.process_index == 0:
            prepare_checkpoints(paths.checkpoints, checkpoint_fingerprint(model_params, tp, train_examples,
                                                                          val_examples))
    resume = last_checkpoint(paths.checkpoints)
    if resume and args.process_index == 0:
        print(f"train: resuming from {resume}")

    if device.type == "cpu":
        keep_freed_memory()
    set_seed(tp.seed)
    model = load_model(mp, device, for_training=True)
    model.config.use_cache = False  # the KV cache is for generation; it only costs memory in training
    if tp.lora.enabled:
        model = apply_lora(model, tp.lora, tp.seed)
        if args.process_index == 0:
            model.print_trainable_parameters()

    throughput = _Throughput()
    collator = PadCollator(tokenizer.pad_token_id, trim_logits=accepts_logits_to_keep(model))
    trainer = Trainer(model=model, args=args, train_dataset=train_examples, eval_dataset=val_examples,
                      data_collator=collator, processing_class=tokenizer,
                      callbacks=[throughput, _EvalAtEnd()])
    live = _live(paths.plots) if args.process_index == 0 else None
    started = time.perf_counter()
    try:
        # "Did it help" in loss terms: the untouched base model on the same whole validation set. The
        # Trainer starts a fresh state in train(), so this step-0 point is kept here, not in its history.
        base_val_loss = float(trainer.evaluate()["eval_loss"])
        if live is not None:
            live.step = 0
            live.log_metric(LIVE_KEYS["eval_loss"], round(base_val_loss, 6))
            trainer.add_callback(_LiveLogger(live))
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if live is not None:
            trainer.remove_callback(_LiveLogger)
            live.end()  # stops the system monitor's (non-daemon) thread, also when training fails
    runtime = time.perf_counter() - started
    history = [{"step": 0, "eval_loss": base_val_loss}, *trainer.state.log_history]
    val_loss = best_eval_loss(trainer)
    if not trainer.is_world_process_zero():
        return None

    save_trained(trainer, tokenizer, tp.lora, paths.model_dir)
    metrics = summarise(trainer.state, history, val_loss, throughput, runtime)
    metrics.update({
        "n_train_examples": n_train_examples,
        "n_train_rows": len(train_examples),  # = examples unless packing
        "n_val_examples": len(val_examples),
        "n_dropped_overlong": dropped["overlong"] + dropped["response_too_long"],
        "dropped": dict(sorted(dropped.items())),
        "val_dropped": dict(sorted(val_dropped.items())),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "device": device.type,
        "world_size": args.world_size,
        "lora": tp.lora.enabled,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    })
    write_json(paths.breakdown, metrics)
    write_json(paths.metrics, {k: metrics[k] for k in HEADLINE_KEYS})
    _tidy_live_dir(paths.plots)
    write_loss_chart(history, paths.plots / "loss.png")
    if not tp.keep_checkpoints:
        for path in checkpoint_dirs(paths.checkpoints):  # the result is in models/tuned; checkpoints are GBs
            shutil.rmtree(path)
    return metrics
