"""Group commit: many writes from many requests, one transaction.

Runs append rows to a queue and go on; a single writer drains the queue into one transaction at a time.
A write that a client is about to be told about (a terminal event, a non-streamed response) is *urgent*:
its caller awaits the commit, and the writer does not linger for more work first.

The transaction itself is plain synchronous SQLAlchemy Core (:func:`write_batch`). On SQLite it runs in a
thread of its own with its own connection — one hand-off per batch instead of one per statement; on
PostgreSQL it runs on the async engine through ``run_sync``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from respd.store.schema import response_events, response_items, responses

log = logging.getLogger("respd.store")

LINGER_S = 0.003


@dataclass(slots=True)
class Batch:
    """Rows to write in one go. Inserts run before updates, deletes last.

    ``events`` are single events ``{response_id, seq, body}``; consecutive events of one response are
    written as one event-log row.
    """

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


def _event_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for rid, group in groupby(events, key=lambda e: e["response_id"]):
        evs = list(group)
        rows.append({"response_id": rid, "seq": evs[0]["seq"], "last_seq": evs[-1]["seq"],
                     "body": "\n".join(e["body"] for e in evs)})  # fmt: skip
    return rows


def write_batch(conn: Connection, b: Batch) -> None:
    """Execute one batch on an open transaction."""
    if b.responses:
        conn.execute(insert(responses), b.responses)
    if b.items:
        conn.execute(insert(response_items), b.items)
    if b.events:
        conn.execute(insert(response_events), _event_rows(b.events))
    for row in b.updates:
        values = {k: v for k, v in row.items() if k != "id"}
        conn.execute(update(responses).where(responses.c.id == row["id"]).values(**values))
    for tenant, rid in b.deletes:
        conn.execute(delete(response_events).where(response_events.c.response_id == rid))
        conn.execute(delete(response_items).where(response_items.c.response_id == rid))
        conn.execute(delete(responses).where(responses.c.id == rid, responses.c.tenant == tenant))


def thread_sink(engine: Engine) -> Callable[[Batch], Awaitable[None]]:
    """Write batches with a synchronous engine in one dedicated thread (SQLite)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="respd-writer")

    def run(batch: Batch) -> None:
        with engine.begin() as conn:
            write_batch(conn, batch)

    async def sink(batch: Batch) -> None:
        await asyncio.get_running_loop().run_in_executor(pool, run, batch)

    return sink


def async_sink(engine: AsyncEngine) -> Callable[[Batch], Awaitable[None]]:
    """Write batches through the async engine (PostgreSQL)."""

    async def sink(batch: Batch) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(write_batch, batch)

    return sink


class Writer:
    """The one task that writes runs' rows."""

    def __init__(self, sink: Callable[[Batch], Awaitable[None]]) -> None:
        self._sink = sink
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
            await self._sink(merged)
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
            await self._sink(batch)
        except Exception as exc:
            log.exception("write failed")
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)
