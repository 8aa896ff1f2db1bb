"""The export stage on tiny random models: GGUF conversion (Llama and GPT-2 architectures), the quantizer, the
Modelfile per template, the greedy round trip, LoRA merging, and the error for an architecture llama.cpp lacks."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from instruct_tune.errors import UserError
from instruct_tune.lm.export import (
    agreement, check_tolerance, convert, modelfile_text, ollama_template, run_export, sample_records, save_merged,
)
from instruct_tune.lm.templates import PromptStyle, format_prompt
from instruct_tune.params import ExportParams, GenerateParams, ModelParams

RECORDS = [{"id": f"r{i}", "instruction": f"Name {i + 1} colours.", "input": "red" if i % 2 else ""}
           for i in range(10)]
PARAMS = ExportParams(check_prompts=6, max_new_tokens=24, n_threads=1, n_ctx=512)


def render(template: str, system: str | None, prompt: str) -> str:
    """Ollama's rendering of our TEMPLATE for one turn (the few Go-template actions the export writes)."""
    text = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ end \}\}", lambda m: m.group(1) if system else "", template,
                  flags=re.S)
    text = text.replace("{{ .System }}", system or "").replace("{{ .Prompt }}", prompt)
    return text.split("{{ .Response }}")[0]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path):
    from instruct_tune.lm.modeling import load_tokenizer

    return load_tokenizer(ModelParams(name=str(tokenizer_dir)))


