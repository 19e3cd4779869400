"""The ASGI application: routes, the one error handler, and the process lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from respd.api import (
    containers,
    context_window,
    conversations,
    files,
    responses,
    system,
    vector_store_files,
    vector_stores,
    websocket,
)
from respd.api.access import AccessMiddleware
from respd.api.auth import Authenticate, KeyRing
from respd.api.context import json_response
from respd.api.query_guard import QueryGuard
from respd.config import Settings
from respd.engine.runtime import Runtime
from respd.errors import NotFound, RespdError, ServerError, envelope
from respd.jobs.file_sweep import FileSweep
from respd.jobs.ingest import Ingestor
from respd.jobs.worker import Worker
from respd.ops import Operations
from respd.store.store import Store

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("respd")


async def _respd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RespdError)
    return json_response(envelope(exc), status=exc.status, headers=exc.headers())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: RespdError = NotFound(f"Invalid URL ({request.method} {request.url.path})")
    else:
        err = RespdError(exc.detail)
        err.status, err.type = exc.status_code, "invalid_request_error"
    return json_response(envelope(err), status=err.status)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    err = ServerError("The server had an error while processing your request.")
    return json_response(envelope(err), status=500)


def routes() -> list[BaseRoute]:
    # Starlette tries routes in order (a regex each): the hot one first
    return [
        Route("/v1/responses", responses.create_response, methods=["POST"]),
        WebSocketRoute("/v1/responses", websocket.responses_socket),  # WebSocket mode, beside the POST
        Route("/healthz", system.healthz, methods=["GET"]),
        Route("/readyz", system.readyz, methods=["GET"]),
        Route("/metrics", system.metrics, methods=["GET"]),
        Route("/openapi.json", system.openapi_json, methods=["GET"]),
        Route("/v1/models", system.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", system.get_model, methods=["GET"]),
        Route("/v1/responses/input_tokens", context_window.count_input_tokens, methods=["POST"]),
        Route("/v1/responses/compact", context_window.compact, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", responses.list_input_items, methods=["GET"]),
        Route("/v1/responses/{response_id}/cancel", responses.cancel_response, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_tokens", context_window.count_stored_input_tokens, methods=["GET"]),
        Route("/v1/responses/{response_id}/compact", context_window.compact_response, methods=["POST"]),
        *conversation_routes(),
        *container_routes(),
        *file_routes(),
        *vector_store_routes(),
    ]


def conversation_routes() -> list[Route]:
    c, base = conversations, "/v1/conversations/{conversation_id}"
    return [
        Route("/v1/conversations", c.create_conversation, methods=["POST"]),
        Route(base, c.get_conversation, methods=["GET"]),
        Route(base, c.update_conversation, methods=["POST"]),
        Route(base, c.delete_conversation, methods=["DELETE"]),
        Route(base + "/items", c.list_items, methods=["GET"]),
        Route(base + "/items", c.create_items, methods=["POST"]),
        Route(base + "/items/{item_id}", c.get_item, methods=["GET"]),
        Route(base + "/items/{item_id}", c.delete_item, methods=["DELETE"]),
    ]


def container_routes() -> list[Route]:
    c, base = containers, "/v1/containers/{container_id}"
    return [
        Route("/v1/containers", c.create_container, methods=["POST"]),
        Route("/v1/containers", c.list_containers, methods=["GET"]),
        Route(base, c.get_container, methods=["GET"]),
        Route(base, c.delete_container, methods=["DELETE"]),
        Route(base + "/files", c.create_file, methods=["POST"]),
        Route(base + "/files", c.list_files, methods=["GET"]),
        Route(base + "/files/{file_id}", c.get_file, methods=["GET"]),
        Route(base + "/files/{file_id}", c.delete_file, methods=["DELETE"]),
        Route(base + "/files/{file_id}/content", c.get_file_content, methods=["GET"]),
    ]


def file_routes() -> list[Route]:
    f, one = files, "/v1/files/{file_id}"
    return [
        Route("/v1/files", f.create_file, methods=["POST"]),
        Route("/v1/files", f.list_files, methods=["GET"]),
        Route(one, f.get_file, methods=["GET"]),
        Route(one, f.delete_file, methods=["DELETE"]),
        Route(one + "/content", f.file_content, methods=["GET"]),
    ]


def vector_store_routes() -> list[Route]:
    v, vf, one = vector_stores, vector_store_files, "/v1/vector_stores/{vector_store_id}"
    fone, bone = one + "/files/{file_id}", one + "/file_batches/{batch_id}"
    return [
        Route("/v1/vector_stores", v.create_store, methods=["POST"]),
        Route("/v1/vector_stores", v.list_stores, methods=["GET"]),
        Route(one, v.get_store, methods=["GET"]),
        Route(one, v.update_store, methods=["POST"]),
        Route(one, v.delete_store, methods=["DELETE"]),
        Route(one + "/search", v.search, methods=["POST"]),
        Route(one + "/files", vf.create_file, methods=["POST"]),
        Route(one + "/files", vf.list_files, methods=["GET"]),
        Route(fone, vf.get_file, methods=["GET"]),
        Route(fone, vf.update_file, methods=["POST"]),
        Route(fone, vf.delete_file, methods=["DELETE"]),
        Route(fone + "/content", vf.file_content, methods=["GET"]),
        Route(one + "/file_batches", vf.create_batch, methods=["POST"]),
        Route(bone, vf.get_batch, methods=["GET"]),
        Route(bone + "/cancel", vf.cancel_batch, methods=["POST"]),
        Route(bone + "/files", vf.list_batch_files, methods=["GET"]),
    ]


def create_app(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> Starlette:
    """The respd application for ``settings``; the database opens (and migrates) at startup.

    ``tracer_provider`` traces through a provider of the caller's (tests) instead of the ``OTEL_*`` one.
    """
    runtime = Runtime(settings=settings, store=Store(settings.database_url))
    ops = Operations(runtime, tracer_provider)
    worker = Worker(runtime)
    ingestor = Ingestor(runtime, worker.queue)
    file_sweep = FileSweep(runtime.store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.open()
        await worker.start()  # also ends, once their lease is over, what dead replicas left running
        ops.start()
        file_sweep.start()
        ingestor.start()
        # What startup made (modules, the schema, a loaded model's objects) lives as long as the process:
        # moved out of the collector's generations, a full collection no longer walks ~100k objects
        # (~20 ms, a stall of every request in flight) to find that they are still alive.
        gc.collect()
        gc.freeze()
        yield
        # uvicorn has given open streams their grace period; background jobs get theirs, then go back
        await ingestor.stop()  # before the drain, which gives this replica's unfinished jobs back
        await worker.drain(settings.drain_s)
        await ops.stop()
        await file_sweep.stop()
        await runtime.close()

    keys = KeyRing(settings.api_keys)
    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        middleware=[
            Middleware(AccessMiddleware, ops=settings.ops, metrics=runtime.metrics),
            Middleware(Authenticate, keys=keys),  # the key first, before any route reads the request
            Middleware(QueryGuard),
        ],
        exception_handlers={RespdError: _respd_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.runtime = runtime
    app.state.worker = worker
    app.state.ingestor = ingestor
    app.state.keys = keys
    app.state.limiter = ops.limiter
    return app
