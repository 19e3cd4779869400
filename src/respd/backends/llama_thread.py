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

The thread takes turns between the engines' steps and queued calls (embedding batches, which callers keep
small). While an engine has work, background calls (ingestion) get half the thread's time: a call runs only
once the steps since the last one have taken as long as it did, so an answer beside an ingestion is written
at about half its speed, its tokens held up by one call at most, and the ingestion goes on at about half
its own. Urgent calls (a search's query) go first, whatever the share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

log = logging.getLogger("respd.llama")
T = TypeVar("T")


class Stepped(Protocol):
    """A model that computes in steps on this thread (:class:`respd.backends.llama_engine.LlamaEngine`)."""

    def admit(self) -> bool:
        """Take in waiting work and drop stopped work; whether a step is due. Called holding the thread's lock."""

    def step(self) -> None:
        """One step of computation (on this thread, without the lock)."""

    def fail(self, error: BaseException) -> None:
        """End all of the model's work with ``error`` (a step raised it)."""


class ComputeThread:
    """The process's llama.cpp thread (see the module docstring); started on first use."""

    def __init__(self) -> None:
        self.lock = threading.Condition()  # guards what is queued here and in every registered engine
        self._urgent: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._engines: list[Stepped] = []
        self._thread: threading.Thread | None = None
        self._owed = 0.0  # seconds background calls ran that the engines' steps have not yet had back

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
        """Run ``fn`` on the thread, between engine steps; ``first``: urgent (before background calls, and
        outside their share of the thread's time)."""
        future: Future[T] = Future()
        with self.lock:
            (self._urgent if first else self._calls).append((fn, future))
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
                    if due or self._urgent or self._calls:
                        break
                    self.lock.wait()
                if not due:
                    self._owed = 0.0  # nothing to share the thread with
                call, background = None, False
                if self._urgent:
                    call = self._urgent.popleft()
                elif self._calls and self._owed <= 0:
                    call, background = self._calls.popleft(), True
            if call is not None:
                started = time.perf_counter()
                _run(*call)
                if background and due:
                    self._owed += time.perf_counter() - started
                due = [e for e in due if e in self._engines]  # the call may have closed one
            for engine in due:
                started = time.perf_counter()
                try:
                    engine.step()
                except Exception as exc:  # an engine's fault ends its own work, not the thread
                    log.exception("a llama.cpp step failed")
                    engine.fail(exc)
                self._owed = max(0.0, self._owed - (time.perf_counter() - started))


def _run(fn: Callable[[], Any], future: Future[Any]) -> None:
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(fn())
        except BaseException as exc:  # the caller's to handle
            future.set_exception(exc)


COMPUTE = ComputeThread()
