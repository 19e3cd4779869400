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

from respd.api.context import json_body, json_response, runtime_of, tenant_of
from respd.api.openapi import operation
from respd.api.pagination import INCLUDE, PAGE, check_include, page, page_query, unknown_after
from respd.engine import context
from respd.engine.checks import check_metadata
from respd.errors import NotFound
from respd.ids import new_id
from respd.store import conversations as db
from respd.store.writer import Batch, Op, is_conflict
from respd.wire.conversations import CreateConversation, CreateItems, UpdateConversation
from respd.wire.validation import parse_body

M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The validated body; an ``optional`` one may be left out entirely (as ``POST /v1/conversations`` allows)."""
    raw = await json_body(request)
    return model() if optional and not raw.strip() else parse_body(model, raw)


async def _conversation(request: Request) -> tuple[str, dict[str, Any]]:
    """The path's conversation, for the caller's tenant, or a 404."""
    cid = request.path_params["conversation_id"]
    conv = await db.get(runtime_of(request).store.engine, tenant_of(request), cid)
    if conv is None:
        raise NotFound(f"Conversation with id '{cid}' not found.", param="conversation_id")
    return cid, conv


async def _items(request: Request, items: list[Any], cid: str | None) -> list[dict[str, Any]]:
    """Items a client adds, in stored form: references resolved, ids made where missing, none repeated (nor
    already in the conversation ``cid``)."""
    rt, tenant = runtime_of(request), tenant_of(request)
    stored = await context.resolve_items(rt.store, tenant, items, param="items")
    context.unseal_reasoning(rt.sealer, tenant, stored, param="items")
    context.check_unique_ids([], stored, param="items")
    if cid is not None and (taken := await db.duplicate_ids(rt.store.engine, cid, [it["id"] for it in stored])):
        raise context.duplicate_item(taken[0], param="items")
    return stored


async def _write(request: Request, op: Op) -> None:
    await runtime_of(request).store.writer.commit(Batch(ops=[op]))


@operation("Create a conversation", body=CreateConversation, body_optional=True)
async def create_conversation(request: Request) -> Response:
    req = await _body(request, CreateConversation, optional=True)
    check_metadata(req.metadata)
    items = await _items(request, req.items or [], None)
    conv = {"id": new_id("conv"), "object": "conversation", "created_at": int(time.time()),
            "metadata": req.metadata or {}}  # fmt: skip
    await _write(request, db.Create(tenant_of(request), conv, items))
    return json_response(conv)


@operation("Retrieve a conversation")
async def get_conversation(request: Request) -> Response:
    _, conv = await _conversation(request)
    return json_response(conv)


@operation("Update a conversation's metadata", body=UpdateConversation)
async def update_conversation(request: Request) -> Response:
    req = await _body(request, UpdateConversation)
    check_metadata(req.metadata)
    cid, conv = await _conversation(request)
    metadata = req.metadata or {}
    await _write(request, db.SetMetadata(tenant_of(request), cid, metadata))
    return json_response({**conv, "metadata": metadata})


@operation("Delete a conversation")
async def delete_conversation(request: Request) -> Response:
    cid, _ = await _conversation(request)
    await _write(request, db.Delete(tenant_of(request), cid))
    return json_response({"id": cid, "object": "conversation.deleted", "deleted": True})


@operation("Add items to a conversation", body=CreateItems, query=(INCLUDE,))
async def create_items(request: Request) -> Response:
    check_include(request)
    req = await _body(request, CreateItems)
    cid, _ = await _conversation(request)
    items = await _items(request, req.items, cid)
    try:
        await _write(request, db.Append(tenant_of(request), cid, items))
    except Exception as exc:
        if not is_conflict(exc):
            raise
        # another request added one of these ids since they were checked: the constraint kept it out
        taken = await db.duplicate_ids(runtime_of(request).store.engine, cid, [it["id"] for it in items])
        raise context.duplicate_item(taken[0] if taken else items[0]["id"], param="items") from None
    return json_response(page(items, False))


@operation("List the items of a conversation", query=(*PAGE, INCLUDE))
async def list_items(request: Request) -> Response:
    check_include(request)
    q = page_query(request)
    cid, _ = await _conversation(request)
    found = await db.page(runtime_of(request).store.engine, cid, q.limit, ascending=q.ascending, after=q.after)
    if found is None:
        assert q.after is not None
        raise unknown_after(q.after)
    return json_response(page(*found))


async def _item(request: Request) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The path's conversation and item, or a 404 naming whichever is missing."""
    cid, conv = await _conversation(request)
    iid = request.path_params["item_id"]
    item = await db.item(runtime_of(request).store.engine, cid, iid)
    if item is None:
        raise NotFound(f"Item with id '{iid}' not found in conversation '{cid}'.", param="item_id")
    return cid, conv, item


@operation("Retrieve an item of a conversation", query=(INCLUDE,))
async def get_item(request: Request) -> Response:
    check_include(request)
    _, _, item = await _item(request)
    return json_response(item)


@operation("Delete an item of a conversation")
async def delete_item(request: Request) -> Response:
    cid, conv, item = await _item(request)
    await _write(request, db.DeleteItem(cid, item["id"]))
    return json_response(conv)
