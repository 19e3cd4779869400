"""The spec validators themselves: known-good objects pass both specs, broken ones fail readably."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests import spec_schemas
from tests.spec_schemas import (
    openai_event_types,
    openresponses_event_types,
    validate_openai,
    validate_openresponses,
    validate_openresponses_event,
)

# --- known-good objects, valid under both specs ------------------------------------------------------------

MESSAGE: dict[str, Any] = {
    "type": "message",
    "id": "msg_1",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}],
}

FUNCTION_CALL: dict[str, Any] = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "get_weather",
    "arguments": '{"city": "Paris"}',
    "status": "completed",
}

REASONING: dict[str, Any] = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [],
    "content": [{"type": "reasoning_text", "text": "Thinking..."}],
    "status": "completed",
}

FUNCTION_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": None,  # Open Responses requires the key (any value); OpenAI allows string or null
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}

RESPONSE: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1_700_000_000,
    "completed_at": 1_700_000_001,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "model": "test-model",
    "previous_response_id": None,
    "output": [MESSAGE],
    "tools": [],
    "tool_choice": "auto",
    "truncation": "disabled",
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "top_logprobs": 0,
    "temperature": 1.0,
    "reasoning": None,
    "usage": {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 7,
    },
    "max_output_tokens": None,
    "max_tool_calls": None,
    "store": True,
    "background": False,
    "service_tier": "default",
    "metadata": {},
    "safety_identifier": None,
    "prompt_cache_key": None,
}

OPENAI_REQUIRED = [
    "id", "object", "created_at", "error", "incomplete_details", "instructions", "model", "tools", "output",
    "parallel_tool_calls", "metadata", "tool_choice", "temperature", "top_p",
]  # fmt: skip
OPENRESPONSES_REQUIRED = [
    "id", "object", "created_at", "completed_at", "status", "incomplete_details", "model", "previous_response_id",
    "instructions", "output", "error", "tools", "tool_choice", "truncation", "parallel_tool_calls", "text", "top_p",
    "presence_penalty", "frequency_penalty", "top_logprobs", "temperature", "reasoning", "usage",
    "max_output_tokens", "max_tool_calls", "store", "background", "service_tier", "metadata", "safety_identifier",
    "prompt_cache_key",
]  # fmt: skip


def response(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(RESPONSE)
    body.update(copy.deepcopy(changes))
    return body


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def both(body: dict[str, Any]) -> None:
    validate_openai("Response", body)
    validate_openresponses("ResponseResource", body)


# --- Response ------------------------------------------------------------------------------------------------


def test_minimal_response_is_valid_under_both_specs() -> None:
    both(RESPONSE)


def test_required_keys_match_the_specs() -> None:
    """The lists above (and in the docs) are what the specs say, so a spec update shows up here."""
    doc = spec_schemas.openai_spec()
    parts = [spec_schemas._resolve_local(doc, part) for part in spec_schemas.schemas("openai")["Response"]["allOf"]]
    required = {key for part in parts for key in part.get("required", [])}
    assert required == set(OPENAI_REQUIRED)
    assert spec_schemas.schemas("openresponses")["ResponseResource"]["required"] == OPENRESPONSES_REQUIRED


@pytest.mark.parametrize("key", OPENAI_REQUIRED)
def test_openai_required_key_missing_fails(key: str) -> None:
    with pytest.raises(AssertionError, match=f"'{key}' is a required property"):
        validate_openai("Response", without(RESPONSE, key))


@pytest.mark.parametrize("key", OPENRESPONSES_REQUIRED)
def test_openresponses_required_key_missing_fails(key: str) -> None:
    with pytest.raises(AssertionError, match=f"'{key}' is a required property"):
        validate_openresponses("ResponseResource", without(RESPONSE, key))


def test_response_with_tools_function_call_and_reasoning_is_valid() -> None:
    both(response(
        tools=[FUNCTION_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        output=[REASONING, FUNCTION_CALL, MESSAGE],
        reasoning={"effort": "low", "summary": None},
        metadata={"k": "v"},
        max_output_tokens=100,
        previous_response_id="resp_0",
    ))  # fmt: skip


def test_in_progress_and_failed_and_incomplete_snapshots_are_valid() -> None:
    both(response(status="queued", completed_at=None, output=[]))
    both(response(status="in_progress", completed_at=None, output=[]))
    both(response(status="failed", completed_at=None, error={"code": "server_error", "message": "upstream died"}))
    both(response(status="incomplete", completed_at=None, incomplete_details={"reason": "max_output_tokens"}))


def check(spec: str, body: dict[str, Any]) -> None:
    if spec == "openai":
        validate_openai("Response", body)
    else:
        validate_openresponses("ResponseResource", body)


# (change to the valid RESPONSE, the spec that rejects it, where it says, whether the other spec accepts it)
STRICTER: list[tuple[dict[str, Any], str, str, bool]] = [
    # usage: required-nullable in Open Responses, but not nullable in OpenAI, so always send an object
    ({"usage": None}, "openai", "$.usage", True),
    # OpenAI requires input_tokens_details.cache_write_tokens (Open Responses does not know it)
    ({"usage": {**RESPONSE["usage"], "input_tokens_details": {"cached_tokens": 0}}}, "openai",
     "$.usage.input_tokens_details", True),
    # error.code must be one of OpenAI's ResponseErrorCode values (Open Responses: any string)
    ({"error": {"code": "upstream_error", "message": "x"}}, "openai", "$.error.code", True),
    ({"tools": [without(FUNCTION_TOOL, "strict")]}, "openai", "$.tools[0]", False),
    # nullable (or optional) in OpenAI, but not in Open Responses
    ({"truncation": None}, "openresponses", "$.truncation", True),
    ({"text": {}}, "openresponses", "$.text", True),  # Open Responses requires text.format
    ({"text": None}, "openresponses", "$.text", False),
    ({"service_tier": None}, "openresponses", "$.service_tier", True),
    ({"background": None}, "openresponses", "$.background", True),
    ({"temperature": None}, "openresponses", "$.temperature", True),
    ({"top_p": None}, "openresponses", "$.top_p", True),
    ({"top_logprobs": None}, "openresponses", "$.top_logprobs", True),
    ({"reasoning": {"effort": "low"}}, "openresponses", "$.reasoning", True),  # summary: required, nullable
    ({"reasoning": {"effort": "minimal", "summary": None}}, "openresponses", "$.reasoning.effort", True),
    ({"tools": [without(FUNCTION_TOOL, "description")]}, "openresponses", "$.tools[0]", True),
    ({"created_at": 1.5}, "openresponses", "$.created_at", True),  # OpenAI: number; Open Responses: integer
    ({"output": [without(FUNCTION_CALL, "id")]}, "openresponses", "$.output[0]", True),
    ({"output": [without(FUNCTION_CALL, "status")]}, "openresponses", "$.output[0]", True),
    ({"output": [{**REASONING, "encrypted_content": None}]}, "openresponses", "$.output[0].encrypted_content",
     True),
    ({"output": [{**MESSAGE, "phase": None}]}, "openresponses", "$.output[0].phase", True),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "spec", "where", "other_accepts"), STRICTER)
def test_where_one_spec_is_stricter(changes: dict[str, Any], spec: str, where: str, other_accepts: bool) -> None:
    body = response(**changes)
    with pytest.raises(AssertionError) as info:
        check(spec, body)
    assert f"invalid at {where}:" in str(info.value)
    other = "openresponses" if spec == "openai" else "openai"
    if other_accepts:
        check(other, body)
    else:
        with pytest.raises(AssertionError):
            check(other, body)


def test_json_schema_text_format_cannot_satisfy_both() -> None:
    """A spec bug in Open Responses: JsonSchemaResponseFormat.schema allows only null (OpenAI: an object), and
    it requires ``description`` (string or null; OpenAI: string when present). No echo of a json_schema format
    passes both; json_object and text formats do."""
    fmt = {"type": "json_schema", "name": "answer", "description": "d", "schema": {"type": "object"}, "strict": True}
    validate_openai("Response", response(text={"format": fmt}))
    with pytest.raises(AssertionError, match=r"invalid at \$\.text\.format\.schema: .* is not valid under any"):
        validate_openresponses("ResponseResource", response(text={"format": fmt}))
    validate_openresponses("ResponseResource", response(text={"format": {**fmt, "schema": None}}))
    with pytest.raises(AssertionError, match=r"invalid at \$\.text\.format\.schema: None is not of type 'object'"):
        validate_openai("Response", response(text={"format": {**fmt, "schema": None}}))
    both(response(text={"format": {"type": "json_object"}}))


def test_output_text_part_needs_logprobs_for_openai_only() -> None:
    part = {"type": "output_text", "text": "Hello!", "annotations": []}
    body = response(output=[{**MESSAGE, "content": [part]}])
    validate_openresponses("ResponseResource", body)
    with pytest.raises(AssertionError) as info:
        validate_openai("Response", body)
    message = str(info.value)
    assert "invalid at $.output[0].content[0]: 'logprobs' is a required property" in message
    assert "variant: OutputMessage > OutputTextContent" in message


# --- stream events -------------------------------------------------------------------------------------------


def events() -> list[dict[str, Any]]:
    """One of each event respd emits, valid under both specs (except where noted in the tests)."""
    text = MESSAGE["content"][0]
    empty_part = {**text, "text": ""}
    loc = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    snap = response(status="in_progress", completed_at=None, output=[])
    seq = iter(range(100))
    return [
        {"type": "response.queued", "sequence_number": next(seq), "response": {**snap, "status": "queued"}},
        {"type": "response.created", "sequence_number": next(seq), "response": snap},
        {"type": "response.in_progress", "sequence_number": next(seq), "response": snap},
        {"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
         "item": {**MESSAGE, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "sequence_number": next(seq), **loc, "part": empty_part},
        {"type": "response.output_text.delta", "sequence_number": next(seq), **loc, "delta": "Hello", "logprobs": []},
        {"type": "response.output_text.done", "sequence_number": next(seq), **loc, "text": "Hello!", "logprobs": []},
        {"type": "response.content_part.done", "sequence_number": next(seq), **loc, "part": text},
        {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": MESSAGE},
        {"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 1,
         "item": {**FUNCTION_CALL, "arguments": "", "status": "in_progress"}},
        {"type": "response.function_call_arguments.delta", "sequence_number": next(seq), "item_id": "fc_1",
         "output_index": 1, "delta": '{"city"'},
        {"type": "response.function_call_arguments.done", "sequence_number": next(seq), "item_id": "fc_1",
         "output_index": 1, "name": "get_weather", "arguments": FUNCTION_CALL["arguments"]},
        {"type": "response.completed", "sequence_number": next(seq), "response": RESPONSE},
        {"type": "response.failed", "sequence_number": next(seq),
         "response": response(status="failed", completed_at=None, error={"code": "server_error", "message": "x"})},
        {"type": "response.incomplete", "sequence_number": next(seq),
         "response": response(status="incomplete", incomplete_details={"reason": "max_output_tokens"})},
        # OpenAI's error event is flat; Open Responses nests the payload under "error": send both
        {"type": "error", "sequence_number": next(seq), "code": "server_error", "message": "x", "param": None,
         "error": {"type": "server_error", "code": "server_error", "message": "x", "param": None}},
    ]  # fmt: skip


@pytest.mark.parametrize("event", events(), ids=lambda e: e["type"])
def test_events_are_valid_under_both_specs(event: dict[str, Any]) -> None:
    validate_openai("ResponseStreamEvent", event)
    validate_openresponses_event(event)
    assert event["type"] in openai_event_types()
    assert event["type"] in openresponses_event_types()


def test_reasoning_text_events_are_openai_only() -> None:
    """OpenAI names them response.reasoning_text.*; Open Responses response.reasoning.* (same fields)."""
    loc = {"item_id": "rs_1", "output_index": 0, "content_index": 0}
    delta = {"type": "response.reasoning_text.delta", "sequence_number": 1, **loc, "delta": "Hm"}
    done = {"type": "response.reasoning_text.done", "sequence_number": 2, **loc, "text": "Hm."}
    for event in (delta, done):
        validate_openai("ResponseStreamEvent", event)
        with pytest.raises(AssertionError, match="no variant is of type"):
            validate_openresponses_event(event)
    validate_openresponses_event({**delta, "type": "response.reasoning.delta"})
    validate_openresponses_event({**done, "type": "response.reasoning.done"})
    part = {"type": "reasoning_text", "text": ""}
    added = {"type": "response.content_part.added", "sequence_number": 0, **loc, "part": part}
    validate_openai("ResponseStreamEvent", added)
    validate_openresponses_event(added)


def test_output_text_delta_event() -> None:
    event = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
             "delta": "Hel", "sequence_number": 4, "logprobs": []}  # fmt: skip
    validate_openai("ResponseStreamEvent", event)
    with pytest.raises(AssertionError) as info:
        validate_openai("ResponseStreamEvent", without(event, "logprobs"))
    assert "invalid at $: 'logprobs' is a required property" in str(info.value)
    assert "variant: ResponseTextDeltaEvent" in str(info.value)
    validate_openresponses_event(without(event, "logprobs"))  # optional there


def test_unknown_event_type_fails() -> None:
    event = {"type": "response.cancelled", "sequence_number": 0, "response": RESPONSE}
    with pytest.raises(AssertionError, match=r"no variant is of type 'response\.cancelled'"):
        validate_openai("ResponseStreamEvent", event)


def test_event_types() -> None:
    types = openai_event_types()
    assert {
        "response.created", "response.in_progress", "response.completed", "response.failed", "response.incomplete",
        "response.queued", "response.output_item.added", "response.output_item.done", "response.content_part.added",
        "response.content_part.done", "response.output_text.delta", "response.output_text.done",
        "response.reasoning_text.delta", "response.reasoning_text.done", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "error",
    } <= types  # fmt: skip
    assert "response.cancelled" not in types
    assert all(isinstance(t, str) for t in types)
    types.add("mutating the copy is harmless")
    assert "mutating the copy is harmless" not in openai_event_types()
    assert "response.reasoning.delta" in openresponses_event_types()


# --- errors and lists ----------------------------------------------------------------------------------------


def test_error_response() -> None:
    body = {"error": {"message": "x", "type": "invalid_request_error", "param": None, "code": None}}
    validate_openai("ErrorResponse", body)
    with pytest.raises(AssertionError, match=r"invalid at \$\.error: 'param' is a required property"):
        validate_openai("ErrorResponse", {"error": without(body["error"], "param")})


def test_response_item_list() -> None:
    user = {"type": "message", "id": "msg_0", "status": "completed", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}  # fmt: skip
    page = {"object": "list", "data": [user, MESSAGE, FUNCTION_CALL], "has_more": False,
            "first_id": "msg_0", "last_id": "fc_1"}  # fmt: skip
    validate_openai("ResponseItemList", page)
    # first_id/last_id are required non-null strings, even for an empty page
    with pytest.raises(AssertionError, match=r"invalid at \$\.(first|last)_id: None is not of type 'string'"):
        validate_openai("ResponseItemList", {**page, "data": [], "first_id": None, "last_id": None})


# --- the machinery -------------------------------------------------------------------------------------------


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="NoSuchSchema"):
        validate_openai("NoSuchSchema", {})


def test_format_is_not_asserted() -> None:
    citation = {"type": "url_citation", "url": "not a uri", "start_index": 0, "end_index": 1, "title": "t"}
    validate_openai("UrlCitationBody", citation)


def test_recursive_compound_filter() -> None:
    leaf = {"type": "eq", "key": "k", "value": "v"}
    validate_openai("CompoundFilter", {"type": "and", "filters": [leaf, {"type": "or", "filters": [leaf]}]})
    with pytest.raises(AssertionError):
        validate_openai("CompoundFilter", {"type": "and", "filters": [{"type": "or", "filters": [{"nope": 1}]}]})


@pytest.mark.parametrize("spec", ["openai", "openresponses"])
def test_every_ref_resolves(spec: str) -> None:
    load, uri = spec_schemas._SPECS[spec]
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.add(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load())
    assert refs
    resolver = spec_schemas._registry(spec).resolver(base_uri=uri)
    for ref in sorted(refs):
        assert ref.startswith("#/"), ref
        assert resolver.lookup(ref).contents is not None, ref


TINY_SPEC = """\
openapi: 3.1.0
info: {title: tiny, version: "1", x-released: 2024-10-01}
components:
  schemas:
    Thing:
      $recursiveAnchor: true
      type: object
      required: [name]
      properties:
        name: {type: string}
        children: {type: array, items: {oneOf: [{type: string}, {$recursiveRef: "#"}]}}
