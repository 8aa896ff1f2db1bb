"""The chat CLI loads a trained model folder and answers with the training template, greedily."""

from __future__ import annotations

from pathlib import Path

import pytest

from instruct_tune.chat import answer, load_chat_model, main
from instruct_tune.errors import UserError
from instruct_tune.params import ModelParams


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such model folder"):
        load_chat_model(str(tmp_path / "nope"), ModelParams())


def test_answer_is_greedy_and_repeatable(tiny_llama_dir: Path) -> None:
    model, tokenizer = load_chat_model(str(tiny_llama_dir), ModelParams(device="cpu"))
    first = answer(model, tokenizer, "Name a colour.", "", "chatml", max_new_tokens=6)
    second = answer(model, tokenizer, "Name a colour.", "", "chatml", max_new_tokens=6)
    assert isinstance(first, str)
    assert first == second  # greedy: the answer the study would measure, every time


def test_cli_exits_2_with_message_for_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["Hi", "--model", str(tmp_path / "missing"), "--params", str(params)])
    assert exc.value.code == 2
    assert "no such model folder" in capsys.readouterr().err
