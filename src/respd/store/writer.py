"""Group commit: many writes from many requests, one transaction.

Runs append row writes to a queue and go on; a single writer task drains the queue into one transaction
at a time. A write that a client is about to be told about (a terminal event, a non-streamed response)
is *urgent*: its caller awaits the commit, and the writer does not linger for more work first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from respd.store.schema import response_events, response_items, responses

log = logging.getLogger("respd.store")

LINGER_S = 0.003


@dataclass(slots=True)
class Batch:
    """Rows to write in one go. Inserts run before updates, deletes last."""

    responses: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (tenant, response_id)

    def extend(self, other: Batch) -> None:
        self.responses += other.responses
        self.items += other.items
        self.events += other.events
        self.updates += other.updates
        self.deletes += other.deletes


async def write_batch(conn: AsyncConnection, b: Batch) -> None:
    """Execute one batch on an open transaction."""
    if b.responses:
        await conn.execute(insert(responses), b.responses)
    if b.items:
        await conn.execute(insert(response_items), b.items)
    if b.events:
        await conn.execute(insert(response_events), b.events)
    for row in b.updates:
        values = {k: v for k, v in row.items() if k != "id"}
        await conn.execute(update(responses).where(responses.c.id == row["id"]).values(**values))
    for tenant, rid in b.deletes:
        await conn.execute(delete(response_events).where(response_events.c.response_id == rid))
        await conn.execute(delete(response_items).where(response_items.c.response_id == rid))
        await conn.execute(delete(responses).where(responses.c.id == rid, responses.c.tenant == tenant))


class Writer:
    """The one task that writes runs' rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[tuple[Batch, asyncio.Future[None] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="respd-writer")

    async def stop(self) -> None:
        """Write everything queued, then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, batch: Batch) -> None:
        """Queue rows; they are written within a few milliseconds."""
        self._queue.put_nowait((batch, None))

    async def commit(self, batch: Batch) -> None:
        """Queue rows and wait until they are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((batch, fut))
        await asyncio.shield(fut)

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self.commit(Batch())

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            pending = [first]
            if first[1] is None:
                await asyncio.sleep(LINGER_S)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            await self._write(pending)

    async def _write(self, pending: Sequence[tuple[Batch, asyncio.Future[None] | None]]) -> None:
        merged = Batch()
        for batch, _ in pending:
            merged.extend(batch)
        try:
            async with self._engine.begin() as conn:
                await write_batch(conn, merged)
        except Exception:
            log.exception("batched write failed; retrying each write alone")
            for batch, fut in pending:
                await self._write_one(batch, fut)
            return
        for _, fut in pending:
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _write_one(self, batch: Batch, fut: asyncio.Future[None] | None) -> None:
        try:
            async with self._engine.begin() as conn:
                await write_batch(conn, batch)
        except Exception as exc:
            log.exception("write failed")
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)
