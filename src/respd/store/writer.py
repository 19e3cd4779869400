"""Group commit: many writes from many requests, one transaction.

Runs append rows to a queue and go on; a single writer drains the queue into one transaction at a time.
A write that a client is about to be told about (a terminal event, a non-streamed response) is *urgent*:
its caller awaits the commit, and the writer does not linger for more work first.

On PostgreSQL a batch is SQLAlchemy Core on the async engine (:func:`write_batch` through ``run_sync``).
On SQLite — the embedded default, where respd's own overhead is what a user measures — a batch is a few
``executemany`` calls on the writer's own DBAPI connection, run inline on the event loop: no thread
hand-off, no statement compilation; SQLite's WAL commit without fsync takes a fraction of a millisecond.
WAL checkpoints (the part that does fsync) run in a background thread instead (:class:`SqliteSink`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

# Batch, Op and Sql are re-exported: the unit of a write lives in respd.store.batch
from respd.store.batch import Batch as Batch
from respd.store.batch import Op as Op
from respd.store.batch import Params
from respd.store.batch import Sql as Sql
from respd.store.schema import jobs, response_events, response_items, responses

log = logging.getLogger("respd.store")

# How long the writer waits for more rows before a write nobody awaits. On PostgreSQL, short: a follower on
# another replica sees events only once committed. On SQLite every follower is in this process (it reads the
# live hub), so the wait can be long enough to group a streaming model's tokens into fewer commits (a commit
# costs ~0.2 ms of the event loop, taken from a local model's decoding on a small machine); a crash loses at
# most this much of a running response's log, which its recovery treats like any other cut. (At 0.25 s the
# saving measured below the benchmark's noise.) A response's first rows are not held back (``submit(urgent=True)``).
LINGER_S = 0.003
SQLITE_LINGER_S = 0.05


def is_conflict(exc: BaseException) -> bool:
    """Whether a failed write broke a unique constraint (two writers raced to add the same key), on either
    database: the loser of such a race gets a 4xx, not a 500."""
    return isinstance(exc, sqlalchemy.exc.IntegrityError | sqlite3.IntegrityError)


class WriteLost(Exception):
    """A response's earlier rows were handed to the writer without waiting and could not be written: nothing
    more of it is written (no event after a gap, no end of a response whose row is missing)."""


class Fenced(WriteLost):
    """Responses this replica was writing were taken over by another one (their lease epoch moved on while
    this replica was paused or cut off past its lease): nothing more of them is written from here."""

    def __init__(self, ids: set[str]) -> None:
        super().__init__(f"taken over by another replica: {', '.join(sorted(ids))}")
        self.ids = ids


def _refuse_stale(fences: Mapping[str, int], rows: Sequence[Any]) -> None:
    """Raise :class:`Fenced` for the fenced responses whose stored epoch is not the writer's. A response with
    no row yet (inserted by this batch) or no longer (deleted) has no one else writing it."""
    stale = {rid for rid, epoch in rows if fences.get(rid, epoch) != epoch}
    if stale:
        raise Fenced(stale)


def _check_fences(conn: Connection, b: Batch) -> None:
    """The fence check of a batch, first thing in its transaction (PostgreSQL). The rows read are locked until
    the commit, so a takeover's epoch bump waits for this write, or this write sees the bump: the taking
    replica reads the log only after every write under the old epoch. The lock is exclusive, so two writers
    of one response (the fenced one and the taker) take turns rather than deadlock on a later update; jobs
    first, as a claim locks them (a claim skips rows locked here), then responses, each in id order."""
    if not b.fences:
        return
    ids = sorted(b.fences)
    conn.execute(select(jobs.c.response_id).where(jobs.c.response_id.in_(ids)).order_by(jobs.c.response_id)
                 .with_for_update())  # fmt: skip
    q = select(responses.c.id, responses.c.lease_epoch).where(responses.c.id.in_(ids)).order_by(responses.c.id)
    _refuse_stale(b.fences, conn.execute(q.with_for_update()).all())


EVENTS_CHANNEL = "respd_events"  # payload: ids of responses with newly committed events, comma-separated
_NOTICE_MAX = 7000  # PostgreSQL's NOTIFY payload limit is 8000 bytes


def _event_notices(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``respd_events`` notices naming every response with events in the batch (for other replicas' followers)."""
    ids = list(dict.fromkeys(e["response_id"] for e in events))
    notices, chunk = [], ""
    for rid in ids:
        if chunk and len(chunk) + len(rid) + 1 > _NOTICE_MAX:
            notices.append((EVENTS_CHANNEL, chunk))
            chunk = ""
        chunk = f"{chunk},{rid}" if chunk else rid
    if chunk:
        notices.append((EVENTS_CHANNEL, chunk))
    return notices


