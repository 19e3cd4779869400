"""A scripted fake Chat Completions upstream: a real aiohttp server in a background thread.

It speaks the OpenAI Chat Completions wire format the way OpenAI / vLLM do (JSON and SSE), answers with
scripted ``Reply`` objects in FIFO order (or echoes the last user message), records every request, and
notices when its client (respd) goes away before an answer is complete. A scripted entry may also be a
function of the request body that returns the ``Reply``: a later turn of a multi-turn exchange can answer
from what it was sent (a hosted tool's results, say).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

FAULTS = frozenset({"drop", "malformed", "hang", "bad_json"})
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}  # fmt: skip


@dataclass
class Reply:
    """One scripted answer of the upstream model."""

    text: str = ""
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"  # or "reasoning" (newer vLLM)
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments"}
    interleave_tool_calls: bool = False
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    usage: dict[str, Any] | None = None
    chunks: list[str] | None = None  # explicit text pieces; default: words with their leading spaces
    delay_s: float = 0.0  # between streamed chunks (non-stream: per piece, before answering)
    status: int = 200
    error_body: dict[str, Any] | None = None
    fault: str | None = None  # "drop" | "malformed" | "hang" | "bad_json"

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(FAULTS)}")


Scripted = Reply | Callable[[dict[str, Any]], Reply]  # a reply, or one made from the request body


def tool_messages(body: dict[str, Any]) -> list[str]:
    """The contents of the ``tool`` messages of a chat request, in order (what tools gave the model)."""
    return [m["content"] for m in body.get("messages", ()) if isinstance(m, dict) and m.get("role") == "tool"]


class Headers(dict[str, str]):
    """A plain dict of request headers whose lookups ignore case."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self._lower = {k.lower(): k for k in self}

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(self._lower.get(key.lower(), key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lower

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(self._lower.get(key.lower(), key), default)


def split_words(text: str) -> list[str]:
    """``"Hello world"`` -> ``["Hello", " world"]``: words keep their leading whitespace, nothing is lost."""
    return re.findall(r"\s*\S+|\s+$", text)


def _text_of(content: Any) -> str:
    """The text of a message ``content``: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error envelope."""
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message or f"fake upstream error {status}", "type": kind, "param": None,
                      "code": None}}  # fmt: skip


def _prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's token count of a chat request's prompt: its messages' words."""
    messages = body.get("messages") or []
    return sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))


def context_refusal(style: str, window: int, prompt: int) -> dict[str, Any]:
    """The 400 body a server sends for a prompt over its context window, in its own words: vLLM names the window
    in its message, llama.cpp's server in ``n_ctx``, OpenAI (today) not at all."""
    if style == "vllm":
        message = (f"This model's maximum context length is {window} tokens. However, you requested {prompt} tokens "
                   "in the messages, Please reduce the length of the messages.")  # fmt: skip
        return {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    if style == "llama.cpp":
        return {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                          "type": "exceed_context_size_error", "n_prompt_tokens": prompt, "n_ctx": window}}  # fmt: skip
    message = "Your input exceeds the context window of this model. Please adjust your input and try again."
    return {"error": {"message": message, "type": "invalid_request_error", "param": "input",
                      "code": "context_length_exceeded"}}  # fmt: skip


