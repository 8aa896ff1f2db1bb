"""The `prepare` stage's logic: load every source, clean, sample, filter, deduplicate, count.

Order of work, per source in the order `data.sources` lists them:
1. read the URI into rows and normalise them into records (instruction, input, output, answer, task);
2. clean the text (HTML, control characters, whitespace, Alpaca placeholders) and give each record its `id`;
3. sample `count` records with `random.Random(seed)` (kept in file order); more than available is an error;
4. filter: empty, too_long, too_short, leakage, then exact and near duplicates against everything kept so
   far, across sources too (the first occurrence wins). Every drop is counted by reason, overall and per source.
The kept records are returned sorted by `id`: a stable order that does not depend on how sources are listed.
The records the `synthesize` stage kept from your documents (data/synth/records.jsonl) come last, as one more
source called `synth`, when there are any.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from instruct_tune.data.cleaning import DROP_REASONS, Deduplicator, clean_record, drop_reason
from instruct_tune.errors import UserError
from instruct_tune.data.formats import ColumnMap, normalise_rows, resolve_format
from instruct_tune.params import DataParams, SourceParams
from instruct_tune.data.sources import classify, read_rows, read_url

RECORD_FIELDS = ("id", "source", "instruction", "input", "output", "answer", "task")
OPTIONAL_FIELDS = ("system",)  # written only when a record has one (a column map's `system`)
_PROGRESS_MIN = 5000  # show a progress bar for sources with at least this many records
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
SYNTH_SOURCE = "synth"  # how the `synthesize` stage's records are called in records and metrics


def source_name(source: SourceParams) -> str:
    """How a source is called in records and metrics: its `name`, else its URI."""
    return source.name or source.uri


def synth_source(path: Path | None) -> SourceParams | None:
    """The `synthesize` stage's kept records as one more source (all of them), or None when it wrote none
    (no documents configured: an empty file) or was not run."""
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return None
    return SourceParams(uri=str(path), format="alpaca", name=SYNTH_SOURCE)


def check_sources(data: DataParams, sources: list[SourceParams] | None = None) -> None:
    """Fail on bad source settings before any file is read (`sources`: data.sources and the synth records)."""
    sources = data.sources if sources is None else sources
    if not sources:
        raise UserError("params: `data.sources` is empty: list at least one source")
    seen = set()
    for i, source in enumerate(sources):
        key = f"data.sources[{i}]" if i < len(data.sources) else "the synthesize stage's records"
        if source.count is not None and source.count < 0:
            raise UserError(f"params: `{key}.count` must be >= 0, got {source.count}")
        name = source_name(source)
        if name in seen:
            raise UserError(f"params: `{key}`: two sources are called {name!r}; give them distinct `name`s")
        seen.add(name)
        kind = classify(source.uri)[0]  # an unknown URI scheme fails here
        if source.sha256 is not None:
            if kind != "url":
                raise UserError(f"params: `{key}.sha256` applies to http(s) sources only ({source.uri!r} is a {kind})")
            if not _SHA256_RE.fullmatch(source.sha256):
                raise UserError(f"params: `{key}.sha256` must be 64 hexadecimal digits, got {source.sha256!r}")
    if data.max_download_mb <= 0 or data.download_timeout_s <= 0:
        raise UserError("params: `data.max_download_mb` and `data.download_timeout_s` must be > 0")


def load_all(source: SourceParams, merge_conversations: bool = False,
             data: DataParams | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every record of a source, normalised and cleaned (before sampling), and facts for the metrics.

    With `data` (as `prepare` passes it): records already longer than `data.max_chars` before HTML stripping
    are not stripped (see `clean_record`), and a URL source is downloaded within `data`'s limits.
    The facts of a URL source include the download's `sha256`.
    """
    max_chars = data.max_chars if data is not None else None
    digest = None
    if classify(source.uri)[0] == "url":
        limits = data or DataParams()
        rows, digest = read_url(source.uri, limits.max_download_mb, limits.download_timeout_s, source.sha256)
    else:
        rows = read_rows(source.uri, source.split, source.count, source.seed)
    name = source_name(source)
    columns = ColumnMap.parse(name, source.columns)
    fmt = "alpaca" if classify(source.uri)[0] == "builtin" else resolve_format(rows, source.format, columns)
    records = []
    for record in tqdm(normalise_rows(rows, fmt, merge_conversations, columns), desc=f"clean {name}", unit="rec",
                       disable=len(rows) < _PROGRESS_MIN, leave=False):
        record = clean_record(record, max_chars)
        record["source"] = name
        records.append({field: record[field] for field in RECORD_FIELDS}
                       | {field: record[field] for field in OPTIONAL_FIELDS if record.get(field)})
    if columns is not None:
        check_mapped_fields(records, source, rows)
    facts = {"uri": source.uri, "format": fmt, "rows": len(rows), "available": len(records)}
    if digest is not None:  # in metrics/prepare.json: a changed remote file shows in `dvc metrics diff`
        facts["sha256"] = digest
    return records, facts


