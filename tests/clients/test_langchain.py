"""LangChain (``langchain-openai``'s ChatOpenAI with ``use_responses_api=True``) run unchanged against respd."""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.clients.conftest import API_KEY
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.wire_recorder import WireRecorder


def chat(wire: WireRecorder, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model="test-model", use_responses_api=True, base_url=wire.url + "/v1", api_key=API_KEY,
                      max_retries=0, timeout=30, **kwargs)  # fmt: skip


@tool
def get_weather(city: str) -> str:
    """Return the current weather for a city."""
    return f"It is sunny and 22C in {city}."


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    temp_c: int


def test_invoke(wire: WireRecorder, fake: FakeUpstream, respd: RespdServer) -> None:
    fake.script(Reply(text="Hello from respd."))
    message = chat(wire).invoke("Say hello")
    assert isinstance(message, AIMessage) and message.text == "Hello from respd."
    (create,) = wire.creates()
    assert create.body["stream"] is False and create.body["input"] == [
        {"type": "message", "role": "user", "content": "Say hello"}
    ]
    response = create.response()
    assert message.response_metadata["id"] == message.id == response["id"]
    assert (
        message.usage_metadata is not None
        and message.usage_metadata["output_tokens"] == response["usage"]["output_tokens"]
    )
    stored = httpx.get(f"{respd.url}/v1/responses/{response['id']}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert stored.json()["output"][0]["content"][0]["text"] == "Hello from respd."


def test_stream(wire: WireRecorder, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Streaming works through respd."))
    chunks = list(chat(wire).stream("Say something"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    texts = [c.text for c in chunks if c.text]
    assert texts == ["Streaming", " works", " through", " respd."]
    (create,) = wire.creates()
    assert create.body["stream"] is True
    assert [e["delta"] for e in create.events() if e["type"] == "response.output_text.delta"] == texts
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.response_metadata["id"] == create.response()["id"]


def test_bind_tools_round_trip(wire: WireRecorder, fake: FakeUpstream, respd: RespdServer) -> None:
    fake.script(
        Reply(reasoning="I need the weather tool.",
              tool_calls=[{"id": "call_lc", "name": "get_weather", "arguments": '{"city":"Paris"}'}]),
        Reply(text="Sunny, 22C in Paris."),
    )  # fmt: skip
    llm = chat(wire).bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage("What's the weather in Paris?")]
    first = llm.invoke(messages)
    assert isinstance(first, AIMessage)
    (call,) = first.tool_calls
    assert (call["name"], call["args"], call["id"]) == ("get_weather", {"city": "Paris"}, "call_lc")
    result = get_weather.invoke(call["args"])
    messages += [first, ToolMessage(result, tool_call_id=call["id"])]
    final = llm.invoke(messages)
    assert final.text == "Sunny, 22C in Paris."

    step1, step2 = wire.creates()
    tools = step1.body["tools"]
    assert [(t["type"], t["name"]) for t in tools] == [("function", "get_weather")]
    r1 = step1.response()
    # LangChain replays the whole turn inline (even with store on): the reasoning by id, the call, the result.
    kinds = [it.get("type", "message") for it in step2.body["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert step2.body["input"][1]["id"] == r1["output"][0]["id"]
    assert step2.body["input"][3] == {"type": "function_call_output", "call_id": "call_lc", "output": result}
    sent = fake.requests[1]["body"]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_lc", "content": result}
    items = httpx.get(f"{respd.url}/v1/responses/{step2.response()['id']}/input_items?order=asc",
                      headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]  # fmt: skip
    assert [it["type"] for it in items] == kinds


def test_with_structured_output(wire: WireRecorder, fake: FakeUpstream) -> None:
    fake.script(Reply(text='{"city":"Paris","temp_c":22}'))
    weather = chat(wire).with_structured_output(Weather).invoke("Weather in Paris as JSON")
    assert weather == Weather(city="Paris", temp_c=22)
    (create,) = wire.creates()
    fmt = create.body["text"]["format"]
    assert (fmt["type"], fmt["name"]) == ("json_schema", "Weather")
    assert create.response()["text"]["format"]["schema"] == fmt["schema"]
    assert fake.requests[0]["body"]["response_format"]["json_schema"]["schema"] == fmt["schema"]


def test_use_previous_response_id(wire: WireRecorder, fake: FakeUpstream) -> None:
    fake.script(Reply(text="Noted: your name is Ada."), Reply(text="Your name is Ada."))
    llm = chat(wire, use_previous_response_id=True)
    messages: list[BaseMessage] = [HumanMessage("My name is Ada.")]
    first = llm.invoke(messages)
    messages += [first, HumanMessage("What is my name?")]
    second = llm.invoke(messages)
    assert second.text == "Your name is Ada."

    step1, step2 = wire.creates()
    # Only the new message goes; the earlier turn comes from what respd stored.
    assert step2.body["previous_response_id"] == step1.response()["id"] == first.id
    assert step2.body["input"] == [{"type": "message", "role": "user", "content": "What is my name?"}]
    assert step2.response()["previous_response_id"] == first.id
    conversation = [(m["role"], m["content"]) for m in fake.requests[1]["body"]["messages"]]
    assert conversation == [
        ("user", "My name is Ada."),
        ("assistant", "Noted: your name is Ada."),
        ("user", "What is my name?"),
    ]
