"""The ``llama_cpp`` backend: a GGUF model run inside respd with llama-cpp-python.

One model instance serves one request at a time. Requests wait their turn in FIFO order (an asyncio lock);
the queue is bounded by :meth:`LlamaCppBackend.admit`, which the run calls before any event exists, so a
full queue is a 429 with Retry-After. A waiting request whose client goes away is cancelled out of the
queue. Generation runs on one worker thread (:class:`~respd.backends.llama_engine.LlamaEngine`); its deltas
cross to the event loop through an asyncio queue, and cancelling the iteration sets the turn's stop flag,
which the worker checks between tokens (and between prompt batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from respd.backends import chat_messages as cm
from respd.backends import llama_grammars as grammars
from respd.backends import tool_calls as tc
from respd.backends.base import Abilities, Admission, Delta, ModelRequest, TextDelta, TokenCount
from respd.backends.llama_engine import LlamaEngine, Turn
from respd.backends.llama_sampling import Sampling
from respd.config import ModelRoute
from respd.errors import InvalidRequest, RateLimited, Unsupported, UpstreamError

log = logging.getLogger("respd.llama")

# Sampling when the request leaves it unset: what Qwen2.5 and most small instruct models are tuned for
# (the API's own default, temperature 1, makes a sub-1B model ramble).
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.8
DEFAULT_TOP_K = 20

_END = object()  # the worker has returned


class _Place(Admission):
    """One admitted request, with its output constraints; counted by the backend until released (or
    garbage-collected unreleased)."""

    def __init__(self, backend: LlamaCppBackend, constraints: grammars.Constraints) -> None:
        self.constraints = constraints
        self._backend: LlamaCppBackend | None = backend
        backend.admitted += 1

    def release(self) -> None:
        if self._backend is not None:
            self._backend.admitted -= 1
            self._backend = None

    def __del__(self) -> None:
        # A run whose event stream was never started never reaches its release; don't leak its place.
        self.release()


class LlamaCppBackend:
    """Runs turns on a local GGUF model, one at a time."""

    abilities = Abilities(admission=True, loading=True)

    def __init__(self, route: ModelRoute) -> None:
        self.route = route
        self.admitted = 0  # running + waiting requests that hold a place
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{route.name}")
        self._engine: LlamaEngine | None = None
        self._turn_lock: asyncio.Lock | None = None
        self._turn_s = 5.0  # moving average of a turn's duration, for Retry-After

    # -- lifecycle --------------------------------------------------------------------------------
    async def load(self) -> LlamaEngine:
        """Load the model (once) on the worker thread."""
        if self._engine is None:
            self._engine = await asyncio.get_running_loop().run_in_executor(self._pool, LlamaEngine, self.route)
        return self._engine

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, engine.close)
        self._pool.shutdown(wait=False)

    # -- counting ---------------------------------------------------------------------------------
    def context_window(self) -> int | None:
        if self._engine is not None:
            return self._engine.n_ctx
        return self.route.n_ctx or None  # 0 means the model's trained size, known once it is loaded

    async def count_tokens(self, request: ModelRequest, *, local: bool = False) -> TokenCount:
        """Exact: the prompt generation would evaluate, tokenized by the model's own vocabulary.

        It runs beside the model's worker thread, not behind it: a count never waits for a running turn.
        """
        _check_input(request)
        engine = await self.load()
        messages, shown = _prompt(request)
        tokens = await asyncio.to_thread(engine.prompt_tokens, messages, shown)
        return TokenCount(len(tokens), exact=True)

    # -- admission --------------------------------------------------------------------------------
    def admit(self, request: ModelRequest) -> Admission:
        """A place in the queue, or 429 when it is full; 400 for input this model cannot take."""
        _check_input(request)
        try:
            constraints = _constraints(request)
        except grammars.GrammarError as exc:
            raise InvalidRequest(str(exc), param=exc.param, code="invalid_value") from None
        if self.admitted > self.route.max_queue:
            wait = max(1, math.ceil(self._turn_s * self.admitted))
            raise RateLimited(
                f"The model '{self.route.name}' is busy: {self.admitted} requests are running or waiting for it. "
                f"Retry after {wait} seconds.",
                retry_after=wait,
            )
        return _Place(self, constraints)

    def _lock(self) -> asyncio.Lock:
        if self._turn_lock is None:  # created inside the running loop
            self._turn_lock = asyncio.Lock()
        return self._turn_lock

    # -- generation -------------------------------------------------------------------------------
    async def generate(
        self, request: ModelRequest, admission: Admission | None = None
    ) -> AsyncGenerator[Delta | list[Delta], None]:
        if isinstance(admission, _Place):
            constraints = admission.constraints  # built and checked by admit()
        else:
            try:
                constraints = _constraints(request)
            except grammars.GrammarError as exc:
                raise UpstreamError(str(exc)) from None
        async with self._lock():  # FIFO; a cancelled waiter leaves the queue
            engine = await self.load()
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            turn = _turn(request, constraints, lambda d: loop.call_soon_threadsafe(queue.put_nowait, d))
            started = time.monotonic()
            job = loop.run_in_executor(self._pool, engine.run, turn)
            job.add_done_callback(lambda _: queue.put_nowait(_END))
            try:
                async for deltas in _drain(queue):
                    yield deltas[0] if len(deltas) == 1 else deltas
                failure = job.exception()
                if failure is not None:
                    raise _upstream(failure) from failure
            finally:
                turn.stop.set()
                if not job.done():
                    # the worker stops within a token; wait, so the next turn never overlaps this one
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(job)
                self._turn_s = 0.8 * self._turn_s + 0.2 * (time.monotonic() - started)


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[list[Delta]]:
    """Deltas as they come; what piled up meanwhile comes as one batch, adjacent texts joined."""
    while True:
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        done = items[-1] is _END
        batch: list[Delta] = []
        for item in items[:-1] if done else items:
            if isinstance(item, TextDelta) and batch and isinstance(batch[-1], TextDelta):
                batch[-1] = TextDelta(batch[-1].text + item.text)
            else:
                batch.append(item)
        if batch:
            yield batch
        if done:
            return


def _upstream(exc: BaseException) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    log.error("the local model failed", exc_info=exc)
    return UpstreamError(f"The local model failed: {type(exc).__name__}: {exc}".rstrip(": ") + ".", kind="local_model")


def _check_input(request: ModelRequest) -> None:
    for item in request.items:
        parts = item.get("content") if item.get("type") == "message" else None
        if isinstance(parts, list) and any(part.get("type") == "input_image" for part in parts):
            raise Unsupported("This model reads text only: input images are not supported.", param="input")


def _offered(request: ModelRequest) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(mode, tools shown to the model, tools a call may use), in the Chat Completions dialect."""
    if not request.tools:
        return "none", [], []
    choice, offered = tc.chat_tool_choice(request.tool_choice, request.tools)
    shown = tc.chat_tools(offered)
    if choice == "none":
        return "none", [], []  # not shown either: a small model shown tools tends to call them anyway
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return "required", shown, [t for t in shown if t["function"]["name"] == name]
    return ("required" if choice == "required" else "auto"), shown, shown


