"""A process's operational parts, built from its settings and run with the app: metrics, traces, the rate
limiter and the webhook delivery worker (docs/OPERATIONS.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from respd.engine.runtime import Runtime
from respd.jobs.queue import job_counts
from respd.ratelimit.limiter import RateLimiter
from respd.store.webhooks import WebhookStore
from respd.telemetry import tracing
from respd.telemetry.metrics import Metrics
from respd.webhooks.sender import WebhookSender

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


class Operations:
    """What ``settings.ops`` turns on; off, each part is None and costs nothing."""

    def __init__(self, rt: Runtime, tracer_provider: TracerProvider | None = None) -> None:
        ops = rt.settings.ops
        self.rt = rt
        if tracer_provider is None and ops.traces:
            tracer_provider = tracing.otlp_provider()
        tracing.install(tracer_provider)
        rt.metrics = Metrics() if ops.metrics else None
        self.limiter = RateLimiter.build(ops, rt.store, rt.metrics)
        self.deliveries = WebhookStore(rt.store, rt.replica_id)
        self.sender = WebhookSender(ops, rt.settings.outbound, self.deliveries, rt.store.signals, rt.metrics) \
            if ops.webhooks else None  # fmt: skip
        if rt.metrics is not None:
            rt.end_hooks.append(self._count_end)
            rt.metrics.on_scrape(self._refresh)
        if self.limiter is not None:
            rt.end_hooks.append(self.limiter.ended)
        if self.sender is not None:  # a run's deliveries were committed with its end: send them now
            rt.end_hooks.append(self.sender.wake)

    def _count_end(self, tenant: str, model: str, final: dict[str, object], seconds: float) -> None:
        assert self.rt.metrics is not None
        usage = final.get("usage")
        self.rt.metrics.finished(model, str(final.get("status")), seconds, usage if isinstance(usage, dict) else None)

    async def _refresh(self) -> None:
        """Gauges of what the database holds, read at scrape time (never on a request's path)."""
        m = self.rt.metrics
        assert m is not None
        m.running.set(self.rt.running)
        queued, running = await job_counts(self.rt.store)
        m.waiting.set(queued)
        m.jobs.labels("queued").set(queued)
        m.jobs.labels("running").set(running)
        if self.sender is not None:
            m.webhook_pending.set(await self.deliveries.pending())

    def start(self) -> None:
        """After the database is open."""
        if self.limiter is not None:
            self.limiter.start()
        if self.sender is not None:
            self.sender.start()

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()
        if self.limiter is not None:
            await self.limiter.close()
        tracing.shutdown()
