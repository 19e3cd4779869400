"""GBNF grammars that constrain a local model's output: structured answers and tool calls always parse.

Schemas become rules with llama-cpp-python's JSON-schema converter (the port of llama.cpp's
``json-schema-to-grammar``), all of one turn in one converter so that shared rules are written once. Tool
calls keep the model's own format (see :mod:`respd.backends.llama_tools`), so a constrained call reads to
the model exactly like one it chose to write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from respd.backends.llama_tools import CLOSE, OPEN

MAX_PARALLEL_CALLS = 5  # a bound, so that a small model cannot loop on calls until its token limit
_WS = "[ \\n]*"  # between the markers and the JSON, as templates write it


# The first character of an answer in text after a useless tool call (see the engine): not one that begins a
# call (`{`, `[`, `<`, a fence) nor space before one; the rest is free.
TEXT_START = 'root ::= [^{<`\\x5B \\t\\n] [^\\x00]*\n'


@dataclass(frozen=True, slots=True)
class Constraints:
    """What constrains one turn's output.

    ``answer``: GBNF for the whole output from its first token (None: free text). When the model begins a
    call on its own (tool_choice ``auto``), the engine rewinds to where it began and goes on under
    ``tagged`` (``<tool_call>`` calls) or ``bare`` (one bare or fenced JSON call); ``bare_tools`` are the
    names a bare call may use (empty: don't watch for one).
    """

    answer: str | None
    tagged: str | None = None
    bare: str | None = None
    bare_tools: frozenset[str] = frozenset()


class GrammarError(ValueError):
    """A schema that cannot be turned into a grammar (remote ``$ref``, a malformed pattern, …); ``param``
    names the request field it came from."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _converter() -> SchemaConverter:
    return SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )


def _visit(conv: SchemaConverter, schema: dict[str, Any], name: str, param: str) -> str:
    try:
        resolved = conv.resolve_refs(schema, name)
        rule: str = conv.visit(resolved, name)  # type: ignore[no-untyped-call]
    except Exception as exc:  # the converter raises bare Exceptions, KeyErrors, re.errors …
        raise GrammarError(f"cannot constrain output to this schema: {type(exc).__name__}: {exc}", param) from exc
    return rule


def _literal(text: str) -> str:
    """A GBNF literal for ``text`` (GBNF string escapes are JSON's)."""
    return json.dumps(text)


def text_format_schema(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema ``text.format`` asks for; json_object is any object; plain text is None."""
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "object"}
    schema: dict[str, Any] = fmt.get("schema") or {"type": "object"}
    return schema


def build(tools: list[dict[str, Any]], mode: str, answer_schema: dict[str, Any] | None, parallel: bool) -> Constraints:
    """The constraints for a turn.

    ``tools`` are Chat Completions tools (``{"type": "function", "function": {...}}``) a call may use;
    ``mode`` is ``none``, ``auto`` or ``required`` (a named function arrives as ``required`` with just that
    tool). ``answer_schema`` constrains a text answer (``text.format``).
    """
    conv = _converter()
    answer = _visit(conv, answer_schema, "answer", "text.format.schema") if answer_schema is not None else None
    if not tools or mode == "none":
        return Constraints(f"root ::= {answer}\n{conv.format_grammar()}\n" if answer else None)  # type: ignore[no-untyped-call]
    # {"name": <one tool's name, a constant>, "arguments": <that tool's parameters>}
    alternatives = []
    own: list[str] = []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        params = _visit(conv, fn.get("parameters") or {"type": "object", "properties": {}}, f"args-{i}", "tools")
        own.append(f'respd-args-{i} ::= space "," space "\\"arguments\\"" space ":" space {params} "}}" space')
        alternatives.append(f"{_literal(json.dumps(fn['name']))} respd-args-{i}")
    own.append(f'respd-call ::= "{{" space "\\"name\\"" space ":" space ({" | ".join(alternatives)})')
    one = f"{_literal(OPEN)} {_WS} respd-call {_WS} {_literal(CLOSE)}"
    more = f" ({_WS} {one}){{0,{MAX_PARALLEL_CALLS - 1}}}" if parallel else ""
    rules = conv.format_grammar() + "\n" + "\n".join(own) + "\n"  # type: ignore[no-untyped-call]
    calls = f"{one}{more}"
    if mode == "required":
        return Constraints(f"root ::= {calls}\n{rules}")
    if answer is not None:  # auto with a schema-bound answer: the answer, or calls
        return Constraints(f"root ::= {answer} | {calls}\n{rules}")
    # as small models write it: maybe fenced, the fence then closed
    bare = f'("```json" | "```") {_WS} respd-call {_WS} "```" | respd-call'
    names = frozenset(t["function"]["name"] for t in tools)
    return Constraints(None, f"root ::= {calls}\n{rules}", f"root ::= {bare}\n{rules}", names)
