"""WebSocket mode: ``response.create`` messages over one connection, with the official SDK's client.

Each message gets its response's events (the same as SSE) or one ``error`` event, in the order sent; the
connection survives errors; ``previous_response_id`` finds this connection's ``store: false`` responses and
nothing else does; a client that leaves cancels its response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.resources.responses.responses import ResponsesConnection
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.checks import check_error, check_event, check_response, sse_events
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer
from tests.spec_schemas import validate_openai
from tests.test_streaming import TEXT_SEQUENCE

# The SDK's sync client opens its socket with websockets' connect() outside a `with`, which websockets 17.1+
# deprecates (a warning only: the connection works, and the SDK closes it itself).
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

TERMINAL = {"response.completed", "response.failed", "response.incomplete", "response.cancelled"}


def check_ws_event(event: dict[str, Any]) -> dict[str, Any]:
    """A server event of WebSocket mode: a stream event (plus its lane), or a request's ``error`` event."""
    if event["type"] == "error" and "status" in event:
        validate_openai("ResponseWsError", event)
        assert set(event["error"]) >= {"type", "code", "message", "param"} and event["error"]["message"], event
        return event
    check_event({k: v for k, v in event.items() if k != "stream_id"})
    return event


def answer(conn: ResponsesConnection) -> list[dict[str, Any]]:
    """The events one message got: a response's, up to its terminal event, or one error event.

    Every event is also parsed by the SDK's own model of the server events.
    """
    events = []
    while True:
        raw = conn.recv_bytes()
        event = orjson.loads(raw)
        parsed = conn.parse_event(raw)
        assert parsed.type == event["type"]
        events.append(check_ws_event(event))
        if event["type"] in TERMINAL or (event["type"] == "error" and "status" in event):
            return events


def raw_answer(ws: ClientConnection) -> list[dict[str, Any]]:
    """:func:`answer` for a plain websockets client."""
    events = []
    while True:
        event = check_ws_event(orjson.loads(ws.recv()))
        events.append(event)
        if event["type"] in TERMINAL or (event["type"] == "error" and "status" in event):
            return events


def error_of(
    events: list[dict[str, Any]], status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert len(events) == 1 and events[0]["type"] == "error", events
    assert events[0]["status"] == status, events
    err: dict[str, Any] = events[0]["error"]
    assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def ws_url(server: RespdServer) -> str:
    return server.url.replace("http://", "ws://") + "/v1/responses"


@pytest.fixture
def raw_ws(server: RespdServer) -> Iterator[ClientConnection]:
    with connect(ws_url(server)) as ws:
        yield ws


def test_multi_turn_session_with_store_false_chaining(
    any_server: RespdServer, any_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="Hello Ann."), Reply(text="You are Ann."), Reply(text="Still Ann."))
    with any_client.responses.connect() as conn:
        conn.response.create(model="test-model", input="I am Ann.")
        r1 = answer(conn)[-1]["response"]
        conn.response.create(model="test-model", input="Who am I?", previous_response_id=r1["id"], store=False)
        r2 = answer(conn)[-1]["response"]
        conn.send_raw("{this is not json")
        error_of(answer(conn), 400, code="invalid_json")
        conn.response.create(model="test-model", input="Sure?", previous_response_id=r2["id"], store=False)
        r3 = answer(conn)[-1]["response"]
    assert [r["status"] for r in (r1, r2, r3)] == ["completed"] * 3
    assert r2["store"] is False and r3["previous_response_id"] == r2["id"]
    assert r3["output"][0]["content"][0]["text"] == "Still Ann."
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "I am Ann."},
        {"role": "assistant", "content": "Hello Ann."},
        {"role": "user", "content": "Who am I?"},
        {"role": "assistant", "content": "You are Ann."},
        {"role": "user", "content": "Sure?"},
    ]
    # The stored turn is stored as over HTTP; the store:false ones exist nowhere but in that connection.
    assert any_client.responses.retrieve(r1["id"]).output_text == "Hello Ann."
    for rid in (r2["id"], r3["id"]):
        with pytest.raises(openai.NotFoundError):
            any_client.responses.retrieve(rid)


