"""A file's text, for a model to read: plain text, Markdown, code, JSON, HTML and PDF.

The one entry point is :func:`extract_text` (async: the work runs in a thread). A file whose text cannot be
extracted raises :class:`~respd.errors.UnreadableFile` with a message that says why (an unsupported type,
a damaged or encrypted PDF, a PDF of scanned pages with no text layer); its ``message`` is fit to show a
user as is. A file with no text at all (an empty text file) gives ``""``: what to make of that is the
caller's choice.

How a file is read is decided by its name's extension, its declared MIME type and its first bytes:

- PDF (``%PDF-``, ``.pdf``, ``application/pdf``): pypdf, page by page, pages separated by a blank line.
- HTML (``.html``, ``.htm``, ``.xhtml``, ``text/html``): the stdlib's HTML parser; script, style and other
  non-text elements are dropped, block elements end lines, entities are decoded.
- Everything else that is text (UTF-8 or UTF-16 with a BOM, or a legacy 8-bit text without control
  bytes): as it is. Known binary formats (images, archives, office documents, executables) are refused by
  name, and bytes that are not text are refused whatever their name.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import tempfile
from collections.abc import AsyncIterable, Iterable
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import IO

from respd.errors import UnreadableFile

log = logging.getLogger("respd.files")

SPOOL_BYTES = 8 << 20  # a PDF up to this size is parsed from memory; a larger one from a temporary file
SNIFF_BYTES = 8192

HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml", ".shtml"})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Formats with text inside that this module does not read (yet): refused by name with a clear message,
# rather than as "not text".
BINARY_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tiff", ".ico", ".heic", ".svgz", ".zip", ".gz", ".tgz",
    ".bz2", ".xz", ".7z", ".rar", ".tar", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".ods",
    ".odp", ".rtf", ".epub", ".exe", ".dll", ".so", ".bin", ".mp3", ".mp4", ".wav", ".ogg", ".mov", ".avi",
    ".parquet", ".sqlite", ".db", ".pkl", ".npy", ".class", ".jar", ".wasm", ".woff", ".woff2", ".ttf",
})  # fmt: skip
SUPPORTED = "plain text, Markdown, code, JSON, CSV, XML, HTML and PDF"

Source = bytes | AsyncIterable[bytes]


def _kind(filename: str, mime: str | None, head: bytes) -> str:
    """``"pdf"``, ``"html"``, ``"text"`` or ``"binary:<why>"``."""
    ext = PurePosixPath(filename or "").suffix.lower()
    mime = (mime or "").split(";")[0].strip().lower()
    if head.startswith(b"%PDF-") or ext == ".pdf" or mime == "application/pdf":
        return "pdf"
    if ext in HTML_EXTENSIONS or mime in HTML_TYPES:
        return "html"
    if ext in BINARY_EXTENSIONS:
        return f"binary:{ext}"
    if mime.startswith(("image/", "audio/", "video/")):
        return f"binary:{mime}"
    return "text"


# -- text -----------------------------------------------------------------------------------------------
def _encoding(head: bytes) -> str:
    """The text's encoding from its first bytes: a BOM's, else UTF-8 (a legacy one is tried if that fails)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _looks_binary(data: bytes) -> bool:
    """NUL bytes, or many control characters other than whitespace: not a text file."""
    if b"\x00" in data:
        return True
    controls = sum(1 for b in data if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > len(data) // 100


def _decode(pieces: Iterable[bytes], head: bytes, what: str) -> str:
    encoding = _encoding(head)
    if encoding == "utf-8" and _looks_binary(head):
        raise UnreadableFile(f"{what} is not a text file, so no text can be extracted from it. Supported: {SUPPORTED}.")
    pieces = list(pieces) if encoding == "utf-8" else pieces  # a second pass may be needed, below
    decoder = codecs.getincrementaldecoder(encoding)()
    out: list[str] = []
    try:
        for piece in pieces:
            out.append(decoder.decode(piece))
        out.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError:
        if encoding != "utf-8":
            raise UnreadableFile(f"{what} is not valid {encoding.upper()} text.") from None
        # not UTF-8: a legacy 8-bit encoding (Windows-1252 is what such files mostly are); every byte maps
        data = b"".join(pieces)
        if _looks_binary(data):
            raise UnreadableFile(f"{what} is not a text file, so no text can be extracted from it. "
                                 f"Supported: {SUPPORTED}.") from None  # fmt: skip
        return data.decode("cp1252", errors="replace")
    return "".join(out)


# -- HTML -----------------------------------------------------------------------------------------------
class _HTMLText(HTMLParser):
    """The text of an HTML document: what a reader sees, one block per line."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas"})
    BLOCK = frozenset({
        "p", "div", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article", "header",
        "footer", "nav", "aside", "main", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "figure",
        "figcaption", "title", "form", "fieldset", "address", "details", "summary",
    })  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):  # at most one blank line in a row
                out.append(line)
        return "\n".join(out).strip()


def html_text(markup: str) -> str:
    """The visible text of an HTML document."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return parser.text()


# -- PDF ------------------------------------------------------------------------------------------------
def pdf_text(stream: IO[bytes], what: str) -> str:
    """The text of each page of a PDF, pages separated by a blank line."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(stream)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile(f"{what} is an encrypted PDF, so its text cannot be extracted.")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except UnreadableFile:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("cannot read PDF %s: %s", what, exc)
        raise UnreadableFile(f"{what} is not a valid PDF, or is damaged: {exc}".rstrip(": ") + ".") from None
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        count = f"{len(pages)} page" + ("" if len(pages) == 1 else "s")
        raise UnreadableFile(f"{what} is a PDF with no extractable text ({count}): its pages may be scanned "
                             "images, which this server cannot read.")  # fmt: skip
    return text


# -- the entry point ------------------------------------------------------------------------------------
def _read_sync(kind: str, spool: IO[bytes], head: bytes, what: str) -> str:
    if kind == "pdf":
        return pdf_text(spool, what)
    spool.seek(0)
    text = _decode(iter(lambda: spool.read(1 << 20), b""), head, what)
    return html_text(text) if kind == "html" else text


async def extract_text(filename: str, mime: str | None, source: Source) -> str:
    """The text of the file ``filename`` (of MIME type ``mime``, if known) whose bytes are ``source``.

    ``source`` is the bytes, or an async iterable of pieces (as :func:`respd.store.files.read` gives), which
    is spooled (to memory, to disk past :data:`SPOOL_BYTES`) and parsed in a thread, off the event loop.
    Raises :class:`~respd.errors.UnreadableFile` when the file has no text that can be extracted.
    """
    what = f"The file '{filename}'" if filename else "The file"
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        head = b""
        if isinstance(source, bytes):
            spool.write(source)
            head = source[:SNIFF_BYTES]
        else:
            async for piece in source:
                if len(head) < SNIFF_BYTES:
                    head += piece[: SNIFF_BYTES - len(head)]
                spool.write(piece)
        kind = _kind(filename, mime, head)
        if kind.startswith("binary:"):
            raise UnreadableFile(f"{what} is of a type whose text this server cannot extract "
                                 f"({kind.removeprefix('binary:')}). Supported: {SUPPORTED}.")  # fmt: skip
        spool.seek(0)
        return await asyncio.to_thread(_read_sync, kind, spool, head, what)
