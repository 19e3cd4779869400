"""A model backend with metrics and traces: time to first output, failures by kind, a span per model turn.

It wraps the backend the runtime builds for a route (when metrics or traces are on), so every model turn of
every run — streamed, background, compaction, a tool loop's next turn — is measured the same way, without
the run engine knowing. Everything else is the wrapped backend's, attribute for attribute.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from respd.backends.base import Admission, Backend, Delta, Finish, ModelRequest, TokenCount, Usage
from respd.config import ModelRoute
from respd.errors import UpstreamError
from respd.telemetry import tracing
from respd.telemetry.metrics import Metrics


class InstrumentedBackend:
    """``inner``, measured."""

    def __init__(self, inner: Backend, route: ModelRoute, metrics: Metrics | None) -> None:
        self._inner = inner
        self._model = route.name
        self._system = "openai" if route.backend == "openai" else "llama.cpp"
        self._ttft = metrics.ttft.labels(route.name) if metrics is not None else None
        self._errors = metrics.upstream_errors if metrics is not None else None

    def __getattr__(self, name: str) -> Any:
        # admit, prefill, load, count_tokens, …: the wrapped backend's own (hasattr checks see them too)
        return getattr(self._inner, name)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def count_tokens(self, request: ModelRequest, *, local: bool = False) -> TokenCount:
        return await self._inner.count_tokens(request, local=local)

    def context_window(self) -> int | None:
        return self._inner.context_window()

    async def generate(
        self, request: ModelRequest, admission: Admission | None = None
    ) -> AsyncGenerator[Delta | list[Delta], None]:
        started = time.perf_counter()
        span = None
        token = None
        if tracing.tracer() is not None:
            span, traceparent = tracing.model_span(self._model, self._system)
            token = tracing.TRACEPARENT.set(traceparent)
        inner = self._inner.generate(request, admission) if admission is not None else self._inner.generate(request)
        try:
            async with contextlib.aclosing(inner):
                try:
                    first = await anext(inner)  # the request goes out within this step: traceparent set
                except StopAsyncIteration:
                    return
                finally:
                    if token is not None:
                        tracing.TRACEPARENT.reset(token)
                if self._ttft is not None:
                    self._ttft.observe(time.perf_counter() - started)
                if span is not None:
                    _note(span, first)
                yield first
                async for got in inner:
                    if span is not None:
                        _note(span, got)
                    yield got
        except UpstreamError as exc:
            if self._errors is not None:
                self._errors.labels(self._model, exc.kind).inc()
            if span is not None:
                tracing.fail_span(span, exc.kind, exc.message)
            raise
        finally:
            if span is not None:
                span.end()


def _note(span: Any, got: Delta | list[Delta]) -> None:
    """Put a turn's usage and finish reason on its span."""
    for delta in got if isinstance(got, list) else (got,):
        if isinstance(delta, Usage):
            span.set_attribute("gen_ai.usage.input_tokens", delta.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", delta.output_tokens)
        elif isinstance(delta, Finish):
            span.set_attribute("gen_ai.response.finish_reasons", [delta.reason])
