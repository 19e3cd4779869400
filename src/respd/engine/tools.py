"""The tools of a request: what the model is offered, what is left out, and what the Response echoes.

Namespaces are flattened here into one list of function and custom tools, each remembering its namespace;
how a backend presents them to its model (a Chat Completions upstream has neither namespaces nor custom
tools) is the backend's business. Built-in tools (web_search, file_search, …) have no executor in respd:
they are left out of what the model sees and named in ``omitted``, or refused when ``strict``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from respd.errors import InvalidRequest, Unsupported
from respd.wire.request import (
    BuiltinTool,
    CreateResponse,
    CustomTool,
    FunctionTool,
    NamespaceTool,
    ToolChoiceAllowed,
    ToolChoiceBuiltin,
    ToolChoiceCustom,
    ToolChoiceFunction,
)

log = logging.getLogger("respd.tools")


@dataclass
class ToolPlan:
    """Tools for one run."""

    offered: list[dict[str, Any]] = field(default_factory=list)  # neutral tool dicts for the backend
    echo: list[dict[str, Any]] = field(default_factory=list)  # the Response's ``tools``
    omitted: list[str] = field(default_factory=list)  # built-in tool types nobody here can run
    choice: Any = None  # the tool_choice for the backend (a string or a neutral dict)


def _offer(tool: FunctionTool | CustomTool, namespace: str | None) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {"type": "function", "name": tool.name, "namespace": namespace, "description": tool.description,
                "parameters": tool.parameters, "strict": tool.strict}  # fmt: skip
    fmt = tool.format.model_dump() if tool.format is not None else None
    return {"type": "custom", "name": tool.name, "namespace": namespace, "description": tool.description,
            "format": fmt}  # fmt: skip


def _echo(tool: FunctionTool | CustomTool | NamespaceTool) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {"type": "function", "name": tool.name, "description": tool.description,
                "parameters": tool.parameters, "strict": True if tool.strict is None else tool.strict}  # fmt: skip
    if isinstance(tool, CustomTool):
        return tool.model_dump(exclude_none=True)
    return {"type": "namespace", "name": tool.name, "description": tool.description or "",
            "tools": [_echo(t) for t in tool.tools]}  # fmt: skip


def _choice(req: CreateResponse, plan: ToolPlan) -> Any:
    choice = req.tool_choice
    names = {t["name"] for t in plan.offered}
    if choice is None or isinstance(choice, str):
        if choice == "required" and not names:
            raise InvalidRequest("Tool choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
        return choice
    if isinstance(choice, ToolChoiceBuiltin):
        raise Unsupported(f"Tool choice '{choice.type}' forces a tool this server cannot run.", param="tool_choice")
    if isinstance(choice, ToolChoiceFunction | ToolChoiceCustom):
        wanted = [choice.name]
    else:
        wanted = [str(t.get("name")) for t in choice.tools if t.get("type") in ("function", "custom")]
    for name in wanted:
        if name not in names:
            raise InvalidRequest(f"Tool choice '{name}' not found in 'tools' parameter.", param="tool_choice")
    if isinstance(choice, ToolChoiceAllowed):
        return {"type": "allowed_tools", "mode": choice.mode, "names": wanted}
    return {"type": choice.type, "name": choice.name}


def plan_tools(req: CreateResponse, *, strict: bool) -> ToolPlan:
    """Sort the request's tools; raises a 400 for a built-in tool when ``strict``."""
    plan = ToolPlan()
    for i, tool in enumerate(req.tools or ()):
        if isinstance(tool, BuiltinTool):
            if strict:
                raise Unsupported(f"Tool type '{tool.type}' is not supported by this server.", param=f"tools[{i}].type")
            plan.omitted.append(tool.type)
            continue
        plan.echo.append(_echo(tool))
        if isinstance(tool, NamespaceTool):
            plan.offered += [_offer(t, tool.name) for t in tool.tools]
        else:
            plan.offered.append(_offer(tool, None))
    if plan.omitted:
        log.info("left out built-in tools without an executor: %s", ", ".join(plan.omitted))
    plan.choice = _choice(req, plan)
    return plan
