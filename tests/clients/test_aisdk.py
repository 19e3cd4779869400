"""The Vercel AI SDK (``ai`` + ``@ai-sdk/openai``, its Responses provider) run unchanged against respd.

Each test runs ``tests/js/aisdk.mjs`` with node; the model's answers come from the scripted fake upstream,
the tool is executed by the SDK itself, and the wire recorder shows what the SDK sent and respd answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.conftest import API_KEY, run_node
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.wire_recorder import WireRecorder

MODEL = "test-model"
WEATHER = "It is sunny and 22C in Paris."


def aisdk(wire: WireRecorder, scenario: str, **opts: Any) -> Any:
    return run_node(
        "aisdk.mjs", scenario, json.dumps({"baseURL": wire.url + "/v1", "apiKey": API_KEY, "model": MODEL, **opts})
    )


def get(server: RespdServer, path: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)


def test_generate_text(node_modules: Path, wire: WireRecorder, fake: FakeUpstream, respd: RespdServer) -> None:
    fake.script(Reply(text="Hello from respd."))
    out = aisdk(wire, "generate")
    assert out["text"] == "Hello from respd." and out["finishReason"] == "stop"
    assert out["usage"]["outputTokens"] > 0 and out["warnings"] == []
    (create,) = wire.creates()
    assert "stream" not in create.body and not create.streamed
    assert create.body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}]
    response = create.response()
    assert out["steps"][0]["responseId"] == response["id"]
    stored = get(respd, f"/v1/responses/{response['id']}").json()
    assert stored["output"][0]["content"][0]["text"] == "Hello from respd."


def test_stream_text(node_modules: Path, wire: WireRecorder, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Hello there, streamed."))
    out = aisdk(wire, "stream")
    assert out["chunks"] == ["Hello", " there,", " streamed."]
    assert out["text"] == "Hello there, streamed." and out["finishReason"] == "stop"
    (create,) = wire.creates()
    assert create.body["stream"] is True and create.streamed
    deltas = [e["delta"] for e in create.events() if e["type"] == "response.output_text.delta"]
    assert deltas == out["chunks"]
    assert out["steps"][0]["responseId"] == create.response()["id"]


SKIPPED_REASONING = (
    "Reasoning parts without encrypted content are not supported when store is false. Skipping reasoning parts."
)


# (store, stream, reasoning): `reasoning` tells the SDK the model reasons (it cannot tell from "test-model").
@pytest.mark.parametrize(
    ("store", "stream", "reasoning"),
    [(True, True, False), (True, False, False), (False, True, True), (False, False, True), (False, False, False)],
    ids=["store-streamText", "store-generateText", "no-store-streamText", "no-store-generateText",
         "no-store-non-reasoning-model"],
)  # fmt: skip
def test_tool_call_round_trip(
    node_modules: Path,
    wire: WireRecorder,
    fake: FakeUpstream,
    respd: RespdServer,
    store: bool,
    stream: bool,
    reasoning: bool,
) -> None:
    call = {"id": "call_paris", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    thought = "The user wants the weather; I will call get_weather."
    fake.script(Reply(reasoning=thought, tool_calls=[call]),
                Reply(text="Sunny, 22C in Paris."))  # fmt: skip
    out = aisdk(wire, "tools", store=store, stream=stream, reasoning=reasoning)

    # The SDK ran the tool the model called, sent its result back, and got the final answer.
    assert out["executed"] == ["Paris"]
    first, second = out["steps"]
    assert first["toolCalls"] == [{"id": "call_paris", "name": "get_weather", "input": {"city": "Paris"}}]
    assert first["toolResults"] == [{"id": "call_paris", "output": WEATHER}]
    assert second["text"] == out["text"] == "Sunny, 22C in Paris." and out["finishReason"] == "stop"
    # A model it takes for a non-reasoning one gets no encrypted_content, so with store off it drops reasoning.
    dropped = not store and not reasoning
    assert out["warnings"] == ([{"type": "other", "message": SKIPPED_REASONING}] if dropped else [])

    step1, step2 = wire.creates()
    assert all(e.streamed is stream for e in (step1, step2))
    answer1 = step1.response()
    thinking, fc = answer1["output"]
    assert (thinking["type"], fc["type"], fc["call_id"]) == ("reasoning", "function_call", "call_paris")
    assert first["responseId"] == answer1["id"] and second["responseId"] == step2.response()["id"]
    kinds = [it.get("type", "message") for it in step2.body["input"]]
    if store:
        # Store on: the reasoning item goes back as a reference to what respd stored.
        assert kinds == ["message", "item_reference", "function_call", "function_call_output"]
        assert step2.body["input"][1] == {"type": "item_reference", "id": thinking["id"]}
        items = get(respd, f"/v1/responses/{second['responseId']}/input_items?order=asc").json()["data"]
        assert [it["type"] for it in items] == ["message", "reasoning", "function_call", "function_call_output"]
        assert items[1]["id"] == thinking["id"]
        assert items[3]["output"] == WEATHER
    elif reasoning:
        # Store off: everything is replayed inline, the reasoning sealed in encrypted_content as respd sent it.
        assert "reasoning.encrypted_content" in step1.body["include"]
        assert first["reasoning"] == thought  # the summary it asked for
        assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
        assert step2.body["input"][1]["encrypted_content"] == thinking["encrypted_content"]
    else:
        assert "include" not in step1.body and "encrypted_content" not in thinking
        assert kinds == ["message", "function_call", "function_call_output"]
    if not store:
        assert get(respd, f"/v1/responses/{second['responseId']}").status_code == 404
    # The model saw the call and the tool's output.
    messages = fake.requests[1]["body"]["messages"]
    assert messages[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_paris", "content": WEATHER}


def test_structured_output_on_a_chain(node_modules: Path, wire: WireRecorder, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Noted: teal."), Reply(text='{"colour":"teal"}'))
    out = aisdk(wire, "object")
    assert out["output"] == {"colour": "teal"}
    first, second = wire.creates()
    body = second.body
    assert body["previous_response_id"] == out["firstId"] == first.response()["id"]
    assert body["text"]["format"]["type"] == "json_schema"
    assert (body["instructions"], body["metadata"]) == ("Be terse.", {"suite": "respd"})
    response = second.response()
    assert response["previous_response_id"] == out["firstId"] and response["metadata"] == {"suite": "respd"}
    assert response["text"]["format"]["schema"] == body["text"]["format"]["schema"]
    # The model saw the instructions, then the chain's earlier turn, then the new question; and the schema.
    sent = fake.requests[1]["body"]
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "Be terse."), ("user", "Remember the colour teal."), ("assistant", "Noted: teal."),
        ("user", "Which colour? Answer as JSON.")]  # fmt: skip
    assert sent["response_format"]["json_schema"]["schema"] == body["text"]["format"]["schema"]


def test_builtin_tools_without_executor_are_left_out(
    node_modules: Path, wire: WireRecorder, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="I cannot search here, but here is what I know."))
    out = aisdk(wire, "builtin")
    assert out["text"] == "I cannot search here, but here is what I know."
    (create,) = wire.creates()
    assert [t["type"] for t in create.body["tools"]] == ["web_search", "code_interpreter"]
    # web_search has no provider configured here; code_interpreter runs in respd's sandbox, so the model is
    # offered its python function
    assert create.headers["respd-omitted-tools"] == "web_search"
    assert [t["function"]["name"] for t in fake.requests[0]["body"]["tools"]] == ["python"]
    assert [t["type"] for t in create.response()["tools"]] == ["code_interpreter"]
