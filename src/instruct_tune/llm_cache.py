"""Asking an LLM many things, cached and resumable: the answers by key, the calls counted, the work spread over a
pool. Shared by the judge and the `synthesize` stage (each keys its own answers by what decides them).

`JudgeCache` keeps finished answers in an append-only JSON Lines file that survives kill -9 (a torn last line is
dropped on the next read); `RunStats` counts the calls made and the answers served from the cache (printed, never in
metrics: they depend on the cache, not on the inputs); `run_parallel` asks at most `workers` questions at once and
records each answer as it arrives, and on any interruption still records every answer that finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from instruct_tune.io import append_jsonl, read_jsonl_tolerant

T = TypeVar("T")


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
