"""MCP credentials in a stored request: sealed, never in clear.

A background response's request is stored until a replica runs it (and again if another takes it over), and
its ``mcp`` tools may carry ``authorization`` and ``headers``. :func:`seal_request` replaces each such value by
``respd-sealed:`` and an AES-GCM blob bound to the API key's tenant (respd's sealer, the server key);
:func:`open_request` puts them back before the request is parsed to run. The Response's ``tools`` never shows
them at all (:meth:`respd.tools.mcp.config.McpToolConfig.echo`).
"""

from __future__ import annotations

from typing import Any

import orjson

from respd.sealing import Sealer

PURPOSE = "mcp_credentials"
MARK = "respd-sealed:"


def _mcp_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The MCP tool entries of a request body: in ``tools`` and in input items that bring tools."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    items = body.get("input")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("tools"), list):
            tools += [t for t in item["tools"] if isinstance(t, dict)]
    return [t for t in tools if t.get("type") == "mcp"]


def _each_secret(tool: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(the dict holding it, its key) for each credential of an MCP tool entry."""
    out: list[tuple[dict[str, Any], str]] = []
    if isinstance(tool.get("authorization"), str):
        out.append((tool, "authorization"))
    headers = tool.get("headers")
    if isinstance(headers, dict):
        out += [(headers, name) for name, value in headers.items() if isinstance(value, str)]
    return out


def seal_request(sealer: Sealer, tenant: str, body: bytes) -> bytes:
    """``body`` with every MCP credential sealed (unchanged, and not re-encoded, when it has none)."""
    if b'"mcp"' not in body:
        return body
    parsed = orjson.loads(body)
    secrets = [where for tool in _mcp_tools(parsed) for where in _each_secret(tool)]
    if not secrets:
        return body
    for holder, key in secrets:
        holder[key] = MARK + sealer.seal(tenant, PURPOSE, holder[key])
    return orjson.dumps(parsed)


def open_request(sealer: Sealer, tenant: str, body: bytes) -> bytes:
    """A stored request body with its sealed credentials opened (raises SealError for a foreign blob)."""
    if MARK.encode() not in body:
        return body
    parsed = orjson.loads(body)
    for tool in _mcp_tools(parsed):
        for holder, key in _each_secret(tool):
            if holder[key].startswith(MARK):
                holder[key] = sealer.open(tenant, PURPOSE, holder[key][len(MARK) :])
    return orjson.dumps(parsed)
