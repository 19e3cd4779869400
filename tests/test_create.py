"""POST /v1/responses with the official SDK: what is sent upstream, and what comes back."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest

from tests.checks import check_response
from tests.conftest import UPSTREAM_KEY
from tests.fake_upstream import FakeUpstream, Reply


def create_raw(client: openai.OpenAI, **kwargs: Any) -> dict[str, Any]:
    raw = client.responses.with_raw_response.create(**kwargs)
    body: dict[str, Any] = raw.http_response.json()
    return check_response(body)


def test_plain_text_answer(client: openai.OpenAI, fake: FakeUpstream) -> None:
    resp = client.responses.create(model="test-model", input="hello there")
    assert resp.status == "completed"
    assert resp.output_text == "echo: hello there"
    assert resp.id.startswith("resp_") and resp.output[0].id.startswith("msg_")
    sent = fake.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "fake-upstream-model"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hello there"}]
    assert sent["headers"].get("Authorization") == f"Bearer {UPSTREAM_KEY}"


def test_ids_carry_their_creation_time_like_the_apis(client: openai.OpenAI) -> None:
    """``resp_`` + 8 hex digits of the creation second + 40 random ones, as the API's ids; so ids of one
    moment sort together (what keeps the stored indexes' inserts at their right edge)."""
    first = client.responses.create(model="test-model", input="one")
    second = client.responses.create(model="test-model", input="two")
    for resp in (first, second):
        for prefix, ident in (("resp_", resp.id), ("msg_", resp.output[0].id)):
            assert ident.startswith(prefix) and len(ident) == len(prefix) + 48
            assert abs(int(ident[len(prefix) : len(prefix) + 8], 16) - resp.created_at) <= 1
    assert first.id[5:] != second.id[5:] and first.id[13:] != second.id[13:]  # the rest is random


def test_every_response_field_is_present(client: openai.OpenAI) -> None:
    body = create_raw(client, model="test-model", input="x", metadata={"k": "v"}, temperature=0.3, top_p=0.9)
    for key in (
        "error",
        "incomplete_details",
        "instructions",
        "previous_response_id",
        "max_output_tokens",
        "conversation",
        "prompt",
        "safety_identifier",
        "prompt_cache_key",
        "completed_at",
    ):
        assert key in body  # required-but-nullable keys are present  # fmt: skip
    assert body["metadata"] == {"k": "v"}
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["store"] is True and body["background"] is False
    assert body["model"] == "test-model"


def test_sampling_parameters_reach_the_upstream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    client.responses.create(model="test-model", input="x", temperature=0.2, top_p=0.5, max_output_tokens=64)
    body = fake.requests[-1]["body"]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.5, 64)


def test_instructions_become_the_system_message(client: openai.OpenAI, fake: FakeUpstream) -> None:
    resp = client.responses.create(model="test-model", input="hi", instructions="Be brief.")
    assert resp.instructions == "Be brief."
    assert fake.requests[-1]["body"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_usage_comes_from_the_upstream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
             "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}}  # fmt: skip
    fake.script(Reply(text="ok", usage=usage))
    resp = client.responses.create(model="test-model", input="x")
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (11, 7, 18)
    assert resp.usage.input_tokens_details.cached_tokens == 4
    assert resp.usage.output_tokens_details.reasoning_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_reasoning_becomes_a_reasoning_item(client: openai.OpenAI, fake: FakeUpstream, stream: bool) -> None:
    fake.script(Reply(text="42", reasoning="Let me think about it."))
    if stream:
        with client.responses.stream(model="test-model", input="q") as s:
            types = [ev.type for ev in s]
            resp = s.get_final_response()
        assert "response.reasoning_text.delta" in types and "response.reasoning_text.done" in types
    else:
        resp = client.responses.create(model="test-model", input="q")
    reasoning, message = resp.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content is not None and reasoning.content[0].text == "Let me think about it."
    assert message.type == "message" and resp.output_text == "42"


@pytest.mark.parametrize("stream", [False, True])
def test_max_output_tokens_reached_is_incomplete(client: openai.OpenAI, fake: FakeUpstream, stream: bool) -> None:
    fake.script(Reply(text="a long answer cut", finish_reason="length"))
    if stream:
        events = list(client.responses.create(model="test-model", input="q", max_output_tokens=16, stream=True))
        assert events[-1].type == "response.incomplete"
        resp = client.responses.retrieve(events[0].response.id)  # type: ignore[union-attr]
    else:
        resp = client.responses.create(model="test-model", input="q", max_output_tokens=16)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None and resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output[0].status == "incomplete"


def test_input_items_with_parts_and_images(client: openai.OpenAI, fake: FakeUpstream) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    client.responses.create(
        model="test-model",
        input=[
            {"role": "developer", "content": "dev rules"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "what is in"},
                {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                {"type": "input_image", "image_url": data_url},
            ]},
        ],
    )  # fmt: skip
    messages = fake.requests[-1]["body"]["messages"]
    assert messages[0] == {"role": "system", "content": "dev rules"}
    assert messages[1]["content"] == [
        {"type": "text", "text": "what is in"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]


def test_function_call_history_as_input(client: openai.OpenAI, fake: FakeUpstream) -> None:
    client.responses.create(
        model="test-model",
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "rainy"},
        ],
    )
    messages = fake.requests[-1]["body"]["messages"]
    assert messages[1]["tool_calls"][0] == {
        "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}
    }  # fmt: skip
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "rainy"}


def test_function_tool_call_comes_back_as_function_call_item(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(tool_calls=[{"id": "call_9", "name": "weather", "arguments": '{"city": "Oslo"}'}]))
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    resp = client.responses.create(model="test-model", input="weather?", tools=[tool])
    (call,) = resp.output
    assert call.type == "function_call" and call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments, call.status) == (
        "call_9",
        "weather",
        '{"city": "Oslo"}',
        "completed",
    )
    assert fake.requests[-1]["body"]["tools"][0]["function"]["name"] == "weather"
