"""/v1/conversations with the official SDK on SQLite and PostgreSQL: conversations, their items, errors, tenants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.checks import check_conversation, check_conversation_item, check_conversation_item_list, check_error
from tests.conftest import start_server
from tests.servers import RespdServer


def _msg(text: str, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": text, **extra}


def _texts(items: list[Any]) -> list[str]:
    return [it.content[0].text for it in items]


def test_create_retrieve_update_delete(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    url = any_server.url + "/v1/conversations"
    created = any_client.conversations.create(metadata={"topic": "demo"}, items=[_msg("Hello!")])  # type: ignore[list-item]
    assert created.id.startswith("conv_") and created.object == "conversation" and created.metadata == {"topic": "demo"}
    raw = check_conversation(httpx.get(f"{url}/{created.id}").json())
    assert raw == created.model_dump() and raw["created_at"] > 0
    assert any_client.conversations.retrieve(created.id) == created

    updated = any_client.conversations.update(created.id, metadata={"topic": "project-x", "owner": "ada"})
    assert updated.metadata == {"topic": "project-x", "owner": "ada"} and updated.created_at == created.created_at
    assert check_conversation(httpx.get(f"{url}/{created.id}").json())["metadata"] == updated.metadata

    bare = check_conversation(httpx.post(url).json())  # the body is optional
    assert bare["metadata"] == {} and bare["id"] != created.id
    assert check_conversation(httpx.post(f"{url}/{bare['id']}", json={"metadata": None}).json())["metadata"] == {}

    deleted = httpx.delete(f"{url}/{created.id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": created.id, "object": "conversation.deleted", "deleted": True}
    for method, path in (("GET", ""), ("POST", ""), ("DELETE", ""), ("GET", "/items"), ("POST", "/items")):
        body = {"metadata": {}} if path == "" and method == "POST" else {"items": [_msg("x")]}
        err = check_error(httpx.request(method, f"{url}/{created.id}{path}", json=body), 404, param="conversation_id")
        assert created.id in err["message"]
    with pytest.raises(openai.NotFoundError):
        any_client.conversations.retrieve(created.id)


def test_items_get_ids_and_keep_their_order(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    conv = any_client.conversations.create(items=[_msg("one"), _msg("two", id="msg_client_two"),
                                                  _msg("three", role="assistant")])  # type: ignore[list-item]  # fmt: skip
    url = f"{any_server.url}/v1/conversations/{conv.id}/items"
    listed = check_conversation_item_list(httpx.get(url, params={"order": "asc"}).json())
    assert [it["content"][0] for it in listed["data"]] == [
        {"type": "input_text", "text": "one"}, {"type": "input_text", "text": "two"},
        {"type": "output_text", "text": "three", "annotations": [], "logprobs": []},
    ]  # fmt: skip
    ids = [it["id"] for it in listed["data"]]
    assert ids[0].startswith("msg_") and ids[1] == "msg_client_two" and len(set(ids)) == 3
    assert all(it["status"] == "completed" and it["type"] == "message" for it in listed["data"])

    added = any_client.conversations.items.create(conv.id, items=[_msg("four"), _msg("five")])  # type: ignore[list-item]
    raw_added = added.model_dump(exclude_unset=True)
    check_conversation_item_list(raw_added)
    assert _texts(added.data) == ["four", "five"] and not added.has_more
    assert _texts(any_client.conversations.items.list(conv.id, order="asc")) == ["one", "two", "three", "four", "five"]
    assert _texts(any_client.conversations.items.list(conv.id)) == ["five", "four", "three", "two", "one"]  # desc

    got = any_client.conversations.items.retrieve("msg_client_two", conversation_id=conv.id)
    assert got.id == "msg_client_two"
    assert check_conversation_item(httpx.get(f"{url}/msg_client_two").json())["role"] == "user"
    after = any_client.conversations.items.delete("msg_client_two", conversation_id=conv.id)
    assert after.model_dump() == any_client.conversations.retrieve(conv.id).model_dump()  # the conversation
    check_conversation(httpx.get(f"{any_server.url}/v1/conversations/{conv.id}").json())
    check_error(httpx.get(f"{url}/msg_client_two"), 404, param="item_id")
    check_error(httpx.delete(f"{url}/msg_client_two"), 404, param="item_id")
    assert _texts(any_client.conversations.items.list(conv.id, order="asc")) == ["one", "three", "four", "five"]

    empty = any_client.conversations.create()
    check_conversation_item_list(httpx.get(f"{any_server.url}/v1/conversations/{empty.id}/items").json())


def test_items_paging(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    conv = any_client.conversations.create(items=[_msg(f"m{i}") for i in range(20)])  # type: ignore[misc]
    any_client.conversations.items.create(conv.id, items=[_msg(f"m{i}") for i in range(20, 35)])  # type: ignore[misc]
    page = any_client.conversations.items.list(conv.id)
    assert len(page.data) == 20 and page.has_more and _texts(page.data)[0] == "m34"
    texts = _texts(list(any_client.conversations.items.list(conv.id, order="asc", limit=6)))
    assert texts == [f"m{i}" for i in range(35)]  # the SDK follows `after` through every page
    url = f"{any_server.url}/v1/conversations/{conv.id}/items"
    first = check_conversation_item_list(httpx.get(url, params={"limit": 4, "order": "asc"}).json())
    assert first["has_more"] and _texts_raw(first) == ["m0", "m1", "m2", "m3"]
    nxt = check_conversation_item_list(
        httpx.get(url, params={"limit": 4, "order": "asc", "after": first["last_id"]}).json()
    )
    assert _texts_raw(nxt) == ["m4", "m5", "m6", "m7"]
    last = check_conversation_item_list(
        httpx.get(url, params={"limit": 4, "order": "desc", "after": nxt["first_id"]}).json()
    )
    assert _texts_raw(last) == ["m3", "m2", "m1", "m0"] and not last["has_more"]
    include = ["message.output_text.logprobs", "reasoning.encrypted_content"]
    assert len(any_client.conversations.items.list(conv.id, include=include).data) == 20  # type: ignore[arg-type]
    for bad in ({"limit": 0}, {"limit": 101}, {"order": "up"}, {"limit": "x"}, {"after": "msg_nope"}):
        check_error(httpx.get(url, params=bad), 400, param=next(iter(bad)))
    check_error(httpx.get(url, params={"include[]": "everything"}), 400, param="include", code="invalid_value")


def _texts_raw(page: dict[str, Any]) -> list[str]:
    return [it["content"][0]["text"] for it in page["data"]]


def test_item_references_and_other_item_types(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    resp = any_client.responses.create(model="test-model", input="ping")
    conv = any_client.conversations.create(items=[
        {"type": "item_reference", "id": resp.output[0].id},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ])  # type: ignore[list-item]  # fmt: skip
    listed = check_conversation_item_list(
        httpx.get(f"{any_server.url}/v1/conversations/{conv.id}/items", params={"order": "asc"}).json())  # fmt: skip
    assert [it["type"] for it in listed["data"]] == ["message", "function_call", "function_call_output"]
    assert listed["data"][0] == resp.output[0].model_dump(exclude_unset=True)  # the referenced item, id and all
    assert listed["data"][1]["id"].startswith("fc_") and listed["data"][2]["id"].startswith("fco_")


def test_bad_requests_change_nothing(any_client: openai.OpenAI, any_server: RespdServer) -> None:
    url = any_server.url + "/v1/conversations"
    conv = any_client.conversations.create(metadata={"k": "v"}, items=[_msg("keep", id="msg_keep")])  # type: ignore[list-item]
    curl = f"{url}/{conv.id}"
    too_many = {f"k{i}": "v" for i in range(17)}
    check_error(httpx.post(url, json={"metadata": too_many}), 400, param="metadata", code="object_above_max_properties")
    check_error(
        httpx.post(curl, json={"metadata": too_many}), 400, param="metadata", code="object_above_max_properties"
    )
    check_error(httpx.post(curl, json={"metadata": {"k": "x" * 513}}), 400, param="metadata.k")
    check_error(httpx.post(curl, json={}), 400, param="metadata", code="missing_required_parameter")
    check_error(httpx.post(curl, json={"metadata": {"k": 1}}), 400, param="metadata.k", code="invalid_type")
    check_error(httpx.post(url, json={"items": [_msg(str(i)) for i in range(21)]}), 400, param="items",
                code="array_above_max_length")  # fmt: skip
    check_error(httpx.post(f"{curl}/items", json={"items": [_msg(str(i)) for i in range(21)]}), 400, param="items",
                code="array_above_max_length")  # fmt: skip
    check_error(httpx.post(f"{curl}/items", json={}), 400, param="items", code="missing_required_parameter")
    check_error(httpx.post(f"{curl}/items", json={"items": [{"role": "robot", "content": "x"}]}), 400,
                param="items[0].role")  # fmt: skip
    check_error(httpx.post(f"{curl}/items", json={"items": [_msg("a"), {"type": "item_reference", "id": "msg_nope"}]}),
                404, param="items[1].id")  # fmt: skip
    dup = check_error(httpx.post(f"{curl}/items", json={"items": [_msg("again", id="msg_keep")]}), 400, param="items")
    assert "Duplicate item found with id msg_keep" in dup["message"]
    check_error(httpx.post(url, json={"items": [_msg("a", id="msg_x"), _msg("b", id="msg_x")]}), 400, param="items")
    check_error(httpx.post(url, json={"metadata": {}, "color": "red"}), 400, param="color", code="unknown_parameter")
    check_error(httpx.post(f"{curl}/items", params={"include[]": "nope"}, json={"items": [_msg("x")]}), 400,
                param="include")  # fmt: skip
    check_error(httpx.get(f"{url}/conv_nope"), 404, param="conversation_id")
    check_error(httpx.get(f"{curl}/items/msg_nope"), 404, param="item_id")
    assert any_client.conversations.retrieve(conv.id).metadata == {"k": "v"}
    assert [it.id for it in any_client.conversations.items.list(conv.id)] == ["msg_keep"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-conv-keys")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield srv
    srv.stop()


def test_tenants_are_isolated(keyed: RespdServer) -> None:
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-alice", max_retries=0) as alice, \
            openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-bob", max_retries=0) as bob:  # fmt: skip
        conv = alice.conversations.create(metadata={"owner": "alice"}, items=[_msg("secret", id="msg_secret")])  # type: ignore[list-item]
        attempts = [
            lambda: bob.conversations.retrieve(conv.id),
            lambda: bob.conversations.update(conv.id, metadata={"owner": "bob"}),
            lambda: bob.conversations.delete(conv.id),
            lambda: bob.conversations.items.list(conv.id),
            lambda: bob.conversations.items.create(conv.id, items=[_msg("mine")]),  # type: ignore[list-item]
            lambda: bob.conversations.items.retrieve("msg_secret", conversation_id=conv.id),
            lambda: bob.conversations.items.delete("msg_secret", conversation_id=conv.id),
            lambda: bob.responses.create(model="test-model", input="x", conversation=conv.id),
        ]
        for attempt in attempts:
            with pytest.raises(openai.NotFoundError):
                attempt()
        check_error(httpx.get(f"{keyed.url}/v1/conversations/{conv.id}"), 401)
        assert alice.conversations.retrieve(conv.id).metadata == {"owner": "alice"}
        assert [it.id for it in alice.conversations.items.list(conv.id)] == ["msg_secret"]


def test_racing_adds_of_one_item_id_let_one_in(any_server: RespdServer) -> None:
    """Requests racing to add the same client-given id each pass the check; the unique constraint lets one in and
    the others get the duplicate error, as one at a time would."""
    import asyncio

    url = any_server.url + "/v1/conversations"
    cid = httpx.post(url, json={}).json()["id"]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as http:
            body = {"items": [_msg("same", id="msg_raced"), _msg("other")]}
            return await asyncio.gather(*(http.post(f"{url}/{cid}/items", json=body) for _ in range(12)))

    answers = asyncio.run(race())
    assert sorted(r.status_code for r in answers) == [200] + [400] * 11, [r.text for r in answers]
    for r in answers:
        if r.status_code == 400:
            assert "Duplicate item found with id msg_raced" in check_error(r, 400, param="items")["message"]
    items = check_conversation_item_list(httpx.get(f"{url}/{cid}/items", params={"order": "asc"}).json())["data"]
    assert [it["id"] for it in items].count("msg_raced") == 1 and len(items) == 2


def test_item_pages_are_read_by_position(any_server: RespdServer) -> None:
    """Paging walks the conversation by position from the `after` item, with deleted items skipped, both ways."""
    url = any_server.url + "/v1/conversations"
    cid = httpx.post(url, json={"items": [_msg(f"p{i}", id=f"msg_p{i}") for i in range(10)]}).json()["id"]
    for gone in ("msg_p3", "msg_p4", "msg_p8"):
        assert httpx.delete(f"{url}/{cid}/items/{gone}").status_code == 200
    kept = [f"msg_p{i}" for i in range(10) if i not in (3, 4, 8)]
    for order, expected in (("asc", kept), ("desc", kept[::-1])):
        seen, after = [], None
        while True:
            params: dict[str, Any] = {"order": order, "limit": 2, **({"after": after} if after else {})}
            body = check_conversation_item_list(httpx.get(f"{url}/{cid}/items", params=params).json())
            seen += [it["id"] for it in body["data"]]
            if not body["has_more"]:
                break
            after = body["last_id"]
        assert seen == expected, (order, seen)
    check_error(httpx.get(f"{url}/{cid}/items", params={"after": "msg_p3"}), 400, param="after")  # deleted: unknown
