"""Shared fixtures: tiny random models built on the spot with a real tokenizer (SmolLM2's, read from
the bundled GGUF), never a download. Built once per test session, saved as ordinary model folders,
so the code under test loads them exactly as it loads a user's local model (`model.name: <dir>`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)  # tiny models: threads cost more than they give, and tests run beside each other


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout, or skip: it is present in CI, absent on a user's clone."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (they sit beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's real tokenizer (from the bundled GGUF), saved as a plain tokenizer folder."""
    from instruct_tune.lm.modeling import load_tokenizer
    from instruct_tune.params import ModelParams

    out = tmp_path_factory.mktemp("tokenizer")
    load_tokenizer(ModelParams()).save_pretrained(out)
    return out


def _save_tiny(model_cls, config, tokenizer_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = model_cls(config)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama-architecture model (as SmolLM2) with random weights and the real tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True,
    )
    return _save_tiny(LlamaForCausalLM, config, tokenizer_dir, tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2-architecture model with random weights; its tokenizer has no pad token, as GPT-2's."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=49152, n_positions=512, n_embd=32, n_layer=2, n_head=2, bos_token_id=2, eos_token_id=2)
    out = _save_tiny(GPT2LMHeadModel, config, tokenizer_dir, tmp_path_factory.mktemp("tiny_gpt2"))
    tok = AutoTokenizer.from_pretrained(out)
    tok.pad_token = None
    tok.chat_template = None  # GPT-2 ships no chat template: chatml falls back to plain ChatML text
    tok.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return out
