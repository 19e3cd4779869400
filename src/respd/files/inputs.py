"""Files named in a request's input, made into what the model reads.

An ``input_file`` part (in a message, or in a tool call's output) becomes an ``input_text`` part holding the
file's text (:mod:`respd.files.extract`), whether the file comes by ``file_id`` (a stored file of the
caller's key), ``file_data`` (base64, as a data URL) or ``file_url`` (fetched, if the operator allows it, only
from hosts the outbound policy allows). An ``input_image`` part with a ``file_id`` becomes one with a data URL,
which is how upstreams that take images want it.

This changes only the model's context: the input is stored as the client sent it, and the files are read
again whenever a context that holds them is built (a later turn of a chain, a count of input tokens, a
compaction). Everything here runs before anything is stored or admitted, so a bad file is a 4xx that changes
nothing; its ``param`` names the part (``input[2].content[0].file_id``), or the ``previous_response_id`` /
``conversation`` that brought it when it comes from an earlier turn.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import httpx

from respd.config import Settings
from respd.errors import InvalidRequest, NotFound, RespdError, TooLarge, Unsupported
from respd.files.extract import extract_text
from respd.outbound import OutboundRefused, refusal
from respd.store import files
from respd.store.store import Store
from respd.wire.base import MAX_TEXT

log = logging.getLogger("respd.files")

MAX_IMAGE_BYTES = 20 << 20  # an image sent by file_id (it travels whole, as a data URL)
FETCH_TIMEOUT_S = 30.0
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))  # fmt: skip
_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})


def file_text_part(filename: str, text: str) -> dict[str, Any]:
    """The ``input_text`` part the model reads in place of a file."""
    # the newline at the end keeps the file apart from a part after it (parts are joined as they are)
    return {"type": "input_text", "text": f'<file name="{filename}">\n{text}\n</file>\n'}


class _TextCache:
    """Texts of stored files, newest used kept: a stored file never changes, and a chain reads its files
    again at every turn. Bounded by characters held."""

    def __init__(self, max_chars: int = 32 << 20) -> None:
        self.max_chars = max_chars
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._chars = 0

    def get(self, key: tuple[str, str]) -> str | None:
        text = self._texts.get(key)
        if text is not None:
            self._texts.move_to_end(key)
        return text

    def put(self, key: tuple[str, str], text: str) -> None:
        if len(text) > self.max_chars // 4 or key in self._texts:
            return
        self._texts[key] = text
        self._chars += len(text)
        while self._chars > self.max_chars:
            _, gone = self._texts.popitem(last=False)
            self._chars -= len(gone)


_CACHE = _TextCache()


def _parts_of(item: dict[str, Any]) -> list[dict[str, Any]] | None:
    if item["type"] == "message":
        parts = item.get("content")
    else:
        parts = item.get("output") if item["type"] in _OUTPUTS else None
    return parts if isinstance(parts, list) else None


def _names_a_file(part: dict[str, Any]) -> bool:
    return part.get("type") == "input_file" or (part.get("type") == "input_image" and bool(part.get("file_id")))


def has_files(items: list[dict[str, Any]]) -> bool:
    """Whether any item of ``items`` has a part that names a file (cheap: most contexts have none)."""
    for item in items:
        parts = _parts_of(item)
        if parts is not None and any(_names_a_file(p) for p in parts):
            return True
    return False


@dataclass(slots=True)
class FileReader:
    """Reads the files one context names, for one tenant."""

    store: Store
    settings: Settings
    tenant: str

    async def open_context(
        self, context: list[dict[str, Any]], inputs: list[dict[str, Any]], earlier: str
    ) -> list[dict[str, Any]]:
        """``context`` with its file parts made readable (new items; the originals are left as they are).

        ``inputs`` are this turn's input items (their parts' errors name ``input[i]…``); an item not among
        them came from an earlier turn, and its errors name ``earlier``.
        """
        if not has_files(context):
            return context
        where = {id(item): f"input[{i}]" for i, item in enumerate(inputs)}
        out = []
        for item in context:
            parts = _parts_of(item)
            if parts is None or not any(_names_a_file(p) for p in parts):
                out.append(item)
                continue
            key = "content" if item["type"] == "message" else "output"
            base = where.get(id(item))
            opened = [await self._part(p, f"{base}.{key}[{j}]" if base else None, earlier) for j, p in enumerate(parts)]
            out.append({**item, key: opened})
        return out

    async def _part(self, part: dict[str, Any], where: str | None, earlier: str) -> dict[str, Any]:
        if not _names_a_file(part):
            return part
        try:
            if part["type"] == "input_image":
                return await self._image(part, where or earlier)
            return await self._file(part, where or earlier)
        except RespdError as exc:
            if where is None:  # from an earlier turn: the part's own path means nothing to this request
                exc.param = earlier
                exc.message = f"A file in an earlier turn cannot be read: {exc.message}"
            raise

    async def _file(self, part: dict[str, Any], where: str) -> dict[str, Any]:
        given = [name for name in ("file_id", "file_data", "file_url") if part.get(name) is not None]
        if len(given) != 1:
            raise InvalidRequest("An input_file part needs exactly one of 'file_id', 'file_data' or 'file_url'"
                                 f" (it has {', '.join(given) or 'none'}).", param=where)  # fmt: skip
        param = f"{where}.{given[0]}"
        if given[0] == "file_id":
            name, text = await self._stored_text(part["file_id"], param)
        elif given[0] == "file_data":
            name, mime, data = _data_url(part["file_data"], part.get("filename"), param)
            text = await _extract(name, mime, data, param)
        else:
            name, text = await self._fetch(part["file_url"], param)
        if len(text) > MAX_TEXT:
            raise InvalidRequest(f"The text of the file '{name}' is too long to send to a model: {len(text):,} "
                                 f"characters, at most {MAX_TEXT:,}.", param=param, code="file_too_large")  # fmt: skip
        return file_text_part(part.get("filename") or name, text)

    async def _record(self, file_id: str, param: str) -> files.FileRecord:
        record = await files.get(self.store, self.tenant, file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param=param)
        return record

    async def _stored_text(self, file_id: str, param: str) -> tuple[str, str]:
        record = await self._record(file_id, param)
        key = (self.tenant, file_id)
        text = _CACHE.get(key)
        if text is None:
            text = await _extract(record.filename, record.mime, files.read(self.store, record), param)
            _CACHE.put(key, text)
        return record.filename, text

    async def _image(self, part: dict[str, Any], where: str) -> dict[str, Any]:
        param = f"{where}.file_id"
        if part.get("image_url"):
            raise InvalidRequest("An input_image part takes 'image_url' or 'file_id', not both.", param=param)
        record = await self._record(part["file_id"], param)
        if record.bytes > MAX_IMAGE_BYTES:
            raise InvalidRequest(f"The image '{record.filename}' is too large: {record.bytes:,} bytes, at most "
                                 f"{MAX_IMAGE_BYTES:,}.", param=param, code="file_too_large")  # fmt: skip
        data = b"".join([piece async for piece in files.read(self.store, record)])
        mime = _image_type(record.mime, data)
        if mime is None:
            raise InvalidRequest(f"The file '{record.filename}' is not an image (PNG, JPEG, GIF or WebP).",
                                 param=param, code="invalid_image")  # fmt: skip
        opened = {k: v for k, v in part.items() if k != "file_id"}
        opened["image_url"] = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        return opened

    async def _fetch(self, url: str, param: str) -> tuple[str, str]:
        if not self.settings.fetch_file_urls:
            raise Unsupported("Files by 'file_url' are not fetched by this server (the operator can allow it with "
                              "fetch_file_urls); send the file as 'file_id' or 'file_data'.", param=param)  # fmt: skip
        policy = self.settings.outbound
        try:
            policy.check_url(url)
        except OutboundRefused as exc:
            raise InvalidRequest(f"Cannot fetch 'file_url': {exc.message}", param=param, code="invalid_url") from None
        name = unquote(PurePosixPath(urlsplit(url).path).name) or "file"
        return await _fetched_text(self.settings, url, name, param)


async def _fetched_text(settings: Settings, url: str, name: str, param: str) -> tuple[str, str]:
    """The name and text of the file at ``url``, read as it downloads (up to ``max_file_bytes``)."""
    limit = settings.max_file_bytes

    async def body(resp: httpx.Response) -> AsyncIterator[bytes]:
        size = 0
        async for piece in resp.aiter_bytes():
            size += len(piece)
            if size > limit:
                raise TooLarge(f"The file at 'file_url' is too large: the limit is {limit:,} bytes.", param=param)
            yield piece

    try:
        client = settings.outbound.httpx_client(timeout=FETCH_TIMEOUT_S, follow_redirects=True)
        async with client, client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise InvalidRequest(f"Cannot fetch 'file_url': the server answered HTTP {resp.status_code}.",
                                     param=param, code="invalid_url")  # fmt: skip
            return name, await _extract(name, resp.headers.get("content-type"), body(resp), param)
    except httpx.HTTPError as exc:
        refused = refusal(exc)
        why = refused.message if refused is not None else f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise InvalidRequest(f"Cannot fetch 'file_url': {why}", param=param, code="invalid_url") from None


async def _extract(name: str, mime: str | None, source: bytes | AsyncIterator[bytes], param: str) -> str:
    try:
        return await extract_text(name, mime, source)
    except files.FileGone:
        raise NotFound(f"The file '{name}' was deleted while it was read.", param=param) from None
    except RespdError as exc:
        exc.param = param
        raise


def _data_url(value: str, filename: str | None, param: str) -> tuple[str, str | None, bytes]:
    """``(name, MIME type, bytes)`` of a ``file_data`` value: a base64 data URL (or bare base64)."""
    mime: str | None = None
    payload, is_base64 = value, True
    if value.startswith("data:"):
        head, comma, payload = value[5:].partition(",")
        if not comma:
            raise InvalidRequest("Invalid 'file_data': a data URL needs a comma before its data.", param=param,
                                 code="invalid_value")  # fmt: skip
        mime = head.split(";")[0].strip() or None
        is_base64 = head.endswith(";base64")
    try:
        data = base64.b64decode(payload, validate=True) if is_base64 else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise InvalidRequest("Invalid 'file_data': expected base64 data, as a data URL (data:application/pdf;"
                             "base64,...).", param=param, code="invalid_value") from None  # fmt: skip
    if not filename and mime is None:
        where = param.rsplit(".", 1)[0] + ".filename"
        raise InvalidRequest("An input_file with 'file_data' needs a 'filename' (or a data URL with a media "
                             "type).", param=where, code="missing_required_parameter")  # fmt: skip
    return filename or "file", mime, data


def _image_type(declared: str, data: bytes) -> str | None:
    for magic, mime in IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    declared = declared.split(";")[0].strip().lower()
    return declared if declared.startswith("image/") and data else None
