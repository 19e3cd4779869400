"""The deliveries table on SQLite and PostgreSQL: one claim per attempt, outcomes only from the claim's
holder, retries due again, inspection, pruning."""

from __future__ import annotations

import asyncio

from respd.config import OpsSettings, WebhookEndpoint
from respd.store.batch import Batch
from respd.store.store import Store
from respd.store.webhooks import DELIVERED, PENDING, AddDeliveries, NewDelivery, Outcome, WebhookStore, now_ms
from respd.webhooks.events import deliveries_op


def test_claims_outcomes_and_pruning(own_database: str) -> None:
    async def scenario() -> None:
        store = Store(own_database)
        await store.open()
        try:
            ops = OpsSettings(webhooks=(WebhookEndpoint(url="https://a.example/h", secret_env="X", name="a"),
                                        WebhookEndpoint(url="https://b.example/h", secret_env="X", name="b",
                                                        events=("response.failed",))))  # fmt: skip
            op = deliveries_op(ops, "t1", "resp_x", "completed")
            assert op is not None and [d.endpoint for d in op.deliveries] == ["a"]
            assert deliveries_op(ops, "t1", "resp_x", "in_progress") is None
            await store.writer.commit(Batch(ops=[op]))
            a, b = WebhookStore(store, "replica_a"), WebhookStore(store, "replica_b")
            [claimed] = await a.claim(10, lease_ms=60_000)
            assert await b.claim(10, lease_ms=60_000) == []  # held by a for this attempt
            retry_at = now_ms() - 1
            failed = Outcome(PENDING, retry_at, now_ms(), 5, 503, "answered 503")
            assert not await b.record(claimed, failed)  # b never held it
            assert await a.record(claimed, failed)
            assert not await a.record(claimed, failed)  # once per claim
            [again] = await b.claim(10, lease_ms=60_000)  # due again: any replica
            assert again.id == claimed.id and again.attempts == 1
            assert await b.record(again, Outcome(DELIVERED, now_ms(), now_ms(), 3, 200, None))
            shown = await a.get(claimed.id)
            assert shown is not None and shown["state"] == DELIVERED and shown["attempts"] == 2
            assert [(x["status"], x["replica"]) for x in shown["attempt_log"]] == [
                (503, "replica_a"),
                (200, "replica_b"),
            ]
            assert shown["body"]["type"] == "response.completed" and shown["body"]["data"] == {"id": "resp_x"}
            assert await a.pending() == 0 and await a.next_due() is None
            assert await a.prune(now_ms() - 60_000) == 0  # recent: kept
            assert await a.prune(now_ms() + 60_000) == 1
            assert await a.get(claimed.id) is None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_dead_claim_lapses(own_database: str) -> None:
    async def scenario() -> None:
        store = Store(own_database)
        await store.open()
        try:
            await store.writer.commit(Batch(ops=[_one()]))
            a, b = WebhookStore(store, "replica_a"), WebhookStore(store, "replica_b")
            [held] = await a.claim(1, lease_ms=100)  # a dies holding it
            await asyncio.sleep(0.2)
            [taken] = await b.claim(1, lease_ms=60_000)
            assert taken.id == held.id and taken.attempts == 0  # the attempt a never recorded
            assert not await a.record(held, Outcome(DELIVERED, now_ms(), now_ms(), 1, 200, None))  # too late
        finally:
            await store.close()

    asyncio.run(scenario())


def _one() -> AddDeliveries:
    event = {"id": "evt_1", "object": "event", "type": "response.failed", "created_at": 1, "data": {"id": "resp_1"}}
    return AddDeliveries([NewDelivery("wh_1", event, "resp_1", "t", "a", "https://a.example/h")])
