"""API keys: every /v1 call needs one, and what one key created is invisible to another."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.checks import check_error
from tests.conftest import start_server
from tests.servers import RespdServer


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, config_path: str) -> Iterator[RespdServer]:
    tmp = tmp_path_factory.mktemp("respd-keys")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_API_KEYS": "key-alice,key-bob"})
    yield srv
    srv.stop()


def test_missing_or_wrong_key_is_401(keyed: RespdServer) -> None:
    check_error(httpx.get(keyed.url + "/v1/models"), 401)
    check_error(httpx.post(keyed.url + "/v1/responses", json={"model": "test-model", "input": "x"}), 401)
    check_error(httpx.get(keyed.url + "/v1/models", headers={"Authorization": "Bearer key-mallory"}), 401,
                code="invalid_api_key")  # fmt: skip
    with pytest.raises(openai.AuthenticationError), openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope") as c:
        c.models.list()
    assert httpx.get(keyed.url + "/healthz").status_code == 200  # health needs no key


def test_tenants_are_isolated(keyed: RespdServer) -> None:
    with openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-alice") as alice, \
            openai.OpenAI(base_url=keyed.url + "/v1", api_key="key-bob") as bob:  # fmt: skip
        _isolation(alice, bob)


def _isolation(alice: openai.OpenAI, bob: openai.OpenAI) -> None:
    mine = alice.responses.create(model="test-model", input="alice's secret")
    assert alice.responses.retrieve(mine.id).id == mine.id
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.input_items.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="test-model", input="x", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="test-model", input=[{"type": "item_reference", "id": mine.output[0].id}])
    assert alice.responses.retrieve(mine.id).status == "completed"


def _http_routes() -> list[tuple[str, str]]:
    """Every (method, path) respd serves under /v1, path parameters filled in: routes added later are included."""
    from starlette.routing import Route

    from respd.api.app import routes

    out = []
    for route in routes():
        if isinstance(route, Route) and route.path.startswith("/v1"):
            path = route.path.replace("{model:path}", "m")
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", "x")
            out += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return out


def test_the_key_is_checked_before_anything_else(keyed: RespdServer) -> None:
    """Without a valid key, a bad body, a bad query or an unknown id is still just a 401: nothing is revealed."""
    routes = _http_routes()
    assert len(routes) >= 19, routes
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer key-mallory"}):
            r = httpx.request(method, keyed.url + path, params={"include[]": "bogus", "limit": "x",
                                                                 "starting_after": "-5", "stream": "maybe"},
                              content=b'{"input": ["not json', headers={**headers, "content-type": "text/plain"})  # fmt: skip
            check_error(r, 401)
