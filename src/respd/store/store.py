"""Reads of stored responses, and the database engine they share with the writer.

SQLite (embedded default, one file) and PostgreSQL (for scale) run the same queries. Every read is
scoped by tenant: what one API key created is invisible to another.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from respd.store.migrate import migrate
from respd.store.schema import SEQ_MAX, findable, response_events, response_items, responses
from respd.store.signals import PgSignals, Signals
from respd.store.writer import SQLITE_LINGER_S, SqliteSink, Writer, async_sink

T = TypeVar("T")

_CHAIN = text(
    """
    WITH RECURSIVE chain(id, prev, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses WHERE id = :id AND tenant = :tenant
        UNION ALL
        SELECT r.id, r.previous_response_id, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.prev WHERE r.tenant = :tenant
    )
    SELECT i.body FROM response_items i JOIN chain c ON i.response_id = c.id
    ORDER BY c.depth DESC, i.kind, i.position
    """
)  # kind sorts 'input' before 'output'


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across process crashes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; creates the SQLite file's folder when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_sync_engine(url: str) -> Engine:
    """Plain pysqlite connections, used inline on the event loop (see respd.store.writer)."""
    sync = sa_create_engine(make_url(url).set(drivername="sqlite"), connect_args={"check_same_thread": False})
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync


class Store:
    """The database: reads here, writes through :attr:`writer`, notices through :attr:`signals`."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        self.signals: Signals = Signals() if self.is_sqlite else PgSignals(url)
        # SQLite has one writer at a time: every write runs inline on the event loop (the writer's batches
        # and :meth:`transact`), so no write waits on the file lock of another that needs the loop to end.
        self._sync = _sqlite_sync_engine(url) if self.is_sqlite else None
        if self._sync is not None:
            sink = SqliteSink(self._sync, self.signals.deliver)
            self.writer = Writer(sink, sink.close, linger_s=SQLITE_LINGER_S, now=sink.now)
        else:
            self.writer = Writer(async_sink(self.engine))

    async def transact(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction of its own (claims and leases, which need their results now)."""
        if self._sync is not None:
            with self._sync.begin() as conn:
                return work(conn)
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def open(self) -> None:
        """Migrate the schema, start the writer and begin receiving notices."""
        await migrate(self.engine)
        self.writer.start()
        await self.signals.start()

    async def close(self) -> None:
        await self.signals.stop()
        await self.writer.stop()
        await self.engine.dispose()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def get_response(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        """The stored row of a response: ``status``, ``background`` and the cached ``body`` (decoded)."""
        if not findable(response_id):
            return None
        q = select(responses.c.status, responses.c.background, responses.c.body).where(
            responses.c.id == response_id, responses.c.tenant == tenant
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        return {"status": row.status, "background": row.background, "body": orjson.loads(row.body)}

    async def chain_items(self, tenant: str, response_id: str) -> list[dict[str, Any]]:
        """Every input and output item of ``response_id`` and the responses it chains back to."""
        if not findable(response_id):
            return []
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_CHAIN, {"id": response_id, "tenant": tenant})).all()
        return [orjson.loads(r.body) for r in rows]

    async def find_items(self, tenant: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored items by id (for ``item_reference``); the newest copy wins."""
        item_ids = [i for i in item_ids if findable(i)]
        if not item_ids:
            return {}
        q = select(response_items.c.item_id, response_items.c.body).where(
            response_items.c.tenant == tenant, response_items.c.item_id.in_(item_ids)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return {r.item_id: orjson.loads(r.body) for r in rows}

    async def input_items(self, response_id: str) -> list[dict[str, Any]]:
        """The input items of a response, oldest first."""
        if not findable(response_id):
            return []
        q = (
            select(response_items.c.body)
            .where(response_items.c.response_id == response_id, response_items.c.kind == "input")
            .order_by(response_items.c.position)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [orjson.loads(r.body) for r in rows]

    async def events_after(self, response_id: str, after: int) -> list[tuple[int, bytes]]:
        """The logged events with sequence number > ``after``, each as its stored JSON (none past the log's
        range: an ``after`` beyond it is no error, there is just nothing after it)."""
        if not findable(response_id) or after >= SEQ_MAX:
            return []
        q = (
            select(response_events.c.seq, response_events.c.body)
            .where(response_events.c.response_id == response_id, response_events.c.last_seq > after)
            .order_by(response_events.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for row in rows:
            for offset, line in enumerate(row.body.encode().split(b"\n")):
                if row.seq + offset > after:
                    out.append((row.seq + offset, line))
        return out

    async def unfinished(self) -> list[tuple[str, dict[str, Any], int]]:
        """Foreground responses still marked running: ``(id, body, last sequence number)``."""
        last = (
            select(func.max(response_events.c.last_seq))
            .where(response_events.c.response_id == responses.c.id)
            .scalar_subquery()
        )
        q = select(responses.c.id, responses.c.body, last.label("last")).where(
            responses.c.status.in_(("queued", "in_progress")), responses.c.background.is_(False)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [(r.id, orjson.loads(r.body), -1 if r.last is None else r.last) for r in rows]
