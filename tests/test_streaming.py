"""SSE streaming: the exact event sequence, framing, obfuscation, and stream == non-stream."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.checks import check_event, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer

TEXT_SEQUENCE = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
]  # fmt: skip


def stream_raw(server: RespdServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(server.url + "/v1/responses", json={**body, "stream": True}, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    return [check_event(ev) for ev in sse_events(r.text)]


def test_event_sequence_and_numbers(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="one two three"))
    events = stream_raw(server, {"model": "test-model", "input": "x"})
    assert [e["type"] for e in events] == TEXT_SEQUENCE
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "one two three"
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1


def test_obfuscation_on_by_default_and_off_on_request(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b"), Reply(text="a b"))
    on = stream_raw(server, {"model": "test-model", "input": "x"})
    off = stream_raw(server, {"model": "test-model", "input": "x", "stream_options": {"include_obfuscation": False}})
    assert all("obfuscation" in e for e in on if e["type"].endswith(".delta"))
    assert not any("obfuscation" in e for e in off)


def test_each_event_is_one_write(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c", delay_s=0.02))
    with httpx.stream(
        "POST", server.url + "/v1/responses", json={"model": "test-model", "input": "x", "stream": True}
    ) as r:
        chunks = [c for c in r.iter_raw() if c]
    # Every chunk that arrived on its own is whole frames; the delayed deltas arrive as single frames.
    for chunk in chunks:
        assert chunk.endswith(b"\n\n") and chunk.startswith(b"event: ")
    assert any(c.count(b"\n\nevent: ") == 0 and b"output_text.delta" in c for c in chunks)


def _strip_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("*" if k in ("id", "created_at", "completed_at") else _strip_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_ids(v) for v in value]
    return value


def test_stream_and_non_stream_give_the_same_response(
    server: RespdServer, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    fake.script(
        Reply(text="same answer", reasoning="hm", usage=usage), Reply(text="same answer", reasoning="hm", usage=usage)
    )
    body = {"model": "test-model", "input": "q", "metadata": {"a": "b"}}
    events = stream_raw(server, body)
    plain = check_response(httpx.post(server.url + "/v1/responses", json=body, timeout=20).json())
    assert _strip_ids(events[-1]["response"]) == _strip_ids(plain)
    assert client.responses.retrieve(events[-1]["response"]["id"]).output_text == "same answer"
    stored = httpx.get(server.url + f"/v1/responses/{events[-1]['response']['id']}").json()
    assert stored == events[-1]["response"]


def test_sdk_stream_helper_accepts_the_stream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="streamed by helper"))
    with client.responses.stream(model="test-model", input="x") as stream:
        deltas = [ev.delta for ev in stream if ev.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed by helper" == final.output_text
    assert final.status == "completed"


def test_tool_call_stream_events(server: RespdServer, fake: FakeUpstream) -> None:
    calls = [
        {"id": "call_a", "name": "f", "arguments": '{"x": 1}'},
        {"id": "call_b", "name": "g", "arguments": '{"y": 2}'},
    ]
    fake.script(Reply(tool_calls=calls, interleave_tool_calls=True))
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("f", "g")]
    events = stream_raw(server, {"model": "test-model", "input": "x", "tools": tools})
    types = [e["type"] for e in events]
    assert types.count("response.output_item.added") == 2
    assert types.count("response.function_call_arguments.done") == 2
    done = {e["output_index"]: e for e in events if e["type"] == "response.function_call_arguments.done"}
    assert (done[0]["name"], done[0]["arguments"]) == ("f", '{"x": 1}')
    assert (done[1]["name"], done[1]["arguments"]) == ("g", '{"y": 2}')
    seen: set[int] = set()
    for e in events:
        if e["type"] == "response.output_item.added":
            seen.add(e["output_index"])
        elif "output_index" in e:
            assert e["output_index"] in seen, e
