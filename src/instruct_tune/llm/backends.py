"""Judge backends: the bundled GGUF in-process (llama-cpp-python) or any OpenAI-compatible server.

A backend turns chat messages into the judge's raw reply text. It knows nothing about the rubric
except the JSON schema it is asked to constrain the output to. The `synthesize` stage's generator and
auditor use the same backends: a backend reads only the fields of `BackendSettings` (which `judge`,
`synth.generator` and `synth.auditor` all have), and `section` names that params section in messages.
Failures are sorted into three kinds:
- `BackendUnavailable`: the judge cannot be reached at all (connection refused, timeout, bad key,
  unknown model); the run stops, keeping what it finished, with a clear UserError.
- `JudgmentFailed(cacheable=True)`: this one request is impossible and would fail again the same way
  (the prompt overflows the local judge's context): recorded as an error and cached.
- `JudgmentFailed(cacheable=False)`: a server's answer that is not a verdict (5xx, rate limit, a 4xx for
  every response format, a reply over its byte cap, a 200 that is not a chat completion): recorded as an error,
  never cached, so the next run asks again.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from typing import Any, Protocol

from instruct_tune.llm.api_keys import DUMMY_API_KEY  # noqa: F401 (re-exported: callers import it from here)
from instruct_tune.llm.api_keys import (
    check_endpoint, check_env_name, display_url, redact, resolve_api_key, uses_env_proxies,
)
from instruct_tune.errors import UserError, clip
from instruct_tune.llm.json_text import BadJSON, loads
from instruct_tune.params import JudgeBackend


class BackendSettings(Protocol):
    """The params a backend reads: `judge`, `synth.generator` or `synth.auditor` (params.py's JudgeParams and
    SynthLLMParams)."""

    backend: JudgeBackend
    model: str
    revision: str | None
    base_url: str
    api_key_env: str
    allow_insecure_http: bool
    concurrency: int
    timeout_s: float
    max_retries: int
    n_ctx: int
    n_threads: int
    seed: int


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


MAX_CONTEXTS = 2  # the judge's two prompts (read the response; compare answers) each keep their system turn


class LocalBackend:
    """A GGUF model run in-process by llama-cpp-python.

    Two ways to ask it: `complete` (text under a JSON-schema grammar, for pairwise verdicts and
    critiques) and `choose` (teacher-forced choices: the probability of each allowed value at each
    field of a fixed JSON skeleton, G-Eval style; no sampling, no parsing).

    Untrusted text stays text: each message's content is tokenized with `special=False`, only the chat
    template's own markers with `special=True`, so `<|im_end|><|im_start|>system` inside a response is
    a string of ordinary tokens and cannot open a new turn.

    Prompt evaluation dominates the cost on a CPU, and every judgment starts with the same system
    turn: its KV cache is computed once and every prompt continues from exactly there. (llama-cpp-
    python's own reuse of "the longest prefix shared with the previous prompt" would make a verdict
    depend on the prompt judged before it: different batching shifts the logits enough to flip a
    near-tied greedy choice. A fixed split point keeps each verdict a function of its prompt alone.)
    `choose` may also be told the start of the user turn that several prompts share (`shared`: a record's
    instruction and reference, graded for the base and the tuned response and the controls): it is always
    evaluated as its own batch, right after the system turn, and kept while the next prompt shares it, so each
    grade is still a function of its prompt (and that split) alone.
    """

    max_workers = 1  # one Llama context is not thread-safe

    def __init__(self, params: BackendSettings, schema: dict[str, Any], section: str = "judge") -> None:
        from instruct_tune.llm.models import resolve_judge_model

        resolved = resolve_judge_model(params.model, params.revision, section)
        self.path = resolved.path
        # The identity that keys the cache: the file's bytes, not its name.
        self.model_id = f"local:sha256:{resolved.sha256}"
        self.params = params
        self.schema = schema
        self.section = section
        self._llm: Any = None  # loaded on the first call: a fully cached rerun never loads the model
        # One llama.cpp context per system turn (at most MAX_CONTEXTS, least recently used first), each
        # keeping that turn's KV cache: the grading and comparing prompts alternate without recomputing it.
        self._contexts: dict[tuple[int, ...], Any] = {}
        # Per context, the shared user-turn tokens evaluated right after its system turn (see `choose`).
        self._shared: dict[tuple[int, ...], tuple[int, ...]] = {}

    def _new_context(self) -> Any:
        from llama_cpp import Llama

        # n_threads 0: every core (the stage runs alone in `dvc repro`). Beside another CPU job, llama.cpp's
        # busy-waiting workers slow ~10x: lower <section>.n_threads or set OMP_WAIT_POLICY=PASSIVE.
        threads = self.params.n_threads or os.cpu_count() or 1
        return Llama(model_path=str(self.path), n_ctx=self.params.n_ctx, n_threads=threads, n_threads_batch=threads,
                     seed=self.params.seed, verbose=False)  # the weights are mmapped: a second context shares them

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import LlamaGrammar
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._llm = self._new_context()
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

    def _tokens(self, messages: list[dict[str, str]]) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them end the system turn (the cacheable prefix).

        The template is rendered around sentinels, then split: template text is tokenized with special
        tokens enabled, message contents as plain text.
        """
        tokens, prefix_end, _ = self._segments(messages, "")
        return tokens, prefix_end

    def _segments(self, messages: list[dict[str, str]], shared: str) -> tuple[list[int], int, int]:
        """As `_tokens`, and where the user turn's `shared` start ends (its own tokens: tokenized apart from
        the rest of the content); without one, that end is the system turn's."""
        sentinels = [f"\x00CONTENT{i}\x00" for i in range(len(messages))]
        prompt = self._format(messages=[{**m, "content": s} for m, s in zip(messages, sentinels)]).prompt
        tokens: list[int] = []
        prefix_end = shared_end = 0
        rest = prompt
        for i, (message, sentinel) in enumerate(zip(messages, sentinels)):
            before, found, rest = rest.partition(sentinel)
            if not found:
                raise UserError(f"{self.path}: the chat template drops message {i} ({message['role']})")
            tokens += self._llm.tokenize(before.encode("utf-8"), add_bos=False, special=True)
            content = message["content"]
            if i == 1 and messages[0]["role"] == "system":
                prefix_end = shared_end = len(tokens)  # the system turn and the template up to the user's content
                if shared and content.startswith(shared):
                    tokens += self._llm.tokenize(shared.encode("utf-8"), add_bos=False, special=False)
                    shared_end, content = len(tokens), content[len(shared):]
            tokens += self._llm.tokenize(content.encode("utf-8"), add_bos=False, special=False)
        tokens += self._llm.tokenize(rest.encode("utf-8"), add_bos=False, special=True)
        return tokens, prefix_end, shared_end

    def _start(self, tokens: list[int], prefix_end: int, shared_end: int | None = None) -> None:
        """Make current the context that holds this prompt's system turn in its KV cache (computing it
        the first time), positioned right after it, or after the shared start of the user turn (tokens
        prefix_end:shared_end, evaluated as one batch unless the previous prompt in this context shared it);
        without a system turn, a fresh start."""
        prefix = tuple(tokens[:prefix_end])
        if not prefix_end:
            self._llm.reset()
            return
        if prefix not in self._contexts:
            if len(self._contexts) < MAX_CONTEXTS:
                llm = self._llm if not self._contexts else self._new_context()
            else:
                evicted = next(iter(self._contexts))  # the least recently used
                llm = self._contexts.pop(evicted)
                self._shared.pop(evicted, None)
            llm.reset()
            llm.eval(list(prefix))
            self._contexts[prefix] = llm
        llm = self._contexts.pop(prefix)
        self._contexts[prefix] = llm  # most recently used last
        llm.n_tokens = len(prefix)  # the next eval starts right after the system turn
        shared = tuple(tokens[prefix_end:shared_end or prefix_end])
        if shared and self._shared.get(prefix) == shared:
            llm.n_tokens = prefix_end + len(shared)  # its KV cache is still there: nothing after it was kept
        elif shared:
            llm.eval(list(shared))
            self._shared[prefix] = shared
        else:
            self._shared.pop(prefix, None)  # this prompt's own tokens will overwrite whatever was shared
        self._llm = llm

    def _check_fits(self, n_prompt: int, n_new: int) -> None:
        if n_prompt + n_new > self._llm.n_ctx():
            raise JudgmentFailed(
                f"local {self.section}: prompt of {n_prompt} tokens + {n_new} new exceeds "
                f"{self.section}.n_ctx={self._llm.n_ctx()}",
                cacheable=True,
            )

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str:
        llm = self._load()
        tokens, prefix_end = self._tokens(messages)
        self._check_fits(len(tokens), max_tokens)
        self._start(tokens, prefix_end)
        llm = self._llm  # the context that holds this prompt's system turn
        reply = llm.create_completion(
            prompt=tokens, temperature=temperature, max_tokens=max_tokens, seed=self.params.seed,
            stop=[self._eos], grammar=self._grammar,
            repeat_penalty=1.0,  # the default 1.1 would push scores away from values already written
        )
        return reply["choices"][0]["text"] or ""

    def choose(self, messages: list[dict[str, str]], steps: list[tuple[str, Any]], shared: str = "") -> list[Any]:
        """Teacher-forced decoding of a fixed reply skeleton after the prompt. Each step appends its text
        (plain text, never special tokens), then by its spec:
        - a list of options: reads the next-token distribution, keeps the options' probabilities
          (renormalised over them), appends the most likely option; the result is {option: probability};
        - an int n: writes a short JSON string greedily (at most n tokens, ending at the first token that
          holds a quote or a newline); the result is the text, its JSON escapes read;
        - {"user": content}: ends the assistant's turn there and adds a user turn with `content` (the
          template's markers as special tokens, the content as plain text); the result is None.
        Each option must be a single token of the judge's vocabulary. Every step depends only on the
        prompt and the steps before it, so a grade is a function of its prompt alone. `shared`, a start of the
        user turn's content that the next prompts may share, is evaluated once for all of them (see the class).
        """
        import llama_cpp
        import numpy as np

        llm = self._load()
        tokens, prefix_end, shared_end = self._segments(messages, shared)
        self._check_fits(len(tokens), 1)
        self._start(tokens, prefix_end, shared_end)
        llm = self._llm  # the context that holds this prompt's system turn
        pending = tokens[llm.n_tokens:]
        n_vocab = llm.n_vocab()

        def next_logits(new: list[int]) -> Any:
            self._check_fits(llm.n_tokens + len(new), 1)
            llm.eval(new)
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))

        results: list[Any] = []
        for text, spec in steps:
            pending = pending + llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            if isinstance(spec, dict):
                pending += self._user_turn(spec["user"])
                results.append(None)
                continue
            logits = next_logits(pending)
            if isinstance(spec, list):
                ids = [self._single_token(o) for o in spec]
                chosen = logits[ids].astype(np.float64)
                probs = np.exp(chosen - chosen.max())
                probs /= probs.sum()
                results.append({o: float(p) for o, p in zip(spec, probs)})
                pending = [ids[int(np.argmax(probs))]]
                continue
            written: list[int] = []
            for _ in range(int(spec)):
                token = int(np.argmax(logits))
                if token == llm.token_eos() or self._ends_string(token):
                    break
                written.append(token)
                logits = next_logits([token])
            text = llm.detokenize(written, special=False).decode("utf-8", errors="replace")
            try:  # the judge writes JSON string escapes (\\n in a list): read them
                text = json.loads(f'"{text}"')
            except json.JSONDecodeError:
                pass
            results.append(text.strip())
            pending = []
        return results

    def _user_turn(self, content: str) -> list[int]:
        """Tokens that close the assistant's turn, hold a user turn with `content`, and open the next reply."""
        sentinels = ("\x00S\x00", "\x00A\x00", "\x00U\x00")
        prompt = self._format(messages=[{"role": "system", "content": sentinels[0]},
                                        {"role": "assistant", "content": sentinels[1]},
                                        {"role": "user", "content": sentinels[2]}]).prompt
        between = prompt.split(sentinels[1], 1)[1]
        before, _, after = between.partition(sentinels[2])
        tokenize = self._llm.tokenize
        return (tokenize(before.encode("utf-8"), add_bos=False, special=True)
                + tokenize(content.encode("utf-8"), add_bos=False, special=False)
                + tokenize(after.encode("utf-8"), add_bos=False, special=True))

    def _ends_string(self, token: int) -> bool:
        text = self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")
        return '"' in text or "\n" in text or text.startswith("<|")

    def _single_token(self, text: str) -> int:
        ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(ids) != 1:
            raise UserError(f"{self.path}: the judge's vocabulary splits {text!r} into {len(ids)} tokens; "
                            f"this model cannot be scored by choices (set judge.scoring: generate)")
        return ids[0]

    def close(self) -> None:
        for llm in {id(x): x for x in [self._llm, *self._contexts.values()] if x is not None}.values():
            llm.close()
        self._llm, self._contexts, self._shared = None, {}, {}


