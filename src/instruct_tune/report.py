"""REPORT.md: the study in one page a person reads offline.

Everything comes from the tracked metrics (metrics/*.json), the charts in plots/, the generations and
the judgments; nothing is computed here that a stage did not already measure, except the per-task
accuracy table and the choice of examples. Timings (tokens/s, runtime) are shown but kept out of the
headline so the report stays comparable between runs.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from instruct_tune.io import read_json, read_jsonl
from instruct_tune.markdown import code_span, inert

METRICS = ("prepare", "eda", "split", "train", "generate", "judge")
CRITERIA = ("factual_correctness", "instruction_adherence", "clarity_usefulness", "total")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table; every cell inert (cells hold source names, instructions, responses)."""
    lines = ["| " + " | ".join(inert(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [inert(fmt(c)) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def image(path: Path, report_dir: Path, alt: str) -> str:
    """A markdown image link relative to the report, or a note when the chart is missing."""
    if not path.exists():
        return f"_({alt}: chart not found at {path})_"
    return f"![{inert(alt)}]({os.path.relpath(path, report_dir)})"


def load_metrics(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    return {name: read_json(metrics_dir / f"{name}.json") for name in METRICS if (metrics_dir / f"{name}.json").exists()}


def clip(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def accuracy_by_task(rows_by_model: dict[str, list[dict[str, Any]]], is_correct: Any) -> list[list[Any]]:
    """Per task family: n and exact-match accuracy for each model (records with an `answer` only)."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for model, rows in rows_by_model.items():
        for row in rows:
            if not row.get("answer"):
                continue
            cell = counts[row.get("task") or "(external)"][model]
            cell[0] += int(is_correct(row))
            cell[1] += 1
    out = []
    for task in sorted(counts):
        n = max(c[1] for c in counts[task].values())
        accs = [counts[task][m][0] / counts[task][m][1] if counts[task][m][1] else None for m in rows_by_model]
        out.append([task, n, *[pct(a) for a in accs]])
    return out


def section_data(m: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    lines = ["## 1. Data"]
    prep = m.get("prepare", {})
    if prep:
        dropped = prep.get("dropped", {})
        lines.append(
            f"Loaded **{prep.get('loaded')}** records, kept **{prep.get('kept')}**; dropped: "
            + (", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v) or "none")
            + "."
        )
        srcs = prep.get("sources", {})
        if srcs:
            lines.append("")
            lines.append(table(["source", "loaded", "kept"], [[k, v.get("loaded"), v.get("kept")] for k, v in sorted(srcs.items())]))
    eda = m.get("eda", {}).get("overall", {})
    if eda:
        lines.append("")
        lines.append("### Exploratory analysis")
        rows = []
        lengths = eda.get("lengths", {})
        for field in ("instruction", "input", "output"):
            for unit in ("chars", "words"):
                s = lengths.get(field, {}).get(unit, {})
                if s:
                    rows.append([f"{field} ({unit})", s.get("mean"), s.get("median"), s.get("std"), s.get("min"), s.get("max")])
        if rows:
            lines.append(table(["length", "mean", "median", "std", "min", "max"], rows))
        extra = []
        if "input_share" in eda:
            extra.append(f"records with an input: {eda.get('with_input')} ({pct(eda.get('input_share'))})")
        verbs = eda.get("top_verbs")
        if verbs:
            extra.append("top leading verbs: " + ", ".join(inert(f"{v['verb']} ({v['count']})" if isinstance(v, dict) else str(v)) for v in verbs))
        flesch = eda.get("flesch_reading_ease")
        if flesch:
            extra.append(f"Flesch reading ease of outputs: mean {fmt(flesch.get('mean'), 1)}, median {fmt(flesch.get('median'), 1)}")
        lines += [""] + [f"- {e}" for e in extra]
        topics = eda.get("lda_topics")
        if topics:
            lines.append("- LDA topics: " + "; ".join(
                f"{i + 1}: " + ", ".join(map(inert, t.get("words", t) if isinstance(t, dict) else t)) for i, t in enumerate(topics)
            ))
        lines.append("")
        for png in sorted((plots / "eda").glob("*.png")):
            lines.append(image(png, out_dir, png.stem))
    split = m.get("split", {})
    if split:
        sizes = split.get("sizes", {})
        lines += [
            "",
            "### Split",
            f"Stratified by instruction-length quartile × has-input: train {sizes.get('train')}, validation "
            f"{sizes.get('val')}, test {sizes.get('test')}; largest stratum deviation from the population "
            f"**{fmt(split.get('max_stratum_deviation'), 4)}**.",
        ]
    return lines


def section_train(m: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    t = m.get("train", {})
    if not t:
        return []
    keys = [
        ("train_loss", "train loss"), ("val_loss", "validation loss (whole set, best checkpoint)"),
        ("val_perplexity", "validation perplexity"), ("base_val_loss", "validation loss before training"),
        ("steps", "optimizer steps"), ("epochs", "epochs"), ("n_train_examples", "training examples"),
        ("train_tokens_per_s", "training tokens/s (non-pad)"), ("runtime_s", "runtime (s)"),
        ("peak_memory_mb", "peak memory (MB)"),
    ]
    rows = [[label, t[k]] for k, label in keys if k in t]
    return ["## 2. Fine-tuning", table(["", "value"], rows), "", image(plots / "train" / "loss.png", out_dir, "loss curves")]


def section_generate(m: dict[str, Any]) -> list[str]:
    g = m.get("generate", {})
    if not g:
        return []
    keys = [
        ("accuracy", "exact-match accuracy (records with an answer)"), ("n", "responses"),
        ("mean_new_tokens", "mean new tokens"), ("empty_rate", "empty responses"),
        ("repetition_rate", "caught in a repetition loop"), ("tokens_per_s", "tokens/s"),
    ]
    rows = []
    for k, label in keys:
        if k in g.get("tuned", {}) or k in g.get("base", {}):
            vals = [g.get("base", {}).get(k), g.get("tuned", {}).get(k)]
            if k in ("accuracy", "empty_rate", "repetition_rate"):
                vals = [pct(v) for v in vals]
            rows.append([label, *vals])
    return ["## 3. Generation on the test split", table(["", "base", "tuned"], rows)]


def section_judge(m: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    j = m.get("judge", {})
    if not j:
        return []
    rows = []
    for crit in CRITERIA:
        rows.append([crit.replace("_", " "), j.get("base", {}).get(crit), j.get("tuned", {}).get(crit)])
    rows.append(["score (% of max)", pct(_frac(j.get("base", {}).get("score_pct"))), pct(_frac(j.get("tuned", {}).get("score_pct")))])
    for side in ("best", "worst"):
        rows.append([f"{side} case (total)", _case(j.get("base", {}).get(side)), _case(j.get("tuned", {}).get(side))])
    lines = [
        "## 4. LLM-as-judge",
        f"Judge: {code_span(j.get('judge_model'))}, rubric v{inert(str(j.get('rubric_version')))}, each pair judged in both orders "
        f"(blind A/B labels; a verdict that flips with the order counts as a tie).",
        "",
        table(["mean score", "base", "tuned"], rows),
        "",
        f"Tuned vs base over {j.get('n_pairs')} pairs: **{j.get('win')} wins, {j.get('loss')} losses, {j.get('tie')} ties**, "
        f"{j.get('errors')} errors (left out). Win rate (W + ½T)/N = **{fmt(j.get('win_rate'))}** "
        f"(95% bootstrap interval {fmt(j.get('win_rate_ci_low'))}–{fmt(j.get('win_rate_ci_high'))}); "
        f"position consistency {pct(j.get('position_consistency'))}.",
        "",
    ]
    for png in sorted((plots / "judge").glob("*.png")):
        lines.append(image(png, out_dir, png.stem))
    return lines


def _frac(score_pct: float | None) -> float | None:
    return None if score_pct is None else score_pct / 100.0


def _case(case: Any) -> str:
    if isinstance(case, dict):
        return f"{fmt(case.get('total'))} ({case.get('id')})"
    return fmt(case)


def section_examples(gens: dict[str, list[dict[str, Any]]], judgments: dict[str, dict[str, Any]], n: int) -> list[str]:
    base = {r["id"]: r for r in gens.get("base", [])}
    tuned = gens.get("tuned", [])
    lines = ["## 6. Examples (test split, base vs tuned)"]
    for row in tuned[:n]:
        b = base.get(row["id"], {})
        verdict = judgments.get(row["id"], {}).get("winner")
        lines += [
            "",
            f"**Instruction:** {inert(clip(row.get('instruction', '')))}" + (f"  \n**Input:** {inert(clip(row['input']))}" if row.get("input") else ""),
            "",
            table(["", "response"], [
                ["reference", clip(row.get("reference", ""))],
                ["base", clip(b.get("response", ""))],
                ["tuned", clip(row.get("response", ""))],
            ]),
        ]
        if verdict:
            lines.append(f"Judge: **{inert(verdict)}**.")
    return lines


def build_report(
    metrics_dir: Path = Path("metrics"),
    plots_dir: Path = Path("plots"),
    generations_dir: Path = Path("data/generations"),
    judgments_path: Path = Path("data/judgments.jsonl"),
    out_path: Path = Path("REPORT.md"),
    examples: int = 5,
    is_correct: Any = None,
) -> str:
    """Assemble REPORT.md's text from the pipeline's outputs."""
    out_dir = out_path.parent
    m = load_metrics(metrics_dir)
    gens = {name: read_jsonl(generations_dir / f"{name}.jsonl") for name in ("base", "tuned") if (generations_dir / f"{name}.jsonl").exists()}
    judgments = {}
    if judgments_path.exists():
        judgments = {r["id"]: r for r in read_jsonl(judgments_path)}
    j, g, t = m.get("judge", {}), m.get("generate", {}), m.get("train", {})
    headline = []
    if j:
        headline.append(
            f"the tuned model wins **{fmt(j.get('win_rate'))}** of judged pairs against the base "
            f"(95% CI {fmt(j.get('win_rate_ci_low'))}–{fmt(j.get('win_rate_ci_high'))}, N = {j.get('n_pairs')})"
        )
    if g.get("tuned", {}).get("accuracy") is not None:
        headline.append(f"exact-match accuracy **{pct(g['base'].get('accuracy'))} → {pct(g['tuned'].get('accuracy'))}**")
    if t:
        headline.append(f"validation loss {fmt(t.get('base_val_loss'))} → **{fmt(t.get('val_loss'))}**" if t.get("base_val_loss") is not None else f"validation loss **{fmt(t.get('val_loss'))}**")
    lines = [
        "# Instruction-tuning study: report",
        "",
        "Generated by the `report` stage from this run's metrics, charts, generations and judgments; "
        "rerun `dvc repro` to refresh it.",
        "",
        "**Result:** " + ("; ".join(headline) + "." if headline else "no results yet."),
        "",
    ]
    lines += section_data(m, plots_dir, out_dir) + [""]
    lines += section_train(m, plots_dir, out_dir) + [""]
    lines += section_generate(m) + [""]
    lines += section_judge(m, plots_dir, out_dir) + [""]
    if gens and is_correct is not None:
        lines += ["## 5. Accuracy on verifiable tasks, by task family",
                  table(["task", "n", *gens.keys()], accuracy_by_task(gens, is_correct)), ""]
    if gens:
        lines += section_examples(gens, judgments, examples) + [""]
    lines += [
        "## Caveats",
        "- The default judge is SmolLM2-135M-Instruct itself (4-bit GGUF): it follows the JSON schema but its scores are "
        "noisy and it is biased towards the first answer; position consistency measures how much. Treat its win rate as a "
        "smoke signal and the exact-match accuracy as the hard number; point `judge.backend: openai` at a real model for "
        "a judgement worth quoting.",
        "- Timings (tokens/s, runtime) depend on the machine and on what else ran beside it.",
    ]
    return "\n".join(lines).rstrip() + "\n"
