"""``/v1/files`` routes: upload (multipart, streamed into the database), list, retrieve, delete, content.

Storage is :mod:`respd.store.files`. An upload is read from the client piece by piece and each piece is
stored as it comes (:mod:`respd.api.multipart`), so neither memory nor a temporary file ever holds a whole
file, and an upload past ``max_file_bytes`` stops there with a 413.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from respd.api import pagination
from respd.api.context import json_response, runtime_of, tenant_of
from respd.api.multipart import Field, FileData, FileEnd, FileStart, read_parts
from respd.errors import InvalidRequest, NotFound, TooLarge
from respd.store import files as db

log = logging.getLogger("respd.files")

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_EXPIRY_S = 30 * 24 * 3600  # files for the Batch API expire after 30 days unless told otherwise
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 2_592_000
FORM_FIELDS = ("purpose", "expires_after[anchor]", "expires_after[seconds]")
MULTIPART_SLACK = 1 << 20  # what a body may hold beyond the file: boundaries, headers, fields


def not_found(file_id: str, param: str = "file_id") -> NotFound:
    """The 404 of a file that is not there for this key (never was, deleted, expired, another key's)."""
    return NotFound(f"No such File object: {file_id}", param=param)


def _check_field(name: str, value: str) -> None:
    if name not in FORM_FIELDS:
        raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name,
                             code="unknown_parameter")  # fmt: skip
    if name == "purpose" and value not in PURPOSES:
        raise InvalidRequest(f"Invalid value for 'purpose': '{value}'. Supported values are: "
                             + ", ".join(f"'{p}'" for p in PURPOSES) + ".", param="purpose",
                             code="invalid_value")  # fmt: skip
    if name == "expires_after[anchor]" and value != "created_at":
        raise InvalidRequest(f"Invalid value for 'expires_after.anchor': '{value}'. Supported values are: "
                             "'created_at'.", param="expires_after.anchor", code="invalid_value")  # fmt: skip
    if name == "expires_after[seconds]":
        seconds = int(value) if value.strip().isdigit() else -1
        if not MIN_EXPIRY_S <= seconds <= MAX_EXPIRY_S:
            raise InvalidRequest(
                f"Invalid 'expires_after.seconds': expected an integer between {MIN_EXPIRY_S} and "
                f"{MAX_EXPIRY_S}, but got '{value}'.", param="expires_after.seconds", code="invalid_value")  # fmt: skip


def _expiry(fields: dict[str, str], created_at: int) -> int | None:
    """When the file expires: ``expires_after`` (both parts), or 30 days for ``batch`` files, or never."""
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if (anchor is None) != (seconds is None):
        missing = "anchor" if anchor is None else "seconds"
        raise InvalidRequest(f"Missing required parameter: 'expires_after.{missing}'.",
                             param=f"expires_after.{missing}", code="missing_required_parameter")  # fmt: skip
    if seconds is not None:
        return created_at + int(seconds)
    return created_at + BATCH_EXPIRY_S if fields["purpose"] == "batch" else None


def _check_declared_size(request: Request, limit: int) -> None:
    """A body that says up front it is over the limit is refused before any of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise TooLarge(f"The file is too large: the limit is {limit:,} bytes.", param="file")


async def create_file(request: Request) -> Response:
    rt, tenant = runtime_of(request), tenant_of(request)
    limit = rt.settings.max_file_bytes
    _check_declared_size(request, limit)
    fields: dict[str, str] = {}
    upload: db.Upload | None = None
    whole = False
    try:
        async for part in read_parts(request):
            if isinstance(part, FileData) and upload is not None:
                await upload.write(part.data)
            elif isinstance(part, FileEnd):
                whole = True
            elif isinstance(part, FileStart):
                if part.name != "file" or upload is not None:
                    raise InvalidRequest(f"Unexpected file in the form field '{part.name}': send one file, "
                                         "in the field 'file'.", param=part.name)  # fmt: skip
                upload = db.Upload(rt.store, tenant, filename=part.filename or "file", mime=part.content_type,
                                   max_bytes=limit)  # fmt: skip
                await upload.begin()
            elif isinstance(part, Field):
                _check_field(part.name, part.value)
                fields[part.name] = part.value
        for name in ("file", "purpose"):
            if (name == "file" and upload is None) or (name == "purpose" and name not in fields):
                raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name,
                                     code="missing_required_parameter")  # fmt: skip
        assert upload is not None
        if not whole:
            raise InvalidRequest("Invalid multipart body: the file part was cut short.", param="file")
        record = await upload.finish(fields["purpose"], _expiry(fields, upload.created_at))
    except ClientDisconnect:
        log.info("a client left during an upload; nothing of it is kept")
        if upload is not None:
            await upload.abort()
        return Response(status_code=499)  # nobody reads it
    except BaseException:
        if upload is not None:
            await upload.abort()
        raise
    return json_response(record.resource())


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "10000")
    if not raw.lstrip("-").isdigit():
        raise InvalidRequest("Invalid type for 'limit': expected an integer.", param="limit", code="invalid_type")
    limit = int(raw)
    if not 1 <= limit <= 10_000:
        raise InvalidRequest(f"Invalid 'limit': integer out of range. Expected a value between 1 and 10000, but "
                             f"got {limit} instead.", param="limit", code="integer_out_of_range")  # fmt: skip
    return limit


async def list_files(request: Request) -> Response:
    q = request.query_params
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order",
                             code="invalid_value")  # fmt: skip
    rt, tenant = runtime_of(request), tenant_of(request)
    page, more = await db.list_page(rt.store, tenant, purpose=q.get("purpose"), order=order, after=q.get("after"),
                                    limit=_limit(request))  # fmt: skip
    data: list[dict[str, Any]] = [f.resource() for f in page]
    return json_response(pagination.page(data, more))


async def file_of(request: Request) -> db.FileRecord:
    """The path's file, for the caller's key, or its 404."""
    file_id = request.path_params["file_id"]
    record = await db.get(runtime_of(request).store, tenant_of(request), file_id)
    if record is None:
        raise not_found(file_id)
    return record


async def get_file(request: Request) -> Response:
    return json_response((await file_of(request)).resource())


async def delete_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    if not await db.delete_file(runtime_of(request).store, tenant_of(request), file_id):
        raise not_found(file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    record = await file_of(request)
    # attachment and nosniff: a browser pointed at an uploaded HTML file saves it, it does not run it here
    headers = {"content-length": str(record.bytes), "x-content-type-options": "nosniff",
               "content-disposition": f"attachment; filename*=UTF-8''{quote(record.filename)}"}  # fmt: skip
    return StreamingResponse(db.read(runtime_of(request).store, record), media_type=record.mime, headers=headers)
