"""Shape checks used across the suite: every Response, event and error is held to both specs and the SDK."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from openai.types.conversations import Conversation as SDKConversation
from openai.types.conversations import ConversationItem
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.spec_schemas import validate_openai, validate_openresponses

_EVENT = TypeAdapter(ResponseStreamEvent)
_CONVERSATION_ITEM = TypeAdapter(ConversationItem)

# respd's own terminal event for a run stopped before it finished (the API defines no stream event for it).
RESPD_EVENTS = {"response.cancelled"}
# Events the real API sends that the SDK knows but the spec snapshot does not (see RESPONSES.md §11).
SDK_ONLY_EVENTS = {"response.compaction.compacting"}


def _openai_view(body: dict[str, Any]) -> dict[str, Any]:
    # The real API sends `usage: null` until a response ends (Open Responses models that); the OpenAI
    # spec only lists the object, so its check sees the response without the null.
    return {k: v for k, v in body.items() if not (k == "usage" and v is None)}


# Open Responses has no custom, namespace or tool search tools, no client-executed built-ins, nor hosted
# ones (nor their calls); its check sees the rest.
_NOT_IN_OPENRESPONSES = {"custom", "namespace", "custom_tool_call", "tool_search", "tool_search_call",
                         "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
                         "web_search_call", "file_search", "file_search_call", "computer_use_preview", "computer_call",
                         "local_shell", "local_shell_call", "shell", "shell_call", "apply_patch",
                         "apply_patch_call", "mcp", "mcp_list_tools", "mcp_call", "mcp_approval_request", "code_interpreter",
                         "code_interpreter_call"}  # fmt: skip


def _openresponses_text(text: dict[str, Any]) -> dict[str, Any]:
    # Open Responses' JsonSchemaResponseFormat types `schema` as null only and requires a nullable
    # `description` that the OpenAI spec types as a string; no echo of a json_schema format meets both, so
    # its check sees that format with an empty schema and description (the OpenAI check sees it as it is).
    fmt = text["format"]
    if fmt["type"] != "json_schema":
        return text
    return {**text, "format": {**fmt, "schema": None, "description": fmt.get("description"),
                               "strict": bool(fmt.get("strict"))}}  # fmt: skip


def _openresponses_item(item: dict[str, Any]) -> dict[str, Any]:
    # Open Responses' only annotation is url_citation: its check sees a message without the file citations
    # (file_citation, container_file_citation) of hosted tools it lacks.
    if item["type"] != "message" or not isinstance(item.get("content"), list):
        return item
    content = [{**part, "annotations": [a for a in part["annotations"] if a.get("type") == "url_citation"]}
               if isinstance(part.get("annotations"), list) else part for part in item["content"]]  # fmt: skip
    return {**item, "content": content}


def _openresponses_view(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "text": _openresponses_text(body["text"]),
        "tools": [t for t in body["tools"] if t["type"] not in _NOT_IN_OPENRESPONSES],
        "output": [_openresponses_item(i) for i in body["output"] if i["type"] not in _NOT_IN_OPENRESPONSES],
        "tool_choice": "auto"
        if isinstance(body["tool_choice"], dict) and body["tool_choice"]["type"] in _NOT_IN_OPENRESPONSES
        else body["tool_choice"],
    }


def check_response(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` is a Response under the OpenAI spec, Open Responses and the SDK's model."""
    validate_openai("Response", _openai_view(body))
    validate_openresponses("ResponseResource", _openresponses_view(body))
    SDKResponse.model_validate(body)
    return body


def check_event(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` is a stream event of the OpenAI spec (and its snapshot a valid Response)."""
    if event["type"] in RESPD_EVENTS:
        check_response(event["response"])
        return event
    if event["type"] in SDK_ONLY_EVENTS:
        _EVENT.validate_python(event)
        return event
    validate_openai(
        "ResponseStreamEvent", {**event, "response": _openai_view(event["response"])} if "response" in event else event
    )
    _EVENT.validate_python(event)
    if "response" in event:
        check_response(event["response"])
    return event


def check_conversation(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` is a ConversationResource under the OpenAI spec and the SDK's model."""
    validate_openai("ConversationResource", body)
    assert body["object"] == "conversation" and isinstance(body["metadata"], dict), body
    SDKConversation.model_validate(body)
    return body


def check_conversation_item(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` is a ConversationItem (an item with its id) under the OpenAI spec and the SDK's model."""
    validate_openai("ConversationItem", item)
    assert item["id"], item
    _CONVERSATION_ITEM.validate_python(item)
    return item


def check_conversation_item_list(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` is a ConversationItemList; its first_id/last_id name its first and last items."""
    for item in body["data"]:
        check_conversation_item(item)
    validate_openai("ConversationItemList", body)
    if body["data"]:
        assert (body["first_id"], body["last_id"]) == (body["data"][0]["id"], body["data"][-1]["id"]), body
    else:  # the spec types the ids as strings; an empty page has none to give
        assert body == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}, body
    return body


def check_error(resp: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An error answer: the status, the envelope with all four keys, and the offending ``param``."""
    assert resp.status_code == status, f"{resp.status_code} != {status}: {resp.text}"
    body = resp.json()
    validate_openai("ErrorResponse", body)
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["message"], err
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def sse_events(text: str) -> list[dict[str, Any]]:
    """Parse an SSE body; every frame must be ``event: <type>`` + ``data: <json with that type>``."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        ev = orjson.loads(lines[1][len("data: ") :])
        assert ev["type"] == lines[0][len("event: ") :]
        events.append(ev)
    return events


def create_response(base_url: str, body: dict[str, Any], stream: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``POST /v1/responses`` (streamed when ``stream``): the final Response and the stream's events, all held
    to the specs; the answer must be a 200."""
    r = httpx.post(base_url + "/v1/responses", json={**body, "stream": stream}, timeout=30)
    assert r.status_code == 200, r.text
    if not stream:
        return check_response(r.json()), []
    events = [check_event(e) for e in sse_events(r.text)]
    return events[-1]["response"], events
