"""Remote MCP servers as a hosted tool: the client (:mod:`.client`), its outbound-guarded HTTP (:mod:`.http`)
and the servers the operator configures (:mod:`.servers`). Nothing here imports the ``mcp`` SDK at import
time but :mod:`.client`, so a server that never meets an MCP tool never loads it."""
