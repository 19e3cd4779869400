"""MCP servers the operator names in the config (``[[mcp_servers]]``), which requests reach by ``connector_id``.

::

    [[mcp_servers]]
    connector_id = "internal_docs"                 # what a request's {"type": "mcp", "connector_id"} names
    url = "https://docs.corp.example/mcp"
    transport = "auto"                             # or "streamable_http", "sse"
    description = "Search the internal docs."     # the server_description when a request gives none
    authorization_env = "DOCS_MCP_TOKEN"           # sent as "Authorization: Bearer <value>"
    headers_env = { "X-Team" = "DOCS_MCP_TEAM" }   # header name → the variable holding its value
    timeout_s = 60                                 # longest a call may take

Secrets stay in the environment: values are read when a session is opened, never stored, logged or shown to
clients. The operator vouches for a server's URL by naming it, so its host and port are reachable whatever
``outbound_allow`` says; everything else about the outbound policy still applies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from respd.outbound import DEFAULT_PORTS, OutboundPolicy

TRANSPORTS = ("auto", "streamable_http", "sse")
_KEYS = {"connector_id", "url", "transport", "description", "authorization_env", "headers_env", "timeout_s"}


@dataclass(frozen=True, slots=True)
class McpServerConfig:
    """One ``[[mcp_servers]]`` entry."""

    connector_id: str
    url: str
    transport: str = "auto"
    description: str | None = None
    authorization_env: str | None = None
    headers_env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 60.0

    def headers(self, env: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
        """The headers sessions send, read from the environment now (a missing variable sends no header)."""
        env = os.environ if env is None else env
        out = [(name, env[var]) for name, var in self.headers_env.items() if env.get(var)]
        if self.authorization_env and env.get(self.authorization_env):
            out.append(("Authorization", f"Bearer {env[self.authorization_env]}"))
        return tuple(out)

    def policy(self, base: OutboundPolicy) -> OutboundPolicy:
        """``base`` widened to this server's own host and port."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        pattern = f"[{host}]" if ":" in host else host
        return OutboundPolicy(allow=(*base.allow, f"{pattern}:{parts.port or DEFAULT_PORTS[parts.scheme]}"),
                              public=base.public)  # fmt: skip


def parse_servers(raw: Any) -> tuple[McpServerConfig, ...]:
    """The ``mcp_servers`` array of tables; raises ValueError naming the entry and what is wrong."""
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ValueError("mcp_servers must be an array of tables ([[mcp_servers]])")
    servers = tuple(_server(entry, i) for i, entry in enumerate(raw))
    ids = [s.connector_id for s in servers]
    if len(ids) != len(set(ids)):
        raise ValueError("mcp_servers: connector_id values must be unique")
    return servers


def _server(entry: dict[str, Any], i: int) -> McpServerConfig:
    where = f"mcp_servers[{i}]"
    if unknown := set(entry) - _KEYS:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("connector_id", "url"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"{where}: '{key}' is required (a string)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", entry["connector_id"]):
        raise ValueError(f"{where}: connector_id may hold letters, digits, '_', '.' and '-' (64 at most)")
    parts = urlsplit(entry["url"])
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{where}: url must be an http or https URL with a host")
    if entry.get("transport", "auto") not in TRANSPORTS:
        raise ValueError(f"{where}: transport must be one of {TRANSPORTS}")
    headers = entry.get("headers_env", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError(f"{where}: headers_env maps header names to environment variable names")
    timeout = entry.get("timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"{where}: timeout_s must be a number > 0")
    for key in ("description", "authorization_env"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ValueError(f"{where}: {key} must be a string")
    return McpServerConfig(
        connector_id=entry["connector_id"], url=entry["url"], transport=entry.get("transport", "auto"),
        description=entry.get("description"), authorization_env=entry.get("authorization_env"),
        headers_env=dict(headers), timeout_s=float(timeout),
    )  # fmt: skip
