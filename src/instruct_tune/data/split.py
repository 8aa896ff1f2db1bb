"""Stratified train / validation / test split whose train sets nest (Small ⊂ Full).

Strata: instruction-length quantile bin (edges from the whole population, `split.quartiles` bins) × has-input.
Test, then validation, are carved from the population with scikit-learn's stratified `train_test_split`
(fixed sizes, `split.seed`): they depend on the population, the seed and their own sizes only, never on
`split.train_size`. The remaining pool is put in a stratified order, in which every prefix holds each stratum
in proportion (within about one record); train is the first `train_size` records of that order, so a smaller
train set is a prefix of, hence a subset of, a larger one, and is itself stratified.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instruct_tune import io
from instruct_tune.errors import UserError
from instruct_tune.params import SplitParams

REQUIRED = ("id", "source", "instruction", "input", "output")
DIGITS = 4


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read prepared records, checking the fields that split and eda rely on (error names line and field)."""
    return io.read_records(path, required=REQUIRED,
                           if_empty="no records (run the prepare stage first, or check data.sources)")


def _round(x: float) -> float:
    return round(float(x), DIGITS)


def length_edges(lengths: Sequence[int], bins: int) -> list[float]:
    """Inner edges of `bins` quantile bins of the lengths (fewer when many lengths tie)."""
    inner = np.quantile(np.asarray(lengths, dtype=float), [i / bins for i in range(1, bins)])
    return sorted({float(e) for e in inner})


def strata_labels(records: Sequence[dict[str, Any]], bins: int) -> tuple[list[str], list[float]]:
    """Each record's stratum, e.g. `q2_input` / `q2_noinput`, and the length edges used (characters)."""
    lengths = [len(r["instruction"]) for r in records]
    edges = length_edges(lengths, bins)
    quantile = np.searchsorted(np.asarray(edges), np.asarray(lengths), side="right") + 1
    labels = [f"q{q}_{'input' if r['input'].strip() else 'noinput'}" for q, r in zip(quantile.tolist(), records)]
    return labels, [_round(e) for e in edges]


def _carve(
    indices: list[int], labels: Sequence[str], size: int, seed: int, name: str, notes: list[str]
) -> tuple[list[int], list[int], str]:
    """Take `size` of `indices` stratified by label; returns (rest, taken, how it was stratified).

    scikit-learn refuses to stratify when a stratum has a single member or `size` is smaller than the number
    of strata: then fall back to has-input alone, then to a plain seeded shuffle, and say so in `notes`."""
    from sklearn.model_selection import train_test_split

    if size == 0:
        return indices, [], "empty"
    if size == len(indices):
        return [], list(indices), "whole pool"
    attempts = [
        ("length_quantile x input", [labels[i] for i in indices]),
        ("input", [labels[i].split("_", 1)[1] for i in indices]),
        ("none", None),
    ]
    for how, stratify in attempts:
        try:
            rest, taken = train_test_split(indices, test_size=size, random_state=seed, shuffle=True, stratify=stratify)
        except ValueError as exc:
            notes.append(f"{name}: could not stratify by {how} ({exc}); falling back")
            continue
        return sorted(rest), sorted(taken), how
    raise AssertionError("an unstratified split cannot fail")


def _tiebreak(seed: int, record_id: str) -> str:
    return hashlib.sha1(f"{seed}:{record_id}".encode()).hexdigest()


def stratified_order(
    indices: Sequence[int], labels: Sequence[str], ids: Sequence[str], seed: int
) -> list[int]:
    """Order `indices` so that every prefix is stratified: within each stratum (shuffled with the seed) the
    i-th of n records gets the key (i + 0.5) / n; sort by key, ties broken by a seeded hash of the id."""
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        by_stratum[labels[i]].append(i)
    keyed = []
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum], key=lambda i: ids[i])  # independent of the input order
        order = rng.permutation(len(members))
        n = len(members)
        keyed += [((rank + 0.5) / n, _tiebreak(seed, ids[members[j]]), members[j]) for rank, j in enumerate(order)]
    return [i for _, _, i in sorted(keyed)]


