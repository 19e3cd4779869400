"""Citations: the sources a response's hosted calls found, numbered, and the annotations an answer earns.

Every source a hosted call returns (a web page, a file chunk) gets a number, unique across a response
chain: the model reads it as ``[n]`` in the call's result and is asked to cite by writing ``[n]`` after
what it took from that source. When an answer's text part is complete, each marker that names a known
source becomes an annotation on that part: a ``url_citation`` spanning the marker (``start_index`` to
``end_index``, exclusive, as in Python slicing), or a ``file_citation`` whose ``index`` is where the
marker begins. Markers are left in the text: it was already streamed. Full-width markers some models
write (``【3】``, ``【3†source】``) and lists (``[1, 2]``) count too.
"""

from __future__ import annotations

import re
from typing import Any

from respd.tools.base import Source

_MARKER = re.compile(r"\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]|【(\d{1,4})(?:[†:][^】]{0,80})?】")

CITE_HINT = "Cite a result by writing its number in brackets, e.g. [1], right after what you took from it."


class Citations:
    """The numbered sources of one response's context."""

    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: dict[int, Source] = {}

    def __bool__(self) -> bool:
        return bool(self._sources)

    def add(self, source: Source) -> int:
        """Number a new source."""
        n = max(self._sources, default=0) + 1
        self._sources[n] = source
        return n

    def put(self, n: int, source: Source) -> None:
        """Keep a source numbered earlier (a stored call's)."""
        self._sources[n] = source

    def annotations(self, text: str) -> list[dict[str, Any]]:
        """The annotations of an answer's text, in the order of their markers."""
        out: list[dict[str, Any]] = []
        for match in _MARKER.finditer(text):
            numbers = match.group(1) or match.group(2)
            for raw in numbers.split(","):
                source = self._sources.get(int(raw))
                if source is not None:
                    out.append(_annotation(source, match.start(), match.end()))
        return out


def _annotation(source: Source, start: int, end: int) -> dict[str, Any]:
    if source.kind == "file":
        return {"type": "file_citation", "file_id": source.file_id, "filename": source.filename, "index": start}
    return {"type": "url_citation", "url": source.url, "title": source.title, "start_index": start,
            "end_index": end}  # fmt: skip
