"""``/v1/conversations`` routes: conversations (create, retrieve, update metadata, delete) and their items.

Every write goes through the store's writer as one transaction; see :mod:`respd.store.conversations` for
how appends keep their order when responses and clients add items at once.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of, tenant_of
from respd.api.pagination import check_include, paginate
from respd.engine import context
from respd.engine.checks import check_metadata
from respd.errors import NotFound
from respd.ids import new_id
from respd.store import conversations as db
from respd.store.writer import Batch, Op
from respd.wire.conversations import CreateConversation, CreateItems, UpdateConversation
from respd.wire.validation import parse_body

M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The validated body; an ``optional`` one may be left out entirely (as ``POST /v1/conversations`` allows)."""
    raw = await request.body()
    return model() if optional and not raw.strip() else parse_body(model, raw)


async def _conversation(request: Request) -> tuple[str, dict[str, Any]]:
    """The path's conversation, for the caller's tenant, or a 404."""
    cid = request.path_params["conversation_id"]
    conv = await db.get(runtime_of(request).store.engine, tenant_of(request), cid)
    if conv is None:
        raise NotFound(f"Conversation with id '{cid}' not found.", param="conversation_id")
    return cid, conv


async def _items(request: Request, items: list[Any], existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items a client adds, in stored form: references resolved, ids made where missing, none repeated."""
    rt, tenant = runtime_of(request), tenant_of(request)
    stored = await context.resolve_items(rt.store, tenant, items, param="items")
    context.unseal_reasoning(rt.sealer, tenant, stored, param="items")
    context.check_unique_ids(existing, stored, param="items")
    return stored


async def _write(request: Request, op: Op) -> None:
    await runtime_of(request).store.writer.commit(Batch(ops=[op]))


async def create_conversation(request: Request) -> Response:
    req = await _body(request, CreateConversation, optional=True)
    check_metadata(req.metadata)
    items = await _items(request, req.items or [], [])
    conv = {"id": new_id("conv"), "object": "conversation", "created_at": int(time.time()),
            "metadata": req.metadata or {}}  # fmt: skip
    await _write(request, db.Create(tenant_of(request), conv, items))
    return json_response(conv)


async def get_conversation(request: Request) -> Response:
    _, conv = await _conversation(request)
    return json_response(conv)


async def update_conversation(request: Request) -> Response:
    req = await _body(request, UpdateConversation)
    check_metadata(req.metadata)
    cid, conv = await _conversation(request)
    metadata = req.metadata or {}
    await _write(request, db.SetMetadata(tenant_of(request), cid, metadata))
    return json_response({**conv, "metadata": metadata})


async def delete_conversation(request: Request) -> Response:
    cid, _ = await _conversation(request)
    await _write(request, db.Delete(tenant_of(request), cid))
    return json_response({"id": cid, "object": "conversation.deleted", "deleted": True})


def _item_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": False}  # fmt: skip


async def create_items(request: Request) -> Response:
    check_include(request)
    req = await _body(request, CreateItems)
    cid, _ = await _conversation(request)
    existing = await db.items(runtime_of(request).store.engine, cid)
    items = await _items(request, req.items, existing)
    await _write(request, db.Append(tenant_of(request), cid, items))
    return json_response(_item_list(items))


async def list_items(request: Request) -> Response:
    check_include(request)
    cid, _ = await _conversation(request)
    items = await db.items(runtime_of(request).store.engine, cid)
    return json_response(paginate(request, items))


async def _item(request: Request) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The path's conversation and item, or a 404 naming whichever is missing."""
    cid, conv = await _conversation(request)
    iid = request.path_params["item_id"]
    item = await db.item(runtime_of(request).store.engine, cid, iid)
    if item is None:
        raise NotFound(f"Item with id '{iid}' not found in conversation '{cid}'.", param="item_id")
    return cid, conv, item


async def get_item(request: Request) -> Response:
    check_include(request)
    _, _, item = await _item(request)
    return json_response(item)


async def delete_item(request: Request) -> Response:
    cid, conv, item = await _item(request)
    await _write(request, db.DeleteItem(cid, item["id"]))
    return json_response(conv)
