"""The ``[code_interpreter]`` section of the config: which sandbox, which runtime, and the limits.

::

    [code_interpreter]
    sandbox = "auto"          # auto (bubblewrap if it works) | bubblewrap | command | off
    python = ""               # the runtime's interpreter; default: respd's own (its venv has numpy, pandas,
                              # matplotlib)
    command = []              # sandbox = "command": the operator's command line (see isolation.CommandIsolation)
    memory_limit = "1g"       # a container's memory when the request names none
    max_memory_limit = "4g"   # the largest memory_limit a request may ask for
    timeout_s = 60            # wall time of one call
    cpu_s = 60                # CPU time of one call
    disk_mb = 512             # /mnt/data's size
    max_processes = 64        # processes and threads in one container
    max_live = 32             # containers with a running process, per server; the least recently used is
                              # stopped (its files stay) when another needs to start
    max_file_mb = 32          # the largest file the container API takes, and that code's output is copied back

Environment: ``RESPD_SANDBOX`` (sandbox), ``RESPD_SANDBOX_PYTHON`` (python).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

SANDBOXES = ("auto", "bubblewrap", "command", "off")
API_MEMORY_LIMITS = ("1g", "4g", "16g", "64g")  # what a request may name


class SandboxConfigError(ValueError):
    """The section is unusable (raised at startup)."""


def parse_size(text: str) -> int:
    """``"512m"``, ``"1g"``, ``"1.5g"`` → bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise SandboxConfigError(f"not a size: {text!r} (e.g. '512m', '4g')")
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match.group(2)]
    return int(float(match.group(1)) * unit)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    sandbox: str = "auto"
    python: str = ""
    command: tuple[str, ...] = ()
    memory_limit: str = "1g"
    max_memory_limit: str = "4g"
    timeout_s: float = 60.0
    cpu_s: float = 60.0
    disk_mb: int = 512
    tmp_mb: int = 64
    max_processes: int = 64
    max_live: int = 32
    max_file_mb: int = 32
    max_output_chars: int = 20_000  # a call's logs as the model and the client see them
    idle_minutes: int = 20  # expires_after when a container is created without one

    @property
    def max_memory_bytes(self) -> int:
        return parse_size(self.max_memory_limit)

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb << 20


def load_sandbox_settings(raw: dict[str, Any], env: dict[str, str]) -> SandboxSettings:
    """The section from the config file, with the environment's overrides; checked."""
    known = {f.name for f in fields(SandboxSettings)}
    unknown = set(raw) - known
    if unknown:
        raise SandboxConfigError(f"code_interpreter: unknown keys {sorted(unknown)}")
    values = dict(raw)
    if env.get("RESPD_SANDBOX"):
        values["sandbox"] = env["RESPD_SANDBOX"]
    if env.get("RESPD_SANDBOX_PYTHON"):
        values["python"] = env["RESPD_SANDBOX_PYTHON"]
    if "command" in values:
        values["command"] = tuple(str(part) for part in values["command"])
    try:
        settings = SandboxSettings(**values)
    except TypeError as exc:
        raise SandboxConfigError(f"code_interpreter: {exc}") from None
    if settings.sandbox not in SANDBOXES:
        raise SandboxConfigError(f"code_interpreter.sandbox must be one of {SANDBOXES}, not {settings.sandbox!r}")
    if settings.sandbox == "command" and not settings.command:
        raise SandboxConfigError("code_interpreter.sandbox = 'command' needs code_interpreter.command")
    for name in ("memory_limit", "max_memory_limit"):
        parse_size(getattr(settings, name))
    numbers = (settings.timeout_s, settings.cpu_s, settings.disk_mb, settings.tmp_mb, settings.max_processes,
               settings.max_live, settings.max_file_mb, settings.max_output_chars, settings.idle_minutes)  # fmt: skip
    if min(numbers) <= 0:
        raise SandboxConfigError("code_interpreter: limits and sizes must be > 0")
    return settings
