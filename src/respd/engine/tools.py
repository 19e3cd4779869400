"""The tools of a request: what the model is offered, what is left out, and what the Response echoes.

A turn's tools are the request's ``tools`` plus those its input items bring (``additional_tools``, and the
tools a client-run ``tool_search`` loaded). Namespaces are flattened here into one list of function and
custom tools, each remembering its namespace; how a backend presents them to its model (a Chat Completions
upstream has neither namespaces nor custom tools) is the backend's business. A client-run tool search is
offered like a function named ``tool_search``. The client-executed built-ins (computer_use_preview,
local_shell, shell, apply_patch) are offered as functions too (:mod:`respd.wire.client_calls`). Built-in
tools (web_search, file_search, a server-run tool_search, …) have no executor in respd: they are left out of
what the model sees and named in ``omitted``, or refused when ``strict``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from respd.errors import InvalidRequest, Unsupported
from respd.wire import client_calls
from respd.wire import items as w
from respd.wire.request import (
    CreateResponse,
    ToolChoiceAllowed,
    ToolChoiceBuiltin,
    ToolChoiceCustom,
    ToolChoiceFunction,
)
from respd.wire.tools import (
    CLIENT_TOOL_TYPES,
    TOOL_SEARCH,
    BuiltinTool,
    ClientTool,
    CustomTool,
    FunctionTool,
    NamespaceTool,
    ShellTool,
    Tool,
    ToolSearchTool,
)

log = logging.getLogger("respd.tools")


@dataclass
class ToolPlan:
    """Tools for one run."""

    offered: list[dict[str, Any]] = field(default_factory=list)  # neutral tool dicts for the backend
    echo: list[dict[str, Any]] = field(default_factory=list)  # the Response's ``tools``
    omitted: list[str] = field(default_factory=list)  # built-in tool types nobody here can run
    choice: Any = None  # the tool_choice for the backend (a string or a neutral dict)


def _offer(tool: FunctionTool | CustomTool | ToolSearchTool, namespace: str | None) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {"type": "function", "name": tool.name, "namespace": namespace, "description": tool.description,
                "parameters": tool.parameters, "strict": tool.strict}  # fmt: skip
    if isinstance(tool, ToolSearchTool):
        return {"type": "tool_search", "name": TOOL_SEARCH, "namespace": None, "description": tool.description,
                "parameters": tool.parameters, "strict": None}  # fmt: skip
    fmt = tool.format.model_dump() if tool.format is not None else None
    return {"type": "custom", "name": tool.name, "namespace": namespace, "description": tool.description,
            "format": fmt}  # fmt: skip


Offerable = FunctionTool | CustomTool | NamespaceTool | ToolSearchTool | ClientTool


def _offers(tool: Offerable) -> list[dict[str, Any]]:
    if isinstance(tool, NamespaceTool):
        return [_offer(t, tool.name) for t in tool.tools]
    if isinstance(tool, FunctionTool | CustomTool | ToolSearchTool):
        return [_offer(tool, None)]
    return [client_calls.offer(tool)]


def _echo(tool: Offerable) -> dict[str, Any]:
    if isinstance(tool, FunctionTool):
        return {"type": "function", "name": tool.name, "description": tool.description,
                "parameters": tool.parameters, "strict": True if tool.strict is None else tool.strict}  # fmt: skip
    if isinstance(tool, NamespaceTool):
        return {"type": "namespace", "name": tool.name, "description": tool.description or "",
            "tools": [_echo(t) for t in tool.tools]}  # fmt: skip
    return tool.model_dump(exclude_none=True)


def _choice(req: CreateResponse, plan: ToolPlan) -> Any:
    choice = req.tool_choice
    names = {t["name"] for t in plan.offered}
    if choice is None or isinstance(choice, str):
        if choice == "required" and not names:
            raise InvalidRequest("Tool choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
        return choice
    if isinstance(choice, ToolChoiceBuiltin):
        return {"type": "function", "name": _client_tool_name(choice.type, plan)}
    if isinstance(choice, ToolChoiceFunction | ToolChoiceCustom):
        wanted = [choice.name]
    else:
        wanted = [_allowed_name(t, plan) for t in choice.tools if t.get("type") in _NAMED]
    for name in wanted:
        if name not in names:
            raise InvalidRequest(f"Tool choice '{name}' not found in 'tools' parameter.", param="tool_choice")
    if isinstance(choice, ToolChoiceAllowed):
        return {"type": "allowed_tools", "mode": choice.mode, "names": wanted}
    return {"type": choice.type, "name": choice.name}


# The tools of an allowed_tools list that are functions to the model (other built-ins have nothing to allow).
_NAMED = frozenset({"function", "custom", "computer", "computer_use"} | CLIENT_TOOL_TYPES)


def _allowed_name(tool: dict[str, Any], plan: ToolPlan) -> str:
    kind = str(tool.get("type"))
    return str(tool.get("name")) if kind in ("function", "custom") else _client_tool_name(kind, plan)


def _client_tool_name(kind: str, plan: ToolPlan) -> str:
    """The function a client-executed built-in is offered as; forcing any other built-in is refused."""
    tool_type = "computer_use_preview" if kind in ("computer", "computer_use") else kind
    if tool_type not in client_calls.FUNCTION_NAMES or not any(t["type"] == tool_type for t in plan.offered):
        raise Unsupported(f"Tool choice '{kind}' forces a tool this server cannot run.", param="tool_choice")
    return client_calls.FUNCTION_NAMES[tool_type]


def _turn_tools(req: CreateResponse) -> Iterator[tuple[str, Tool, bool]]:
    """Each tool of this turn with its parameter path and whether the Response's ``tools`` echoes it.

    Only ``tools`` is echoed: the rest are part of the input, which the client already has.
    """
    for i, tool in enumerate(req.tools or ()):
        yield f"tools[{i}]", tool, True
    for i, item in enumerate(req.input if isinstance(req.input, list) else ()):
        if isinstance(item, w.AdditionalTools | w.ToolSearchOutput):
            for j, tool in enumerate(item.tools):
                yield f"input[{i}].tools[{j}]", tool, False


def plan_tools(req: CreateResponse, *, strict: bool) -> ToolPlan:
    """Sort the turn's tools; raises a 400 for a built-in tool when ``strict``."""
    plan = ToolPlan()
    offered: dict[tuple[str | None, str], dict[str, Any]] = {}
    for where, tool, echoed in _turn_tools(req):
        if isinstance(tool, BuiltinTool) or (isinstance(tool, ToolSearchTool) and tool.execution != "client") \
                or (isinstance(tool, ShellTool) and not tool.client_run):  # fmt: skip
            if strict:
                raise Unsupported(f"Tool type '{tool.type}' is not supported by this server.", param=f"{where}.type")
            if tool.type not in plan.omitted:
                plan.omitted.append(tool.type)
            continue
        if echoed:
            plan.echo.append(_echo(tool))
        # A client replaying its history can bring one tool twice (in `tools` and in the tool_search_output
        # that loaded it); upstreams may refuse a repeated function name, so the first definition wins.
        for offer in _offers(tool):
            offered.setdefault((offer["namespace"], offer["name"]), offer)
    plan.offered = list(offered.values())
    if plan.omitted:
        log.info("left out built-in tools without an executor: %s", ", ".join(plan.omitted))
    plan.choice = _choice(req, plan)
    return plan
