"""The durable job queue and the replica registry, in the database.

A replica (one ``respd serve`` process) registers itself and renews a lease while it lives. A job is a row
in ``jobs`` of some ``kind`` — a background response (``response``) or a vector store file to ingest
(``ingest``) — queued while ``owner`` is null, running while a live replica owns it. Each kind is claimed
by its own loop, with its own capacity. Work
owned by a replica whose lease ran out — a job, or a foreground response it was streaming — is claimable
by any other replica. Claims are single statements: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many
replicas claim at once without waiting on each other or claiming the same row; SQLite has one writer.

Leases are compared with each replica's own clock: hosts sharing a database need synchronized clocks
(NTP), to well within the lease time.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from respd.store.schema import jobs, replicas
from respd.store.store import Store


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job: for a background response, its id and the request that created it; for an ingestion,
    its key (``<vector_store_id>/<file_id>``) and an empty request."""

    response_id: str
    tenant: str
    request: str
    attempts: int
    cancel_requested: bool
    epoch: int = 0  # the response's lease epoch, bumped by this claim: what this replica's writes are fenced with


_ALIVE = "SELECT id FROM replicas WHERE lease_until >= :now"
# Whose work may be taken: nobody's, or a replica's whose lease ran out, but never this replica's own. A
# replica whose lease lapsed while it lived (a heartbeat late on a loaded host) still runs its work: taking
# it from itself fenced its own run and asked the model for the same turn again (seen on a CI run).
_TAKEABLE = f"(owner IS NULL OR (owner <> :me AND owner NOT IN ({_ALIVE})))"
_CLAIM = f"""
UPDATE jobs SET owner = :me, attempts = attempts + 1
WHERE response_id IN (
    SELECT response_id FROM jobs
    WHERE {{which}} AND {_TAKEABLE}
    ORDER BY created_at LIMIT :n {{lock}})
RETURNING response_id, tenant, request, attempts, cancel_requested
"""
# A takeover bumps the response's lease epoch in the claim's transaction: writes of the replica it was taken
# from carry the old epoch and are refused from then on (respd.store.writer.Fenced).
_BUMP = "UPDATE responses SET lease_epoch = lease_epoch + 1 WHERE id IN ({ids}) RETURNING id, lease_epoch"
_ORPHANS = f"""
UPDATE responses SET owner = :me, lease_epoch = lease_epoch + 1
WHERE id IN (
    SELECT id FROM responses
    WHERE status IN ('queued', 'in_progress') AND background = :false AND {_TAKEABLE}
    LIMIT :n {{lock}})
RETURNING tenant, id, lease_epoch
"""


