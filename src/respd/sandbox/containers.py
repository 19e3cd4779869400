"""Containers: what the Containers API and the code_interpreter tool share.

A container is a database row and its files (the truth, on every replica), plus — while it is in use on
this server — a kernel process in the :class:`Pool`. After each call the files under ``/mnt/data`` are
copied back into the database (new and changed ones; removed ones are removed), so they survive the
process; a new process gets them written back before it runs anything.

Any container operation refreshes ``last_active_at``; one idle for ``expires_after.minutes`` expires: its
process stops, its files are discarded, and its row stays as a snapshot whose status is ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field, replace

from respd.errors import InvalidRequest, NotFound, TooLarge
from respd.ids import new_id
from respd.sandbox.pool import ExecResult, Pool, Sandbox
from respd.sandbox.process import KernelGone
from respd.sandbox.settings import SandboxSettings, parse_size
from respd.store import containers as db
from respd.store import files as files_db
from respd.store.containers import RUNNING, ContainerRow, FileRow
from respd.store.store import Store

log = logging.getLogger("respd.sandbox")

WORKDIR = "/mnt/data/"
SWEEP_S = 30.0


class ContainerExpired(InvalidRequest):
    default_code = "container_expired"


class FileTooLarge(TooLarge):
    """413: a file over the server's container file limit."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A call's result, with the files it created or changed (already stored)."""

    result: ExecResult
    files: list[FileRow] = field(default_factory=list)
    images: list[FileRow] = field(default_factory=list)  # the figures, stored as container files


def safe_filename(name: str) -> str:
    """A client's file name as a single path component under /mnt/data."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    if base in ("", ".", ".."):
        base = "file"
    return base[:255]


