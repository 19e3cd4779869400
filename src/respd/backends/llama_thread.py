"""The one thread that runs every llama.cpp computation of the process: each model's decode steps and the
embedder's batches.

llama.cpp's CPU backend, built with OpenMP as llama-cpp-python builds it, computes a graph with a team of
OpenMP threads that belongs to the calling thread, and libgomp keeps that team for as long as its caller
lives. Once the teams of several callers hold more threads than the machine has cores (a second model with a
worker thread of its own, the embedder on the event loop's executor threads), libgomp takes the machine for
oversubscribed and no longer spins at a barrier before sleeping: a decode has ~500 barriers, and generation
ran 13-17 % slower from the first embedding or second model's request on (bench/README.md, "The embedded model
under concurrent requests"). Computing on one thread keeps one team. Nothing is lost by it: on a CPU, two
computations at once would only share the same cores.

The thread takes turns: one queued call (an embedding batch: callers keep them small), then one step of every
engine with work, so a long ingestion never stalls a running answer for more than one batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

log = logging.getLogger("respd.llama")
T = TypeVar("T")


class Stepped(Protocol):
    """A model that computes in steps on this thread (:class:`respd.backends.llama_engine.LlamaEngine`)."""

    def admit(self) -> bool:
        """Take in waiting work and drop stopped work; whether a step is due. Called holding :data:`LOCK`."""

    def step(self) -> None:
        """One step of computation (on this thread, without the lock)."""

    def fail(self, error: BaseException) -> None:
        """End all of the model's work with ``error`` (a step raised it)."""


class ComputeThread:
    """The process's llama.cpp thread (see the module docstring); started on first use."""

    def __init__(self) -> None:
        self.lock = threading.Condition()  # guards what is queued here and in every registered engine
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._engines: list[Stepped] = []
        self._thread: threading.Thread | None = None

    def register(self, engine: Stepped) -> None:
        """Have the thread step ``engine`` whenever its :meth:`Stepped.admit` says so."""
        with self.lock:
            self._engines.append(engine)
            self._start()

    def unregister(self, engine: Stepped) -> None:
        """Stop stepping ``engine``; call on this thread (through :meth:`call`), so no step of it is running."""
        with self.lock:
            self._engines.remove(engine)

    def wake(self) -> None:
        """An engine has new work or a stop to look at."""
        with self.lock:
            self.lock.notify()

    def call(self, fn: Callable[[], T], *, first: bool = False) -> Future[T]:
        """Run ``fn`` on the thread, between engine steps; ``first``: before calls already queued."""
        future: Future[T] = Future()
        with self.lock:
            (self._calls.appendleft if first else self._calls.append)((fn, future))
            self._start()
            self.lock.notify()
        return future

    async def run(self, fn: Callable[[], T], *, first: bool = False) -> T:
        """:meth:`call` from the event loop."""
        return await asyncio.wrap_future(self.call(fn, first=first))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llama-compute", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self.lock:
                while True:
                    due = [e for e in self._engines if e.admit()]
                    if due or self._calls:
                        break
                    self.lock.wait()
                call = self._calls.popleft() if self._calls else None
            if call is not None:
                fn, future = call
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # the caller's to handle
                        future.set_exception(exc)
                due = [e for e in due if e in self._engines]  # the call may have closed one
            for engine in due:
                try:
                    engine.step()
                except Exception as exc:  # an engine's fault ends its own work, not the thread
                    log.exception("a llama.cpp step failed")
                    engine.fail(exc)


COMPUTE = ComputeThread()
