"""Text extraction (respd.files.extract): the text of each supported kind of file, and a clear error for a
file that has none to give."""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator

import pytest

from respd.errors import UnreadableFile
from respd.files.extract import extract_text
from tests.pdfs import make_pdf


def extract(filename: str, data: bytes, mime: str | None = None) -> str:
    return asyncio.run(extract_text(filename, mime, data))


def refused(filename: str, data: bytes, mime: str | None = None) -> str:
    with pytest.raises(UnreadableFile) as caught:
        extract(filename, data, mime)
    assert caught.value.status == 400 and caught.value.code == "unsupported_file"
    return caught.value.message


@pytest.mark.parametrize(
    "name",
    ["notes.txt", "README.md", "main.py", "lib.rs", "data.json", "rows.csv", "Makefile", "config.yaml", "page.xml"],
)
def test_text_files_are_read_as_they_are(name: str) -> None:
    text = '# Title\n\ndef f(x):\n    return {"k": [1, 2]}  # ünïcödé ✓\n'
    assert extract(name, text.encode()) == text


def test_json_keeps_its_text() -> None:
    doc = json.dumps({"invoice": "INV-4471", "total": 12.5}, indent=2)
    assert extract("x.json", doc.encode(), "application/json") == doc


def test_encodings() -> None:
    assert extract("bom.txt", codecs.BOM_UTF8 + "héllo".encode()) == "héllo"
    assert extract("utf16.txt", "héllo wörld".encode("utf-16")) == "héllo wörld"
    assert extract("legacy.txt", "café crème".encode("cp1252")) == "café crème"  # not UTF-8: Windows-1252
    assert extract("empty.txt", b"") == ""


def test_html_keeps_what_a_reader_sees() -> None:
    page = b"""<!doctype html><html><head><title>Quarterly report</title>
    <style>body { color: red }</style><script>var secret = "do not show";</script></head>
    <body><h1>Results &amp; outlook</h1><p>Revenue grew <b>12%</b>.</p><ul><li>One</li><li>Two</li></ul>
    <noscript>enable JS</noscript><table><tr><td>A</td><td>B</td></tr></table></body></html>"""
    text = extract("report.html", page)
    assert text.splitlines() == ["Quarterly report", "", "Results & outlook", "", "Revenue grew 12%.", "", "One", "",
                                 "Two", "", "A B"]  # fmt: skip
    assert "secret" not in text and "color" not in text and "enable JS" not in text
    assert extract("page", b"<p>by type</p>", "text/html; charset=utf-8") == "by type"


def test_pdf_pages() -> None:
    pdf = make_pdf([["Hello PDF world", "Second line (with parens)"], ["Page two: invoice INV-4471"]])
    assert extract("doc.pdf", pdf) == "Hello PDF world\nSecond line (with parens)\n\nPage two: invoice INV-4471"
    assert extract("no-extension", pdf) == extract("doc.pdf", pdf)  # known by its first bytes


def test_pdf_source_in_pieces() -> None:
    pdf = make_pdf([[f"line {i}" for i in range(40)] for _ in range(30)])

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(pdf), 1000):
            yield pdf[i : i + 1000]

    text = asyncio.run(extract_text("big.pdf", "application/pdf", pieces()))
    assert text.count("line 39") == 30


def test_unreadable_files_say_why() -> None:
    assert "no extractable text (1 page)" in refused("scan.pdf", make_pdf([[]]))
    assert "encrypted" in refused("locked.pdf", make_pdf([["secret"]], password="pw"))
    assert "not a valid PDF" in refused("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    assert "(.png)" in refused("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "(image/jpeg)" in refused("upload", b"\xff\xd8\xff" + bytes(100), "image/jpeg")
    assert "not a text file" in refused("data.txt", bytes(range(256)) * 4)
    message = refused("sheet.xlsx", b"PK\x03\x04" + bytes(100))
    assert "sheet.xlsx" in message and "PDF" in message  # names the file and what is supported
