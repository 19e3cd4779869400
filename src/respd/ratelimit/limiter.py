"""Per-key rate limits: requests per minute, tokens per minute, concurrent streams.

Windows are fixed Unix minutes, counted where every replica sees them (:mod:`respd.ratelimit.counters`). A
request counts when it is admitted (refused ones too: a client hammering a full window keeps it full). Tokens
are a response's ``usage.total_tokens``, counted when it ends: a key under its token limit may start a request
that takes it over, and the next ones wait for the next window. Answers carry the real API's
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers; a refusal is a 429 ``rate_limit_exceeded``
with ``Retry-After`` (which the SDKs' retries honour).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from respd.config import OpsSettings
from respd.errors import RateLimited
from respd.ratelimit.counters import SLOT_TTL_S, Counters, DbCounters, RedisCounters
from respd.store.store import Store
from respd.telemetry.metrics import Metrics

log = logging.getLogger("respd.ratelimit")


def duration(seconds: float) -> str:
    """A reset time as the API writes it: ``"20ms"``, ``"1.5s"``, ``"59s"``."""
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


class LimitExceeded(RateLimited):
    """429 past a limit; ``type`` names the limit as the API does (``requests`` or ``tokens``)."""

    def __init__(self, message: str, kind: str, retry_after_s: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=max(1, math.ceil(retry_after_s)))
        self.type = kind
        self._headers = {**headers, "Retry-After": str(self.retry_after),
                         "retry-after-ms": str(max(1, int(retry_after_s * 1000)))}  # fmt: skip

    def headers(self) -> dict[str, str]:
        return self._headers


@dataclass
class Admitted:
    """A request let through: the headers its answer carries, and its stream slot (if it holds one)."""

    headers: dict[str, str] = field(default_factory=dict)
    slot: str | None = None


class RateLimiter:
    """This replica's limiter; counts are shared through ``counters``."""

    def __init__(self, ops: OpsSettings, counters: Counters, metrics: Metrics | None) -> None:
        self.ops = ops
        self.counters = counters
        self.metrics = metrics
        self._slots: dict[str, str] = {}  # this replica's open stream slots: slot -> tenant
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, ops: OpsSettings, store: Store, metrics: Metrics | None) -> RateLimiter | None:
        """The limiter ``ops`` asks for, or None when no key has a limit."""
        if not ops.rate_limited:
            return None
        counters: Counters = RedisCounters(ops.redis_url) if ops.redis_url else DbCounters(store)
        return cls(ops, counters, metrics)

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew(), name="respd-rate-slots")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        await asyncio.gather(*self._tasks, *([self._renewer] if self._renewer else []), return_exceptions=True)
        await self.counters.close()

    async def admit(self, tenant: str, *, stream: bool) -> Admitted:
        """Count a request of ``tenant``; raise :class:`LimitExceeded` past a limit."""
        rpm, tpm, max_streams = self.ops.limits(tenant)
        out = Admitted()
        if rpm or tpm:
            now = time.time()
            window = int(now // 60)
            reset = (window + 1) * 60 - now
            requests, tokens = await self.counters.hit(tenant, window)
            if rpm:
                out.headers.update({"x-ratelimit-limit-requests": str(rpm),
                                    "x-ratelimit-remaining-requests": str(max(0, rpm - requests)),
                                    "x-ratelimit-reset-requests": duration(reset)})  # fmt: skip
            if tpm:
                out.headers.update({"x-ratelimit-limit-tokens": str(tpm),
                                    "x-ratelimit-remaining-tokens": str(max(0, tpm - tokens)),
                                    "x-ratelimit-reset-tokens": duration(reset)})  # fmt: skip
            if rpm and requests > rpm:
                self._refuse("requests", f"Rate limit reached for requests per min (RPM): Limit {rpm}, Used {rpm}, "
                             f"Requested 1. Please try again in {duration(reset)}.", reset, out.headers)  # fmt: skip
            if tpm and tokens >= tpm:
                self._refuse("tokens", f"Rate limit reached for tokens per min (TPM): Limit {tpm}, Used {tokens}. "
                             f"Please try again in {duration(reset)}.", reset, out.headers)  # fmt: skip
        if stream and max_streams:
            slot = "slot_" + os.urandom(12).hex()
            live = await self.counters.open_slot(tenant, slot, max_streams, time.time())
            if live >= max_streams:
                self._refuse("requests", f"Too many concurrent streams for this API key: Limit {max_streams}. "
                             "Please try again when one has finished.", 1.0, out.headers)  # fmt: skip
            self._slots[slot] = tenant
            out.slot = slot
        return out

    def _refuse(self, kind: str, message: str, retry_after_s: float, headers: dict[str, str]) -> None:
        if self.metrics is not None:
            self.metrics.rate_limited.labels("streams" if "streams" in message else kind).inc()
        raise LimitExceeded(message, kind, retry_after_s, headers)

    def guard(self, slot: str, frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """``frames``, giving back the stream slot when they end or are closed (even never started)."""
        return _Released(frames, lambda: self.release(slot))

    def release(self, slot: str | None) -> None:
        tenant = self._slots.pop(slot, None) if slot is not None else None
        if slot is not None and tenant is not None:
            self._spawn(self.counters.close_slot(tenant, slot))

    def ended(self, tenant: str, model: str, final: dict[str, Any], seconds: float) -> None:
        """A response ended: its tokens count against its key's window (a runtime end hook)."""
        usage = final.get("usage") or {}
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(total, int) and total > 0 and self.ops.limits(tenant)[1]:
            self._spawn(self.counters.add_tokens(tenant, int(time.time() // 60), total))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("updating a rate-limit count failed: %s", task.exception())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(SLOT_TTL_S / 3)
            try:
                await self.counters.renew_slots(dict(self._slots), time.time())
            except Exception:
                log.exception("renewing this replica's stream slots failed")


class _Released(AsyncGenerator[bytes, None]):
    """An async generator that calls ``release`` once the one it wraps is done: exhausted, failed or closed."""

    def __init__(self, inner: AsyncGenerator[bytes, None], release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    async def asend(self, value: None) -> bytes:
        try:
            return await self._inner.asend(value)
        except BaseException:
            self._release()
            raise

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> bytes:
        try:
            return await self._inner.athrow(typ, val, tb)
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()