def strict_schema(schema: Any) -> Any:
    """The schema without `maxLength`, which OpenAI's strict structured outputs reject."""
    if isinstance(schema, dict):
        return {k: strict_schema(v) for k, v in schema.items() if k != "maxLength"}
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


REPLY_FLOOR_BYTES = 64 * 1024  # the smallest cap on a reply's body: the JSON around the text, a short error page


def reply_cap(max_tokens: int) -> int:
    """The most bytes of a reply's body read for a request of `max_tokens` (hard-coded, not a param): 64 bytes a
    token covers any tokenizer's longest token written as JSON escapes, with 64 KiB for the envelope."""
    return max(REPLY_FLOOR_BYTES, 64 * max_tokens)


class _Deadline(Exception):
    """The call ran past its deadline."""


class _TooLarge(Exception):
    """The reply's body ran past its cap."""


def _content(body: bytes, section: str) -> str:
    """The completion's text in a 200 reply's body; anything else is a JudgmentFailed naming what is wrong."""
    try:
        data = loads(body)
    except BadJSON as exc:
        shown = clip(body[:200].decode("utf-8", "replace"), 120)
        raise JudgmentFailed(f"{section} server's reply is not a chat completion ({exc}): {shown}",
                             cacheable=False) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise JudgmentFailed(f"{section} server returned no choices", cacheable=False)
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise JudgmentFailed(f"{section} server's reply has no message in its first choice", cacheable=False)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise JudgmentFailed(f"{section} server's reply content is not text (got {type(content).__name__})",
                             cacheable=False)
    return content or ""


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server, through the `openai` package.

    Output is constrained as far as the server allows, trying in turn: `json_schema` (OpenAI, vLLM,
    Ollama), `json_object` with a `schema` (llama-cpp-python's server), plain `json_object`, and no
    constraint. A 400/422 steps down, for that request only: every request starts at `json_schema`, so its
    answer (and the cache entry under its key) never depends on what another request met earlier in the run.

    Every call is bounded: it ends by its deadline (`timeout_s` x (1 + `max_retries`) + `GRACE_S`, connect and
    every read together, however slowly the server drips), and at most `reply_cap(max_tokens)` bytes of the
    body are read (streamed, stopped at the cap). A 200 whose body is not a chat completion (HTML, `[]`, a choice
    without a message, a content that is not text) is a JudgmentFailed that names it.
    """

    GRACE_S = 0.5  # past the client's own timeouts, so a silent server still ends as the client's APITimeoutError

    def __init__(self, params: BackendSettings, schema: dict[str, Any], section: str = "judge") -> None:
        import openai

        # Checked before any request: the key goes only over https or to a loopback server (see api_keys).
        check_env_name(params.api_key_env, section)
        check_endpoint(params.base_url, params.allow_insecure_http, section)
        self.params = params
        self.section = section
        # The identity written to the cache, the breakdown and REPORT.md: the URL without credentials, query or
        # fragment (check_endpoint refuses those; display_url drops them should one ever get past it).
        self.model_id = f"openai:{params.model}@{display_url(params.base_url)}"
        self.max_workers = max(1, params.concurrency)
        self._url = display_url(params.base_url)
        # The key is read from the environment and handed to the client only: never stored or logged, and
        # removed from any server message we repeat (a hostile or careless server may echo it).
        api_key = resolve_api_key(params.api_key_env, params.base_url, section)
        self._redact = lambda text: redact(text, api_key)
        # A loopback server is reached directly: trust_env=False ignores HTTP(S)_PROXY / ALL_PROXY (and .netrc),
        # so no proxy ever sees the key. Elsewhere (https only, unless allow_insecure_http) the environment's proxy
        # tunnels the TLS connection without seeing what is inside.
        http_client = openai.DefaultHttpxClient(trust_env=uses_env_proxies(params.base_url), timeout=params.timeout_s)
        self.client = openai.OpenAI(
            base_url=params.base_url, api_key=api_key, timeout=params.timeout_s, max_retries=params.max_retries,
            http_client=http_client,
        )
        self.deadline_s = params.timeout_s * (1 + params.max_retries) + self.GRACE_S
        self.formats: list[dict[str, Any] | None] = [
            {"type": "json_schema",
             "json_schema": {"name": "judgment", "schema": strict_schema(schema), "strict": True}},
            {"type": "json_object", "schema": copy.deepcopy(schema)},
            {"type": "json_object"},
            None,
        ]

    def _read(self, request: dict[str, Any], cap: int, deadline: float) -> bytes:
        """The reply's body, streamed: stopped past `cap` bytes or past the deadline (checked at every chunk)."""
        chunks: list[bytes] = []
        size = 0
        # identity: a compressed body could expand far past the cap within one chunk
        with self.client.chat.completions.with_streaming_response.create(
                **request, extra_headers={"Accept-Encoding": "identity"}) as response:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise _TooLarge(size)
                if time.monotonic() > deadline:
                    raise _Deadline()
                chunks.append(chunk)
        return b"".join(chunks)

    def _bounded(self, request: dict[str, Any], cap: int, deadline: float) -> bytes:
        """`_read` in a worker thread, waited for until the deadline: a server that drips its headers, or stalls
        between bytes, cannot hold the call past it (the abandoned reader stops at its next chunk or timeout)."""
        result: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                result["body"] = self._read(request, cap, deadline)
            except BaseException as exc:  # handed to the caller's thread, raised there
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, daemon=True, name=f"{self.section}-call").start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise _Deadline()
        if "error" in result:
            raise result["error"]
        return result["body"]

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str:
        import openai

        started = time.monotonic()
        deadline = started + self.deadline_s
        cap = reply_cap(max_tokens)
        last = ""
        for level in range(len(self.formats)):
            extra = {} if self.formats[level] is None else {"response_format": self.formats[level]}
            request = dict(model=self.params.model, messages=messages, temperature=temperature,
                           max_tokens=max_tokens, seed=self.params.seed, **extra)
            try:
                body = self._bounded(request, cap, deadline)
            except _Deadline:
                raise BackendUnavailable(
                    f"{self.section} server {self._url} did not finish its reply within {self.deadline_s:g}s "
                    f"(timeout {self.params.timeout_s:g}s, {self.params.max_retries} retries, for the whole call: "
                    f"connect and every read; stopped after {time.monotonic() - started:.1f}s)"
                ) from None
            except _TooLarge as exc:
                raise JudgmentFailed(
                    f"{self.section} server's reply is larger than {cap} bytes for max_tokens={max_tokens} "
                    f"(stopped reading at {exc.args[0]} bytes)", cacheable=False) from None
            except openai.APIStatusError as exc:
                # A 400/422 most likely means the response format; llama-cpp-python's server answers a
                # format it does not know with a 500 that names `response_format`.
                if exc.status_code in (400, 422) or "response_format" in str(exc):
                    last = f"{exc.status_code}: {self._redact(clip(str(exc)))}"
                    continue  # try a weaker format
                if exc.status_code in (401, 403, 404):
                    raise BackendUnavailable(
                        f"{self.section} server {self._url} refused the request "
                        f"({exc.status_code}: {self._redact(clip(str(exc)))}); "
                        f"check {self.section}.model and the key in the environment variable "
                        f"{self.params.api_key_env}"
                    ) from None
                raise JudgmentFailed(f"{self.section} server error {exc.status_code}: {self._redact(clip(str(exc)))}",
                                     cacheable=False) from None
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                raise BackendUnavailable(
                    f"{self.section} server {self._url} unreachable ({type(exc).__name__}: {self._redact(str(exc))}; "
                    f"timeout {self.params.timeout_s:g}s, {self.params.max_retries} retries)"
                ) from None
            try:
                return self._redact(_content(body, self.section))  # never store an echoed key
            except JudgmentFailed as exc:
                raise JudgmentFailed(self._redact(str(exc)), exc.cacheable) from None
        raise JudgmentFailed(f"{self.section} server rejected every response format (last: {last})", cacheable=False)

    def close(self) -> None:
        self.client.close()


# `judge.backend` (and `synth.generator.backend`, `synth.auditor.backend`) -> its class: the one registry;
# params.py's JudgeBackend lists the same names (tests/test_params.py checks it).
BACKENDS: dict[str, type] = {"local": LocalBackend, "openai": OpenAIBackend}


def make_backend(params: BackendSettings, schema: dict[str, Any], section: str = "judge") -> Backend:
    """The backend named by `<section>.backend` (`judge.backend`, `synth.generator.backend`, ...)."""
    return BACKENDS[params.backend](params, schema, section)
