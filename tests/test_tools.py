"""Function, custom and namespace tools, tool_choice, built-in tools, structured outputs, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.checks import check_error, check_event, check_response, sse_events
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer

WEATHER = {"type": "function", "name": "weather", "description": "Weather by city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM.",
         "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'}}  # fmt: skip
AGENTS = {"type": "namespace", "name": "multi_agent", "description": "Sub-agents.",
          "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}]}  # fmt: skip


def post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json=body, timeout=20)


def test_function_call_round_trip_with_previous_response(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(tool_calls=[{"id": "call_w", "name": "weather", "arguments": '{"city":"Oslo"}'}]),
                Reply(text="It rains in Oslo."))  # fmt: skip
    first = client.responses.create(model="test-model", input="Weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call" and call.call_id == "call_w"
    second = client.responses.create(model="test-model", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                     input=[{"type": "function_call_output", "call_id": "call_w", "output": "rain"}])  # fmt: skip
    assert second.output_text == "It rains in Oslo."
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_w", "content": "rain"}


def test_function_call_round_trip_as_full_history_without_store(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(tool_calls=[{"id": "call_s", "name": "weather", "arguments": '{"city":"Rome"}'}]), Reply(text="Sunny."))
    first = client.responses.create(model="test-model", input="Rome?", tools=[WEATHER], store=False)  # type: ignore[list-item]
    history: list[Any] = [{"role": "user", "content": "Rome?"}]
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": "call_s", "output": "sun"})
    second = client.responses.create(model="test-model", input=history, tools=[WEATHER], store=False)  # type: ignore[list-item]
    assert second.output_text == "Sunny."


def test_output_for_an_unknown_call_is_a_400(server: RespdServer, fake: FakeUpstream) -> None:
    r = post(server, {"model": "test-model", "input": [
        {"role": "user", "content": "x"}, {"type": "function_call_output", "call_id": "call_nope", "output": "?"}]})  # fmt: skip
    check_error(r, 400, param="input[1].call_id")
    assert fake.requests == []


@pytest.mark.parametrize(
    ("choice", "upstream_choice", "offered"),
    [
        ("none", "none", ["weather", "apply_patch"]),
        ("required", "required", ["weather", "apply_patch"]),
        ({"type": "function", "name": "weather"}, {"type": "function", "function": {"name": "weather"}}, ["weather", "apply_patch"]),
        ({"type": "custom", "name": "apply_patch"}, {"type": "function", "function": {"name": "apply_patch"}}, ["weather", "apply_patch"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "weather"}]}, "required", ["weather"]),
    ],
)
def test_tool_choice_forms(server: RespdServer, fake: FakeUpstream, choice: Any, upstream_choice: Any, offered: list[str]) -> None:
    body = check_response(post(server, {"model": "test-model", "input": "x", "tools": [WEATHER, PATCH], "tool_choice": choice}).json())
    sent = fake.requests[-1]["body"]
    assert sent["tool_choice"] == upstream_choice
    assert [t["function"]["name"] for t in sent["tools"]] == offered
    assert body["tool_choice"] == choice


def test_parallel_tool_calls_false_keeps_one_call(client: openai.OpenAI, fake: FakeUpstream) -> None:
    calls = [{"id": "c1", "name": "weather", "arguments": '{"city":"A"}'}, {"id": "c2", "name": "weather", "arguments": '{"city":"B"}'}]
    fake.script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    one = client.responses.create(model="test-model", input="x", tools=[WEATHER], parallel_tool_calls=False)  # type: ignore[list-item]
    assert fake.requests[-1]["body"]["parallel_tool_calls"] is False
    assert [c.call_id for c in one.output] == ["c1"]  # type: ignore[union-attr]
    both = client.responses.create(model="test-model", input="x", tools=[WEATHER])  # type: ignore[list-item]
    assert [c.call_id for c in both.output] == ["c1", "c2"]  # type: ignore[union-attr]
    fake.script(Reply(tool_calls=[*calls, {"id": "c3", "name": "weather", "arguments": "{}"}]))
    capped = client.responses.create(model="test-model", input="x", tools=[WEATHER], max_tool_calls=2)  # type: ignore[list-item]
    assert [c.call_id for c in capped.output] == ["c1", "c2"] and capped.max_tool_calls == 2  # type: ignore[union-attr]


PATCH_TEXT = '*** Begin Patch\n*** Add File: hello.txt\n+Hello "world" \\ ✓\n*** End Patch'


@pytest.mark.parametrize("stream", [False, True])
def test_custom_tool_call(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(Reply(tool_calls=[{"id": "call_p", "name": "apply_patch", "arguments": json.dumps({"input": PATCH_TEXT})}]))
    body = {"model": "test-model", "input": "add hello.txt", "tools": [PATCH], "stream": stream}
    r = post(server, body)
    offered = fake.requests[-1]["body"]["tools"][0]["function"]
    assert offered["name"] == "apply_patch" and offered["parameters"]["required"] == ["input"]
    assert "lark" in offered["parameters"]["properties"]["input"]["description"]
    if stream:
        events = [check_event(e) for e in sse_events(r.text)]
        deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
        assert len(deltas) > 1 and "".join(deltas) == PATCH_TEXT
        done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
        assert done["input"] == PATCH_TEXT
        response = events[-1]["response"]
    else:
        response = check_response(r.json())
    (call,) = response["output"]
    assert call["type"] == "custom_tool_call" and call["id"].startswith("ctc_")
    assert (call["call_id"], call["name"], call["input"]) == ("call_p", "apply_patch", PATCH_TEXT)


def test_custom_tool_output_goes_back_as_tool_message(client: openai.OpenAI, fake: FakeUpstream) -> None:
    client.responses.create(model="test-model", tools=[PATCH], input=[  # type: ignore[list-item]
        {"role": "user", "content": "patch"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH_TEXT},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
    ])  # fmt: skip
    msgs = fake.requests[-1]["body"]["messages"]
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH_TEXT}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_p", "content": "Done!"}


def test_namespace_tools_are_flattened_and_restored(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(tool_calls=[{"id": "call_n", "name": "multi_agent__spawn", "arguments": "{}"}]))
    body = check_response(post(server, {"model": "test-model", "input": "x", "tools": [AGENTS]}).json())
    assert fake.requests[-1]["body"]["tools"][0]["function"]["name"] == "multi_agent__spawn"
    call = body["output"][0]
    assert (call["type"], call["namespace"], call["name"]) == ("function_call", "multi_agent", "spawn")
    assert body["tools"][0]["type"] == "namespace"
    post(server, {"model": "test-model", "tools": [AGENTS], "input": [
        {"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "call_n", "namespace": "multi_agent", "name": "spawn", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_n", "output": "ok"}]})  # fmt: skip
    assert fake.requests[-1]["body"]["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent__spawn"


BUILTINS = [{"type": "web_search", "external_web_access": True}, {"type": "code_interpreter", "container": {"type": "auto"}}]


def test_builtin_tools_are_left_out_and_named(server: RespdServer, fake: FakeUpstream) -> None:
    # web_search has no provider configured here; code_interpreter runs in the sandbox (docs/CODE_INTERPRETER.md)
    r = post(server, {"model": "test-model", "input": "x", "tools": [WEATHER, *BUILTINS]})
    assert r.status_code == 200 and r.headers["respd-omitted-tools"] == "web_search"
    assert [t["function"]["name"] for t in fake.requests[-1]["body"]["tools"]] == ["weather", "python"]
    check_error(post(server, {"model": "test-model", "input": "x", "tools": BUILTINS,
                              "tool_choice": {"type": "web_search_preview"}}), 400, param="tool_choice")  # fmt: skip


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-strict")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_STRICT_TOOLS": "true"})
    yield srv
    srv.stop()


def test_strict_tools_refuses_builtin_tools(strict_server: RespdServer, fake: FakeUpstream) -> None:
    check_error(post(strict_server, {"model": "test-model", "input": "x", "tools": [WEATHER, *BUILTINS]}), 400,
                param="tools[1].type", code="unsupported_parameter")  # fmt: skip
    assert fake.requests == []


class Person(BaseModel):
    name: str
    age: int


def test_structured_output_with_parse(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text='{"name": "Ada", "age": 36}'))
    parsed = client.responses.parse(model="test-model", input="who?", text_format=Person)
    assert parsed.output_parsed == Person(name="Ada", age=36)
    fmt = fake.requests[-1]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["age"] == {"title": "Age", "type": "integer"}


def test_json_object_and_verbosity(server: RespdServer, fake: FakeUpstream) -> None:
    body = check_response(post(server, {"model": "test-model", "input": "json please",
                                        "text": {"format": {"type": "json_object"}, "verbosity": "low"}}).json())  # fmt: skip
    assert fake.requests[-1]["body"]["response_format"] == {"type": "json_object"}
    assert body["text"] == {"format": {"type": "json_object"}, "verbosity": "low"}


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_becomes_a_refusal_part(server: RespdServer, fake: FakeUpstream, stream: bool) -> None:
    fake.script(Reply(refusal="I can't help with that."))
    r = post(server, {"model": "test-model", "input": "bad", "stream": stream})
    if stream:
        events = [check_event(e) for e in sse_events(r.text)]
        types = [e["type"] for e in events]
        assert "response.refusal.delta" in types and "response.refusal.done" in types
        response = events[-1]["response"]
    else:
        response = check_response(r.json())
    assert response["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


TOOL_SEARCH_CLIENT = {"type": "tool_search", "execution": "client", "description": "Find deferred tools.",
                      "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}  # fmt: skip


def test_server_tool_search_is_a_builtin_but_client_tool_search_is_offered(server: RespdServer, fake: FakeUpstream) -> None:
    r = post(server, {"model": "test-model", "input": "x", "tools": [{"type": "tool_search"}, TOOL_SEARCH_CLIENT]})
    assert r.status_code == 200 and r.headers["respd-omitted-tools"] == "tool_search"
    (offered,) = fake.requests[-1]["body"]["tools"]
    assert offered["function"]["name"] == "tool_search" and offered["function"]["parameters"] == TOOL_SEARCH_CLIENT["parameters"]
    assert check_response(r.json())["tools"] == [TOOL_SEARCH_CLIENT]


def test_strict_tools_refuses_server_tool_search_and_builtins_in_input_items(strict_server: RespdServer, fake: FakeUpstream) -> None:
    ok = post(strict_server, {"model": "test-model", "input": "x", "tools": [TOOL_SEARCH_CLIENT]})
    assert ok.status_code == 200 and "respd-omitted-tools" not in ok.headers
    check_error(post(strict_server, {"model": "test-model", "input": "x", "tools": [{"type": "tool_search", "execution": "server"}]}),
                400, param="tools[0].type", code="unsupported_parameter")  # fmt: skip
    extra = {"type": "additional_tools", "role": "developer", "tools": [WEATHER, *BUILTINS]}
    check_error(post(strict_server, {"model": "test-model", "input": [extra, {"role": "user", "content": "x"}]}),
                400, param="input[0].tools[1].type", code="unsupported_parameter")  # fmt: skip
    assert len(fake.requests) == 1
