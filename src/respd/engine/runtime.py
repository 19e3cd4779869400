"""What a run needs from the process: settings, the store, model backends and the live hub."""

from __future__ import annotations

from dataclasses import dataclass, field

from respd.backends.base import Backend
from respd.backends.openai_chat import OpenAIChatBackend
from respd.config import ModelRoute, Settings
from respd.engine.live import LiveHub
from respd.ids import new_id
from respd.sealing import Sealer, load_key
from respd.store.store import Store
from respd.tools.registry import Registry


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
    tools: Registry = field(init=False)  # the hosted tools configured here
    backends: dict[str, Backend] = field(default_factory=dict)
    replica_id: str = field(default_factory=lambda: new_id("replica"))  # this process, among those sharing the DB
    running: int = 0  # runs generating in this process now (one alone commits without waiting for company)

    def backend(self, route: ModelRoute) -> Backend:
        if route.name not in self.backends:
            self.backends[route.name] = make_backend(route)
        return self.backends[route.name]

    def __post_init__(self) -> None:
        self.hub = LiveHub(on_open=self.store.signals.wake)
        self.sealer = Sealer(load_key(self.settings.secret_key, self.settings.data_dir))
        self.tools = Registry(self)  # each tool's hosted_tool(host) reads what it needs of this process

    async def open(self) -> None:
        await self.store.open()
        for route in self.settings.models:
            backend = self.backend(route)
            if backend.abilities.loading:
                # load local models at startup: the first request should not wait for it, and a bad
                # GGUF path or digest should stop the server now, not fail a response later
                await backend.load()

    async def close(self) -> None:
        await self.tools.aclose()
        for backend in self.backends.values():
            await backend.aclose()
        await self.store.close()
