"""A run: one request turned into the stream of events that is the response.

``prepare`` checks the request and gathers its context (it may refuse; it stores nothing). ``Run.events``
drives the backend, turns its deltas into events with the :class:`Emitter`, and records each event: to
the store's event log (batched; the terminal event is committed before anyone sees it) and to followers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import orjson

from respd.backends.base import Admission, Admitting, ModelRequest
from respd.config import ModelRoute
from respd.engine import compaction, context, window
from respd.engine.checks import check_request
from respd.engine.context import REASONING
from respd.engine.emitter import Emitter
from respd.engine.fold import Event
from respd.engine.runtime import Runtime
from respd.engine.tools import ToolPlan, plan_tools
from respd.errors import InvalidRequest, UpstreamError
from respd.ids import new_id
from respd.store.writer import Batch
from respd.wire.items import CompactionTrigger
from respd.wire.request import CreateResponse
from respd.wire.response import new_response

log = logging.getLogger("respd.run")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class Run:
    """One response being generated."""

    def __init__(
        self,
        rt: Runtime,
        req: CreateResponse,
        *,
        tenant: str,
        route: ModelRoute,
        history: list[dict[str, Any]],
        inputs: list[dict[str, Any]],
        tools: ToolPlan,
    ) -> None:
        self.rt = rt
        self.req = req
        self.tenant = tenant
        self.route = route
        self.inputs = inputs
        self.history = history
        self.tools = tools
        self.context = history + inputs  # what the model sees (after compaction items and truncation)
        self.compact = False  # compact the context before answering (context_management, compaction_trigger)
        self.answer = True  # false for a compaction_trigger: the compaction is the whole response
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.store = req.store is not False
        response = new_response(req, response_id=self.id, model=route.name, created_at=self.created_at,
                                status="in_progress", tools=tools.echo)  # fmt: skip
        wants_sealed = "reasoning.encrypted_content" in (req.include or ())
        summarize = bool(req.reasoning and (req.reasoning.summary or req.reasoning.generate_summary))
        self.emitter = Emitter(
            response,
            max_calls=1 if req.parallel_tool_calls is False else req.max_tool_calls,
            summarize=summarize,
            seal=(lambda payload: rt.sealer.seal(tenant, REASONING, payload)) if wants_sealed else None,
        )
        self.final: dict[str, Any] | None = None
        self._stream = bool(req.stream)
        self._logged: list[dict[str, Any]] = []  # event rows not yet handed to the writer
        self._row_written = False
        self.snapshot_json = b""  # the JSON of the newest lifecycle snapshot (at the end: the final Response)
        self._admission: Admission | None = None  # this run's place at a backend with limited room

    # -- the model request ------------------------------------------------------------------------
    def model_request(self) -> ModelRequest:
        req = self.req
        return ModelRequest(
            model=self.route.target_model,
            instructions=req.instructions,
            items=self.context,
            tools=self.tools.offered,
            tool_choice=self.tools.choice,
            parallel_tool_calls=req.parallel_tool_calls,
            text_format=(req.text.format.model_dump(by_alias=True) if req.text and req.text.format else None),
            temperature=req.temperature,
            top_p=req.top_p,
            max_output_tokens=req.max_output_tokens,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            reasoning_effort=req.reasoning.effort if req.reasoning else None,
            top_logprobs=self._top_logprobs(),
            user=req.safety_identifier or req.user,
            stream=self._stream,
        )

    def _top_logprobs(self) -> int | None:
        if self.req.top_logprobs or "message.output_text.logprobs" in (self.req.include or ()):
            return self.req.top_logprobs or 0
        return None

    # -- recording --------------------------------------------------------------------------------
    def _response_row(self, body: dict[str, Any], body_json: bytes | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "tenant": self.tenant, "status": body["status"], "model": self.route.name,
            "created_at": self.created_at, "updated_at": int(time.time()),
            "previous_response_id": self.req.previous_response_id, "background": bool(self.req.background),
            "owner": None, "body": (body_json or orjson.dumps(body)).decode(),
        }  # fmt: skip

    def _item_rows(self, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"response_id": self.id, "kind": kind, "position": i, "tenant": self.tenant,
             "item_id": item.get("id") or "", "body": _dumps(item)}
            for i, item in enumerate(items)
        ]  # fmt: skip

    def _record(self, ev: Event) -> bytes:
        if "response" in ev:
            # A lifecycle event is mostly its snapshot: serialize that once, and keep the last one, which
            # is the stored row's body and the non-streamed answer.
            self.snapshot_json = orjson.dumps(ev["response"])
            head = {k: v for k, v in ev.items() if k != "response"}
            data = orjson.dumps(head)[:-1] + b',"response":' + self.snapshot_json + b"}"
        else:
            data = orjson.dumps(ev)
        if self.store:
            self._logged.append({"response_id": self.id, "seq": ev["sequence_number"], "body": data})
            self.rt.hub.publish(self.id, ev["sequence_number"], data)
        return data

    def _flush_batch(self, final: dict[str, Any] | None) -> Batch:
        batch = Batch(events=self._logged)
        self._logged = []
        if not self._row_written:
            body = final or self.emitter.response
            batch.responses.append(self._response_row(body, self.snapshot_json))
            batch.items += self._item_rows("input", self.inputs)
            self._row_written = True
        elif final is not None:
            row = self._response_row(final, self.snapshot_json)
            batch.updates.append({k: row[k] for k in ("id", "status", "updated_at", "body")})
        if final is not None:
            batch.items += self._item_rows("output", final["output"])
        return batch

    def _submit(self) -> None:
        """Hand recorded events to the writer without waiting (streaming)."""
        if self.store and self._logged:
            self.rt.store.writer.submit(self._flush_batch(None))

    async def _commit_final(self) -> None:
        if self.store:
            await self.rt.store.writer.commit(self._flush_batch(self.final))

    # -- driving ----------------------------------------------------------------------------------
    async def events(self) -> AsyncGenerator[list[tuple[Event, bytes]], None]:
        """The response's events, in batches that arrived together, each event with its JSON.

        The last batch ends with the terminal event, which is durable before it is yielded.
        """
        em = self.emitter
        terminal: list[Event]
        try:
            yield self._record_all(em.start())
            if self.compact:
                yield self._record_all(em.compaction_started())
                yield self._record_all(await self._compact())
            if self.answer:
                async for got in self.rt.backend(self.route).generate(self.model_request()):
                    batch = [ev for delta in (got if isinstance(got, list) else (got,)) for ev in em.feed(delta)]
                    if batch:
                        yield self._record_all(batch)
            terminal = em.finish()
        except UpstreamError as exc:
            log.warning("response %s failed: %s", self.id, exc.message)
            terminal = em.fail(exc.message)
        except (asyncio.CancelledError, GeneratorExit):
            # The client left: cancelled while awaiting the model, or closed while paused at a yield.
            self._record_all(em.cancel())
            await self._end()
            raise
        except Exception:
            log.exception("response %s failed inside respd", self.id)
            terminal = em.fail("The server had an error while processing your request.")
        frames = [(ev, self._record(ev)) for ev in terminal]
        await self._end()
        yield frames

    async def _compact(self) -> list[Event]:
        """Summarize the context into the open compaction item; the model answers from the compacted one."""
        done = await compaction.compact(self.rt.backend(self.route), self.model_request())
        item_id, events = self.emitter.compaction_done(done.seal(self.rt.sealer, self.tenant), done.usage)
        self.context = done.context(item_id)
        return events

    def _record_all(self, events: list[Event]) -> list[tuple[Event, bytes]]:
        frames = [(ev, self._record(ev)) for ev in events]
        if self._stream:
            self._submit()
        return frames

    def admit(self) -> None:
        """Take this run's place at its backend (a local model's queue) or raise its 4xx, before any event."""
        backend = self.rt.backend(self.route)
        # hasattr, not isinstance: a runtime-checkable Protocol check costs more than the whole hook.
        if hasattr(backend, "admit"):
            self._admission = cast(Admitting, backend).admit(self.model_request())

    async def _end(self) -> None:
        if self._admission is not None:
            self._admission.release()
        self.final = self.emitter.response
        await self._commit_final()


async def gather(rt: Runtime, req: CreateResponse, tenant: str) -> Run:
    """The run ``req`` describes, with its whole context (compaction items opened); raises its 4xx if any."""
    assert req.model is not None
    route = rt.settings.model(req.model)
    tools = plan_tools(req, strict=rt.settings.strict_tools)
    hist = await context.history(rt.store, tenant, req)
    inputs = await context.input_items(rt.store, tenant, req)
    context.unseal_reasoning(rt.sealer, tenant, inputs)
    context.check_call_outputs(hist, inputs)
    run = Run(rt, req, tenant=tenant, route=route, history=hist, inputs=inputs, tools=tools)
    run.context = compaction.expand(rt.sealer, tenant, hist, inputs)
    return run


async def prepare(rt: Runtime, req: CreateResponse, tenant: str) -> Run:
    """Check ``req`` and gather its context; raises a 4xx :class:`RespdError` and stores nothing if it can't run."""
    check_request(req)
    run = await gather(rt, req, tenant)
    trigger = isinstance(req.input, list) and bool(req.input) and isinstance(req.input[-1], CompactionTrigger)
    if trigger and not run.context:
        raise InvalidRequest("There is nothing to compact: the context is empty.", param="input")
    backend = rt.backend(run.route)
    if trigger or req.context_management or backend.context_window() is not None:  # else nothing to decide
        fitted = await window.fit(backend, run.model_request(), truncation=req.truncation,
                                  context_management=req.context_management, compact=trigger)  # fmt: skip
        run.context, run.compact, run.answer = fitted.items, fitted.compact, not trigger
    run.admit()
    return run
