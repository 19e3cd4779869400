"""The tools of a request: what the model is offered, what is left out, and what the Response echoes.

A turn's tools are the request's ``tools`` plus those its input items bring (``additional_tools``, and the
tools a client-run ``tool_search`` loaded). Namespaces are flattened here into one list of function and
custom tools, each remembering its namespace; how a backend presents them to its model (a Chat Completions
upstream has neither namespaces nor custom tools) is the backend's business. A client-run tool search is
offered like a function named ``tool_search``. The client-executed built-ins (computer_use_preview,
local_shell, shell, apply_patch) are offered as functions too (:mod:`respd.wire.client_calls`). A built-in
tool (web_search, file_search, …) that a configured hosted tool serves (:mod:`respd.tools.registry`) is
offered as the functions that tool shows the model; the others (and a server-run tool_search) have no
executor here: they are left out of what the model sees and named in ``omitted``, or refused when ``strict``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from respd.errors import InvalidRequest, Unsupported
from respd.tools.base import HostedTool, checked, staged
from respd.tools.registry import Registry
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


@dataclass(frozen=True, slots=True)
class Binding:
    """A hosted tool as one request configured it."""

    tool: HostedTool
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Forcing:
    """A ``tool_choice`` naming a staged tool's configuration (an MCP server) and maybe one of its tools:
    which functions it forces is known once the server is listed (:meth:`ToolPlan.force`)."""

    binding: Binding
    name: str | None


@dataclass
class ToolPlan:
    """Tools for one run."""

    offered: list[dict[str, Any]] = field(default_factory=list)  # neutral tool dicts for the backend
    echo: list[dict[str, Any]] = field(default_factory=list)  # the Response's ``tools``
    omitted: list[str] = field(default_factory=list)  # built-in tool types nobody here can run
    choice: Any = None  # the tool_choice for the backend (a string or a neutral dict)
    hosted: dict[str, Binding] = field(default_factory=dict)  # function name → the hosted tool it calls
    staged: list[Binding] = field(default_factory=list)  # hosted tools with steps of their own (StagedTool)
    checks: list[tuple[Binding, str]] = field(default_factory=list)  # CheckedTools, with their parameter path

    async def check(self, tenant: str) -> None:
        """Each checked tool's check of its config against what ``tenant`` owns (raises the request's 4xx)."""
        for binding, where in self.checks:
            tool = checked(binding.tool)
            if tool is not None:
                await tool.check(binding.config, tenant, where)

    forcing: Forcing | None = None  # a tool_choice that forces a staged tool's functions, not yet known

    def force(self, names: list[str]) -> None:
        """Force what :attr:`forcing` names, now that its functions are known: the one tool it names, or any
        of its server's (``choice`` was ``required`` until now)."""
        if self.forcing is not None and self.forcing.name is not None:
            self.choice = {"type": "function", "name": names[0]}
        else:
            self.choice = {"type": "allowed_tools", "mode": "required", "names": names}

    def extend(self, binding: Binding, functions: list[dict[str, Any]]) -> bool:
        """Offer more functions of a hosted tool (a staged tool's, once its setup ran); whether any was new."""
        taken = {(t["namespace"], t["name"]) for t in self.offered}
        new = [f for f in functions if (None, f["name"]) not in taken]
        self.offered += new
        for f in new:
            self.hosted[f["name"]] = binding
        return bool(new)

    def turn(self, first: bool, hosted: bool) -> tuple[list[dict[str, Any]], Any]:
        """The tools and tool_choice of a model turn: the first as requested; later ones let the model answer
        (a forced or required choice is ``auto`` after the first turn); without ``hosted``, hosted tools
        are no longer offered (``max_tool_calls`` reached)."""
        choice = self.choice if first else "auto" if self.forcing is not None else _relaxed(self.choice)
        if hosted or not self.hosted:
            return self.offered, choice
        offered = [t for t in self.offered if not (t["namespace"] is None and t["name"] in self.hosted)]
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            choice = {**choice, "names": [n for n in choice["names"] if n not in self.hosted]}
        elif isinstance(choice, dict) and choice.get("name") in self.hosted:
            choice = "auto"
        return offered, (choice if offered else None)


