"""In-process fan-out of the events of responses running in this process, for readers that follow them.

Each running stored response has a channel holding every frame its run has recorded so far, so a follower
that arrives late misses nothing the run made; whatever happened before the run began (a background job's
``created``/``queued`` events) was committed before it began, and followers read that from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

Frame = tuple[int, bytes]  # (sequence_number, event JSON)


class Channel:
    """One running response's frames, and a wake-up for followers waiting on the next one."""

    __slots__ = ("closed", "frames", "waiter")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed = False
        self.waiter: asyncio.Event | None = None  # created only while someone waits

    def _wake(self) -> None:
        if self.waiter is not None:
            self.waiter.set()
            self.waiter = None

    async def after(self, seq: int) -> AsyncIterator[Frame]:
        """Frames numbered above ``seq``, then each new one, until the run closes the channel."""
        i = 0
        while True:
            while i < len(self.frames):
                frame = self.frames[i]
                i += 1
                if frame[0] > seq:
                    yield frame
            if self.closed:
                return
            if self.waiter is None:
                self.waiter = asyncio.Event()
            await self.waiter.wait()


class LiveHub:
    """Channels of the responses running here, by response id."""

    def __init__(self, on_open: Callable[[str], None] | None = None) -> None:
        self._channels: dict[str, Channel] = {}
        self._on_open = on_open  # tells followers polling the store that a run began here

    def open(self, response_id: str) -> None:
        self._channels[response_id] = Channel()
        if self._on_open is not None:
            self._on_open(response_id)

    def channel(self, response_id: str) -> Channel | None:
        return self._channels.get(response_id)

    def publish(self, response_id: str, frames: list[Frame]) -> None:
        ch = self._channels.get(response_id)
        if ch is not None:
            ch.frames += frames
            ch._wake()

    def close(self, response_id: str) -> None:
        """The run ended (its events are committed) or left this process."""
        ch = self._channels.pop(response_id, None)
        if ch is not None:
            ch.closed = True
            ch._wake()
