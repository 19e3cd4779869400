"""``GET /openapi.json``: a valid OpenAPI 3.1 document of exactly the routes the server serves, generated from them."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from respd.api.app import routes
from respd.wire.conversations import CreateItems
from respd.wire.request import CreateResponse
from tests.servers import RespdServer


def _served() -> set[tuple[str, str]]:
    return {(m.lower(), r.path_format) for r in routes() if isinstance(r, Route) for m in r.methods or () if m != "HEAD"}


def test_the_document_is_valid_openapi_31_of_every_route(server: RespdServer) -> None:
    r = httpx.get(server.url + "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    validate(doc)  # the OpenAPI 3.1 meta-schema, and every $ref resolves
    assert doc["openapi"] == "3.1.0"
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == _served()  # every route served, nothing else
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises naming what is wrong
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert len({op["operationId"] for op in ops}) == len(ops)


def test_bodies_are_the_schemas_that_validate_them(server: RespdServer) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    create = doc["paths"]["/v1/responses"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"].keys() == CreateResponse.model_fields.keys()
    assert set(create["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    body = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["properties"]["model"]["examples"] == ["test-model", "dead-model"]  # the models it serves
    assert body["additionalProperties"] is False  # unknown parameters are refused
    items = doc["paths"]["/v1/conversations/{conversation_id}/items"]["post"]
    ref = items["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["items"]["maxItems"] == \
        CreateItems.model_json_schema()["properties"]["items"]["maxItems"]  # fmt: skip
    replay = {p["name"]: p for p in doc["paths"]["/v1/responses/{response_id}"]["get"]["parameters"]}
    assert set(replay) == {"response_id", "include", "stream", "starting_after", "include_obfuscation"}
    assert replay["response_id"]["in"] == "path" and replay["starting_after"]["schema"]["minimum"] == -1


def test_the_document_needs_no_key(tmp_path_factory: Any, config_path: str) -> None:
    from tests.conftest import start_server

    tmp = tmp_path_factory.mktemp("respd-openapi-keys")
    srv = start_server(tmp, config_path, f"sqlite:///{tmp / 'db.sqlite'}", {"RESPD_API_KEYS": "k1"})
    try:
        doc = httpx.get(srv.url + "/openapi.json").json()
        assert doc["paths"]["/openapi.json"]["get"]["security"] == []
        assert doc["paths"]["/v1/responses"]["post"].get("security") is None  # the document's: a bearer key
        assert httpx.get(srv.url + "/v1/models").status_code == 401
    finally:
        srv.stop()
