"""The `synthesize` stage's documents: every file under `synth.documents` read into text (sorted, hidden files
skipped): `.txt` and `.md` as text (UTF-8, a byte-order mark tolerated), `.html`/`.htm` as their text content,
`.json` (a list of objects, or one object) and `.jsonl` (one object a line) with the text in `synth.text_field`;
any other file is an error naming it, and so are a symbolic link (to anything, anywhere), a binary file (a NUL byte)
and a file that is not UTF-8. HTML is read by a linear tokenizer of our own (`html_tokens`), never by a parser
that can raise or go quadratic on malformed markup."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

from instruct_tune.data.cleaning import normalise_whitespace
from instruct_tune.errors import UserError
from instruct_tune.io import iter_records, read_json

DOCUMENT_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl")


@dataclass(frozen=True)
class Document:
    """The text of one document: a file, or one record (.json) or line (.jsonl) of a file."""

    name: str  # the file's path relative to the documents folder
    record: int | None  # .json: the record's number (from 1); .jsonl: the line's number; else None
    text: str


SKIP = frozenset(("head", "script", "style", "noscript", "template", "title"))  # their content is not text
RAW_TEXT = frozenset(("script", "style"))  # content that is not markup: skipped to the closing tag as it is
PARAGRAPH = frozenset(("p", "div", "section", "article", "main", "header", "footer", "blockquote", "pre", "table",
                       "ul", "ol", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr"))
LINE = frozenset(("br", "li", "tr", "dt", "dd", "figcaption"))

# Where markup may start: a comment, CDATA, a declaration or processing instruction (`<!...>`, `<?...>`, `<![...]>`),
# or a tag (`<` or `</` and a letter). A `<` before anything else is text.
_MARKUP = re.compile(r"<(?:!--|!\[CDATA\[|[!?]|/?[A-Za-z])")
_TAG = re.compile(r"</?([A-Za-z][^\s/<>]{0,63})[^<>]*>?")  # a tag ends at `>`, or before the next `<`
_ANGLE = re.compile(r"[<>]")
_SKIP_TO = {"<!--": "-->", "<![CDATA[": "]]>"}


def html_tokens(html: str) -> list[tuple[str, str]]:
    """The page as ("text", data) and ("tag", name or "/name") tokens, comments, declarations and the content of
    <script> and <style> dropped. One pass: every step starts where the last one ended and scans only up to where
    it ends (str.find and anchored patterns without backtracking), so the work is linear in the page and
    malformed markup (an unclosed tag, comment or `<![`) cannot raise: it runs to the next `<` or the end."""
    tokens: list[tuple[str, str]] = []
    pos, n = 0, len(html)
    while pos < n:
        found = _MARKUP.search(html, pos)
        start = found.start() if found else n
        if start > pos:
            tokens.append(("text", html[pos:start]))
        if not found:
            break
        opener = found.group()
        if opener in _SKIP_TO:  # a comment or CDATA: to its closer, or the end
            close = html.find(_SKIP_TO[opener], found.end())
            pos = n if close < 0 else close + len(_SKIP_TO[opener])
            continue
        if opener in ("<!", "<?"):  # a declaration or processing instruction: to `>`, or before the next `<`
            end = _ANGLE.search(html, found.end())
            pos = n if end is None else end.end() if end.group() == ">" else end.start()
            continue
        tag = _TAG.match(html, start)
        assert tag is not None  # _MARKUP found `<` or `</` and a letter, which _TAG always matches
        name = tag.group(1).lower()
        closing = html.startswith("</", start)
        tokens.append(("tag", "/" + name if closing else name))
        pos = tag.end()
        if name in RAW_TEXT and not closing:  # to the closing tag, or the end
            close = re.compile(rf"</{name}\b", re.IGNORECASE).search(html, pos)
            pos = n if close is None else close.start()
    return tokens


def html_to_text(html: str) -> str:
    """The readable text of an HTML document, one paragraph per block element: no head, title, script, style,
    noscript or template content; entities decoded (`html.unescape`)."""
    parts: list[str] = []
    skipping = 0
    for kind, value in html_tokens(html):
        if kind == "text":
            if not skipping:
                parts.append(unescape(value).replace("\n", " "))
            continue
        name = value.lstrip("/")
        if name in SKIP:
            skipping = max(0, skipping + (-1 if value.startswith("/") else 1))
        if name in PARAGRAPH:
            parts.append("\n\n")
        elif name in LINE:
            parts.append("\n")
    return normalise_whitespace("".join(parts))


def _read_text(path: Path, name: str) -> str:
    """A text document's text: UTF-8 (a byte-order mark tolerated), newlines as \\n; errors name the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{name}: cannot read the document: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{name}: line {line}: not UTF-8 text (byte {exc.start}); save the document as UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise UserError(f"{name}: line {line}: contains a NUL byte: the file is binary or not UTF-8 text (UTF-16?)")
    if not text.strip():
        raise UserError(f"{name}: the document is empty")
    return _newlines(text)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_field(value: Any, where: str, field: str) -> str:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected an object with the field '{field}' (synth.text_field), "
                        f"got {type(value).__name__}")
    if field not in value:
        raise UserError(f"{where}: missing field '{field}' (synth.text_field names the field that holds the text)")
    if not isinstance(value[field], str):
        raise UserError(f"{where}: field '{field}': expected a string, got {type(value[field]).__name__}")
    return _newlines(value[field])


def read_document(path: Path, name: str, text_field: str) -> list[Document]:
    """The documents in one file (several for .json and .jsonl); errors name the file, record or line, field."""
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_TYPES:
        raise UserError(f"{name}: unsupported document type '{suffix or '(none)'}' (synth reads "
                        f"{', '.join(DOCUMENT_TYPES)}); convert it, or move it out of the documents folder")
    if suffix == ".json":
        data = read_json(path)
        items = data if isinstance(data, list) else [data]
        return [Document(name, i, _text_field(item, f"{name}: record {i}", text_field))
                for i, item in enumerate(items, start=1)]
    if suffix == ".jsonl":
        docs = [Document(name, lineno, _newlines(record[text_field]))
                for lineno, record in iter_records(path, required=(text_field,))]
        if not docs:
            raise UserError(f"{name}: the document is empty")
        return docs
    text = _read_text(path, name)
    if suffix in (".html", ".htm"):
        return [Document(name, None, html_to_text(text))]
    return [Document(name, None, text)]


def read_documents(folder: Path, text_field: str) -> tuple[list[Document], int]:
    """Every document under `folder` (sorted by path, hidden files and folders skipped), and the file count."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "not found"
        raise UserError(f"params.yaml: synth.documents: {folder}: {what}")
    visible = [p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    links = sorted(p for p in visible if p.is_symlink())
    if links:  # a link could bring in any file of the machine (~/.ssh/id_rsa.txt) as a "document" sent to an LLM
        raise UserError(f"{links[0]}: a symbolic link in the documents folder (to {os.readlink(links[0])}); "
                        f"synth reads only regular files: copy the document in, or remove the link "
                        f"({len(links)} link(s) in all)")
    files = sorted(p for p in visible if p.is_file())
    if not files:
        raise UserError(f"{folder}: no documents in the folder named by synth.documents "
                        f"(expected {', '.join(DOCUMENT_TYPES)} files)")
    docs: list[Document] = []
    for path in files:
        docs += read_document(path, str(path), text_field)
    return docs, len(files)
