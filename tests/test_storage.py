"""Stored responses on SQLite and PostgreSQL: retrieve, delete, input items, chains, replay and resume."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.checks import check_error, check_event, check_response, sse_events
from tests.fake_upstream import FakeUpstream, Reply
from tests.servers import RespdServer


def test_retrieve_returns_the_created_response(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    created = any_client.responses.create(model="test-model", input="store me", metadata={"x": "1"})
    again = any_client.responses.retrieve(created.id)
    assert again.model_dump() == created.model_dump()
    check_response(httpx.get(f"{any_server.url}/v1/responses/{created.id}").json())


def test_delete_then_get_is_404(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    created = any_client.responses.create(model="test-model", input="bye")
    r = httpx.delete(f"{any_server.url}/v1/responses/{created.id}")
    assert r.status_code == 200 and r.json() == {"id": created.id, "object": "response", "deleted": True}
    check_error(httpx.get(f"{any_server.url}/v1/responses/{created.id}"), 404)
    check_error(httpx.delete(f"{any_server.url}/v1/responses/{created.id}"), 404)
    with pytest.raises(openai.NotFoundError):
        any_client.responses.input_items.list(created.id)


def test_store_false_cannot_be_retrieved_or_chained(any_client: openai.OpenAI) -> None:
    created = any_client.responses.create(model="test-model", input="secret", store=False)
    assert created.status == "completed"
    with pytest.raises(openai.NotFoundError):
        any_client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as err:
        any_client.responses.create(model="test-model", input="next", previous_response_id=created.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_input_items_paging(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    items = [{"role": "user", "content": f"m{i}"} for i in range(25)]
    created = any_client.responses.create(model="test-model", input=items)  # type: ignore[arg-type]
    page = any_client.responses.input_items.list(created.id)
    assert len(page.data) == 20 and page.has_more
    assert page.data[0].content[0].text == "m24"  # default order is desc  # type: ignore[union-attr]
    texts = [it.content[0].text for it in any_client.responses.input_items.list(created.id, order="asc", limit=7)]  # type: ignore[union-attr]
    assert texts == [f"m{i}" for i in range(25)]  # the SDK follows `after` through every page
    raw = httpx.get(
        f"{any_server.url}/v1/responses/{created.id}/input_items", params={"limit": 3, "order": "asc"}
    ).json()
    assert raw["object"] == "list" and raw["has_more"] is True
    assert raw["first_id"] == raw["data"][0]["id"] and raw["last_id"] == raw["data"][-1]["id"]
    nxt = httpx.get(f"{any_server.url}/v1/responses/{created.id}/input_items",
                    params={"limit": 3, "order": "asc", "after": raw["last_id"]}).json()  # fmt: skip
    assert nxt["data"][0]["content"][0]["text"] == "m3"
    for bad in ({"limit": 0}, {"limit": 101}, {"order": "up"}, {"limit": "x"}):
        check_error(httpx.get(f"{any_server.url}/v1/responses/{created.id}/input_items", params=bad), 400)


def test_previous_response_chain(any_client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="first answer"), Reply(text="second answer"), Reply(text="third"))
    r1 = any_client.responses.create(model="test-model", input="q1", instructions="sys one")
    r2 = any_client.responses.create(model="test-model", input="q2", previous_response_id=r1.id)
    any_client.responses.create(model="test-model", input="q3", previous_response_id=r2.id, instructions="sys three")
    msgs = fake.requests[-1]["body"]["messages"]
    assert msgs == [
        {"role": "system", "content": "sys three"},  # instructions are not inherited
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "q3"},
    ]
    assert r2.previous_response_id == r1.id and r2.instructions is None


def test_item_reference_resolves_stored_items(
    any_client: openai.OpenAI, fake: FakeUpstream, any_server: RespdServer
) -> None:
    fake.script(Reply(text="remember me"))
    r1 = any_client.responses.create(model="test-model", input="q1")
    any_client.responses.create(model="test-model", input=[
        {"type": "item_reference", "id": r1.output[0].id}, {"role": "user", "content": "and?"}])  # fmt: skip
    assert fake.requests[-1]["body"]["messages"][0] == {"role": "assistant", "content": "remember me"}
    r = httpx.post(f"{any_server.url}/v1/responses",
                   json={"model": "test-model", "input": [{"type": "item_reference", "id": "msg_nope"}]})  # fmt: skip
    check_error(r, 404, param="input[0].id")


def test_replay_and_resume_a_stored_stream(
    any_client: openai.OpenAI, any_server: RespdServer, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="a b c d"))
    with any_client.responses.stream(model="test-model", input="x") as s:
        live = [(ev.type, ev.sequence_number) for ev in s]
        rid = s.get_final_response().id
    replay = sse_events(httpx.get(f"{any_server.url}/v1/responses/{rid}", params={"stream": "true"}).text)
    assert [(check_event(e)["type"], e["sequence_number"]) for e in replay] == live
    assert [n for _, n in live] == list(range(len(live)))
    resumed = list(any_client.responses.retrieve(rid, stream=True, starting_after=4))
    assert [e.sequence_number for e in resumed] == list(range(5, len(live)))
    assert resumed[-1].type == "response.completed"
    assert resumed[-1].response.model_dump() == any_client.responses.retrieve(rid).model_dump()
