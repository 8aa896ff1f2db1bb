"""Take the tuned model home: models/tuned -> merged safetensors, a GGUF, an Ollama Modelfile, and a round-trip check.

How a run goes (`run_export`):
1. merge: models/tuned loaded as the generate stage loads it (a LoRA adapter is merged into its base), on the CPU in
   float32, and saved as `merged/` (safetensors + tokenizer);
2. convert: llama.cpp's `convert_hf_to_gguf.py` (shipped inside llama-cpp-python) turns `merged/` into
   `model-f16.gguf`, run as a subprocess with this Python; an architecture it does not know is a UserError naming it;
3. quantize: `export.gguf_type` other than f16 through llama.cpp's own quantizer (`llama_cpp.llama_model_quantize`);
4. Modelfile: TEMPLATE, SYSTEM and stop lines derived from the prompt text templates.py gives training (for chatml,
   the tokenizer's chat template rendered with marker messages and turned into Ollama's Go template);
5. round trip: greedy answers to a seeded sample of test prompts from the trained model (transformers) and from each
   GGUF (llama.cpp); f16 must agree within `export.min_token_agreement` / `export.min_exact_match`, or UserError.

The folder is built beside models/export and swapped in only when everything passed.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError, clip
from instruct_tune.params import ExportParams, ModelParams
from instruct_tune.lm.templates import ALPACA_PREAMBLE, PromptStyle, format_prompt, prompt_style, stop_strings

CONVERTER = "convert_hf_to_gguf.py"
# llama.cpp's file-type constants by the names params.yaml allows for `export.gguf_type` (params.GgufType)
GGUF_FTYPES = {"f16": "LLAMA_FTYPE_MOSTLY_F16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
               "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
               "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}

# The converter imports mistral_common and sentencepiece at the top, though only Mistral-format and SentencePiece
# (tokenizer.model) checkpoints use them. Where they are not installed, stand-ins let it run: any use of one fails.
_BOOTSTRAP = r"""
import importlib.machinery, importlib.util, json, os, sys, types
def stub(names):
    class Absent:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(f"{names[0]} is not installed (pip install {names[0].replace('_', '-')})")
    def attr(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Absent
    for name in names:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__getattr__ = attr
        sys.modules[name] = module
if importlib.util.find_spec("mistral_common") is None:
    base = "mistral_common.tokens.tokenizers"
    stub(["mistral_common", "mistral_common.tokens", base] + [f"{base}.{m}" for m in
         ("base", "multimodal", "tekken", "sentencepiece")])
if importlib.util.find_spec("sentencepiece") is None:
    stub(["sentencepiece"])
script, pre = sys.argv[1], sys.argv[2]
sys.argv = [sys.argv[1]] + sys.argv[3:]
spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
converter = importlib.util.module_from_spec(spec)
sys.modules["convert_hf_to_gguf"] = converter
spec.loader.exec_module(converter)
auto_config = converter.ModelBase.load_hparams
def load_hparams(dir_model, is_mistral_format):
    # transformers 5's AutoConfig drops keys the converter reads (rope_theta, n_ctx): config.json's fill them in
    config = auto_config(dir_model, is_mistral_format)
    raw = os.path.join(dir_model, "config.json")
    if os.path.isfile(raw):
        with open(raw, encoding="utf-8") as fh:
            for key, value in json.load(fh).items():
                config.setdefault(key, value)
    return config
converter.ModelBase.load_hparams = staticmethod(load_hparams)
if pre:  # the tokenizer's pre-tokenizer, declared rather than guessed from a hash of its output
    converter.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
converter.main()
"""


# ---------------------------------------------------------------------------------------------- conversion


def converter_script() -> Path:
    """llama.cpp's convert_hf_to_gguf.py as llama-cpp-python installs it (site-packages/bin/)."""
    import llama_cpp

    site = Path(llama_cpp.__file__).resolve().parents[1]
    for candidate in (site / "bin" / CONVERTER, site / "llama_cpp" / CONVERTER, Path(sys.prefix) / "bin" / CONVERTER):
        if candidate.is_file():
            return candidate
    raise UserError(f"{CONVERTER} not found beside llama-cpp-python ({site}/bin): reinstall llama-cpp-python")


def supported_architectures(script: Path) -> set[str]:
    """The Hugging Face architecture names the converter registers (`@ModelBase.register("...", ...)`)."""
    names: set[str] = set()
    for args in re.findall(r"@ModelBase\.register\(([^)]*)\)", script.read_text(encoding="utf-8")):
        names.update(re.findall(r"[\"']([^\"']+)[\"']", args))
    return names


def architecture(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return (config.get("architectures") or [config.get("model_type", "?")])[0]


def check_supported(folder: Path, script: Path) -> str:
    arch = architecture(folder)
    known = supported_architectures(script)
    if known and arch not in known:
        raise UserError(f"{folder}: architecture {arch} is not supported by llama.cpp's GGUF converter "
                        f"({script.name}); supported ones include GPT2LMHeadModel, LlamaForCausalLM, "
                        f"Qwen2ForCausalLM, MistralForCausalLM, Phi3ForCausalLM (set export.enabled: false to skip)")
    return arch


def converter_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json with the keys llama.cpp's converter reads under their transformers-4 names, beside the new ones.

    transformers 5 writes RoPE settings as `rope_parameters` and no longer writes GPT-2's `n_ctx`; the converter
    reads `rope_theta` / `rope_scaling` and `n_ctx`, and without them a GGUF silently gets llama.cpp's default
    RoPE base (10000 where SmolLM2 uses 100000): the answers drift after a few tokens (the round trip caught it).
    """
    config = dict(config)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict):
        if "rope_theta" in rope and "rope_theta" not in config:
            config["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default" and "rope_scaling" not in config:
            config["rope_scaling"] = rope
    if config.get("model_type") == "gpt2" and "n_ctx" not in config:
        config["n_ctx"] = config.get("n_positions", 1024)
    return config


def save_merged(model_params: ModelParams, tuned: Path, out: Path) -> tuple[Any, Any]:
    """models/tuned as one full model in float32 on the CPU (a LoRA adapter merged into its base), saved to `out`."""
    import torch

    from instruct_tune.lm.generation import load_tuned

    params = dataclasses.replace(model_params, dtype="float32", device="cpu", load_in=None)
    model, tokenizer, _ = load_tuned(params, tuned, torch.device("cpu"))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    config_file = out / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config_file.write_text(json.dumps(converter_config(config), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return model, tokenizer


def declared_pre_tokenizer(merged: Path) -> str:
    """"gpt-2" where the tokenizer splits text with GPT-2's own regex and nothing else, else "" (the converter's guess).

    The converter names a BPE tokenizer's pre-tokenizer by hashing its output on a test text; a tokenizer that
    transformers rebuilt from a GGUF (the bundled SmolLM2's) splits with plain GPT-2 rules, yet hashes as "smollm",
    whose llama.cpp rules read "\\n\\n8558" differently, so the GGUF would see other prompt tokens than training did.
    """
    try:
        pre = json.loads((merged / "tokenizer.json").read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return ""
    plain = pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
    return "gpt-2" if plain else ""


def convert(merged: Path, out_file: Path, script: Path | None = None) -> None:
    """`merged/` -> an f16 GGUF through llama.cpp's converter (a subprocess with this Python)."""
    script = script or converter_script()
    check_supported(merged, script)
    cmd = [sys.executable, "-c", _BOOTSTRAP, str(script), declared_pre_tokenizer(merged), str(merged),
           "--outfile", str(out_file), "--outtype", "f16"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out_file.is_file():
        log = done.stderr.strip().splitlines()
        unsupported = next((line for line in log if "is not supported" in line), None)
        reason = unsupported or "\n".join(log[-8:])
        raise UserError(f"{merged}: GGUF conversion failed ({script.name}, exit {done.returncode}): {reason}")


def quantize(source: Path, target: Path, gguf_type: str, n_threads: int = 0) -> None:
    """`source` (f16 GGUF) -> `target` at `gguf_type`, through llama.cpp's quantizer."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, GGUF_FTYPES[gguf_type])
    params.nthread = n_threads
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if rc != 0 or not target.is_file():
        raise UserError(f"{source}: llama.cpp could not quantize it to {gguf_type} (code {rc})")


# ---------------------------------------------------------------------------------------------- Modelfile

PROMPT_MARK, SYSTEM_MARK = "@@PROMPT-7f3a@@", "@@SYSTEM-7f3a@@"


@dataclass
class OllamaTemplate:
    template: str  # Ollama's Go template
    system: str | None  # the default system prompt training saw (None: none)
    stops: list[str]


def _lit(text: str) -> str:
    """Literal text inside a Go template (`{{` would start an action)."""
    return text.replace("{{", '{{ "{{" }}')


def _chat_prefix(tokenizer: Any, chat_template: str | None, pre: str, post: str) -> tuple[str, str | None]:
    """The Go-template text before `{{ .Prompt }}` for a tokenizer chat template, and its default system prompt.

    The template is rendered once more with a marker system message: where that replaces a default system prompt
    (SmolLM2's), the default becomes SYSTEM; where it adds a block the plain render lacks, the block becomes
    `{{ if .System }}...{{ end }}`; a template that refuses a system role keeps the plain prefix.
    """
    messages = [{"role": "system", "content": SYSTEM_MARK}, {"role": "user", "content": PROMPT_MARK}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                 chat_template=chat_template or tokenizer.chat_template)
    except Exception:  # a template may raise on a system role; then there is none to offer
        return _lit(pre), None
    if rendered.count(SYSTEM_MARK) != 1 or rendered.count(PROMPT_MARK) != 1:
        return _lit(pre), None
    pre_sys, post_sys = rendered.split(PROMPT_MARK)
    before, after = pre_sys.split(SYSTEM_MARK)
    if post_sys != post:
        return _lit(pre), None
    if pre_sys.endswith(pre) and len(pre_sys) > len(pre):  # an optional block before the user turn
        block = pre_sys[: len(pre_sys) - len(pre)]
        return "{{ if .System }}" + _lit(block).replace(SYSTEM_MARK, "{{ .System }}") + "{{ end }}" + _lit(pre), None
    if pre.startswith(before) and pre.endswith(after) and len(pre) >= len(before) + len(after):
        default = pre[len(before): len(pre) - len(after)]
        return _lit(before) + "{{ .System }}" + _lit(after), default or None
    return _lit(pre), None


def ollama_template(template: str | PromptStyle, tokenizer: Any, chat_template: str | None = None) -> OllamaTemplate:
    """Ollama's TEMPLATE, SYSTEM and stops for `template` (a name or a PromptStyle: a custom template, a system
    prompt), from the very prompt text training used."""
    style = prompt_style(template)
    prompt = format_prompt({"instruction": PROMPT_MARK, "input": ""}, style, tokenizer, chat_template)
    pre, post = prompt.split(PROMPT_MARK)
    system = None
    if style.name == "chatml" and (chat_template or getattr(tokenizer, "chat_template", None)) \
            and not style.system_prompt:
        prefix, system = _chat_prefix(tokenizer, chat_template, pre, post)
    elif style.name == "alpaca" and pre.startswith(ALPACA_PREAMBLE):
        rest = pre[len(ALPACA_PREAMBLE):]
        gap = rest[: len(rest) - len(rest.lstrip())]
        system = ALPACA_PREAMBLE
        prefix = "{{ if .System }}{{ .System }}" + _lit(gap) + "{{ end }}" + _lit(rest.lstrip())
    else:
        prefix = _lit(pre)
    eos = tokenizer.eos_token or ""
    text = prefix + "{{ .Prompt }}" + _lit(post) + "{{ .Response }}" + _lit(eos)  # training: prompt, response, eos
    # A system prompt of the user's (train.system_prompt) is already part of the prompt text, as in training.
    return OllamaTemplate(text, system, stop_strings(style, [eos] if eos else []))


def modelfile_text(gguf_name: str, spec: OllamaTemplate, template: str | PromptStyle) -> str:
    name = prompt_style(template).name
    lines = [f"# Written by instruct-tune's export stage from the `{name}` prompt template training used.",
             f"FROM ./{gguf_name}", f'TEMPLATE """{spec.template}"""']
    if spec.system:
        lines.append(f'SYSTEM """{spec.system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in spec.stops]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- round trip


def sample_records(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of `n` records, in test-set order."""
    if n >= len(records):
        return list(records)
    keep = set(random.Random(seed).sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in keep]


def hf_greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int,
              batch_size: int = 16) -> list[tuple[list[int], str]]:
    """Greedy new token ids per prompt from the transformers model (no repetition penalty), cut at eos."""
    import torch

    from instruct_tune.lm.generation import encode_prompts, eos_token_ids, left_pad

    eos = eos_token_ids(model, tokenizer)
    out: list[tuple[list[int], str]] = []
    for start in range(0, len(prompts), batch_size):
        enc = left_pad(encode_prompts(tokenizer, prompts[start: start + batch_size]), tokenizer.pad_token_id)
        width = enc["input_ids"].shape[1]
        with torch.inference_mode():
            ids = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, repetition_penalty=1.0,
                                 eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, use_cache=True)
        for row in ids[:, width:].tolist():
            end = next((i for i, t in enumerate(row) if t in eos), None)
            out.append((row[:end], "eos") if end is not None else (row, "length"))
    return out


def gguf_greedy(path: Path, tokenizer: Any, prompts: list[str], params: ExportParams
                ) -> tuple[list[tuple[list[int], str]], int]:
    """Greedy answers from the GGUF, and how many prompts llama.cpp tokenized differently from the tokenizer."""
    from instruct_tune.lm.generation import encode_prompts
    from instruct_tune.lm.gguf_runtime import adds_bos, greedy, open_gguf, prompt_ids

    llm = open_gguf(path, params.n_ctx, params.n_threads, params.seed)
    answers, mismatched = [], 0
    try:
        for text, hf_ids in zip(prompts, encode_prompts(tokenizer, prompts)):
            ids = prompt_ids(llm, text, adds_bos(tokenizer, text))
            mismatched += ids != hf_ids
            answers.append(greedy(llm, ids, params.max_new_tokens))
    finally:
        llm.close()
    return answers, mismatched


def agreement(hf: list[tuple[list[int], str]], gg: list[tuple[list[int], str]], compare: int) -> dict[str, Any]:
    """Exact-match share, agreement over the first `compare` tokens, stop mismatches, per-prompt agreement.

    Token agreement is the common prefix of the two answers' first `compare` tokens over the longer of the two
    (tokens after a first difference are not comparable), summed over prompts.
    """
    agree = total = exact = stop_mismatch = 0
    per_prompt = []
    for (a, fa), (b, fb) in zip(hf, gg):
        a32, b32 = a[:compare], b[:compare]
        prefix = next((i for i, (x, y) in enumerate(zip(a32, b32)) if x != y), min(len(a32), len(b32)))
        longer = max(len(a32), len(b32))
        agree, total = agree + prefix, total + longer
        exact += a == b and fa == fb
        stop_mismatch += (fa == "length") != (fb == "length")
        per_prompt.append(prefix / longer if longer else 1.0)
    n = len(hf)
    return {"n": n, "exact_match": round(exact / n, 4) if n else None,
            "token_agreement": round(agree / total, 4) if total else 1.0,
            "stop_mismatches": stop_mismatch, "per_prompt": per_prompt}


def check_tolerance(result: dict[str, Any], params: ExportParams, gguf: str) -> None:
    problems = []
    if result["token_agreement"] < params.min_token_agreement:
        problems.append(f"token agreement {result['token_agreement']:.3f} < export.min_token_agreement "
                        f"{params.min_token_agreement}")
    if result["exact_match"] is not None and result["exact_match"] < params.min_exact_match:
        problems.append(f"exact match {result['exact_match']:.3f} < export.min_exact_match {params.min_exact_match}")
    if problems:
        raise UserError(f"{gguf}: the GGUF's greedy answers differ from the trained model's beyond tolerance on "
                        f"{result['n']} test prompts: {'; '.join(problems)} ({result['stop_mismatches']} answers "
                        f"hit max tokens in one but not the other); see the examples in the error above or rerun "
                        f"with export.check_prompts larger to look closer")


# ---------------------------------------------------------------------------------------------- the stage


def check_gguf(path: Path, gguf_type: str, tokenizer: Any, prompts: list[str], sample: list[dict[str, Any]],
               hf: list[tuple[list[int], str]], params: ExportParams
               ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """One GGUF's greedy answers against the trained model's `hf`: its headline figures, its stop and tokenization
    details, the answers side by side; an f16 file beyond tolerance is a UserError showing the worst three."""
    gg, mismatched = gguf_greedy(path, tokenizer, prompts, params)
    result = agreement(hf, gg, params.compare_tokens)
    headline = {k: result[k] for k in ("exact_match", "token_agreement", "n")}
    details = {
        "stop_mismatches": result["stop_mismatches"], "prompt_token_mismatches": mismatched,
        "eos": {"transformers": sum(f == "eos" for _, f in hf), "gguf": sum(f == "eos" for _, f in gg)},
    }
    examples = [
        {"id": r["id"], "agreement": round(share, 4),
         "transformers": tokenizer.decode(a, skip_special_tokens=True),
         "gguf": tokenizer.decode(b, skip_special_tokens=True)}
        for r, share, (a, _), (b, _) in zip(sample, result["per_prompt"], hf, gg)
    ]
    if gguf_type == "f16":
        try:
            check_tolerance(result, params, path.name)
        except UserError as exc:
            worst = sorted(examples, key=lambda e: e["agreement"])[:3]
            shown = "; ".join(f"{e['id']}: {clip(e['transformers'], 80)!r} vs {clip(e['gguf'], 80)!r}"
                              for e in worst)
            raise UserError(f"{exc}. Worst: {shown}") from None
    return headline, details, examples


def run_export(model_params: ModelParams, template: str | PromptStyle, params: ExportParams, tuned: Path,
               records: list[dict[str, Any]], out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write `out` (merged/, model-f16.gguf, model-<type>.gguf, Modelfile); return (headline, breakdown)."""
    from instruct_tune.lm.generation import build_prompts

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    seconds: dict[str, float] = {}
    try:
        clock = time.perf_counter()
        model, tokenizer = save_merged(model_params, tuned, tmp / "merged")
        seconds["merge"] = time.perf_counter() - clock
        clock = time.perf_counter()
        convert(tmp / "merged", tmp / "model-f16.gguf")
        seconds["convert_f16"] = time.perf_counter() - clock
        types = ["f16"] + ([params.gguf_type] if params.gguf_type != "f16" else [])
        for gguf_type in types[1:]:
            clock = time.perf_counter()
            quantize(tmp / "model-f16.gguf", tmp / f"model-{gguf_type}.gguf", gguf_type, params.n_threads)
            seconds[f"quantize_{gguf_type}"] = time.perf_counter() - clock
        spec = ollama_template(template, tokenizer, model_params.chat_template)
        (tmp / "Modelfile").write_text(modelfile_text(f"model-{params.gguf_type}.gguf", spec, template),
                                       encoding="utf-8")

        sample = sample_records(records, params.check_prompts, params.seed)
        prompts = build_prompts(sample, tokenizer, template, model_params.chat_template)
        clock = time.perf_counter()
        hf = hf_greedy(model, tokenizer, prompts, params.max_new_tokens)
        seconds["check_transformers"] = time.perf_counter() - clock
        del model
        headline: dict[str, Any] = {"gguf_type": params.gguf_type}
        breakdown: dict[str, Any] = {
            "tolerance": {"f16": {"min_token_agreement": params.min_token_agreement,
                                  "min_exact_match": params.min_exact_match}},
            "compare_tokens": params.compare_tokens, "max_new_tokens": params.max_new_tokens,
            "files": {}, "types": {}, "seconds": seconds,
        }
        examples: dict[str, list[dict[str, Any]]] = {}
        for gguf_type in types:
            clock = time.perf_counter()
            headline[gguf_type], breakdown["types"][gguf_type], examples[gguf_type] = check_gguf(
                tmp / f"model-{gguf_type}.gguf", gguf_type, tokenizer, prompts, sample, hf, params)
            seconds[f"check_{gguf_type}"] = time.perf_counter() - clock
        breakdown["examples"] = examples
        for gguf_file in sorted(tmp.glob("*.gguf")):
            breakdown["files"][gguf_file.name] = gguf_file.stat().st_size
        breakdown["files"]["merged/model.safetensors"] = sum(
            f.stat().st_size for f in (tmp / "merged").glob("*.safetensors"))
        breakdown["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return headline, breakdown


def write_disabled(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """export.enabled is false: an empty models/export (a DVC out must exist) and no figures."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "DISABLED.txt").write_text("export.enabled is false in params.yaml: nothing was exported.\n",
                                      encoding="utf-8")
    return {"enabled": False}, {"enabled": False}
