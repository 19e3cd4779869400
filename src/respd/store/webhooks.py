"""Webhook deliveries in the database: the rows a finished response adds, claims, outcomes, inspection.

A delivery is claimed like a job (:mod:`respd.jobs.queue`): one statement moves a due row's
``next_attempt_at`` to the end of this attempt's lease and names the claiming replica, with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL so that replicas claiming together never take the same row. The outcome is written
only by the replica that holds the claim (``owner`` and ``attempts`` unchanged since): one that lost its
claim (it stalled past the lease and another replica took the row) records nothing over the other's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, text, update

from respd.store.batch import Sql
from respd.store.schema import webhook_attempts, webhook_deliveries
from respd.store.store import Store

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_COLUMNS = [c.name for c in webhook_deliveries.columns]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to add: ``event`` (the JSON body) for the endpoint named ``endpoint`` at ``url``."""

    id: str
    event: dict[str, Any]
    response_id: str
    tenant: str
    endpoint: str
    url: str


class AddDeliveries:
    """A writer :class:`~respd.store.writer.Op` adding deliveries, due now, in the batch's transaction (the
    one that writes the response's terminal event)."""

    def __init__(self, deliveries: list[NewDelivery]) -> None:
        self.deliveries = deliveries

    def apply(self, sql: Sql) -> None:
        now = now_ms()
        rows = [{"id": d.id, "event_id": d.event["id"], "event_type": d.event["type"], "response_id": d.response_id,
                 "tenant": d.tenant, "endpoint": d.endpoint, "url": d.url, "body": orjson.dumps(d.event).decode(),
                 "state": PENDING, "attempts": 0, "created_at": now, "next_attempt_at": now, "owner": None,
                 "last_status": None, "last_error": None, "delivered_at": None} for d in self.deliveries]  # fmt: skip
        columns = ", ".join(_COLUMNS)
        sql.execute(f"INSERT INTO webhook_deliveries ({columns}) VALUES ({', '.join(':' + c for c in _COLUMNS)})",
                    rows)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this replica holds for one attempt."""

    id: str
    endpoint: str
    url: str
    body: str
    attempts: int  # before this one
    created_at: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt came to, and what happens next."""

    state: str  # pending (retry at next_attempt_at), delivered, failed (given up)
    next_attempt_at: int
    started_at: int
    duration_ms: int
    status: int | None
    error: str | None


_CLAIM = """
UPDATE webhook_deliveries SET owner = :me, next_attempt_at = :lease_until
WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= :now
    ORDER BY next_attempt_at LIMIT :n {lock})
RETURNING id, endpoint, url, body, attempts, created_at
"""


class WebhookStore:
    """Claims, outcomes and reads of deliveries, for one replica (``replica_id``)."""

    def __init__(self, store: Store, replica_id: str) -> None:
        self.store = store
        self.replica_id = replica_id
        self._claim = text(_CLAIM.format(lock="" if store.is_sqlite else "FOR UPDATE SKIP LOCKED"))

    async def claim(self, n: int, lease_ms: int) -> list[Claimed]:
        """Up to ``n`` due deliveries, now held by this replica until ``lease_ms`` from now."""
        now = now_ms()
        params = {"me": self.replica_id, "now": now, "lease_until": now + lease_ms, "n": n}
        rows = await self.store.transact(lambda conn: conn.execute(self._claim, params).all())
        return [Claimed(r.id, r.endpoint, r.url, r.body, r.attempts, r.created_at) for r in rows]

    async def record(self, claimed: Claimed, outcome: Outcome) -> bool:
        """Write the attempt and the delivery's next state; False if this replica no longer held it."""

        delivered = outcome.started_at + outcome.duration_ms if outcome.state == DELIVERED else None

        def work(conn: Connection) -> bool:
            q = update(webhook_deliveries).where(
                webhook_deliveries.c.id == claimed.id, webhook_deliveries.c.owner == self.replica_id,
                webhook_deliveries.c.attempts == claimed.attempts,
            ).values(state=outcome.state, attempts=claimed.attempts + 1, next_attempt_at=outcome.next_attempt_at,
                     owner=None, last_status=outcome.status, last_error=outcome.error,
                     delivered_at=delivered)  # fmt: skip
            if conn.execute(q).rowcount != 1:
                return False
            conn.execute(insert(webhook_attempts).values(
                delivery_id=claimed.id, attempt=claimed.attempts + 1, started_at=outcome.started_at,
                duration_ms=outcome.duration_ms, status=outcome.status, error=outcome.error,
                replica=self.replica_id))  # fmt: skip
            return True

        return await self.store.transact(work)

    async def next_due(self) -> int | None:
        """When the next pending delivery is due (milliseconds), if any."""
        q = select(func.min(webhook_deliveries.c.next_attempt_at)).where(webhook_deliveries.c.state == PENDING)
        return await self.store.transact(lambda conn: conn.execute(q).scalar())

    async def prune(self, before_ms: int) -> int:
        """Forget deliveries that ended (delivered or given up) before ``before_ms``, and their attempts."""

        def work(conn: Connection) -> int:
            ended = select(webhook_deliveries.c.id).where(webhook_deliveries.c.state != PENDING,
                                                          webhook_deliveries.c.next_attempt_at < before_ms)  # fmt: skip
            conn.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(ended)))
            return int(conn.execute(webhook_deliveries.delete().where(webhook_deliveries.c.id.in_(ended))).rowcount)

        return await self.store.transact(work)

    async def pending(self) -> int:
        q = select(func.count()).select_from(webhook_deliveries).where(webhook_deliveries.c.state == PENDING)
        async with self.store.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    # -- inspection (respd webhooks …) -------------------------------------------------------------------------
    async def list(
        self, state: str | None = None, response_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest deliveries, optionally of one state or one response."""
        q = select(webhook_deliveries).order_by(webhook_deliveries.c.created_at.desc()).limit(limit)
        if state:
            q = q.where(webhook_deliveries.c.state == state)
        if response_id:
            q = q.where(webhook_deliveries.c.response_id == response_id)
        async with self.store.engine.connect() as conn:
            return [_delivery(_plain(r._mapping)) for r in (await conn.execute(q)).all()]

    async def get(self, delivery_id: str) -> dict[str, Any] | None:
        """One delivery with its attempts, oldest first."""
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id))).first()
            if row is None:
                return None
            q = select(webhook_attempts).where(webhook_attempts.c.delivery_id == delivery_id) \
                .order_by(webhook_attempts.c.attempt)  # fmt: skip
            attempts = [_plain(a._mapping) for a in (await conn.execute(q)).all()]
        return {**_delivery(_plain(row._mapping)), "attempt_log": attempts}

    async def retry(self, delivery_id: str) -> bool:
        """Make a delivery (given up or pending) due now; False if there is none or it was delivered."""
        q = update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id,
                                             webhook_deliveries.c.state != DELIVERED)  # fmt: skip
        values = {"state": PENDING, "next_attempt_at": now_ms(), "owner": None}
        return bool(await self.store.transact(lambda conn: conn.execute(q.values(**values)).rowcount))


def _plain(mapping: Any) -> dict[str, Any]:
    return {str(k): v for k, v in mapping.items()}  # plain str keys (SQLAlchemy's are a subclass)


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    row["body"] = orjson.loads(row["body"])
    return row