def _shares(labels: Sequence[str]) -> dict[str, float]:
    counts = Counter(labels)
    return {k: counts[k] / len(labels) for k in counts}


def split_report(
    labels: Sequence[str], parts: dict[str, list[int]]
) -> tuple[dict[str, Any], float | None]:
    """Per split: size, each stratum's count, share, population share and deviation, and the largest absolute
    deviation; plus that largest deviation over all non-empty splits."""
    population = _shares(labels)
    report: dict[str, Any] = {}
    worst: float | None = None
    for name, idx in parts.items():
        counts = Counter(labels[i] for i in idx)
        strata = {}
        for stratum in sorted(population):
            share = counts[stratum] / len(idx) if idx else None
            strata[stratum] = {
                "count": counts[stratum],
                "share": None if share is None else _round(share),
                "population_share": _round(population[stratum]),
                "deviation": None if share is None else _round(share - population[stratum]),
            }
        deviation = max(abs(counts[s] / len(idx) - population[s]) for s in population) if idx else None
        if deviation is not None:
            worst = deviation if worst is None else max(worst, deviation)
        report[name] = {
            "size": len(idx),
            "max_stratum_deviation": None if deviation is None else _round(deviation),
            "strata": strata,
        }
    return report, None if worst is None else _round(worst)


def _check(records: Sequence[dict[str, Any]], params: SplitParams) -> None:
    for key in ("train_size", "val_size", "test_size"):
        if getattr(params, key) < 0:
            raise UserError(f"params.yaml: `split.{key}` must be >= 0, got {getattr(params, key)}")
    if params.train_size < 1:
        raise UserError(f"params.yaml: `split.train_size` must be at least 1, got {params.train_size}")
    if params.quartiles < 1:
        raise UserError(f"params.yaml: `split.quartiles` must be at least 1, got {params.quartiles}")
    seen: dict[str, int] = {}
    for n, r in enumerate(records, start=1):
        if r["id"] in seen:
            raise UserError(f"record {n}: field 'id': duplicate id {r['id']!r} (also record {seen[r['id']]})")
        seen[r["id"]] = n
    held_out = params.val_size + params.test_size
    if held_out >= len(records):
        raise UserError(
            f"params.yaml: `split.val_size` + `split.test_size` = {held_out} leaves no training records: "
            f"only {len(records)} records are available"
        )
    if params.train_size > len(records) - held_out:
        raise UserError(
            f"params.yaml: `split.train_size` = {params.train_size} is more than the {len(records) - held_out} "
            f"records available ({len(records)} prepared - {params.test_size} test - {params.val_size} validation)"
        )


def stratified_split(
    records: Sequence[dict[str, Any]], params: SplitParams
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Split `records` into train / val / test (each in the population's order) and the metrics for split.json."""
    _check(records, params)
    labels, edges = strata_labels(records, params.quartiles)
    ids = [r["id"] for r in records]
    notes: list[str] = []
    everything = list(range(len(records)))
    rest, test, test_how = _carve(everything, labels, params.test_size, params.seed, "test", notes)
    pool, val, val_how = _carve(rest, labels, params.val_size, params.seed, "val", notes)
    order = stratified_order(pool, labels, ids, params.seed)
    train = sorted(order[: params.train_size])
    parts = {"train": train, "val": val, "test": test}
    per_split, worst = split_report(labels, parts)
    population = Counter(labels)
    metrics = {
        "sizes": {"population": len(records), "pool": len(pool), **{k: len(v) for k, v in parts.items()}},
        "max_stratum_deviation": worst,
        "splits": per_split,
        "population": {s: {"count": population[s], "share": _round(population[s] / len(records))}
                       for s in sorted(population)},
        "stratification": {
            "length_edges_chars": edges,
            "test": test_how,
            "val": val_how,
            "train": "stratified prefix of the pool",
            "notes": notes,
        },
    }
    return {name: [records[i] for i in idx] for name, idx in parts.items()}, metrics
