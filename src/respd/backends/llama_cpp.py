"""The ``llama_cpp`` backend: a GGUF model run inside respd with llama-cpp-python.

Several requests run at once, one per slot of the model's context (continuous batching, see
:class:`~respd.backends.llama_engine.LlamaEngine`); more wait in FIFO order. The number that may run or wait
is bounded by :meth:`LlamaCppBackend.admit`, which the run calls before any event exists, so a full queue is
a 429 with Retry-After. Deltas cross from the llama.cpp thread to the event loop through an asyncio
queue; closing the iteration (a cancel, a client gone) sets the job's stop flag, and its slot is free for
the next request at the engine's next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from respd.backends import chat_messages as cm
from respd.backends import llama_grammars as grammars
from respd.backends import tool_calls as tc
from respd.backends.base import Abilities, Admission, Delta, ModelRequest, TextDelta, TokenCount
from respd.backends.llama_engine import LlamaEngine, default_slots
from respd.backends.llama_job import Done, Job
from respd.backends.llama_sampling import Sampling
from respd.config import ModelRoute
from respd.errors import InvalidRequest, RateLimited, Unsupported, UpstreamError

log = logging.getLogger("respd.llama")

# Sampling when neither the request nor the route sets it: what Qwen2.5 and most small instruct models are
# tuned for (the API's own default, temperature 1, makes a sub-1B model ramble). The route's values are
# filled into the request before the run starts, so the response reports what was used.
DEFAULT_TOP_K = 20
DRY_MULTIPLIER = 0.8  # the repetition guard on free text (see llama_sampling)
REPEAT_PENALTY = 1.1


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
    """Runs turns on a local GGUF model, several at once."""

    abilities = Abilities(admission=True, loading=True)

    def __init__(self, route: ModelRoute) -> None:
        self.route = route
        self.slots = route.slots or default_slots()
        self.admitted = 0  # running + waiting requests that hold a place
        self._engine: LlamaEngine | None = None
        self._loading: asyncio.Task[LlamaEngine] | None = None
        self._turn_s = 5.0  # moving average of a turn's duration, for Retry-After

    # -- lifecycle --------------------------------------------------------------------------------
    async def load(self) -> LlamaEngine:
        """Load the model (once), off the event loop."""
        if self._engine is None:
            if self._loading is None:
                self._loading = asyncio.ensure_future(asyncio.to_thread(LlamaEngine, self.route))
            self._engine = await asyncio.shield(self._loading)
        return self._engine

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.close)

    # -- counting ---------------------------------------------------------------------------------
    def context_window(self) -> int | None:
        if self._engine is not None:
            return self._engine.n_ctx
        return self.route.n_ctx or None  # 0 means the model's trained size, known once it is loaded

    async def count_tokens(self, request: ModelRequest, *, local: bool = False) -> TokenCount:
        """Exact: the prompt generation would evaluate, tokenized by the model's own vocabulary.

        It runs beside the llama.cpp thread, not behind it: a count never waits for a running turn.
        """
        _check_input(request)
        engine = await self.load()
        messages, shown = _prompt(request)
        tokens = await asyncio.to_thread(engine.prompt_tokens, messages, shown)
        return TokenCount(len(tokens), exact=True)

    # -- admission --------------------------------------------------------------------------------
    def admit(self, request: ModelRequest) -> Admission:
        """A place (a slot, or the queue behind the slots), or 429 when all are taken; 400 for input this
        model cannot take."""
        _check_input(request)
        try:
            constraints = _constraints(request)
        except grammars.GrammarError as exc:
            raise InvalidRequest(str(exc), param=exc.param, code="invalid_value") from None
        if self.admitted >= self.slots + self.route.max_queue:
            wait = max(1, math.ceil(self._turn_s * (self.admitted - self.slots + 1) / self.slots))
            raise RateLimited(
                f"The model '{self.route.name}' is busy: {self.admitted} requests are running or waiting for it. "
                f"Retry after {wait} seconds.",
                retry_after=wait,
            )
        return _Place(self, constraints)

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
        engine = await self.load()
        messages, shown = _prompt(request)
        prompt = await asyncio.to_thread(engine.prompt_tokens, messages, shown)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        job = _job(request, self.route, engine, constraints, prompt, _emitter(loop, queue))
        engine.submit(job)
        started = time.monotonic()
        try:
            async for deltas in _drain(queue):
                yield deltas[0] if len(deltas) == 1 else deltas
        finally:
            if not job.stop.is_set():
                job.stop.set()
                engine.wake()  # a waiting job leaves the queue now; a running one frees its slot at the next step
            self._turn_s = 0.8 * self._turn_s + 0.2 * (time.monotonic() - started)


def _emitter(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> Callable[[Delta | Done], None]:
    def emit(item: Delta | Done) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed (shutdown): nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    return emit


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[list[Delta]]:
    """Deltas as they come; what piled up meanwhile comes as one batch, adjacent texts joined. Raises the
    job's error at its end."""
    while True:
        items = [await queue.get()]
        while not queue.empty():
            items.append(queue.get_nowait())
        done = items[-1] if isinstance(items[-1], Done) else None
        batch: list[Delta] = []
        for item in items[:-1] if done else items:
            if isinstance(item, TextDelta) and batch and isinstance(batch[-1], TextDelta):
                batch[-1] = TextDelta(batch[-1].text + item.text)
            else:
                batch.append(item)
        if batch:
            yield batch
        if done is not None:
            if done.error is not None:
                raise _upstream(done.error) from done.error
            return


