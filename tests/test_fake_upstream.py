"""The fake upstream is faithful: the official SDK's Chat Completions client reads it like a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fake_upstream import FakeUpstream, Reply, split_words

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def up(_server: FakeUpstream) -> FakeUpstream:
    _server.reset()
    return _server


@pytest.fixture
def sdk(up: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=up.base_url, api_key="sk-test", max_retries=0, timeout=10) as client:
        yield client


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    frames = text.split("\n\n")
    assert frames[-1] == "", "the body ends with a blank line"
    assert all(f.startswith("data: ") for f in frames[:-1]), frames
    return [f[len("data: ") :] for f in frames[:-1]]


def test_split_words_keeps_every_character() -> None:
    assert split_words("Hello world") == ["Hello", " world"]
    assert "".join(split_words("  a  b\nc ")) == "  a  b\nc "
    assert split_words("") == []


def test_non_stream_echo(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(model="some-model", messages=[{"role": "system", "content": "be nice"}, *USER])
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-") and resp.model == "some-model"
    choice = resp.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", "echo: hello there")
    assert choice.finish_reason == "stop" and choice.index == 0
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (4, 3, 7)
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 0
    sent = up.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["messages"][1] == USER[0]
    assert sent["headers"]["authorization"] == sent["headers"].get("Authorization") == "Bearer sk-test"


def test_echo_of_content_parts(sdk: openai.OpenAI) -> None:
    parts: Any = [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "x"}}]
    resp = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
    assert resp.choices[0].message.content == "echo: what is"


def test_stream_frames_and_usage(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    assert raw.http_response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(raw.http_response.read().decode())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["echo:", " hello", " there"]
    assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[5]["choices"] == [] and chunks[5]["usage"]["completion_tokens"] == 3


def test_stream_through_the_sdk(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(chunks=["He", "llo", "!"], finish_reason="length", delay_s=0.01))
    stream = sdk.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks), "no usage chunk unless asked for"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning(up: FakeUpstream, sdk: openai.OpenAI, field: str) -> None:
    up.script(Reply(text="42", reasoning="Let me think.", reasoning_field=field))
    up.script(Reply(text="42", reasoning="Let me think.", reasoning_field=field))
    resp = sdk.chat.completions.create(model="m", messages=USER)
    assert resp.choices[0].message.model_extra == {field: "Let me think."}
    assert resp.usage is not None and resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 3
    deltas = [c.choices[0].delta for c in sdk.chat.completions.create(model="m", messages=USER, stream=True)]
    assert "".join((d.model_extra or {}).get(field, "") for d in deltas) == "Let me think."
    first_text = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not (d.model_extra or {}).get(field) for d in deltas[first_text:]), "reasoning comes first"


def test_refusal(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(refusal="I can't help with that."))
    message = sdk.chat.completions.create(model="m", messages=USER).choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")


CALLS = [
    {"id": "call_a", "name": "weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'},
    {"id": "call_b", "name": "time", "arguments": '{"zone": "Europe/Oslo"}'},
]


def test_tool_calls_non_stream(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(tool_calls=CALLS))
    choice = sdk.chat.completions.create(model="m", messages=USER).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    got = [(c.id, c.type, c.function.name, c.function.arguments) for c in calls]  # type: ignore[union-attr]
    assert got == [(c["id"], "function", c["name"], c["arguments"]) for c in CALLS]


@pytest.mark.parametrize("interleave", [False, True])
def test_tool_calls_stream(up: FakeUpstream, sdk: openai.OpenAI, interleave: bool) -> None:
    up.script(Reply(text="Checking.", tool_calls=CALLS, interleave_tool_calls=interleave))
    tools: Any = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                  for n in ("weather", "time")]  # fmt: skip
    with sdk.chat.completions.stream(model="m", messages=USER, tools=tools) as stream:
        deltas = [e.chunk.choices[0].delta for e in stream if e.type == "chunk" and e.chunk.choices]
        final = stream.get_final_completion()
    order = [tc.index for d in deltas for tc in d.tool_calls or []]
    assert order.count(0) > 2 and order.count(1) > 2, "a head, then several argument fragments"
    assert (order != sorted(order)) == interleave, order
    heads = [tc for d in deltas for tc in d.tool_calls or [] if tc.id]
    assert [(h.id, h.type, h.function and h.function.arguments) for h in heads] == [
        ("call_a", "function", ""), ("call_b", "function", "")
    ]  # fmt: skip
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    got = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    assert got == [(c["id"], c["name"], c["arguments"]) for c in CALLS]


def test_script_is_fifo_then_echo(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(text="one"), Reply(text="two"))
    texts = [sdk.chat.completions.create(model="m", messages=USER).choices[0].message.content for _ in range(3)]
    assert texts == ["one", "two", "echo: hello there"]
    assert up.wait_for_requests(3, timeout=0.1) and not up.wait_for_requests(4, timeout=0.1)
    up.reset()
    assert up.requests == [] and up.pending == 0


def test_http_errors(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(status=500), Reply(status=429, error_body={"error": {"message": "slow down", "type": "rate"}}))
    with pytest.raises(openai.InternalServerError) as err:
        sdk.chat.completions.create(model="m", messages=USER, stream=True)
    assert err.value.status_code == 500 and isinstance(err.value.body, dict)
    assert set(err.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.RateLimitError, match="slow down"):
        sdk.chat.completions.create(model="m", messages=USER)
    assert httpx.post(up.base_url + "/chat/completions", content=b"{nope").status_code == 400


def test_drop_cuts_the_stream(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(text="one two three four", fault="drop"))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in sdk.chat.completions.create(model="m", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two"
    assert up.disconnects == 0, "the server dropped it, not the client"


def test_malformed_and_bad_json(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(text="a b", fault="malformed"), Reply(fault="bad_json"))
    body = {"model": "m", "messages": USER, "stream": True}
    data = sse_data(httpx.post(up.base_url + "/chat/completions", json=body).text)
    assert data[-1] == "[DONE]"
    with pytest.raises(ValueError):
        json.loads(data[-2])
    with pytest.raises(ValueError):
        sdk.chat.completions.create(model="m", messages=USER)


def test_client_closing_a_stream_is_a_disconnect(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    up.script(Reply(text="word " * 100, delay_s=0.02))
    stream = sdk.chat.completions.create(model="m", messages=USER, stream=True)
    next(iter(stream))
    stream.close()
    assert up.wait_for_disconnect(timeout=5)
    assert up.disconnects == 1


def test_a_finished_stream_is_no_disconnect(up: FakeUpstream, sdk: openai.OpenAI) -> None:
    list(sdk.chat.completions.create(model="m", messages=USER, stream=True))
    assert not up.wait_for_disconnect(timeout=0.3)


@pytest.mark.parametrize("stream", [False, True])
def test_hang_until_the_client_gives_up(up: FakeUpstream, sdk: openai.OpenAI, stream: bool) -> None:
    up.script(Reply(fault="hang"))
    with pytest.raises(openai.APITimeoutError):
        sdk.with_options(timeout=0.5).chat.completions.create(model="m", messages=USER, stream=stream)
    assert up.wait_for_disconnect(timeout=5)


def test_models(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["fake-upstream-model"]


def test_stop_with_a_request_in_flight() -> None:
    upstream = FakeUpstream()
    upstream.start()
    upstream.script(Reply(fault="hang"))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(upstream.base_url + "/chat/completions", json={"model": "m", "messages": USER}, timeout=30)
        except httpx.HTTPError as e:
            errors.append(e)

    thread = threading.Thread(target=call)
    thread.start()
    assert upstream.wait_for_requests(1)
    started = time.monotonic()
    upstream.stop()
    thread.join(10)
    assert time.monotonic() - started < 5 and len(errors) == 1
    assert upstream.disconnects == 0
    with pytest.raises(RuntimeError):
        _ = upstream.base_url