def check_mapped_fields(records: list[dict[str, Any]], source: SourceParams, rows: list[Any]) -> None:
    """A column map that leaves `instruction` or `output` empty in every record is a mistake, not 0 records."""
    from instruct_tune.text_template import columns_of

    if not records:
        return
    for field in ("instruction", "output"):
        if field in (source.columns or {}) and not any(r[field].strip() for r in records):
            raise UserError(
                f"source {source_name(source)!r}: columns.{field} = {source.columns[field]!r} leaves `{field}` empty "
                f"in all {len(records)} records (after cleaning; columns of {rows[0].location}: "
                f"{', '.join(columns_of(rows[0].data)) or 'none'})")


def sample(records: list[dict[str, Any]], count: int | None, seed: int, name: str) -> list[dict[str, Any]]:
    """`count` records drawn with `random.Random(seed)`, in their original order; all when `count` is None."""
    if count is None:
        return records
    if count > len(records):
        raise UserError(f"source {name!r}: `count` is {count} but it has only {len(records)} records")
    picked = sorted(random.Random(seed).sample(range(len(records)), count))
    return [records[i] for i in picked]


def load_source(source: SourceParams, merge_conversations: bool = False) -> list[dict[str, Any]]:
    """The normalised, cleaned, sampled records of one source, before the filters of `prepare`."""
    records, _ = load_all(source, merge_conversations)
    return sample(records, source.count, source.seed, source_name(source))


def _counts(kept: int, loaded: int, dropped: Counter) -> dict[str, Any]:
    return {"loaded": loaded, "kept": kept, "dropped": {reason: dropped[reason] for reason in DROP_REASONS}}


def prepare(data: DataParams, synth_path: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Kept records (sorted by id) and the metrics for `metrics/prepare.json`; with `synth_path`, the records
    of the `synthesize` stage are one more source (`synth`) after `data.sources`.

    Metrics: `loaded` (records after sampling), `kept`, `dropped` per reason, and per source the same plus
    `uri`, `format`, `rows` (rows read), `available` (records before sampling), `cross_source_duplicates`
    (its records dropped as duplicates of a record kept from an earlier source) and, for a URL, `sha256`.
    """
    extra = synth_source(synth_path)
    sources = [*data.sources, *([extra] if extra is not None else [])]
    check_sources(data, sources)
    dedup = Deduplicator(data.near_duplicates)
    kept: list[dict[str, Any]] = []
    total_dropped: Counter = Counter()
    per_source: dict[str, Any] = {}
    for source in tqdm(sources, desc="sources", unit="source", disable=len(sources) < 2):
        name = source_name(source)
        records, facts = load_all(source, data.merge_conversations, data)
        records = sample(records, source.count, source.seed, name)
        dropped: Counter = Counter()
        cross: Counter = Counter()
        n_kept = 0
        for record in records:
            reason = drop_reason(record, data.max_chars, data.min_output_chars, data.drop_leakage)
            if reason is None:
                reason, first_source = dedup.check(record)
                if reason is not None and first_source != name:
                    cross[reason] += 1
            if reason is None:
                kept.append(record)
                n_kept += 1
            else:
                dropped[reason] += 1
        total_dropped.update(dropped)
        per_source[name] = {
            **facts, **_counts(n_kept, len(records), dropped),
            "cross_source_duplicates": {reason: cross[reason] for reason in ("duplicate", "near_duplicate")},
        }
    if not kept:
        # An empty dataset would only fail stages later, far from its cause: say here what dropped everything.
        raise UserError(
            "prepare: no records kept after cleaning and filtering; per source: " + "; ".join(
                f"{name!r} ({s['uri']}): {s['loaded']} loaded, dropped "
                + (", ".join(f"{reason} {n}" for reason, n in s["dropped"].items() if n) or "none")
                for name, s in per_source.items())
            + f" (data.max_chars={data.max_chars}, data.min_output_chars={data.min_output_chars})"
        )
    kept.sort(key=lambda r: r["id"])
    loaded = sum(s["loaded"] for s in per_source.values())
    return kept, {**_counts(len(kept), loaded, total_dropped), "sources": per_source}
