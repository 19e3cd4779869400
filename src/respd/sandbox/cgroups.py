"""A control group per container, where respd may make one: the container's memory as a whole.

Resource limits (``RLIMIT_AS``) bound each process of a container, not their sum: a container's processes
together could use ``memory_limit`` times ``max_processes``. A memory cgroup bounds the sum, and the kernel's
OOM killer then ends a process inside that container only. respd makes one per container under its own
cgroup when it can write there (root on cgroup v1; cgroup v2 where the memory controller is already enabled
for respd's cgroup's children), and otherwise runs with resource limits alone (said at startup).

A sandbox enters its cgroup before anything else runs: the launch command begins with a tiny shell that
writes its own pid into ``cgroup.procs``, then execs the isolation tool, so every process of the container
is born inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("respd.sandbox")

ENTER = 'for f in "$@"; do shift; [ "$f" = -- ] && break; echo $$ > "$f"; done; exec "$@"'


@dataclass(frozen=True, slots=True)
class Group:
    """One container's cgroup (a directory per hierarchy: one on v2, memory and pids on v1)."""

    dirs: tuple[Path, ...]
    memory: Path  # the directory with the memory files

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for want of memory."""
        try:
            for name in ("memory.events", "memory.oom_control"):
                path = self.memory / name
                if path.exists():
                    for line in path.read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value or 0) > 0:
                            return True
            failcnt = self.memory / "memory.failcnt"
            return failcnt.exists() and int(failcnt.read_text() or 0) > 0
        except (OSError, ValueError):
            return False


class Cgroups:
    """Where container cgroups are made (under respd's own), and how."""

    def __init__(self, memory_root: Path, pids_root: Path | None, v2: bool) -> None:
        self.memory_root, self.pids_root, self.v2 = memory_root, pids_root, v2
        self._n = 0

    def describe(self) -> str:
        return f"cgroup {'v2' if self.v2 else 'v1'} under {self.memory_root}"

    @classmethod
    def find(cls) -> Cgroups | None:
        """respd's place to make container cgroups, or ``None`` when it cannot."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        own = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
        tag = f"respd-sandbox-{os.getpid()}"
        v1_memory = Path("/sys/fs/cgroup/memory") / own.get("memory", "/").lstrip("/")
        if "memory" in own and v1_memory.is_dir():
            pids = Path("/sys/fs/cgroup/pids") / own.get("pids", "/").lstrip("/") if "pids" in own else None
            found = cls(v1_memory / tag, pids / tag if pids and pids.is_dir() else None, v2=False)
        elif "" in own and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base = Path("/sys/fs/cgroup") / own[""].lstrip("/")
            found = cls(base / tag, None, v2=True)
        else:
            return None
        found._sweep_stale()
        return found if found._prepare() else None

    def _sweep_stale(self) -> None:
        """Remove what servers killed before they could clean up left here (empty groups only)."""
        for root in (self.memory_root, self.pids_root):
            if root is None or not root.parent.is_dir():
                continue
            for stale in root.parent.glob("respd-sandbox-*"):
                pid = stale.name.removeprefix("respd-sandbox-")
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    for child in stale.iterdir():
                        if child.is_dir():
                            with contextlib.suppress(OSError):
                                child.rmdir()
                    with contextlib.suppress(OSError):
                        stale.rmdir()

    def _prepare(self) -> bool:
        try:
            for root in (self.memory_root, self.pids_root):
                if root is not None:
                    root.mkdir(exist_ok=True)
            if self.v2:  # children get memory and pids only if this (respd's) cgroup hands them down
                (self.memory_root / "cgroup.subtree_control").write_text("+memory +pids")
            return True
        except OSError as exc:
            log.info("code_interpreter: no per-container cgroups (%s): memory is limited per process", exc)
            self.remove_all()
            return False

    def make(self, memory_bytes: int, max_processes: int) -> Group:
        """A new container cgroup with these limits."""
        self._n += 1
        name = f"k{self._n}"
        if not self.memory_root.is_dir():  # again after remove_all (a pool closed, another opened)
            self._prepare()
        memory = self.memory_root / name
        memory.mkdir()
        dirs = [memory]
        if self.v2:
            (memory / "memory.max").write_text(str(memory_bytes))
            (memory / "memory.swap.max").write_text("0")
            (memory / "pids.max").write_text(str(max_processes))
        else:
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if self.pids_root is not None:
                pids = self.pids_root / name
                pids.mkdir()
                (pids / "pids.max").write_text(str(max_processes))
                dirs.append(pids)
        return Group(dirs=tuple(dirs), memory=memory)

    @staticmethod
    def enter(group: Group, argv: list[str]) -> list[str]:
        """``argv``, started inside ``group``."""
        return ["/bin/sh", "-c", ENTER, "sh", *(str(d / "cgroup.procs") for d in group.dirs), "--", *argv]

    @staticmethod
    async def remove(group: Group) -> None:
        """Remove the group once its last process is gone (the sandbox's die a moment after its parent)."""
        for _ in range(40):
            try:
                for d in group.dirs:
                    if d.exists():
                        d.rmdir()
                return
            except OSError:
                await asyncio.sleep(0.05)
        log.debug("cgroup %s still busy; left for the server's exit", group.memory)

    def remove_all(self) -> None:
        for root in (self.memory_root, self.pids_root):
            if root is None or not root.is_dir():
                continue
            for child in root.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
