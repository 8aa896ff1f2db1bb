"""Asking an LLM for JSON, the one way the judge and the `synthesize` stage both do it: the reply's JSON object
(`json_object`), one error type for a reply that is not what was asked (`ReplyError`), the ask / retry at
temperature 0 showing the error / parse loop (`ask_json`, its wording in a `RetryPolicy`), and the cache key of a
request (`request_key`, over `keyed_params`).

What differs between the callers is a parameter, never a second loop: how many retries, how much of the bad reply
is shown back, the retry turn's and the final error's wording, and the name of the parsed result's field in the
cached entry (`verdict` for the judge, `parsed` for the synthesizer). Those stay what each caller wrote before this
module existed, so every cache key and cached entry is unchanged (tests/test_llm_client.py pins them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from instruct_tune.llm.backends import Backend, JudgmentFailed
from instruct_tune.llm.cache import RunStats
from instruct_tune.llm.json_text import BadJSON, loads
from instruct_tune.params import fingerprint


class ReplyError(ValueError):
    """A reply that is not what was asked for (no JSON object, malformed JSON, a field out of its range)."""


def json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply: from its first `{` to its last `}` (code fences and text around it tolerated;
    a raw newline inside a string is fine). Read by `json_text.loads`, so NaN, `1e400`, a 5,000-digit integer,
    deep nesting or a repeated key is a ReplyError like any other malformed reply, never another exception."""
    if not isinstance(text, str):
        raise ReplyError(f"the reply is not text (got {type(text).__name__})")
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        raise ReplyError("no JSON object in the reply")
    if end <= start:
        raise ReplyError("malformed JSON: the object is not closed (the reply was cut off: too few max_tokens?)")
    try:
        data = loads(text[start : end + 1])
    except BadJSON as exc:
        raise ReplyError(str(exc) if str(exc).startswith("malformed JSON") else f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReplyError("the reply is not a JSON object")
    return data


@dataclass(frozen=True)
class RetryPolicy:
    """How an invalid reply is asked again, and how the answer is recorded.

    `retry` and `failure` are templates: `{error}` is the parse error; `failure` also gets `{retries}` and
    `{retry_plural}` ("y" or "ies")."""

    retries: int
    shown_chars: int  # how much of the invalid reply the retry turn shows back
    retry: str
    failure: str
    result_field: str  # the parsed answer's field in the cached entry


def ask_json(backend: Backend, messages: list[dict[str, str]], parse: Callable[[str], Any], stats: RunStats, *,
             temperature: float, max_tokens: int, policy: RetryPolicy) -> dict[str, Any]:
    """One answer: a reply that does not parse is asked again (up to `policy.retries` times) at temperature 0,
    shown with what was wrong (a greedy rerun of the same prompt would repeat it). A parsed answer, and an invalid
    reply after the retries, are written to the cache (the invalid one is asked again by the next run:
    cache.asked_again); so is a failure that would repeat (a prompt longer than a local model's context); a
    transport or server failure is not, so the next run asks again."""
    raw: list[str] = []
    error = ""
    for attempt in range(policy.retries + 1):
        if attempt:
            messages = [*messages, {"role": "assistant", "content": raw[-1][: policy.shown_chars]},
                        {"role": "user", "content": policy.retry.format(error=error)}]
        stats.add_calls(1)
        try:
            text = backend.complete(messages, temperature=temperature if attempt == 0 else 0.0, max_tokens=max_tokens)
        except JudgmentFailed as exc:
            return {"raw": raw, policy.result_field: None, "error": str(exc), "cacheable": exc.cacheable}
        raw.append(text)
        try:
            return {"raw": raw, policy.result_field: parse(text), "error": None, "cacheable": True}
        except ReplyError as exc:
            error = str(exc)
    failure = policy.failure.format(error=error, retries=policy.retries,
                                    retry_plural="y" if policy.retries == 1 else "ies")
    return {"raw": raw, policy.result_field: None, "error": failure, "cacheable": True}


def keyed_params(params: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The params of an LLM's section that can change an answer: all but the operational ones (params.py marks
    them), `n_ctx` of a server (not ours to set) and `skip` (those that cannot apply to this request); a new param
    keys answers unless it is marked."""
    left_out = set(skip) | ({"n_ctx"} if params.backend != "local" else set())
    return {k: v for k, v in fingerprint(params).items() if k not in left_out}


def request_key(material: dict[str, Any]) -> str:
    """Everything that decides an answer (the messages as sent, the schema, the model's identity, the keyed params,
    and whatever else the caller names), hashed: change any of it and a cached answer is not reused."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