def _upstream(exc: BaseException) -> UpstreamError:
    if isinstance(exc, UpstreamError):
        return exc
    log.error("the local model failed", exc_info=exc)
    return UpstreamError(f"The local model failed: {type(exc).__name__}: {exc}".rstrip(": ") + ".", kind="local_model")


def _check_input(request: ModelRequest) -> None:
    for item in request.items:
        parts = item.get("content") if item.get("type") == "message" else None
        screenshot = item.get("type") == "computer_call_output" and item["output"].get("image_url")
        if screenshot or (isinstance(parts, list) and any(part.get("type") == "input_image" for part in parts)):
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


def _job(request: ModelRequest, route: ModelRoute, engine: LlamaEngine, constraints: grammars.Constraints,
         prompt: list[int], emit: Callable[[Delta | Done], None]) -> Job:  # fmt: skip
    sampling = Sampling(
        temp=request.temperature if request.temperature is not None else route.temperature or 0.0,
        top_p=request.top_p if request.top_p is not None else route.top_p or 1.0,
        top_k=DEFAULT_TOP_K,
        min_p=0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        presence_penalty=request.presence_penalty or 0.0,
        dry_multiplier=DRY_MULTIPLIER,
        repeat_penalty=REPEAT_PENALTY,
    )
    # a request without max_output_tokens stops at the route's cap (ending incomplete), never runs away
    messages = cm.to_messages(request.instructions, request.items)
    return Job(
        prompt=prompt,
        decoder=tc.CallDecoder(request.tools),
        constraints=constraints,
        parallel=request.parallel_tool_calls is not False,
        max_tokens=request.max_output_tokens or route.max_output_tokens or 1 << 30,
        sampling=sampling,
        emit=emit,
        answered=_answered(request.items),
        text_prompt=(lambda: engine.prompt_tokens(_answer_from_results(messages), [])) if request.tools else None,
    )


# The note a text answer after a useless tool call is written under (see LlamaEngine._answer_in_text).
TEXT_NOTE = ("The tool results are above. Answer the user's last message in plain sentences, using those results. "
             "Do not call tools.")


def _answer_from_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with :data:`TEXT_NOTE` added to the system message."""
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{TEXT_NOTE}"}, *messages[1:]]
    return [{"role": "system", "content": TEXT_NOTE}, *messages]


def _answered(items: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """The function calls of the current turn (since the last user message) that have their output, as
    (name the model uses, compact JSON arguments)."""
    outputs = set()
    calls = []
    for item in reversed(items):
        kind = item.get("type")
        if kind == "message" and item.get("role") == "user":
            break
        if kind == "function_call_output":
            outputs.add(item.get("call_id"))
        elif kind == "function_call" and item.get("call_id") in outputs:
            try:
                args = json.dumps(json.loads(item.get("arguments") or "{}"), ensure_ascii=False, separators=(",", ":"))
            except ValueError:
                continue
            calls.append((tc.flat_name(item.get("namespace"), item["name"]), args))
    return frozenset(calls)
