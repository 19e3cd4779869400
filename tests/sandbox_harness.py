"""Containers run by respd's own sandbox classes in the test process (the same code, settings and isolation a
server uses), driven from synchronous tests through an event loop on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from respd.sandbox.detect import find_sandbox
from respd.sandbox.pool import ExecResult, Pool, Sandbox
from respd.sandbox.settings import SandboxSettings

T = TypeVar("T")

# Short limits: a runaway call is stopped in seconds.
FAST = SandboxSettings(sandbox="bubblewrap", timeout_s=3, cpu_s=2, disk_mb=64, tmp_mb=16, max_processes=32,
                       memory_limit="512m", max_file_mb=8, max_output_chars=2000)  # fmt: skip


class Harness:
    """A pool of containers on a private event loop."""

    def __init__(self, settings: SandboxSettings = FAST) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        sandbox = self.call(find_sandbox(settings))
        assert sandbox is not None, "no sandbox: is bubblewrap installed (scripts/system-packages.sh)?"
        self.sandbox: Sandbox = sandbox
        self.pool = Pool(sandbox)
        self.memory = 512 << 20
        self.files: dict[str, list[tuple[str, bytes]]] = {}

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, container: str, code: str) -> ExecResult:
        async def restore() -> list[tuple[str, bytes]]:
            return self.files.get(container, [])

        return self.call(self.pool.execute(container, self.memory, restore, code))

    def close(self) -> None:
        self.call(self.pool.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
