"""Tools in the Chat Completions dialect, which has only flat function tools.

A namespaced tool is offered as ``<namespace>__<name>``; a custom (free-text) tool as a function with one
string parameter ``input``; a client-run tool search as the function ``tool_search`` with its parameters.
:class:`CallDecoder` turns the model's tool-call fragments back: it restores namespace, name and kind,
and for custom tools streams the decoded ``input`` text instead of JSON.
"""

from __future__ import annotations

import re
from typing import Any

from respd.backends.base import ToolCallDelta

SEPARATOR = "__"


def flat_name(namespace: str | None, name: str) -> str:
    """The single function name a namespaced tool goes by upstream."""
    return f"{namespace}{SEPARATOR}{name}" if namespace else name


def _custom_parameters(tool: dict[str, Any]) -> dict[str, Any]:
    hint = "The raw input for this tool, as plain text."
    fmt = tool.get("format") or {}
    if fmt.get("type") == "grammar":
        hint += f" It must match this {fmt['syntax']} grammar:\n{fmt['definition']}"
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": hint}},
        "required": ["input"],
        "additionalProperties": False,
    }


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral tools → Chat Completions ``tools``."""
    out = []
    for tool in tools:
        fn: dict[str, Any] = {"name": flat_name(tool.get("namespace"), tool["name"])}
        if tool.get("description"):
            fn["description"] = tool["description"]
        if tool["type"] == "custom":
            fn["parameters"] = _custom_parameters(tool)
        else:
            fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
            if tool.get("strict") is not None:
                fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def chat_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """The Chat Completions ``tool_choice``, and the tools it leaves the model."""
    if choice is None or isinstance(choice, str):
        return choice, tools
    if choice["type"] == "allowed_tools":
        allowed = set(choice["names"])
        return choice["mode"], [t for t in tools if t["name"] in allowed]
    tool = next(t for t in tools if t["name"] == choice["name"])
    return {"type": "function", "function": {"name": flat_name(tool.get("namespace"), tool["name"])}}, tools


_INPUT_START = re.compile(r'"input"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _InputStream:
    """Decodes the string value of ``"input"`` from JSON arguments that arrive in fragments."""

    def __init__(self) -> None:
        self.raw = ""
        self.pos: int | None = None  # index in ``raw`` of the first character not yet decoded
        self.closed = False
        self.high = ""  # the first half of a \\u surrogate pair, waiting for its second half

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self.pos is None:
            match = _INPUT_START.search(self.raw)
            if match is None:
                return ""
            self.pos = match.end()
        return self._decode()

    def unparsed(self) -> str:
        """Arguments that never held an ``input`` string (a model that ignored the wrapper): all of it."""
        return self.raw if self.pos is None else ""

    def _decode(self) -> str:
        assert self.pos is not None
        raw, i, out = self.raw, self.pos, []
        while i < len(raw) and not self.closed:
            ch = raw[i]
            if ch == '"':
                self.closed = True
                i += 1
            elif ch != "\\":
                out.append(ch)
                i += 1
            elif i + 1 >= len(raw) or (raw[i + 1] == "u" and i + 6 > len(raw)):
                break  # an escape split across fragments: wait for the rest
            elif raw[i + 1] == "u":
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
            else:
                out.append(_ESCAPES.get(raw[i + 1], raw[i + 1]))
                i += 2
        self.pos = i
        text = self.high + "".join(out)
        self.high = ""
        if text and 0xD800 <= ord(text[-1]) < 0xDC00 and not self.closed:
            text, self.high = text[:-1], text[-1]
        # "\\ud83d\\ude00" decodes to two halves; join them (a lone half becomes U+FFFD).
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _has_half(text) else text


def _has_half(text: str) -> bool:
    return any(0xD800 <= ord(c) < 0xE000 for c in text)


class CallDecoder:
    """Maps one turn's upstream tool-call fragments back to the request's tools."""

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        self._tools = {flat_name(t.get("namespace"), t["name"]): t for t in tools}
        self._inputs: dict[int, _InputStream | None] = {}

    def feed(self, index: int, call_id: str | None, name: str | None, arguments: str) -> ToolCallDelta:
        """The delta for one upstream fragment (the first fragment of a call carries its name)."""
        if index in self._inputs:
            delta = ToolCallDelta(index)
        else:
            tool = self._tools.get(name or "")
            custom = tool is not None and tool["type"] == "custom"
            self._inputs[index] = _InputStream() if custom else None
            delta = ToolCallDelta(index, call_id, tool["name"] if tool else name)
            if tool is not None:
                delta.namespace, delta.kind = tool.get("namespace"), tool["type"]
        stream = self._inputs[index]
        delta.arguments = stream.feed(arguments) if stream is not None else arguments
        return delta

    def flush(self) -> list[ToolCallDelta]:
        """At the end of the turn: custom calls whose arguments were not the ``{"input": …}`` wrapper."""
        return [
            ToolCallDelta(index, arguments=stream.unparsed())
            for index, stream in self._inputs.items()
            if stream is not None and stream.unparsed()
        ]
