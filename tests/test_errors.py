"""Bad input: a clear 4xx in the OpenAI envelope naming the parameter, and nothing stored or sent upstream."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import pytest

from tests.checks import check_error
from tests.fake_upstream import FakeUpstream
from tests.servers import RespdServer

OK: dict[str, Any] = {"model": "test-model", "input": "hi"}

BAD_BODIES: list[tuple[str, dict[str, Any], str | None, str | None]] = [
    ("unknown field", {**OK, "foo": 1}, "foo", "unknown_parameter"),
    ("unknown nested field", {**OK, "text": {"format": {"type": "text"}, "bogus": 1}}, "text.bogus", "unknown_parameter"),
    ("temperature type", {**OK, "temperature": "hot"}, "temperature", "invalid_type"),
    ("temperature range", {**OK, "temperature": 2.5}, "temperature", None),
    ("top_p range", {**OK, "top_p": -0.1}, "top_p", None),
    ("max_output_tokens too small", {**OK, "max_output_tokens": 3}, "max_output_tokens", None),
    ("store type", {**OK, "store": "yes"}, "store", "invalid_type"),
    ("input type", {**OK, "input": 5}, "input", "invalid_type"),
    ("part text type", {**OK, "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
     "input[0].content[0].text", "invalid_type"),
    ("role value", {**OK, "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    ("item type", {**OK, "input": [{"type": "nonsense"}]}, "input[0].type", "invalid_value"),
    ("unsupported item type", {**OK, "input": [{"type": "image_generation_call", "id": "ig_1"}]}, "input[0].type",
     "unsupported_parameter"),
    ("tool without name", {**OK, "tools": [{"type": "function"}]}, "tools[0].name", "missing_required_parameter"),
    ("tool_choice names missing tool", {**OK, "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice", None),
    ("metadata too many keys", {**OK, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata",
     "object_above_max_properties"),
    ("metadata key too long", {**OK, "metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65, "string_above_max_length"),
    ("metadata value too long", {**OK, "metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
    ("metadata value type", {**OK, "metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ("missing model", {"input": "hi"}, "model", "missing_required_parameter"),
    ("missing input", {"model": "test-model"}, "input", "missing_required_parameter"),
    ("unknown model", {**OK, "model": "no-such-model"}, "model", "model_not_found"),
    ("background without store", {**OK, "background": True, "store": False}, "background", None),
    ("input_file without a file", {**OK, "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
     "input[0].content[0]", None),
    ("input_file by URL, not allowed", {**OK, "input": [{"role": "user", "content": [
        {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]}, "input[0].content[0].file_url",
     "unsupported_parameter"),
    ("json_schema name", {**OK, "text": {"format": {"type": "json_schema", "name": "bad name!", "schema": {}}}},
     "text.format.name", None),
]  # fmt: skip


def _rows(server: RespdServer) -> int:
    db = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT (SELECT count(*) FROM responses) + (SELECT count(*) FROM response_items)"
                                  " + (SELECT count(*) FROM response_events)").fetchone()[0]  # fmt: skip
        return count


@pytest.mark.parametrize(("case", "body", "param", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_body_is_a_400_that_changes_nothing(
    server: RespdServer, fake: FakeUpstream, case: str, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    before = _rows(server)
    for stream in (False, True):
        r = httpx.post(server.url + "/v1/responses", json={**body, "stream": stream} if stream else body)
        check_error(r, 400, param=param, code=code)
    assert fake.requests == []
    assert _rows(server) == before


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"just a string"', b"\xff\xfe"])
def test_unparseable_body_is_a_400(server: RespdServer, raw: bytes) -> None:
    r = httpx.post(server.url + "/v1/responses", content=raw, headers={"content-type": "application/json"})
    check_error(r, 400)


def test_unknown_ids_are_404(server: RespdServer) -> None:
    for method, path in [("GET", "/v1/responses/resp_missing"), ("DELETE", "/v1/responses/resp_missing"),
                         ("GET", "/v1/responses/resp_missing/input_items")]:  # fmt: skip
        check_error(httpx.request(method, server.url + path), 404)
    check_error(httpx.post(server.url + "/v1/responses", json={**OK, "previous_response_id": "resp_missing"}), 404,
                param="previous_response_id", code="previous_response_not_found")  # fmt: skip


def test_unknown_route_and_method(server: RespdServer) -> None:
    check_error(httpx.get(server.url + "/v1/nothing-here"), 404)
    check_error(httpx.put(server.url + "/v1/responses"), 405)


def test_bad_query_parameters(server: RespdServer, fake: FakeUpstream) -> None:
    rid = httpx.post(server.url + "/v1/responses", json=OK).json()["id"]
    check_error(httpx.get(server.url + f"/v1/responses/{rid}", params={"stream": "maybe"}), 400, param="stream")
    check_error(httpx.get(server.url + f"/v1/responses/{rid}", params={"include[]": "bogus"}), 400, param="include")
    ok = httpx.get(server.url + f"/v1/responses/{rid}", params={"include[]": "message.input_image.image_url"})
    assert ok.status_code == 200
    check_error(httpx.get(server.url + f"/v1/responses/{rid}", params={"stream": "true", "starting_after": "x"}), 400,
                param="starting_after")  # fmt: skip