def test_store_false_responses_are_not_found_elsewhere(
    any_server: RespdServer, any_client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="secret"))
    with any_client.responses.connect() as conn:
        conn.response.create(model="test-model", input="x", store=False)
        rid = answer(conn)[-1]["response"]["id"]
        with any_client.responses.connect() as other:
            other.response.create(model="test-model", input="y", previous_response_id=rid)
            error_of(answer(other), 404, "previous_response_id", "previous_response_not_found")
        with pytest.raises(openai.NotFoundError):
            any_client.responses.create(model="test-model", input="y", previous_response_id=rid)
    with any_client.responses.connect() as later:  # a new connection of the same client: gone too
        later.response.create(model="test-model", input="y", previous_response_id=rid)
        error_of(answer(later), 404, "previous_response_id", "previous_response_not_found")
    assert len(fake.requests) == 1  # no refused turn reached the model


def test_a_stored_turn_after_a_store_false_one_continues_whole(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a1"), Reply(text="a2"), Reply(text="a3"))
    with any_client.responses.connect() as conn:
        conn.response.create(model="test-model", input="q1", store=False)
        r1 = answer(conn)[-1]["response"]
        conn.response.create(model="test-model", input="q2", previous_response_id=r1["id"])  # stored
        r2 = answer(conn)[-1]["response"]
        conn.response.create(model="test-model", input="q3", previous_response_id=r2["id"], store=False)
        answer(conn)
        assert [m["content"] for m in fake.requests[-1]["body"]["messages"]] == ["q1", "a1", "q2", "a2", "q3"]
        any_client.responses.delete(r2["id"])  # deleted over HTTP: this connection forgets it too
        conn.response.create(model="test-model", input="q4", previous_response_id=r2["id"])
        error_of(answer(conn), 404, "previous_response_id", "previous_response_not_found")


def test_events_are_the_sse_events(server: RespdServer, client: openai.OpenAI, fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    fake.script(Reply(text="one two three", usage=usage), Reply(text="one two three", usage=usage))
    body = {"model": "test-model", "input": "x", "metadata": {"k": "v"}}
    r = httpx.post(server.url + "/v1/responses", json={**body, "stream": True}, timeout=20)
    sse = sse_events(r.text)
    with client.responses.connect() as conn:
        conn.response.create(**body)  # type: ignore[arg-type]
        ws = answer(conn)
    assert [e["type"] for e in ws] == [e["type"] for e in sse] == TEXT_SEQUENCE
    assert [e["sequence_number"] for e in ws] == list(range(len(TEXT_SEQUENCE)))
    assert all("obfuscation" in e for e in ws if e["type"].endswith(".delta"))  # on by default, as SSE

    assert [_strip(e) for e in ws] == [_strip(e) for e in sse]
    final = ws[-1]["response"]
    assert httpx.get(server.url + f"/v1/responses/{final['id']}").json() == final  # stored as it streamed
    assert client.responses.retrieve(final["id"]).output_text == "one two three"


def _strip(value: Any) -> Any:
    """An event without what differs between two runs of the same reply (ids, times, padding)."""
    if isinstance(value, dict):
        return {k: ("*" if k in ("id", "item_id", "created_at", "completed_at", "obfuscation") else _strip(v))
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_bad_messages_get_an_error_event_and_the_connection_stays_usable(
    raw_ws: ClientConnection, fake: FakeUpstream
) -> None:
    bad: list[tuple[str, int, str | None, str]] = [
        ("not json", 400, None, "invalid_json"),
        ("", 400, None, "invalid_json"),
        ("[1, 2]", 400, None, "invalid_type"),
        ('{"model": "test-model", "input": "x"}', 400, "type", "missing_required_parameter"),
        ('{"type": "response.cancel"}', 400, "type", "invalid_value"),
        ('{"type": 7}', 400, "type", "invalid_type"),
        ('{"type": "response.steer", "input": "x"}', 400, "type", "unsupported_parameter"),
        ('{"type": "response.create", "model": "test-model", "input": "x", "bogus": 1}', 400, "bogus",
         "unknown_parameter"),
        ('{"type": "response.create", "model": "test-model", "input": "x", "temperature": "hot"}', 400,
         "temperature", "invalid_type"),
        ('{"type": "response.create", "input": "x"}', 400, "model", "missing_required_parameter"),
        ('{"type": "response.create", "model": "test-model", "input": [{"role": "user"}]}', 400,
         "input[0].content", "missing_required_parameter"),
        ('{"type": "response.create", "model": "test-model", "input": "x", "background": true}', 400,
         "background", "unsupported_parameter"),
        ('{"type": "response.create", "model": "no-such-model", "input": "x"}', 400, "model", "model_not_found"),
        ('{"type": "response.create", "model": "test-model", "input": "x", "previous_response_id": "resp_nope"}',
         404, "previous_response_id", "previous_response_not_found"),
        ('{"type": "response.create", "stream_id": "bad lane!", "model": "test-model", "input": "x"}', 400,
         "stream_id", "invalid_value"),
        ('{"type": "response.create", "model": "test-model", "input": "x", "generate": "no"}', 400, "generate",
         "invalid_type"),
    ]  # fmt: skip
    for message, status, param, code in bad:
        raw_ws.send(message)
        err = error_of(raw_answer(raw_ws), status, param, code)
        assert err["type"] == "invalid_request_error", (message, err)
    raw_ws.send(b"\xff binary, not JSON")
    error_of(raw_answer(raw_ws), 400, None, "invalid_json")
    fake.script(Reply(text="still here"))
    raw_ws.send(orjson.dumps({"type": "response.create", "model": "test-model", "input": "x"}))  # binary works too
    events = raw_answer(raw_ws)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "still here"
    assert len(fake.requests) == 1  # nothing refused reached the model


def test_an_error_names_the_lane_it_belongs_to(raw_ws: ClientConnection) -> None:
    raw_ws.send('{"type": "response.create", "stream_id": "lane_1", "model": "test-model"}')
    events = raw_answer(raw_ws)
    error_of(events, 400, "input", "missing_required_parameter")
    assert events[0]["stream_id"] == "lane_1"


def test_creates_sent_together_run_one_after_another(raw_ws: ClientConnection, fake: FakeUpstream) -> None:
    """A create sent while a response runs waits its turn; events carry the lane they were asked on."""
    fake.script(Reply(text="first answer here", delay_s=0.02), Reply(text="second"))
    raw_ws.send(orjson.dumps({"type": "response.create", "stream_id": "a", "model": "test-model", "input": "1",
                              "stream": True}).decode())  # fmt: skip
    raw_ws.send(orjson.dumps({"type": "response.create", "stream_id": "b", "model": "test-model", "input": "2",
                              "stream": False, "stream_options": {"include_obfuscation": False}}).decode())  # fmt: skip
    first, second = raw_answer(raw_ws), raw_answer(raw_ws)
    assert [e["type"] for e in first][-1] == [e["type"] for e in second][-1] == "response.completed"
    assert {e["stream_id"] for e in first} == {"a"} and {e["stream_id"] for e in second} == {"b"}
    assert first[-1]["response"]["output"][0]["content"][0]["text"] == "first answer here"
    assert second[-1]["response"]["output"][0]["content"][0]["text"] == "second"
    assert not any("obfuscation" in e for e in second)
    assert [r["body"]["messages"][-1]["content"] for r in fake.requests] == ["1", "2"]


def test_too_many_waiting_messages_are_refused_at_once(raw_ws: ClientConnection, fake: FakeUpstream) -> None:
    fake.script(Reply(fault="hang"))
    raw_ws.send('{"type": "response.create", "model": "test-model", "input": "x"}')
    assert [orjson.loads(raw_ws.recv())["type"] for _ in range(2)] == ["response.created", "response.in_progress"]
    for _ in range(65):  # the running response's turn is not over: 64 wait, the 65th is refused
        raw_ws.send("{}")
    err = error_of([check_ws_event(orjson.loads(raw_ws.recv()))], 429, None, "rate_limit_exceeded")
    assert err["type"] == "rate_limit_error" and err["headers"] == {"retry-after": "1"}


def test_client_disconnect_cancels_the_response(any_server: RespdServer, fake: FakeUpstream) -> None:
    fake.script(Reply(text=" ".join(["word"] * 200), delay_s=0.05))
    with connect(ws_url(any_server)) as ws:
        ws.send('{"type": "response.create", "model": "test-model", "input": "x"}')
        rid = orjson.loads(ws.recv())["response"]["id"]
        while orjson.loads(ws.recv())["type"] != "response.output_text.delta":
            pass
    assert fake.wait_for_disconnect(5), "respd kept reading from the upstream after its client left"
    body = _settled(any_server, rid)
    assert body["status"] == "cancelled"
    assert body["output"][0]["content"][0]["text"].startswith("word")
    check_response(body)


def _settled(server: RespdServer, rid: str) -> dict[str, Any]:
    """The stored response once it has left ``in_progress`` (its terminal event is committed)."""
    replay = sse_events(httpx.get(server.url + f"/v1/responses/{rid}", params={"stream": "true"}, timeout=10).text)
    assert replay[-1]["type"] in TERMINAL
    body: dict[str, Any] = httpx.get(server.url + f"/v1/responses/{rid}").json()
    assert body == replay[-1]["response"]
    return body


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-ws-keys")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield srv
    srv.stop()


def test_the_handshake_needs_an_api_key(keyed: RespdServer, fake: FakeUpstream) -> None:
    for headers, code in (({}, "missing_api_key"), ({"Authorization": "Bearer key-mallory"}, "invalid_api_key")):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(keyed), additional_headers=headers)
        assert refused.value.response.status_code == 401
        err = orjson.loads(refused.value.response.body or b"{}")["error"]
        assert err["code"] == code and err["type"] == "invalid_request_error"
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope") as c, pytest.raises(InvalidStatus):
        c.responses.connect().enter()
    fake.script(Reply(text="mine"))
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-alice") as alice, \
            openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-bob") as bob:  # fmt: skip
        with alice.responses.connect() as conn:
            conn.response.create(model="test-model", input="x")
            rid = answer(conn)[-1]["response"]["id"]
        assert alice.responses.retrieve(rid).output_text == "mine"
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(rid)
        with bob.responses.connect() as conn:
            conn.response.create(model="test-model", input="x", previous_response_id=rid)
            error_of(answer(conn), 404, "previous_response_id", "previous_response_not_found")


def test_a_warm_up_records_the_context_without_asking_the_model(
    server: RespdServer, client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="Hi Bo."))
    with client.responses.connect() as conn:
        conn.response.create(model="test-model", input="I am Bo.", generate=False, store=False)
        warm = answer(conn)
        conn.response.create(model="test-model", input="Hello?", previous_response_id=warm[-1]["response"]["id"])
        reply = answer(conn)[-1]["response"]
    assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
    assert warm[-1]["response"]["output"] == [] and warm[-1]["response"]["usage"]["output_tokens"] == 0
    assert reply["output"][0]["content"][0]["text"] == "Hi Bo."
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "I am Bo."},
        {"role": "user", "content": "Hello?"},
    ]
    assert len(fake.requests) == 1
    # `generate` belongs to WebSocket mode only, as in the API.
    r = httpx.post(server.url + "/v1/responses", json={"model": "test-model", "input": "x", "generate": False})
    check_error(r, 400, param="generate", code="unknown_parameter")


