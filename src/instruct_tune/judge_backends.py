"""Judge backends: the bundled GGUF in-process (llama-cpp-python) or any OpenAI-compatible server.

A backend turns chat messages into the judge's raw reply text. It knows nothing about the rubric
except the JSON schema it is asked to constrain the output to. Failures are sorted into three kinds:
- `BackendUnavailable`: the judge cannot be reached at all (connection refused, timeout, bad key,
  unknown model); the run stops, keeping what it finished, with a clear UserError.
- `JudgmentFailed(cacheable=True)`: this one request is impossible and would fail again the same way
  (the prompt overflows the context, the server rejects every response format): recorded and cached.
- `JudgmentFailed(cacheable=False)`: a transient server error (5xx, rate limit): recorded, not cached,
  so the next run tries again.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Protocol

from instruct_tune.api_keys import DUMMY_API_KEY  # noqa: F401 (re-exported: callers import it from here)
from instruct_tune.api_keys import check_endpoint, check_env_name, display_url, redact, resolve_api_key
from instruct_tune.errors import UserError
from instruct_tune.params import BUNDLED_MODEL, JudgeParams


class BackendUnavailable(Exception):
    """The judge cannot be reached or refuses every request: stop the run."""


class JudgmentFailed(Exception):
    """This one judgment could not be obtained from the backend."""

    def __init__(self, message: str, cacheable: bool) -> None:
        super().__init__(message)
        self.cacheable = cacheable


class Backend(Protocol):
    model_id: str  # identifies the judge model in cache keys and metrics
    max_workers: int  # how many judgments may run at once

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str: ...

    def close(self) -> None: ...


def resolve_gguf(model: str) -> Path:
    """`judge.model` for the local backend: the bundled model or a path to a GGUF file."""
    if model == BUNDLED_MODEL:
        from instruct_tune.modeling import bundled_gguf_path

        return bundled_gguf_path()
    path = Path(model)
    if not path.is_file():
        raise UserError(f"params.yaml: judge.model: {model!r} is neither {BUNDLED_MODEL!r} nor an existing GGUF file")
    return path


class LocalBackend:
    """A GGUF model run in-process by llama-cpp-python, its output constrained by a JSON-schema grammar.

    Prompt evaluation dominates the cost on a CPU, and every judgment starts with the same system
    turn: its KV cache is computed once and every prompt continues from exactly there. (llama-cpp-
    python's own reuse of "the longest prefix shared with the previous prompt" would make a verdict
    depend on the prompt judged before it: different batching shifts the logits enough to flip a
    near-tied greedy choice. A fixed split point keeps each verdict a function of its prompt alone.)
    """

    max_workers = 1  # one Llama context is not thread-safe

    def __init__(self, params: JudgeParams, schema: dict[str, Any]) -> None:
        self.path = resolve_gguf(params.model)
        self.model_id = f"local:{params.model if params.model == BUNDLED_MODEL else self.path.name}"
        self.params = params
        self.schema = schema
        self._llm: Any = None  # loaded on the first call: a fully cached rerun never loads the model
        self._prefix: list[int] = []  # tokens of the system turn whose KV cache is kept
        self._prefix_system: str | None = None

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama, LlamaGrammar
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            # n_threads 0: llama.cpp's default (half the logical cores); more threads than free cores
            # makes its busy-waiting workers several times slower on a shared machine.
            self._llm = Llama(
                model_path=str(self.path), n_ctx=self.params.n_ctx, n_threads=self.params.n_threads or None,
                seed=self.params.seed, verbose=False,
            )
            template = self._llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise UserError(f"{self.path}: the GGUF file has no chat template (tokenizer.chat_template)")
            self._eos = self._token_text(self._llm.token_eos())
            self._format = Jinja2ChatFormatter(template=template, eos_token=self._eos,
                                               bos_token=self._token_text(self._llm.token_bos()))
            self._grammar = LlamaGrammar.from_json_schema(json.dumps(self.schema), verbose=False)
        return self._llm

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokens(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self._format(messages=messages).prompt
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def _keep_prefix(self, messages: list[dict[str, str]], tokens: list[int]) -> None:
        """Leave exactly the system turn's KV cache in place (computing it once per system prompt)."""
        llm = self._llm
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        if system is not None and system != self._prefix_system:
            probes = [self._tokens([messages[0], {"role": "user", "content": c}]) for c in ("x", "y")]
            n = next((i for i, (a, b) in enumerate(zip(*probes)) if a != b), 0)
            self._prefix, self._prefix_system = probes[0][:n], system
            llm.reset()
            llm.eval(self._prefix)
        if system is not None and self._prefix and tokens[: len(self._prefix)] == self._prefix:
            llm.n_tokens = len(self._prefix)  # the next eval starts right after the system turn
        else:
            llm.reset()
            self._prefix_system = None

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str:
        llm = self._load()
        tokens = self._tokens(messages)
        if len(tokens) + max_tokens > llm.n_ctx():  # the same next time: a cacheable failure
            raise JudgmentFailed(
                f"local judge: prompt of {len(tokens)} tokens + {max_tokens} new exceeds judge.n_ctx={llm.n_ctx()}",
                cacheable=True,
            )
        self._keep_prefix(messages, tokens)
        reply = llm.create_completion(
            prompt=tokens, temperature=temperature, max_tokens=max_tokens, seed=self.params.seed,
            stop=[self._eos], grammar=self._grammar,
            repeat_penalty=1.0,  # the default 1.1 would push scores away from values already written
        )
        return reply["choices"][0]["text"] or ""

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def strict_schema(schema: Any) -> Any:
    """The schema without `maxLength`, which OpenAI's strict structured outputs reject."""
    if isinstance(schema, dict):
        return {k: strict_schema(v) for k, v in schema.items() if k != "maxLength"}
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server, through the `openai` package.

    Output is constrained as far as the server allows, trying in turn: `json_schema` (OpenAI, vLLM,
    Ollama), `json_object` with a `schema` (llama-cpp-python's server), plain `json_object`, and no
    constraint. A 400/422 steps down; the first format that works is remembered for later calls.
    """

    def __init__(self, params: JudgeParams, schema: dict[str, Any]) -> None:
        import openai

        # Checked before any request: the key goes only over https or to a loopback server (see api_keys).
        check_env_name(params.api_key_env)
        check_endpoint(params.base_url, params.allow_insecure_http)
        self.params = params
        self.model_id = f"openai:{params.model}"
        self.max_workers = max(1, params.concurrency)
        self._url = display_url(params.base_url)
        # The key is read from the environment and handed to the client only: never stored or logged, and
        # removed from any server message we repeat (a hostile or careless server may echo it).
        api_key = resolve_api_key(params.api_key_env, params.base_url)
        self._redact = lambda text: redact(text, api_key)
        self.client = openai.OpenAI(
            base_url=params.base_url, api_key=api_key, timeout=params.timeout_s, max_retries=params.max_retries
        )
        self.formats: list[dict[str, Any] | None] = [
            {"type": "json_schema", "json_schema": {"name": "judgment", "schema": strict_schema(schema), "strict": True}},
            {"type": "json_object", "schema": copy.deepcopy(schema)},
            {"type": "json_object"},
            None,
        ]
        self._level = 0
        self._lock = threading.Lock()

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str:
        import openai

        with self._lock:
            start = self._level
        last = ""
        for level in range(start, len(self.formats)):
            extra = {} if self.formats[level] is None else {"response_format": self.formats[level]}
            try:
                reply = self.client.chat.completions.create(
                    model=self.params.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
                    seed=self.params.seed, **extra,
                )
            except openai.APIStatusError as exc:
                # A 400/422 most likely means the response format; llama-cpp-python's server answers a
                # format it does not know with a 500 that names `response_format`.
                if exc.status_code in (400, 422) or "response_format" in str(exc):
                    last = f"{exc.status_code}: {self._redact(_short(exc))}"
                    continue  # try a weaker format
                if exc.status_code in (401, 403, 404):
                    raise BackendUnavailable(
                        f"judge server {self._url} refused the request "
                        f"({exc.status_code}: {self._redact(_short(exc))}); "
                        f"check judge.model and the key in the environment variable {self.params.api_key_env}"
                    ) from None
                raise JudgmentFailed(f"judge server error {exc.status_code}: {self._redact(_short(exc))}",
                                     cacheable=False) from None
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                raise BackendUnavailable(
                    f"judge server {self._url} unreachable ({type(exc).__name__}: {self._redact(str(exc))}; "
                    f"timeout {self.params.timeout_s:g}s, {self.params.max_retries} retries)"
                ) from None
            if level != start:
                with self._lock:
                    self._level = max(self._level, level)
            if not reply.choices:
                raise JudgmentFailed("judge server returned no choices", cacheable=False)
            return self._redact(reply.choices[0].message.content or "")  # never store an echoed key
        raise JudgmentFailed(f"judge server rejected every response format (last: {last})", cacheable=True)

    def close(self) -> None:
        self.client.close()


def _short(exc: Exception, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def make_backend(params: JudgeParams, schema: dict[str, Any]) -> Backend:
    """The backend named by `judge.backend`."""
    if params.backend == "local":
        return LocalBackend(params, schema)
    if params.backend == "openai":
        return OpenAIBackend(params, schema)
    raise UserError(f"params.yaml: judge.backend: unknown backend {params.backend!r} (local or openai)")
