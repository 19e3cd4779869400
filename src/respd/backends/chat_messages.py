"""Responses items → Chat Completions messages, tools and formats.

Shared by every backend that speaks the Chat Completions dialect (an HTTP upstream, a local chat
template). Choices here favour what the widest range of OpenAI-compatible servers accept: ``developer``
becomes ``system``, text-only content is sent as a plain string, reasoning items are not sent back. A
client-run tool search is a call of the function ``tool_search`` answered by a tool message naming the
tools it loaded; ``additional_tools`` items bring tools, not words, so they are no message at all.
The client-executed built-ins' calls (``computer_call``, ``local_shell_call``, ``shell_call``,
``apply_patch_call``) are calls of the functions they were offered as; a screenshot answering a computer call
follows the tool messages as a user message with the image, since a tool message carries only text.
"""

from __future__ import annotations

from typing import Any

import orjson

from respd.backends.tool_calls import flat_name
from respd.wire import client_calls
from respd.wire.tools import TOOL_SEARCH

Message = dict[str, Any]


def _text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts)


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p["type"] in ("input_text", "output_text") for p in parts):
        return _text_of(parts)
    out: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "input_image":
            image: dict[str, Any] = {"url": p["image_url"]}
            if p.get("detail") and p["detail"] != "auto":
                image["detail"] = p["detail"]
            out.append({"type": "image_url", "image_url": image})
        else:
            out.append({"type": "text", "text": p.get("text", "")})
    return out


def _tool_output(output: str | list[dict[str, Any]]) -> str:
    return output if isinstance(output, str) else _text_of(output)


def _loaded_tools(tools: list[dict[str, Any]]) -> str:
    """A tool search's output for the model: the tools it can call now, by the names it must call them by."""
    loaded = []
    for tool in tools:
        namespace = tool["name"] if tool["type"] == "namespace" else None
        for t in tool["tools"] if namespace is not None else [tool]:
            if t["type"] in ("function", "custom"):  # built-ins were left out of what the model is offered
                entry = {"name": flat_name(namespace, t["name"])}
                loaded.append(entry | ({"description": t["description"]} if t.get("description") else {}))
    return orjson.dumps({"loaded_tools": loaded}).decode()


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _attach_call(messages: list[Message], call: dict[str, Any]) -> None:
    """Consecutive calls (and the assistant text just before them) form one assistant message."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)
    elif last is not None and last["role"] == "assistant":
        last["tool_calls"] = [call]
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _screenshots(urls: list[str]) -> Message:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "The screenshot after the computer action:"}]
    return {"role": "user", "content": parts + [{"type": "image_url", "image_url": {"url": u}} for u in urls]}


def to_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[Message]:
    """The chat ``messages`` for a context of normalized Responses items."""
    messages: list[Message] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    images: list[str] = []  # screenshots waiting for the end of a run of tool messages
    for item in items:
        kind = item["type"]
        if images and not kind.endswith("_output"):
            messages.append(_screenshots(images))
            images = []
        if kind in client_calls.KIND_OF_CALL:
            _attach_call(messages, _call(item["call_id"], *client_calls.replayed_call(item)))
        elif kind in client_calls.OUTPUT_OF:
            content = client_calls.output_text(item)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
            if (url := client_calls.output_image(item)) is not None:
                images.append(url)
        elif kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text_of(item["content"])})
            else:
                messages.append({"role": role, "content": _user_content(item["content"])})
        elif kind == "function_call":
            name = flat_name(item.get("namespace"), item["name"])
            _attach_call(messages, _call(item["call_id"], name, item["arguments"]))
        elif kind == "custom_tool_call":
            args = orjson.dumps({"input": item["input"]}).decode()
            _attach_call(messages, _call(item["call_id"], flat_name(item.get("namespace"), item["name"]), args))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            content = _tool_output(item["output"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        elif kind == "tool_search_call" and item["call_id"]:
            args = item["arguments"]
            args = args if isinstance(args, str) else orjson.dumps(args).decode()
            _attach_call(messages, _call(item["call_id"], TOOL_SEARCH, args))
        elif kind == "tool_search_output" and item["call_id"]:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _loaded_tools(item["tools"])})
        # Not replayed: reasoning items (Chat Completions servers have no field for them), tool search items
        # without a call_id (a search the server ran: no call of the model's to answer), additional_tools
        # (tools, not words: the engine offers them as tools).
    if images:
        messages.append(_screenshots(images))
    return messages


def to_response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses ``text.format`` (flat) → Chat Completions ``response_format`` (nested)."""
    if fmt is None or fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt["name"], "schema": fmt["schema"]}
    if fmt.get("description"):
        schema["description"] = fmt["description"]
    if fmt.get("strict") is not None:
        schema["strict"] = fmt["strict"]
    return {"type": "json_schema", "json_schema": schema}
