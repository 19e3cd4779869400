"""Ending a response whose run is gone: a dead replica's foreground stream, or a job cancelled or unrunnable.

The end is made by the :class:`~respd.engine.emitter.Emitter` a run uses, going on from the fold of the log:
the items left open are closed with their ``output_item.done``, then the terminal event, so the stored
response is the fold of its log as after any other end, and readers and followers cannot tell the difference
except by the error it carries.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from respd.engine.emitter import Emitter
from respd.engine.resume import ends_loop, read_log
from respd.engine.runtime import Runtime
from respd.store.batch import Batch
from respd.store.writer import Fenced
from respd.webhooks import events as webhooks

log = logging.getLogger("respd.recovery")

STOPPED = "The server stopped while this response was being generated."
_STOPPED_STATUS = "incomplete"  # a hosted call's item when its tool is not configured here


async def end_logged(rt: Runtime, tenant: str, response_id: str, status: str, message: str | None = None, *,
                     epoch: int = 0) -> None:  # fmt: skip
    """End ``response_id`` as ``failed`` (with ``message``) or ``cancelled`` from its logged state.

    ``epoch`` is the lease epoch the claim that gave this replica the response set: nothing is written if
    another replica took it over since (:class:`respd.store.writer.Fenced`). Its job, if any, ends in the
    same transaction, and so do the webhook deliveries configured. Does nothing more when the log already
    ended.

    A response to fail whose log shows its run had nothing left to do (its last step asked the client: an
    approval request, a client's call, none of its items still open) ends ``completed`` instead, as its run
    would have: the client can answer it.
    """
    rows = await rt.store.events_after(response_id, -1)
    batch = Batch()
    batch.fence(response_id, epoch)
    logged = read_log(rows) if rows else None
    if logged is None or logged.ended:
        batch.finish_job(response_id)
    else:
        if status == "failed" and not logged.open_indices and ends_loop(logged.response["output"]):
            status = "completed"  # the run had ended its last step (asked the client): only its end was lost
        em = Emitter(logged.response)
        em.adopt(logged.next_seq, logged.open_indices, lambda item: _stop_status(rt, item))
        if status == "completed":
            events = em.finish()
        else:
            events = em.fail(message or STOPPED) if status == "failed" else em.cancel()
        final = em.response
        batch.log(response_id, [(ev["sequence_number"], orjson.dumps(ev)) for ev in events])
        batch.end_response(response_id, tenant, final["status"], orjson.dumps(final), final["output"],
                           background=True)  # fmt: skip
        webhooks.announce(batch, rt.settings.ops, tenant, response_id, final["status"])
    try:
        await rt.store.writer.commit(batch)
    except Fenced as exc:  # this replica was paused past its lease since its claim: the taker ends it
        log.warning("response %s was not ended here: %s", response_id, exc)


def _stop_status(rt: Runtime, item: dict[str, Any]) -> str:
    """The status of a hosted call's item whose call was stopped, as its tool says (``failed`` for a web
    search, which has no ``incomplete``)."""
    tool = rt.tools.of_item(item)
    return tool.interrupted_status if tool is not None else _STOPPED_STATUS


async def end_orphans(rt: Runtime, orphans: list[tuple[str, str, int]]) -> None:
    """End foreground responses ``(tenant, id, lease epoch)`` whose replica died as ``failed``: their client
    went with it."""
    for tenant, rid, epoch in orphans:
        await end_logged(rt, tenant, rid, "failed", STOPPED, epoch=epoch)
    if orphans:
        log.warning("ended %d responses left running by a replica that stopped", len(orphans))
