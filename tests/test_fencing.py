"""Lease epochs fence writes, on SQLite and PostgreSQL: once a replica takes a response over (a claim bumps its
epoch), rows written under the old epoch are refused in their own transaction, and only those."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, text

from respd.ids import new_id
from respd.jobs.queue import JobQueue
from respd.store.batch import Batch, ResponseHead
from respd.store.store import Store
from respd.store.writer import Fenced


def _accepted(rid: str, owner: str) -> Batch:
    """A background response accepted and run at once by ``owner`` (epoch 0), with its first event."""
    batch = Batch()
    batch.fence(rid, 0)
    batch.new_response(ResponseHead(rid, "t", "m", 1, None, True, None), "in_progress", b"{}", [])
    batch.log(rid, [(0, b'{"sequence_number":0}')])
    batch.new_job(rid, "t", b"{}", owner)
    return batch


async def _replicas(store: Store) -> tuple[JobQueue, JobQueue]:
    """Replicas A and B, both alive."""
    a, b = JobQueue(store, new_id("rep"), 30), JobQueue(store, new_id("rep"), 30)
    await a.register()
    await b.register()
    return a, b


async def _lapse(store: Store, replica: JobQueue) -> None:
    """``replica``'s lease runs out (it was paused, or its heartbeat came late)."""

    def expire(conn: Connection) -> None:
        conn.execute(text("UPDATE replicas SET lease_until = 0 WHERE id = :r"), {"r": replica.replica_id})

    await store.transact(expire)


def _events(rid: str, epoch: int, seq: int) -> Batch:
    batch = Batch()
    batch.fence(rid, epoch)
    batch.log(rid, [(seq, b'{"sequence_number":%d}' % seq)])
    return batch


def test_a_takeover_fences_the_old_writer(own_database: str) -> None:
    async def scenario() -> None:
        store = Store(own_database)
        await store.open()
        try:
            a, b = await _replicas(store)
            rid, other = new_id("resp"), new_id("resp")
            await store.writer.commit(_accepted(rid, a.replica_id))
            await store.writer.commit(_accepted(other, a.replica_id))
            await store.writer.commit(_events(rid, 0, 1))  # A's own writes go in while it holds the lease
            await _lapse(store, a)  # A was paused
            # B takes both over, one at a time
            taken = {job.response_id: job for r in (rid, other) if (job := await b.claim_job(r)) is not None}
            assert set(taken) == {rid, other} and taken[rid].epoch == 1

            with pytest.raises(Fenced):  # A, resumed, commits an event: refused, nothing of it written
                await store.writer.commit(_events(rid, 0, 2))
            assert store.writer.fenced(rid)
            # A's rows handed over without waiting, merged with B's rows of another response into one
            # transaction: A's are dropped, B's written
            store.writer.submit(_events(rid, 0, 3))
            store.writer.submit(_events(other, taken[other].epoch, 1))
            await store.writer.flush()
            # the writer remembers: A's later rows are refused before they reach the database
            with pytest.raises(Fenced):
                await store.writer.commit(_events(rid, 0, 2))
            store.writer.forget(rid)  # (this process is also B here: B claimed it, and writes under epoch 1)
            await store.writer.commit(_events(rid, 1, 2))

            def logs(conn: Connection) -> list[tuple[str, int]]:
                q = "SELECT response_id, seq FROM response_events WHERE response_id IN (:a, :b)"
                return [(r[0], r[1]) for r in conn.execute(text(q), {"a": rid, "b": other}).all()]

            assert sorted(await store.transact(logs)) == sorted([(rid, 0), (rid, 1), (rid, 2), (other, 0),
                                                                 (other, 1)])  # fmt: skip
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_replica_whose_lease_lapsed_keeps_its_own_work(own_database: str) -> None:
    # A heartbeat late on a loaded host lets the lease lapse while the replica lives and runs its responses:
    # it must not take them from itself (that fenced its own run and began the response's turn again), while
    # another replica may take them
    async def scenario() -> None:
        store = Store(own_database)
        await store.open()
        try:
            a, b = await _replicas(store)
            job, streamed = new_id("resp"), new_id("resp")
            await store.writer.commit(_accepted(job, a.replica_id))
            foreground = Batch()  # a streamed response a runs in the foreground
            foreground.new_response(ResponseHead(streamed, "t", "m", 1, None, False, a.replica_id), "in_progress",
                                    b"{}", [])  # fmt: skip
            await store.writer.commit(foreground)
            await _lapse(store, a)
            assert await a.claim(10) == [] and await a.claim_orphans() == []
            assert [j.response_id for j in await b.claim(10)] == [job]
            assert [rid for _, rid, _ in await b.claim_orphans()] == [streamed]
        finally:
            await store.close()

    asyncio.run(scenario())
