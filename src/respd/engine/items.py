"""Input items as respd stores them: every item gets an id, a ``type``, a ``status`` and list content.

This is the shape ``input_items`` lists and the shape backends read, whatever shorthand the client used
(a bare string input, a message without ``type``, string content). Ids a client made (``msg_<uuid>``,
``fco_…``) are kept as they are: they name the item, nothing looks them up.
"""

from __future__ import annotations

from typing import Any

from respd.ids import new_id
from respd.wire import items as w

_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "tool_search_call": "tsc",
    "tool_search_output": "tso",
    "additional_tools": "at",
    "compaction": "cmp",
}

Normalizable = (
    w.Message | w.FunctionCall | w.FunctionCallOutput | w.CustomToolCall | w.CustomToolCallOutput | w.Reasoning
    | w.ToolSearchCall | w.ToolSearchOutput | w.AdditionalTools | w.Compaction | w.HostedCall
)  # fmt: skip


def _parts(msg: w.Message) -> list[dict[str, Any]]:
    if isinstance(msg.content, str):
        if msg.role == "assistant":
            return [{"type": "output_text", "text": msg.content, "annotations": [], "logprobs": []}]
        return [{"type": "input_text", "text": msg.content}]
    out = []
    for part in msg.content:
        d = part.model_dump(exclude_none=True)
        if part.type == "output_text":
            d.setdefault("annotations", [])
            d["logprobs"] = d.get("logprobs") or []
        out.append(d)
    return out


def _tool_search(item: w.ToolSearchCall | w.ToolSearchOutput) -> dict[str, Any]:
    # A search item the client sends back without `execution` is one it ran: respd runs no searches.
    d: dict[str, Any] = {"call_id": item.call_id, "execution": item.execution or "client"}
    if isinstance(item, w.ToolSearchCall):
        d["arguments"] = item.arguments
    else:
        d["tools"] = [t.model_dump(exclude_none=True, by_alias=True) for t in item.tools]
    return d


def normalize(item: Normalizable) -> dict[str, Any]:
    """One validated input item (not an item_reference) in stored form."""
    if isinstance(item, w.HostedCall):  # a hosted call's item, as the client has it
        return {**item.model_dump(), "status": item.status or "completed"}
    kind = "message" if isinstance(item, w.Message) else item.type
    assert kind is not None
    d: dict[str, Any] = {"id": item.id or new_id(_ID_PREFIX[kind]), "type": kind}
    if isinstance(item, w.Compaction):  # nor has a compaction item
        d["encrypted_content"] = item.encrypted_content
        if item.created_by is not None:
            d["created_by"] = item.created_by
        return d
    if isinstance(item, w.AdditionalTools):  # the spec's AdditionalTools item has no status
        d["role"] = item.role
        d["tools"] = [t.model_dump(exclude_none=True, by_alias=True) for t in item.tools]
        return d
    if isinstance(item, w.Message):
        d["role"] = item.role
        d["content"] = _parts(item)
        if item.phase is not None:
            d["phase"] = item.phase
    elif isinstance(item, w.Reasoning):
        d["summary"] = [s.model_dump() for s in item.summary]
        if item.content is not None:
            d["content"] = [c.model_dump() for c in item.content]
        if item.encrypted_content is not None:
            d["encrypted_content"] = item.encrypted_content
    elif isinstance(item, w.ToolSearchCall | w.ToolSearchOutput):
        d.update(_tool_search(item))
    else:
        dumped = item.model_dump(exclude_none=True, exclude={"id", "type", "status"})
        d.update(dumped)
    d["status"] = item.status or "completed"
    return d


def text_message(text: str) -> dict[str, Any]:
    """A bare string ``input``: one user message."""
    return {"id": new_id("msg"), "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]}  # fmt: skip
