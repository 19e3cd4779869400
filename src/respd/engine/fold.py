"""The stored Response is the fold of its event log: ``fold(events) -> Response``.

:func:`apply` is the one step function. The run engine applies each event it emits to its own live
Response with it, so the streamed events, the stored log and the returned object cannot drift apart.
Events are never mutated: whatever :func:`apply` keeps from an event it copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Event = dict[str, Any]
Response = dict[str, Any]

LIFECYCLE = frozenset(
    {
        "response.created", "response.queued", "response.in_progress", "response.completed",
        "response.incomplete", "response.failed", "response.cancelled",
    }
)  # fmt: skip
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "response.cancelled"})


def _copy_item(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    for key in ("content", "summary"):
        if isinstance(out.get(key), list):
            out[key] = [dict(p) for p in out[key]]
    return out


def _lifecycle(state: Response | None, ev: Event) -> Response:
    snap = ev["response"]
    return {**snap, "output": [_copy_item(i) for i in snap["output"]]}


def _item_added(state: Response, ev: Event) -> Response:
    output = state["output"]
    while len(output) <= ev["output_index"]:
        output.append({})
    output[ev["output_index"]] = _copy_item(ev["item"])
    return state


def _item_done(state: Response, ev: Event) -> Response:
    state["output"][ev["output_index"]] = _copy_item(ev["item"])
    return state


def _part_list(state: Response, ev: Event, key: str) -> list[dict[str, Any]]:
    item = state["output"][ev["output_index"]]
    parts: list[dict[str, Any]] = item.setdefault(key, None) or []
    item[key] = parts
    return parts


def _set_part(key: str, index_field: str) -> Callable[[Response, Event], Response]:
    def step(state: Response, ev: Event) -> Response:
        parts = _part_list(state, ev, key)
        index = ev[index_field]
        while len(parts) <= index:
            parts.append({})
        parts[index] = dict(ev["part"])
        return state

    return step


def _append_text(key: str, index_field: str, text_field: str) -> Callable[[Response, Event], Response]:
    def step(state: Response, ev: Event) -> Response:
        part = _part_list(state, ev, key)[ev[index_field]]
        part[text_field] = part.get(text_field, "") + ev["delta"]
        return state

    return step


def _text_delta(state: Response, ev: Event) -> Response:
    part = _part_list(state, ev, "content")[ev["content_index"]]
    part["text"] = part.get("text", "") + ev["delta"]
    if ev.get("logprobs"):
        part["logprobs"] = [*part.get("logprobs", ()), *ev["logprobs"]]
    return state


def _annotation_added(state: Response, ev: Event) -> Response:
    part = _part_list(state, ev, "content")[ev["content_index"]]
    part["annotations"] = [*(part.get("annotations") or ()), ev["annotation"]]
    return state


def _append_field(field: str) -> Callable[[Response, Event], Response]:
    def step(state: Response, ev: Event) -> Response:
        item = state["output"][ev["output_index"]]
        item[field] = item.get(field, "") + ev["delta"]
        return state

    return step


def _ignore(state: Response, ev: Event) -> Response:
    return state


_STEPS: dict[str, Callable[[Response, Event], Response]] = {
    "response.output_item.added": _item_added,
    "response.output_item.done": _item_done,
    "response.content_part.added": _set_part("content", "content_index"),
    "response.content_part.done": _set_part("content", "content_index"),
    "response.output_text.delta": _text_delta,
    "response.output_text.annotation.added": _annotation_added,
    "response.refusal.delta": _append_text("content", "content_index", "refusal"),
    "response.reasoning_text.delta": _append_text("content", "content_index", "text"),
    "response.reasoning_summary_part.added": _set_part("summary", "summary_index"),
    "response.reasoning_summary_part.done": _set_part("summary", "summary_index"),
    "response.reasoning_summary_text.delta": _append_text("summary", "summary_index", "text"),
    "response.function_call_arguments.delta": _append_field("arguments"),
    "response.custom_tool_call_input.delta": _append_field("input"),
}


def apply(state: Response | None, ev: Event) -> Response:
    """The Response after ``ev``. Lifecycle events carry a full snapshot and replace the state."""
    kind = ev["type"]
    if kind in LIFECYCLE:
        return _lifecycle(state, ev)
    if state is None:
        raise ValueError(f"event log must start with a lifecycle event, not {kind}")
    return _STEPS.get(kind, _ignore)(state, ev)


def fold(events: Iterable[Event]) -> Response:
    """The Response an event log describes (so far, if the log has no terminal event yet)."""
    state: Response | None = None
    for ev in events:
        state = apply(state, ev)
    if state is None:
        raise ValueError("empty event log")
    return state
