"""Recording a run's events: each serialized once, logged, published to followers, handed to the writer.

The :class:`Recorder` is the one way out of a run. It turns events into their JSON (a lifecycle event's
snapshot serialized once, and kept: the last one is the stored body and the non-streamed answer), keeps the
log not yet written, hands this process's followers each batch of frames, and gives the writer whole
batches through :class:`respd.store.batch.Batch`'s domain methods. It never shapes a row itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from respd.engine.fold import Event, Response
from respd.engine.runtime import Runtime
from respd.store.batch import Batch, Op, ResponseHead
from respd.store.writer import Fenced

Frame = tuple[Event, bytes]  # an event and its JSON

log = logging.getLogger("respd.run")


class Recorder:
    """Where one response's events go."""

    __slots__ = ("_checked_at", "_logged", "_ops", "_row_written", "_status", "epoch", "head", "inputs", "rt",
                 "snapshot_json", "store", "stream")  # fmt: skip

    def __init__(
        self,
        rt: Runtime,
        head: ResponseHead,
        inputs: list[dict[str, Any]],
        *,
        store: bool,
        stream: bool,
        row_written: bool,
    ) -> None:
        self.rt = rt
        self.head = head
        self.inputs = inputs
        self.store = store  # a stored response: logged, and followed through the live hub
        self.stream = stream  # events go to the writer as they come, not only at the end
        self.snapshot_json = b""  # the JSON of the newest lifecycle snapshot (at the end: the final Response)
        self._status = ""  # that snapshot's status
        self._logged: list[tuple[int, bytes]] = []  # events (sequence number, JSON) not yet handed to the writer
        self._row_written = row_written  # the response's row exists (or is in a batch handed to the writer)
        self._ops: list[Op] = []  # writes that go with the events recorded since the last batch
        # the response's lease epoch when this run got it (bumped by each takeover): every batch is fenced
        # with it, so that nothing is written once another replica has taken the response over
        self.epoch = 0
        self._checked_at = time.monotonic()  # when the epoch was last known to be this run's

    # -- events -----------------------------------------------------------------------------------
    def record(self, ev: Event) -> bytes:
        """``ev``'s JSON; kept for the log when the response is stored."""
        if "response" in ev:
            # A lifecycle event is mostly its snapshot: serialize that once, and keep the last one, which
            # is the stored row's body and the non-streamed answer.
            self.snapshot_json = orjson.dumps(ev["response"])
            self._status = ev["response"]["status"]
            head = {k: v for k, v in ev.items() if k != "response"}
            data = orjson.dumps(head)[:-1] + b',"response":' + self.snapshot_json + b"}"
        else:
            data = orjson.dumps(ev)
        if self.store:
            self._logged.append((ev["sequence_number"], data))
        return data

    def record_all(self, events: list[Event]) -> list[Frame]:
        """Record ``events``, hand them to followers, and (streaming) to the writer without waiting."""
        if self.store and self.rt.store.writer.fenced(self.head.id):
            raise Fenced({self.head.id})  # taken over by another replica: this run stops (see Run.events)
        frames = [(ev, self.record(ev)) for ev in events]
        self.publish(frames)
        if self.stream and self.store and self._logged:
            first = not self._row_written
            self.rt.store.writer.submit(self.batch(None), urgent=first)
        return frames

    async def record_checked(self, events: list[Event]) -> list[Frame]:
        """:meth:`record_all`, after making sure, when this replica's lease may have run out (it was paused or
        cut off), that no other replica took the response over: followers here must not see events that
        will never be stored (raises :class:`Fenced` if it was taken)."""
        if self.store and self.stream and self.rt.lease_doubtful(self._checked_at):
            check = Batch()
            check.fence(self.head.id, self.epoch)
            await self.rt.store.writer.commit(check)
            self._checked_at = time.monotonic()
        return self.record_all(events)

    async def record_durably(self, events: list[Event]) -> list[Frame]:
        """Record ``events`` and (a streamed or background response's) commit them, then hand them to
        followers: what a client acts on by id (an approval request) is never seen, then lost with a replica."""
        if self.store and self.rt.store.writer.fenced(self.head.id):
            raise Fenced({self.head.id})  # taken over by another replica (as :meth:`record_all`)
        frames = [(ev, self.record(ev)) for ev in events]
        await self.checkpoint()
        self.publish(frames)
        return frames

    def attach(self, op: Op) -> None:
        """A write that must commit with the events recorded so far (a hosted call's row with its item)."""
        if self.store:
            self._ops.append(op)

    async def checkpoint(self) -> None:
        """Make what was recorded so far durable now (a streamed or background response's: one that a
        follower may read, or a replica take over, before it ends)."""
        if self.store and self.stream:
            await self.rt.store.writer.commit(self.batch(None), alone=self.rt.running == 1)

    def publish(self, frames: Sequence[Frame]) -> None:
        """Hand recorded events to this process's followers (a stored response's only)."""
        if self.store:
            self.rt.hub.publish(self.head.id, [(ev["sequence_number"], data) for ev, data in frames])

    # -- batches ----------------------------------------------------------------------------------
    def batch(self, final: Response | None) -> Batch:
        """The log recorded since the last batch, the response's row if not yet written, and its end if
        ``final`` (the terminal Response) is given."""
        head = self.head
        batch = Batch()
        batch.fence(head.id, self.epoch)
        batch.log(head.id, self._logged)
        self._logged = []
        inserted = False
        if not self._row_written:
            batch.new_response(head, self._status, self.snapshot_json, self.inputs)
            self._row_written = inserted = True
        if self._ops:
            batch.ops += self._ops
            self._ops = []
        if final is not None:
            batch.end_response(head.id, head.tenant, final["status"], self.snapshot_json, final["output"],
                               inserted=inserted, background=head.background)  # fmt: skip
        return batch

    def accept(self, events: list[Event], request_body: bytes, owner: str | None) -> Batch:
        """The rows that accept this response as a background job, for one transaction: the queued response,
        its log so far and the job (so no crash can leave a queued response without its job)."""
        self.publish([(ev, self.record(ev)) for ev in events])
        batch = self.batch(None)
        batch.new_job(self.head.id, self.head.tenant, request_body, owner)
        return batch

    # -- the live channel and the end -------------------------------------------------------------
    def open(self) -> None:
        if self.store:
            self.rt.hub.open(self.head.id)

    async def detach(self) -> None:
        """The run stops without ending the response (its job goes back to the queue): write what it made."""
        if self.store:
            await self.rt.store.writer.commit(self.batch(None))
            self.rt.hub.close(self.head.id)

    async def end(self, final: Response, unpublished: Sequence[Frame], ops: Sequence[Op] = ()) -> None:
        """Commit the response's end with ``ops`` (work that must share the terminal transaction), then hand
        followers the terminal events: they see them only once durable, like the run's own client.

        If the commit fails, nothing of it was written: the recorder stands as it did before (see
        :meth:`retract` and :mod:`respd.engine.durability`)."""
        logged, written = self._logged, self._row_written
        batch = self.batch(final) if self.store else Batch()
        batch.ops += ops
        try:
            if self.store or ops:
                await self.rt.store.writer.commit(batch, alone=self.rt.running == 1)
        except BaseException:
            self._logged, self._row_written = logged, written
            raise
        if self.store:
            self.publish(unpublished)
            self.rt.hub.close(self.head.id)

    def abandon(self) -> None:
        """Another replica took the response over: write nothing more, and let this process's followers go
        (they read on from the store)."""
        self._logged, self._ops = [], []
        if self.store:
            self.rt.hub.close(self.head.id)

    def retract(self, seq: int) -> None:
        """Take back the events recorded from sequence number ``seq`` on (an end that could not be stored)."""
        self._logged = [(n, data) for n, data in self._logged if n < seq]

    async def discard(self) -> None:
        """The response cannot be stored whole: what was written of it goes, so that no partial response (a
        row without its log, a log without its row) stays behind. Best effort: the database may be down."""
        if not self.store:
            return
        writer = self.rt.store.writer
        batch = Batch()
        batch.fence(self.head.id, self.epoch)  # never what another replica has taken over
        batch.delete_response(self.head.tenant, self.head.id)
        try:
            await writer.commit(batch)
        except Exception:
            log.exception("response %s: its partial rows could not be removed either", self.head.id)
        writer.forget(self.head.id)
        self.rt.hub.close(self.head.id)
