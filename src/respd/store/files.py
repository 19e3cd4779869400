"""Uploaded files in the database: a row each, and their bytes in pieces (``file_chunks``).

This is the one way into stored files, for the Files API and for whatever reads files (input_file parts,
vector store ingestion):

- :class:`Upload` writes a file's bytes as they arrive, one piece of :data:`CHUNK_BYTES` per transaction,
  and stops at a size limit; :func:`create` does a whole upload from an async iterable of bytes.
- :func:`get` and :func:`list_page` read the rows; a file that is still uploading, deleted or expired is
  not there (``None``), for its own tenant as for any other.
- :func:`read` streams a file's bytes back, one piece at a time.
- :func:`delete` makes a file vanish at once, then removes its bytes; :func:`sweep` finishes what deletes,
  expiry and dead uploads left behind.

Bytes live in the database on SQLite and PostgreSQL alike, so every replica reads every file, and no file
is ever whole in memory: a piece is the most that is held at a time. On SQLite the writes run inline on the
event loop, as every SQLite write does (see :class:`respd.store.store.Store`); a piece is one short
transaction.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement

from respd.errors import ServerError, TooLarge
from respd.store import vectors
from respd.store.schema import file_chunks, files, findable
from respd.store.store import Store

CHUNK_BYTES = 1 << 20  # one row of file_chunks: 1 MiB (the last piece of a file may be shorter)
UPLOAD_STALE_S = 900  # an upload that wrote nothing for this long was abandoned (its replica died)
PURGE_CHUNKS = 16  # pieces removed per transaction when a file goes (short transactions, even on SQLite)
SWEEP_FILES = 100  # files one sweep removes at most

UPLOADING, PROCESSED, DELETED = "uploading", "processed", "deleted"


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file, whole and live (not uploading, deleted or expired)."""

    id: str
    tenant: str
    filename: str
    purpose: str
    mime: str  # the Content-Type the client gave the upload ("application/octet-stream" when it gave none)
    bytes: int
    sha256: str  # hex digest of the bytes
    created_at: int
    expires_at: int | None

    def resource(self) -> dict[str, Any]:
        """The API's ``OpenAIFile`` object."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "expires_at": self.expires_at, "filename": self.filename, "purpose": self.purpose,
                "status": "processed", "status_details": None}  # fmt: skip


def _record(row: Any) -> FileRecord:
    return FileRecord(id=row.id, tenant=row.tenant, filename=row.filename, purpose=row.purpose, mime=row.mime,
                      bytes=row.bytes, sha256=row.sha256, created_at=row.created_at,
                      expires_at=row.expires_at)  # fmt: skip


_COLUMNS = (files.c.id, files.c.tenant, files.c.filename, files.c.purpose, files.c.mime, files.c.bytes,
            files.c.sha256, files.c.created_at, files.c.expires_at)  # fmt: skip


def new_file_id(clock: float) -> str:
    """``file-`` and 48 hex characters: the creation second (``int(clock)``, so the id sorts as ``created_at``
    does), the microsecond (so files made in one second list in the order they were made), then 140 random
    bits (ids cannot be guessed across tenants)."""
    second, micros = int(clock), int(clock % 1 * 1_000_000)
    return f"file-{second & 0xFFFFFFFF:08x}{micros:05x}{os.urandom(18).hex()[:35]}"


def _live(now: int) -> ColumnElement[bool]:
    c = files.c
    return (c.status == PROCESSED) & or_(c.expires_at.is_(None), c.expires_at > now)


def _now() -> int:
    return int(time.time())


# -- writing --------------------------------------------------------------------------------------------
class Upload:
    """One file's bytes on their way into the database, piece by piece.

    ``await begin()``, then ``await write(data)`` as bytes arrive, then ``await finish(purpose, expires_at)``;
    on any failure ``await abort()``. Until it finishes the file is ``uploading``: no read sees it. Past
    ``max_bytes`` :meth:`write` raises :class:`~respd.errors.TooLarge` before storing anything more.
    """

    def __init__(self, store: Store, tenant: str, *, filename: str, mime: str, max_bytes: int) -> None:
        self.store = store
        self.tenant = tenant
        self.filename = filename
        self.mime = mime or "application/octet-stream"
        self.max_bytes = max_bytes
        clock = time.time()
        self.created_at = int(clock)
        self.id = new_file_id(clock)
        self.size = 0
        self._hash = hashlib.sha256()
        self._pending = bytearray()  # bytes not yet written: less than one piece
        self._seq = 0

    async def begin(self) -> None:
        row = {"id": self.id, "tenant": self.tenant, "status": UPLOADING, "filename": self.filename,
               "purpose": "", "mime": self.mime, "bytes": 0, "sha256": "", "created_at": self.created_at,
               "updated_at": self.created_at, "expires_at": None}  # fmt: skip
        await self.store.transact(lambda conn: conn.execute(insert(files), row))

    async def write(self, data: bytes) -> None:
        """Take the next bytes of the file; whole pieces go to the database now."""
        if self.size + len(data) > self.max_bytes:
            raise TooLarge(
                f"The file is too large: the limit is {self.max_bytes:,} bytes ({_human(self.max_bytes)}).",
                param="file",
            )
        self.size += len(data)
        self._hash.update(data)
        self._pending += data
        while len(self._pending) >= CHUNK_BYTES:
            piece = bytes(self._pending[:CHUNK_BYTES])
            del self._pending[:CHUNK_BYTES]
            await self._store_piece(piece)

    async def _store_piece(self, piece: bytes) -> None:
        seq, written, now = self._seq, self.size - len(self._pending), _now()

        def work(conn: Connection) -> None:
            conn.execute(insert(file_chunks), {"file_id": self.id, "seq": seq, "data": piece})
            # the heartbeat: an upload that stops writing is abandoned once UPLOAD_STALE_S have passed
            conn.execute(update(files).where(files.c.id == self.id).values(bytes=written, updated_at=now))

        await self.store.transact(work)
        self._seq += 1

    async def finish(self, purpose: str, expires_at: int | None) -> FileRecord:
        """Write the last piece and make the file visible; returns it."""
        if self._pending:
            piece = bytes(self._pending)
            self._pending.clear()
            await self._store_piece(piece)
        digest = self._hash.hexdigest()
        values = {"status": PROCESSED, "purpose": purpose, "bytes": self.size, "sha256": digest,
                  "updated_at": _now(), "expires_at": expires_at}  # fmt: skip
        q = update(files).where(files.c.id == self.id, files.c.status == UPLOADING).values(values)
        if not await self.store.transact(lambda conn: conn.execute(q).rowcount):
            raise ServerError(f"The upload of '{self.filename}' was removed before it finished; send it again.")
        return FileRecord(id=self.id, tenant=self.tenant, filename=self.filename, purpose=purpose, mime=self.mime,
                          bytes=self.size, sha256=digest, created_at=self.created_at,
                          expires_at=expires_at)  # fmt: skip

    async def abort(self) -> None:
        """Remove what was written (if this fails too, :func:`sweep` removes it once the upload is stale)."""
        self._pending.clear()
        await purge(self.store, self.id)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{n} bytes" if unit == "bytes" else f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} GiB"


async def create(
    store: Store,
    tenant: str,
    chunks: AsyncIterable[bytes],
    *,
    filename: str,
    purpose: str,
    mime: str = "application/octet-stream",
    expires_at: int | None = None,
    max_bytes: int,
) -> FileRecord:
    """Store a whole file from ``chunks`` (any sizes); raises :class:`~respd.errors.TooLarge` past ``max_bytes``,
    and then nothing of it remains."""
    up = Upload(store, tenant, filename=filename, mime=mime, max_bytes=max_bytes)
    await up.begin()
    try:
        async for data in chunks:
            await up.write(data)
        return await up.finish(purpose, expires_at)
    except BaseException:
        await up.abort()
        raise


# -- reading --------------------------------------------------------------------------------------------
async def get(store: Store, tenant: str, file_id: str) -> FileRecord | None:
    """The live file ``file_id`` of ``tenant``, or ``None`` (unknown, another tenant's, deleted, expired)."""
    if not findable(file_id):
        return None
    q = select(*_COLUMNS).where(files.c.id == file_id, files.c.tenant == tenant, _live(_now()))
    async with store.engine.connect() as conn:
        row = (await conn.execute(q)).first()
    return None if row is None else _record(row)


async def list_page(
    store: Store, tenant: str, *, purpose: str | None = None, order: str = "desc", after: str | None = None,
    limit: int = 10_000,
) -> tuple[list[FileRecord], bool]:  # fmt: skip
    """One page of ``tenant``'s live files by creation time, and whether more follow.

    An id begins with its creation time (:func:`new_file_id`), so the id order is the ``created_at`` order:
    ``after`` is a plain bound on the id, valid even once that file is gone.
    """
    c = files.c
    q = select(*_COLUMNS).where(c.tenant == tenant, _live(_now()))
    if purpose is not None:
        q = q.where(c.purpose == purpose)
    if after is not None:
        q = q.where(c.id > after if order == "asc" else c.id < after)
    q = q.order_by(c.id.asc() if order == "asc" else c.id.desc()).limit(limit + 1)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [_record(r) for r in rows[:limit]], len(rows) > limit


class FileGone(Exception):
    """A file's bytes went away while they were being read (it was deleted, or expired and swept)."""


async def read(store: Store, record: FileRecord) -> AsyncIterator[bytes]:
    """The bytes of ``record`` (from :func:`get`: its tenant is checked), one stored piece at a time.

    Raises :class:`FileGone` if the file is deleted before the last piece is read.
    """
    fc = file_chunks.c
    seq, total = 0, 0
    while total < record.bytes:
        q = select(fc.seq, fc.data).where(fc.file_id == record.id, fc.seq >= seq).order_by(fc.seq).limit(1)
        async with store.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            raise FileGone(f"File '{record.id}' was deleted while it was read.")
        seq, total = row.seq + 1, total + len(row.data)
        yield bytes(row.data)


# -- removing -------------------------------------------------------------------------------------------
async def delete_file(store: Store, tenant: str, file_id: str) -> bool:
    """Delete a live file of ``tenant``: gone for every reader at once, its bytes removed before this returns.
    ``False`` if there was no such file."""
    if not findable(file_id):
        return False
    now = _now()
    q = update(files).where(files.c.id == file_id, files.c.tenant == tenant, _live(now))
    marked = await store.transact(lambda conn: conn.execute(q.values(status=DELETED, updated_at=now)).rowcount)
    if not marked:
        return False
    await purge(store, file_id)
    return True


async def purge(store: Store, file_id: str) -> None:
    """Take a file out of the vector stores holding it, then remove its bytes, a few pieces per transaction,
    then its row (a crash part way leaves the row, marked, for :func:`sweep` to finish)."""
    await vectors.remove_file(store, file_id)
    fc = file_chunks.c
    async with store.engine.connect() as conn:
        top = (await conn.execute(select(func.max(fc.seq)).where(fc.file_id == file_id))).scalar()
    for low in range(-1 if top is None else top - PURGE_CHUNKS + 1, -PURGE_CHUNKS, -PURGE_CHUNKS):
        await _execute(store, delete(file_chunks).where(fc.file_id == file_id, fc.seq >= low))
    await _execute(store, delete(files).where(files.c.id == file_id))


async def _execute(store: Store, statement: Executable) -> None:
    """One statement in a transaction of its own."""
    await store.transact(lambda conn: conn.execute(statement))


async def sweep(store: Store) -> int:
    """Remove what should be gone: files deleted or expired, and uploads abandoned (their replica died).
    Returns how many files it removed; idempotent, and safe on several replicas at once."""
    c, now = files.c, _now()
    gone = or_(c.status == DELETED, (c.status == UPLOADING) & (c.updated_at < now - UPLOAD_STALE_S),
               c.expires_at <= now)  # fmt: skip
    async with store.engine.connect() as conn:
        ids = (await conn.execute(select(c.id).where(gone).limit(SWEEP_FILES))).scalars().all()
    for file_id in ids:
        # an expired file is marked first, so that a delete racing the sweep finds nothing to delete
        await _execute(store, update(files).where(c.id == file_id).values(status=DELETED, updated_at=now))
        await purge(store, file_id)
    return len(ids)
