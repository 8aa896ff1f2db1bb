"""Text from datasets and models, made inert for REPORT.md.

REPORT.md is rendered by GitHub, VS Code and most markdown viewers, which render HTML, images and links.
Everything that comes from data or from a model goes through `inert` (inline text, table cells) or
`code_block` / `code_span`, so it shows as the characters it is and never as markup: no HTML, no image that
loads from a tracker, no link (`javascript:` or otherwise), no emphasis, no table cell break.
"""

from __future__ import annotations

import html
import re

# Characters that start markdown syntax inline (emphasis, code, links and images, tables, strikethrough,
# headings) plus `:` and `@`, which GFM and linkify turn into autolinks (`http://x`, `a@b.org`). Each is
# backslash-escaped: CommonMark shows an escaped ASCII punctuation character as itself.
_ESCAPE_RE = re.compile(r"([\\`*_\[\]|~!#:@])")
# A dot between letters (`evil.com`, `www.x`): escaped so that no renderer can see a bare domain to linkify.
_DOMAIN_DOT_RE = re.compile(r"(?<=[A-Za-z0-9])\.(?=[A-Za-z])")
# What would open a block at the start of a line: a list item (`-`, `+`, `1.`), a setext underline (`=`).
_BLOCK_START_RE = re.compile(r"^(\d{1,9})([.)])(?=\s|$)|^([-+](?=\s|$)|=)")
_BACKTICKS_RE = re.compile(r"`+")


def inert(text: str) -> str:
    """`text` as inline markdown that renders as exactly its characters, on one line.

    Line breaks become spaces (a newline could start a heading, a list or an HTML block); `& < >` are
    HTML-escaped; markdown punctuation is backslash-escaped.
    """
    text = " ".join(str(text).split())
    text = _ESCAPE_RE.sub(r"\\\1", text)
    text = _DOMAIN_DOT_RE.sub(r"\\.", text)
    text = _BLOCK_START_RE.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", text)
    return html.escape(text, quote=False)


def _fence_for(text: str, char: str = "`", minimum: int = 1) -> str:
    longest = max((len(run) for run in _BACKTICKS_RE.findall(text)), default=0)
    return char * max(minimum, longest + 1)


def code_span(text: str) -> str:
    """`text` as an inline code span (for identifiers such as a model name); never inside a table cell."""
    text = " ".join(str(text).split())
    fence = _fence_for(text)
    return f"{fence} {text} {fence}"  # the padding spaces are stripped by the renderer; they allow a leading `


def code_block(text: str) -> str:
    """`text` as a fenced code block, its fence longer than any run of backticks inside it."""
    text = str(text).rstrip("\n")
    fence = _fence_for(text, minimum=3)
    return f"{fence}text\n{text}\n{fence}"
