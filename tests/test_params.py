"""params.yaml and its typed models: the defaults agree, every kind of bad value is an error naming the file, the
key path and the value, and the allowed names agree with the code that implements them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from instruct_tune.errors import UserError
from instruct_tune.params import (
    DataFormat, JudgeBackend, Optimizer, Params, Scheduler, Template, TrainParams, fingerprint, load_params,
    params_from_dict, read_yaml, to_dict,
)

REPO = Path(__file__).resolve().parents[1]


def _keys(tree: Any, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping (list items are values: a source's optional keys may be left out)."""
    if not isinstance(tree, dict):
        return set()
    return {path for key, value in tree.items() for path in {f"{prefix}{key}"} | _keys(value, f"{prefix}{key}.")}


def test_params_yaml_holds_exactly_the_models_defaults() -> None:
    assert load_params(REPO / "params.yaml") == Params()  # the values
    assert _keys(read_yaml(REPO / "params.yaml")) == _keys(to_dict(Params()))  # every key, written out


CASES = {  # params.yaml text -> the whole error message
    "unknown section": ("trian:\n  lr: 0.1\n",
                        "trian: unknown key (allowed under the top level: data, eda, split, model, train, export, generate, evaluate, "
                        "judge, synth, report)"),
    "unknown key": ("split:\n  seed: 1\n  test_sise: 5\n",
                    "split.test_sise: unknown key (allowed under split: train_size, val_size, test_size, seed, "
                    "quartiles)"),
    "unknown nested key": ("train:\n  lora:\n    rank: 4\n",
                           "train.lora.rank: unknown key (allowed under train.lora: enabled, r, alpha, dropout, "
                           "target_modules, merge)"),
    "unknown key in a list item": ("data:\n  sources:\n    - uri: a.json\n      fromat: qa\n",
                                   "data.sources[0].fromat: unknown key (allowed under data.sources[0]: uri, format, "
                                   "count, seed, split, name, sha256, columns)"),
    "integer": ("split:\n  train_size: lots\n", "split.train_size: must be an integer, got 'lots'"),
    "integer, not a fraction": ("train:\n  lora:\n    r: 4.5\n", "train.lora.r: must be an integer, got 4.5"),
    "integer, not a boolean": ("eda:\n  seed: true\n", "eda.seed: must be an integer, got True"),
    "number": ("train:\n  lr: fast\n", "train.lr: must be a number, got 'fast'"),
    "number, not a boolean": ("train:\n  lr: false\n", "train.lr: must be a number, got False"),
    "boolean (YAML 1.2: `no` is a string)": ("train:\n  packing: no\n", "train.packing: must be true or false, got 'no'"),
    "string": ("model:\n  name: 7\n", "model.name: must be a string, got 7"),
    "list": ("generate:\n  stop_strings: END\n", "generate.stop_strings: must be a list, got 'END'"),
    "list item": ("train:\n  report_to: [wandb, 3]\n", "train.report_to[1]: must be a string, got 3"),
    "section": ("judge: local\n", "judge: must be a mapping, got 'local'"),
    "optional integer": ("judge:\n  max_pairs: all\n", "judge.max_pairs: must be an integer, got 'all'"),
    "allowed names": ("train:\n  scheduler: cosine_annealing\n",
                      f"train.scheduler: 'cosine_annealing' is not one of {', '.join(get_args(Scheduler))}"),
    "allowed names or null": ("model:\n  load_in: 2bit\n", "model.load_in: '2bit' is not one of 8bit, 4bit"),
    "allowed names in a list item": ("data:\n  sources:\n    - uri: a.json\n      format: xml\n",
                                     "data.sources[0].format: 'xml' is not one of alpaca, dolly, sharegpt, dialogue, "
                                     "qa, auto"),
    "required": ("data:\n  sources:\n    - format: qa\n", "data.sources[0].uri: required, but missing"),
    "synth: integer": ("synth:\n  per_passage: many\n", "synth.per_passage: must be an integer, got 'many'"),
    "synth: optional string": ("synth:\n  documents: 3\n", "synth.documents: must be a string, got 3"),
    "synth: unknown key": ("synth:\n  documents_dir: docs\n",
                           "synth.documents_dir: unknown key (allowed under synth: documents, text_field, "
                           "passage_chars, min_passage_chars, max_passages, per_passage, input_share, language, "
                           "retries, samples, seed, generator, auditor)"),
    "synth.generator: allowed names": ("synth:\n  generator:\n    backend: cloud\n",
                                       "synth.generator.backend: 'cloud' is not one of local, openai"),
    "synth.generator: number": ("synth:\n  generator:\n    temperature: hot\n",
                                "synth.generator.temperature: must be a number, got 'hot'"),
    "synth.auditor: unknown key": ("synth:\n  auditor:\n    max_token: 9\n",
                                   "synth.auditor.max_token: unknown key (allowed under synth.auditor: backend, model, "
                                   "revision, base_url, api_key_env, allow_insecure_http, concurrency, timeout_s, "
                                   "max_retries, temperature, max_tokens, n_ctx, n_threads, seed)"),
    # every number finite and in its range
    "not a number (.nan)": ("train:\n  lr: .nan\n", "train.lr: must be a finite number, got nan"),
    "infinite (.inf)": ("judge:\n  timeout_s: .inf\n", "judge.timeout_s: must be a finite number, got inf"),
    "minus infinity": ("generate:\n  temperature: -.inf\n", "generate.temperature: must be a finite number, got -inf"),
    "nan as text": ("train:\n  weight_decay: nan\n", "train.weight_decay: must be a finite number, got 'nan'"),
    "learning rate > 0": ("train:\n  lr: 0\n", "train.lr: must be > 0, got 0"),
    "batch size >= 1": ("train:\n  batch_size: 0\n", "train.batch_size: must be >= 1, got 0"),
    "steps >= 1": ("train:\n  eval_steps: 0\n", "train.eval_steps: must be >= 1, got 0"),
    "max_steps -1 or more": ("train:\n  max_steps: -2\n", "train.max_steps: must be >= -1, got -2"),
    "max_length >= 2": ("train:\n  max_length: 1\n", "train.max_length: must be >= 2, got 1"),
    "warmup_ratio < 1": ("train:\n  warmup_ratio: 1.0\n", "train.warmup_ratio: must be < 1, got 1.0"),
    "lora dropout < 1": ("train:\n  lora:\n    dropout: 1.5\n", "train.lora.dropout: must be < 1, got 1.5"),
    "lora r >= 1": ("train:\n  lora:\n    r: 0\n", "train.lora.r: must be >= 1, got 0"),
    "split size >= 0": ("split:\n  val_size: -1\n", "split.val_size: must be >= 0, got -1"),
    "train size >= 1": ("split:\n  train_size: 0\n", "split.train_size: must be >= 1, got 0"),
    "seed >= 0": ("split:\n  seed: -1\n", "split.seed: must be >= 0, got -1"),
    "seed fits 32 bits": ("train:\n  seed: 4294967296\n", "train.seed: must be <= 4294967295, got 4294967296"),
    "source count >= 1 or null": ("data:\n  sources:\n    - uri: a.json\n      count: 0\n",
                                  "data.sources[0].count: must be >= 1, got 0"),
    "download timeout > 0": ("data:\n  download_timeout_s: 0\n", "data.download_timeout_s: must be > 0, got 0"),
    "download size > 0": ("data:\n  max_download_mb: -5\n", "data.max_download_mb: must be > 0, got -5"),
    "lda topics >= 1": ("eda:\n  lda_topics: 0\n", "eda.lda_topics: must be >= 1, got 0"),
    "max_new_tokens >= 1": ("generate:\n  max_new_tokens: 0\n", "generate.max_new_tokens: must be >= 1, got 0"),
    "temperature >= 0": ("generate:\n  temperature: -0.1\n", "generate.temperature: must be >= 0, got -0.1"),
    "top_p > 0": ("generate:\n  top_p: 0\n", "generate.top_p: must be > 0, got 0"),
    "top_p <= 1": ("generate:\n  top_p: 1.5\n", "generate.top_p: must be <= 1, got 1.5"),
    "top_k >= 0": ("generate:\n  top_k: -1\n", "generate.top_k: must be >= 0, got -1"),
    "repetition_penalty > 0": ("generate:\n  repetition_penalty: 0\n",
                               "generate.repetition_penalty: must be > 0, got 0"),
    "evaluate bootstrap >= 100": ("evaluate:\n  bootstrap_samples: 10\n",
                                  "evaluate.bootstrap_samples: must be >= 100, got 10"),
    "judge bootstrap >= 100": ("judge:\n  bootstrap_samples: 0\n", "judge.bootstrap_samples: must be >= 100, got 0"),
    "judge max_pairs >= 1 or null": ("judge:\n  max_pairs: 0\n", "judge.max_pairs: must be >= 1, got 0"),
    "judge timeout > 0": ("judge:\n  timeout_s: 0\n", "judge.timeout_s: must be > 0, got 0"),
    "judge retries >= 0": ("judge:\n  max_retries: -1\n", "judge.max_retries: must be >= 0, got -1"),
    "judge concurrency >= 1": ("judge:\n  concurrency: 0\n", "judge.concurrency: must be >= 1, got 0"),
    "judge n_ctx >= 256": ("judge:\n  n_ctx: 64\n", "judge.n_ctx: must be >= 256, got 64"),
    "judge max_tokens >= 1": ("judge:\n  max_tokens: 0\n", "judge.max_tokens: must be >= 1, got 0"),
    "synth.generator timeout > 0": ("synth:\n  generator:\n    timeout_s: -1\n",
                                    "synth.generator.timeout_s: must be > 0, got -1"),
    "synth.auditor retries >= 0": ("synth:\n  auditor:\n    max_retries: -1\n",
                                   "synth.auditor.max_retries: must be >= 0, got -1"),
    "synth.auditor concurrency >= 1": ("synth:\n  auditor:\n    concurrency: 0\n",
                                       "synth.auditor.concurrency: must be >= 1, got 0"),
    "synth retries >= 0": ("synth:\n  retries: -1\n", "synth.retries: must be >= 0, got -1"),
    "synth input_share in [0, 1]": ("synth:\n  input_share: 1.2\n", "synth.input_share: must be <= 1, got 1.2"),
    "synth per_passage >= 1": ("synth:\n  per_passage: 0\n", "synth.per_passage: must be >= 1, got 0"),
    "report examples >= 0": ("report:\n  examples: -1\n", "report.examples: must be >= 0, got -1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_value_is_named_by_file_key_path_and_value(case: str, tmp_path: Path) -> None:
    text, message = CASES[case]
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(UserError) as exc:
        load_params(tmp_path / "params.yaml")
    assert str(exc.value) == f"{tmp_path / 'params.yaml'}: {message}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(UserError) as exc:
        params_from_dict({"train": {"lr": "x", "seed": 1.5}, "report": {"examples": "all", "extra": 1}})
    assert str(exc.value).splitlines() == [
        "params.yaml: train.lr: must be a number, got 'x'",
        "params.yaml: train.seed: must be an integer, got 1.5",
        "params.yaml: report.examples: must be an integer, got 'all'",
        "params.yaml: report.extra: unknown key (allowed under report: examples)",
    ]


def test_every_number_in_every_section_has_a_range_or_is_finite() -> None:
    """Each int field of every section carries a bound and each float one refuses nan/inf: a new field without a
    range is a decision, made here."""
    from annotated_types import Ge, Gt, Le, Lt
    from pydantic import AllowInfNan

    unbounded = []

    def walk(cls: Any, prefix: str) -> None:
        for name, hint in get_type_hints(cls, include_extras=True).items():
            args = [a for a in get_args(hint) if a is not type(None)] if type(None) in get_args(hint) else [hint]
            inner = args[0]
            metadata = getattr(inner, "__metadata__", ())
            base = get_args(inner)[0] if metadata else inner
            if dataclasses.is_dataclass(base):
                walk(base, f"{prefix}{name}.")
            elif base is float and not any(isinstance(m, AllowInfNan) and not m.allow_inf_nan for m in metadata):
                unbounded.append(f"{prefix}{name}")
            elif base is int and not any(isinstance(m, (Ge, Gt, Le, Lt)) for m in metadata):
                unbounded.append(f"{prefix}{name}")
            elif get_args(base) and dataclasses.is_dataclass(get_args(base)[0]):  # list[SourceParams]
                walk(get_args(base)[0], f"{prefix}{name}[].")

    walk(Params, "")
    assert unbounded == []


def test_file_level_problems(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"^{re.escape(str(tmp_path / 'absent.yaml'))}: file not found$"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1\n")
    with pytest.raises(UserError, match=r"bad\.yaml: not valid YAML: while parsing a flow sequence\n.*line 1, column 8"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match=r"list\.yaml: expected a mapping at the top level, got list$"):
        load_params(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_params(tmp_path / "empty.yaml") == Params()


def test_yaml_1_2_numbers_and_lenient_number_forms(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text('train:\n  lr: 5e-05\n  weight_decay: "1e-3"\n  max_steps: 1e2\n'
                                          "  epochs: 2\n")
    train = load_params(tmp_path / "params.yaml").train
    assert (train.lr, train.weight_decay, train.max_steps, train.epochs) == (5e-05, 1e-3, 100, 2.0)
    assert isinstance(train.max_steps, int) and isinstance(train.epochs, float)


def test_models_validate_on_construction_and_replace() -> None:
    with pytest.raises(ValueError, match="template"):
        TrainParams(template="vicuna")
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(TrainParams(), batch_size="8")


def test_transformers_scheduler_and_optimizer_names_are_the_allowed_ones() -> None:
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(get_args(Scheduler)) == {s.value for s in SchedulerType}
    assert set(get_args(Optimizer)) == {o.value for o in OptimizerNames}


def test_every_allowed_name_has_its_implementation() -> None:
    from instruct_tune.data.formats import normaliser
    from instruct_tune.llm.backends import BACKENDS
    from instruct_tune.lm.templates import PromptStyle, format_prompt

    record = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    for template in get_args(Template):
        style = PromptStyle(template, "Q: {instruction}\nA: " if template == "custom" else None)
        assert format_prompt(record, style).strip()
    for fmt in get_args(DataFormat):
        if fmt != "auto":  # resolved to one of the others from the first row
            assert callable(normaliser(fmt))
    assert set(BACKENDS) == set(get_args(JudgeBackend))


def test_every_section_a_backend_reads_has_the_backend_settings() -> None:
    """judge, synth.generator and synth.auditor go to the same backends, which read `BackendSettings` (a Protocol,
    unchecked at run time): each field there is a field of those sections, of the same type."""
    from instruct_tune.llm.backends import BackendSettings
    from instruct_tune.params import JudgeParams, SynthLLMParams

    wanted = get_type_hints(BackendSettings)
    assert "backend" in wanted and "api_key_env" in wanted
    for section in (JudgeParams, SynthLLMParams):
        hints = get_type_hints(section, include_extras=False)
        assert {name: hints.get(name) for name in wanted} == wanted, section.__name__


def test_fingerprint_leaves_out_only_operational_fields() -> None:
    params = Params()
    train = fingerprint(params.train)
    assert "num_threads" not in train and "keep_checkpoints" not in train and train["lr"] == 5e-05
    assert train["lora"] == to_dict(params.train.lora)  # nested sections whole
    assert fingerprint(dataclasses.replace(params.train, num_threads=2, save_total_limit=9)) == train
    assert fingerprint(dataclasses.replace(params.train, lr=1e-4)) != train
    generate = fingerprint(params.generate)
    assert set(to_dict(params.generate)) - set(generate) == {"save_every"}
    generator = fingerprint(params.synth.generator)
    assert set(to_dict(params.synth.generator)) - set(generator) == {
        "api_key_env", "allow_insecure_http", "concurrency", "timeout_s", "max_retries", "n_threads"}
    assert set(to_dict(params.synth)) - set(fingerprint(params.synth)) == {"samples"}
    assert fingerprint(params.synth)["auditor"] == generator  # nested sections without their operational fields