def test_a_store_false_tool_loop_continues_with_only_the_tool_output(client: openai.OpenAI, fake: FakeUpstream) -> None:
    """The agent loop WebSocket mode is for: each turn sends only its new items plus previous_response_id."""
    weather = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    fake.script(Reply(tool_calls=[{"id": "call_w", "name": "weather", "arguments": "{}"}]), Reply(text="Rain."))
    with client.responses.connect() as conn:
        conn.response.create(model="test-model", input="Weather?", tools=[weather], store=False)  # type: ignore[list-item]
        call = answer(conn)[-1]["response"]
        assert call["output"][0]["type"] == "function_call"
        conn.response.create(model="test-model", tools=[weather], store=False, previous_response_id=call["id"],  # type: ignore[list-item]
                             input=[{"type": "function_call_output", "call_id": "call_w", "output": "rain"}])  # fmt: skip
        done = answer(conn)[-1]["response"]
        # An output for a call this chain never made is refused as over HTTP, naming the item.
        conn.response.create(model="test-model", tools=[weather], store=False, previous_response_id=call["id"],  # type: ignore[list-item]
                             input=[{"type": "function_call_output", "call_id": "call_x", "output": "?"}])  # fmt: skip
        error_of(answer(conn), 400, "input[0].call_id")
    assert done["output"][0]["content"][0]["text"] == "Rain."
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs[1]["tool_calls"][0]["id"] == "call_w"
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_w", "content": "rain"}


