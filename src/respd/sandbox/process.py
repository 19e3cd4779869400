"""respd's side of one kernel process: start it, send it requests, read its bounded replies, end it.

Everything read from the kernel is untrusted (user code runs in that process): each frame is size-checked
before it is read, must parse as a JSON object, and must arrive in time. Any breach ends the process with
:class:`KernelGone`, whose message says what happened; respd itself is never at risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
import time
from typing import Any

import orjson

from respd.sandbox.cgroups import Cgroups, Group

HEADER = struct.Struct(">II")
MAX_JSON = 64 << 20  # a reply's JSON part (images travel in it, base64)
STDERR_KEEP = 4096


class KernelGone(Exception):
    """The kernel process ended, or was ended for misbehaving; the message is fit to show the model."""


class KernelProcess:
    """One running kernel. Requests are serialized: a container runs one thing at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, max_payload: int, group: Group | None) -> None:
        self.proc, self.max_payload, self.group = proc, max_payload, group
        self.lock = asyncio.Lock()
        self.started = time.monotonic()
        self.info: dict[str, Any] = {}
        self._stderr = bytearray()
        self._drain = asyncio.get_running_loop().create_task(self._read_stderr())
        self.ended_because = ""

    @classmethod
    async def start(
        cls, argv: list[str], *, max_payload: int, wait_s: float, group: Group | None = None
    ) -> KernelProcess:
        """Start ``argv`` (inside ``group``, a cgroup, when given) and wait for the kernel's first frame."""
        if group is not None:
            argv = Cgroups.enter(group, argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=1 << 20, start_new_session=True,
        )  # fmt: skip
        kernel = cls(proc, max_payload, group)
        try:
            kernel.info, _ = await asyncio.wait_for(kernel._read(), wait_s)
        except (TimeoutError, KernelGone) as exc:
            await kernel.kill()
            detail = kernel.stderr_tail() or str(exc) or "no answer in time"
            raise KernelGone(f"the sandbox did not start: {detail}") from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # the sandbox dies with it; its cgroup goes with the server's
            raise
        return kernel

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.ended_because

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace").strip()[-STDERR_KEEP:]

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr += chunk
            del self._stderr[:-STDERR_KEEP]

    async def _read(self) -> tuple[dict[str, Any], bytes]:
        out = self.proc.stdout
        assert out is not None
        try:
            jlen, plen = HEADER.unpack(await out.readexactly(HEADER.size))
            if jlen > MAX_JSON or plen > self.max_payload:
                raise KernelGone(f"the kernel sent an oversized reply ({jlen} + {plen} bytes)")
            msg = orjson.loads(await out.readexactly(jlen))
            payload = await out.readexactly(plen) if plen else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 2)  # its exit status says how it ended
            raise KernelGone(self._death()) from None
        except orjson.JSONDecodeError:
            raise KernelGone("the kernel sent a reply that is not JSON") from None
        if not isinstance(msg, dict):
            raise KernelGone("the kernel sent a reply that is not an object")
        return msg, payload

    def _death(self) -> str:
        if self.group is not None and self.group.oom_killed():
            return "the container ran out of memory (its memory_limit) and its Python process was killed"
        code = self.proc.returncode
        # killed by a signal: a negative status, or 128 + the signal as bubblewrap passes its child's on
        number = -code if code is not None and code < 0 else code - 128 if code is not None and code > 128 else 0
        if number:
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
            return f"the Python process was killed ({name})"
        return "the Python process ended"

    async def request(
        self, msg: dict[str, Any], payload: bytes = b"", *, wait_s: float
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait up to ``wait_s`` seconds for its reply; on any failure the process is
        killed and :class:`KernelGone` says why."""
        async with self.lock:
            if not self.alive:
                raise KernelGone(self.ended_because or self._death())
            stdin = self.proc.stdin
            assert stdin is not None
            body = orjson.dumps(msg)
            try:
                stdin.write(HEADER.pack(len(body), len(payload)) + body + payload)
                await stdin.drain()
                return await asyncio.wait_for(self._read(), wait_s)
            except TimeoutError:
                await self.kill(f"the call ran for more than {wait_s:g} seconds and the process was ended")
                raise KernelGone(self.ended_because) from None
            except (ConnectionError, KernelGone) as exc:
                reason = str(exc) if isinstance(exc, KernelGone) else self._death()
                await self.kill(reason)
                raise KernelGone(self.ended_because) from None

    async def kill(self, reason: str = "the container's process was stopped") -> None:
        """End the process (and so the whole sandbox: its namespaces die with it)."""
        self.ended_because = self.ended_because or reason
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5)
        self._drain.cancel()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.group is not None:
            await Cgroups.remove(self.group)
