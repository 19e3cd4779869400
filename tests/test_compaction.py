"""Compaction: ``POST /v1/responses/compact``, ``POST /v1/responses/{id}/compact``, ``context_management`` and
``compaction_trigger``, with the official SDK against a real server; the fake upstream writes the summaries.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import CompactedResponse

from tests.checks import check_error, check_event, check_response, sse_events
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.spec_schemas import validate_openai

SUMMARY = "The user is Ada; she likes green tea and plans a trip to Kyoto."
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "My name is Ada."},
    {"role": "assistant", "content": "Hello Ada! " + "Kyoto has many temples. " * 200},  # ~4,800 characters
    {"role": "user", "content": "I like green tea."},
]
USAGE = {"prompt_tokens": 1300, "completion_tokens": 20, "total_tokens": 1320}


def _texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"] if isinstance(m["content"], str) else str(m["content"])) for m in messages]


def _rows(server: RespdServer) -> int:
    with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as conn:
        count: int = conn.execute(
            "SELECT (SELECT count(*) FROM responses) + (SELECT count(*) FROM response_items)"
        ).fetchone()[0]
        return count


def _input(output: list[Any]) -> list[Any]:
    """Output items as a client sends them back. (The SDK types ``output`` as output items, whose message
    model has no user role, so dumping the kept user messages makes pydantic warn; the JSON is right.)"""
    return [item.model_dump(exclude_none=True, warnings=False) for item in output]


def test_compact_then_continue_with_the_output(client: openai.OpenAI, fake: FakeUpstream, server: RespdServer) -> None:
    fake.script(Reply(text=SUMMARY, usage=USAGE))
    before = _rows(server)
    compacted = client.responses.compact(model="test-model", input=CONVERSATION, instructions="Be brief.")  # type: ignore[arg-type]
    assert _rows(server) == before  # compaction stores nothing
    assert compacted.object == "response.compaction" and compacted.id.startswith("resp_")
    kinds = [(o.type, getattr(o, "role", None)) for o in compacted.output]
    assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)]
    assert [o.content[0].text for o in compacted.output[:2]] == ["My name is Ada.", "I like green tea."]  # type: ignore[union-attr]
    item = compacted.output[2]
    assert item.id.startswith("cmp_") and item.encrypted_content.startswith("respd1.")  # type: ignore[union-attr]
    assert SUMMARY not in item.encrypted_content  # type: ignore[union-attr]
    assert (compacted.usage.input_tokens, compacted.usage.output_tokens, compacted.usage.total_tokens) == (
        1300,
        20,
        1320,
    )
    asked = fake.requests[-1]["body"]
    assert _texts(asked["messages"][:4]) == [("system", "Be brief."), *_texts(CONVERSATION)]
    assert asked["messages"][4]["role"] == "user" and "compacted" in asked["messages"][4]["content"]
    assert "tools" not in asked and asked["max_tokens"] == 2048

    # The compacted output as the next input: the model sees the summary and the user's messages.
    fake.script(Reply(text="You are Ada."))
    answer = client.responses.create(
        model="test-model", input=[*_input(compacted.output), {"role": "user", "content": "Who am I?"}]
    )
    seen = _texts(fake.requests[-1]["body"]["messages"])
    assert answer.output_text == "You are Ada."
    assert seen[0][0] == "user" and seen[0][1].endswith(SUMMARY) and "summary" in seen[0][1]
    assert seen[1:] == [("user", "My name is Ada."), ("user", "I like green tea."), ("user", "Who am I?")]
    # Sent after the whole old conversation, the compaction item stands for everything before it.
    client.responses.create(
        model="test-model", input=[*CONVERSATION, *_input(compacted.output), {"role": "user", "content": "Who am I?"}]
    )  # type: ignore[list-item]
    assert _texts(fake.requests[-1]["body"]["messages"]) == seen
    # The SDK's own serialization of the output objects (it warns, as above) is the same request.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client.responses.create(model="test-model", input=[*compacted.output, {"role": "user", "content": "Who am I?"}])  # type: ignore[list-item]
    assert _texts(fake.requests[-1]["body"]["messages"]) == seen


def test_compact_a_stored_chain(client: openai.OpenAI, fake: FakeUpstream) -> None:
    first = client.responses.create(model="test-model", input="My name is Ada.")
    second = client.responses.create(model="test-model", input="I like tea.", previous_response_id=first.id,
                                     instructions="Be brief.")  # fmt: skip
    fake.script(Reply(text=SUMMARY), Reply(text=SUMMARY))
    by_id = client.responses.compact(model="test-model", previous_response_id=second.id)
    per_response = client.post(f"/responses/{second.id}/compact", body={}, cast_to=CompactedResponse)
    for compacted in (by_id, per_response):
        assert [getattr(o, "role", o.type) for o in compacted.output] == ["user", "user", "compaction"]
    summarized = [_texts(r["body"]["messages"]) for r in fake.requests[-2:]]
    chain = [("user", "My name is Ada."), ("assistant", "echo: My name is Ada."), ("user", "I like tea."),
             ("assistant", "echo: I like tea.")]  # fmt: skip
    assert summarized[0][:4] == chain  # /compact with previous_response_id: no instructions given
    assert summarized[1][:5] == [("system", "Be brief."), *chain]  # the response's own instructions by default
    # continuing from the compacted chain with previous_response_id is not possible: it is no response
    fake.script(Reply(text="ok"))
    client.responses.create(model="test-model", input=[*_input(per_response.output), {"role": "user", "content": "x"}])
    assert [m["role"] for m in fake.requests[-1]["body"]["messages"]] == ["user", "user", "user", "user"]


def test_compaction_object_matches_the_spec(server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text=SUMMARY))
    r = httpx.post(
        server.url + "/v1/responses/compact", json={"model": "test-model", "input": CONVERSATION}, timeout=20
    )
    assert r.status_code == 200
    validate_openai("CompactResource", r.json())


def test_compaction_errors(server: RespdServer, client: openai.OpenAI, fake: FakeUpstream) -> None:
    url = server.url + "/v1/responses/compact"
    check_error(httpx.post(url, json={"input": "x"}, timeout=20), 400, param="model", code="missing_required_parameter")
    check_error(httpx.post(url, json={"model": "test-model"}, timeout=20), 400, param="input")
    check_error(httpx.post(url, json={"model": "test-model", "input": "x", "tools": []}, timeout=20), 400,
                param="tools", code="unknown_parameter")  # fmt: skip
    check_error(httpx.post(url, json={"model": "test-model", "previous_response_id": "resp_nope"}, timeout=20), 404,
                param="previous_response_id")  # fmt: skip
    check_error(
        httpx.post(server.url + "/v1/responses/resp_nope/compact", json={}, timeout=20), 404, param="response_id"
    )
    stored = client.responses.create(model="test-model", input="x")
    check_error(httpx.post(f"{server.url}/v1/responses/{stored.id}/compact", json={"previous_response_id": stored.id},
                           timeout=20), 400, param="previous_response_id", code="unknown_parameter")  # fmt: skip
    fake.script(Reply(text=""))
    r = httpx.post(url, json={"model": "test-model", "input": "x"}, timeout=20)
    check_error(r, 502, code="server_error")
    assert "no summary" in r.json()["error"]["message"]


def test_tampered_or_foreign_compaction_items_are_refused(
    server: RespdServer, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text=SUMMARY), Reply(text="r", reasoning="thinking"))
    blob = client.responses.compact(model="test-model", input="hi").output[-1].encrypted_content  # type: ignore[union-attr]
    reasoning = client.responses.create(model="test-model", input="q", include=["reasoning.encrypted_content"])
    other_purpose = reasoning.output[0].encrypted_content  # type: ignore[union-attr]
    tampered = blob[:-6] + ("AAAAAA" if not blob.endswith("AAAAAA") else "BBBBBB")
    before, calls = _rows(server), len(fake.requests)
    for bad in (tampered, other_purpose, "gAAAAABpM0Yj-from-elsewhere=", "respd1.bm90IGEgcmVhbCBibG9i"):
        body = {"model": "test-model", "input": [{"role": "user", "content": "a"},
                                                 {"type": "compaction", "id": "cmp_1", "encrypted_content": bad}]}  # fmt: skip
        check_error(httpx.post(server.url + "/v1/responses", json=body, timeout=20), 400,
                    param="input[1].encrypted_content", code="invalid_encrypted_content")  # fmt: skip
    assert (_rows(server), len(fake.requests)) == (before, calls)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-compaction-keys")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield srv
    srv.stop()


def test_a_compaction_item_opens_only_for_its_tenant(keyed: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text=SUMMARY))
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-alice", max_retries=0) as alice, \
            openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-bob", max_retries=0) as bob:  # fmt: skip
        output = _input(alice.responses.compact(model="test-model", input="secret plans").output)
        with pytest.raises(openai.BadRequestError) as refused:
            bob.responses.create(model="test-model", input=output)
        assert refused.value.code == "invalid_encrypted_content" and refused.value.param == "input[1].encrypted_content"
        assert alice.responses.create(model="test-model", input=output).status == "completed"


AUTO = [{"type": "compaction", "compact_threshold": 1000}]
COMPACTION_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
                     "response.compaction.compacting", "response.output_item.done"]  # fmt: skip


def test_automatic_compaction_past_the_threshold(
    server: RespdServer, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    answer_usage = {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
    fake.script(Reply(text=SUMMARY, usage=USAGE), Reply(text="Enjoy Kyoto, Ada.", usage=answer_usage))
    body = {"model": "test-model", "input": CONVERSATION, "context_management": AUTO, "stream": True}
    r = httpx.post(server.url + "/v1/responses", json=body, timeout=20)
    events = [check_event(e) for e in sse_events(r.text)]
    assert [e["type"] for e in events[:5]] == COMPACTION_EVENTS
    added, compacting, done = events[2:5]
    assert added["item"] == {"id": done["item"]["id"], "type": "compaction", "encrypted_content": ""}
    assert compacting["item_id"] == done["item"]["id"] and compacting["output_index"] == done["output_index"] == 0
    assert done["item"]["encrypted_content"].startswith("respd1.")
    assert events[5]["type"] == "response.output_item.added" and events[5]["output_index"] == 1
    final = check_response(events[-1]["response"])
    assert events[-1]["type"] == "response.completed"
    assert [o["type"] for o in final["output"]] == ["compaction", "message"]
    assert final["usage"]["input_tokens"] == 1340 and final["usage"]["output_tokens"] == 25  # both passes
    summarize, answer = (_texts(req["body"]["messages"]) for req in fake.requests[-2:])
    assert summarize[:3] == _texts(CONVERSATION) and "compacted" in summarize[3][1]
    assert answer[0][1].endswith(SUMMARY)
    assert answer[1:] == [("user", "My name is Ada."), ("user", "I like green tea.")]

    # The next turn by previous_response_id starts from the compaction item: the long message is gone.
    fake.script(Reply(text="Tea."))
    nxt = client.responses.create(model="test-model", input="What do I like?", previous_response_id=final["id"],
                                  context_management=AUTO)  # type: ignore[arg-type]  # fmt: skip
    assert [o.type for o in nxt.output] == ["message"]  # under the threshold now: no compaction
    assert _texts(fake.requests[-1]["body"]["messages"]) == [*answer, ("assistant", "Enjoy Kyoto, Ada."),
                                                            ("user", "What do I like?")]  # fmt: skip
    stored = client.responses.retrieve(final["id"])
    assert [o.type for o in stored.output] == ["compaction", "message"]


def test_under_the_threshold_nothing_is_compacted(client: openai.OpenAI, fake: FakeUpstream) -> None:
    r = client.responses.create(model="test-model", input="hi", context_management=AUTO)  # type: ignore[arg-type]
    assert [o.type for o in r.output] == ["message"] and len(fake.requests) == 1


def test_sdk_stream_helper_follows_a_compacting_response(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text=SUMMARY), Reply(text="ok"))
    with client.responses.stream(model="test-model", input=CONVERSATION, context_management=AUTO) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.compaction.compacting" in kinds
    assert [o.type for o in final.output] == ["compaction", "message"] and final.output_text == "ok"


def test_compaction_trigger_compacts_and_answers_nothing(client: openai.OpenAI, fake: FakeUpstream) -> None:
    first = client.responses.create(model="test-model", input="My name is Ada.")
    fake.script(Reply(text=SUMMARY))
    r = client.responses.create(model="test-model", previous_response_id=first.id,
                                input=[{"type": "compaction_trigger"}])  # type: ignore[list-item]  # fmt: skip
    assert r.status == "completed" and [o.type for o in r.output] == ["compaction"]
    assert len(fake.requests) == 2  # the first answer, then the summary: no answer after compacting
    assert client.responses.input_items.list(r.id).data == []
    client.responses.create(model="test-model", input="Who am I?", previous_response_id=r.id)
    seen = _texts(fake.requests[-1]["body"]["messages"])
    assert seen[0][1].endswith(SUMMARY) and seen[1:] == [("user", "My name is Ada."), ("user", "Who am I?")]


def test_context_management_errors(server: RespdServer, fake: FakeUpstream) -> None:
    url = server.url + "/v1/responses"
    cases = [
        ({"context_management": [{"type": "truncate", "compact_threshold": 2000}]}, "context_management[0].type"),
        (
            {"context_management": [{"type": "compaction", "compact_threshold": 999}]},
            "context_management[0].compact_threshold",
        ),
        ({"context_management": []}, "context_management"),
        # test-model's window is unknown, so there is no default threshold to take
        ({"context_management": [{"type": "compaction"}]}, "context_management[0].compact_threshold"),
        ({"input": [{"type": "compaction_trigger"}, {"role": "user", "content": "x"}]}, "input[0]"),
        ({"input": [{"type": "compaction_trigger"}]}, "input"),
    ]
    for extra, param in cases:
        check_error(httpx.post(url, json={"model": "test-model", "input": "x", **extra}, timeout=20), 400, param=param)
    assert fake.requests == []