def _constraints(request: ModelRequest) -> grammars.Constraints:
    mode, _, callable_tools = _offered(request)
    schema = grammars.text_format_schema(request.text_format)
    # a named function is one call; otherwise as many as parallel_tool_calls allows
    parallel = request.parallel_tool_calls is not False and len(callable_tools) > 0 and mode != "none"
    return grammars.build(callable_tools, mode, schema, parallel and not _named(request))


def _named(request: ModelRequest) -> bool:
    return isinstance(request.tool_choice, dict) and request.tool_choice.get("type") != "allowed_tools"


def _prompt(request: ModelRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The chat messages and the tools shown to the template: what a turn renders (and what is counted)."""
    _, shown, _ = _offered(request)
    return cm.to_messages(request.instructions, request.items), shown


def _turn(request: ModelRequest, constraints: grammars.Constraints, emit: Any) -> Turn:
    messages, shown = _prompt(request)
    sampling = Sampling(
        temp=DEFAULT_TEMPERATURE if request.temperature is None else request.temperature,
        top_p=DEFAULT_TOP_P if request.top_p is None else request.top_p,
        top_k=DEFAULT_TOP_K,
        min_p=0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        presence_penalty=request.presence_penalty or 0.0,
    )
    return Turn(
        messages=messages,
        tools=shown,
        decoder=tc.CallDecoder(request.tools),
        constraints=constraints,
        parallel=request.parallel_tool_calls is not False,
        max_tokens=request.max_output_tokens,
        sampling=sampling,
        emit=emit,
    )