def write_batch(conn: Connection, b: Batch) -> None:
    """Execute one batch on an open transaction; notices are sent with PostgreSQL's NOTIFY at commit.
    Raises :class:`Fenced` (before writing anything) if a fenced response was taken over."""
    _check_fences(conn, b)
    if b.responses:
        conn.execute(insert(responses), b.responses)
    if b.items:
        conn.execute(insert(response_items), b.items)
    if b.events:
        conn.execute(insert(response_events), b.events)
    for row in b.updates:
        values = {k: v for k, v in row.items() if k != "id"}
        conn.execute(update(responses).where(responses.c.id == row["id"]).values(**values))
    for op in b.ops:
        op.apply(_CoreSql(conn))
    for tenant, rid in b.deletes:
        conn.execute(delete(response_events).where(response_events.c.response_id == rid))
        conn.execute(delete(response_items).where(response_items.c.response_id == rid))
        conn.execute(delete(responses).where(responses.c.id == rid, responses.c.tenant == tenant))
        conn.execute(delete(jobs).where(jobs.c.response_id == rid))
    if b.jobs:
        conn.execute(insert(jobs), b.jobs)
    if b.finished_jobs:
        conn.execute(delete(jobs).where(jobs.c.response_id.in_(b.finished_jobs)))
    for channel, payload in [*b.notices, *_event_notices(b.events)]:
        conn.execute(select(func.pg_notify(channel, payload)))


class _CoreSql:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | Sequence[Params]) -> list[tuple[Any, ...]]:
        result = self._conn.execute(text(sql), params)
        return [tuple(row) for row in result.all()] if result.returns_rows else []


class _DbapiSql:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | Sequence[Params]) -> list[tuple[Any, ...]]:
        if isinstance(params, Mapping):
            return [tuple(row) for row in self._conn.execute(sql, params).fetchall()]
        self._conn.executemany(sql, params)
        return []


def _insert_sql(table: Table) -> tuple[str, list[str]]:
    cols = [c.name for c in table.columns if c.server_default is None]  # the others take their default
    return f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", cols


