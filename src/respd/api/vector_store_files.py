"""``/v1/vector_stores/{id}/files`` and ``/file_batches`` routes: adding files (each an ingestion job),
listing them by status, their attributes and parsed content, and batches of files.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of
from respd.api.vector_stores import (
    STATUSES,
    _body,
    _check_attributes,
    _check_files,
    _counts,
    _page,
    _vector_store,
    _wake,
    file_object,
    strategy_of,
)
from respd.errors import InvalidRequest, NotFound
from respd.ids import new_id
from respd.store import vectors as db
from respd.wire import vector_stores as w


async def _file(request: Request) -> tuple[db.StoreRow, dict[str, Any]]:
    row = await _vector_store(request)
    fid = request.path_params["file_id"]
    f = await db.get_file(runtime_of(request).store, row.tenant, row.id, fid)
    if f is None:
        raise NotFound(f"No file found with id '{fid}' in vector store '{row.id}'.", param="file_id")
    return row, f


def _status_filter(request: Request) -> str | None:
    status = request.query_params.get("filter")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"Invalid value: '{status}'. Supported values are: {', '.join(STATUSES)}.",
                             param="filter", code="invalid_value")  # fmt: skip
    return status


def _listed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**file_object(f), "_order": f["created_at"]} for f in rows]


def _strip(page: dict[str, Any]) -> dict[str, Any]:
    for item in page["data"]:
        item.pop("_order", None)
    return page


# -- files --------------------------------------------------------------------------------------------------
async def create_file(request: Request) -> Response:
    req = await _body(request, w.CreateFile)
    attributes = _check_attributes(req.attributes)
    strategy = strategy_of(req.chunking_strategy)
    row = await _vector_store(request)
    await _check_files(request, [req.file_id], "file_id")
    values = db.file_values(row.tenant, row.id, req.file_id, attributes, strategy)
    await db.add_files(runtime_of(request).store, [values])
    _wake(request)
    return json_response(file_object(values))


async def list_files(request: Request) -> Response:
    row = await _vector_store(request)
    rows = await db.list_files(runtime_of(request).store, row.id, status=_status_filter(request))
    return json_response(_strip(_page(request, _listed(rows))))


async def get_file(request: Request) -> Response:
    _, f = await _file(request)
    return json_response(file_object(f))


async def update_file(request: Request) -> Response:
    req = await _body(request, w.UpdateFile)
    attributes = _check_attributes(req.attributes)
    row, f = await _file(request)
    await db.set_attributes(runtime_of(request).store, row.id, f["file_id"], attributes)
    return json_response(file_object({**f, "attributes": orjson.dumps(attributes).decode()}))


async def delete_file(request: Request) -> Response:
    """The file leaves the store (its chunks with it); the file itself stays in ``/v1/files``."""
    row, f = await _file(request)
    await db.delete_file(runtime_of(request).store, row.id, f["file_id"])
    return json_response({"id": f["file_id"], "object": "vector_store.file.deleted", "deleted": True})


async def file_content(request: Request) -> Response:
    """The file's parsed text, as the chunks it was indexed in."""
    row, f = await _file(request)
    texts = await db.file_chunks(runtime_of(request).store, row.id, f["file_id"])
    return json_response({"object": "vector_store.file_content.page", "data": [{"type": "text", "text": t}
                          for t in texts], "has_more": False, "next_page": None})  # fmt: skip


# -- batches ------------------------------------------------------------------------------------------------
def batch_object(batch: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    status = ("cancelled" if batch["cancelled"] else "in_progress" if counts.get("in_progress")
              else "failed" if counts.get("failed") and not counts.get("completed") else "completed")  # fmt: skip
    return {"id": batch["id"], "object": "vector_store.files_batch", "created_at": batch["created_at"],
            "vector_store_id": batch["vector_store_id"], "status": status, "file_counts": _counts(counts)}  # fmt: skip


async def create_batch(request: Request) -> Response:
    req = await _body(request, w.CreateBatch)
    if (req.file_ids is None) == (req.files is None):
        raise InvalidRequest("Provide exactly one of 'file_ids' and 'files'.", param="file_ids")
    row = await _vector_store(request)
    default_attributes = _check_attributes(req.attributes)
    default_strategy = strategy_of(req.chunking_strategy)
    batch: dict[str, Any] = {"id": new_id("vsfb"), "tenant": row.tenant, "vector_store_id": row.id,
             "created_at": int(time.time()), "cancelled": False}  # fmt: skip
    specs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for fid in req.file_ids or []:
        specs[fid] = (default_attributes, default_strategy)
    for i, one in enumerate(req.files or []):
        attrs = _check_attributes(one.attributes, f"files[{i}].attributes") if one.attributes is not None else None
        strategy = strategy_of(one.chunking_strategy, f"files[{i}].chunking_strategy") if one.chunking_strategy \
            else default_strategy  # fmt: skip
        specs[one.file_id] = (attrs if attrs is not None else default_attributes, strategy)
    await _check_files(request, list(specs), "file_ids" if req.file_ids is not None else "files")
    rows = [db.file_values(row.tenant, row.id, fid, a, s, batch["id"]) for fid, (a, s) in specs.items()]
    await db.add_files(runtime_of(request).store, rows, batch)
    _wake(request)
    return json_response(batch_object(batch, {"in_progress": len(rows)}))


async def _batch(request: Request) -> tuple[db.StoreRow, dict[str, Any]]:
    row = await _vector_store(request)
    bid = request.path_params["batch_id"]
    batch = await db.get_batch(runtime_of(request).store, row.tenant, row.id, bid)
    if batch is None:
        raise NotFound(f"No file batch found with id '{bid}' in vector store '{row.id}'.", param="batch_id")
    return row, batch


async def get_batch(request: Request) -> Response:
    _, batch = await _batch(request)
    return json_response(batch_object(batch, await db.batch_counts(runtime_of(request).store, batch["id"])))


async def cancel_batch(request: Request) -> Response:
    row, batch = await _batch(request)
    store = runtime_of(request).store
    await db.cancel_batch(store, row.id, batch["id"])
    return json_response(batch_object({**batch, "cancelled": True}, await db.batch_counts(store, batch["id"])))


async def list_batch_files(request: Request) -> Response:
    row, batch = await _batch(request)
    rows = await db.list_files(runtime_of(request).store, row.id, status=_status_filter(request),
                               batch_id=batch["id"])  # fmt: skip
    return json_response(_strip(_page(request, _listed(rows))))
