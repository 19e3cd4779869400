"""What a run does when the end it made cannot be stored: the client is never told of an end that is not durable.

A run commits its terminal event (with its output and, in a conversation, the turn's items) before its client
sees it. When that commit fails:

- the turn could not join its conversation because another request added an item with one of its ids
  meanwhile (the unique constraint refused it): the response ends ``failed`` instead, saying so, and that
  end is stored (without the append) and sent;
- otherwise (the database refused or is gone, or rows handed over earlier were lost): what was written of
  the response is removed, and the client gets an ``error`` event instead of the end (a non-streamed
  request, a 500), never a ``response.completed`` for a response that ``GET`` will not find;
- the response was taken over by another replica (this one was paused or cut off past its lease, and its
  writes are fenced off): nothing more is written from here, not even a removal, and the client gets an
  ``error`` event (a 500); the response goes on, or ends, where it was taken over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson

from respd.engine.context import duplicate_item
from respd.engine.recorder import Frame
from respd.store import conversations
from respd.store.writer import Fenced, is_conflict

if TYPE_CHECKING:
    from respd.engine.run import Run

log = logging.getLogger("respd.run")

UNSTORED = "The response could not be stored, so it is not kept; please try again."
TAKEN_OVER = (
    "The server generating this response stopped answering for too long and another server took the response "
    "over; retrieve the response to see how it ends."
)


def end_fenced(run: Run, exc: Fenced) -> list[Frame]:
    """The frames to send when ``run``'s writes were fenced off: an ``error`` event, and no more writes."""
    log.warning("response %s: %s; this replica stops its run", run.id, exc)
    run.release_admission()
    run.final = None
    run.taken_over = True
    run.recorder.abandon()
    error = {"type": "error", "sequence_number": run.emitter.seq, "code": "server_error", "message": TAKEN_OVER,
             "param": None}  # fmt: skip
    return [(error, orjson.dumps(error))]


async def end_unstored(run: Run, frames: list[Frame], exc: BaseException) -> list[Frame]:
    """The frames to send instead of ``frames`` (the end that could not be committed, terminal event last)."""
    rec, em = run.recorder, run.emitter
    seq = frames[-1][0]["sequence_number"]
    conv = run.req.conversation_id
    if conv is not None and is_conflict(exc) and run.final is not None and run.final["status"] != "failed":
        ids = [item["id"] for item in run.inputs + run.final["output"]]
        taken = await conversations.duplicate_ids(run.rt.store.engine, conv, ids)
        message = duplicate_item(taken[0] if taken else ids[0]).message
        rec.retract(seq)
        instead = frames[:-1] + [(ev, rec.record(ev)) for ev in em.refail(message)]
        run.final = em.response
        try:
            await rec.end(run.final, instead)
            return instead
        except Exception as again:
            exc = again
    log.error("response %s: its end could not be stored (%s); removing what was written of it", run.id, exc)
    run.final = None
    await rec.discard()
    error = {"type": "error", "sequence_number": seq, "code": "server_error", "message": UNSTORED, "param": None}
    return [(error, orjson.dumps(error))]
