"""One run's hosted tools: what the model may still call, running the calls, and what the model reads back.

The engine sees a hosted call three ways. The model made it as a call of a plain function (the tool's
:meth:`~respd.tools.base.HostedTool.functions`). The client sees the tool's own output item
(``web_search_call``). A later model turn, a run taken over after a crash, and a response continuing the
chain see it again as the function call and its output: :meth:`Hosted.recall` turns each hosted item of a
context back into that pair, from the row the store keeps for it (:mod:`respd.store.hosted_calls`), or,
for an item respd holds no record of (sent back by value), from what the tool makes of the item itself.
So backends only ever see ``function_call``/``function_call_output`` items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from respd.config import Settings
from respd.engine.emitter import HostedRequest
from respd.engine.tools import Binding, ToolPlan
from respd.ids import new_id
from respd.store import hosted_calls
from respd.store.store import Store
from respd.telemetry import tracing
from respd.telemetry.metrics import Metrics
from respd.tools.base import Call, HostedTool, Outcome, Source, StagedTool, ToolContext, ToolError, staged
from respd.tools.citations import Citations
from respd.tools.registry import Registry

log = logging.getLogger("respd.hosted")

Numbered = list[tuple[int, dict[str, Any]]]  # a call's cited sources: (number, source as JSON)
UNPREPARED = "_unprepared"  # in a prepared config: why the tool could not be set up for this response
NOT_RERUN = ("The server running this call stopped before it finished, and the call was not run again "
             "because it may have had effects.")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recalled:
    """What the model called and read back, for a call the store holds."""

    name: str
    arguments: Any
    output: str | None  # None: the call had not finished


class Hosted:
    """The hosted side of one run."""

    def __init__(self, registry: Registry, plan: ToolPlan, *, settings: Settings, tenant: str, response_id: str,
                 include: Iterable[str], max_calls: int | None, max_steps: int,
                 metrics: Metrics | None = None) -> None:  # fmt: skip
        self.registry = registry
        self._metrics = metrics  # hosted tool calls by tool and outcome
        self.plan = plan
        self._settings = settings
        self._tenant = tenant
        self._response_id = response_id
        self._include = frozenset(include)
        self.max_calls = max_calls  # max_tool_calls: hosted calls the response may make
        self.made = 0  # hosted calls made so far
        self.steps = 0  # model turns that made hosted calls
        self.max_steps = max_steps
        self.citations = Citations()
        self.known: dict[str, Recalled] = {}  # item id → the stored call

    # -- what the model may call ------------------------------------------------------------------
    def may_call(self) -> bool:
        """Whether hosted tools are still offered (``max_tool_calls``, and the server's bound on steps, not
        reached)."""
        under = self.max_calls is None or self.made < self.max_calls
        return bool(self.plan.hosted) and under and self.steps < self.max_steps

    def names(self) -> frozenset[str]:
        """The functions whose calls are hosted calls (never streamed as function calls: once hosted tools
        are no longer offered, a call of one is dropped, as further calls past ``max_tool_calls`` are)."""
        return frozenset(self.plan.hosted)

    def bind(self, requests: Sequence[HostedRequest]) -> list[tuple[Binding, Call]]:
        """The calls the model made, each with its tool and a new item id."""
        out = []
        for request in requests:
            binding = self.plan.hosted[request.name]
            item_id = new_id(binding.tool.id_prefix)
            out.append((binding, Call(item_id, request.name, _arguments(request.arguments), binding.config)))
        self.made += len(out)
        return out

    # -- staged tools (MCP): steps before the first turn, calls that wait for approval -------------------
    def setup(self, context: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> list[tuple[Binding, Call]]:
        """The calls staged tools run before the model's first turn (listing a server, an approved call)."""
        return [(b, call) for b, tool in self._staged() for call in tool.setup(b.config, context, inputs)]

    def offer(self, context: list[dict[str, Any]]) -> bool:
        """Offer each staged tool's functions as the context now allows; whether the offer grew."""
        grew = False
        for b, tool in self._staged():
            grew |= self.plan.extend(b, tool.functions_in(b.config, context))
        return grew

    def forced(self, context: list[dict[str, Any]]) -> list[str] | None:
        """The functions the request's ``tool_choice`` forces of a staged tool, given the context (None: not
        known yet, or no such choice; empty: the server lists no tool that fits)."""
        forcing = self.plan.forcing
        stool = staged(forcing.binding.tool) if forcing is not None else None
        if forcing is None or stool is None:
            return None
        return stool.forced(forcing.binding.config, forcing.name, context)

    def _staged(self) -> list[tuple[Binding, StagedTool]]:
        return [(b, tool) for b in self.plan.staged if (tool := staged(b.tool)) is not None]

    def admit(self, calls: list[tuple[Binding, Call]], context: list[dict[str, Any]]
              ) -> tuple[list[tuple[Binding, Call]], list[dict[str, Any]]]:  # fmt: skip
        """The calls to run now, and the approval requests that stand in for calls needing approval."""
        run: list[tuple[Binding, Call]] = []
        asked: list[dict[str, Any]] = []
        for binding, call in calls:
            stool = staged(binding.tool)
            admitted = stool.admit(call, context) if stool is not None else call
            if isinstance(admitted, Call):
                run.append((binding, admitted))
            else:
                asked.append(admitted)
        return run, asked

    async def prepare(self, previous_response_id: str | None) -> None:
        """Each tool's set-up for this response (:meth:`HostedTool.prepare`), once, before the first model
        turn; its calls then get the prepared config. A tool that cannot be set up fails each of its calls."""
        ctx = ToolContext(self._settings, self._tenant, self._response_id, self._include, lambda _: 0,
                          previous_response_id)  # fmt: skip
        prepared: dict[int, Binding] = {}
        for name, binding in list(self.plan.hosted.items()):
            if id(binding) not in prepared:
                try:
                    config = await binding.tool.prepare(binding.config, ctx)
                except ToolError as exc:
                    config = {**binding.config, UNPREPARED: str(exc)}
                prepared[id(binding)] = Binding(binding.tool, config)
            self.plan.hosted[name] = prepared[id(binding)]

    def binding_of(self, tool: HostedTool, item: dict[str, Any]) -> Binding | None:
        """The request's configuration of ``tool`` that made ``item`` (a call in flight when its run was taken
        over). A staged tool offers nothing before its setup ran, and may be configured more than once (MCP
        servers): it says which of its configurations an item belongs to."""
        stool = staged(tool)
        if stool is not None:
            return next((b for b in self.plan.staged if b.tool is tool and stool.owns(b.config, item)), None)
        return next((b for b in self.plan.hosted.values() if b.tool is tool), None)

    # -- running ----------------------------------------------------------------------------------
    async def run(self, calls: Sequence[tuple[Binding, Call]], *, parallel: bool) -> list[tuple[Outcome, Numbered]]:
        """Run ``calls`` (at once when ``parallel``); a call that fails becomes its tool's failed outcome."""
        if parallel and len(calls) > 1:
            return list(await asyncio.gather(*(self._run_one(b, c) for b, c in calls)))
        return [await self._run_one(b, c) for b, c in calls]

    async def _run_one(self, binding: Binding, call: Call) -> tuple[Outcome, Numbered]:
        tool = binding.tool
        cited: Numbered = []

        def cite(source: Source) -> int:
            n = self.citations.add(source)
            cited.append((n, source.as_json()))
            return n

        ctx = ToolContext(self._settings, self._tenant, self._response_id, self._include, cite)
        if UNPREPARED in call.config:
            return tool.failed(call, str(call.config[UNPREPARED])), []
        name = tool.item_type.removesuffix("_call")  # web_search
        with tracing.tool_span(name, call.item_id) as span:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the call in a task of its own, one
                # more task and hand-off per hosted call (an MCP call's step is otherwise a few hops)
                async with asyncio.timeout(tool.timeout_s):
                    outcome = await tool.run(call, ctx)
            except ToolError as exc:
                outcome, cited = tool.failed(call, str(exc)), []
            except TimeoutError:
                outcome = tool.failed(call, f"The call took longer than {tool.timeout_s:g} seconds and was stopped.")
                cited = []
            except Exception:
                log.exception("hosted tool %s failed inside respd (response %s)", tool.item_type, self._response_id)
                outcome, cited = tool.failed(call, "The tool failed inside the server."), []
            status = str(outcome.item.get("status", "completed"))
            if span is not None and status != "completed":
                tracing.fail_span(span, status, outcome.output[:200])
        if self._metrics is not None:
            self._metrics.tool_calls.labels(name, status).inc()
        return outcome, cited

    # -- what the model reads back ----------------------------------------------------------------
    def is_hosted(self, item: dict[str, Any]) -> bool:
        return self.registry.of_item(item) is not None

    async def load(self, store: Store, items: Iterable[dict[str, Any]]) -> None:
        """Read the stored calls behind the hosted items of ``items`` (a context, a logged output)."""
        ids = [item["id"] for item in items if self.registry.of_item(item) is not None]
        if not ids:
            return
        for item_id, row in (await hosted_calls.read(store.engine, self._tenant, ids)).items():
            self.known[item_id] = Recalled(row.name, row.arguments, row.output)
            for n, source in row.sources:
                self.citations.put(n, Source.from_json(source))

    def remember(self, call: Call, output: str | None) -> None:
        self.known[call.item_id] = Recalled(call.name, call.arguments, output)

    def recall(self, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """``items`` as the model sees them: each hosted call item as a function call and its output."""
        out: list[dict[str, Any]] = []
        for item in items:
            tool = self.registry.of_item(item)
            if tool is None:
                out.append(item)
                continue
            known = self.known.get(item["id"])
            if (stool := staged(tool)) is not None:  # a staged tool's items stand for calls in its own way
                out += stool.replay(item, known.output if known is not None else None)
                continue
            if known is not None and known.output is not None:
                name, arguments, output = known.name, known.arguments, known.output
            else:
                name, arguments, output = tool.recall(item)
            out += call_pair(item["id"], name, arguments, output)
        return out


def call_pair(item_id: str, name: str, arguments: Any, output: str) -> list[dict[str, Any]]:
    """A hosted call as the neutral items a backend reads: the model's function call and its result."""
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return [
        {"id": item_id, "type": "function_call", "call_id": item_id, "name": name, "arguments": args,
         "status": "completed"},
        {"id": item_id + "_output", "type": "function_call_output", "call_id": item_id, "output": output,
         "status": "completed"},
    ]  # fmt: skip


def _arguments(raw: str) -> Any:
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return raw
