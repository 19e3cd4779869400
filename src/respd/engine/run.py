"""A run: one request turned into the stream of events that is the response.

:func:`respd.engine.prepare.prepare` makes a run from a request (it may refuse; it stores nothing). ``Run.events``
drives the backend, turns its deltas into events with the :class:`Emitter`, and records each event: to
the store's event log (batched; the terminal event is committed before anyone sees it) and to followers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import orjson

from respd.backends.base import Admission, Admitting, ModelRequest
from respd.config import ModelRoute
from respd.engine import compaction
from respd.engine.context import REASONING
from respd.engine.emitter import Emitter
from respd.engine.fold import Event
from respd.engine.resume import Logged
from respd.engine.runtime import Runtime
from respd.engine.tools import ToolPlan
from respd.errors import UpstreamError
from respd.ids import new_id
from respd.store import conversations
from respd.store.writer import Batch, item_rows, log_row
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
        self.created_at = logged.response["created_at"] if logged else int(time.time())
        self.context = history + inputs  # what the model sees (after compaction items and truncation)
        self.compact = False  # compact the context before answering (context_management, compaction_trigger)
        self.answer = True  # false for a compaction_trigger: the compaction is the whole response
        self.store = req.store is not False
        self.background = bool(req.background)
        self.logged = logged  # the log this run goes on from (a background job), if any
        response = logged.response if logged else new_response(
            req, response_id=self.id, model=route.name, created_at=self.created_at, status="in_progress",
            tools=tools.echo)  # fmt: skip
        wants_sealed = "reasoning.encrypted_content" in (req.include or ())
        summarize = bool(req.reasoning and (req.reasoning.summary or req.reasoning.generate_summary))
        self.emitter = Emitter(
            response,
            max_calls=1 if req.parallel_tool_calls is False else req.max_tool_calls,
            summarize=summarize,
            seal=(lambda payload: rt.sealer.seal(tenant, REASONING, payload)) if wants_sealed else None,
        )
        self.final: dict[str, Any] | None = None
        # A background run logs its events as they come (a follower may be on another replica), and reads
        # the model as a stream so that a run taken over can go on from what was logged.
        self._stream = bool(req.stream) or self.background
        self._logged: list[tuple[int, bytes]] = []  # events (sequence number, JSON) not yet handed to the writer
        self._row_written = logged is not None
        self.detached = False  # set to stop without ending the response (its job goes back to the queue)
        self.snapshot_json = b""  # the JSON of the newest lifecycle snapshot (at the end: the final Response)
        self._admission: Admission | None = None  # this run's place at a backend with limited room
        self._admitted: ModelRequest | None = None  # the model request it was admitted with
        self.generate = True  # False: a warm-up (WebSocket mode) that records its context and asks no model

    # -- the model request ------------------------------------------------------------------------
    def model_request(self, prefill: str | None = None) -> ModelRequest:
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
            prefill=prefill,
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
            "previous_response_id": self.req.previous_response_id, "background": self.background,
            # a foreground run lives and dies with this replica; a background one's owner is its job's
            "owner": None if self.background else self.rt.replica_id,
            "body": (body_json or orjson.dumps(body)).decode(),
        }  # fmt: skip

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
            self._logged.append((ev["sequence_number"], data))
        return data

    def _publish(self, frames: Sequence[tuple[Event, bytes]]) -> None:
        """Hand recorded events to this process's followers (a stored response's only)."""
        if self.store:
            self.rt.hub.publish(self.id, [(ev["sequence_number"], data) for ev, data in frames])

    def _flush_batch(self, final: dict[str, Any] | None) -> Batch:
        batch = Batch(events=[log_row(self.id, self._logged)] if self._logged else [])
        self._logged = []
        if not self._row_written:
            body = final or self.emitter.response
            batch.responses.append(self._response_row(body, self.snapshot_json))
            batch.items += item_rows(self.id, self.tenant, "input", self.inputs)
            self._row_written = True
        elif final is not None:
            row = self._response_row(final, self.snapshot_json)
            batch.updates.append({k: row[k] for k in ("id", "status", "updated_at", "body")})
        if final is not None:
            batch.items += item_rows(self.id, self.tenant, "output", final["output"])
            if self.background:
                batch.finished_jobs.append(self.id)
        return batch

    def accept_background(self, request_body: bytes, owner: str | None) -> Batch:
        """The rows that accept this run as a background job, for one transaction: the queued response, its
        log so far and the job (so no crash can leave a queued response without its job)."""
        self._publish([(ev, self._record(ev)) for ev in self.emitter.queue()])
        batch = self._flush_batch(None)
        batch.jobs.append({"response_id": self.id, "kind": "response", "tenant": self.tenant, "owner": owner,
                           "created_at": int(time.time() * 1000), "attempts": 1 if owner else 0,
                           "cancel_requested": False, "request": request_body.decode()})  # fmt: skip
        return batch

    def _submit(self) -> None:
        """Hand recorded events to the writer without waiting (streaming)."""
        if self.store and self._logged:
            first = not self._row_written
            self.rt.store.writer.submit(self._flush_batch(None), urgent=first)

    async def _commit_final(self) -> None:
        # The conversation's append shares the terminal commit: no crash can end the response without it.
        batch = self._flush_batch(self.final) if self.store else Batch()
        append = self._conversation_append()
        if append is not None:
            batch.ops.append(append)
        if self.store or append is not None:
            await self.rt.store.writer.commit(batch, alone=self.rt.running == 1)

    def _conversation_append(self) -> conversations.Append | None:
        """This turn for its conversation, if it joins one; ``store: false`` does not keep it out (nor does
        it in the real API): it is about the response object, and the conversation is stored by definition."""
        conv = self.req.conversation_id
        if conv is None or self.final is None or self.final["status"] not in JOINS_CONVERSATION:
            return None
        return conversations.Append(self.tenant, conv, self.inputs + self.final["output"])

    # -- driving ----------------------------------------------------------------------------------
    async def events(self) -> AsyncGenerator[list[tuple[Event, bytes]], None]:
        """The response's events, in batches that arrived together, each event with its JSON.

        The last batch ends with the terminal event, which is durable before it is yielded.
        """
        em = self.emitter
        terminal: list[Event]
        if self.store:
            self.rt.hub.open(self.id)
        self.rt.running += 1
        try:
            try:
                if self.logged is not None:
                    yield self._record_all(em.resume(self.logged.next_seq, self.logged.open_indices))
                elif em.seq:  # accepted as a background job by this process, now running
                    yield self._record_all(em.resume(em.seq, []))
                else:
                    yield self._record_all(em.start())
                prefill = None
                if self.logged is not None and self.logged.has_output:
                    prefill = self.logged.prefill() if self._can_prefill() else None
                    if prefill is None:
                        raise UpstreamError(_NOT_CONTINUABLE)
                if self.compact:
                    yield self._record_all(em.compaction_started())
                    yield self._record_all(await self._compact())
                if self.answer:
                    backend = self.rt.backend(self.route)
                    deltas: AsyncGenerator[Any, None]
                    if not self.generate:
                        deltas = _no_deltas()
                    elif self._admission is not None and self._admitted is not None and prefill is None \
                            and not self.compact:  # fmt: skip
                        deltas = backend.generate(self._admitted, self._admission)  # as admitted, not built again
                    else:
                        deltas = backend.generate(self.model_request(prefill))
                    try:
                        async for got in deltas:
                            batch = [ev for delta in (got if isinstance(got, list) else (got,))
                                     for ev in em.feed(delta)]  # fmt: skip
                            if batch:
                                yield self._record_all(batch)
                    finally:
                        # closed at a yield (the client left): stop the model now, not when it is collected
                        await deltas.aclose()
                terminal = em.finish()
            except UpstreamError as exc:
                log.warning("response %s failed: %s", self.id, exc.message)
                terminal = em.fail(exc.message)
            except (asyncio.CancelledError, GeneratorExit):
                if self.detached:  # handed back to the queue: log what was made, leave the response running
                    await self._commit_logged()
                    raise
                # The client left or the response was cancelled: stopped while awaiting the model, or closed
                # while paused at a yield.
                await self._end([(ev, self._record(ev)) for ev in em.cancel()])
                raise
            except Exception:
                log.exception("response %s failed inside respd", self.id)
                terminal = em.fail("The server had an error while processing your request.")
            # followers see the terminal events only once they are durable, like the client of this run
            frames = [(ev, self._record(ev)) for ev in terminal]
            await self._end(frames)
            yield frames
        finally:
            self.rt.running -= 1

    async def _compact(self) -> list[Event]:
        """Summarize the context into the open compaction item; the model answers from the compacted one."""
        done = await compaction.compact(self.rt.backend(self.route), self.model_request())
        item_id, events = self.emitter.compaction_done(done.seal(self.rt.sealer, self.tenant), done.usage)
        self.context = done.context(item_id)
        return events

    def _record_all(self, events: list[Event]) -> list[tuple[Event, bytes]]:
        frames = [(ev, self._record(ev)) for ev in events]
        self._publish(frames)
        if self._stream:
            self._submit()
        return frames

    def admit(self) -> None:
        """Take this run's place at its backend (a local model's queue) or raise its 4xx, before any event."""
        backend = self.rt.backend(self.route)
        # hasattr, not isinstance: a runtime-checkable Protocol check costs more than the whole hook.
        if hasattr(backend, "admit"):
            self._admitted = self.model_request()
            self._admission = cast(Admitting, backend).admit(self._admitted)

    def release_admission(self) -> None:
        if self._admission is not None:
            self._admission.release()
            self._admission = None

    def _can_prefill(self) -> bool:
        return bool(getattr(self.rt.backend(self.route), "prefill", False))

    async def _commit_logged(self) -> None:
        self.release_admission()
        if self.store:
            await self.rt.store.writer.commit(self._flush_batch(None))
            self.rt.hub.close(self.id)

    async def _end(self, unpublished: Sequence[tuple[Event, bytes]] = ()) -> None:
        self.release_admission()
        self.final = self.emitter.response
        await self._commit_final()
        if self.store:
            self._publish(unpublished)
            self.rt.hub.close(self.id)


async def _no_deltas() -> AsyncGenerator[Any, None]:
    return
    yield


_NOT_CONTINUABLE = (
    "The server generating this response stopped, and this model cannot continue the partial output it had "
    "produced."
)
