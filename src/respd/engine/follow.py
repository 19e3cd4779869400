"""Follow a stored response's events from any replica: the log after a point, then live until its end.

Events come from the store (committed), then from this process's :class:`~respd.engine.live.LiveHub`
while the run is here, or from the store again as other replicas commit them — woken by the store's
``respd_events`` notices, and polling as a fallback. Sequence numbers are tracked, so nothing is repeated
and nothing skipped whichever way an event arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from respd.engine.fold import TERMINAL_EVENTS
from respd.engine.runtime import Runtime
from respd.wire.response import TERMINAL_STATUSES

POLL_S = 1.0  # re-read the store this often when no notice came (a lost notice delays, never loses)


def event_type(data: bytes) -> str:
    kind: str = orjson.loads(data)["type"]
    return kind


async def follow(rt: Runtime, tenant: str, response_id: str, after: int) -> AsyncIterator[tuple[str, bytes]]:
    """``(event type, event JSON)`` of ``response_id`` numbered above ``after``, through its terminal event."""
    last = after
    while True:
        # the wake-up is armed before the read: whatever is committed after the read wakes this loop
        with rt.store.signals.events_of(response_id) as woke:
            rows = await rt.store.events_after(response_id, last)
            for seq, data in rows:
                kind = event_type(data)
                yield kind, data
                last = seq
                if kind in TERMINAL_EVENTS:
                    return
            channel = rt.hub.channel(response_id)
            if channel is not None:  # running here: everything it makes, from memory
                async for seq, data in channel.after(last):
                    kind = event_type(data)
                    yield kind, data
                    last = seq
                    if kind in TERMINAL_EVENTS:
                        return
                continue  # the run ended or left: the rest is in the store
            try:
                await asyncio.wait_for(woke.wait(), POLL_S)
            except TimeoutError:  # quiet for a while: is the response still there, and still running?
                row = await rt.store.get_response(tenant, response_id)
                if row is None:
                    return
                if row["status"] in TERMINAL_STATUSES and not await rt.store.events_after(response_id, last):
                    return  # ended, with no terminal event after ``last`` (a log that was cut short)