class _Answer:
    """One reply rendered for one request: the stream's deltas, the full message and the usage."""

    def __init__(self, body: dict[str, Any], reply: Reply) -> None:
        self.reply = reply
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = str(body.get("model") or "fake-upstream-model")
        self.pieces = list(reply.chunks) if reply.chunks is not None else split_words(reply.text)
        self.text = "".join(self.pieces)
        reasoning = split_words(reply.reasoning or "")
        self.deltas: list[dict[str, Any]] = [{reply.reasoning_field: p} for p in reasoning]
        self.deltas += [{"content": p} for p in self.pieces]
        self.deltas += [{"refusal": p} for p in split_words(reply.refusal or "")]
        per_call = [self._call_deltas(i, c) for i, c in enumerate(reply.tool_calls)]
        if reply.interleave_tool_calls:
            for n in range(max((len(d) for d in per_call), default=0)):
                self.deltas += [{"tool_calls": [d[n]]} for d in per_call if n < len(d)]
        else:
            self.deltas += [{"tool_calls": [d]} for call in per_call for d in call]
        self.finish_reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        prompt = _prompt_tokens(body)
        self.usage = reply.usage or {
            "prompt_tokens": prompt, "completion_tokens": len(self.deltas),
            "total_tokens": prompt + len(self.deltas), "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": len((reply.reasoning or "").split())},
        }  # fmt: skip
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        # With `logprobs: true`, each text piece is one token with a made-up log probability.
        self.top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None

    @staticmethod
    def _call_deltas(index: int, call: dict[str, Any]) -> list[dict[str, Any]]:
        """The first delta names the call; the rest carry its arguments in fragments."""
        head = {"index": index, "id": call.get("id", f"call_{index}"), "type": "function",
                "function": {"name": call["name"], "arguments": ""}}  # fmt: skip
        args = str(call.get("arguments", ""))
        return [head] + [{"index": index, "function": {"arguments": args[i : i + 8]}} for i in range(0, len(args), 8)]

    def completion(self) -> dict[str, Any]:
        """The whole ``chat.completion`` object."""
        r = self.reply
        message: dict[str, Any] = {"role": "assistant",
                                   "content": self.text if self.text or not (r.tool_calls or r.refusal) else None,
                                   "refusal": r.refusal}  # fmt: skip
        if r.reasoning is not None:
            message[r.reasoning_field] = r.reasoning
        if r.tool_calls:
            message["tool_calls"] = [
                {"id": c.get("id", f"call_{i}"), "type": "function",
                 "function": {"name": c["name"], "arguments": str(c.get("arguments", ""))}}
                for i, c in enumerate(r.tool_calls)
            ]  # fmt: skip
        choice = {"index": 0, "message": message, "logprobs": self.logprobs(self.pieces), "finish_reason": self.finish_reason}
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [choice], "usage": self.usage}  # fmt: skip

    def logprobs(self, pieces: list[str]) -> dict[str, Any] | None:
        """Chat Completions' ``logprobs`` for these text pieces, or None when not asked for."""
        if self.top is None or not pieces:
            return None

        def entry(token: str, rank: int) -> dict[str, Any]:
            return {"token": token, "logprob": -0.5 * (rank + 1), "bytes": list(token.encode())}

        return {"content": [{**entry(p, 0), "top_logprobs": [entry(p, r) for r in range(self.top)]} for p in pieces]}

    def chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict[str, Any]:
        """One ``chat.completion.chunk``; ``delta=None`` makes the final usage-only chunk."""
        out: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": []}  # fmt: skip
        if delta is not None:
            logprobs = self.logprobs([delta["content"]] if delta.get("content") else [])
            out["choices"] = [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
        if self.include_usage:
            out["usage"] = self.usage if delta is None else None
        return out


def serve_until_stopped(loop: asyncio.AbstractEventLoop, runner: Callable[[], web.AppRunner | None]) -> None:
    """A test server's thread: run ``loop`` until it is stopped, then clean up everything on it (the app's
    ``runner``, and requests still being answered)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        app = runner()
        if app is not None:
            loop.run_until_complete(app.cleanup())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


class FakeUpstream:
    """A Chat Completions server on 127.0.0.1 with a scripted FIFO of replies. Use ``start``/``stop`` or ``with``."""

    def __init__(self, models: Sequence[str] = ("fake-upstream-model",), shutdown_timeout: float = 0.5) -> None:
        self.models = list(models)
        self._shutdown_timeout = shutdown_timeout
        self._cond = threading.Condition()
        self._script: list[Scripted] = []
        self._requests: list[dict[str, Any]] = []
        self._disconnects = 0
        self.replied: list[float] = []  # perf_counter() when each streamed answer was all sent
        self._generation = 0  # bumped by reset(): late disconnects of older requests are not counted
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = False
        # what the upstream says of its context window: vLLM's max_model_len in /v1/models, llama.cpp's n_ctx
        # in /props (neither, as the default)
        self.max_model_len: int | None = None
        self.props_n_ctx: int | None = None
        # refuse a prompt of more than this many words (the fake's tokens) as too long for the context window,
        # in the words of `refusal_style`: "vllm", "openai" or "llama.cpp" (see context_refusal)
        self.refuse_over: int | None = None
        self.refusal_style = "vllm"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> None:
        """Serve on a free port in a background thread; returns once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="fake-upstream", daemon=True)
        self._thread.start()
        try:
            self._port = asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop serving (in-flight requests are cut after ``shutdown_timeout``) and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._shutdown_timeout + 10)
        self._thread = None
        self._loop = None
        self._port = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._loop is not None
        serve_until_stopped(self._loop, lambda: self._runner)

    async def _setup(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/props", self._props)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=self._shutdown_timeout)  # fmt: skip
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port: int = self._runner.addresses[0][1]
        return port

    # -- scripting and inspection (thread-safe) ----------------------------------------------------------------

    def script(self, *replies: Scripted) -> None:
        """Queue replies; each chat completion request takes the next one (then falls back to echo). A
        callable is called with the request body, in the server's thread, and returns the reply."""
        with self._cond:
            self._script.extend(replies)

    def reset(self) -> None:
        """Forget the script, the recorded requests and the disconnect count."""
        with self._cond:
            self._script.clear()
            self._requests.clear()
            self.replied.clear()
            self._disconnects = 0
            self._generation += 1

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded chat completion requests, oldest first: ``{"body", "headers", "path", "at"}`` (``at``: its
        ``time.perf_counter()`` on arrival)."""
        with self._cond:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many scripted replies are still unused."""
        with self._cond:
            return len(self._script)

    @property
    def disconnects(self) -> int:
        """How many times a client went away before its answer was complete."""
        with self._cond:
            return self._disconnects

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests were recorded."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Wait until a client dropped ``count`` unfinished answers (a stream before ``[DONE]``, or a hang)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._disconnects >= count, timeout)

    # -- HTTP handlers -----------------------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        window = {"max_model_len": self.max_model_len} if self.max_model_len else {}
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-upstream", **window} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _props(self, request: web.Request) -> web.Response:
        if self.props_n_ctx is None:
            return web.json_response(error_body(404), status=404)
        return web.json_response({"default_generation_settings": {"n_ctx": self.props_n_ctx}, "total_slots": 1})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body(400, "request body is not valid JSON"), status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response(error_body(400, "'messages' is a required property"), status=400)
        prompt = _prompt_tokens(body)
        if self.refuse_over is not None and prompt > self.refuse_over:  # refused before it is generated
            with self._cond:
                self._requests.append({"body": body, "headers": Headers(request.headers.items()),
                                       "path": request.path, "refused": True})  # fmt: skip
                self._cond.notify_all()
            return web.json_response(context_refusal(self.refusal_style, self.refuse_over, prompt), status=400)
        with self._cond:
            self._requests.append({"body": body, "headers": Headers(request.headers.items()), "path": request.path,
                                   "at": time.perf_counter()})  # fmt: skip
            scripted = self._script.pop(0) if self._script else None
            generation = self._generation
            self._cond.notify_all()
        reply = scripted(body) if callable(scripted) else scripted
        if reply is None:
            last_user = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            reply = Reply(text="echo: " + (_text_of(last_user[-1].get("content")) if last_user else ""))
        try:
            return await self._answer(request, body, reply)
        except (asyncio.CancelledError, ConnectionError):
            with self._cond:
                if not self._stopping and generation == self._generation:
                    self._disconnects += 1
                    self._cond.notify_all()
            raise

    async def _answer(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        if reply.status >= 400:
            return web.json_response(reply.error_body or error_body(reply.status), status=reply.status)
        if reply.fault == "hang":
            await asyncio.Event().wait()  # cancelled when the client goes away
        stream = body.get("stream") is True
        if reply.fault == "bad_json" or (reply.fault == "malformed" and not stream):
            return web.Response(status=reply.status, text="<html>upstream garbage", content_type="application/json")
        answer = _Answer(body, reply)
        if not stream:
            await asyncio.sleep(reply.delay_s * max(1, len(answer.deltas)))
            return web.json_response(answer.completion(), status=reply.status)
        return await self._stream(request, answer)

    async def _stream(self, request: web.Request, answer: _Answer) -> web.StreamResponse:
        """Send the answer as SSE frames, or misbehave as the reply's ``fault`` says."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        reply = answer.reply

        async def send(data: str | dict[str, Any]) -> None:
            text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            await resp.write(f"data: {text}\n\n".encode())

        await send(answer.chunk({"role": "assistant", "content": ""}))
        cut = (len(answer.deltas) + 1) // 2 if reply.fault in ("drop", "malformed") else len(answer.deltas)
        for delta in answer.deltas[:cut]:
            await asyncio.sleep(reply.delay_s)
            await send(answer.chunk(delta))
        if reply.fault == "drop":
            await asyncio.sleep(0.05)  # let the sent chunks reach the client first
            if request.transport is not None:
                request.transport.abort()
            return resp
        if reply.fault == "malformed":
            await send('{"id": "' + answer.id + '", "choices": [{"delta": {"content": "broken')
            await send("[DONE]")
            return resp
        await asyncio.sleep(reply.delay_s)
        await send(answer.chunk({}, answer.finish_reason))
        if answer.include_usage:
            await send(answer.chunk(None))
        await send("[DONE]")
        sent = time.perf_counter()  # the answer is all with the client (benchmarks time from it)
        await resp.write_eof()
        self.replied.append(sent)
        return resp
