"""``GET /openapi.json``: an OpenAPI 3.1 description of the routes this server serves, generated from them.

Nothing in it is kept by hand apart from the code it describes: paths and methods come from the routing table,
request bodies are the JSON Schemas of the pydantic models that validate them (:mod:`respd.wire`), and each
handler declares its query parameters and answers with :func:`operation`, beside its code. A route added
without a declaration is still described, by its path, path parameters and method, so nothing served goes
undescribed (the fuzz suite draws its requests from this document, so it reaches every route).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter: its name, JSON Schema and meaning."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Operation:
    """What a handler takes and answers: a body validated by ``body`` (optional if ``body_optional``), query
    parameters, and a 200 that is JSON, or a stream of server-sent events too when ``streams``."""

    summary: str
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: tuple[Param, ...] = ()
    streams: bool = False


def operation(summary: str, **details: Any) -> Callable[[F], F]:
    """Declare what the decorated handler takes and answers (see :class:`Operation`)."""

    def mark(handler: F) -> F:
        handler.__openapi__ = Operation(summary, **details)  # type: ignore[attr-defined]
        return handler

    return mark


_ERROR = {
    "type": "object",
    "description": "The error envelope every 4xx and 5xx answer carries.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _responses(op: Operation | None) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if op is not None and op.streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    envelope = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    error = {"description": "An error", "content": envelope}
    return {"200": {"description": "Success", "content": ok}, "default": error}


def _parameters(route: Route, op: Operation | None) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in route.param_convertors]  # fmt: skip
    for p in op.query if op is not None else ():
        entry: dict[str, Any] = {"name": p.name, "in": "query", "required": False, "schema": p.schema,
                                 "description": p.description}  # fmt: skip
        if p.schema.get("type") == "array":
            entry |= {"style": "form", "explode": True}
        params.append(entry)
    return params


def _undeclared_id(method: str, handler: Any) -> str:
    """A unique id for a route without a declared operation: handlers of different modules share names
    (``files.create_file``, ``containers.create_file``), so the module is part of it."""
    return f"{method.lower()}_{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__}"


def _operation(route: Route, method: str, op: Operation | None, bodies: dict[type[BaseModel], Any]) -> dict[str, Any]:
    handler = route.endpoint
    described: dict[str, Any] = {
        "operationId": f"{handler.__name__}" if op is not None else _undeclared_id(method, handler),
        "summary": op.summary if op is not None else (handler.__doc__ or handler.__name__).strip().split("\n")[0],
        "parameters": _parameters(route, op),
        "responses": _responses(op),
    }
    if op is not None and op.body is not None:
        described["requestBody"] = {"required": not op.body_optional,
                                    "content": {"application/json": {"schema": bodies[op.body]}}}  # fmt: skip
    elif op is None and method in ("POST", "PUT", "PATCH"):  # undeclared: some JSON object, as far as known
        described["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
    if not described["parameters"]:
        del described["parameters"]
    if not route.path.startswith("/v1"):
        described["security"] = []  # health and this description need no key
    return described


def _model_names(schema: dict[str, Any], models: Sequence[str]) -> None:
    """The served model names as ``examples`` of a body's ``model`` property: they are what it takes."""
    prop = schema.get("properties", {}).get("model")
    if prop is not None and models:
        prop["examples"] = list(models)


_ABOUT = (
    "The routes this respd server serves. `POST /v1/responses` also accepts a WebSocket upgrade (the API's "
    "WebSocket mode), which OpenAPI cannot describe."
)


def document(routes: Sequence[BaseRoute], *, models: Sequence[str], title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (a server's routing table); ``models`` are the names it serves."""
    http = [r for r in routes if isinstance(r, Route)]
    ops = {id(r): getattr(r.endpoint, "__openapi__", None) for r in http}
    body_models = sorted({op.body for op in ops.values() if op is not None and op.body is not None},
                         key=lambda m: m.__name__)  # fmt: skip
    refs, defs = models_json_schema([(m, "validation") for m in body_models], ref_template=REF)
    schemas: dict[str, Any] = {"Error": _ERROR, **defs.get("$defs", {})}
    bodies = {m: refs[(m, "validation")] for m in body_models}
    for m in body_models:
        name = bodies[m]["$ref"].rsplit("/", 1)[1]
        _model_names(schemas[name], models)
    paths: dict[str, dict[str, Any]] = {}
    for route in http:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                paths.setdefault(route.path_format, {})[method.lower()] = _operation(route, method, ops[id(route)],
                                                                                     bodies)  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": _ABOUT},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"ApiKeyAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"ApiKeyAuth": []}, {}],  # a key when the server has keys configured; none otherwise
    }