"""


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir, cache = tmp_path / "spec", tmp_path / "cache"
    spec_dir.mkdir()
    (spec_dir / spec_schemas.OPENAI_SPEC).write_text(TINY_SPEC)
    monkeypatch.setenv("RESPD_SPEC_DIR", str(spec_dir))
    monkeypatch.setenv("RESPD_TEST_CACHE_DIR", str(cache))

    fresh = spec_schemas._load_document(spec_schemas.OPENAI_SPEC)
    assert fresh["info"]["x-released"] == "2024-10-01"  # a string, not a date
    items = fresh["components"]["schemas"]["Thing"]["properties"]["children"]["items"]
    assert items["oneOf"][1] == {"$ref": "#/components/schemas/Thing"}
    (cached,) = cache.iterdir()
    assert json.loads(cached.read_bytes()) == fresh
    assert spec_schemas._load_document(spec_schemas.OPENAI_SPEC) == fresh  # warm

    cached.write_text("{truncated")  # a corrupt cache is re-parsed and rewritten
    assert spec_schemas._load_document(spec_schemas.OPENAI_SPEC) == fresh
    assert json.loads(cached.read_bytes()) == fresh

    (spec_dir / spec_schemas.OPENAI_SPEC).write_text(TINY_SPEC.replace("[name]", "[]"))  # new bytes, new entry
    assert spec_schemas._load_document(spec_schemas.OPENAI_SPEC)["components"]["schemas"]["Thing"]["required"] == []
    assert len(list(cache.iterdir())) == 2


def test_unwritable_cache_is_only_slower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / spec_schemas.OPENAI_SPEC).write_text(TINY_SPEC)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RESPD_SPEC_DIR", str(spec_dir))
    monkeypatch.setenv("RESPD_TEST_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert "Thing" in spec_schemas._load_document(spec_schemas.OPENAI_SPEC)["components"]["schemas"]


def test_missing_spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPD_SPEC_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="RESPD_SPEC_DIR"):
        spec_schemas._load_document(spec_schemas.OPENRESPONSES_SPEC)


def test_warm_load_is_fast() -> None:
    spec_schemas.openai_spec()  # make sure the cache file exists
    if not any(spec_schemas.cache_dir().glob("openai-openapi-*.json")):
        pytest.skip(f"no spec cache in {spec_schemas.cache_dir()} (not writable?)")
    start = time.perf_counter()
    spec_schemas._load_document(spec_schemas.OPENAI_SPEC)
    assert time.perf_counter() - start < 1.0