class Containers:
    """Containers of every tenant: rows and files in the store, processes in :attr:`pool` (when sandboxed)."""

    def __init__(self, store: Store, settings: SandboxSettings) -> None:
        self.store, self.settings = store, settings
        self.pool: Pool | None = None
        self.started_at = time.time()  # a container older than this server may have had a session elsewhere
        self._sweeper: asyncio.Task[None] | None = None

    def enable(self, sandbox: Sandbox) -> None:
        self.pool = Pool(sandbox)

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.pool is not None:
            await self.pool.close()

    # -- containers -----------------------------------------------------------------------------------------
    def memory_limit(self, requested: str | None, param: str) -> str:
        """The memory limit for a new container: the request's, within the server's maximum."""
        limit = requested or self.settings.memory_limit
        if parse_size(limit) > self.settings.max_memory_bytes:
            raise InvalidRequest(
                f"memory_limit '{limit}' is more than this server allows ({self.settings.max_memory_limit}).",
                param=param, code="invalid_value",
            )  # fmt: skip
        return limit

    async def create(self, tenant: str, name: str, *, memory_limit: str, minutes: int | None = None,
                     origin: str | None = None) -> ContainerRow:  # fmt: skip
        now_us = time.time_ns() // 1000
        row = ContainerRow(id=new_id("cntr"), tenant=tenant, name=name, status=RUNNING, created_us=now_us,
                           last_active_at=now_us // 1_000_000, expires_minutes=minutes or self.settings.idle_minutes,
                           memory_limit=memory_limit, origin=origin)  # fmt: skip
        await db.create(self.store, row)
        return row

    async def get(
        self, tenant: str, container_id: str, *, param: str = "container_id", touch: bool = True
    ) -> ContainerRow:
        """The container (its idle time restarts when it is running, unless the caller will restart it
        itself), or a 404."""
        row = await db.get(self.store, tenant, container_id)
        if row is None:
            raise NotFound(f"Container with id '{container_id}' not found.", param=param)
        if row.status == RUNNING and row.last_active_at + row.expires_minutes * 60 <= time.time():
            await self.sweep()  # idle past its time; the sweep had not come round to it yet
            row = await db.get(self.store, tenant, container_id) or row
        if row.status == RUNNING and touch:
            now = int(time.time())
            await db.touch(self.store, row.id, now)
            row = replace(row, last_active_at=now)
        return row

    async def running(
        self, tenant: str, container_id: str, *, param: str = "container_id", touch: bool = True
    ) -> ContainerRow:
        """The container if it can still be used (404 if unknown, 400 if expired)."""
        row = await self.get(tenant, container_id, param=param, touch=touch)
        if row.status != RUNNING:
            raise ContainerExpired(
                f"Container '{container_id}' has expired: its files and state were discarded after "
                f"{row.expires_minutes} minutes without use. Create a new container.", param=param,
            )  # fmt: skip
        return row

    async def delete(self, row: ContainerRow) -> None:
        if self.pool is not None:
            await self.pool.stop(row.id, "the container was deleted")
            self.pool.forget(row.id)
        await db.delete_container(self.store, row.id)

    # -- files ----------------------------------------------------------------------------------------------
    async def uploaded_file(self, tenant: str, file_id: str, param: str) -> tuple[str, bytes]:
        """The name and bytes of a file ``tenant`` uploaded through the Files API (404 naming ``param``)."""
        record = await files_db.get(self.store, tenant, file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", param=param)
        if record.bytes > self.settings.max_file_bytes:
            raise FileTooLarge(f"File '{file_id}' is larger than a container file may be "
                               f"({self.settings.max_file_mb} MB).")  # fmt: skip
        try:
            data = b"".join([piece async for piece in files_db.read(self.store, record)])
        except files_db.FileGone:
            raise NotFound(f"No such File object: {file_id}", param=param) from None
        return record.filename, data

    async def add_file(self, row: ContainerRow, filename: str, data: bytes, *, source: str = "user") -> FileRow:
        """Store ``data`` as /mnt/data/<filename> (replacing a file at that path) and put it in the sandbox."""
        if len(data) > self.settings.max_file_bytes:
            raise FileTooLarge(f"The file is larger than this server's limit of {self.settings.max_file_mb} MB.")
        path = WORKDIR + safe_filename(filename)
        if await db.usage(self.store, row.id) + len(data) > self.settings.disk_mb << 20:
            raise InvalidRequest(f"Container '{row.id}' is full: its files may take {self.settings.disk_mb} MB.",
                                 code="container_full")  # fmt: skip
        file = FileRow(id=new_id("cfile"), container_id=row.id, path=path, source=source,
                       created_us=time.time_ns() // 1000, bytes=len(data), mtime_ns=0)  # fmt: skip
        stored = await db.put_file(self.store, file, data, keep_id=False)
        if self.pool is not None:
            await self.pool.write_file(row.id, path, data)
        return stored

    async def file(self, row: ContainerRow, file_id: str) -> FileRow:
        file = await db.file(self.store, row.id, file_id)
        if file is None:
            raise NotFound(f"Container file with id '{file_id}' not found in container '{row.id}'.", param="file_id")
        return file

    async def remove_file(self, row: ContainerRow, file: FileRow) -> None:
        await db.delete_file(self.store, row.id, file.id)
        if self.pool is not None:
            await self.pool.delete_file(row.id, file.path)

    # -- running code ---------------------------------------------------------------------------------------
    async def execute(self, row: ContainerRow, code: str) -> CallOutcome:
        """Run ``code`` in the container; store the files it wrote and the figures it drew."""
        if self.pool is None:
            raise RuntimeError("code_interpreter has no sandbox on this server")
        pool = self.pool
        result = await pool.execute(row.id, parse_size(row.memory_limit), lambda: db.contents(self.store, row.id), code)
        if result.fresh and not result.reset and row.created_at < self.started_at:
            result = replace(result, reset="its earlier session was in a server process that has since stopped")
        images: list[FileRow] = []
        try:
            changed = await self._sync_files(pool, row)
            for png in result.images:
                fid = new_id("cfile")
                file = FileRow(id=fid, container_id=row.id, path=f"{WORKDIR}{fid}.png", source="assistant",
                               created_us=time.time_ns() // 1000, bytes=len(png), mtime_ns=0)  # fmt: skip
                images.append(await db.put_file(self.store, file, png, keep_id=False))
                await pool.write_file(row.id, file.path, png)
        except KernelGone as exc:  # the process died after the call: its files are what was stored before
            log.info("container %s: files not copied back: %s", row.id, exc)
            changed = []
        await db.touch(self.store, row.id, int(time.time()))
        return CallOutcome(result=result, files=changed, images=images)

    async def _sync_files(self, pool: Pool, row: ContainerRow) -> list[FileRow]:
        """Copy what the call created or changed under /mnt/data into the store; drop what it removed."""
        listed = await pool.list_files(row.id)
        if listed is None:
            return []
        listing, complete = listed
        stored = {f.path: f for f in await db.files(self.store, row.id)}
        changed: list[FileRow] = []
        for info in listing:
            old = stored.pop(info.path, None)
            if old is not None and old.mtime_ns == info.mtime_ns and old.bytes == info.bytes:
                continue
            data = await pool.read_file(row.id, info.path)
            if data is None:
                continue  # over the size limit (or gone again): not kept
            if old is not None and old.mtime_ns == 0 and old.bytes == len(data):
                await db.set_mtime(self.store, old.id, info.mtime_ns)  # our own write, first seen: no change
                continue
            file = FileRow(id=new_id("cfile"), container_id=row.id, path=info.path, source="assistant",
                           created_us=time.time_ns() // 1000, bytes=len(data), mtime_ns=info.mtime_ns)  # fmt: skip
            changed.append(await db.put_file(self.store, file, data, keep_id=True))
        for gone in stored.values() if complete else ():
            if gone.mtime_ns or gone.source == "assistant":  # it was in the sandbox, and the code removed it
                await db.delete_file(self.store, row.id, gone.id)
        return changed

    # -- expiry ---------------------------------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        """Expire every container idle past its time (on any replica's behalf); their ids."""
        ids = await db.expire_idle(self.store, int(time.time()))
        for cid in ids:
            if self.pool is not None:
                await self.pool.stop(cid, "the container expired")
                self.pool.forget(cid)
        return ids

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep()
            except Exception:
                log.exception("container sweep failed")
