"""REPORT.md: the study in one page a person reads offline.

It leads with the verified answer: strict accuracy base -> tuned with its paired interval and McNemar
p-value, then the judge's scores and win rate with their intervals next to how far the judge agrees
with verified answers, then the loss. Everything comes from the tracked metrics (metrics/*.json and
metrics/breakdown/*.json), the PNG charts in plots/, the generations and the judgments; nothing is
measured here. Text that came from data or models is rendered inert (markdown.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from instruct_tune import errors
from instruct_tune.io import read_json, read_jsonl
from instruct_tune.report.markdown import code_block, code_span, inert
from instruct_tune.evaluate import judge_controls
from instruct_tune.evaluate.rubric import CRITERIA, MAX_TOTAL
from instruct_tune.tasks.verify import RULES

STAGES = ("synthesize", "prepare", "eda", "split", "train", "export", "generate", "evaluate", "judge")
KAPPA_TRUSTED = 0.6  # below this, the judge's verdict is not to be quoted


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def pvalue(value: float | None) -> str:
    """A p-value: three decimals, or two significant digits when it is small."""
    if value is None:
        return "—"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def points(value: float | None) -> str:
    """A difference of two shares, in percentage points with a sign."""
    return "—" if value is None else f"{100 * value:+.1f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are already safe text."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        # A `|` left unescaped would end the cell (text through `inert` has its pipes escaped already).
        cells = [re.sub(r"(?<!\\)\|", r"\\|", fmt(c)).replace("\n", " ") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def image(path: Path, report_dir: Path, alt: str) -> str:
    """A markdown image link relative to the report (our own charts only), or a note when it is missing."""
    if not path.exists():
        return f"_({alt}: chart not found at {path})_"
    return f"![{alt}]({os.path.relpath(path, report_dir)})"


def clip(text: str | None, limit: int = 300) -> str:
    """Untrusted text as one inert line of at most `limit` characters."""
    return inert(errors.clip(text or "", limit))


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: read_json(folder / f"{name}.json") for name in STAGES if (folder / f"{name}.json").exists()}


def answers(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the `generate` stage measured (lengths, speed) and the `evaluate` stage scored (accuracy, repetition),
    as one table per model: the report shows them side by side."""
    merged: dict[str, Any] = {**found.get("generate", {}), **found.get("evaluate", {})}
    for name in ("base", "tuned"):
        parts = [found.get(stage, {}).get(name) for stage in ("generate", "evaluate")]
        if any(isinstance(part, dict) for part in parts):
            merged[name] = {k: v for part in parts if isinstance(part, dict) for k, v in part.items()}
    return merged


# ---------------------------------------------------------------- sections


