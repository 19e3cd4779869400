"""Which sandbox this server has, found at startup by starting one and asking it a question.

``sandbox = "auto"`` uses bubblewrap when it works here and otherwise leaves code_interpreter out, with a log
line that says how to enable it. A sandbox the operator names must work, or the server does not start.
There is no unsandboxed fallback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time

from respd.sandbox.cgroups import Cgroups
from respd.sandbox.isolation import STAGE, Bubblewrap, CommandIsolation, Isolation, PythonRuntime, find_bwrap
from respd.sandbox.pool import Sandbox
from respd.sandbox.process import KernelGone
from respd.sandbox.settings import SandboxConfigError, SandboxSettings, parse_size

log = logging.getLogger("respd.sandbox")

ENABLE_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; ./scripts/serve.sh installs it when run as "
    'root) and allow unprivileged user namespaces, or set [code_interpreter] sandbox = "command" with a '
    "container runtime's command line"
)
PROBE = (
    "import importlib.util, os, sys\n"
    "missing = [m for m in ('numpy', 'pandas', 'matplotlib') if importlib.util.find_spec(m) is None]\n"
    "print(os.getuid(), sys.version.split()[0], ','.join(missing))"
)


def _bubblewrap(settings: SandboxSettings) -> Isolation | str:
    """bubblewrap set up for this host, or why it cannot be."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} does not run: {exc}"
    if os.geteuid() == 0:
        os.makedirs(STAGE, mode=0o755, exist_ok=True)
    return Bubblewrap(PythonRuntime.of(settings.python), bwrap, disable_userns="--disable-userns" in usage)


async def probe(sandbox: Sandbox) -> str:
    """Start a kernel, run a line of Python in it, stop it: what it said, or :class:`KernelGone`."""
    kernel = await sandbox.start(parse_size(sandbox.settings.memory_limit))
    try:
        reply, _ = await kernel.request({"op": "exec", "code": PROBE, "cpu_s": 10, "wall_s": 20,
                                         "max_output": 4096}, wait_s=30)  # fmt: skip
    finally:
        await kernel.kill()
    if reply.get("error"):
        raise KernelGone(f"the probe failed: {reply.get('logs')}")
    return str(reply.get("logs", "")).strip()


async def find_sandbox(settings: SandboxSettings) -> Sandbox | None:
    """The working sandbox per ``settings``, or ``None`` (code_interpreter is then left out)."""
    if settings.sandbox == "off":
        log.info('code_interpreter: off ([code_interpreter] sandbox = "off")')
        return None
    if settings.sandbox == "command":
        isolation: Isolation | str = CommandIsolation(settings.command, settings.python)
    else:
        isolation = _bubblewrap(settings)
    if isinstance(isolation, str):
        _unavailable(settings, isolation)
        return None
    cgroups = Cgroups.find() if isinstance(isolation, Bubblewrap) else None
    sandbox = Sandbox(isolation, settings, cgroups)
    started = time.perf_counter()
    try:
        said = await probe(sandbox)
    except KernelGone as exc:
        _unavailable(settings, f"{isolation.name} does not work here: {exc}")
        return None
    _uid, version, missing = [*said.split(" "), "", "", ""][:3]
    memory = f"per container ({cgroups.describe()})" if cgroups else "per process (RLIMIT_AS; no cgroup)"
    log.info("code_interpreter: sandbox %s; memory limited %s; Python %s, started in %.0f ms",
             isolation.describe(), memory, version, (time.perf_counter() - started) * 1000)  # fmt: skip
    if missing:
        log.warning("code_interpreter: the sandbox's Python lacks %s (the project's `uv sync` installs them)", missing)
    return sandbox


def _unavailable(settings: SandboxSettings, why: str) -> None:
    """Say why there is no sandbox (an operator who named one gets an error: the server does not start)."""
    if settings.sandbox != "auto":
        raise SandboxConfigError(f"code_interpreter: sandbox {settings.sandbox!r} is not usable: {why}")
    log.warning("code_interpreter: not available, left out of requests (%s). To enable it: %s.", why, ENABLE_HINT)