def test_a_connection_remembers_its_last_32_responses(client: openai.OpenAI, fake: FakeUpstream) -> None:
    """The memory is bounded: the least recently used store:false response is forgotten first."""
    with client.responses.connect() as conn:
        ids = []
        for i in range(33):
            conn.response.create(model="test-model", input=f"turn {i}", store=False)
            ids.append(answer(conn)[-1]["response"]["id"])
        conn.response.create(model="test-model", input="again", previous_response_id=ids[0], store=False)
        error_of(answer(conn), 404, "previous_response_id", "previous_response_not_found")
        conn.response.create(model="test-model", input="again", previous_response_id=ids[1], store=False)
        assert answer(conn)[-1]["response"]["status"] == "completed"
    assert [m["content"] for m in fake.requests[-1]["body"]["messages"]] == ["turn 1", "echo: turn 1", "again"]


def test_a_failed_continuation_evicts_what_it_continued(client: openai.OpenAI, fake: FakeUpstream) -> None:
    """The Open Responses suite's "failed continuation evicts cache": once a continuation of a store:false
    response fails, the connection no longer continues from it; a stored one is still found in the database."""
    fake.script(Reply(text="one"), Reply(status=500), Reply(text="two"), Reply(text="three"), Reply(status=500))
    with client.responses.connect() as conn:
        conn.response.create(model="test-model", input="a", store=False)
        kept = answer(conn)[-1]["response"]["id"]
        conn.response.create(model="test-model", input="b", previous_response_id=kept, store=False)
        assert answer(conn)[-1]["response"]["status"] == "failed"
        conn.response.create(model="test-model", input="c", previous_response_id=kept, store=False)
        error_of(answer(conn), 404, "previous_response_id", "previous_response_not_found")
        # refused before running counts too
        conn.response.create(model="test-model", input="d", store=False)
        other = answer(conn)[-1]["response"]["id"]
        conn.response.create(model="test-model", input="e", previous_response_id=other, store=False,
                             temperature=5)  # fmt: skip
        error_of(answer(conn), 400, "temperature")
        conn.response.create(model="test-model", input="f", previous_response_id=other, store=False)
        error_of(answer(conn), 404, "previous_response_id", "previous_response_not_found")
        # a stored response whose continuation failed is still there to continue, from the database
        conn.response.create(model="test-model", input="g")
        stored = answer(conn)[-1]["response"]["id"]
        conn.response.create(model="test-model", input="h", previous_response_id=stored, store=False)
        assert answer(conn)[-1]["response"]["status"] == "failed"
        conn.response.create(model="test-model", input="i", previous_response_id=stored, store=False)
        assert answer(conn)[-1]["response"]["status"] == "completed"
