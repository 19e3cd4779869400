"""The hosted tools this server runs: every module of :mod:`respd.tools` with a ``hosted_tool`` function.

Adding a tool is adding a module: the registry imports each module of the package once, calls its
``hosted_tool(host)``, and keeps what it returns (None: not configured here, so its tool types stay
unrunnable and are left out of what the model sees, or refused with ``strict_tools``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any

from respd import tools as package
from respd.tools.base import HostedTool, ToolFactory, ToolHost

log = logging.getLogger("respd.tools")


def factories() -> list[ToolFactory]:
    """Each tool module's ``hosted_tool``, in module-name order."""
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        factory = getattr(module, "hosted_tool", None)
        if callable(factory):
            found.append(factory)
    return found


class Registry:
    """The configured hosted tools, by the request tool types and output item types they serve."""

    def __init__(self, host: ToolHost) -> None:
        self.by_type: dict[str, HostedTool] = {}
        self.by_item: dict[str, HostedTool] = {}
        tools = [t for t in (factory(host) for factory in factories()) if t is not None]
        for tool in tools:
            for kind in tool.types:
                self.by_type[kind] = tool
            self.by_item[tool.item_type] = tool
        if tools:
            log.info("hosted tools: %s", ", ".join(sorted(self.by_type)))

    def tool(self, tool_type: str) -> HostedTool | None:
        """The tool serving requests' ``tools[].type`` ``tool_type``, if configured."""
        return self.by_type.get(tool_type)

    async def aclose(self) -> None:
        """Close every tool (at shutdown)."""
        for tool in {id(t): t for t in self.by_type.values()}.values():
            try:
                await tool.aclose()
            except Exception:
                log.exception("closing hosted tool %s failed", tool.item_type)

    def of_item(self, item: dict[str, Any]) -> HostedTool | None:
        """The tool whose call ``item`` is, if it is a hosted call item of a configured tool."""
        return self.by_item.get(item.get("type", ""))
