"""A request's ``{"type": "mcp", …}`` tool (``S:MCPTool``): its checks, and what it allows and guards.

``allowed_tools`` (names, or a ``{tool_names, read_only}`` filter) picks the listed tools the model is
offered; ``require_approval`` (``always`` — the default —, ``never``, or ``{always, never}`` filters) picks the
calls that end the response with an ``mcp_approval_request`` instead of running. A filter matches a tool when
every condition it gives holds (``tool_names`` has its name, ``read_only`` equals the server's
``readOnlyHint``); an empty filter matches every tool. A tool matched by ``never`` runs unasked, one matched
by ``always`` asks; one matched by neither asks unless only ``always`` was given.

The model calls a server's tool as the function ``<server_label>__<tool name>`` (characters a function name
cannot hold become ``_``; a name too long is cut and given a hash), so two servers' tools never collide.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import Field

from respd.tools.mcp.listing import ToolInfo
from respd.wire.base import Wire


class ToolFilter(Wire):
    """``S:MCPToolFilter``."""

    tool_names: list[str] | None = None
    read_only: bool | None = None

    def matches(self, tool: ToolInfo) -> bool:
        if self.tool_names is not None and tool.name not in self.tool_names:
            return False
        return self.read_only is None or tool.read_only == self.read_only


class ApprovalFilter(Wire):
    always: ToolFilter | None = None
    never: ToolFilter | None = None


class McpToolConfig(Wire):
    """The request's MCP tool entry."""

    type: Literal["mcp"]
    server_label: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    server_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    connector_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    tunnel_id: str | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    server_description: str | None = None
    allowed_tools: list[str] | ToolFilter | None = None
    require_approval: Literal["always", "never"] | ApprovalFilter | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    defer_loading: bool | None = None

    def allows(self, tool: ToolInfo) -> bool:
        """Whether the model is offered ``tool``."""
        allowed = self.allowed_tools
        if allowed is None:
            return True
        return tool.name in allowed if isinstance(allowed, list) else allowed.matches(tool)

    def needs_approval(self, tool: ToolInfo) -> bool:
        """Whether a call of ``tool`` waits for the client's approval."""
        rule = self.require_approval
        if rule is None or isinstance(rule, str):
            return rule != "never"
        if rule.never is not None and rule.never.matches(tool):
            return False
        if rule.always is not None and rule.always.matches(tool):
            return True
        return rule.always is None or rule.never is not None

    def echo(self) -> dict[str, Any]:
        """The tool as the Response's ``tools`` shows it: never the authorization or header values."""
        out = self.model_dump(exclude_none=True, exclude={"authorization", "headers"})
        out.setdefault("require_approval", "always")
        return out


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server_label: str, tool_name: str) -> str:
    """The function a model calls a server's tool by (at most 64 characters, safe for every upstream)."""
    name = f"{server_label}__{_UNSAFE.sub('_', tool_name)}"
    if len(name) <= 64 and name == f"{server_label}__{tool_name}":
        return name
    digest = hashlib.sha256(f"{server_label}\0{tool_name}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def function(config: McpToolConfig, tool: ToolInfo) -> dict[str, Any]:
    """The neutral function tool the model is offered for ``tool``."""
    description = tool.description or tool.name
    if config.server_description:
        description = f"{description}\n(From the MCP server '{config.server_label}': {config.server_description})"
    schema = tool.input_schema if tool.input_schema.get("type") == "object" else {"type": "object", "properties": {}}
    return {"type": "function", "name": function_name(config.server_label, tool.name), "namespace": None,
            "description": description, "parameters": schema, "strict": None}  # fmt: skip
