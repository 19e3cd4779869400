"""A local model's tool calls, split out of its text stream.

Two forms are recognized. The one chat templates ask for (Qwen2.5, Hermes and most recent instruct
models), anywhere in the output::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

and, at the very start of an answer, the bare (or fenced) JSON object that small models often write
instead: ``{"name": "get_weather", "arguments": {…}}``. The scanner holds back any text that may still
become either form, so a call is never shown to the client as text. When it sees a call begin, the engine
rewinds to where the call started and writes it again under a grammar (:mod:`respd.backends.llama_grammars`),
so that it always parses; :meth:`CallScanner.restart` puts the scanner at that point.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

# `{"name": "<tool>"` at the start of the answer, maybe inside a ``` fence.
_JSON_CALL = re.compile(r'\s*(```(?:json)?\s*)?\{\s*"name"\s*:\s*"([^"\\]*)"')
_JSON_STARTS = ('```json{"name":"', '```{"name":"', '{"name":"')
_NAME_CHARS = re.compile(r"[\w.:-]*")


@dataclass(slots=True)
class Text:
    """Answer text, safe to show."""

    text: str


@dataclass(slots=True)
class CallStarted:
    """A call begins at character ``at`` of the output: ``<tool_call>``, or a bare JSON call (``bare``)."""

    at: int
    bare: bool = False


@dataclass(slots=True)
class Call:
    """One complete call; ``arguments`` is compact JSON text."""

    name: str
    arguments: str


@dataclass(slots=True)
class BrokenCall:
    """A call the model did not finish or that does not parse (cut short by a token limit)."""

    raw: str


Piece = Text | CallStarted | Call | BrokenCall


def parse_call(body: str) -> Call | BrokenCall:
    """``{"name": "f", "arguments": {...}}`` (maybe fenced) → :class:`Call`; anything else is broken."""
    text = body.strip()
    if text.startswith("```") or text.endswith("```"):  # fenced, or a fence closed that was never opened
        text = text.removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return BrokenCall(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return BrokenCall(body)
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models encode the arguments object as a string
        try:
            args = json.loads(args)
        except ValueError:
            return BrokenCall(body)
    if not isinstance(args, dict):
        return BrokenCall(body)
    return Call(obj["name"], json.dumps(args, ensure_ascii=False, separators=(",", ":")))


def _held_back(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could be the beginning of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def _may_become_json_call(text: str) -> bool:
    """Whether ``text`` (the whole answer so far) can still grow into ``{"name": "<tool>"``."""
    squeezed = "".join(text.split())
    for start in _JSON_STARTS:
        if start.startswith(squeezed):
            return True
        if squeezed.startswith(start) and _NAME_CHARS.fullmatch(squeezed[len(start) :]):
            return True
    return False


class CallScanner:
    """Feed model text in pieces; get back answer text, call starts and complete calls, in order.

    ``json_tools``: the tool names a bare JSON object at the start of the answer may call (None: only
    ``<tool_call>`` counts, e.g. when the answer itself must be JSON).
    """

    def __init__(self, json_tools: set[str] | None = None) -> None:
        self._buf = ""
        self._in_call = False
        self._json_call = False  # the call is the bare-JSON form: it runs to the end of the output
        self._json_tools = json_tools  # None once the start of the answer has been decided
        self._consumed = 0  # characters of the output before the buffer

    @property
    def in_call(self) -> bool:
        """Whether the text so far ends inside an unfinished call."""
        return self._in_call

    def feed(self, text: str) -> list[Piece]:
        """The pieces ``text`` completes; text that may begin a call waits for the next feed."""
        self._buf += text
        out: list[Piece] = []
        if self._json_tools is not None and not self._start_of_answer(out):
            return out
        if self._json_call:
            return out
        while True:
            marker = CLOSE if self._in_call else OPEN
            at = self._buf.find(marker)
            if at < 0:
                break
            before, self._buf = self._buf[:at], self._buf[at + len(marker) :]
            if self._in_call:
                out.append(parse_call(before))
            else:
                if before:
                    out.append(Text(before))
                out.append(CallStarted(self._consumed + at))
            self._consumed += at + len(marker)
            self._in_call = not self._in_call
        if not self._in_call:
            keep = _held_back(self._buf, OPEN)
            ready, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            if ready:
                self._consumed += len(ready)
                out.append(Text(ready))
        return out

    def _start_of_answer(self, out: list[Piece]) -> bool:
        """Decide whether the answer opens with a bare JSON call; False while it cannot be told yet."""
        assert self._json_tools is not None
        match = _JSON_CALL.match(self._buf)
        if match is None and _may_become_json_call(self._buf):
            return False
        if match is not None and match.group(2) in self._json_tools:
            self._in_call = self._json_call = True
            out.append(CallStarted(self._consumed, bare=True))
        self._json_tools = None
        return True

    def restart(self, at: int, bare: bool) -> None:
        """Forget the output from character ``at`` on (the engine rewinds there to write a call again);
        what comes next is a ``<tool_call>``, or a bare JSON call running to the end (``bare``)."""
        self._buf = ""
        self._consumed = at
        self._json_tools = None
        self._in_call = self._json_call = bare

    def flush(self) -> list[Piece]:
        """The end of the text: held-back text is answer text; a bare JSON call is complete; a
        ``<tool_call>`` still open is broken."""
        rest, self._buf = self._buf, ""
        if self._json_call:
            self._in_call = self._json_call = False
            return [parse_call(rest)]
        if self._in_call:
            self._in_call = False
            return [BrokenCall(rest)]
        return [Text(rest)] if rest else []
