"""Generation: batching, stop strings, seeding, resume, fingerprints, metrics, loading a tuned model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from dvc_stages import stage_command, stage_paths
from instruct_tune.lm import templates
from instruct_tune.errors import UserError
from instruct_tune.lm.generation import (
    StopCriteria, build_prompts, clean_response, encode_prompts, generate_responses, generation_stats,
    left_pad, load_base, load_test_records, load_tuned, open_partial, plan_batches,
    work_fingerprint,
)
from instruct_tune.io import read_jsonl, read_jsonl_tolerant, write_jsonl
from instruct_tune.params import GenerateParams, ModelParams

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

RECORDS = [
    {"id": f"r{i}", "instruction": instr, "input": inp, "output": "x", "answer": None, "task": None}
    for i, (instr, inp) in enumerate([
        ("Add 2 and 3.", ""),
        ("Name the capital of France.", ""),
        ("Sort these numbers in ascending order and write them as a comma-separated list.", "9, 4, 7, 1"),
        ("Reverse the word.", "banana"),
        ("Convert 5 kilometres to metres, please, and explain the conversion briefly.", ""),
        ("Hi", ""),
    ])
]
# no_repeat_ngram_size=1: a random tiny model otherwise repeats one token; this makes its text varied.
GREEDY = GenerateParams(
    do_sample=False, max_new_tokens=10, batch_size=3, save_every=3, repetition_penalty=1.0, no_repeat_ngram_size=1
)
SAMPLED = dataclasses.replace(GREEDY, do_sample=True, temperature=0.7, top_p=0.9)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    model, tokenizer, _ = load_base(ModelParams(name=str(tiny_llama_dir)), CPU)
    return model, tokenizer


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir):
    model, tokenizer, _ = load_base(ModelParams(name=str(tiny_gpt2_dir)), CPU)
    return model, tokenizer


def responses(run):
    return [(r["response"], r["new_tokens"], r["finish"]) for r in run.rows]


@pytest.mark.parametrize("which,template", [("llama", "chatml"), ("gpt2", "alpaca")])
def test_left_padded_batches_match_one_by_one(which, template, request):
    model, tokenizer = request.getfixturevalue(which)
    batched = generate_responses(model, tokenizer, RECORDS, GREEDY, template)
    single = generate_responses(model, tokenizer, RECORDS, dataclasses.replace(GREEDY, batch_size=1), template)
    assert responses(batched) == responses(single)
    assert [r["id"] for r in batched.rows] == [r["id"] for r in RECORDS]  # test-set order restored
    assert all(r["new_tokens"] == 10 and r["finish"] == "length" for r in batched.rows)  # random weights: no eos
    assert tokenizer.padding_side == "right"  # left padding per call, the shared tokenizer untouched


def test_batches_group_similar_lengths_deterministically():
    assert plan_batches([3, 9, 5, 9, 1], 2) == [[1, 3], [2, 0], [4]]


def test_left_padding_and_no_double_bos(llama):
    enc = left_pad([[5, 6], [7]], pad_id=0)
    assert enc["input_ids"].tolist() == [[5, 6], [0, 7]] and enc["attention_mask"].tolist() == [[1, 1], [0, 1]]
    _, tok = llama
    (chat,) = encode_prompts(tok, build_prompts(RECORDS[:1], tok, "chatml"))
    assert chat[0] == tok.bos_token_id and chat[1] != tok.bos_token_id  # the template's own BOS only


def test_clean_response_cuts_at_the_first_stop_string(llama):
    _, tok = llama
    stops = ["### Instruction", "<|user|>", "<|im_start|>"]
    ids = tok("The answer is 4.\n\n### Instruction:\nAdd 1 and 1.", add_special_tokens=False).input_ids
    assert clean_response(tok, ids, stops) == "The answer is 4."
    ids = tok("Paris.<|im_end|>\n<|im_start|>user\nMore", add_special_tokens=False).input_ids
    assert clean_response(tok, ids, stops) == "Paris."  # special tokens dropped, cut at the special stop
    ids = tok("  plain <|endoftext|>text ", add_special_tokens=False).input_ids
    assert clean_response(tok, ids, stops) == tok.decode(ids, skip_special_tokens=True).strip()


def test_stop_criteria_records_the_step_and_reason(llama):
    _, tok = llama
    prompt = [5, 6, 7]
    text = tok("ok then\n<|user|>\nnext", add_special_tokens=False).input_ids
    crit = StopCriteria(tok, len(prompt), ["<|user|>"], [2], batch=2)
    stop_at = None
    for step in range(1, len(text) + 1):
        ids = torch.tensor([prompt + text[:step], prompt + [9] * (step - 1) + [2]])
        done = crit(ids).tolist()
        if done[0] and stop_at is None:
            stop_at = step
    assert crit.reason == ["stop", "eos"] and crit.length[1] == 1
    assert stop_at == crit.length[0] and "<|user|>" in tok.decode(text[:stop_at])
    assert "<|user|>" not in tok.decode(text[: stop_at - 1])


def test_generation_stops_at_a_stop_string(llama):
    model, tok = llama
    free = generate_responses(model, tok, RECORDS[:2], GREEDY, "chatml")
    words = free.rows[0]["response"].split()
    assert len(words) >= 3, free.rows[0]["response"]
    stop = words[2]
    cut = generate_responses(model, tok, RECORDS[:2], dataclasses.replace(GREEDY, stop_strings=[stop]), "chatml")
    row = cut.rows[0]
    assert row["finish"] == "stop" and row["new_tokens"] < 10
    assert stop not in row["response"] and free.rows[0]["response"].startswith(row["response"])


def test_same_seed_same_samples_other_seed_differs(llama):
    model, tok = llama
    a = generate_responses(model, tok, RECORDS, SAMPLED, "chatml")
    b = generate_responses(model, tok, RECORDS, SAMPLED, "chatml")
    c = generate_responses(model, tok, RECORDS, dataclasses.replace(SAMPLED, seed=1), "chatml")
    assert responses(a) == responses(b)
    assert responses(a) != responses(c)


class Crash(Exception):
    pass


def counting(model, crash_after=None):
    """Wrap `model.generate` to count rows generated, optionally crashing after some calls."""
    calls = {"calls": 0, "rows": 0}
    original = model.generate

    def generate(*args, **kwargs):
        if crash_after is not None and calls["calls"] >= crash_after:
            raise Crash()
        calls["calls"] += 1
        calls["rows"] += kwargs["input_ids"].shape[0]
        return original(*args, **kwargs)

    model.generate = generate
    return calls


def test_resume_after_interruption_gives_identical_outputs(llama, tmp_path):
    model, tok = llama
    reference = generate_responses(model, tok, RECORDS, SAMPLED, "chatml")
    partial = tmp_path / "tuned.partial.jsonl"
    counting(model, crash_after=1)
    try:
        with pytest.raises(Crash):
            generate_responses(model, tok, RECORDS, SAMPLED, "chatml", partial_path=partial)
        saved = read_jsonl_tolerant(partial)
        assert len(saved) == 3  # one batch finished and saved
        with open(partial, "a") as fh:
            fh.write('{"id": "r9", "respo')  # a torn last line, as kill -9 leaves it
        del model.generate
        calls = counting(model)
        resumed = generate_responses(model, tok, RECORDS, SAMPLED, "chatml", partial_path=partial)
    finally:
        del model.generate  # back to the class's method
    assert calls == {"calls": 1, "rows": 3}  # only the unfinished batch
    assert resumed.generated == 3
    assert resumed.rows == reference.rows
    assert [r["id"] for r in read_jsonl(partial)] and len(read_jsonl(partial)) == 6


def test_fingerprint_mismatch_starts_fresh(llama, tmp_path):
    _, tok = llama
    prompts = build_prompts(RECORDS, tok, "chatml")

    def fp(params, template="chatml", ps=prompts):
        return work_fingerprint({"model": "m"}, ModelParams(), params, template, ps, RECORDS, "cpu", "torch.float32")

    base = fp(SAMPLED)
    assert fp(dataclasses.replace(SAMPLED, save_every=99)) == base  # no effect on outputs
    assert fp(dataclasses.replace(SAMPLED, temperature=0.8)) != base
    assert fp(SAMPLED, ps=build_prompts(RECORDS, tok, "alpaca")) != base
    partial = open_partial(tmp_path, "base", base)
    write_jsonl(partial, [{"id": "r0"}])
    assert read_jsonl(open_partial(tmp_path, "base", base)) == [{"id": "r0"}]  # same fingerprint: kept
    assert not open_partial(tmp_path, "base", fp(SAMPLED, template="alpaca")).exists()  # changed: fresh


def test_fingerprint_follows_prompt_text_stop_strings_records_and_model_params(llama, monkeypatch):
    _, tok = llama

    def fp(model=None, records=RECORDS):
        model = model or ModelParams()
        prompts = build_prompts(records, tok, "alpaca")
        return work_fingerprint({"model": "m"}, model, SAMPLED, "alpaca", prompts, records, "cpu", "torch.float32")

    base = fp()
    monkeypatch.setattr(templates, "ALPACA_PREAMBLE", templates.ALPACA_PREAMBLE + " Be brief.")
    assert fp() != base  # an edited prompt constant: the old rows are not reused
    monkeypatch.undo()
    assert fp() == base
    monkeypatch.setitem(templates.STOP_STRINGS, "alpaca", ["### End"])
    assert fp() != base  # the template's stop strings
    monkeypatch.undo()
    assert fp(records=[{**RECORDS[0], "answer": "5"}, *RECORDS[1:]]) != base  # rows carry the record's fields
    assert fp(model=ModelParams(load_in="8bit")) != base


def test_generation_stats_on_hand_made_rows():
    rows = [{"response": "The answer is 42.", "new_tokens": 6, "finish": "eos"},
            {"response": "", "new_tokens": 1, "finish": "eos"},
            {"response": "It is 4.2 or so", "new_tokens": 8, "finish": "stop"},
            {"response": "326 " * 10, "new_tokens": 20, "finish": "length"}]
    s = generation_stats(rows, tokens_per_s=12.345)
    assert s == {"n": 4, "tokens_per_s": 12.35, "mean_new_tokens": 8.75,
                 "mean_chars": round(sum(len(r["response"]) for r in rows) / 4, 4),
                 "finish": {"eos": 2, "stop": 1, "length": 1}}


def test_bad_test_record_names_line_and_field(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"id": "a", "instruction": "x", "output": "y"}\n{"id": "b", "instruction": 3}\n')
    with pytest.raises(UserError, match=r"test\.jsonl: line 2: field 'instruction': expected a string, got 3$"):
        load_test_records(path)
    path.write_text('{"id": "a", "instruction": "x"}\n{"id": "a", "instruction": "y"}\n')
    with pytest.raises(UserError, match=r"test\.jsonl: line 2: field 'id': duplicate id 'a' \(also line 1\)$"):
        load_test_records(path)


def make_adapter(base_dir: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # peft starts B at zero: make the adapter change something
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


def test_lora_adapter_and_full_folders_load_as_tuned(tiny_llama_dir, tmp_path):
    params = ModelParams(name=str(tiny_llama_dir))
    adapter = make_adapter(tiny_llama_dir, tmp_path / "tuned")
    tuned, tok, ident = load_tuned(params, adapter, CPU)
    base, _, base_ident = load_base(params, CPU)
    assert set(ident) == {"adapter", "base"} and ident["base"] == base_ident
    assert not hasattr(tuned, "peft_config")  # merged into plain weights
    ids = tok("Hello there", return_tensors="pt").input_ids
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)
    full, _, full_ident = load_tuned(params, tiny_llama_dir, CPU)
    with torch.no_grad():
        assert torch.allclose(full(ids).logits, base(ids).logits)
    assert set(full_ident) == {"model"}
    with pytest.raises(UserError, match="run the train stage first"):
        load_tuned(params, tmp_path / "absent", CPU)


def test_stage_resumes_after_sigkill(tiny_llama_dir, tmp_path):
    """Kill the real stage script with SIGKILL mid-run; the rerun finishes without redoing saved rows."""
    records = [dict(RECORDS[i % len(RECORDS)], id=f"k{i}") for i in range(12)]
    paths = {name: tmp_path / path for name, path in stage_paths("generate").items()}  # as dvc.yaml names them
    write_jsonl(paths["test"], records)
    shutil.copytree(tiny_llama_dir, paths["tuned"])
    (tmp_path / "params.yaml").write_text(
        f"model:\n  name: {tiny_llama_dir}\ntrain:\n  template: chatml\n"
        "generate:\n  max_new_tokens: 30\n  batch_size: 1\n  save_every: 1\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    cmd = stage_command("generate")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = paths["work"] / "base.partial.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(read_jsonl_tolerant(partial)) < 3 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = read_jsonl_tolerant(partial)
    assert len(saved) >= 3 and not paths["metrics"].exists(), "finished before the kill"
    saved[0]["response"] = "SENTINEL"  # a redone record would lose this mark
    write_jsonl(partial, saved)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    base = read_jsonl(paths["out"] / "base.jsonl")
    tuned = read_jsonl(paths["out"] / "tuned.jsonl")
    assert [r["id"] for r in base] == [r["id"] for r in records]
    by_id = {r["id"]: r for r in base}
    assert all(by_id[r["id"]] == {k: v for k, v in r.items() if k != "seconds"} for r in saved)
    assert by_id[saved[0]["id"]]["response"] == "SENTINEL"
    same = [t["response"] == b["response"] for t, b in zip(tuned, base)]
    assert same.count(False) == 1  # same weights, same params: only the marked record differs
    headline = json.loads(paths["metrics"].read_text())
    # generate measures the run only (scores are the evaluate stage's)
    assert headline["n"] == 12 and set(headline["base"]) == {"mean_new_tokens"}
    metrics = json.loads(paths["breakdown"].read_text())
    assert metrics["base"]["n"] == 12 and metrics["tuned"]["finish"]["length"] + metrics["tuned"]["finish"]["eos"] \
        + metrics["tuned"]["finish"]["stop"] == 12
    # the tuned model's work is cleared after a finished run; the base model's stays, a fingerprinted cache
    assert sorted(p.name for p in paths["work"].iterdir()) == ["base.fingerprint", "base.partial.jsonl"]
