"""Containers and their files in the database (see the ``containers`` and ``container_files`` tables).

Every read is scoped by tenant through the container (a file is reached only through a container the caller
owns). Writes are short transactions of their own (:meth:`Store.transact`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, func, insert, or_, select, update

from respd.store.schema import container_files, containers, findable
from respd.store.store import Store

RUNNING, EXPIRED = "running", "expired"


@dataclass(frozen=True, slots=True)
class ContainerRow:
    id: str
    tenant: str
    name: str
    status: str
    created_us: int  # creation time in microseconds: lists are in this order
    last_active_at: int
    expires_minutes: int
    memory_limit: str
    origin: str | None = None  # the response the code_interpreter tool made it for (an "auto" container)

    @property
    def created_at(self) -> int:
        return self.created_us // 1_000_000

    def resource(self) -> dict[str, Any]:
        """The API's ``ContainerResource``."""
        return {"id": self.id, "object": "container", "created_at": self.created_at, "status": self.status,
                "expires_after": {"anchor": "last_active_at", "minutes": self.expires_minutes},
                "last_active_at": self.last_active_at, "memory_limit": self.memory_limit, "name": self.name,
                "network_policy": {"type": "disabled"}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    container_id: str
    path: str
    source: str
    created_us: int
    bytes: int
    mtime_ns: int

    @property
    def created_at(self) -> int:
        return self.created_us // 1_000_000

    def resource(self) -> dict[str, Any]:
        """The API's ``ContainerFileResource``."""
        return {"id": self.id, "object": "container.file", "created_at": self.created_at, "bytes": self.bytes,
                "container_id": self.container_id, "path": self.path, "source": self.source}  # fmt: skip


_C = containers.c
_F = container_files.c
_FILE_COLUMNS = (_F.id, _F.container_id, _F.path, _F.source, _F.created_us, _F.bytes, _F.mtime_ns)


def _container(row: Any) -> ContainerRow:
    return ContainerRow(id=row.id, tenant=row.tenant, name=row.name, status=row.status, created_us=row.created_us,
                        last_active_at=row.last_active_at, expires_minutes=row.expires_minutes,
                        memory_limit=row.memory_limit, origin=row.origin)  # fmt: skip


def _file(row: Any) -> FileRow:
    return FileRow(id=row.id, container_id=row.container_id, path=row.path, source=row.source,
                   created_us=row.created_us, bytes=row.bytes, mtime_ns=row.mtime_ns)  # fmt: skip


async def get(store: Store, tenant: str, container_id: str) -> ContainerRow | None:
    if not findable(container_id):
        return None
    q = select(containers).where(_C.id == container_id, _C.tenant == tenant)
    async with store.engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else _container(row)


async def auto_for(store: Store, tenant: str, response_ids: list[str]) -> ContainerRow | None:
    """The newest container made for one of ``response_ids`` (a response chain) by ``container: auto``."""
    if not response_ids:
        return None
    q = (select(containers).where(_C.tenant == tenant, _C.origin.in_(response_ids))
         .order_by(_C.created_us.desc()).limit(1))  # fmt: skip
    async with store.engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else _container(row)


async def page(
    store: Store, tenant: str, *, limit: int, order: str, after: str | None, name: str | None
) -> tuple[list[ContainerRow], bool]:
    """One page of the tenant's containers in creation order, and whether more follow."""
    q = select(containers).where(_C.tenant == tenant)
    if name is not None:
        q = q.where(_C.name == name)
    q = _keyset(q, _C.created_us, _C.id, select(_C.created_us).where(_C.id == after, _C.tenant == tenant), after, order)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q.limit(limit + 1))).all()
    return [_container(r) for r in rows[:limit]], len(rows) > limit


def _keyset(q: Select[Any], created: Any, ident: Any, after_created: Select[Any], after: str | None,
            order: str) -> Select[Any]:  # fmt: skip
    """``q`` ordered by (creation time, id) and started past ``after`` (an id whose row must exist)."""
    if after is not None:
        mark = after_created.scalar_subquery()
        if order == "asc":
            q = q.where(or_(created > mark, and_(created == mark, ident > after)))
        else:
            q = q.where(or_(created < mark, and_(created == mark, ident < after)))
    if order == "asc":
        return q.order_by(created.asc(), ident.asc())
    return q.order_by(created.desc(), ident.desc())


async def create(store: Store, row: ContainerRow) -> None:
    values = {"id": row.id, "tenant": row.tenant, "name": row.name, "status": row.status,
              "created_us": row.created_us, "last_active_at": row.last_active_at,
              "expires_minutes": row.expires_minutes, "memory_limit": row.memory_limit,
              "origin": row.origin}  # fmt: skip
    await store.transact(lambda conn: conn.execute(insert(containers).values(**values)))