class SqliteSink:
    """Writes batches on one SQLite DBAPI connection; checkpoints the WAL from a thread about every second.

    Checkpoints run beside the writes (a checkpoint's fsync can take tens of milliseconds here). But a
    checkpoint that runs beside a writer cannot copy the frames being added, so under steady load the WAL
    never starts over: it grew to hundreds of megabytes within a minute of the benchmark, and every page
    read slows with its size. So once a checkpoint reports a log over :attr:`WAL_RESTART_FRAMES`, the next
    write waits for one more checkpoint that nothing writes beside (short: the earlier ones copied most of
    the log), and the log starts over after it.

    SQLite is one process's database, so notices go straight to ``deliver`` after the commit.
    """

    CHECKPOINT_S = 1.0
    WAL_RESTART_FRAMES = 8192  # 32 MB of 4 KB pages

    def __init__(self, engine: Engine, deliver: Callable[[str, str], None]) -> None:
        self._engine = engine
        self._deliver = deliver
        self._conn: Any = None
        self._inserts = [_insert_sql(t) for t in (responses, response_items, response_events, jobs)]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="respd-checkpoint")
        self._checkpointing: asyncio.Future[int] | None = None
        self._checkpointed_at = time.monotonic()
        self._restart = False  # the next write first waits for a checkpoint nothing writes beside

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._engine.raw_connection()
            self._conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the thread, see above
        return self._conn

    async def __call__(self, b: Batch) -> None:
        running = self._checkpointing
        if running is not None and (running.done() or self._restart):
            self._checkpointing = None
            if await running > self.WAL_RESTART_FRAMES:
                self._restart = True
        if self._restart:  # a checkpoint with no write beside it, so that this write starts the log over
            self._restart = False
            await asyncio.get_running_loop().run_in_executor(self._pool, self._checkpoint)
            self._checkpointed_at = time.monotonic()
        self._write(b)
        self._after(b)

    def now(self, b: Batch) -> bool:
        """Write ``b`` at once, without suspending, unless a checkpoint's outcome must be awaited first."""
        if self._restart or (self._checkpointing is not None and self._checkpointing.done()):
            return False
        self._write(b)
        self._after(b)
        return True

    def _write(self, b: Batch) -> None:
        conn = self._connection()
        try:
            if b.fences:
                # The write lock first, so that no other connection bumps an epoch between check and write.
                if not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                ids = sorted(b.fences)
                marks = ", ".join("?" * len(ids))
                _refuse_stale(b.fences, conn.execute(f"SELECT id, lease_epoch FROM responses WHERE id IN ({marks})",
                                                     ids).fetchall())  # fmt: skip
            tables = (b.responses, b.items, b.events, b.jobs)
            for (sql, cols), rows in zip(self._inserts, tables, strict=True):
                if rows:
                    conn.executemany(sql, [tuple(row[c] for c in cols) for row in rows])
            if b.updates:
                conn.executemany("UPDATE responses SET status = ?, updated_at = ?, body = ? WHERE id = ?",
                                 [(u["status"], u["updated_at"], u["body"], u["id"]) for u in b.updates])  # fmt: skip
            for op in b.ops:
                op.apply(_DbapiSql(conn))
            for tenant, rid in b.deletes:
                conn.execute("DELETE FROM response_events WHERE response_id = ?", (rid,))
                conn.execute("DELETE FROM response_items WHERE response_id = ?", (rid,))
                conn.execute("DELETE FROM responses WHERE id = ? AND tenant = ?", (rid, tenant))
                conn.execute("DELETE FROM jobs WHERE response_id = ?", (rid,))
            if b.finished_jobs:
                conn.executemany("DELETE FROM jobs WHERE response_id = ?", [(rid,) for rid in b.finished_jobs])
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _after(self, b: Batch) -> None:
        for channel, payload in b.notices:
            self._deliver(channel, payload)
        now = time.monotonic()
        if self._checkpointing is None and now - self._checkpointed_at >= self.CHECKPOINT_S:
            self._checkpointed_at = now
            self._checkpointing = asyncio.get_running_loop().run_in_executor(self._pool, self._checkpoint)

    def _checkpoint(self) -> int:
        """Copy what it can of the WAL into the database; return the WAL's length in frames."""
        try:
            with self._engine.connect() as conn:
                row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
            return int(row[1]) if row is not None else 0
        except Exception:  # the WAL only grows until the next one; never fail a write over it
            log.exception("WAL checkpoint failed")
            return 0

    async def close(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        if self._conn is not None:
            self._conn.close()
        self._pool.shutdown()


def async_sink(engine: AsyncEngine) -> Callable[[Batch], Awaitable[None]]:
    """Write batches through the async engine (PostgreSQL)."""

    async def sink(batch: Batch) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(write_batch, batch)

    return sink


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Writer:
    """The one task that writes runs' rows."""

    def __init__(
        self,
        sink: Callable[[Batch], Awaitable[None]],
        close: Callable[[], Awaitable[None]] | None = None,
        linger_s: float = LINGER_S,
        now: Callable[[Batch], bool] | None = None,
    ) -> None:
        self._sink = sink
        self._close = close
        self._linger_s = linger_s
        self._now = now  # writes a batch without suspending, if it can (see commit)
        self._busy = False  # the writer task holds entries it has not finished writing
        # (rows, the future of an awaited commit, urgent: write without lingering)
        self._queue: asyncio.Queue[tuple[Batch, asyncio.Future[None] | None, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._lingering: asyncio.Future[None] | None = None  # set while the writer waits for more work
        self._urgent = 0  # urgent entries in the queue
        # responses whose rows handed over without waiting (submit) failed to be written: see WriteLost
        self._lost: set[str] = set()
        self._fenced: set[str] = set()  # responses another replica took over: see Fenced

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="respd-writer")

    async def stop(self) -> None:
        """Write everything queued, then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._close is not None:
            await self._close()

    def submit(self, batch: Batch, *, urgent: bool = False) -> None:
        """Queue rows without waiting for them; they are written within the linger, or at once if ``urgent``
        (a response's first rows: a crash right after should not leave a client holding the id of a response
        that does not exist)."""
        if (self._lost or self._fenced) and batch.response_ids() & (self._lost | self._fenced):
            return  # after a gap in its rows (or once taken over), nothing more of that response is written
        self._put((batch, None, urgent))

    async def commit(self, batch: Batch, *, alone: bool = False) -> None:
        """Queue rows and wait until they are durable.

        ``alone``: the caller is the only response running here, so no other could join this commit. If the
        writer is idle too, the rows are written at once in the caller's task (without suspending, so a
        cancelled caller cannot cut the write short): at concurrency 1 the hand-off to the writer task and
        back was ~100 µs of a ~1.5 ms request.

        Raises :class:`WriteLost` if rows of a response in ``batch`` were submitted earlier and not written.
        """
        self._refuse_lost(batch)
        if alone and self._now is not None and not self._busy and self._queue.empty():
            try:
                if self._now(batch):
                    return
            except Fenced as exc:
                self._fenced |= exc.ids
                raise
            except Exception:
                log.exception("write failed")  # as a queued write that fails: logged, raised to its caller
                raise
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((batch, fut, True))
        await asyncio.shield(fut)

    def _refuse_lost(self, batch: Batch) -> None:
        if self._fenced and (fenced := batch.response_ids() & self._fenced):
            raise Fenced(fenced)
        if self._lost and (lost := batch.response_ids() & self._lost):
            raise WriteLost(f"earlier rows of {', '.join(sorted(lost))} could not be written")

    def lost(self, response_id: str) -> bool:
        """Whether rows of ``response_id`` handed over without waiting could not be written."""
        return response_id in self._lost

    def fenced(self, response_id: str) -> bool:
        """Whether another replica took ``response_id`` over from this one (see :class:`Fenced`)."""
        return response_id in self._fenced

    def forget(self, response_id: str) -> None:
        """``response_id`` was dealt with (deleted, or claimed again by this replica): its rows may be written
        again."""
        self._lost.discard(response_id)
        self._fenced.discard(response_id)

    def _put(self, entry: tuple[Batch, asyncio.Future[None] | None, bool]) -> None:
        self._queue.put_nowait(entry)
        if entry[2]:
            self._urgent += 1
            if self._lingering is not None:
                _wake(self._lingering)  # it is waited for: stop lingering

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self.commit(Batch())

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            self._busy = True
            pending = [first]
            if not self._urgent:  # nothing queued is waited for (an urgent write may sit behind ``first``)
                await self._linger()
            else:
                # One turn of the loop: runs that finish in the same turn (replies read from one poll of
                # the sockets) join this commit instead of waiting for the next one.
                await asyncio.sleep(0)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            self._urgent = 0
            try:
                await self._write(pending)
            finally:
                self._busy = False

    async def _linger(self) -> None:
        """Wait a few milliseconds for more rows to join this transaction, unless a commit is awaited."""
        loop = asyncio.get_running_loop()
        self._lingering = waiter = loop.create_future()
        timer = loop.call_later(self._linger_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._lingering = None

    async def _write(self, pending: Sequence[tuple[Batch, asyncio.Future[None] | None, bool]]) -> None:
        merged = Batch()
        for batch, _, _ in pending:
            merged.extend(batch)
        try:
            await self._sink(merged)
        except Fenced as exc:
            # nothing was written: the fenced responses' entries are refused, the others written together
            log.warning("%s; not writing their rows", exc)
            self._fenced |= exc.ids
            rest = []
            for batch, fut, urgent in pending:
                if batch.response_ids() & exc.ids or exc.ids & batch.fences.keys():
                    if fut is not None and not fut.done():
                        fut.set_exception(Fenced(exc.ids))
                else:
                    rest.append((batch, fut, urgent))
            if rest:
                await self._write(rest)
            return
        except Exception:
            log.exception("batched write failed; retrying each write alone")
            for batch, fut, _ in pending:
                await self._write_one(batch, fut)
            return
        for _, fut, _ in pending:
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _write_one(self, batch: Batch, fut: asyncio.Future[None] | None) -> None:
        try:
            self._refuse_lost(batch)  # an earlier entry of this round may have just lost this response's rows
            await self._sink(batch)
        except Exception as exc:
            if not isinstance(exc, WriteLost):
                log.exception("write failed")
            if isinstance(exc, Fenced):
                self._fenced |= exc.ids
            elif fut is None:
                self._lost |= batch.response_ids()
            elif not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)
