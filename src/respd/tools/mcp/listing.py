"""A server's tools as listed: what the client got, the ``mcp_list_tools`` item that shows it, and back.

A list already in a response's context (an ``mcp_list_tools`` item of the chain, the conversation, or the
history a client sent back) is reused rather than fetched again, so :func:`from_item` reads one back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from respd.ids import new_id


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One tool a server lists, in the shape of an ``mcp_list_tools`` item's ``tools`` entry."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema,
                "annotations": self.annotations}  # fmt: skip

    @property
    def read_only(self) -> bool:
        """Whether the server marks the tool ``readOnlyHint`` (what ``read_only`` filters match)."""
        return bool((self.annotations or {}).get("readOnlyHint"))


def list_item(server_label: str, tools: Iterable[ToolInfo] = (), error: str | None = None,
              item_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An ``mcp_list_tools`` item (``error`` set when the server could not be listed)."""
    item = {"id": item_id or new_id("mcpl"), "type": "mcp_list_tools", "server_label": server_label,
            "tools": [t.as_json() for t in tools]}  # fmt: skip
    if error is not None:
        item["error"] = error
    return item


def from_item(item: dict[str, Any]) -> list[ToolInfo] | None:
    """The tools an ``mcp_list_tools`` item shows; None for a failed listing (nothing to reuse)."""
    if item.get("error"):
        return None
    out = []
    for t in item.get("tools") or ():
        if isinstance(t, dict) and isinstance(t.get("name"), str):
            schema, notes = t.get("input_schema"), t.get("annotations")
            out.append(ToolInfo(t["name"], t.get("description"), schema if isinstance(schema, dict) else {},
                                notes if isinstance(notes, dict) else None))  # fmt: skip
    return out


def latest_lists(items: Iterable[dict[str, Any]]) -> dict[str, list[ToolInfo]]:
    """Each server label's newest successful listing among ``items`` (a context, oldest first)."""
    found: dict[str, list[ToolInfo]] = {}
    for item in items:
        if item.get("type") == "mcp_list_tools" and (tools := from_item(item)) is not None:
            found[str(item.get("server_label"))] = tools
    return found
