"""Responses that run in a conversation (SDK, real server, SQLite and PostgreSQL): the conversation is the
context, each turn is appended whole when it ends, and racing turns neither interleave nor get lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_conversation_item_list, check_error, check_event, check_response, sse_events
from tests.conftest import start_server
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer


def _all_items(client: openai.OpenAI, conversation_id: str) -> list[Any]:
    return list(client.conversations.items.list(conversation_id, order="asc", limit=100))


def _turn_ids(client: openai.OpenAI, resp: Any) -> list[str]:
    """What a response adds to its conversation: its input items, then its output items."""
    inputs = [it.id for it in client.responses.input_items.list(resp.id, order="asc", limit=100)]
    return inputs + [it.id for it in resp.output]


def test_turns_share_the_conversation(any_client: openai.OpenAI, any_server: RespdServer, fake: FakeUpstream) -> None:
    conv = any_client.conversations.create(items=[{"type": "message", "role": "user", "content": "I am Ada."}])
    fake.script(Reply(text="Hello Ada."), Reply(text="You are Ada."), Reply(text="I don't know."))
    r1 = any_client.responses.create(model="test-model", input="Hi!", conversation=conv.id)
    assert r1.conversation is not None and r1.conversation.id == conv.id
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "I am Ada."}, {"role": "user", "content": "Hi!"}]  # fmt: skip

    r2 = any_client.responses.create(model="test-model", input="Who am I?", conversation={"id": conv.id},
                                     instructions="Be brief.")  # fmt: skip
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am Ada."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello Ada."}, {"role": "user", "content": "Who am I?"},
    ]  # fmt: skip
    items = _all_items(any_client, conv.id)
    assert [it.id for it in items][1:] == _turn_ids(any_client, r1) + _turn_ids(any_client, r2)
    assert [it.id for it in any_client.responses.input_items.list(r2.id)] == [items[-2].id]  # this turn's input only
    stored = check_response(httpx.get(f"{any_server.url}/v1/responses/{r2.id}").json())
    assert stored["conversation"] == {"id": conv.id} and stored["previous_response_id"] is None

    # an item deleted from the conversation is gone from the next turn's context
    any_client.conversations.items.delete(items[0].id, conversation_id=conv.id)
    any_client.conversations.items.delete(r1.output[0].id, conversation_id=conv.id)
    any_client.responses.create(model="test-model", input="And now?", conversation=conv.id)
    assert fake.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "Hi!"}, {"role": "user", "content": "Who am I?"},
        {"role": "assistant", "content": "You are Ada."}, {"role": "user", "content": "And now?"},
    ]  # fmt: skip
    check_conversation_item_list(
        httpx.get(f"{any_server.url}/v1/conversations/{conv.id}/items", params={"limit": 100}).json())  # fmt: skip


def test_every_streamed_snapshot_names_the_conversation(any_server: RespdServer, any_client: openai.OpenAI) -> None:
    conv = any_client.conversations.create()
    body = {"model": "test-model", "input": "stream it", "conversation": conv.id, "stream": True}
    events = [check_event(e) for e in sse_events(httpx.post(any_server.url + "/v1/responses", json=body).text)]
    snapshots = [e["response"] for e in events if "response" in e]
    assert len(snapshots) >= 3 and all(s["conversation"] == {"id": conv.id} for s in snapshots)
    final = snapshots[-1]
    assert final["status"] == "completed"
    # the terminal event is durable with the turn already in the conversation
    assert [it.id for it in _all_items(any_client, conv.id)][-1] == final["output"][0]["id"]
    plain = any_client.responses.create(model="test-model", input="no conversation")
    assert check_response(httpx.get(f"{any_server.url}/v1/responses/{plain.id}").json())["conversation"] is None


def test_which_endings_join_the_conversation(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    conv = any_client.conversations.create()
    fake.script(Reply(status=500, error_body={"error": {"message": "boom", "type": "server_error"}}))
    failed = any_client.responses.create(model="test-model", input="will fail", conversation=conv.id)
    assert failed.status == "failed" and failed.conversation is not None
    assert _all_items(any_client, conv.id) == []  # a failed turn adds nothing: a retry won't repeat the message

    fake.script(Reply(text="cut short", finish_reason="length"))
    cut = any_client.responses.create(model="test-model", input="long one", conversation=conv.id)
    assert cut.status == "incomplete"
    assert [it.id for it in _all_items(any_client, conv.id)] == _turn_ids(any_client, cut)

    unstored = any_client.responses.create(model="test-model", input="off the record", conversation=conv.id,
                                           store=False)  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        any_client.responses.retrieve(unstored.id)
    tail = _all_items(any_client, conv.id)[-2:]  # the conversation keeps the turn all the same
    assert tail[0].content[0].text == "off the record" and tail[1].id == unstored.output[0].id  # type: ignore[union-attr]


def test_conversation_request_errors(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    conv = any_client.conversations.create(items=[{"type": "message", "role": "user", "content": "hi", "id": "msg_a"}])  # type: ignore[list-item]
    prev = any_client.responses.create(model="test-model", input="x")
    url = any_server.url + "/v1/responses"
    err = check_error(httpx.post(url, json={"model": "test-model", "input": "x", "conversation": conv.id,
                                            "previous_response_id": prev.id}), 400, param="conversation")  # fmt: skip
    assert "previous_response_id" in err["message"]
    check_error(httpx.post(url, json={"model": "test-model", "input": "x", "conversation": "conv_nope"}), 404,
                param="conversation")  # fmt: skip
    check_error(httpx.post(url, json={"model": "test-model", "input": "x", "conversation": {"id": 3}}), 400,
                param="conversation.id")  # fmt: skip
    check_error(httpx.post(url, json={"model": "test-model", "conversation": conv.id,
                                      "input": [{"role": "user", "content": "again", "id": "msg_a"}]}), 400,
                param="input")  # fmt: skip
    with pytest.raises(openai.BadRequestError):
        any_client.responses.create(model="test-model", input="x", conversation=conv.id, previous_response_id=prev.id)
    assert [it.id for it in _all_items(any_client, conv.id)] == ["msg_a"]
    any_client.conversations.delete(conv.id)
    with pytest.raises(openai.NotFoundError) as gone:
        any_client.responses.create(model="test-model", input="x", conversation=conv.id)
    assert gone.value.body["param"] == "conversation"  # type: ignore[index]


def test_deleting_a_conversation_mid_turn(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    conv = any_client.conversations.create()
    fake.script(Reply(text="slow answer here", delay_s=0.3))
    with any_client.responses.stream(model="test-model", input="x", conversation=conv.id) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
        any_client.conversations.delete(conv.id)
        final = stream.get_final_response()
    assert final.status == "completed"  # the turn ends well; there is no conversation left to add it to
    assert any_client.responses.retrieve(final.id).status == "completed"
    with pytest.raises(openai.NotFoundError):
        any_client.conversations.items.list(conv.id)


def _race(clients: list[openai.OpenAI], conversation_id: str, fake: FakeUpstream) -> None:
    """8 responses of 3 input items each and 4 item additions of 2, at once, across ``clients``."""
    fake.script(*[Reply(text=f"answer {k}", delay_s=0.02) for k in range(8)])

    def respond(k: int) -> Any:
        msgs = [{"role": "user", "content": f"r{k}-{j}"} for j in range(3)]
        return clients[k % len(clients)].responses.create(model="test-model", input=msgs, conversation=conversation_id)  # type: ignore[arg-type]

    def add(k: int) -> Any:
        items = [{"type": "message", "role": "user", "content": f"i{k}-{j}"} for j in range(2)]
        return clients[k % len(clients)].conversations.items.create(conversation_id, items=items)  # type: ignore[arg-type]

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(respond, range(8)))
        additions = [f.result() for f in [pool.submit(add, k) for k in range(4)]]
    assert all(r.status == "completed" for r in responses)
    runs = [_turn_ids(clients[0], r) for r in responses] + [[it.id for it in a.data] for a in additions]
    order = [it.id for it in _all_items(clients[0], conversation_id)]
    assert sorted(order) == sorted(i for run in runs for i in run)  # nothing lost, nothing extra
    assert len(order) == 8 * 4 + 4 * 2
    for run in runs:  # each one's items side by side, in their own order
        start = order.index(run[0])
        assert order[start : start + len(run)] == run


def test_concurrent_turns_append_whole(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    conv = any_client.conversations.create()
    _race([any_client], conv.id, fake)


def test_two_servers_append_to_one_conversation(
    any_server: RespdServer, any_client: openai.OpenAI, fake: FakeUpstream, tmp_path: Path, config_path: str
) -> None:
    """Two processes on one database (PostgreSQL: replicas; SQLite: two writers on one file) race on one
    conversation: the position counter is bumped inside each append's transaction, so they serialize."""
    other = start_server(tmp_path, config_path, any_server.database_url)
    try:
        with openai.OpenAI(base_url=other.url + "/v1", api_key="x", max_retries=0, timeout=20) as second:
            conv = any_client.conversations.create()
            _race([any_client, second], conv.id, fake)
    finally:
        other.stop()
