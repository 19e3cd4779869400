"""Ending a response whose run is gone: a dead replica's foreground stream, or a job cancelled or unrunnable.

The end is written the way a run would have written it — the terminal events appended to the log, the
stored row updated — so readers and followers cannot tell the difference, except by the error it carries.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from respd.config import OpsSettings
from respd.engine.resume import ends_loop, read_log
from respd.store.batch import Batch
from respd.store.store import Store
from respd.webhooks import events as webhooks

log = logging.getLogger("respd.recovery")

STOPPED = "The server stopped while this response was being generated."


def _close_items(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "status": "incomplete"} if item.get("status") == "in_progress" else item for item in output]


async def end_logged(store: Store, tenant: str, response_id: str, status: str, message: str | None = None,
                     ops: OpsSettings | None = None) -> None:  # fmt: skip
    """End ``response_id`` as ``failed`` (with ``message``) or ``cancelled`` from its logged state.

    A response to fail whose log shows its run had nothing left to do (its last step asked the client: an
    approval request, a client's call, none of its items still open) ends ``completed`` instead, as its run
    would have: the client can answer it.

    Its job, if any, ends in the same transaction, and so do the webhook deliveries ``ops`` configures. Does
    nothing when the log already ended.
    """
    rows = await store.events_after(response_id, -1)
    batch = Batch()
    logged = read_log(rows) if rows else None
    if logged is None or logged.ended:
        batch.finish_job(response_id)
    else:
        if status == "failed" and not logged.open_indices and ends_loop(logged.response["output"]):
            status = "completed"  # the run had ended its last step (asked the client): only its end was lost
        seq = logged.next_seq
        final = {**logged.response, "status": status, "output": _close_items(logged.response["output"])}
        events: list[dict[str, Any]] = []
        if status == "completed":
            final["completed_at"] = int(time.time())
        if status == "failed":
            final["error"] = {"code": "server_error", "message": message}
            events.append({"type": "error", "sequence_number": seq, "code": "server_error", "message": message,
                           "param": None})  # fmt: skip
            seq += 1
        events.append({"type": f"response.{status}", "sequence_number": seq, "response": final})
        batch.log(response_id, [(ev["sequence_number"], orjson.dumps(ev)) for ev in events])
        batch.end_response(response_id, tenant, status, orjson.dumps(final), final["output"], background=True)
        if ops is not None:
            webhooks.announce(batch, ops, tenant, response_id, status)
    await store.writer.commit(batch)


async def end_orphans(store: Store, orphans: list[tuple[str, str]], ops: OpsSettings | None = None) -> None:
    """End foreground responses ``(tenant, id)`` whose replica died as ``failed``: their client went with it."""
    for tenant, rid in orphans:
        await end_logged(store, tenant, rid, "failed", STOPPED, ops)
    if orphans:
        log.warning("ended %d responses left running by a replica that stopped", len(orphans))
