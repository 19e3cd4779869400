"""``/v1/containers`` routes: containers (create, list, retrieve, delete) and their files (upload or copy
from a file id, list, retrieve, content, delete). Scoped by API key; see :mod:`respd.sandbox.containers`."""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from respd.api.context import json_response, runtime_of, tenant_of
from respd.api.multipart import FileData, FileEnd, FileStart, read_parts
from respd.api.pagination import page, page_query
from respd.errors import InvalidRequest, TooLarge, Unsupported
from respd.sandbox.containers import Containers
from respd.store import containers as db
from respd.store.containers import ContainerRow
from respd.wire.containers import CreateContainer, CreateContainerFile
from respd.wire.validation import parse_body


def _containers(request: Request) -> Containers:
    return runtime_of(request).containers


async def create_container(request: Request) -> Response:
    req = parse_body(CreateContainer, await request.body())
    tenant, containers = tenant_of(request), _containers(request)
    if req.network_policy is not None and req.network_policy.type != "disabled":
        raise Unsupported("Containers on this server have no network: network_policy must be 'disabled'.",
                          param="network_policy.type")  # fmt: skip
    if req.skills:
        raise Unsupported("Skills are not supported by this server.", param="skills")
    memory = containers.memory_limit(req.memory_limit, "memory_limit")
    sources = [await files_source(request, tenant, fid, f"file_ids[{i}]") for i, fid in enumerate(req.file_ids or [])]
    minutes = req.expires_after.minutes if req.expires_after else None
    row = await containers.create(tenant, req.name, memory_limit=memory, minutes=minutes)
    for filename, data in sources:
        await containers.add_file(row, filename, data)
    return json_response(row.resource())


async def list_containers(request: Request) -> Response:
    q = page_query(request)
    order = "asc" if q.ascending else "desc"
    rows, more = await db.page(runtime_of(request).store, tenant_of(request), limit=q.limit, order=order, after=q.after,
                               name=request.query_params.get("name"))  # fmt: skip
    return json_response(page([r.resource() for r in rows], more))


async def _container(request: Request, *, running: bool = True) -> ContainerRow:
    cid, containers, tenant = request.path_params["container_id"], _containers(request), tenant_of(request)
    return await (containers.running(tenant, cid) if running else containers.get(tenant, cid))


async def get_container(request: Request) -> Response:
    return json_response((await _container(request, running=False)).resource())


async def delete_container(request: Request) -> Response:
    row = await _container(request, running=False)
    await _containers(request).delete(row)
    return json_response({"id": row.id, "object": "container.deleted", "deleted": True})


# -- files --------------------------------------------------------------------------------------------------


async def files_source(request: Request, tenant: str, file_id: str, param: str) -> tuple[str, bytes]:
    """The name and bytes of an uploaded file (``/v1/files``) of this tenant."""
    return await _containers(request).uploaded_file(tenant, file_id, param)


async def _upload(request: Request) -> tuple[str, bytes]:
    """A multipart body's ``file`` part: its file name and bytes (a 413 past the container file limit)."""
    limit = _containers(request).settings.max_file_bytes
    name: str | None = None
    data, reading = bytearray(), False
    async for part in read_parts(request):
        if isinstance(part, FileStart):
            reading = part.name == "file" and name is None  # the first `file` part; others are ignored
            name = (part.filename or "file") if reading else name
        elif isinstance(part, FileEnd):
            reading = False
        elif isinstance(part, FileData) and reading:
            data += part.data
            if len(data) > limit:
                raise TooLarge(f"The file is larger than a container file may be "
                               f"({_containers(request).settings.max_file_mb} MB).")  # fmt: skip
    if name is None:
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    return name, bytes(data)


async def create_file(request: Request) -> Response:
    row = await _container(request)
    tenant = tenant_of(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        filename, data = await _upload(request)
    else:
        req = parse_body(CreateContainerFile, await request.body())
        filename, data = await files_source(request, tenant, req.file_id, "file_id")
    file = await _containers(request).add_file(row, filename, data)
    return json_response(file.resource())


async def list_files(request: Request) -> Response:
    row = await _container(request)
    q = page_query(request)
    order = "asc" if q.ascending else "desc"
    files, more = await db.files_page(runtime_of(request).store, row.id, limit=q.limit, order=order, after=q.after)
    return json_response(page([f.resource() for f in files], more))


async def get_file(request: Request) -> Response:
    row = await _container(request)
    file = await _containers(request).file(row, request.path_params["file_id"])
    return json_response(file.resource())


async def get_file_content(request: Request) -> Response:
    row = await _container(request)
    file = await _containers(request).file(row, request.path_params["file_id"])
    data = await db.content(runtime_of(request).store, row.id, file.id) or b""
    media = mimetypes.guess_type(file.path)[0] or "application/octet-stream"
    name = quote(file.path.rsplit("/", 1)[-1])
    return Response(data, media_type=media, headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


async def delete_file(request: Request) -> Response:
    row = await _container(request)
    containers = _containers(request)
    file = await containers.file(row, request.path_params["file_id"])
    await containers.remove_file(row, file)
    return json_response({"id": file.id, "object": "container.file.deleted", "deleted": True})
