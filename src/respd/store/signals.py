"""Wake-ups between replicas: a job was queued, a cancel was asked for, a response logged new events.

On PostgreSQL these are ``LISTEN``/``NOTIFY`` channels: the writer sends a batch's notices inside its
transaction (so they arrive only once the rows are visible), and every replica — the sender included —
gets them on one dedicated listening connection. On SQLite, the embedded single-process default, the
writer hands them straight to :meth:`Signals.deliver`. Notices are hints: whoever waits on one also polls,
so a notice lost while the listening connection reconnects delays work by one poll, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from respd.store.writer import EVENTS_CHANNEL

log = logging.getLogger("respd.signals")

JOBS = "respd_jobs"  # a background job was queued (payload unused)
CANCEL = "respd_cancel"  # payload: the response id to stop
EVENTS = EVENTS_CHANNEL  # payload: comma-separated ids of responses with newly committed events
WEBHOOKS = "respd_webhooks"  # webhook deliveries were added (payload unused)
CHANNELS = (JOBS, CANCEL, EVENTS, WEBHOOKS)


class Signals:
    """Named channels of string payloads, delivered to callbacks on the event loop."""

    def __init__(self) -> None:
        self._handlers: defaultdict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._event_waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.on(EVENTS, self._wake_event_waiters)

    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        """Call ``handler(payload)`` for each notice on ``channel``."""
        self._handlers[channel].append(handler)

    def deliver(self, channel: str, payload: str) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                handler(payload)
            except Exception:
                log.exception("handler of %s failed", channel)

    @contextlib.contextmanager
    def events_of(self, response_id: str) -> Any:
        """An :class:`asyncio.Event` set whenever new events of ``response_id`` are committed."""
        waiter = asyncio.Event()
        self._event_waiters[response_id].add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._event_waiters.get(response_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._event_waiters[response_id]

    def wake(self, response_id: str) -> None:
        """Wake this process's followers of ``response_id`` (its run began here)."""
        self._wake_event_waiters(response_id)

    def _wake_event_waiters(self, payload: str) -> None:
        for rid in payload.split(","):
            for waiter in self._event_waiters.get(rid, ()):
                waiter.set()

    async def start(self) -> None:
        """Begin receiving notices (a no-op in one process)."""

    async def stop(self) -> None:
        """Stop receiving notices."""


class PgSignals(Signals):
    """Signals over PostgreSQL ``LISTEN``, on one asyncpg connection that reconnects when it drops."""

    RECONNECT_S = 1.0

    def __init__(self, database_url: str) -> None:
        super().__init__()
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep_connected(), name="respd-listen")

    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        self._lost.clear()
        conn = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(lambda _c: self._lost.set())
        for channel in CHANNELS:
            await conn.add_listener(channel, self._on_notify)
        self._conn = conn

    def _on_notify(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.deliver(channel, payload)

    async def _keep_connected(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("lost the PostgreSQL listening connection; reconnecting")
            while True:
                await asyncio.sleep(self.RECONNECT_S)
                try:
                    await self._connect()
                    break
                except Exception as exc:
                    log.warning("reconnecting the listening connection failed: %s", exc)
            # notices sent while disconnected are gone: wake everyone so they look for themselves
            self.deliver(JOBS, "")
            for rid in list(self._event_waiters):
                self._wake_event_waiters(rid)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
