"""The delivery worker: claims due webhook deliveries, signs and sends them, retries with backoff.

Every replica runs one (when webhooks are configured). A delivery is claimed for one attempt at a time (see
:mod:`respd.store.webhooks`), sent once, and its outcome recorded: a 2xx answer within ``webhook_timeout_s``
delivers it; anything else (refused, timeout, another status, the outbound policy) schedules the next attempt
``webhook_retry_initial_s * 2^(attempt-1)`` later (±20 % jitter, each delay at most 12 hours) until
``webhook_retry_max_s`` (72 hours) after the response ended, when it is given up. A replica that dies
mid-attempt loses its claim when the attempt's lease runs out, and any replica tries again: at least once.

Messages are signed as Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``),
which the ``openai`` SDKs' ``client.webhooks.unwrap()`` verifies. The timestamp is the attempt's, so a retry
hours later is still within the receiver's tolerance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from respd.config import OpsSettings, WebhookEndpoint
from respd.outbound import OutboundPolicy, refusal
from respd.store.signals import WEBHOOKS, Signals
from respd.store.webhooks import DELIVERED, FAILED, PENDING, Claimed, Outcome, WebhookStore, now_ms
from respd.telemetry.metrics import Metrics

log = logging.getLogger("respd.webhooks")

USER_AGENT = "respd-webhooks/1"
MAX_IN_FLIGHT = 32  # attempts this replica runs at once
MAX_DELAY_S = 12 * 3600.0
IDLE_POLL_S = 5.0  # with nothing due: look again this often (notices wake it sooner)
RETENTION_S = 7 * 86400.0  # deliveries that ended are kept this long for inspection
PRUNE_EVERY_S = 3600.0


def retry_delay_s(initial_s: float, attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): exponential, with jitter."""
    delay: float = min(MAX_DELAY_S, initial_s * 2.0 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)


def signed_headers(endpoint: WebhookEndpoint, delivery: Claimed) -> dict[str, str]:
    """The message's headers, signed now with the endpoint's secret."""
    secret = endpoint.secret()
    if not secret:
        raise ValueError(f"the environment variable {endpoint.secret_env} holding the signing secret is not set")
    stamp = datetime.now(tz=UTC).replace(microsecond=0)
    return {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": delivery.id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(delivery.id, stamp, delivery.body)}  # fmt: skip


class WebhookSender:
    """This replica's delivery worker."""

    def __init__(self, ops: OpsSettings, policy: OutboundPolicy, deliveries: WebhookStore, signals: Signals,
                 metrics: Metrics | None) -> None:  # fmt: skip
        self.ops = ops
        self.policy = policy
        self.deliveries = deliveries
        self.metrics = metrics
        self.endpoints = {e.name: e for e in ops.webhooks}
        # the claim outlasts the attempt (bounded by the timeout) by a margin for a slow event loop
        self.lease_ms = int((ops.webhook_timeout_s + 2.0) * 1000)
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        signals.on(WEBHOOKS, lambda _payload: self._wake.set())

    def wake(self, *_ended: object) -> None:
        """Look for due deliveries now (a response just ended here: a runtime end hook)."""
        self._wake.set()

    def start(self) -> None:
        self._client = self.policy.httpx_client(timeout=self.ops.webhook_timeout_s, follow_redirects=False)
        self._loop_task = asyncio.create_task(self._run(), name="respd-webhooks")

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight end (each is bounded by the timeout)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.ops.webhook_timeout_s + 1)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        pruned_at = 0.0
        while True:
            self._wake.clear()
            wait_s = IDLE_POLL_S
            try:
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    await self.deliveries.prune(now_ms() - int(RETENTION_S * 1000))
                room = MAX_IN_FLIGHT - len(self._in_flight)
                if room > 0:
                    for claimed in await self.deliveries.claim(room, self.lease_ms):
                        task = asyncio.create_task(self._attempt(claimed), name=f"respd-webhook-{claimed.id}")
                        self._in_flight.add(task)
                        task.add_done_callback(self._attempt_done)
                due = await self.deliveries.next_due()
                if due is not None:
                    wait_s = min(IDLE_POLL_S, max(0.01, (due - now_ms()) / 1000))
            except Exception:
                log.exception("claiming webhook deliveries failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # room for another

    async def _attempt(self, claimed: Claimed) -> None:
        endpoint = self.endpoints.get(claimed.endpoint)
        started = now_ms()
        t0 = time.perf_counter()
        status, error = None, None
        if endpoint is None:
            error = f"the endpoint {claimed.endpoint!r} is no longer configured"
        else:
            status, error = await self._send(endpoint, claimed)
        outcome = self._outcome(claimed, started, int((time.perf_counter() - t0) * 1000), status, error)
        try:
            if not await self.deliveries.record(claimed, outcome):
                log.warning("webhook %s: the claim lapsed during the attempt; another replica has it", claimed.id)
                return
        except Exception:
            log.exception("recording webhook attempt %s failed; it will be tried again", claimed.id)
            return
        self._count(claimed, outcome)

    async def _send(self, endpoint: WebhookEndpoint, claimed: Claimed) -> tuple[int | None, str | None]:
        assert self._client is not None
        try:
            headers = signed_headers(endpoint, claimed)
            async with asyncio.timeout(self.ops.webhook_timeout_s):
                reply = await self._client.post(claimed.url, content=claimed.body.encode(), headers=headers)
        except TimeoutError:
            return None, f"no answer within {self.ops.webhook_timeout_s:g} s"
        except httpx.HTTPError as exc:
            refused = refusal(exc)
            return None, refused.message if refused is not None else f"{type(exc).__name__}: {exc}"
        except ValueError as exc:
            return None, str(exc)
        if 200 <= reply.status_code < 300:
            return reply.status_code, None
        return reply.status_code, f"answered {reply.status_code}"

    def _outcome(self, claimed: Claimed, started: int, duration_ms: int, status: int | None,
                 error: str | None) -> Outcome:  # fmt: skip
        if error is None:
            return Outcome(DELIVERED, started, started, duration_ms, status, None)
        delay_ms = int(retry_delay_s(self.ops.webhook_retry_initial_s, claimed.attempts + 1) * 1000)
        next_at = now_ms() + delay_ms
        if next_at - claimed.created_at > self.ops.webhook_retry_max_s * 1000:
            log.warning("webhook %s to %s given up after %d attempts: %s", claimed.id, claimed.endpoint,
                        claimed.attempts + 1, error)  # fmt: skip
            return Outcome(FAILED, next_at, started, duration_ms, status, error)
        log.info("webhook %s to %s failed (attempt %d: %s); retrying in %.1f s", claimed.id, claimed.endpoint,
                 claimed.attempts + 1, error, delay_ms / 1000)  # fmt: skip
        return Outcome(PENDING, next_at, started, duration_ms, status, error)

    def _count(self, claimed: Claimed, outcome: Outcome) -> None:
        if self.metrics is None:
            return
        ok = outcome.state == DELIVERED
        self.metrics.webhook_attempts.labels(claimed.endpoint, "success" if ok else "failure").inc()
        if outcome.state != PENDING:
            self.metrics.webhook_deliveries.labels(claimed.endpoint, "delivered" if ok else "gave_up").inc()
