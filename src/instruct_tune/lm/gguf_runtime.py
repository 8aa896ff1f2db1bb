"""Running an exported GGUF through llama-cpp-python, as the export check and `instruct-tune-chat --gguf` do.

The prompt text comes from templates.py exactly as for the transformers model; llama.cpp tokenizes it with
special tokens parsed (`<|im_start|>` is one token, as in the trained tokenizer) and adds a BOS only where the
trained tokenizer adds one. Decoding is greedy and stops at an end-of-generation token (eos, end-of-turn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instruct_tune.errors import UserError


def open_gguf(path: str | Path, n_ctx: int = 2048, n_threads: int = 0, seed: int = 0) -> Any:
    """A `llama_cpp.Llama` on `path` (n_threads 0: llama.cpp's default)."""
    import llama_cpp

    if not Path(path).is_file():
        raise UserError(f"{path}: no such GGUF file (run `dvc repro export` first, or pass --gguf)")
    kwargs: dict[str, Any] = {"n_ctx": n_ctx, "seed": seed, "verbose": False}
    if n_threads > 0:
        kwargs["n_threads"] = n_threads
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: llama.cpp cannot load it: {exc}") from None


def adds_bos(tokenizer: Any, text: str) -> bool:
    """Whether the trained tokenizer puts a BOS before `text` (generation.encode_prompts' rule)."""
    from instruct_tune.lm.generation import encode_prompts

    with_special = encode_prompts(tokenizer, [text])[0]
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(with_special) > len(plain) and with_special[0] == tokenizer.bos_token_id


def prompt_ids(llm: Any, text: str, add_bos: bool) -> list[int]:
    """`text` as llama.cpp's tokenizer reads it, special tokens parsed."""
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    bos = llm.token_bos()
    return ([bos] if add_bos and bos >= 0 else []) + list(ids)


def end_ids(llm: Any) -> set[int]:
    """The tokens that end a reply: eos and end-of-turn, as the GGUF's metadata names them."""
    return {t for t in (llm.token_eos(), llm._model.token_eot()) if t is not None and t >= 0}


def greedy(llm: Any, ids: list[int], max_new_tokens: int, repeat_penalty: float = 1.0,
           stops: list[str] | None = None) -> tuple[list[int], str]:
    """Greedy new token ids after `ids` (the ending token left out) and why it ended: eos, stop or length."""
    if len(ids) + max_new_tokens > llm.n_ctx():
        raise UserError(f"prompt of {len(ids)} tokens + {max_new_tokens} new ones exceeds n_ctx={llm.n_ctx()}")
    ends = end_ids(llm)
    out: list[int] = []
    llm.reset()
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=repeat_penalty):
        if token in ends:
            return out, "eos"
        out.append(token)
        if stops and any(s in detokenize(llm, out[-16:]) for s in stops):
            return out, "stop"
        if len(out) >= max_new_tokens:
            break
    return out, "length"


def detokenize(llm: Any, ids: list[int]) -> str:
    return llm.detokenize(ids, special=True).decode("utf-8", errors="replace")
