"""The chat CLI loads a trained model folder and answers through the generate stage's code, greedily."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from instruct_tune.lm.chat import answer, load_chat_model, main
from instruct_tune.errors import UserError
from instruct_tune.lm.generation import build_prompts, encode_prompts, generate_responses
from instruct_tune.params import GenerateParams, ModelParams

# no_repeat_ngram_size=1: a random tiny model otherwise repeats one token; this makes its text varied.
PARAMS = GenerateParams(max_new_tokens=6, do_sample=True, repetition_penalty=1.0, no_repeat_ngram_size=1)
RECORD = {"id": "c1", "instruction": "Name a colour.", "input": ""}


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir: Path):
    return load_chat_model(str(tiny_llama_dir), ModelParams(device="cpu"))


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such model folder"):
        load_chat_model(str(tmp_path / "nope"), ModelParams())


def test_answer_is_greedy_and_repeatable(chat_model) -> None:
    model, tokenizer = chat_model
    first = answer(model, tokenizer, "Name a colour.", "", "chatml", PARAMS)
    second = answer(model, tokenizer, "Name a colour.", "", "chatml", PARAMS)
    assert isinstance(first, str)
    assert first == second  # greedy: the same answer every time
    # ... and it is the generate stage's greedy response to the same record, text for text
    greedy = dataclasses.replace(PARAMS, do_sample=False)
    (row,) = generate_responses(model, tokenizer, [RECORD], greedy, "chatml").rows
    assert first == row["response"] and len(first.split()) >= 2


@pytest.mark.parametrize("template", ["alpaca", "chatml", "dialogue"])
def test_chat_feeds_the_model_the_token_ids_generation_does(chat_model, monkeypatch, template: str) -> None:
    model, tokenizer = chat_model
    seen: list[list[int]] = []
    original = model.generate

    def generate(*args, **kwargs):
        seen.append(kwargs["input_ids"][0].tolist())
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    monkeypatch.setattr(tokenizer, "add_bos_token", True)  # as Llama's tokenizers: special tokens include a BOS
    answer(model, tokenizer, "Name a colour.", "", template, PARAMS)
    expected = encode_prompts(tokenizer, build_prompts([RECORD], tokenizer, template))[0]
    assert seen == [expected]
    assert expected[0] == tokenizer.bos_token_id and expected[1] != tokenizer.bos_token_id  # one BOS, as in training


def test_cli_exits_2_with_message_for_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["Hi", "--model", str(tmp_path / "missing"), "--params", str(params)])
    assert exc.value.code == 2
    assert "no such model folder" in capsys.readouterr().err
