"""What one write holds: the rows of one transaction, shaped here from the domain values callers hand over.

The store owns its row formats: the engine says "this response began with these inputs", "these events
happened", "this response ended"; :class:`Batch` turns that into rows of :mod:`respd.store.schema`, and
:mod:`respd.store.writer` commits many batches as one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

Params = Mapping[str, Any]


class Sql(Protocol):
    """The open transaction of a batch, on whichever database: SQL text with ``:name`` parameters."""

    def execute(self, sql: str, params: Params | Sequence[Params]) -> list[tuple[Any, ...]]:
        """Run ``sql`` once (a mapping; returns its rows) or once per mapping of a sequence (returns ``[]``)."""
        ...


class Op(Protocol):
    """A write that needs more than plain rows (e.g. reads a counter it then bumps), run inside the batch."""

    def apply(self, sql: Sql) -> None: ...


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """What a stored response is besides its body: who made it, when, with which model, and who runs it."""

    id: str
    tenant: str
    model: str
    created_at: int
    previous_response_id: str | None
    background: bool
    owner: str | None  # the replica running it (a foreground run's); a background one's owner is its job's


@dataclass(slots=True)
class Batch:
    """Rows to write in one go. Inserts run before updates, then ``ops`` in order, deletes last.

    Fill it with the methods below (they shape the rows); the fields are what the writer executes.
    ``events`` are event-log rows (consecutive events of one response, one row). ``jobs`` are new background
    jobs; ``finished_jobs`` the response ids whose job ends with this batch. ``notices`` are
    ``(channel, payload)`` signals sent once the batch is committed (see :mod:`respd.store.signals`).
    """

    responses: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (tenant, response_id)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    finished_jobs: list[str] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    # response id → the lease epoch its writer holds: the batch is refused, in its own transaction, if the
    # response was taken over since (see :meth:`fence`)
    fences: dict[str, int] = field(default_factory=dict)

    def extend(self, other: Batch) -> None:
        self.responses += other.responses
        self.items += other.items
        self.events += other.events
        self.updates += other.updates
        self.deletes += other.deletes
        self.jobs += other.jobs
        self.finished_jobs += other.finished_jobs
        self.notices += other.notices
        self.ops += other.ops
        self.fences.update(other.fences)

    def response_ids(self) -> set[str]:
        """The responses this batch writes rows of (not those it deletes)."""
        ids = {r["id"] for r in self.responses} | {r["id"] for r in self.updates}
        return ids | {r["response_id"] for r in self.items} | {r["response_id"] for r in self.events}

    def fence(self, response_id: str, epoch: int) -> None:
        """Write this batch only while ``response_id``'s lease epoch is still ``epoch``: a replica that lost its
        lease (paused, partitioned) and whose response another replica took over (bumping the epoch) writes
        nothing more of it. The writer checks it in the batch's own transaction (:class:`respd.store.writer.Fenced`)."""
        self.fences[response_id] = epoch

    # -- responses --------------------------------------------------------------------------------
    def new_response(self, head: ResponseHead, status: str, body_json: bytes, inputs: list[dict[str, Any]]) -> None:
        """A response's row (its body: the Response object as JSON, as it stands) and its input items."""
        now = int(time.time())
        self.responses.append({
            "id": head.id, "tenant": head.tenant, "status": status, "model": head.model,
            "created_at": head.created_at, "updated_at": now, "previous_response_id": head.previous_response_id,
            "background": head.background, "owner": head.owner, "body": body_json.decode(),
        })  # fmt: skip
        self.items += _item_rows(head.id, head.tenant, "input", inputs)

    def log(self, response_id: str, events: Sequence[tuple[int, bytes]]) -> None:
        """Consecutive events ``(sequence_number, JSON)`` of one response, appended to its event log."""
        if events:
            self.events.append({"response_id": response_id, "seq": events[0][0], "last_seq": events[-1][0],
                                "body": b"\n".join(data for _, data in events).decode()})  # fmt: skip

    def end_response(
        self,
        response_id: str,
        tenant: str,
        status: str,
        body_json: bytes,
        output: list[dict[str, Any]],
        *,
        inserted: bool = False,
        background: bool = False,
    ) -> None:
        """A response ended (``status`` is terminal): its final body and output items, and its job's end.

        The one place a terminal state is written, whoever ends the response (its run, or the recovery of a
        run that is gone), always in the transaction with its terminal event: rows that must exist exactly
        when a response has ended belong here. ``inserted``: its row is in this same batch
        (:meth:`new_response`, with this body) and needs no update.
        """
        if not inserted:
            self.updates.append({"id": response_id, "status": status, "updated_at": int(time.time()),
                                 "body": body_json.decode()})  # fmt: skip
        self.items += _item_rows(response_id, tenant, "output", output)
        if background:
            self.finished_jobs.append(response_id)

    def delete_response(self, tenant: str, response_id: str) -> None:
        """A response, its items, log, job and hosted-tool calls, gone."""
        from respd.store.hosted_calls import Deleted  # (that module's ops are written against this one)

        self.ops.append(Deleted(response_id))
        self.deletes.append((tenant, response_id))

    # -- jobs -------------------------------------------------------------------------------------
    def new_job(self, response_id: str, tenant: str, request_body: bytes, owner: str | None) -> None:
        """A background response's durable job; ``owner`` is the replica that runs it at once, if any."""
        self.jobs.append({"response_id": response_id, "kind": "response", "tenant": tenant, "owner": owner,
                          "created_at": int(time.time() * 1000), "attempts": 1 if owner else 0,
                          "cancel_requested": False, "request": request_body.decode()})  # fmt: skip

    def finish_job(self, response_id: str) -> None:
        """A background response's job ends (its response is gone or ended without a run)."""
        self.finished_jobs.append(response_id)

    def notify(self, channel: str, payload: str = "") -> None:
        """A signal to send once this batch is committed (see :mod:`respd.store.signals`)."""
        self.notices.append((channel, payload))


def _item_rows(response_id: str, tenant: str, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``response_items`` rows for a response's ``kind`` ("input" | "output") items, in order."""
    return [
        {"response_id": response_id, "kind": kind, "position": i, "tenant": tenant,
         "item_id": item.get("id") or "", "body": orjson.dumps(item).decode()}
        for i, item in enumerate(items)
    ]  # fmt: skip