def section_verdict(m: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The answer to "did fine-tuning help, and by how much", each number with its n and interval."""
    g, j, t = answers(m), m.get("judge", {}), m.get("train", {})
    lines = ["## Verdict"]
    if g.get("n"):
        lines.append(
            f"- **Verified accuracy** (strict answer extraction, {g['n']} test records): base "
            f"**{pct(g['base']['strict_accuracy'])} → tuned {pct(g['tuned']['strict_accuracy'])}**, a difference of "
            f"**{points(g['strict_accuracy_diff'])} points** (95% paired bootstrap interval {points(g['diff_ci_low'])} "
            f"to {points(g['diff_ci_high'])}; exact McNemar p = {pvalue(g['mcnemar_p'])}: {g['only_tuned']} records "
            f"only the tuned model got right, {g['only_base']} only the base). Lenient (answer anywhere in the "
            f"response): {pct(g['base']['lenient_accuracy'])} → {pct(g['tuned']['lenient_accuracy'])}."
        )
    if g.get("n_rouge"):
        lines.append(
            f"- **ROUGE-L F1 against the reference** ({g['n_rouge']} test records): base "
            f"{fmt(g['base'].get('rouge_l'))} → tuned {fmt(g['tuned'].get('rouge_l'))}, a difference of "
            f"{fmt(g['rouge_l_diff'])} (95% paired bootstrap interval {fmt(g['rouge_l_diff_ci_low'])} to "
            f"{fmt(g['rouge_l_diff_ci_high'])}): word overlap, which rewards the reference's wording, not correctness."
        )
    if j.get("n_pairs"):
        details = b.get("judge", {})
        lines.append(
            f"- **Judge** ({j.get('mode')}, {code_span(str(details.get('judge_model', '?')))}, "
            f"{j['n_pairs']} test records): mean total (0-{MAX_TOTAL}) base {fmt(j['base']['total'], 2)} → tuned "
            f"{fmt(j['tuned']['total'], 2)}, difference {fmt(j['total_diff'], 2)} (95% paired interval "
            f"{fmt(j['total_diff_ci_low'], 2)} to {fmt(j['total_diff_ci_high'], 2)}); tuned wins {j['win']}, loses "
            f"{j['loss']}, ties {j['tie']} ({j['errors']} errors), win rate (W + ½T)/N **{fmt(j['win_rate'])}** "
            f"(95% CI {fmt(j['win_rate_ci_low'])}–{fmt(j['win_rate_ci_high'])})."
        )
        lines.append("- " + judge_trust(j, details))
    if t.get("val_loss") is not None:
        lines.append(
            f"- **Validation loss** (whole validation set): base {fmt(t.get('base_val_loss'))} → tuned "
            f"**{fmt(t['val_loss'])}** (perplexity {fmt(t.get('val_perplexity'), 2)})."
        )
    return lines if len(lines) > 1 else []


def judge_trust(j: dict[str, Any], details: dict[str, Any]) -> str:
    """How far the judge agrees with verified answers, and whether its verdict may be quoted."""
    valid = details.get("validity", {})
    kappa = j.get("kappa")
    if j.get("mode") == "pointwise":
        text = (f"**Judge validity**: its `correct` agrees with strict verification on {pct(j.get('agreement'))} of "
                f"{valid.get('n')} graded responses, Cohen's kappa **{fmt(kappa)}** (95% CI "
                f"{fmt(j.get('kappa_ci_low'))}–{fmt(j.get('kappa_ci_high'))}, resampling records); ROC AUC of its "
                f"factual-correctness score for verified correctness {fmt(j.get('auc_factual'))}.")
    else:
        text = (f"**Judge validity**: where exactly one answer is verified correct "
                f"({valid.get('n_one_verified')} pairs) "
                f"it picks that one in {pct(j.get('picked_verified'))}; ROC AUC of its factual-correctness score "
                f"{fmt(j.get('auc_factual'))}. Position consistency {pct(j.get('position_consistency'))}.")
    lengths = details.get("length_preference", {})
    every, close = lengths.get("all") or {}, lengths.get("close_lengths") or {}
    if every.get("n"):
        text += (f" Length bias: of {every['n']} decided pairs whose answers differ in length, the longer answer won "
                 f"{pct(every['longer_won'])} (95% CI {pct(every['ci_low'])}–{pct(every['ci_high'])}); among the "
                 f"{close.get('n', 0)} whose lengths differ by under 20%, {pct(close.get('longer_won'))}.")
    text += " " + controls_text(j, details.get("controls", {}))
    controls_ok = judge_controls.trusted(j)
    if controls_ok is False:
        text += (f" The judge misgrades its controls (below {judge_controls.CONTROL_TRUSTED}): it does not tell a "
                 "record's own reference from another record's, so **do not quote this judge's verdict** on this data.")
    elif kappa is not None and kappa < KAPPA_TRUSTED:
        text += (f" Kappa is below {KAPPA_TRUSTED}: **do not quote this judge's verdict**; quote the verified "
                 "accuracy.")
    elif kappa is None and controls_ok is None:
        text += (" No record has an exact answer and there are no controls: nothing measures this judge on this data, "
                 "so **do not quote this judge's verdict**.")
    elif kappa is None:
        text += (" No record here has an exact answer, so kappa cannot be measured: the controls are this judge's "
                 "validity on this data (README, \"Is the judge fit for this data?\", gives its agreement with "
                 "hand labels on open-ended answers).")
    return text


def controls_text(j: dict[str, Any], controls: dict[str, Any]) -> str:
    """The controls' figures: own and a neighbour's reference offered as responses, graded by the same judge."""
    if not j.get("n_controls"):
        return "No controls were graded (judge.controls: 0, or pairwise mode)."
    return (f"**Controls** ({j['n_controls']} records, each graded with its own reference and with another record's "
            f"as the response): judged right {pct(j.get('control_right'))} (95% CI {pct(j.get('control_right_ci_low'))}"
            f"–{pct(j.get('control_right_ci_high'))}; own reference judged correct "
            f"{pct(controls.get('own_judged_right'))}, neighbour's judged wrong "
            f"{pct(controls.get('neighbour_judged_right'))}), ROC AUC of the total own vs neighbour "
            f"{fmt(j.get('control_auc'))} (95% CI {fmt(j.get('control_auc_ci_low'))}–"
            f"{fmt(j.get('control_auc_ci_high'))}).")


def section_data(m: dict[str, Any], b: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    lines = ["## 1. Data"]
    prep = m.get("prepare", {})
    if prep:
        dropped = prep.get("dropped", {})
        lines.append(f"Loaded **{prep.get('loaded')}** records, kept **{prep.get('kept')}**; dropped: "
                     + (", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v) or "none") + ".")
        sources = b.get("prepare", {}).get("sources", {})
        if sources:
            lines += ["", table(["source", "loaded", "kept"],
                                [[inert(k), v.get("loaded"), v.get("kept")] for k, v in sorted(sources.items())])]
    eda = b.get("eda", {}).get("overall", {})
    if eda:
        lines += ["", "### Exploratory analysis"]
        rows = []
        for field in ("instruction", "input", "output"):
            for unit in ("chars", "words"):
                s = (eda.get("lengths", {}).get(field) or {}).get(unit) or {}
                if s:
                    rows.append([f"{field} ({unit})", s.get("mean"), s.get("median"), s.get("std"), s.get("min"),
                                 s.get("max")])
        if rows:
            lines.append(table(["length", "mean", "median", "std", "min", "max"], rows))
        extra = [f"records with an input: {eda.get('with_input')} ({pct(eda.get('input_share'))})"]
        if eda.get("top_verbs"):
            extra.append("top leading words: "
                         + ", ".join(f"{inert(v['verb'])} ({v['count']})" for v in eda["top_verbs"]))
        if eda.get("flesch_reading_ease"):
            f = eda["flesch_reading_ease"]
            extra.append(f"Flesch reading ease of outputs: mean {fmt(f.get('mean'), 1)}, "
                         f"median {fmt(f.get('median'), 1)}")
        if eda.get("lda_topics"):
            extra.append("LDA topics: " + "; ".join(f"{i + 1}: " + ", ".join(inert(w) for w in t["words"])
                                                   for i, t in enumerate(eda["lda_topics"])))
        lines += [""] + [f"- {e}" for e in extra] + [""]
        lines += [image(png, out_dir, png.stem) for png in sorted((plots / "eda").glob("*.png"))]
    split = m.get("split", {})
    if split:
        lines += ["", "### Split",
                  f"Stratified by instruction-length quartile × has-input: train {split.get('train')}, validation "
                  f"{split.get('val')}, test {split.get('test')}; largest stratum deviation from the population "
                  f"**{fmt(split.get('max_stratum_deviation'), 4)}**."]
    return lines


def section_synth(m: dict[str, Any], b: dict[str, Any], n: int) -> list[str]:
    """What the `synthesize` stage made of the user's documents; nothing when it had none."""
    s, d = m.get("synthesize", {}), b.get("synthesize", {})
    if not s.get("candidates"):
        return []
    lines = [
        "## Instructions written from your documents",
        f"The `synthesize` stage split {s['n_documents']} documents ({code_span(str(d.get('documents_folder')))}) "
        f"into {s['passages']} passages. The generator {code_span(str(d.get('generator')))} wrote "
        f"{s['candidates']} candidate examples ({d.get('per_passage')} per passage; {s['generation_failures']} "
        f"passages without a usable reply), rules without a model and the auditor {code_span(str(d.get('auditor')))} "
        f"checked each one: **{s['kept']} kept ({pct(s['accepted_share'])})**. `prepare` applies its own "
        "leakage and duplicate filters to them afterwards (source `synth` in the table of section 1).",
        "",
        table(["reason", "dropped", "by a rule", "by the auditor"],
              [[reason, count, d.get("dropped_by_check", {}).get(reason), d.get("dropped_by_audit", {}).get(reason)]
               for reason, count in d.get("dropped", {}).items()]),
    ]
    for verdict, samples in d.get("samples", {}).items():
        if not samples:
            continue
        lines += ["", "### Kept (sample)" if verdict == "keep" else f"### Dropped as {inert(verdict)} (sample)"]
        for x in samples[:n]:
            shown = f"- **Instruction:** {clip(x.get('instruction'))}"
            if x.get("input"):
                shown += f"  \n  **Input:** {clip(x['input'])}"
            shown += f"  \n  **Output:** {clip(x.get('output'))}"
            if x.get("note"):
                who = "auditor" if x.get("by") == "audit" else "rule"
                shown += f"  \n  _{who}: {clip(x['note'], 200)}_"
            lines.append(shown)
    return lines


def section_train(m: dict[str, Any], b: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    t = {**b.get("train", {}), **m.get("train", {})}
    if not t:
        return []
    keys = [
        ("base_val_loss", "validation loss before training (base model)"),
        ("val_loss", "validation loss after training (whole set, best checkpoint)"),
        ("val_perplexity", "validation perplexity after training"), ("train_loss", "mean training loss"),
        ("steps", "optimizer steps"), ("epochs", "epochs"), ("n_train_examples", "training examples"),
        ("train_tokens_per_s", "training tokens/s (non-pad)"), ("runtime_s", "runtime (s)"),
        ("peak_memory_mb", "peak memory (MB)"),
    ]
    rows = [[label, t[k]] for k, label in keys if k in t]
    return ["## 2. Fine-tuning", table(["", "value"], rows), "",
            image(plots / "train" / "loss.png", out_dir, "loss curves"), "", *section_sees(b)]


def section_sees(b: dict[str, Any]) -> list[str]:
    """One training example exactly as the trainer saw it (metrics/breakdown/train.json `example`)."""
    ex = b.get("train", {}).get("example")
    if not ex or "text" not in ex:
        return []
    trimmed = (f"; its prompt was trimmed from {ex['tokens_before_trim']} tokens to fit `train.max_length`"
               if "tokens_before_trim" in ex else "")
    return ["### What the model sees",
            f"One training example ({inert(ex['settings'])}), as the trainer tokenised it: the text between `[[` "
            f"and `]]` carries the loss, the rest is context. {ex['tokens']} tokens, {ex['loss_tokens']} of them "
            f"carry loss{trimmed}. `instruct-tune-preview` shows more.", "", code_block(ex["text"])]


def section_export(m: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The `export` stage: the files a person takes home, and how closely the GGUF answers as the trained model."""
    e, d = m.get("export", {}), b.get("export", {})
    if not e or e.get("enabled") is False:
        return []
    files = d.get("files", {})
    rows = []
    for name, figures in e.items():
        if not isinstance(figures, dict):
            continue
        size = files.get(f"model-{name}.gguf")
        kind = d.get("types", {}).get(name, {})
        rows.append([f"model-{name}.gguf", f"{size / 1e6:.0f} MB" if size else None,
                     pct(figures.get("exact_match")), pct(figures.get("token_agreement")),
                     kind.get("stop_mismatches"), figures.get("n")])
    tol = d.get("tolerance", {}).get("f16", {})
    return ["## Take the model home",
            "`models/export/` holds the merged model (`merged/`, safetensors + tokenizer), the GGUF files below and an "
            "Ollama `Modelfile` written from the training template: "
            "`ollama create mymodel -f models/export/Modelfile`, or "
            "`python -m llama_cpp.server --model models/export/model-f16.gguf`. Each GGUF answered the same seeded "
            f"test prompts greedily as the trained model did (first {d.get('compare_tokens')} tokens compared); the "
            f"f16 file must reach {pct(tol.get('min_exact_match'), 0)} identical answers and "
            f"{pct(tol.get('min_token_agreement'), 0)} token agreement, or the stage fails.", "",
            table(["file", "size", "identical answers", "token agreement", "stop mismatches", "prompts"], rows)]


def section_generate(m: dict[str, Any], b: dict[str, Any]) -> list[str]:
    details = answers(b)
    if not details:
        return []
    keys = [("strict_accuracy", "verified accuracy (strict)"),
            ("lenient_accuracy", "answer anywhere in the response (lenient)"),
            ("rouge_l", "ROUGE-L F1 against the reference"),
            ("n", "responses"), ("mean_new_tokens", "mean new tokens"), ("empty_rate", "empty responses"),
            ("repetition_rate", "caught in a repetition loop"), ("tokens_per_s", "tokens/s")]
    rows = []
    for k, label in keys:
        vals = [details.get(name, {}).get(k) for name in ("base", "tuned")]
        if k.endswith(("accuracy", "rate")):
            vals = [pct(v) for v in vals]
        rows.append([label, *vals])
    lines = ["## 3. Generation on the test split", table(["", "base", "tuned"], rows), "",
             "### Accuracy by task family (strict / lenient)"]
    tasks = sorted(set(details.get("base", {}).get("by_task", {})) | set(details.get("tuned", {}).get("by_task", {})))
    cells = []
    for task in tasks:
        row: list[Any] = [inert(task), (details["tuned"]["by_task"].get(task) or details["base"]["by_task"][task])["n"]]
        for name in ("base", "tuned"):
            c = details.get(name, {}).get("by_task", {}).get(task, {})
            row.append(f"{pct(c.get('strict_accuracy'), 0)} / {pct(c.get('lenient_accuracy'), 0)}")
        cells.append(row)
    lines.append(table(["task family", "n", "base", "tuned"], cells))
    return lines


def section_judge(m: dict[str, Any], b: dict[str, Any], plots: Path, out_dir: Path) -> list[str]:
    j, details = m.get("judge", {}), b.get("judge", {})
    if not j:
        return []
    rows = [[c.replace("_", " "), j.get("base", {}).get(c), j.get("tuned", {}).get(c)] for c in (*CRITERIA, "total")]
    scoring = details.get("scoring")
    how = ("each response graded alone against the reference, blind to the model; the pair's outcome is the higher "
           "total" if j.get("mode") == "pointwise" else
           "both responses in one prompt with blind A/B labels, in both orders; a verdict that flips is a tie")
    if scoring == "choices":
        how += ("; scores are the most likely value of each field, read from the judge's token probabilities "
                "(the probability-weighted means rank responses for the ROC AUC)")
    lines = ["## 4. LLM-as-judge",
             f"Judge {code_span(str(details.get('judge_model')))}, {j.get('mode')} mode: {how}.", "",
             table(["mean score", "base", "tuned"], rows), "", "- " + judge_trust(j, details)]
    valid = details.get("validity", {})
    if j.get("mode") == "pointwise" and valid.get("n"):
        lines += ["", table(["", "verified correct", "verified wrong"], [
            ["judge: correct", valid["judge_true_verified_true"], valid["judge_true_verified_false"]],
            ["judge: wrong", valid["judge_false_verified_true"], valid["judge_false_verified_false"]],
        ])]
    by_task = details.get("by_task", {})
    if by_task:
        lines += ["", "### Judge totals by task family", table(
            ["task family", "n", "base total", "tuned total", "tuned wins", "losses", "ties"],
            [[inert(t), c["n"], c.get("base_total"), c.get("tuned_total"), c["win"], c["loss"], c["tie"]]
             for t, c in by_task.items()])]
    lines.append("")
    lines += [image(png, out_dir, png.stem) for png in sorted((plots / "judge").glob("*.png"))]
    return lines


def section_examples(judgments: list[dict[str, Any]], n: int) -> list[str]:
    """Side-by-side examples: the first `n` judged records where the two models differ, then the rest."""
    if not judgments:
        return []
    differ = [j for j in judgments if j.get("outcome") in ("win", "loss")]
    same = [j for j in judgments if j.get("outcome") not in ("win", "loss")]
    lines = ["## 5. Examples (test split, base vs tuned)"]
    for j in (differ + same)[:n]:
        lines += ["", f"**Instruction:** {clip(j.get('instruction'))}"
                  + (f"  \n**Input:** {clip(j['input'])}" if j.get("input") else "")]
        rows = [["reference", clip(j.get("reference")), "", ""]]
        for name in ("base", "tuned"):
            g = j.get("grades", {}).get(name) or {}
            grade = g.get("grade") or {}
            if not g and j.get("responses"):
                g = {"response": j["responses"].get(name), "verified": (j.get("verified") or {}).get(name)}
            rows.append([name, clip(g.get("response")), fmt(g.get("verified")),
                         fmt(grade.get("total"))
                         + (f" (correct: {fmt(grade.get('correct'))})" if grade.get("correct") is not None else "")])
        lines += ["", table(["", "response", "verified", "judge total"], rows), "",
                  f"Outcome: **{inert(str(j.get('winner')))}**."]
    return lines


def section_rules() -> list[str]:
    return ["## How answers are verified", "Each task family names how its answer is extracted from a response and "
            "compared with the target (verify.py); a response that merely mentions the answer somewhere does not pass.",
            "", table(["task family", "rule"], [[t, inert(r)] for t, r in sorted(RULES.items())])]


def build_report(metrics_dir: Path, plots_dir: Path, judgments_path: Path, out_path: Path, *, examples: int) -> str:
    """Assemble REPORT.md's text from the pipeline's outputs."""
    out_dir = out_path.parent
    m, b = load(metrics_dir), load(metrics_dir / "breakdown")
    judgments = read_jsonl(judgments_path) if judgments_path.exists() else []
    lines = ["# Instruction-tuning study: report", "",
             "Generated by the `report` stage from this run's metrics, charts, generations and judgments; "
             "rerun `dvc repro` to refresh it.", ""]
    for section in (section_verdict(m, b), section_synth(m, b, examples), section_data(m, b, plots_dir, out_dir),
                    section_train(m, b, plots_dir, out_dir), section_export(m, b),
                    section_generate(m, b), section_judge(m, b, plots_dir, out_dir),
                    section_examples(judgments, examples),
                    section_rules()):
        if section:
            lines += section + [""]
    lines += ["## Caveats",
              "- Verified accuracy is the hard number; the judge's scores are trusted only as far as its measured "
              "agreement with verified answers (above).",
              "- Timings (tokens/s, runtime) depend on the machine and on what else ran beside it."]
    return "\n".join(lines).rstrip() + "\n"
