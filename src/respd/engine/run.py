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
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from respd.backends.base import ModelRequest
from respd.config import ModelRoute
from respd.engine import compaction
from respd.engine.admission import Place
from respd.engine.context import REASONING
from respd.engine.emitter import Emitter
from respd.engine.fold import Event, Response
from respd.engine.model_request import RequestBuilder
from respd.engine.recorder import Frame, Recorder
from respd.engine.resume import Logged
from respd.engine.runtime import Runtime
from respd.engine.tools import ToolPlan
from respd.errors import UpstreamError
from respd.ids import new_id
from respd.store import conversations
from respd.store.batch import Batch, ResponseHead
from respd.wire.request import CreateResponse
from respd.wire.response import new_response

log = logging.getLogger("respd.run")

# A response that ran to its end adds its input and output to its conversation; one that failed or was
# cancelled adds nothing, so a retried turn does not leave the user's message in it twice.
JOINS_CONVERSATION = frozenset({"completed", "incomplete"})


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
        self.final: Response | None = None
        self.detached = False  # set to stop without ending the response (its job goes back to the queue)
        self.place: Place | None = None  # this run's place at a backend with limited room
        self.generate = True  # False: a warm-up (WebSocket mode) that records its context and asks no model

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
        """The rows that accept this run as a background job, for one transaction (see :meth:`Recorder.accept`)."""
        return self.recorder.accept(self.emitter.queue(), request_body, owner)

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
                yield rec.record_all(self._opening())
                prefill = self._prefill()
                if self.compact:
                    yield rec.record_all(em.compaction_started())
                    yield rec.record_all(await self._compact())
                if self.answer:
                    async for batch in self._turn(prefill):
                        yield rec.record_all(batch)
                terminal = em.finish()
            except UpstreamError as exc:
                log.warning("response %s failed: %s", self.id, exc.message)
                terminal = em.fail(exc.message)
            except (asyncio.CancelledError, GeneratorExit):
                if self.detached:  # handed back to the queue: log what was made, leave the response running
                    self.release_admission()
                    await rec.detach()
                    raise
                # The client left or the response was cancelled: stopped while awaiting the model, or closed
                # while paused at a yield.
                await self._end([(ev, rec.record(ev)) for ev in em.cancel()])
                raise
            except Exception:
                log.exception("response %s failed inside respd", self.id)
                terminal = em.fail("The server had an error while processing your request.")
            # followers see the terminal events only once they are durable, like the client of this run
            frames = [(ev, rec.record(ev)) for ev in terminal]
            await self._end(frames)
            yield frames
        finally:
            self.rt.running -= 1

    def _opening(self) -> list[Event]:
        """The first events: ``created``/``in_progress``, or ``in_progress`` going on from a logged state."""
        if self.logged is not None:
            return self.emitter.resume(self.logged.next_seq, self.logged.open_indices)
        if self.emitter.seq:  # accepted as a background job by this process, now running
            return self.emitter.resume(self.emitter.seq, [])
        return self.emitter.start()

    def _prefill(self) -> str | None:
        """The partial answer a run taken over goes on from; refuses (as a failed response) if it can't."""
        if self.logged is None or not self.logged.has_output:
            return None
        prefill = self.logged.prefill() if self.rt.backend(self.route).abilities.prefill else None
        if prefill is None:
            raise UpstreamError(_NOT_CONTINUABLE)
        return prefill

    async def _turn(self, prefill: str | None) -> AsyncGenerator[list[Event], None]:
        """One model turn's events, in the batches its deltas came in."""
        if not self.generate:
            return
        backend = self.rt.backend(self.route)
        place = self.place
        # as admitted, not built again, unless the context changed since
        request = place.request if place is not None and prefill is None and not self.compact else None
        if request is None:
            request = self.model_request(prefill)
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

    async def _compact(self) -> list[Event]:
        """Summarize the context into the open compaction item; the model answers from the compacted one."""
        done = await compaction.compact(self.rt.backend(self.route), self.model_request())
        item_id, events = self.emitter.compaction_done(done.seal(self.rt.sealer, self.tenant), done.usage)
        self.context = done.context(item_id)
        return events

    async def _end(self, unpublished: Sequence[Frame]) -> None:
        self.release_admission()
        self.final = self.emitter.response
        append = self._conversation_append()
        await self.recorder.end(self.final, unpublished, [append] if append is not None else ())

    def _conversation_append(self) -> conversations.Append | None:
        """This turn for its conversation, if it joins one; ``store: false`` does not keep it out (nor does
        it in the real API): it is about the response object, and the conversation is stored by definition.
        The append shares the terminal commit: no crash can end the response without it."""
        conv = self.req.conversation_id
        if conv is None or self.final is None or self.final["status"] not in JOINS_CONVERSATION:
            return None
        return conversations.Append(self.tenant, conv, self.inputs + self.final["output"])


_NOT_CONTINUABLE = (
    "The server generating this response stopped, and this model cannot continue the partial output it had produced."
)