@pytest.fixture(scope="module")
def llama_export(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("export") / "export"
    params = dataclasses.replace(PARAMS, gguf_type="q8_0")
    headline, breakdown = run_export(ModelParams(name=str(tiny_llama_dir)), "chatml", params, tiny_llama_dir,
                                     RECORDS, out)
    return out, headline, breakdown


# ---------------------------------------------------------------------------------------------- Modelfile


@pytest.mark.parametrize("template", ["alpaca", "chatml", "dialogue"])
def test_modelfile_template_renders_the_training_prompt(tokenizer, template: str) -> None:
    spec = ollama_template(template, tokenizer)
    for record in ({"instruction": "Name a colour."}, {"instruction": "Add them.", "input": ""}):
        assert render(spec.template, spec.system, record["instruction"]) == format_prompt(record, template, tokenizer)
    assert spec.template.endswith("{{ .Response }}" + tokenizer.eos_token)  # training: prompt, response, eos
    assert tokenizer.eos_token in spec.stops


@pytest.mark.parametrize("style", [
    PromptStyle("custom", "Responda à pergunta.\n\n### Pergunta: {instruction}[[\n\n### Contexto: {input}]]\n\n"
                          "### Resposta:\n"),
    PromptStyle("chatml", system_prompt="Você é um assistente de produtos."),
    PromptStyle("alpaca", system_prompt="Answer in one word."),
])
def test_modelfile_follows_a_custom_template_and_a_system_prompt(tokenizer, style: PromptStyle) -> None:
    """issue 17's templates: the Modelfile renders exactly the prompt training built, stops derived from it."""
    spec = ollama_template(style, tokenizer)
    record = {"instruction": "A caneca é azul?", "input": ""}
    assert render(spec.template, spec.system, record["instruction"]) == format_prompt(record, style, tokenizer)
    if style.name == "custom":
        assert "### Resposta" in " ".join(spec.stops) or "Responda" in " ".join(spec.stops)
    assert modelfile_text("m.gguf", spec, style).startswith(f"# Written by instruct-tune's export stage from the "
                                                          f"`{style.name}` prompt template")


def test_modelfile_text_chatml_takes_the_chat_templates_default_system(tokenizer) -> None:
    text = modelfile_text("model-f16.gguf", ollama_template("chatml", tokenizer), "chatml")
    assert text.splitlines()[1] == "FROM ./model-f16.gguf"
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert 'TEMPLATE """<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}' in text
    assert 'PARAMETER stop "<|im_start|>"' in text and 'PARAMETER stop "<|im_end|>"' in text


def test_modelfile_text_alpaca_makes_the_preamble_the_system_prompt(tokenizer) -> None:
    spec = ollama_template("alpaca", tokenizer)
    assert spec.system.startswith("Below is an instruction")
    assert spec.template.startswith("{{ if .System }}{{ .System }}\n\n{{ end }}### Instruction:\n{{ .Prompt }}")
    assert render(spec.template, None, "Hi") == "### Instruction:\nHi\n\n### Response:\n"  # a user's empty SYSTEM
    assert "### Instruction" in spec.stops


def test_plain_chatml_without_a_chat_template(tiny_gpt2_dir: Path) -> None:
    from instruct_tune.lm.modeling import load_tokenizer

    tok = load_tokenizer(ModelParams(name=str(tiny_gpt2_dir)))
    spec = ollama_template("chatml", tok)
    assert spec.system is None
    assert spec.template.startswith("<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n")


# ---------------------------------------------------------------------------------------------- round trip


def test_agreement_counts_prefix_tokens_exact_answers_and_stop_mismatches() -> None:
    hf = [([1, 2, 3, 4], "eos"), ([5, 6], "eos"), ([7, 8, 9], "length")]
    gg = [([1, 2, 3, 4], "eos"), ([5, 9], "eos"), ([7, 8, 9], "eos")]
    result = agreement(hf, gg, compare=32)
    assert result["n"] == 3 and result["exact_match"] == round(1 / 3, 4)
    assert result["token_agreement"] == round((4 + 1 + 3) / (4 + 2 + 3), 4)
    assert result["stop_mismatches"] == 1
    with pytest.raises(UserError, match="min_token_agreement.*min_exact_match"):
        check_tolerance(dict(result, token_agreement=0.5), ExportParams(), "model-f16.gguf")


def test_sample_is_seeded_and_in_test_order() -> None:
    a, b = sample_records(RECORDS, 4, 0), sample_records(RECORDS, 4, 0)
    assert a == b and [r["id"] for r in a] == sorted((r["id"] for r in a), key=lambda i: int(i[1:]))


def test_llama_export_writes_everything_and_round_trips(llama_export) -> None:
    out, headline, breakdown = llama_export
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Modelfile", "merged", "model-f16.gguf", "model-q8_0.gguf"]
    assert (out / "merged" / "model.safetensors").is_file() and (out / "merged" / "tokenizer.json").is_file()
    assert (out / "Modelfile").read_text().splitlines()[1] == "FROM ./model-q8_0.gguf"
    assert headline["f16"] == {"exact_match": 1.0, "token_agreement": 1.0, "n": 6}
    assert set(headline) == {"gguf_type", "f16", "q8_0"} and headline["q8_0"]["n"] == 6
    assert breakdown["types"]["f16"]["stop_mismatches"] == 0
    assert breakdown["types"]["f16"]["prompt_token_mismatches"] == 0  # llama.cpp reads the prompt as training did
    assert breakdown["files"]["model-q8_0.gguf"] < breakdown["files"]["model-f16.gguf"]
    json.dumps(breakdown)  # JSON-ready


def test_chat_talks_to_the_gguf_as_to_the_trained_model(llama_export, tiny_llama_dir: Path) -> None:
    from instruct_tune.lm.chat import GgufChat, answer, load_chat_model

    out = llama_export[0]
    params = GenerateParams(max_new_tokens=8, do_sample=False, repetition_penalty=1.0)
    model, tok = load_chat_model(str(tiny_llama_dir), ModelParams(name=str(tiny_llama_dir), device="cpu"))
    chat = GgufChat(str(out / "model-f16.gguf"), ModelParams(), n_ctx=512, n_threads=1)
    for instruction in ("Name a colour.", "Count to three."):
        assert chat.answer(instruction, "", "chatml", params) == answer(model, tok, instruction, "", "chatml", params)


def test_gpt2_lora_adapter_is_merged_converted_and_round_trips(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    adapter = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "tuned")
    AutoTokenizer.from_pretrained(tiny_gpt2_dir).save_pretrained(tmp_path / "tuned")
    merged_expected = adapter.merge_and_unload().state_dict()

    headline, breakdown = run_export(ModelParams(name=str(tiny_gpt2_dir)), "alpaca", PARAMS, tmp_path / "tuned",
                                     RECORDS, tmp_path / "export")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "export" / "merged").state_dict()
    key = "transformer.h.0.attn.c_attn.weight"
    original = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).state_dict()[key]
    assert torch.equal(merged[key], merged_expected[key]) and not torch.equal(merged[key], original)
    assert headline["f16"]["exact_match"] >= PARAMS.min_exact_match
    assert headline["f16"]["token_agreement"] >= PARAMS.min_token_agreement
    assert 'SYSTEM """Below is an instruction' in (tmp_path / "export" / "Modelfile").read_text()


