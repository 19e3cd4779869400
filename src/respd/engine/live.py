"""In-process fan-out of events of responses that are running now, for readers that follow a live run."""

from __future__ import annotations

import asyncio
from collections import defaultdict

Frame = tuple[int, bytes]  # (sequence_number, event JSON)


class LiveHub:
    """Followers subscribe to a response id and get each event as the run records it."""

    def __init__(self) -> None:
        self._subs: defaultdict[str, set[asyncio.Queue[Frame]]] = defaultdict(set)

    def subscribe(self, response_id: str) -> asyncio.Queue[Frame]:
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._subs[response_id].add(queue)
        return queue

    def unsubscribe(self, response_id: str, queue: asyncio.Queue[Frame]) -> None:
        subs = self._subs.get(response_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subs[response_id]

    def publish(self, response_id: str, seq: int, data: bytes) -> None:
        subs = self._subs.get(response_id)
        if subs:
            for queue in subs:
                queue.put_nowait((seq, data))