async def touch(store: Store, container_id: str, now: int) -> None:
    """The container was used: its idle time starts again (never for an expired one)."""
    q = update(containers).where(_C.id == container_id, _C.status == RUNNING).values(last_active_at=now)
    await store.transact(lambda conn: conn.execute(q))


async def delete_container(store: Store, container_id: str) -> None:
    def work(conn: Connection) -> None:
        conn.execute(delete(container_files).where(_F.container_id == container_id))
        conn.execute(delete(containers).where(_C.id == container_id))

    await store.transact(work)


async def expire_idle(store: Store, now: int) -> list[str]:
    """Mark every running container idle past its ``expires_after`` as expired and drop its files; their ids."""

    def work(conn: Connection) -> list[str]:
        due = conn.execute(
            select(_C.id).where(_C.status == RUNNING, _C.last_active_at + _C.expires_minutes * 60 <= now)
        ).all()
        ids = [r.id for r in due]
        if ids:
            conn.execute(update(containers).where(_C.id.in_(ids), _C.status == RUNNING).values(status=EXPIRED))
            conn.execute(delete(container_files).where(_F.container_id.in_(ids)))
        return ids

    return await store.transact(work)


# -- files ------------------------------------------------------------------------------------------------


async def files_page(
    store: Store, container_id: str, *, limit: int, order: str, after: str | None
) -> tuple[list[FileRow], bool]:
    q = select(*_FILE_COLUMNS).where(_F.container_id == container_id)
    mark = select(_F.created_us).where(_F.id == after, _F.container_id == container_id)
    q = _keyset(q, _F.created_us, _F.id, mark, after, order)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q.limit(limit + 1))).all()
    return [_file(r) for r in rows[:limit]], len(rows) > limit


async def files(store: Store, container_id: str) -> list[FileRow]:
    """Every file of the container (without bytes), oldest first."""
    q = select(*_FILE_COLUMNS).where(_F.container_id == container_id).order_by(_F.created_us, _F.id)
    async with store.engine.connect() as conn:
        return [_file(r) for r in (await conn.execute(q)).all()]


async def file(store: Store, container_id: str, file_id: str) -> FileRow | None:
    if not findable(file_id):
        return None
    q = select(*_FILE_COLUMNS).where(_F.container_id == container_id, _F.id == file_id)
    async with store.engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else _file(row)


async def content(store: Store, container_id: str, file_id: str) -> bytes | None:
    if not findable(file_id):
        return None
    q = select(_F.data).where(_F.container_id == container_id, _F.id == file_id)
    async with store.engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else bytes(row.data)


async def contents(store: Store, container_id: str) -> list[tuple[str, bytes]]:
    """``(path, bytes)`` of every file, to write into a new sandbox process."""
    q = select(_F.path, _F.data).where(_F.container_id == container_id).order_by(_F.created_us, _F.id)
    async with store.engine.connect() as conn:
        return [(r.path, bytes(r.data)) for r in (await conn.execute(q)).all()]


async def put_file(store: Store, row: FileRow, data: bytes, *, keep_id: bool) -> FileRow:
    """Store a file at ``row.path``. A file already at that path is replaced: with ``keep_id`` (code changed
    it) the existing row keeps its id and creation time; otherwise (a new upload) it gives way to ``row``."""

    def work(conn: Connection) -> FileRow:
        old = conn.execute(
            select(*_FILE_COLUMNS).where(_F.container_id == row.container_id, _F.path == row.path)
        ).first()
        if old is not None and keep_id:
            conn.execute(update(container_files).where(_F.id == old.id)
                         .values(bytes=len(data), mtime_ns=row.mtime_ns, data=data))  # fmt: skip
            return replace(_file(old), bytes=len(data), mtime_ns=row.mtime_ns)
        if old is not None:
            conn.execute(delete(container_files).where(_F.id == old.id))
        conn.execute(insert(container_files).values(
            id=row.id, container_id=row.container_id, path=row.path, source=row.source, created_us=row.created_us,
            bytes=len(data), mtime_ns=row.mtime_ns, data=data))  # fmt: skip
        return row

    return await store.transact(work)


async def set_mtime(store: Store, file_id: str, mtime_ns: int) -> None:
    q = update(container_files).where(_F.id == file_id).values(mtime_ns=mtime_ns)
    await store.transact(lambda conn: conn.execute(q))


async def delete_file(store: Store, container_id: str, file_id: str) -> None:
    q = delete(container_files).where(_F.container_id == container_id, _F.id == file_id)
    await store.transact(lambda conn: conn.execute(q))


async def usage(store: Store, container_id: str) -> int:
    """Bytes stored for the container."""
    q = select(func.coalesce(func.sum(_F.bytes), 0)).where(_F.container_id == container_id)
    async with store.engine.connect() as conn:
        return int((await conn.execute(q)).scalar_one())
