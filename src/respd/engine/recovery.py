"""After a crash: responses a dead process left running end as ``failed``, with a terminal event logged."""

from __future__ import annotations

import time

import orjson

from respd.store.store import Store
from respd.store.writer import Batch

_MESSAGE = "The server stopped while this response was being generated."


async def end_orphans(store: Store) -> int:
    """End every foreground response still marked running; returns how many there were.

    Single-process semantics: at startup, no foreground run can still be alive.
    """
    batch = Batch()
    for rid, body, last in await store.unfinished():
        body = {**body, "status": "failed", "error": {"code": "server_error", "message": _MESSAGE}}
        error = {"type": "error", "sequence_number": last + 1, "code": "server_error", "message": _MESSAGE,
                 "param": None}  # fmt: skip
        failed = {"type": "response.failed", "sequence_number": last + 2, "response": body}
        batch.events += [
            {"response_id": rid, "seq": ev["sequence_number"], "body": orjson.dumps(ev).decode()}
            for ev in (error, failed)
        ]
        batch.updates.append({"id": rid, "status": "failed", "updated_at": int(time.time()),
                              "body": orjson.dumps(body).decode()})  # fmt: skip
    if batch.updates:
        await store.writer.commit(batch)
    return len(batch.updates)
