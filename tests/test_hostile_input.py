"""Hostile input found by fuzzing and by hand (issue 19): every one is a 4xx envelope naming the parameter, the
same on SQLite and PostgreSQL, with nothing stored and nothing sent upstream."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import orjson
import pytest

from tests.checks import check_conversation_item_list, check_error, check_response, sse_events
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer
from tests.spec_schemas import validate_openai

OK: dict[str, Any] = {"model": "test-model", "input": "hi"}
BIG = 18446744073709551616  # 2**64: beyond any 64-bit integer
FN = {"type": "function", "name": "f"}

SHAPES: list[tuple[str, dict[str, Any], str]] = [
    ("string item", {**OK, "input": ["hi"]}, "input[0]"),
    ("null item", {**OK, "input": [None]}, "input[0]"),
    ("number tool", {**OK, "tools": [1]}, "tools[0]"),
    ("string content part", {**OK, "input": [{"role": "user", "content": ["a"]}]}, "input[0].content[0]"),
    ("string text format", {**OK, "text": {"format": "x"}}, "text.format"),
    ("object item type", {**OK, "input": [{"type": {}}]}, "input[0].type"),
    ("array item type", {**OK, "input": [{"type": []}]}, "input[0].type"),
    ("object tool type", {**OK, "tools": [{"type": {"a": 1}}]}, "tools[0].type"),
    ("tool without type", {**OK, "tools": [{"name": "f"}]}, "tools[0].type"),
    ("object tool_choice type", {**OK, "tool_choice": {"type": {}}}, "tool_choice.type"),
    ("array tool in namespace", {**OK, "tools": [{"type": "namespace", "name": "n", "tools": [[]]}]}, "tools[0].tools[0]"),
    ("big integer in parameters", {**OK, "tools": [{**FN, "parameters": {"type": "integer", "maximum": BIG}}]},
     "tools[0].parameters.maximum"),
    ("big integer in a schema", {**OK, "text": {"format": {"type": "json_schema", "name": "s",
                                                           "schema": {"type": "integer", "minimum": -BIG}}}},
     "text.format.schema.minimum"),
    ("big max_output_tokens", {**OK, "max_output_tokens": BIG}, "max_output_tokens"),
    ("big integer in metadata-like prompt", {**OK, "prompt": {"id": "p", "variables": {"n": BIG}}}, "prompt.variables.n"),
    ("long item id", {**OK, "input": [{"role": "user", "content": "x", "id": "m" * 129}]}, "input[0].id"),
    ("item id with NUL", {**OK, "input": [{"role": "user", "content": "x", "id": "msg_\x00"}]}, "input[0].id"),
    ("item id with a space", {**OK, "input": [{"type": "function_call_output", "call_id": "c", "output": "o",
                                               "id": "fco 1"}]}, "input[0].id"),
    ("reference id with NUL", {**OK, "input": [{"type": "item_reference", "id": "x\x00"}]}, "input[0].id"),
    ("empty input", {**OK, "input": []}, "input"),
]  # fmt: skip


def _create(server: RespdServer, body: dict[str, Any], mode: str) -> httpx.Response:
    extra = {"stream": {"stream": True}, "background": {"background": True}, "json": {}}[mode]
    return httpx.post(server.url + "/v1/responses", json={**body, **extra}, timeout=20)


@pytest.mark.parametrize(("case", "body", "param"), SHAPES, ids=[c[0] for c in SHAPES])
def test_bad_shapes_and_numbers_are_400s(
    any_server: RespdServer, fake: FakeUpstream, case: str, body: dict[str, Any], param: str
) -> None:
    before = any_server.row_counts()
    for mode in ("json", "stream", "background"):
        err = check_error(_create(any_server, body, mode), 400, param=param)
        assert "Supported values are: ." not in err["message"], err
    assert fake.requests == []
    assert any_server.row_counts() == before


def test_numbers_within_64_bits_run_and_are_stored_as_streamed(any_server: RespdServer) -> None:
    """The largest integers respd takes go through whole: the stream ends, and GET gives what it ended with."""
    tool = {**FN, "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2**63 - 1,
                                                                        "minimum": -(2**63)}}}}  # fmt: skip
    r = _create(any_server, {**OK, "tools": [tool], "max_output_tokens": 2**63 - 1}, "stream")
    events = sse_events(r.text)
    assert events[-1]["type"] == "response.completed", events[-1]
    stored = httpx.get(f"{any_server.url}/v1/responses/{events[-1]['response']['id']}").json()
    assert check_response(stored) == events[-1]["response"]
    assert stored["tools"][0]["parameters"]["properties"]["n"]["maximum"] == 2**63 - 1


@pytest.mark.parametrize("raw", [b'{"model": "test-model", "input": "x", "temperature": 1e400}',
                                 b'{"model": "test-model", "input": "x", "prompt": {"id": "p", "v": NaN}}',
                                 b'{"model": "test-model", "input": "x", "prompt": {"id": "p", "v": -Infinity}}'])  # fmt: skip
def test_numbers_json_cannot_hold_are_400s(any_server: RespdServer, fake: FakeUpstream, raw: bytes) -> None:
    r = httpx.post(any_server.url + "/v1/responses", content=raw, headers={"content-type": "application/json"})
    check_error(r, 400)
    assert fake.requests == []


def test_conversation_items_of_the_wrong_shape(any_server: RespdServer) -> None:
    conv = httpx.post(any_server.url + "/v1/conversations", json={}).json()["id"]
    before = any_server.row_counts()
    for items, param in ((["x"], "items[0]"), ([{"type": {}}], "items[0].type"), ([[1]], "items[0]"),
                         ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": "f" * 200}],
                          "items[0].id")):  # fmt: skip
        check_error(httpx.post(any_server.url + "/v1/conversations", json={"items": items}), 400, param=param)
        check_error(httpx.post(f"{any_server.url}/v1/conversations/{conv}/items", json={"items": items}), 400,
                    param=param)  # fmt: skip
    check_error(httpx.post(any_server.url + "/v1/conversations", json={"items": [{
        "type": "tool_search_call", "arguments": {"n": BIG}}]}), 400, param="items[0].arguments.n")  # fmt: skip
    check_error(httpx.post(any_server.url + "/v1/responses/input_tokens", json={**OK, "max_output_tokens": BIG}),
                400)  # fmt: skip
    check_error(httpx.post(any_server.url + "/v1/responses/input_tokens", json={"model": "test-model", "tools": [{
        **FN, "parameters": {"maximum": BIG}}]}), 400, param="tools[0].parameters.maximum")  # fmt: skip
    assert any_server.row_counts() == before


NUL_GETS = ["/v1/responses/resp_%00", "/v1/responses/resp_%00/input_items", "/v1/responses/resp_%00/input_tokens",
            "/v1/responses/resp_%00?stream=true", "/v1/conversations/conv_%00", "/v1/conversations/conv_%00/items",
            "/v1/conversations/conv_%00/items/msg_%00"]  # fmt: skip


def test_a_nul_in_an_id_is_not_found_on_every_database(any_server: RespdServer) -> None:
    for path in NUL_GETS:
        check_error(httpx.get(any_server.url + path), 404)
    for method, path in (("DELETE", "/v1/responses/resp_%00"), ("POST", "/v1/responses/resp_%00/cancel"),
                         ("DELETE", "/v1/conversations/conv_%00"), ("POST", "/v1/responses/resp_%00/compact")):  # fmt: skip
        check_error(httpx.request(method, any_server.url + path), 404)
    check_error(httpx.post(any_server.url + "/v1/responses", json={**OK, "previous_response_id": "resp_\x00"}), 404,
                param="previous_response_id", code="previous_response_not_found")  # fmt: skip
    check_error(httpx.post(any_server.url + "/v1/responses", json={**OK, "conversation": "conv_\x00"}), 404,
                param="conversation")  # fmt: skip
    conv = httpx.post(any_server.url + "/v1/conversations", json={"items": [{"role": "user", "content": "a"}]}).json()
    check_error(httpx.get(f"{any_server.url}/v1/conversations/{conv['id']}/items/msg_%00"), 404, param="item_id")
    check_error(httpx.get(f"{any_server.url}/v1/conversations/{conv['id']}/items", params={"after": "m\x00"}), 400,
                param="after")  # fmt: skip


def test_starting_after_out_of_range(any_server: RespdServer) -> None:
    rid = httpx.post(any_server.url + "/v1/responses", json=OK).json()["id"]
    url = f"{any_server.url}/v1/responses/{rid}"
    for beyond in (2**31 - 1, 2**31, 2**63 - 1):  # past the log: an empty replay, on both databases
        r = httpx.get(url, params={"stream": "true", "starting_after": beyond}, timeout=10)
        assert r.status_code == 200 and r.text.strip() == "", (beyond, r.text)
    check_error(httpx.get(url, params={"stream": "true", "starting_after": 2**63}), 400, param="starting_after",
                code="integer_above_max_value")  # fmt: skip
    check_error(httpx.get(url, params={"stream": "true", "starting_after": -2}), 400, param="starting_after")
    replay = sse_events(httpx.get(url, params={"stream": "true", "starting_after": -1}, timeout=10).text)
    assert replay[0]["sequence_number"] == 0 and replay[-1]["type"] == "response.completed"


def test_empty_input_is_decided_before_any_upstream_call(any_server: RespdServer, fake: FakeUpstream) -> None:
    count = httpx.post(any_server.url + "/v1/responses/input_tokens", json={"model": "test-model"})
    assert count.status_code == 200 and count.json() == {"object": "response.input_tokens", "input_tokens": 0}
    check_error(httpx.post(any_server.url + "/v1/responses/input_tokens", json={"model": "test-model", "tools": [FN]}),
                400, param="input")  # fmt: skip
    conv = httpx.post(any_server.url + "/v1/conversations", json={}).json()["id"]
    check_error(_create(any_server, {**OK, "input": [], "conversation": conv}, "json"), 400, param="input",
                code="empty_array")  # fmt: skip
    assert fake.requests == []
    # with a context to go on from, an empty input is a turn like any other
    first = httpx.post(any_server.url + "/v1/responses", json=OK).json()
    second = httpx.post(any_server.url + "/v1/responses", json={**OK, "input": [], "previous_response_id": first["id"]})
    assert second.status_code == 200 and second.json()["status"] == "completed", second.text


def test_include_is_checked_on_input_items(any_server: RespdServer) -> None:
    rid = httpx.post(any_server.url + "/v1/responses", json=OK).json()["id"]
    check_error(httpx.get(f"{any_server.url}/v1/responses/{rid}/input_items", params={"include[]": "bogus"}), 400,
                param="include")  # fmt: skip
    ok = httpx.get(f"{any_server.url}/v1/responses/{rid}/input_items", params={"include[]": "reasoning.encrypted_content"})
    assert ok.status_code == 200


def test_a_body_must_be_sent_as_json(any_server: RespdServer, fake: FakeUpstream) -> None:
    raw = b'{"model": "test-model", "input": "hi"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": ctype} if ctype else {}
        for path in ("/v1/responses", "/v1/responses/input_tokens", "/v1/conversations"):
            check_error(httpx.post(any_server.url + path, content=raw, headers=headers), 400,
                        code="unsupported_content_type")  # fmt: skip
    assert fake.requests == []
    ok = httpx.post(any_server.url + "/v1/responses", content=raw,
                    headers={"content-type": "Application/JSON; charset=utf-8"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert httpx.post(any_server.url + "/v1/conversations").status_code == 200  # no body: no type needed


def test_an_empty_page_names_no_ids_but_strings(any_server: RespdServer) -> None:
    conv = httpx.post(any_server.url + "/v1/conversations", json={}).json()["id"]
    check_conversation_item_list(httpx.get(f"{any_server.url}/v1/conversations/{conv}/items").json())
    rid = httpx.post(any_server.url + "/v1/responses", json=OK).json()["id"]
    first = httpx.get(f"{any_server.url}/v1/responses/{rid}/input_items").json()
    after = httpx.get(f"{any_server.url}/v1/responses/{rid}/input_items", params={"after": first["last_id"]}).json()
    assert after == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
    validate_openai("ResponseItemList", after)
    # every other list pages the same way (files, vector stores and their files: the spec's schemas say string)
    empty = {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
    files = httpx.get(f"{any_server.url}/v1/files", params={"purpose": "batch_output"}).json()
    assert files == empty
    validate_openai("ListFilesResponse", files)
    vs = httpx.post(f"{any_server.url}/v1/vector_stores", json={"name": "empty"}).json()["id"]
    vs_files = httpx.get(f"{any_server.url}/v1/vector_stores/{vs}/files").json()
    assert vs_files == empty
    validate_openai("ListVectorStoreFilesResponse", vs_files)
    stores = httpx.get(f"{any_server.url}/v1/vector_stores", params={"order": "asc", "after": vs}).json()
    assert stores == empty  # none is newer than the one just made
    validate_openai("ListVectorStoresResponse", stores)


def _raw_request(server: RespdServer, request_line: bytes) -> tuple[bytes, bytes]:
    """Send one request as bytes; the status line and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_an_unparseable_request_gets_the_envelope(server: RespdServer) -> None:
    for line in (b"GET /v1/responses/resp_" + b"a" * 100_000 + b" HTTP/1.1", b"GET /v1/models HTTP/1.1\x00junk"):
        status, body = _raw_request(server, line)
        assert status.startswith(b"HTTP/1.1 400"), status
        check_error(httpx.Response(400, content=body), 400)
    status, body = _raw_request(server, b"GET /v1/responses/resp_" + b"a" * 60_000 + b" HTTP/1.1")
    err = check_error(httpx.Response(int(status.split()[1]), content=body), 404)
    assert len(err["message"]) < 4096  # the id is not echoed whole


