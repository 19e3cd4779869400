"""The emitter's events fold back into the Response it ended with, for every kind of output."""

from __future__ import annotations

import pytest

from respd.backends.base import Delta, Finish, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta, Usage
from respd.engine.emitter import Emitter
from respd.engine.fold import fold
from respd.wire.request import CreateResponse
from respd.wire.response import new_response


def _emitter() -> Emitter:
    req = CreateResponse.model_validate({"model": "m", "input": "hi"})
    return Emitter(new_response(req, response_id="resp_1", model="m", created_at=1, status="in_progress", tools=[]))


def _run(deltas: list[Delta]) -> tuple[list[dict], dict]:
    em = _emitter()
    events = em.start()
    for d in deltas:
        events += em.feed(d)
    events += em.finish()
    return events, em.response


CASES = {
    "text": [TextDelta("Hel"), TextDelta("lo"), Usage(3, 2), Finish("stop")],
    "reasoning_then_text": [ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("ok"), Finish("stop")],
    "refusal": [RefusalDelta("I can't"), Finish("stop")],
    "tool_calls_interleaved": [
        ToolCallDelta(0, "call_a", "f", '{"a"'),
        ToolCallDelta(1, "call_b", "g", '{"b"'),
        ToolCallDelta(0, arguments=": 1}"),
        ToolCallDelta(1, arguments=": 2}"),
        Finish("tool_calls"),
    ],
    "text_then_call": [TextDelta("let me"), ToolCallDelta(0, "call_c", "h", "{}"), Finish("tool_calls")],
    "truncated": [TextDelta("long"), Finish("length")],
}


@pytest.mark.parametrize("name", list(CASES))
def test_fold_of_events_is_the_final_response(name: str) -> None:
    events, final = _run(CASES[name])
    assert fold(events) == final
    assert events[-1]["response"] == final
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_fold_of_a_partial_log_shows_partial_output() -> None:
    events, _ = _run(CASES["text"])
    partial = fold(events[:5])  # created, in_progress, item added, part added, first delta
    assert partial["status"] == "in_progress"
    assert partial["output"][0]["content"][0]["text"] == "Hel"


def test_event_order_for_a_text_answer() -> None:
    events, final = _run(CASES["text"])
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["total_tokens"] == 5


def test_interleaved_tool_calls_become_separate_items() -> None:
    events, final = _run(CASES["tool_calls_interleaved"])
    calls = final["output"]
    assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [
        ("call_a", "f", '{"a": 1}'),
        ("call_b", "g", '{"b": 2}'),
    ]
    added = {e["output_index"] for e in events if e["type"] == "response.output_item.added"}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            assert e["output_index"] in added


def test_truncation_is_incomplete_with_reason() -> None:
    _, final = _run(CASES["truncated"])
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_failure_keeps_output_and_ends_with_error_then_failed() -> None:
    em = _emitter()
    events = em.start() + em.feed(TextDelta("partial"))
    events += em.fail("upstream broke")
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["message"] == "upstream broke"
    assert fold(events)["error"] == {"code": "server_error", "message": "upstream broke"}
    assert fold(events)["output"][0]["content"][0]["text"] == "partial"


def test_events_are_not_mutated_after_emission() -> None:
    em = _emitter()
    events = em.start() + em.feed(TextDelta("a"))
    added = next(e for e in events if e["type"] == "response.output_item.added")
    snapshot = repr(added)
    em.feed(TextDelta("b"))
    em.finish()
    assert repr(added) == snapshot
