"""A run: one request turned into the stream of events that is the response.

:func:`respd.engine.prepare.prepare` makes a run from a request (it may refuse; it stores nothing).
``Run.events`` drives the backend and turns its deltas into events with the :class:`Emitter`; each event goes
out through the :class:`Recorder` (the event log, batched, with the terminal event committed before anyone
sees it, and followers). The model request of a turn comes from the :class:`RequestBuilder`, the run's place
at a backend with limited room from :class:`Place`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

from respd.backends.base import ModelRequest
from respd.config import ModelRoute
from respd.engine import compaction, window
from respd.engine.admission import Place
from respd.engine.context import REASONING
from respd.engine.durability import end_fenced, end_unstored
from respd.engine.emitter import Emitter
from respd.engine.fold import Event, Response
from respd.engine.hosted import NOT_RERUN, Hosted, Numbered
from respd.engine.model_request import RequestBuilder
from respd.engine.recorder import Frame, Recorder
from respd.engine.resume import CLIENT_CALLS, Logged, Point, ends_loop, resume_point
from respd.engine.runtime import Runtime
from respd.engine.tools import Binding, Forcing, ToolPlan
from respd.errors import ContextTooLong, InvalidRequest, UpstreamError
from respd.ids import new_id
from respd.store import conversations, hosted_calls
from respd.store.batch import Batch, Op, ResponseHead
from respd.store.writer import Fenced
from respd.tools.base import Call, Outcome
from respd.webhooks import events as webhooks
from respd.wire.request import CreateResponse
from respd.wire.response import new_response

log = logging.getLogger("respd.run")

# A response that ran to its end adds its input and output to its conversation; one that failed or was
# cancelled adds nothing, so a retried turn does not leave the user's message in it twice.
JOINS_CONVERSATION = frozenset({"completed", "incomplete"})
# Steps of hosted calls one response may take when max_tool_calls does not bound them: a model that keeps
# calling (small local models do) must answer after this many.
MAX_STEPS = 16


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
        logged: Logged | None = None,
    ) -> None:
        self.rt = rt
        self.req = req
        self.tenant = tenant
        self.route = route
        self.inputs = inputs
        self.history = history
        self.tools = tools
        self.id = logged.response["id"] if logged else new_id("resp")
        created_at = logged.response["created_at"] if logged else int(time.time())
        self.context = history + inputs  # what the model sees (after compaction items and truncation)
        self.compact = False  # compact the context before answering (context_management, compaction_trigger)
        self.answer = True  # false for a compaction_trigger: the compaction is the whole response
        self.store = req.store is not False
        self.background = bool(req.background)
        self.logged = logged  # the log this run goes on from (a background job), if any
        response = logged.response if logged else new_response(
            req, response_id=self.id, model=route.name, created_at=created_at, status="in_progress",
            tools=tools.echo)  # fmt: skip
        wants_sealed = "reasoning.encrypted_content" in (req.include or ())
        summarize = bool(req.reasoning and (req.reasoning.summary or req.reasoning.generate_summary))
        self.emitter = Emitter(
            response,
            max_calls=1 if req.parallel_tool_calls is False else req.max_tool_calls,
            summarize=summarize,
            seal=(lambda payload: rt.sealer.seal(tenant, REASONING, payload)) if wants_sealed else None,
        )
        # A background run logs its events as they come (a follower may be on another replica), and reads
        # the model as a stream so that a run taken over can go on from what was logged.
        stream = bool(req.stream) or self.background
        self.builder = RequestBuilder(req, route, stream=stream)
        head = ResponseHead(id=self.id, tenant=tenant, model=route.name, created_at=created_at,
                            previous_response_id=req.previous_response_id, background=self.background,
                            owner=None if self.background else rt.replica_id)  # fmt: skip
        self.recorder = Recorder(rt, head, inputs, store=self.store, stream=stream, row_written=logged is not None)
        self.hosted = Hosted(rt.tools, tools, settings=rt.settings, tenant=tenant, response_id=self.id,
                             include=req.include or (), max_calls=req.max_tool_calls, max_steps=MAX_STEPS,
                             metrics=rt.metrics)  # fmt: skip
        if tools.hosted:
            self.emitter.annotate = self.hosted.citations.annotations
        self._indices: dict[str, int] = {}  # hosted call item id → its output index, while it runs
        self._offer_grew = False  # staged tools offered more functions than the request admitted with
        self.final: Response | None = None
        self.detached = False  # set to stop without ending the response (its job goes back to the queue)
        self.taken_over = False  # another replica took the response over: this run stopped (end_fenced)
        self.place: Place | None = None  # this run's place at a backend with limited room
        self.generate = True  # False: a warm-up (WebSocket mode) that records its context and asks no model
        self.started = time.monotonic()

    @property
    def snapshot_json(self) -> bytes:
        """The JSON of the newest lifecycle snapshot: at the end, the final Response."""
        return self.recorder.snapshot_json

    def model_request(self, prefill: str | None = None) -> ModelRequest:
        """The model request for the run's context as it stands, with the request's tools."""
        return self.builder.build(self.context, self.tools.offered, self.tools.choice, prefill)

    # -- admission --------------------------------------------------------------------------------
    def admit(self) -> None:
        """Take this run's place at its backend (a local model's queue) or raise its 4xx, before any event."""
        self.place = Place.take(self.rt.backend(self.route), self.model_request())

    def release_admission(self) -> None:
        if self.place is not None:
            self.place.release()
            self.place = None

    def accept_background(self, request_body: bytes, owner: str | None) -> Batch:
        """The rows that accept this run as a background job, for one transaction (see :meth:`Recorder.accept`).

        A job this replica starts at once (``owner``) is ``in_progress`` from its acceptance on, as the answer
        to its create says: ``queued`` is only for a job that waits."""
        events = self.emitter.queue()
        if owner is not None:
            events += self.emitter.resume(self.emitter.seq, [])
        return self.recorder.accept(events, request_body, owner)

    # -- driving ----------------------------------------------------------------------------------
    async def events(self) -> AsyncGenerator[list[Frame], None]:
        """The response's events, in batches that arrived together, each event with its JSON.

        The last batch ends with the terminal event, which is durable before it is yielded.
        """
        em = self.emitter
        rec = self.recorder
        terminal: list[Event]
        rec.open()
        self.rt.running += 1
        try:
            try:
                yield await rec.record_checked(self._opening())
                point = self._resume_point()
                if self.compact:
                    yield await rec.record_checked(em.compaction_started())
                    yield await rec.record_checked(await self._compact())
                if self.answer:
                    async for batch in self._answer(point):
                        durable = isinstance(batch, Durable)
                        yield await (rec.record_durably(batch) if durable else rec.record_checked(batch))
                terminal = em.finish()
            except ContextTooLong as exc:
                log.warning("response %s: the upstream refused its context as too long: %s", self.id, exc.message)
                refused = window.too_long()
                if not self.recorder.stream and not em.response["output"]:
                    # nothing was sent or written yet (a non-streamed request): answer as the API does, a 400
                    self.release_admission()
                    self.recorder.abandon()
                    raise refused from exc
                terminal = em.fail(refused.message, code="context_length_exceeded")
            except UpstreamError as exc:
                log.warning("response %s failed: %s", self.id, exc.message)
                terminal = em.fail(exc.message, exc.code or "server_error")
            except (asyncio.CancelledError, GeneratorExit):
                if self.detached:  # handed back to the queue: log what was made, leave the response running
                    self.release_admission()
                    await rec.detach()
                    raise
                # The client left or the response was cancelled: stopped while awaiting the model or a tool,
                # or closed while paused at a yield.
                await self._end([(ev, rec.record(ev)) for ev in em.cancel()])
                raise
            except Fenced as exc:  # taken over by another replica: stop quietly, writing nothing more
                yield end_fenced(self, exc)
                return
            except Exception:
                log.exception("response %s failed inside respd", self.id)
                terminal = em.fail("The server had an error while processing your request.")
            # followers see the terminal events only once they are durable, like the client of this run
            yield await self._end([(ev, rec.record(ev)) for ev in terminal])
        finally:
            self.rt.running -= 1

    def _opening(self) -> list[Event]:
        """The first events: ``created``/``in_progress``, or ``in_progress`` going on from a logged state."""
        if self.logged is not None:
            return self.emitter.resume(self.logged.next_seq, self.logged.open_indices)
        if self.emitter.seq:  # accepted as a background job by this process, now running
            started = self.emitter.response["status"] == "in_progress"  # when accepted, if it started at once
            return [] if started else self.emitter.resume(self.emitter.seq, [])
        return self.emitter.start()

    def _resume_point(self) -> Point | None:
        """Where a run taken over goes on (None: a fresh run); refuses (as a failed response) if it can't."""
        if self.logged is None or not self.logged.has_output:
            return None
        point = resume_point(self.logged, self.hosted.is_hosted)
        if point is None or (point.prefill is not None and not self.rt.backend(self.route).abilities.prefill):
            raise UpstreamError(_NOT_CONTINUABLE)
        output = self.emitter.response["output"]
        self.hosted.made = sum(1 for item in output if self.hosted.is_hosted(item))
        self.context = self.context + self.hosted.recall(output[: point.done])
        return point

    async def _answer(self, point: Point | None) -> AsyncGenerator[list[Event], None]:
        """The model's turns and the hosted calls between them, until the model answers, calls a client's
        tool, or may call no more (see docs/HOSTED_TOOLS.md)."""
        em = self.emitter
        if self.hosted.plan.hosted:
            await self.hosted.prepare(self.req.previous_response_id)
        first = point is None or not em.response["output"]
        prefill = point.prefill if point is not None else None
        if point is not None and point.in_flight:
            rerun, stopped = self._taken_over(point.in_flight)
            if stopped:
                yield self._close_calls([(call, b.tool.failed(call, NOT_RERUN), []) for b, call in stopped])
            async for batch in self._finish_calls(rerun):
                yield batch
            self.context = self.context + self.hosted.recall(em.response["output"][point.done :])
        if point is not None and ends_loop(em.response["output"]):
            return  # taken over after the step that asked the client (an approval, its calls): nothing is left
        if point is None:  # a fresh run: staged tools' steps come first (a run taken over has them logged)
            async for batch in self._setup():
                yield batch
        self._offer_grew = self.hosted.offer(self._seen())
        self._force()
        while True:
            start = len(em.response["output"])
            em.next_turn(self.hosted.names(), self._turn_calls())
            async for batch in self._fitted_turn(self._turn_request(first, prefill)):
                yield batch
            if em.finish_reason in ("length", "content_filter"):
                return  # cut short: its calls may be partial (the response ends incomplete)
            requests, closing = em.take_hosted()
            if not requests:
                return
            if closing:
                yield closing
            calls, asked = self.hosted.admit(self.hosted.bind(requests), self._seen())
            if asked:  # durable before anyone sees it: a client answers it by id, whatever replica ends this
                yield Durable(self._ask(asked))
            async for batch in self._start_calls(calls):
                yield batch
            async for batch in self._finish_calls(calls):
                yield batch
            made = em.response["output"][start:]
            if asked or any(item["type"] in CLIENT_CALLS for item in made):
                return  # the response ends with the client's calls (or approvals), as without hosted tools
            self.context = self.context + self.hosted.recall(made)
            first, prefill = False, None
            self.hosted.steps += 1

    def check_choice(self) -> None:
        """A ``tool_choice`` naming an MCP server's tool that the context's listing of it lacks: a 400 before
        anything runs (without a listing yet, the run finds out: :meth:`_force`)."""
        forcing = self.tools.forcing
        if forcing is not None and self.hosted.forced(self.history + self.inputs) == []:
            param = "tool_choice.name" if forcing.name is not None else "tool_choice.server_label"
            raise InvalidRequest(_unmet(forcing, listed=True), param=param)

    def _force(self) -> None:
        """Once staged tools are listed, the functions a ``tool_choice`` naming one forces; a tool the server
        does not list (or a server that could not be listed) fails the response: the model cannot comply."""
        forcing = self.tools.forcing
        if forcing is None:
            return
        names = self.hosted.forced(self._seen())
        if not names:
            raise ChoiceUnmet(_unmet(forcing, listed=names is not None))
        self.tools.force(names)
        self._offer_grew = True  # the request admitted forced "required": build it again

    def _turn_calls(self) -> int | None:
        """How many calls the model may make in its next turn (``parallel_tool_calls``, ``max_tool_calls``)."""
        if self.req.parallel_tool_calls is False:
            return 1
        if self.hosted.max_calls is None:
            return None
        return max(self.hosted.max_calls - self.hosted.made, 0)  # at 0 further calls are dropped

    def _turn_request(self, first: bool, prefill: str | None) -> ModelRequest:
        place = self.place
        if first and place is not None and place.request is not None and prefill is None and not self.compact \
                and not self._offer_grew:  # fmt: skip
            return place.request  # as admitted, not built again
        tools, choice = self.tools.turn(first, self.hosted.may_call())
        return self.builder.build(self.context, tools, choice, prefill)

    async def _fitted_turn(self, request: ModelRequest) -> AsyncGenerator[list[Event], None]:
        """A model turn. With truncation "auto", a turn the upstream refused as too long for its context window
        before it made anything is tried once more without the context's oldest units (window.refit)."""
        made = False
        try:
            async for batch in self._turn(request):
                made = True
                yield batch
        except ContextTooLong as exc:
            if made or self.req.truncation != "auto" or request.prefill is not None:
                raise
            shorter = await window.refit(self.rt.backend(self.route), request, exc.window)
            if shorter is None:
                raise
            log.info("response %s: the upstream's window is smaller; dropped %d oldest items", self.id,
                     len(request.items) - len(shorter))  # fmt: skip
            self.context = shorter  # the turn's items are the context (later turns add to it)
            async for batch in self._turn(replace(request, items=shorter)):
                yield batch

    async def _turn(self, request: ModelRequest) -> AsyncGenerator[list[Event], None]:
        """One model turn's events, in the batches its deltas came in."""
        if not self.generate:
            return
        backend = self.rt.backend(self.route)
        place = self.place
        deltas = place.generate(backend, request) if place is not None else backend.generate(request)
        em = self.emitter
        try:
            async for got in deltas:
                batch = [ev for delta in (got if isinstance(got, list) else (got,)) for ev in em.feed(delta)]
                if batch:
                    yield batch
        finally:
            # closed at a yield (the client left): stop the model now, not when it is collected
            await deltas.aclose()

    # -- hosted calls -----------------------------------------------------------------------------
    def _seen(self) -> list[Event]:
        """The context's items as the client sees them (hosted items not yet turned into calls), this
        response's output included: what staged tools read (listings, approval requests)."""
        output: list[Event] = self.emitter.response["output"]
        return self.history + self.inputs + output

    async def _setup(self) -> AsyncGenerator[list[Event], None]:
        """Staged tools' calls before the model's first turn (MCP: listing servers, running approved calls)."""
        calls = self.hosted.setup(self.history + self.inputs, self.inputs)
        if not calls:
            return
        start = len(self.emitter.response["output"])
        async for batch in self._start_calls(calls):
            yield batch
        async for batch in self._finish_calls(calls):
            yield batch
        self.context = self.context + self.hosted.recall(self.emitter.response["output"][start:])

    def _ask(self, asked: list[dict[str, Any]]) -> list[Event]:
        """Items asking the client's approval of calls (each added and done at once); the response ends
        after this step."""
        events: list[Event] = []
        for item in asked:
            index, opened = self.emitter.open_item(item, [], "completed")
            events += opened + self.emitter.close_item(index, item, [])
        return events

    async def _start_calls(self, calls: list[tuple[Binding, Call]]) -> AsyncGenerator[list[Event], None]:
        """Each call's item added with its tool's opening events; durable before the calls run, so that a
        run taken over knows which calls were in flight."""
        if not calls:
            return
        events: list[Event] = []
        for binding, call in calls:
            item, progress = binding.tool.start(call)
            index, opened = self.emitter.open_item(item, progress, binding.tool.interrupted_status)
            self._indices[call.item_id] = index
            self.hosted.remember(call, None)
            events += opened
        self.recorder.attach(hosted_calls.Started(self.id, self.tenant, [(c.item_id, c.name, c.arguments)
                                                                        for _, c in calls]))  # fmt: skip
        yield events
        await self.recorder.checkpoint()

    async def _finish_calls(self, calls: list[tuple[Binding, Call]]) -> AsyncGenerator[list[Event], None]:
        """Run the calls, then close each item with its outcome; durable before the next model turn."""
        if not calls:
            return
        outcomes = await self.hosted.run(calls, parallel=self.req.parallel_tool_calls is not False)
        ended = [(call, outcome, cited) for (_, call), (outcome, cited) in zip(calls, outcomes, strict=True)]
        yield self._close_calls(ended)
        await self.recorder.checkpoint()

    def _close_calls(self, ended: list[tuple[Call, Outcome, Numbered]]) -> list[Event]:
        """Each call's closing events and item as done; its row gets what the model reads back."""
        events: list[Event] = []
        for call, outcome, _ in ended:
            events += self.emitter.close_item(self._indices.pop(call.item_id), outcome.item, outcome.events)
            self.hosted.remember(call, outcome.output)
        self.recorder.attach(hosted_calls.Finished([(c.item_id, o.output, cited) for c, o, cited in ended]))
        return events

    def _taken_over(self, indices: list[int]) -> tuple[list[tuple[Binding, Call]], list[tuple[Binding, Call]]]:
        """The calls in flight when the run's replica stopped: those to run again (their tool has no side
        effects), and those ended as stopped (the model is told so)."""
        rerun: list[tuple[Binding, Call]] = []
        stopped: list[tuple[Binding, Call]] = []
        output = self.emitter.response["output"]
        for index in indices:
            item = output[index]
            tool = self.hosted.registry.of_item(item)
            binding = self.hosted.binding_of(tool, item) if tool is not None else None
            known = self.hosted.known.get(item["id"])
            if binding is None or known is None:
                raise UpstreamError(_NOT_CONTINUABLE)  # the request no longer has the tool, or no record of it
            call = Call(item["id"], known.name, known.arguments, binding.config)
            self._indices[call.item_id] = index
            self.emitter.reopen_item(index, binding.tool.interrupted_status)
            (rerun if binding.tool.rerunnable else stopped).append((binding, call))
        return rerun, stopped

    async def _compact(self) -> list[Event]:
        """Summarize the context into the open compaction item; the model answers from the compacted one."""
        done = await compaction.compact(self.rt.backend(self.route), self.model_request())
        item_id, events = self.emitter.compaction_done(done.seal(self.rt.sealer, self.tenant), done.usage)
        self.context = done.context(item_id)
        return events

    async def _end(self, unpublished: list[Frame]) -> list[Frame]:
        """Store the end, then return what to send: the end, or what replaces it if it could not be stored."""
        self.release_admission()
        self.final = self.emitter.response
        ops: list[Op] = []  # what shares the terminal commit: no crash can end the response without them
        append = self._conversation_append()
        if append is not None:
            ops.append(append)
        announce = webhooks.deliveries_op(self.rt.settings.ops, self.tenant, self.id, self.final["status"])
        if announce is not None:
            ops.append(announce)  # its webhook deliveries; this replica's sender is woken by rt.ended
        try:
            await self.recorder.end(self.final, unpublished, ops)
        except Fenced as exc:
            return end_fenced(self, exc)
        except Exception as exc:
            return await end_unstored(self, unpublished, exc)
        self.rt.ended(self.tenant, self.route.name, self.final, time.monotonic() - self.started)
        return unpublished

    def _conversation_append(self) -> conversations.Append | None:
        """This turn for its conversation, if it joins one; ``store: false`` does not keep it out (nor does
        it in the real API): it is about the response object, and the conversation is stored by definition.
        The append shares the terminal commit: no crash can end the response without it."""
        conv = self.req.conversation_id
        if conv is None or self.final is None or self.final["status"] not in JOINS_CONVERSATION:
            return None
        return conversations.Append(self.tenant, conv, self.inputs + self.final["output"])


class ChoiceUnmet(UpstreamError):
    """The ``tool_choice`` names an MCP tool its server turned out not to list: the response fails."""

    default_code = "invalid_prompt"


def _unmet(forcing: Forcing, *, listed: bool) -> str:
    label = forcing.binding.config.get("server_label")
    if not listed:
        return f"Tool choice 'mcp' forces a tool of server '{label}', whose tools could not be listed."
    if forcing.name is None:
        return f"Tool choice 'mcp' forces a tool of server '{label}', which lists no allowed tool."
    return f"Tool choice 'mcp' names tool '{forcing.name}', which server '{label}' does not list (or allow)."


class Durable(list[Event]):
    """A batch of events committed before it is published (see :meth:`Recorder.record_durably`)."""


_NOT_CONTINUABLE = (
    "The server generating this response stopped, and this model cannot continue the partial output it had produced."
)
