"""The live kernels of this server: one process per container in use, started on demand, least recently
used stopped first when :attr:`SandboxSettings.max_live` are running.

A container outlives its process: its files are in the database, so a container whose process was stopped
(evicted, killed by a limit, lost with a restart of respd) gets a new one with its files written back, and
the next call is told that its variables are gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import resource
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from respd.sandbox.cgroups import Cgroups
from respd.sandbox.isolation import Isolation, Limits
from respd.sandbox.process import KernelGone, KernelProcess
from respd.sandbox.settings import SandboxSettings, parse_size

log = logging.getLogger("respd.sandbox")

START_TIMEOUT_S = 30.0
FILE_OP_TIMEOUT_S = 30.0
GRACE_S = 3.0  # past a call's wall-time limit, the kernel's own timer has this long before the process is ended
MAX_PATH = 1024  # a file with a longer path is not kept (the store's column holds no more)

Restore = Callable[[], Awaitable[list[tuple[str, bytes]]]]  # a container's files: (path under /mnt/data, bytes)


@dataclass(frozen=True, slots=True)
class ExecResult:
    """One call's outcome, as the kernel reported it (or as respd saw the process end)."""

    logs: str
    error: dict[str, str] | None  # {"type", "message"}: the code raised, or a limit ended the call
    images: list[bytes] = field(default_factory=list)
    truncated: bool = False  # the logs were cut at max_output_chars
    fresh: bool = False  # this call started the container's process: variables of earlier calls are gone
    reset: str = ""  # why the previous process ended, when this server saw it end


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str  # under /mnt/data, e.g. "/mnt/data/plot.png"
    bytes: int
    mtime_ns: int


class Sandbox:
    """The isolation tool respd found, and the limits it applies."""

    def __init__(self, isolation: Isolation, settings: SandboxSettings, cgroups: Cgroups | None = None) -> None:
        self.isolation, self.settings, self.cgroups = isolation, settings, cgroups

    def limits(self, memory_bytes: int) -> Limits:
        s = self.settings
        return Limits(memory_bytes=memory_bytes, disk_bytes=s.disk_mb << 20, tmp_bytes=s.tmp_mb << 20,
                      max_processes=s.max_processes, max_file_bytes=max(s.disk_mb, s.max_file_mb) << 20)  # fmt: skip

    async def start(self, memory_bytes: int) -> KernelProcess:
        limits = self.limits(memory_bytes)
        config = orjson.dumps({"memory_bytes": limits.memory_bytes, "max_processes": limits.max_processes,
                               "max_file_bytes": limits.max_file_bytes, "max_open_files": limits.max_open_files,
                               "cpu_total_s": resource.RLIM_INFINITY}).decode()  # fmt: skip
        argv = self.isolation.argv(limits, config)
        group = None
        if self.cgroups is not None:  # the container's memory as a whole; its files (tmpfs) are memory too
            total = limits.memory_bytes + limits.disk_bytes + 2 * limits.tmp_bytes
            group = self.cgroups.make(total, limits.max_processes)
        return await KernelProcess.start(argv, max_payload=self.settings.max_file_bytes + 1, wait_s=START_TIMEOUT_S,
                                         group=group)  # fmt: skip


