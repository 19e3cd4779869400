"""Every llama.cpp computation of the process runs on its one llama.cpp thread (respd.backends.llama_thread):
two models and the bundled embedder, called from the event loop and from other threads at once.

Each caller of llama.cpp's CPU backend gets an OpenMP team of its own, kept while it lives; with more teams'
threads than cores libgomp sleeps at every barrier, and generation measured 13-17 % slower (bench/README.md).
``llama_decode`` is wrapped here to see which thread calls it; everything it computes is real. One llama.cpp
thread each (as the suite's other model tests): the thread that calls is what is checked, and on a machine
busy with other tests two threads each degrade far more than one.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

import llama_cpp
import pytest

from respd.backends.base import Finish, ModelRequest, TextDelta
from respd.backends.llama_cpp import LlamaCppBackend
from respd.backends.llama_thread import ComputeThread
from respd.config import ModelRoute
from respd.errors import UpstreamError
from respd.retrieval.embedder import LocalEmbedder


def _request(model: str, text: str, tokens: int) -> ModelRequest:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return ModelRequest(model=model, instructions=None, items=[item], temperature=0, max_output_tokens=tokens)


async def _answer(backend: LlamaCppBackend, request: ModelRequest) -> tuple[str, str | None]:
    text, finish = "", None
    async for out in backend.generate(request):
        for delta in out if isinstance(out, list) else [out]:
            if isinstance(delta, TextDelta):
                text += delta.text
            elif isinstance(delta, Finish):
                finish = delta.reason
    return text, finish


def _route(name: str, slots: int) -> ModelRoute:
    return ModelRoute(name=name, backend="llama_cpp", n_ctx=1024, slots=slots, n_threads=1)


def test_two_models_and_the_embedder_compute_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    callers: set[int] = set()

    def watched(compute: Any) -> Any:
        def seen(ctx: Any, batch: Any) -> int:
            callers.add(threading.get_native_id())
            return int(compute(ctx, batch))

        return seen

    # the package's names (respd's engine) and the binding module's (llama-cpp-python's own Llama.embed)
    for module in (llama_cpp, llama_cpp.llama_cpp):
        for name in ("llama_decode", "llama_encode"):
            monkeypatch.setattr(module, name, watched(getattr(module, name)))

    async def main() -> None:
        first, second = LlamaCppBackend(_route("a", 2)), LlamaCppBackend(_route("b", 1))
        embedder = LocalEmbedder(n_threads=1)
        try:
            texts = [f"Chunk {i} of a manual: hold the reset button for ten seconds." for i in range(5)]
            answers = await asyncio.gather(
                _answer(first, _request("a", "Count from 1 to 20.", 24)),
                _answer(first, _request("a", "Name three colors.", 16)),
                _answer(second, _request("b", "Say hello.", 8)),
                embedder.embed(texts, bulk=True),  # ingestion: a few texts per turn on the thread
                embedder.embed(["how do I reset it?"]),  # a query, before any queued ingestion batch
                asyncio.to_thread(lambda: asyncio.run(embedder.embed(["from another thread"]))),
            )
        finally:
            await first.aclose()
            await second.aclose()
            await embedder.aclose()
        for text, finish in answers[:3]:
            assert text.strip() and finish in ("stop", "length")
        vectors, query, other = answers[3], answers[4], answers[5]
        assert vectors.shape == (5, 384) and query.shape == (1, 384) and other.shape == (1, 384)
        assert abs(float((vectors * vectors).sum(axis=1).mean()) - 1.0) < 1e-3  # unit vectors

    asyncio.run(main())
    assert len(callers) == 1, f"llama.cpp computed on {len(callers)} threads"


def test_closing_a_model_ends_its_running_answer_and_leaves_the_others() -> None:
    async def main() -> None:
        staying, closing = LlamaCppBackend(_route("stay", 1)), LlamaCppBackend(_route("close", 1))
        try:
            stream = closing.generate(_request("close", "Count from 1 to 500.", 400))
            await anext(stream)  # it is generating
            await closing.aclose()
            with pytest.raises(UpstreamError, match="shut down"):
                async for _ in stream:
                    pass
            text, finish = await _answer(staying, _request("stay", "Say hello.", 8))
            assert text.strip() and finish in ("stop", "length")
        finally:
            await staying.aclose()

    asyncio.run(main())


class _Ticker:
    """A model of :class:`respd.backends.llama_thread.Stepped` that takes ``steps`` steps of ~5 ms."""

    def __init__(self, steps: int) -> None:
        self.left = steps
        self.spans: list[tuple[float, float]] = []

    def admit(self) -> bool:
        return self.left > 0

    def step(self) -> None:
        started = time.perf_counter()
        time.sleep(0.005)
        self.left -= 1
        self.spans.append((started, time.perf_counter()))

    def fail(self, error: BaseException) -> None:
        raise AssertionError(f"no step fails here: {error!r}")


def test_background_calls_get_half_the_thread_while_a_model_has_work_and_urgent_ones_go_first() -> None:
    thread = ComputeThread()  # its own, not the process's
    ticker = _Ticker(60)
    spans: list[tuple[str, float, float]] = []

    def work(name: str, seconds: float) -> str:
        started = time.perf_counter()
        time.sleep(seconds)
        spans.append((name, started, time.perf_counter()))
        return name

    background = [thread.call(functools.partial(work, f"ingest-{i}", 0.02)) for i in range(8)]
    thread.register(ticker)
    urgent = thread.call(functools.partial(work, "query", 0.001), first=True)
    assert [f.result(timeout=30) for f in background] == [f"ingest-{i}" for i in range(8)]
    assert urgent.result(timeout=30) == "query"
    deadline = time.monotonic() + 30
    while ticker.left and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.unregister(ticker)
    assert ticker.left == 0
    # the query ran before the background calls queued ahead of it, but for the one running when it came
    order = [name for name, _, _ in sorted(spans, key=lambda s: s[1])]
    assert order.index("query") <= 1
    # while the model had steps to take, the background calls never ran ahead of the steps by more than one
    # call: the time each took is paid back by steps before the next one starts
    last_step = ticker.spans[-1][1]
    calls = [(a, b) for name, a, b in spans if name != "query" and b <= last_step]
    for i, (started, _) in enumerate(calls):
        ran = sum(b - a for a, b in calls[:i] if a >= ticker.spans[0][0])
        stepped = sum(b - a for a, b in ticker.spans if b <= started)
        assert ran <= stepped + 1e-3, f"call {i} started with {ran:.3f} s of calls against {stepped:.3f} s of steps"
