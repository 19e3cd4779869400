"""The ``mcp`` hosted tool: a remote MCP server's tools offered to the model, run by respd, gated by approvals.

Per request tool ``{"type": "mcp", "server_label", "server_url" | "connector_id", …}`` a response:

1. **lists the server's tools** before the model's first turn: an ``mcp_list_tools`` item (``mcpl_…``) with
   ``response.mcp_list_tools.in_progress`` then ``.completed`` (or ``.failed``, the item's ``error`` saying
   why; the model then answers without that server). A list already in the context (the chain, the
   conversation, or items sent back) is reused, not fetched again;
2. **offers** the allowed tools as functions ``<server_label>__<tool>`` (:mod:`.config`);
3. **runs a call** as an ``mcp_call`` item (``mcp_…``): ``response.mcp_call_arguments.delta``/``.done``,
   ``response.mcp_call.in_progress``, then ``.completed`` with ``output`` or ``.failed`` with ``error``. A server
   error, a timeout or an unreachable server is a failed call the model reads about, never a failed
   response;
4. **or asks first**: a call that ``require_approval`` guards becomes an ``mcp_approval_request`` item
   (``mcpr_…``), and the response ends there. A later request carrying ``{"type": "mcp_approval_response",
   "approval_request_id", "approve"}`` runs the call before the model's first turn (an ``mcp_call`` with
   ``approval_request_id``) or tells the model it was declined.

MCP calls may have effects, so a call in flight when its server died is not run again.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from respd.config import Settings
from respd.errors import InvalidRequest, Unsupported
from respd.ids import new_id
from respd.outbound import OutboundRefused
from respd.tools.base import Call, Item, Outcome, Progress, ToolContext, check_config
from respd.tools.mcp.config import McpToolConfig, function, function_name
from respd.tools.mcp.listing import ToolInfo, latest_lists, list_item
from respd.tools.mcp.servers import McpServerConfig

if TYPE_CHECKING:
    from respd.tools.mcp.client import Server, Sessions

LIST = "mcp_list_tools"  # the name of a listing among a run's calls (never a function the model sees)
_CONNECT_TIMEOUT_S = 10.0
_LIST_TIMEOUT_S = 30.0
_CALL_TIMEOUT_S = 60.0


class McpTool:
    """Remote MCP servers, through one pool of sessions."""

    types: ClassVar[frozenset[str]] = frozenset({"mcp"})
    item_type: ClassVar[str] = "mcp_call"
    item_types: ClassVar[frozenset[str]] = frozenset({"mcp_call", "mcp_list_tools", "mcp_approval_request",
                                                      "mcp_approval_response"})  # fmt: skip
    id_prefix: ClassVar[str] = "mcp"
    rerunnable: ClassVar[bool] = False
    interrupted_status: ClassVar[str] = "incomplete"
    staged: ClassVar[bool] = True  # lists before the first turn, gates calls, replays its items its own way
    timeout_s = 600.0  # the engine's bound; each call has its server's own (``_CALL_TIMEOUT_S``, timeout_s)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connectors = {c.connector_id: c for c in settings.mcp_servers}
        self._sessions: Sessions | None = None
        self._loading = asyncio.Lock()

    # -- the request's entry ------------------------------------------------------------------------------
    def configure(self, raw: Mapping[str, Any], param: str) -> dict[str, Any]:
        cfg = check_config(McpToolConfig, raw, param)
        if cfg.tunnel_id is not None:
            raise Unsupported("MCP tunnels (tunnel_id) are not supported by this server.", param=f"{param}.tunnel_id")
        if (cfg.server_url is None) == (cfg.connector_id is None):
            raise InvalidRequest("An MCP tool needs one of 'server_url' or 'connector_id'.", param=param)
        if cfg.connector_id is not None and cfg.connector_id not in self.connectors:
            raise InvalidRequest(f"Unknown connector_id '{cfg.connector_id}': this server configures "
                                 f"{sorted(self.connectors) or 'none'}.", param=f"{param}.connector_id")  # fmt: skip
        if cfg.server_url is not None:
            try:  # what can be known without DNS; a name is checked on its addresses when connecting
                self.settings.outbound.check_url(cfg.server_url)
            except OutboundRefused as exc:
                raise InvalidRequest(exc.message, param=f"{param}.server_url", code="invalid_value") from None
        return cfg.model_dump(exclude_none=True)

    def echo(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What the Response's ``tools`` shows: never the authorization or header values."""
        return McpToolConfig.model_validate(dict(config)).echo()

    def functions(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return []  # nothing until the server's tools are listed: see functions_in

    def functions_in(self, config: Mapping[str, Any], context: list[Item]) -> list[dict[str, Any]]:
        """The functions offered, given the context: the allowed tools of this server's newest listing."""
        cfg = McpToolConfig.model_validate(dict(config))
        tools = latest_lists(context).get(cfg.server_label) or []
        return [function(cfg, t) for t in tools if cfg.allows(t)]

    # -- steps before the first turn ---------------------------------------------------------------------
    def setup(self, config: Mapping[str, Any], context: list[Item], inputs: list[Item]) -> list[Call]:
        """This server's listing, unless the context has one; then the calls its client approved in ``inputs``."""
        cfg = McpToolConfig.model_validate(dict(config))
        calls: list[Call] = []
        if cfg.server_label not in latest_lists(context):
            calls.append(Call(new_id("mcpl"), LIST, {}, config))
        requests = {i["id"]: i for i in context if i["type"] == "mcp_approval_request"}
        done = {i.get("approval_request_id") for i in context if i["type"] == "mcp_call"}
        for item in inputs:
            request = requests.get(item.get("approval_request_id", "")) if item["type"] == "mcp_approval_response" \
                else None  # fmt: skip
            if request is None or not item["approve"] or request["server_label"] != cfg.server_label \
                    or request["id"] in done:  # fmt: skip
                continue
            args = {"approval_request_id": request["id"], "tool": request["name"], "arguments": request["arguments"]}
            calls.append(Call(new_id("mcp"), function_name(cfg.server_label, request["name"]), args, config))
        return calls

    def admit(self, call: Call, context: list[Item]) -> Call | Item:
        """The model's call as it runs (naming the server's tool), or the ``mcp_approval_request`` that stands
        in its place when ``require_approval`` guards it."""
        cfg = McpToolConfig.model_validate(dict(call.config))
        tool = self._tool_of(cfg, call.name, context)
        name = tool.name if tool is not None else call.name.removeprefix(f"{cfg.server_label}__")
        args = _arguments_text(call.arguments)
        if tool is not None and cfg.needs_approval(tool):
            return {"id": new_id("mcpr"), "type": "mcp_approval_request", "server_label": cfg.server_label,
                    "name": name, "arguments": args}  # fmt: skip
        return Call(call.item_id, call.name, {"tool": name, "arguments": args}, call.config)

    def forced(self, config: Mapping[str, Any], name: str | None, context: list[Item]) -> list[str] | None:
        """The functions ``tool_choice: {"type": "mcp", "server_label", "name"}`` forces: that tool's (any
        allowed tool's without ``name``), once the context holds a listing of the server."""
        cfg = McpToolConfig.model_validate(dict(config))
        tools = latest_lists(context).get(cfg.server_label)
        if tools is None:
            return None
        return [function_name(cfg.server_label, t.name) for t in tools if cfg.allows(t) and name in (None, t.name)]

    def owns(self, config: Mapping[str, Any], item: Item) -> bool:
        """An item belongs to the configuration of its server: labels are unique in a request."""
        return bool(config.get("server_label") == item.get("server_label"))

    # -- a call -----------------------------------------------------------------------------------------
    def start(self, call: Call) -> tuple[Item, list[Progress]]:
        label = call.config["server_label"]
        if call.name == LIST:
            return list_item(label, item_id=call.item_id), [("response.mcp_list_tools.in_progress", {})]
        name, args, approval = _called(call)
        item = {"id": call.item_id, "type": "mcp_call", "status": "in_progress", "server_label": label,
                "name": name, "arguments": "", "approval_request_id": approval}  # fmt: skip
        return item, [("response.mcp_call_arguments.delta", {"delta": args}),
                      ("response.mcp_call_arguments.done", {"arguments": args}),
                      ("response.mcp_call.in_progress", {})]  # fmt: skip

    async def run(self, call: Call, ctx: ToolContext) -> Outcome:
        from respd.tools.mcp.client import McpError

        cfg = McpToolConfig.model_validate(dict(call.config))
        sessions, server = await self._server(cfg)
        if call.name == LIST:
            try:
                tools = await sessions.list_tools(server, _LIST_TIMEOUT_S)
            except McpError as exc:
                return self._list_failed(call, exc.message)
            item = list_item(cfg.server_label, tools, item_id=call.item_id)
            return Outcome(item, "", [("response.mcp_list_tools.completed", {})])
        name, args, _ = _called(call)
        parsed = _parsed(args)
        if parsed is None:
            return self._call_failed(call, {"type": "mcp_protocol_error", "code": -32602,
                                            "message": "The arguments are not a JSON object."})  # fmt: skip
        try:
            result = await sessions.call_tool(server, name, parsed, self._timeout(cfg))
        except McpError as exc:
            return self._call_failed(call, exc.error)
        if result.is_error:
            return self._call_failed(call, {"type": "mcp_tool_execution_error", "content": result.content},
                                     text=result.output)  # fmt: skip
        item = {**self.start(call)[0], "status": "completed", "arguments": args, "output": result.output,
                "error": None}  # fmt: skip
        return Outcome(item, result.output, [("response.mcp_call.completed", {})])

    def failed(self, call: Call, message: str) -> Outcome:
        if call.name == LIST:
            return self._list_failed(call, message)
        return self._call_failed(call, {"type": "mcp_protocol_error", "code": -32001, "message": message})

    def _list_failed(self, call: Call, message: str) -> Outcome:
        item = list_item(call.config["server_label"], error=message, item_id=call.item_id)
        return Outcome(item, "", [("response.mcp_list_tools.failed", {})])

    def _call_failed(self, call: Call, error: dict[str, Any], text: str | None = None) -> Outcome:
        _, args, _ = _called(call)
        item = {**self.start(call)[0], "status": "failed", "arguments": args, "output": None, "error": error}
        said = text or str(error.get("message") or "")
        return Outcome(item, f"The MCP tool call failed: {said}", [("response.mcp_call.failed", {})])

    # -- how the model sees this tool's items ------------------------------------------------------------
    def replay(self, item: Item, output: str | None) -> list[Item]:
        """The function call/result items an MCP item stands for (``output``: what the store recorded)."""
        label = str(item.get("server_label", ""))
        kind = item["type"]
        if kind == "mcp_approval_request":
            return [_function_call(item["id"], function_name(label, item["name"]), item["arguments"])]
        if kind == "mcp_approval_response":
            if item["approve"]:
                return []  # the mcp_call that follows carries the result
            reason = f" Their reason: {item['reason']}" if item.get("reason") else ""
            return [_function_output(item["approval_request_id"], f"The user declined this call.{reason}")]
        if kind != "mcp_call":
            return []  # a listing: tools, not words
        text = output if output is not None else _item_output(item)
        if item.get("approval_request_id"):  # its function call is the approval request's
            return [_function_output(item["approval_request_id"], text)]
        return [_function_call(item["id"], function_name(label, item["name"]), item["arguments"]),
                _function_output(item["id"], text)]  # fmt: skip

    def recall(self, item: Item) -> tuple[str, Any, str]:
        return function_name(str(item.get("server_label", "")), str(item.get("name", ""))), item.get(
            "arguments", "{}"), _item_output(item)  # fmt: skip

    # -- sessions ---------------------------------------------------------------------------------------
    async def _server(self, cfg: McpToolConfig) -> tuple[Sessions, Server]:
        if self._sessions is None:  # once: later calls take no lock
            async with self._loading:
                if self._sessions is None:  # the SDK takes a second to import: not on the event loop
                    client = await asyncio.to_thread(importlib.import_module, "respd.tools.mcp.client")
                    self._sessions = client.Sessions()
        from respd.tools.mcp.client import Server

        connector = self.connectors.get(cfg.connector_id or "")
        if connector is not None:
            return self._sessions, Server(connector.url, connector.policy(self.settings.outbound),
                                          connector.headers(), connector.transport,  # type: ignore[arg-type]
                                          _CONNECT_TIMEOUT_S)  # fmt: skip
        headers = dict(cfg.headers or {})
        if cfg.authorization:
            headers["Authorization"] = f"Bearer {cfg.authorization}"
        assert cfg.server_url is not None
        return self._sessions, Server(cfg.server_url, self.settings.outbound, tuple(sorted(headers.items())),
                                      connect_timeout_s=_CONNECT_TIMEOUT_S)  # fmt: skip

    def _timeout(self, cfg: McpToolConfig) -> float:
        connector: McpServerConfig | None = self.connectors.get(cfg.connector_id or "")
        return connector.timeout_s if connector is not None else _CALL_TIMEOUT_S

    def _tool_of(self, cfg: McpToolConfig, fn: str, context: list[Item]) -> ToolInfo | None:
        for tool in latest_lists(context).get(cfg.server_label) or ():
            if function_name(cfg.server_label, tool.name) == fn:
                return tool
        return None

    async def aclose(self) -> None:
        if self._sessions is not None:
            await self._sessions.aclose()


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()


def _called(call: Call) -> tuple[str, str, str | None]:
    """(the server's tool name, the arguments as JSON text, the approval request it answers) of a call, as
    :meth:`McpTool.admit` and :meth:`McpTool.setup` made it."""
    args = call.arguments if isinstance(call.arguments, dict) else {}
    approval = args.get("approval_request_id")
    return str(args.get("tool", call.name)), str(args.get("arguments", "{}")), approval if approval else None


def _parsed(args: str) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(args or "{}")
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _item_output(item: Item) -> str:
    if item.get("output") is not None:
        return str(item["output"])
    error = item.get("error") or {}
    return f"The MCP tool call failed: {error.get('message') or error.get('content') or 'no output'}"


def _function_call(call_id: str, name: str, arguments: str) -> Item:
    return {"id": call_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": "completed"}  # fmt: skip


def _function_output(call_id: str, output: str) -> Item:
    return {"id": call_id + "_output", "type": "function_call_output", "call_id": call_id, "output": output,
            "status": "completed"}  # fmt: skip