class JobQueue:
    """This replica's view of the queue: it claims, renews and releases in its own name."""

    def __init__(self, store: Store, replica_id: str, lease_s: float) -> None:
        self.store = store
        self.replica_id = replica_id
        self.lease_ms = int(lease_s * 1000)
        lock = "" if store.is_sqlite else "FOR UPDATE SKIP LOCKED"
        self._claim_any = text(_CLAIM.format(which="kind = :kind", lock=lock))
        self._claim_one = text(_CLAIM.format(which="response_id = :rid", lock=lock))
        self._orphans = text(_ORPHANS.format(lock=lock))

    async def _claim(self, stmt: Any, params: dict[str, Any]) -> list[Job]:
        """Claim jobs with ``stmt`` and bump their responses' lease epochs, in one transaction."""

        def work(conn: Connection) -> list[Job]:
            rows = list(conn.execute(stmt, params).all())
            if not rows:
                return []
            marks = {f"r{i}": r.response_id for i, r in enumerate(rows)}
            bump = text(_BUMP.format(ids=", ".join(f":{k}" for k in marks)))
            epochs = {rid: epoch for rid, epoch in conn.execute(bump, marks).all()}
            return [Job(r.response_id, r.tenant, r.request, r.attempts, bool(r.cancel_requested),
                        epochs.get(r.response_id, 0)) for r in rows]  # fmt: skip

        return await self.store.transact(work)

    async def _run(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        def work(conn: Connection) -> list[Any]:
            result = conn.execute(stmt, params or {})
            return list(result.all()) if result.returns_rows else []

        return await self.store.transact(work)

    # -- the replica ------------------------------------------------------------------------------
    def _row(self, now: int) -> dict[str, Any]:
        return {"id": self.replica_id, "started_at": now, "lease_until": now + self.lease_ms,
                "host": socket.gethostname()}  # fmt: skip

    async def register(self) -> None:
        await self._run(insert(replicas).values(**self._row(now_ms())))

    async def renew(self) -> None:
        """Extend this replica's lease; re-register if its row is gone (removed as long dead)."""

        def work(conn: Connection) -> None:
            now = now_ms()
            q = update(replicas).where(replicas.c.id == self.replica_id).values(lease_until=now + self.lease_ms)
            if conn.execute(q).rowcount == 0:
                conn.execute(insert(replicas).values(**self._row(now)))
            # replicas dead for a day own nothing claimable any more that an alive check needs them for
            conn.execute(delete(replicas).where(replicas.c.lease_until < now - 86_400_000))

        await self.store.transact(work)

    async def retire(self) -> None:
        """Leave: this replica's unfinished jobs go back to the queue, and its lease ends now."""

        def work(conn: Connection) -> None:
            conn.execute(update(jobs).where(jobs.c.owner == self.replica_id).values(owner=None))
            conn.execute(delete(replicas).where(replicas.c.id == self.replica_id))

        await self.store.transact(work)

    # -- jobs -------------------------------------------------------------------------------------
    async def claim(self, n: int, kind: str = "response") -> list[Job]:
        """Up to ``n`` queued or abandoned jobs of ``kind``, oldest first, now owned by this replica."""
        return await self._claim(self._claim_any, {"me": self.replica_id, "now": now_ms(), "n": n, "kind": kind})

    async def claim_job(self, response_id: str) -> Job | None:
        """The job of ``response_id`` if nobody alive holds it (to cancel it here)."""
        jobs = await self._claim(self._claim_one, {"me": self.replica_id, "now": now_ms(), "n": 1, "rid": response_id})
        return Job(jobs[0].response_id, jobs[0].tenant, jobs[0].request, jobs[0].attempts, True, jobs[0].epoch) \
            if jobs else None  # fmt: skip

    async def release(self, response_ids: list[str]) -> None:
        """Put jobs this replica owns back in the queue (draining at shutdown)."""
        if response_ids:
            q = update(jobs).where(jobs.c.owner == self.replica_id, jobs.c.response_id.in_(response_ids))
            await self._run(q.values(owner=None))

    async def request_cancel(self, response_id: str) -> None:
        await self._run(update(jobs).where(jobs.c.response_id == response_id).values(cancel_requested=True))

    async def owner_of(self, response_id: str) -> tuple[bool, str | None]:
        """Whether ``response_id`` has a job, and the replica running it (None while queued)."""
        rows = await self._run(select(jobs.c.owner).where(jobs.c.response_id == response_id))
        return (True, rows[0].owner) if rows else (False, None)

    async def queued(self, kind: str = "response") -> int:
        """Jobs of ``kind`` waiting for a replica."""
        q = select(func.count()).select_from(jobs).where(jobs.c.owner.is_(None), jobs.c.kind == kind)
        rows = await self._run(q)
        return int(rows[0][0])

    # -- foreground runs of dead replicas ----------------------------------------------------------
    async def claim_orphans(self, n: int = 100) -> list[tuple[str, str, int]]:
        """Foreground responses ``(tenant, id, lease epoch)`` left running by a replica that died; now this
        one's to end."""
        rows = await self._run(self._orphans, {"me": self.replica_id, "now": now_ms(), "n": n, "false": False})
        return [(r.tenant, r.id, r.lease_epoch) for r in rows]

    async def forget_others(self) -> None:
        """SQLite: one process owns the database, so every other replica row is a previous, dead run."""
        await self._run(delete(replicas).where(replicas.c.id != self.replica_id))


async def job_counts(store: Store) -> tuple[int, int]:
    """Background jobs in the database: ``(queued, running)`` (running: owned by a replica, live or not yet
    taken over)."""

    def work(conn: Connection) -> tuple[int, int]:
        rows = conn.execute(select(jobs.c.owner.is_(None), func.count()).group_by(jobs.c.owner.is_(None))).all()
        counts = {bool(queued): int(n) for queued, n in rows}
        return counts.get(True, 0), counts.get(False, 0)

    return await store.transact(work)
