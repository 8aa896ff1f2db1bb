"""REPORT.md renders what datasets and models wrote as inert text: no HTML, no images or links from data."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from instruct_tune.io import write_json, write_jsonl
from instruct_tune.report.markdown import code_block, code_span, inert
from instruct_tune.report.build import build_report

# Each is markup a viewer (GitHub, VS Code) would render: a script, an image that runs code or loads from a
# tracker, links (javascript:, autolinks, GFM's bare-URL and www autolinks), a raw HTML comment and block,
# emphasis, a code span, a table-cell break and a heading.
HOSTILE = [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    "![](http://tracker.example/pixel.png?u=1)",
    "[click](javascript:alert(1))",
    "<https://evil.example>",
    "<!-- hidden comment -->",
    "http://bare.example/x and www.evil.example",
    "mail me: victim@example.org",
    '<div onclick="steal()">block</div>',
    "**bold** _it_ `code` ~~gone~~ a | b",
    "# heading\n- item\n1. item\n> quote",
    "<style>body{display:none}</style>",
    "[ref]: http://ref.example/",
    "&lt;script&gt; &#60;b&#62;",
]
ALL = " ".join(HOSTILE)


def _fixture(root: Path) -> dict[str, Path]:
    metrics, plots = root / "metrics", root / "plots"
    write_json(metrics / "prepare.json", {"loaded": 3, "kept": 2, "dropped": {"empty": 1}})
    write_json(metrics / "breakdown" / "prepare.json", {
        "sources": {HOSTILE[2]: {"loaded": 2, "kept": 1}, HOSTILE[4]: {"loaded": 1, "kept": 1}}})
    write_json(metrics / "breakdown" / "eda.json", {"overall": {
        "lengths": {"output": {"chars": {"mean": 1.5, "median": 1, "std": 0.5, "min": 1, "max": 2}}},
        "input_share": 0.5, "with_input": 1,
        "top_verbs": [{"verb": HOSTILE[0], "count": 2}, {"verb": HOSTILE[3], "count": 1}],
        "lda_topics": [{"topic": 0, "words": [HOSTILE[1], HOSTILE[6]]}],
    }})
    scores = {"factual_correctness": 3.0, "instruction_adherence": 3.0, "clarity_usefulness": 4.0, "total": 10.0}
    write_json(metrics / "judge.json", {
        "n_pairs": 2, "win": 1, "loss": 0, "tie": 1, "errors": 0, "win_rate": 0.75, "win_rate_ci_low": 0.5,
        "win_rate_ci_high": 1.0, "position_consistency": None, "tuned": scores, "base": {**scores, "total": 8.0},
        "total_diff": 2.0, "total_diff_ci_low": 1.0, "total_diff_ci_high": 3.0, "kappa": 0.8, "agreement": 0.9,
        "auc_factual": 0.9, "mode": "pointwise"})
    write_json(metrics / "breakdown" / "judge.json", {
        "judge_model": "openai:`evil` <b>model</b>", "mode": "pointwise", "scoring": "generate",
        "validity": {"n": 4, "judge_true_verified_true": 1, "judge_true_verified_false": 1,
                     "judge_false_verified_true": 1, "judge_false_verified_false": 1},
        "by_task": {HOSTILE[9]: {"n": 2, "base_total": 8.0, "tuned_total": 10.0, "win": 1, "loss": 0, "tie": 1}}})
    (plots / "judge").mkdir(parents=True)
    (plots / "judge" / "totals.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    lines = []
    for i, text in enumerate(HOSTILE):
        grade = {"total": 9, "correct": True, "scores": {}, "reason": HOSTILE[(i + 5) % len(HOSTILE)]}
        lines.append({"id": f"r{i}", "instruction": text, "input": HOSTILE[-1 - i], "reference": text, "answer": None,
                      "task": None, "outcome": "win" if i % 2 else "tie", "winner": HOSTILE[i % len(HOSTILE)],
                      "grades": {"base": {"response": HOSTILE[(i + 3) % len(HOSTILE)], "grade": grade, "verified": None},
                                 "tuned": {"response": HOSTILE[(i + 7) % len(HOSTILE)], "grade": grade,
                                           "verified": None}}})
    write_jsonl(root / "data/judgments.jsonl", lines)
    return {"metrics_dir": metrics, "plots_dir": plots, "judgments_path": root / "data/judgments.jsonl",
            "out_path": root / "REPORT.md"}


def _tokens(tokens):  # every token, children included
    for t in tokens:
        yield t
        yield from _tokens(t.children or [])


def test_report_renders_hostile_records_as_inert_text(tmp_path: Path) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    text = build_report(**_fixture(tmp_path), examples=len(HOSTILE))
    (tmp_path / "REPORT.md").write_text(text)

    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = list(_tokens(md.parse(text)))
    kinds = {t.type for t in tokens}
    assert not kinds & {"html_block", "html_inline", "link_open", "em_open", "s_open", "ordered_list_open",
                        "blockquote_open", "fence", "code_block"}, sorted(kinds)
    # Headings and list items exist, but only the report's own.
    for content in [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]:
        assert re.fullmatch(r"Instruction-tuning study: report|Verdict|\d\. .*|Exploratory analysis|Split|Caveats|"
                            r"How answers are verified|Judge totals by task family|Accuracy by task family.*", content), content
    items = [tokens[i + 2].content for i, t in enumerate(tokens) if t.type == "list_item_open"]
    assert items and all(c.lstrip("*").startswith(("records with an input", "top leading words", "LDA topics", "Verified",
                                                   "Timings", "Judge", "Validation loss")) for c in items), items
    # The only images are our charts: local PNG files next to the report.
    images = [t.attrs["src"] for t in tokens if t.type == "image"]
    assert images == ["plots/judge/totals.png"] and (tmp_path / images[0]).exists()
    # Our own markup still renders: headings, tables, bold labels, the judge model as a code span.
    assert sum(t.type == "table_open" for t in tokens) >= 3 and "heading_open" in kinds and "strong_open" in kinds
    assert "openai:`evil` <b>model</b>" in [t.content for t in tokens if t.type == "code_inline"]

    rendered = md.render(text)
    for bad in ("<script", "<img src=x", "<style", "<div", "<!--", "href=", "javascript:alert(1)\"", "<b>", "<em>"):
        assert bad not in rendered, bad
    # GFM also autolinks bare http://, www. and e-mail addresses in text: none is left contiguous in the source.
    assert not re.search(r"(?<!\\)(?:https?://|www\.[a-z]|[a-z]@[a-z])", text, re.I)
    # ... and the hostile text is still there to read, character for character (whitespace collapsed).
    visible = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for bad in HOSTILE:
        assert " ".join(bad.split()) in visible, bad
    print(f"REPORT.md: {len(text.splitlines())} lines, {len(images)} image (local PNG), no HTML, link, image or "
          f"emphasis from {len(HOSTILE)} hostile strings; token kinds: {', '.join(sorted(kinds))}")


def test_our_own_structure_is_the_only_structure() -> None:
    """The same checks on the helpers alone, where no report structure can mask a leak."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for bad in HOSTILE:
        for line in (inert(bad), f"- {inert(bad)}", f"| a |\n|---|\n| {inert(bad)} |"):
            kinds = {t.type for t in _tokens(md.parse(line))}
            allowed = {"paragraph_open", "paragraph_close", "inline", "text", "text_special", "softbreak",
                       "bullet_list_open", "bullet_list_close", "list_item_open", "list_item_close", "table_open",
                       "table_close", "thead_open", "thead_close", "tbody_open", "tbody_close", "tr_open", "tr_close",
                       "th_open", "th_close", "td_open", "td_close"}
            assert kinds <= allowed, (bad, line, kinds - allowed)
            assert md.parse(line)[-1].type != "heading_close"
        visible = html.unescape(re.sub(r"<[^>]+>", "", md.render(inert(bad)))).strip()
        assert visible == " ".join(bad.split())
    block = code_block("```\n<script>x</script>\n````")
    parsed = md.parse(block)
    assert [t.type for t in parsed] == ["fence"] and parsed[0].content == "```\n<script>x</script>\n````\n"
    span = md.parse(code_span("``a`` | <b>"))
    assert [t.content for t in _tokens(span) if t.type == "code_inline"] == ["``a`` | <b>"]


def test_table_cells_cannot_break_the_table() -> None:
    from instruct_tune.report.build import table

    text = table(["a", "b"], [[inert("x | y\nz"), inert("<b>")]])
    assert text.splitlines()[2] == "| x \\| y z | &lt;b&gt; |"
    assert json.dumps(text)  # plain text
