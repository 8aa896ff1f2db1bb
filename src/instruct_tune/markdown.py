"""Untrusted text (records, generations, judge output) rendered as inert Markdown text.

REPORT.md is read in viewers that render HTML and Markdown: a generation containing `<script>`,
`<img onerror=...>`, `![](http://tracker/...)` or a `javascript:` link must show up as characters, not
act. `inert` escapes HTML and Markdown's active characters; our own charts are the only images.
"""

from __future__ import annotations

import html
import re

# Characters that start Markdown constructs (links, images, emphasis, code, autolinks, tables).
_MD_ACTIVE = re.compile(r"([\\`*_\[\]()!#|~])")


def inert(text: str) -> str:
    """`text` as plain characters in Markdown: HTML escaped, Markdown syntax backslash-escaped."""
    escaped = html.escape(text, quote=True)  # < > & " ' : no tag, entity or autolink survives
    escaped = _MD_ACTIVE.sub(r"\\\1", escaped)
    return re.sub(r"(?i)\b(javascript|data|vbscript):", r"\1&#58;", escaped)