def _relaxed(choice: Any) -> Any:
    if choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function"):
        return "auto"
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return {**choice, "mode": "auto"}
    return choice


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
        if choice.type == "mcp":
            plan.forcing = _mcp_forcing(choice, plan)
            return "required"  # a server's functions are known once it is listed (then ToolPlan.force)
        name = _hosted_function(plan, choice.type)
        return {"type": "function", "name": name if name is not None else _client_tool_name(choice.type, plan)}
    if isinstance(choice, ToolChoiceFunction | ToolChoiceCustom):
        wanted = [choice.name]
    else:
        wanted = [_allowed_name(t, plan) for t in choice.tools if t.get("type") in _NAMED]
        wanted += [n for t in choice.tools if (n := _hosted_function(plan, str(t.get("type")))) is not None]
    for name in wanted:
        if name not in names:
            raise InvalidRequest(f"Tool choice '{name}' not found in 'tools' parameter.", param="tool_choice")
    if isinstance(choice, ToolChoiceAllowed):
        return {"type": "allowed_tools", "mode": choice.mode, "names": wanted}
    return {"type": choice.type, "name": choice.name}


def _mcp_forcing(choice: ToolChoiceBuiltin, plan: ToolPlan) -> Forcing:
    """``{"type": "mcp", "server_label", "name"?}``: the MCP tool of that label, and the tool it names."""
    extra = choice.model_extra or {}
    label, name = extra.get("server_label"), extra.get("name")
    if not isinstance(label, str):
        raise InvalidRequest("Missing required parameter: 'tool_choice.server_label'.",
                             param="tool_choice.server_label", code="missing_required_parameter")  # fmt: skip
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("Invalid type for 'tool_choice.name': expected a string.", param="tool_choice.name",
                             code="invalid_type")  # fmt: skip
    binding = next((b for b in plan.staged if "mcp" in b.tool.types and b.config.get("server_label") == label), None)
    if binding is None:
        raise InvalidRequest(f"Tool choice 'mcp' names server_label '{label}', which no MCP tool in 'tools' has.",
                             param="tool_choice.server_label")  # fmt: skip
    return Forcing(binding, name)


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


def _hosted_function(plan: ToolPlan, tool_type: str) -> str | None:
    """The (first) function of the hosted tool serving ``tool_type`` in this request."""
    for name, binding in plan.hosted.items():
        if tool_type in binding.tool.types and binding.config.get("type") == tool_type:
            return name
    for name, binding in plan.hosted.items():
        if tool_type in binding.tool.types:
            return name
    return None


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


def _add_hosted(plan: ToolPlan, offered: dict[tuple[str | None, str], dict[str, Any]], tool: HostedTool,
                raw: dict[str, Any], where: str, echoed: bool) -> None:  # fmt: skip
    binding = Binding(tool, tool.configure(raw, where))
    stool = staged(tool)
    if stool is not None:
        _check_label(plan, binding, where)
        plan.staged.append(binding)
    if checked(tool) is not None:
        plan.checks.append((binding, where))
    if echoed:  # a staged tool may keep secrets in its config: it shows less
        plan.echo.append(stool.echo(binding.config) if stool is not None else binding.config)
    for offer in tool.functions(binding.config):
        name = offer["name"]
        if (None, name) in offered and name not in plan.hosted:
            raise _name_taken(name, where)
        if offered.setdefault((None, name), offer) is offer:  # the same tool twice: the first one's config wins
            plan.hosted[name] = binding


def _check_label(plan: ToolPlan, binding: Binding, where: str) -> None:
    """Two MCP tools may not share a ``server_label``: it names the server in items, approvals and functions
    (the real API's 400 on ``tools[i].server_label``)."""
    label = binding.config.get("server_label")
    if label is not None and any(b.config.get("server_label") == label for b in plan.staged):
        raise InvalidRequest(f"Duplicate server_label '{label}' in tools: each MCP tool needs a label of its own.",
                             param=f"{where}.server_label")  # fmt: skip


def _name_taken(name: str, where: str) -> InvalidRequest:
    return InvalidRequest(f"Tool name '{name}' is used by a function and by a built-in tool of this request; "
                          "rename the function.", param=where)  # fmt: skip


def plan_tools(req: CreateResponse, *, strict: bool, registry: Registry | None = None) -> ToolPlan:
    """Sort the turn's tools; raises a 400 for a built-in tool nobody here runs when ``strict``."""
    plan = ToolPlan()
    offered: dict[tuple[str | None, str], dict[str, Any]] = {}
    for where, tool, echoed in _turn_tools(req):
        hosted = registry.tool(tool.type) if registry is not None and isinstance(tool, BuiltinTool) else None
        if hosted is not None:
            _add_hosted(plan, offered, hosted, tool.model_dump(), where, echoed)
            continue
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
            if offer["namespace"] is None and offer["name"] in plan.hosted:
                raise _name_taken(offer["name"], where)
            offered.setdefault((offer["namespace"], offer["name"]), offer)
    plan.offered = list(offered.values())
    if plan.omitted:
        log.info("left out built-in tools without an executor: %s", ", ".join(plan.omitted))
    plan.choice = _choice(req, plan)
    return plan
