"""Asking an LLM many things, cached and resumable: the answers by key, the calls counted, the work spread over a
pool. Shared by the judge and the `synthesize` stage (each keys its own answers by what decides them).

`JudgeCache` keeps finished answers in an append-only JSON Lines file that survives kill -9 (a torn last line is
dropped on the next read); `RunStats` counts the calls made and the answers served from the cache (printed, never in
metrics: they depend on the cache, not on the inputs); `run_parallel` asks at most `workers` questions at once and
records each answer as it arrives, and on any interruption still records every answer that finished;
`answer_all` puts the three together: what the cache has, then the rest asked and cached as each one finishes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from instruct_tune.errors import UserError, clip
from instruct_tune.io import append_jsonl, read_jsonl_tolerant
from instruct_tune.llm.backends import Backend, BackendUnavailable


class Keyed(Protocol):
    key: str


T = TypeVar("T")
K = TypeVar("K", bound=Keyed)


class JudgeCache:
    """Finished judgments by key, in an append-only JSON Lines file that survives kill -9."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "judgments.jsonl"
        self.entries = {e["key"]: e for e in read_jsonl_tolerant(self.path) if isinstance(e.get("key"), str)}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, entry: dict[str, Any]) -> None:
        append_jsonl(self.path, [entry])
        self.entries[entry["key"]] = entry


@dataclass
class RunStats:
    """Judge calls made and judgments served from the cache: printed, never in metrics (cache-dependent)."""

    judge_calls: int = 0
    cache_hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_calls(self, n: int) -> None:
        with self._lock:
            self.judge_calls += n


def run_parallel(todo: list[T], workers: int, ask: Callable[[T], dict[str, Any]],
                 record: Callable[[T, dict[str, Any]], None]) -> None:
    """`ask` each item of `todo` on a pool of `workers` threads, `record` each answer as it finishes (in this
    thread). On any exception, in-flight calls end (bounded by the backend's timeout), pending ones are cancelled,
    every answer that arrived is still recorded, and the exception goes on."""
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {pool.submit(ask, item): item for item in todo}
    recorded = set()
    try:
        for fut in as_completed(futures):
            record(futures[fut], fut.result())
            recorded.add(fut)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # let in-flight calls end (bounded by the timeout)...
        for fut, item in futures.items():  # ...and keep every answer that finished
            if fut not in recorded and fut.done() and not fut.cancelled() and fut.exception() is None:
                record(item, fut.result())
        raise
    pool.shutdown(wait=True)


def asked_again(entry: dict[str, Any]) -> bool:
    """Whether a cached entry is asked again: an invalid reply after its retries (an error with the replies that
    failed validation: a flaky server or a sampled reply may do better next time). It stays in the file as written
    (the record of what the model said), but it is never a permanent answer. A failure cached without any reply
    (a prompt longer than a local model's context) would fail the same way, so it stays."""
    return bool(entry.get("error")) and bool(entry.get("raw"))


MAX_ERROR_SHARE = 0.1  # a judge or synthesize step with more failed requests than this share fails the stage


def check_failures(failed: int, total: int, errors: list[str], noun: str, cache_path: Path) -> None:
    """Fail the stage (a UserError: exit code 2) when more than MAX_ERROR_SHARE of `total` requests ended in an
    error: the message counts them and gives the most common error texts (of `errors`). Every success is already
    in the cache, and no failure is a permanent answer there (`asked_again`), so the rerun asks only for those."""
    if not total or failed <= MAX_ERROR_SHARE * total:
        return
    common = "; ".join(f"{n}x {text!r}" for text, n in Counter(clip(e, 200) for e in errors).most_common(3))
    raise UserError(f"{failed} of {total} {noun} failed ({100 * failed / total:.0f}%, more than the "
                    f"{100 * MAX_ERROR_SHARE:.0f}% allowed); most common: {common}. The {total - failed} that "
                    f"succeeded are cached in {cache_path}: rerun to ask only for the failed ones")


def answer_all(items: Iterable[K], backend: Backend, cache: JudgeCache, ask: Callable[[K, RunStats], dict[str, Any]], *,
               desc: str, noun: str, model_field: str, progress: bool = True,
               on_hit: Callable[[K, dict[str, Any]], dict[str, Any]] = lambda item, hit: hit,
               ) -> tuple[dict[str, dict[str, Any]], RunStats]:
    """Answers by item key: from the cache (passed through `on_hit`), or `ask`ed now, at most
    `backend.max_workers` at once, and appended to the cache as each one finishes (those whose `cacheable` is
    true: never a transport error), so a killed run keeps every finished answer. The same key twice is asked
    once. An unreachable backend stops the run with a UserError that counts the finished `noun`s; any other
    exception also leaves every finished answer in the cache."""
    stats = RunStats()
    results: dict[str, dict[str, Any]] = {}
    todo: dict[str, K] = {}
    for item in items:
        hit = cache.get(item.key)
        if hit is None or asked_again(hit):
            todo.setdefault(item.key, item)
        else:
            stats.cache_hits += 1
            results[item.key] = on_hit(item, hit)
    bar = tqdm(total=len(todo), desc=desc, unit="call", disable=not progress)

    def record(item: K, entry: dict[str, Any]) -> None:
        entry = {"key": item.key, model_field: backend.model_id, **entry}
        if entry.pop("cacheable"):
            cache.put(entry)
        results[item.key] = entry
        bar.update(1)

    try:
        if backend.max_workers <= 1 or len(todo) <= 1:
            for item in todo.values():
                record(item, ask(item, stats))
        else:
            run_parallel(list(todo.values()), backend.max_workers, lambda item: ask(item, stats), record)
    except BackendUnavailable as exc:
        done = sum(1 for key in todo if key in results)
        raise UserError(f"{exc}. {done} of {len(todo)} new {noun} finished and are kept in {cache.path}; "
                        f"rerun to continue") from None
    finally:
        bar.close()
    return results, stats
