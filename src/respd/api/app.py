"""The ASGI application: routes, the one error handler, and the process lifespan."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from respd.api import context_window, conversations, files, responses, system, websocket
from respd.api.auth import KeyRing
from respd.api.context import json_response
from respd.config import Settings
from respd.engine.runtime import Runtime
from respd.errors import NotFound, RespdError, ServerError, envelope
from respd.jobs.file_sweep import FileSweep
from respd.jobs.worker import Worker
from respd.store.store import Store

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
        *file_routes(),
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


def file_routes() -> list[Route]:
    f, one = files, "/v1/files/{file_id}"
    return [
        Route("/v1/files", f.create_file, methods=["POST"]),
        Route("/v1/files", f.list_files, methods=["GET"]),
        Route(one, f.get_file, methods=["GET"]),
        Route(one, f.delete_file, methods=["DELETE"]),
        Route(one + "/content", f.file_content, methods=["GET"]),
    ]


def create_app(settings: Settings) -> Starlette:
    """The respd application for ``settings``; the database opens (and migrates) at startup."""
    runtime = Runtime(settings=settings, store=Store(settings.database_url))
    worker = Worker(runtime)
    file_sweep = FileSweep(runtime.store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.open()
        await worker.start()  # also ends, once their lease is over, what dead replicas left running
        file_sweep.start()
        # What startup made (modules, the schema, a loaded model's objects) lives as long as the process:
        # moved out of the collector's generations, a full collection no longer walks ~100k objects
        # (~20 ms, a stall of every request in flight) to find that they are still alive.
        gc.collect()
        gc.freeze()
        yield
        # uvicorn has given open streams their grace period; background jobs get theirs, then go back
        await worker.drain(settings.drain_s)
        await file_sweep.stop()
        await runtime.close()

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={RespdError: _respd_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.runtime = runtime
    app.state.worker = worker
    app.state.keys = KeyRing(settings.api_keys)
    return app