class Pool:
    """Container id → its running kernel, in least-recently-used order."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.live: OrderedDict[str, KernelProcess] = OrderedDict()
        self._starting: dict[str, asyncio.Lock] = {}
        self._ended: dict[str, str] = {}  # why a container's last process ended, until a new one starts
        # A kernel started ahead, for the next container with the default memory limit: a new container's
        # first call then waits for no process to start (~0.15 s); a replacement starts in the background.
        self._spare: asyncio.Task[KernelProcess] | None = None

    async def _kernel(self, container_id: str, memory_bytes: int, restore: Restore) -> tuple[KernelProcess, bool]:
        """The container's kernel, started (and its files restored) if it has none; and whether it is new."""
        lock = self._starting.setdefault(container_id, asyncio.Lock())
        async with lock:
            kernel = self.live.get(container_id)
            if kernel is not None and kernel.alive:
                self.live.move_to_end(container_id)
                return kernel, False
            if kernel is not None:
                self._ended[container_id] = kernel.ended_because or "the container's process ended"
            self.live.pop(container_id, None)
            await self._make_room()
            kernel = await self._new_kernel(memory_bytes)
            try:
                for path, data in await restore():
                    await self._write(kernel, path, data)
            except BaseException:
                await kernel.kill()
                raise
            self.live[container_id] = kernel
            return kernel, True

    async def _new_kernel(self, memory_bytes: int) -> KernelProcess:
        """A fresh kernel: the spare when the memory limit is the default one, else one started now."""
        default = parse_size(self.sandbox.settings.memory_limit)
        if memory_bytes != default:
            return await self.sandbox.start(memory_bytes)
        loop = asyncio.get_running_loop()
        spare, self._spare = self._spare or loop.create_task(self.sandbox.start(default)), None
        kernel = None
        with contextlib.suppress(KernelGone):
            kernel = await spare
        self._spare = loop.create_task(self.sandbox.start(default))  # for the next one; started after ours
        if kernel is not None and kernel.alive:
            return kernel
        return await self.sandbox.start(default)

    async def _make_room(self) -> None:
        while len(self.live) >= self.sandbox.settings.max_live:
            idle = next((cid for cid, k in self.live.items() if not k.lock.locked()), None)
            if idle is None:
                raise KernelGone("this server is running as many containers as it may; try again shortly")
            await self.stop(idle, "the container's process was stopped to make room for another")

    @staticmethod
    async def _write(kernel: KernelProcess, path: str, data: bytes) -> None:
        reply, _ = await kernel.request({"op": "write", "path": path}, data, wait_s=FILE_OP_TIMEOUT_S)
        if not reply.get("ok"):
            raise KernelGone(f"could not write {path}: {reply.get('error')}")

    async def execute(self, container_id: str, memory_bytes: int, restore: Restore, code: str) -> ExecResult:
        """Run ``code`` in the container's namespace."""
        s = self.sandbox.settings
        try:
            kernel, fresh = await self._kernel(container_id, memory_bytes, restore)
        except KernelGone as exc:  # no room, or a process that would not start or take the container's files
            return ExecResult(logs="", error={"type": "SandboxError", "message": str(exc)}, fresh=True)
        reset = self._ended.pop(container_id, "") if fresh else ""
        cap = s.max_output_chars * 4  # bytes; cut to characters below
        msg = {"op": "exec", "code": code, "cpu_s": s.cpu_s, "wall_s": s.timeout_s, "max_output": cap}
        try:
            reply, _ = await kernel.request(msg, wait_s=s.timeout_s + GRACE_S)
        except KernelGone as exc:
            self.live.pop(container_id, None)
            self._ended[container_id] = str(exc)
            error = {"type": "SandboxError", "message": str(exc)}
            return ExecResult(logs="", error=error, fresh=fresh, reset=reset)
        return _exec_result(reply, s.max_output_chars, fresh, reset)

    async def list_files(self, container_id: str) -> tuple[list[FileInfo], bool] | None:
        """The files under /mnt/data of a live container, and whether that is all of them (the kernel lists
        a bounded number); ``None`` when it has no process."""
        kernel = self.live.get(container_id)
        if kernel is None or not kernel.alive:
            return None
        reply, _ = await kernel.request({"op": "list"}, wait_s=FILE_OP_TIMEOUT_S)
        out = []
        for f in reply.get("files") or []:
            path = f.get("path") if isinstance(f, dict) else None
            if isinstance(path, str) and path.startswith("/mnt/data/") and len(path) <= MAX_PATH:
                out.append(FileInfo(path=path, bytes=int(f.get("bytes", 0)), mtime_ns=int(f.get("mtime_ns", 0))))
        return out, reply.get("truncated") is False

    async def read_file(self, container_id: str, path: str) -> bytes | None:
        """A file's bytes (``None`` if it is gone or over the size limit)."""
        kernel = self.live.get(container_id)
        if kernel is None or not kernel.alive:
            return None
        limit = self.sandbox.settings.max_file_bytes
        reply, data = await kernel.request({"op": "read", "path": path, "max_bytes": limit}, wait_s=FILE_OP_TIMEOUT_S)
        if not reply.get("ok") or len(data) > limit:
            return None
        return data

    async def write_file(self, container_id: str, path: str, data: bytes) -> None:
        """Put a file into a live container (one without a process gets it when it starts)."""
        kernel = self.live.get(container_id)
        if kernel is not None and kernel.alive:
            with contextlib.suppress(KernelGone):
                await self._write(kernel, path, data)

    async def delete_file(self, container_id: str, path: str) -> None:
        kernel = self.live.get(container_id)
        if kernel is not None and kernel.alive:
            with contextlib.suppress(KernelGone):
                await kernel.request({"op": "delete", "path": path}, wait_s=FILE_OP_TIMEOUT_S)

    async def stop(self, container_id: str, reason: str = "the container was stopped") -> None:
        kernel = self.live.pop(container_id, None)
        if kernel is not None:
            self._ended[container_id] = reason
            await kernel.kill(reason)

    def forget(self, container_id: str) -> None:
        """A deleted or expired container: nothing of it is kept here (call after :meth:`stop`)."""
        self._ended.pop(container_id, None)
        self._starting.pop(container_id, None)

    async def close(self) -> None:
        if self._spare is not None:
            await _discard(self._spare)
            self._spare = None
        for cid in list(self.live):
            await self.stop(cid, "the server stopped")
        if self.sandbox.cgroups is not None:
            self.sandbox.cgroups.remove_all()


async def _discard(spare: asyncio.Task[KernelProcess]) -> None:
    """End a spare kernel, started or still starting."""
    spare.cancel()
    with contextlib.suppress(asyncio.CancelledError, KernelGone):
        kernel = await spare
        await kernel.kill()


def _exec_result(reply: dict[str, Any], max_chars: int, fresh: bool, reset: str) -> ExecResult:
    """The kernel's reply, checked field by field (it comes from a process user code controls)."""
    logs = reply.get("logs") if isinstance(reply.get("logs"), str) else ""
    assert isinstance(logs, str)
    truncated = len(logs) > max_chars or int(reply.get("output_bytes") or 0) > len(logs.encode())
    if len(logs) > max_chars:
        logs = logs[:max_chars]
    error = reply.get("error")
    if not (error is None or (isinstance(error, dict) and all(isinstance(v, str) for v in error.values()))):
        error = {"type": "SandboxError", "message": "the kernel reported an unreadable error"}
    images = []
    for item in reply.get("images") or []:
        with contextlib.suppress(ValueError, TypeError):
            png = base64.b64decode(item, validate=True)
            if png.startswith(b"\x89PNG"):
                images.append(png)
    return ExecResult(logs=logs, error=error, images=images, truncated=truncated, fresh=fresh, reset=reset)
