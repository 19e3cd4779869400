"""Reasoning items: reasoning text, summaries when asked for, and sealed encrypted_content for stateless turns."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.checks import check_error, check_event, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer


def post(server: RespdServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/responses", json=body, timeout=20)


def test_summary_parts_when_a_summary_is_asked_for(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="4", reasoning="two plus two is four"))
    r = post(server, {"model": "test-model", "input": "2+2?", "stream": True, "reasoning": {"summary": "auto", "effort": "low"}})
    events = [check_event(e) for e in sse_events(r.text)]
    types = [e["type"] for e in events]
    order = ["response.reasoning_text.done", "response.content_part.done", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
             "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done"]  # fmt: skip
    start = types.index(order[0])
    assert types[start : start + len(order)] == order
    reasoning = events[-1]["response"]["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "two plus two is four"}]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "two plus two is four"}]
    assert fake.requests[-1]["body"]["reasoning_effort"] == "low"


def test_no_summary_unless_asked(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="4", reasoning="thinking"))
    resp = client.responses.create(model="test-model", input="2+2?")
    assert resp.output[0].type == "reasoning" and resp.output[0].summary == []


def test_encrypted_reasoning_round_trip_without_store(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="first", reasoning="secret chain of thought"), Reply(text="second"))
    first = client.responses.create(model="test-model", input="q1", store=False, include=["reasoning.encrypted_content"])
    reasoning = first.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.encrypted_content and "secret" not in reasoning.encrypted_content
    # Replay by value, as Codex does: content null, summary empty, a client-side id never looked up.
    replay = {"type": "reasoning", "id": reasoning.id, "summary": [], "content": None,
              "encrypted_content": reasoning.encrypted_content}  # fmt: skip
    second = client.responses.create(model="test-model", store=False, include=["reasoning.encrypted_content"], input=[
        {"role": "user", "content": "q1"}, replay,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first"}]},
        {"role": "user", "content": "q2"}])  # fmt: skip
    assert second.output_text == "second"
    assert [m["role"] for m in fake.requests[-1]["body"]["messages"]] == ["user", "assistant", "user"]


def test_tampered_or_foreign_encrypted_content_is_a_400(server: RespdServer, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="x", reasoning="r"))
    blob = client.responses.create(model="test-model", input="q", store=False, include=["reasoning.encrypted_content"]).output[0].encrypted_content  # type: ignore[union-attr]
    assert blob is not None
    tampered = blob[:-6] + ("AAAAAA" if not blob.endswith("AAAAAA") else "BBBBBB")
    for bad in (tampered, "gAAAAABo-from-another-server", "respd1.bm90IGEgcmVhbCBibG9i"):
        r = post(server, {"model": "test-model", "input": [
            {"type": "reasoning", "id": "rs_x", "summary": [], "encrypted_content": bad}, {"role": "user", "content": "hi"}]})  # fmt: skip
        check_error(r, 400, param="input[0].encrypted_content", code="invalid_encrypted_content")


def test_reasoning_items_validate_against_both_specs(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text="x", reasoning="r"))
    body = post(server, {"model": "test-model", "input": "q", "include": ["reasoning.encrypted_content"],
                         "reasoning": {"summary": "detailed"}}).json()  # fmt: skip
    check_response(body)
    assert body["output"][0]["encrypted_content"].startswith("respd1.")


def test_logprobs_when_asked_for(server: RespdServer, client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b"), Reply(text="a b"))
    resp = client.responses.create(model="test-model", input="x", top_logprobs=2, include=["message.output_text.logprobs"])
    sent = fake.requests[-1]["body"]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    part = resp.output[0].content[0]  # type: ignore[union-attr]
    assert [lp.token for lp in part.logprobs] == ["a", " b"]  # type: ignore[union-attr]
    assert len(part.logprobs[0].top_logprobs) == 2  # type: ignore[union-attr,index]
    events = [check_event(e) for e in sse_events(post(server, {"model": "test-model", "input": "x", "stream": True,
                                                                "include": ["message.output_text.logprobs"]}).text)]  # fmt: skip
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["logprobs"][0]["token"] for d in deltas] == ["a", " b"]
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == [lp for d in deltas for lp in d["logprobs"]]
    plain = client.responses.create(model="test-model", input="x")
    assert "logprobs" not in fake.requests[-1]["body"] and plain.output[0].content[0].logprobs == []  # type: ignore[union-attr]
