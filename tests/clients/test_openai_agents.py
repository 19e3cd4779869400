"""openai-agents (``OpenAIResponsesModel``) run unchanged against respd: an agent with a function tool.

The SDK runs the agent loop itself: it calls the model, executes the tool the model asked for, and calls
the model again with the tool's output, until the model answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    WebSearchTool,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.clients.conftest import API_KEY
from tests.fake_searxng import FakeSearxng
from tests.fake_upstream import FakeUpstream, Reply, tool_messages
from tests.wire_recorder import Exchange, WireRecorder

asked: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Return the current weather for a city."""
    asked.append(city)
    return f"It is sunny and 22C in {city}."


def run_agent(wire: WireRecorder, body: Callable[[Agent[Any]], Awaitable[Any]], tools: list[Any] | None = None) -> Any:
    """Run ``body(agent)`` on a fresh event loop, with an agent whose model is served by respd."""
    set_tracing_disabled(True)  # traces would go to OpenAI: nothing leaves this machine

    async def main() -> Any:
        client = AsyncOpenAI(base_url=wire.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
        try:
            agent: Agent[Any] = Agent(name="Forecaster", instructions="Answer weather questions with the tool.",
                                      tools=tools or [get_weather], model=OpenAIResponsesModel("test-model", client),
                                      model_settings=ModelSettings(include_usage=True))  # fmt: skip
            return await body(agent)
        finally:
            await client.close()

    return asyncio.run(main())


def script_weather(fake: FakeUpstream) -> None:
    asked.clear()
    fake.script(Reply(reasoning="Use the tool.",
                      tool_calls=[{"id": "call_ag", "name": "get_weather", "arguments": '{"city":"Paris"}'}]),
                Reply(text="Sunny, 22C in Paris."))  # fmt: skip


def check_tool_turns(step1: Exchange, step2: Exchange, fake: FakeUpstream) -> None:
    """Two model calls: the tool call, then the whole turn replayed with the tool's output."""
    assert step1.body["instructions"] == "Answer weather questions with the tool."
    assert [t["name"] for t in step1.body["tools"]] == ["get_weather"]
    r1 = step1.response()
    assert [it["type"] for it in r1["output"]] == ["reasoning", "function_call"]
    kinds = [it.get("type", "message") for it in step2.body["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert step2.body["input"][1]["id"] == r1["output"][0]["id"]
    assert step2.body["input"][3]["output"] == "It is sunny and 22C in Paris."
    assert fake.requests[1]["body"]["messages"][-1] == {
        "role": "tool", "tool_call_id": "call_ag", "content": "It is sunny and 22C in Paris."}  # fmt: skip
    assert step2.response()["output"][0]["content"][0]["text"] == "Sunny, 22C in Paris."


def test_agent_with_function_tool(wire: WireRecorder, fake: FakeUpstream) -> None:
    script_weather(fake)
    fake.script(Reply(text="You asked about Paris."))

    async def body(agent: Agent[Any]) -> Any:
        first = await Runner.run(agent, "What's the weather in Paris?")
        # A follow-up chained to the stored conversation by previous_response_id.
        second = await Runner.run(agent, "Which city did I ask about?", previous_response_id=first.last_response_id)
        return first, second

    first, second = run_agent(wire, body)
    assert first.final_output == "Sunny, 22C in Paris." and asked == ["Paris"]
    assert [type(i).__name__ for i in first.new_items] == [
        "ReasoningItem", "ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]  # fmt: skip
    assert first.context_wrapper.usage.requests == 2 and first.context_wrapper.usage.output_tokens > 0
    assert second.final_output == "You asked about Paris."
    creates = wire.creates()
    check_tool_turns(creates[0], creates[1], fake)
    follow_up = creates[2].body
    assert follow_up["previous_response_id"] == first.last_response_id == creates[1].response()["id"]
    assert [it["content"] for it in follow_up["input"]] == ["Which city did I ask about?"]
    roles = [m["role"] for m in fake.requests[2]["body"]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


def test_agent_streamed(wire: WireRecorder, fake: FakeUpstream) -> None:
    script_weather(fake)

    async def body(agent: Agent[Any]) -> Any:
        result = Runner.run_streamed(agent, "What's the weather in Paris?")
        seen: list[tuple[str, Any]] = []
        async for event in result.stream_events():
            name = getattr(event, "name", None) or getattr(getattr(event, "data", None), "type", "")
            seen.append((event.type, name))
        return result, seen

    result, seen = run_agent(wire, body)
    assert result.final_output == "Sunny, 22C in Paris." and asked == ["Paris"]
    deltas = [n for t, n in seen if t == "raw_response_event" and n == "response.output_text.delta"]
    assert len(deltas) == 4  # "Sunny,", " 22C", " in", " Paris."
    run_items = [n for t, n in seen if t == "run_item_stream_event"]
    assert run_items == ["reasoning_item_created", "tool_called", "tool_output", "message_output_created"]
    step1, step2 = wire.creates()
    assert step1.body["stream"] is True and step2.body["stream"] is True
    check_tool_turns(step1, step2, fake)


def test_agent_with_hosted_web_search(wire_web: WireRecorder, fake: FakeUpstream, searxng: FakeSearxng) -> None:
    """``WebSearchTool`` runs in respd: the search is one response's step; then a function call of the agent's
    own, whose turn the SDK replays with the search call sent back by value."""
    asked.clear()
    search = {"id": "call_ws", "name": "web_search", "arguments": '{"query": "paris weather"}'}
    weather = {"id": "call_fn", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    fake.script(Reply(tool_calls=[search]), Reply(tool_calls=[weather]), Reply(text="Sunny [1], 22C in Paris."))

    async def body(agent: Agent[Any]) -> Any:
        return await Runner.run(agent, "Weather in Paris?")

    result = run_agent(wire_web, body, tools=[WebSearchTool(), get_weather])
    assert result.final_output == "Sunny [1], 22C in Paris." and asked == ["Paris"]
    assert searxng.queries == ["paris weather"]
    first, second = wire_web.creates()
    assert [t["type"] for t in first.body["tools"]] == ["web_search", "function"]
    assert [i["type"] for i in first.response()["output"]] == ["web_search_call", "function_call"]
    assert [i.get("type", "message") for i in second.body["input"]] == [
        "message", "web_search_call", "function_call", "function_call_output"]  # fmt: skip
    # the replayed search reads back to the model as the results it had, then the agent's tool output
    assert "[1] Result 1 about paris weather" in tool_messages(fake.requests[-1]["body"])[0]
    final = second.response()["output"][-1]["content"][0]
    assert final["annotations"][0]["url"] == "https://example1.com/paris-weather"
    assert [type(i).__name__ for i in result.new_items] == [
        "ToolCallItem", "ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]  # fmt: skip
