"""What a run needs from the process: settings, the store, model backends and the live hub."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from respd.backends.base import Backend
from respd.backends.openai_chat import OpenAIChatBackend
from respd.config import ModelRoute, Settings
from respd.engine.live import LiveHub
from respd.ids import new_id
from respd.retrieval.embedder import make_embedder
from respd.retrieval.search import Retrieval
from respd.sandbox.containers import Containers
from respd.sandbox.detect import find_sandbox
from respd.sealing import Sealer, load_key
from respd.store.store import Store
from respd.telemetry import tracing
from respd.telemetry.instrumented import InstrumentedBackend
from respd.telemetry.metrics import Metrics
from respd.tools.registry import Registry

# Told of every response that ends in this process: (tenant, model, the final Response, seconds it ran).
EndHook = Callable[[str, str, dict[str, Any], float], None]


def make_backend(route: ModelRoute) -> Backend:
    """The backend that serves ``route``."""
    if route.backend == "openai":
        return OpenAIChatBackend(route)
    if route.backend == "llama_cpp":
        # imported here: loading llama.cpp's library is for processes that run a local model
        from respd.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(route)
    raise ValueError(f"unknown backend {route.backend!r}")


@dataclass
class Runtime:
    """The process-wide parts, built once at startup."""

    settings: Settings
    store: Store
    sealer: Sealer = field(init=False)
    hub: LiveHub = field(init=False)
    retrieval: Retrieval = field(init=False)  # vector store search (and the embedder ingestion shares)
    tools: Registry = field(init=False)  # the hosted tools configured here
    containers: Containers = field(init=False)  # code_interpreter's containers; their sandbox, if one was found
    backends: dict[str, Backend] = field(default_factory=dict)
    replica_id: str = field(default_factory=lambda: new_id("replica"))  # this process, among those sharing the DB
    running: int = 0  # runs generating in this process now (one alone commits without waiting for company)
    metrics: Metrics | None = None  # None: metrics are off
    end_hooks: list[EndHook] = field(default_factory=list)
    # This replica's lease, as its heartbeat last saw it (monotonic seconds): when it was last renewed (None:
    # no lease is kept), and when a renewal came later than the lease lasts (paused past it: any response
    # running here may have been taken over, see Recorder.record_checked).
    renewed_at: float | None = None
    lapsed_at: float = -math.inf

    def lease_doubtful(self, since: float) -> bool:
        """Whether this replica's lease may have run out since ``since`` (monotonic): it is overdue for
        renewal, or a renewal came after it had run out."""
        if self.renewed_at is None:
            return False
        return self.lapsed_at > since or time.monotonic() - self.renewed_at > self.settings.lease_s * 0.8

    def backend(self, route: ModelRoute) -> Backend:
        if route.name not in self.backends:
            backend = make_backend(route)
            if self.metrics is not None or tracing.tracer() is not None:
                backend = InstrumentedBackend(backend, route, self.metrics)
            self.backends[route.name] = backend
        return self.backends[route.name]

    def ended(self, tenant: str, model: str, final: dict[str, Any], seconds: float) -> None:
        """A response ended here (its terminal event is durable): metrics, rate limits' token counts."""
        for hook in self.end_hooks:
            hook(tenant, model, final, seconds)

    def __post_init__(self) -> None:
        self.hub = LiveHub(on_open=self.store.signals.wake)
        self.sealer = Sealer(load_key(self.settings.secret_key, self.settings.data_dir))
        self.retrieval = Retrieval(self.store, make_embedder(self.settings.embeddings))
        self.tools = Registry(self)  # each tool's hosted_tool(host) reads what it needs of this process
        self.containers = Containers(self.store, self.settings.code_interpreter)

    async def open(self) -> None:
        # the sandbox probe starts a process and waits for it: it runs while the database opens
        probe = asyncio.get_running_loop().create_task(find_sandbox(self.settings.code_interpreter))
        try:
            await self.store.open()
        except BaseException:
            probe.cancel()
            raise
        sandbox = await probe
        if sandbox is not None:
            from respd.tools.code_interpreter import CodeInterpreter  # it runs code in these containers

            self.containers.enable(sandbox)
            self.tools.add(CodeInterpreter(self.containers))
        await self.containers.start()
        for route in self.settings.models:
            backend = self.backend(route)
            if backend.abilities.loading:
                # load local models at startup: the first request should not wait for it, and a bad
                # GGUF path or digest should stop the server now, not fail a response later
                await backend.load()

    async def close(self) -> None:
        await self.containers.close()
        await self.tools.aclose()
        for backend in self.backends.values():
            await backend.aclose()
        await self.retrieval.embedder.aclose()
        await self.store.close()
