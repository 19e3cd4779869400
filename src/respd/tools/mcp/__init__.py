"""Remote MCP servers as a hosted tool (:mod:`.tool`): the client (:mod:`.client`), its outbound-guarded HTTP
(:mod:`.http`), the request's tool entry (:mod:`.config`), listings (:mod:`.listing`), credentials sealed in
stored requests (:mod:`.secrets`) and the servers the operator configures (:mod:`.servers`). Only
:mod:`.client` imports the ``mcp`` SDK, on first use, so a server that never meets an MCP tool never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from respd.tools.base import ToolHost
    from respd.tools.mcp.tool import McpTool


def hosted_tool(host: ToolHost) -> McpTool:
    """The registry's entry point (imported late: respd.config imports this package for its servers)."""
    from respd.tools.mcp.tool import McpTool

    return McpTool(host.settings)
