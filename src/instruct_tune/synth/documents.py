"""The `synthesize` stage's documents: every file under `synth.documents` read into text (sorted, hidden files
skipped): `.txt` and `.md` as text (UTF-8, a byte-order mark tolerated), `.html`/`.htm` as their text content,
`.json` (a list of objects, or one object) and `.jsonl` (one object a line) with the text in `synth.text_field`;
any other file is an error naming it."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
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


class _HTMLText(HTMLParser):
    """The text content of an HTML page: no head, script or style; block elements end a paragraph."""

    SKIP = frozenset(("head", "script", "style", "noscript", "template"))
    PARAGRAPH = frozenset(("p", "div", "section", "article", "main", "header", "footer", "blockquote", "pre", "table",
                           "ul", "ol", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr"))
    LINE = frozenset(("br", "li", "tr", "dt", "dd", "figcaption"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        self._break(tag)

    def _break(self, tag: str) -> None:
        if tag in self.PARAGRAPH:
            self.parts.append("\n\n")
        elif tag in self.LINE:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data.replace("\n", " "))


def html_to_text(html: str) -> str:
    """The readable text of an HTML document, one paragraph per block element."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return normalise_whitespace("".join(parser.parts))


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
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise UserError(f"{folder}: no documents in the folder named by synth.documents "
                        f"(expected {', '.join(DOCUMENT_TYPES)} files)")
    docs: list[Document] = []
    for path in files:
        docs += read_document(path, str(path), text_field)
    return docs, len(files)