def test_an_image_by_file_id_is_checked_on_every_route(any_server: RespdServer, fake: FakeUpstream) -> None:
    """Found by the fuzz suite: counting (or compacting) an image given by file_id was a 500; an unknown file is
    a 404 naming the part on every route that reads a context."""
    image = [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1", "detail": "auto"}]}]
    for path in ("/v1/responses/input_tokens", "/v1/responses/compact", "/v1/responses"):
        check_error(httpx.post(any_server.url + path, json={"model": "test-model", "input": image}), 404,
                    param="input[0].content[0].file_id")  # fmt: skip
    assert fake.requests == []
    # no model, and more than one served: which to count with is the client's to say (was a 500 for one model)
    check_error(httpx.post(any_server.url + "/v1/responses/input_tokens", json={}), 400, param="model")


def test_a_count_body_without_model_is_a_create_without_one() -> None:
    """Found by the fuzz suite: `{}` on input_tokens (a server with one model) was a 500 once `model` became
    required on create; the count's body turns into a create whose model is left to the server."""
    from respd.wire.context import TokenCountsBody
    from respd.wire.validation import parse_body

    req = parse_body(TokenCountsBody, b"{}").as_create()
    assert req.model is None and req.input is None and req.tools is None


def test_an_image_part_without_an_image_is_refused_on_every_route(any_server: RespdServer, fake: FakeUpstream) -> None:
    """Found by the fuzz suite after Files landed: an input_image with neither image_url nor file_id was a 500 on
    input_tokens (create alone checked it); the part itself is checked now, wherever it comes."""
    part = {"type": "input_image", "detail": "original", "image_url": None, "file_id": None}
    items = [{"role": "user", "content": [part]}]
    for path in ("/v1/responses/input_tokens", "/v1/responses/compact", "/v1/responses"):
        check_error(httpx.post(any_server.url + path, json={"model": "test-model", "input": items}), 400,
                    param="input[0].content[0]", code="missing_required_parameter")  # fmt: skip
    check_error(httpx.post(any_server.url + "/v1/conversations", json={"items": items}), 400,
                param="items[0].content[0]", code="missing_required_parameter")  # fmt: skip
    assert fake.requests == []


def test_a_nul_in_a_file_store_or_container_id_is_unknown_on_every_database(any_server: RespdServer) -> None:
    """Files, vector stores and containers answer an id holding a NUL as they answer one naming nothing
    (PostgreSQL refuses the NUL in a query outright: found by the fuzz suite, a 500 on PostgreSQL)."""
    vs = httpx.post(any_server.url + "/v1/vector_stores", json={"name": "nul"}).json()["id"]
    cases = [("GET", "/v1/files/{}", None), ("GET", "/v1/files/{}/content", None), ("DELETE", "/v1/files/{}", None),
             ("GET", "/v1/vector_stores/{}", None), ("POST", f"/v1/vector_stores/{vs}/files", {"file_id": "{}"}),
             ("GET", f"/v1/vector_stores/{vs}/files/{{}}", None), ("GET", f"/v1/vector_stores/{vs}/file_batches/{{}}", None),
             ("POST", f"/v1/vector_stores/{vs}/file_batches", {"file_ids": ["{}"]}),
             ("GET", "/v1/containers/{}", None), ("GET", "/v1/containers/{}/files", None)]  # fmt: skip
    for method, path, body in cases:
        answers = []
        for key, in_path in (("file-nope", "file-nope"), ("a\x00b", "a%00b")):
            json_body = orjson.loads(orjson.dumps(body).replace(b"{}", orjson.dumps(key)[1:-1])) if body else None
            r = httpx.request(method, any_server.url + path.format(in_path), json=json_body)
            answers.append((r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else None))
        assert answers[1] == answers[0] and answers[0][0] in (400, 404), (method, path, answers)
    # a NUL in any query parameter, of any route, is a 400 naming it (api/query_guard.py)
    for path, name in (("/v1/files", "after"), ("/v1/containers", "name"), ("/v1/vector_stores", "before"),
                       (f"/v1/vector_stores/{vs}/files", "filter"), ("/v1/responses/resp_1", "include[]")):  # fmt: skip
        check_error(httpx.get(any_server.url + path, params={name: "x\x00"}), 400, param=name, code="invalid_value")