def test_llama_lora_merge_in_float32(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    adapter = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                              init_lora_weights=False))
    adapter.save_pretrained(tmp_path / "tuned")
    expected = adapter.merge_and_unload().state_dict()["model.layers.0.self_attn.q_proj.weight"]
    model, _ = save_merged(ModelParams(name=str(tiny_llama_dir), dtype="auto"), tmp_path / "tuned", tmp_path / "m")
    got = AutoModelForCausalLM.from_pretrained(tmp_path / "m").state_dict()["model.layers.0.self_attn.q_proj.weight"]
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert (tmp_path / "m" / "tokenizer.json").is_file()  # the base's tokenizer when the adapter has none


def test_unsupported_architecture_is_a_clear_error(tokenizer_dir: Path, tmp_path: Path) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=128, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2,
                       max_position_embeddings=64, word_embed_proj_dim=16)
    OPTForCausalLM(config).save_pretrained(tmp_path / "opt")
    with pytest.raises(UserError, match="architecture OPTForCausalLM is not supported"):
        convert(tmp_path / "opt", tmp_path / "opt.gguf")
    assert not (tmp_path / "opt.gguf").exists()


def test_a_failed_check_leaves_the_previous_export_in_place(tiny_llama_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import instruct_tune.lm.export as export

    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("previous")
    # a GGUF whose greedy answers all differ from the trained model's (as a lost RoPE base made them, once)
    real = export.agreement
    monkeypatch.setattr(export, "agreement", lambda hf, gg, compare: real(hf, [([-1] * len(i), "x") for i, _ in gg],
                                                                         compare))
    params = dataclasses.replace(PARAMS, check_prompts=2)
    with pytest.raises(UserError, match="beyond tolerance"):
        run_export(ModelParams(name=str(tiny_llama_dir)), "dialogue", params, tiny_llama_dir, RECORDS, out)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert not out.with_name(".export.tmp").exists()


def test_report_section_shows_the_export_figures() -> None:
    from instruct_tune.report.build import section_export

    m = {"export": {"gguf_type": "q8_0", "f16": {"exact_match": 1.0, "token_agreement": 1.0, "n": 16},
                    "q8_0": {"exact_match": 0.1875, "token_agreement": 0.3232, "n": 16}}}
    b = {"export": {"compare_tokens": 32, "tolerance": {"f16": {"min_exact_match": 0.9, "min_token_agreement": 0.95}},
                    "files": {"model-f16.gguf": 270885728, "model-q8_0.gguf": 144810848},
                    "types": {"f16": {"stop_mismatches": 0}, "q8_0": {"stop_mismatches": 4}}}}
    text = "\n".join(section_export(m, b))
    assert text.startswith("## Take the model home")
    assert "| model-f16.gguf | 271 MB | 100.0% | 100.0% | 0 | 16 |" in text
    assert "| model-q8_0.gguf | 145 MB | 18.8% | 32.3% | 4 | 16 |" in text
    assert section_export({"export": {"enabled": False}}, {}) == []
