"""MCP items a client sends back: the ``mcp_list_tools``, ``mcp_call`` and ``mcp_approval_request`` items a
response gave it (``S:MCPListTools``, ``S:MCPToolCall``, ``S:MCPApprovalRequest``), and its answer to an
approval request (``S:MCPApprovalResponse``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from respd.wire.base import MAX_TEXT, Wire

ItemId = Annotated[str, Field(min_length=1, max_length=128)]


class McpListedTool(Wire):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None


class McpListTools(Wire):
    type: Literal["mcp_list_tools"]
    id: ItemId
    server_label: str
    tools: list[McpListedTool]
    error: str | None = None


class McpCall(Wire):
    type: Literal["mcp_call"]
    id: ItemId
    server_label: str
    name: str
    arguments: Annotated[str, Field(max_length=MAX_TEXT)]
    output: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    error: dict[str, Any] | None = None
    status: Literal["in_progress", "completed", "incomplete", "calling", "failed"] | None = None
    approval_request_id: str | None = None


class McpApprovalRequest(Wire):
    type: Literal["mcp_approval_request"]
    id: ItemId
    server_label: str
    name: str
    arguments: Annotated[str, Field(max_length=MAX_TEXT)]


class McpApprovalResponse(Wire):
    """The client's decision on an ``mcp_approval_request`` of the context; one naming no request is a 400."""

    type: Literal["mcp_approval_response"]
    id: ItemId | None = None
    approval_request_id: ItemId
    approve: bool
    reason: str | None = None


MCP_ITEMS = (McpListTools, McpCall, McpApprovalRequest, McpApprovalResponse)
McpItem = McpListTools | McpCall | McpApprovalRequest | McpApprovalResponse
