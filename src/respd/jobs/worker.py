"""This replica's share of the background work: claim jobs, run them, renew the lease, drain on shutdown.

A job accepted here starts at once when there is room (no trip through the queue); otherwise it waits in
the database until some replica with room claims it, woken by a ``respd_jobs`` notice or its poll. A job
whose replica died is claimed like a queued one once that replica's lease runs out, and goes on from its
event log (:mod:`respd.engine.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from respd.engine.prepare import prepare
from respd.engine.recovery import end_logged, end_orphans
from respd.engine.resume import read_log
from respd.engine.run import Run
from respd.engine.runtime import Runtime
from respd.errors import RateLimited, RespdError
from respd.jobs.queue import Job, JobQueue
from respd.sealing import SealError
from respd.store.signals import CANCEL, JOBS
from respd.store.writer import Batch, Fenced
from respd.telemetry import tracing
from respd.tools.mcp import secrets
from respd.wire.request import CreateResponse
from respd.wire.validation import parse_body

log = logging.getLogger("respd.jobs")

CANCELLED_BY_API = "cancelled"  # the message a job's task is cancelled with when the API asked for it
MAX_ATTEMPTS = 3  # a job whose replica died this many times is not tried again: it may be what kills them


class Worker:
    """Runs background responses in this process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        settings = rt.settings
        self.queue = JobQueue(rt.store, rt.replica_id, settings.lease_s)
        self.capacity = settings.max_background
        # The poll is a safety net behind the wake-ups (``respd_jobs`` notices, a job's end). On SQLite every
        # job is this process's and every wake-up is in-process, so the net can be wide: a poll there is a
        # query on the event loop, which on a 2-core machine is taken from a local model's decoding.
        self.poll_s = settings.lease_s / 2 if rt.store.is_sqlite else min(1.0, settings.lease_s / 4)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.runs: dict[str, Run] = {}
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.queue.register()
        if self.rt.store.is_sqlite:
            await self.queue.forget_others()
        signals = self.rt.store.signals
        signals.on(JOBS, lambda _payload: self._wake.set())
        signals.on(CANCEL, self._on_cancel)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="respd-claim"),
            asyncio.create_task(self._heartbeat(), name="respd-heartbeat"),
        ]

    async def drain(self, grace_s: float) -> None:
        """Stop taking work; give running jobs ``grace_s`` to finish, then put them back in the queue."""
        self._stopping = True
        for task in self._loops[:1]:
            task.cancel()
        running = list(self.tasks.values())
        if running:
            await asyncio.wait(running, timeout=grace_s)
        self._detach_all()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.queue.retire()  # the jobs left go back to the queue, and this replica is gone at once
        if not self.rt.store.is_sqlite:  # other replicas: take them now
            await self.rt.store.writer.commit(Batch(notices=[(JOBS, "")]))

    @property
    def stopping(self) -> bool:
        """Shutting down: no new work is taken (readiness fails)."""
        return self._stopping

    # -- accepting --------------------------------------------------------------------------------
    async def accept(self, run: Run, request_body: bytes) -> None:
        """Make ``run`` a durable job (committed before this returns); start it here if there is room."""
        here = not self._stopping and len(self.tasks) < self.capacity
        if not here:
            waiting = await self.queue.queued()
            if waiting >= self.rt.settings.max_queued:
                raise RateLimited(
                    f"Too many background responses are waiting ({waiting}). Retry after 5 seconds.", retry_after=5
                )
        # MCP credentials are stored sealed (the job's request waits in the database)
        body = secrets.seal_request(self.rt.sealer, run.tenant, request_body)
        batch = run.accept_background(body, owner=self.rt.replica_id if here else None)
        if not here:
            batch.notices.append((JOBS, ""))
        await self.rt.store.writer.commit(batch)
        if here:
            self.runs[run.id] = run
            self._spawn(run.id, self._execute(run))

    def _spawn(self, rid: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"respd-job-{rid}")
        self.tasks[rid] = task
        task.add_done_callback(lambda _t: self._finished(rid))

    def _finished(self, rid: str) -> None:
        self.tasks.pop(rid, None)
        self.runs.pop(rid, None)
        self._wake.set()  # room for another job

    async def _execute(self, run: Run) -> None:
        tracing.annotate_response(run.id, run.route.name, run.req.conversation_id)  # for its model turns' spans
        try:
            async with contextlib.aclosing(run.events()) as events:
                async for _ in events:
                    pass
        except asyncio.CancelledError:
            pass  # the run logged its end (cancelled), or was detached to go back to the queue
        except Fenced as exc:  # its writes were refused: another replica took it over (see Run.events)
            log.warning("background response %s stopped here: %s", run.id, exc)
        except Exception:
            log.exception("background response %s failed", run.id)

    async def _take(self, job: Job) -> None:
        """Run a claimed job from where its log stands."""
        rid = job.response_id
        self.rt.store.writer.forget(rid)  # this replica may have been fenced off it before: it holds it now
        try:
            rows = await self.rt.store.events_after(rid, -1)
            if not rows:  # the response was deleted
                await self.rt.store.writer.commit(Batch(finished_jobs=[rid]))
                return
            logged = read_log(rows)
            if logged.ended or job.cancel_requested:
                await end_logged(self.rt, job.tenant, rid, "cancelled", epoch=job.epoch)
                return
            if job.attempts > MAX_ATTEMPTS:
                message = f"The server stopped {MAX_ATTEMPTS} times while generating this response; gave up."
                await end_logged(self.rt, job.tenant, rid, "failed", message, epoch=job.epoch)
                return
            try:
                body = secrets.open_request(self.rt.sealer, job.tenant, job.request.encode())
            except SealError:
                await end_logged(self.rt, job.tenant, rid, "failed", _UNSEALABLE, epoch=job.epoch)
                return
            req = parse_body(CreateResponse, body)
            try:
                run = await prepare(self.rt, req, job.tenant, logged=logged)
            except RespdError as exc:  # e.g. its previous response was deleted while it waited
                await end_logged(self.rt, job.tenant, rid, "failed", exc.message, epoch=job.epoch)
                return
            run.recorder.epoch = job.epoch
        except asyncio.CancelledError:
            if not self._stopping:
                await end_logged(self.rt, job.tenant, rid, "cancelled", epoch=job.epoch)
            raise
        if job.attempts > 1:
            log.warning("taking over background response %s (attempt %d)", rid, job.attempts)
        self.runs[rid] = run
        await self._execute(run)

    # -- cancelling -------------------------------------------------------------------------------
    def _on_cancel(self, rid: str) -> None:
        task = self.tasks.get(rid)
        if task is not None:
            task.cancel(CANCELLED_BY_API)

    async def cancel(self, tenant: str, rid: str) -> None:
        """Stop the job of ``rid`` wherever it runs (or end it now if it waits or its replica died)."""
        if rid in self.tasks:
            self._on_cancel(rid)
            return
        job = await self.queue.claim_job(rid)
        if job is not None:
            await end_logged(self.rt, tenant, rid, "cancelled", epoch=job.epoch)
            return
        has_job, _owner = await self.queue.owner_of(rid)
        if has_job:
            await self.queue.request_cancel(rid)
            await self.rt.store.writer.commit(Batch(notices=[(CANCEL, rid)]))

    # -- loops ------------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        sweep_every = max(1, int(self.rt.settings.lease_s / 2 / self.poll_s))
        rounds = 0
        while True:
            self._wake.clear()
            try:
                room = self.capacity - len(self.tasks)
                if room > 0:
                    for job in await self.queue.claim(room):
                        self._spawn(job.response_id, self._take(job))
                if rounds % sweep_every == 0:
                    await end_orphans(self.rt, await self.queue.claim_orphans())
            except Exception:
                log.exception("claiming background work failed; retrying")
            rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _heartbeat(self) -> None:
        lease_s = self.rt.settings.lease_s
        loop = asyncio.get_running_loop()
        renewed = self.rt.renewed_at = loop.time()  # (the loop's clock is time.monotonic)
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                await self.queue.renew()
                now = loop.time()
                if now - renewed > lease_s:  # paused past the lease: runs here check their epoch before going on
                    log.warning("this replica's lease ran out %.1f s ago; its runs check they still own their "
                                "responses", now - renewed - lease_s)  # fmt: skip
                    self.rt.lapsed_at = now
                renewed = self.rt.renewed_at = now
            except Exception:
                log.exception("renewing this replica's lease failed")
                if loop.time() - renewed > lease_s * 0.8:
                    self._fence()

    def _fence(self) -> None:
        """The lease is (nearly) lost: other replicas may take these jobs over, so stop running them here."""
        if self.tasks:
            log.error("this replica's lease ran out; stopping its %d background runs", len(self.tasks))
        self._detach_all()

    def _detach_all(self) -> None:
        """Stop every run here without ending its response: its job is left for a replica to go on with."""
        for rid, task in list(self.tasks.items()):
            run = self.runs.get(rid)
            if run is not None:
                run.detached = True
            task.cancel()


_UNSEALABLE = "The MCP credentials stored with this response could not be opened (the server key changed); not run."
