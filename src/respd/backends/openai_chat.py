"""The ``openai`` backend: any OpenAI-compatible Chat Completions upstream (vLLM, llama.cpp, Ollama, OpenAI).

One pool of keep-alive connections per upstream (:mod:`respd.backends.http_client`). A streaming client
gets an upstream stream; a non-streaming one gets one JSON call (cheaper to parse), turned into the same
deltas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from respd.backends import chat_messages as cm
from respd.backends import upstream_window
from respd.backends.base import (
    Abilities,
    Admission,
    Delta,
    Finish,
    FinishReason,
    ModelRequest,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    TokenCount,
    Usage,
)
from respd.backends.http_client import ConnectFailed, HttpClient, HttpError, ReadTimeout, Reply
from respd.backends.token_estimate import BYTES_PER_TOKEN, estimate
from respd.backends.tool_calls import CallDecoder, chat_tool_choice, chat_tools
from respd.config import ModelRoute
from respd.errors import ContextTooLong, UpstreamError
from respd.telemetry.tracing import TRACEPARENT

if TYPE_CHECKING:
    from respd.backends.llama_prompt import ChatPrompt

USER_AGENT = "respd"

log = logging.getLogger("respd.backends")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIChatBackend:
    """Runs turns against ``route.base_url``'s ``/chat/completions``."""

    def __init__(self, route: ModelRoute) -> None:
        self.route = route
        self._http: HttpClient | None = None
        # prefill: the upstream continues a final assistant message (vLLM, llama.cpp), when the route says so
        self.abilities = Abilities(prefill=route.prefill, learns_window=route.context_window is None)
        self._learned: int | None = None  # the window the upstream gave (respd.backends.upstream_window)
        self._asked_at = -math.inf  # when it was last asked (monotonic), so a failed ask is not repeated at once
        self._asking = asyncio.Lock()
        self._chat_prompt: ChatPrompt | None = None  # the route's tokenizer GGUF, loaded at its first count

    async def _tokenizer(self) -> ChatPrompt:
        if self._chat_prompt is None:
            # imported here: loading llama.cpp's library is for routes that count with a GGUF
            from respd.backends.llama_prompt import load_tokenizer

            self._chat_prompt = await asyncio.to_thread(load_tokenizer, self.route.tokenizer)
        return self._chat_prompt

    def _client(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(self.route.base_url, connect_timeout=self.route.connect_timeout_s,
                                    read_timeout=self.route.timeout_s)  # fmt: skip
        return self._http

    async def _post(self, body: dict[str, Any]) -> Reply:
        reply = await self._client().post("/chat/completions", orjson.dumps(body), self._headers())
        if reply.status >= 400:
            try:
                raw = await reply.read()
            finally:
                reply.close()
            message = _error_message(reply.status, raw)
            too_long, window = upstream_window.refusal(reply.status, raw)
            if too_long:
                if window is not None and self.context_window() is None:
                    self._learned = window  # later requests are checked (and truncated) before they are sent
                raise ContextTooLong(message, window=window)
            raise UpstreamError(message, kind=f"http_{reply.status}")
        return reply

    async def aclose(self) -> None:
        if self._http is not None:
            self._http.close()

    def admit(self, request: ModelRequest) -> Admission | None:
        return None  # an upstream queues (or refuses) requests itself

    async def load(self) -> None:
        return None  # nothing to load: the model lives upstream

    def payload(self, req: ModelRequest) -> dict[str, Any]:
        """The Chat Completions request body for ``req``."""
        body: dict[str, Any] = {
            "model": self.route.target_model,
            "messages": cm.to_messages(req.instructions, req.items),
        }
        if req.tools:
            choice, tools = chat_tool_choice(req.tool_choice, req.tools)
            body["tools"] = chat_tools(tools)
            if choice is not None:
                body["tool_choice"] = choice
            if req.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = req.parallel_tool_calls
        fmt = cm.to_response_format(req.text_format)
        if fmt is not None:
            body["response_format"] = fmt
        for key, value in (
            ("temperature", req.temperature),
            ("top_p", req.top_p),
            ("max_tokens", req.max_output_tokens),
            ("frequency_penalty", req.frequency_penalty),
            ("presence_penalty", req.presence_penalty),
            ("reasoning_effort", req.reasoning_effort),
            ("user", req.user),
        ):
            if value is not None:
                body[key] = value
        if req.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = req.top_logprobs
        if req.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if req.prefill is not None:
            # vLLM's spelling; llama.cpp's server continues a final assistant message by itself
            body["messages"].append({"role": "assistant", "content": req.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "*/*", "Accept-Encoding": "identity",
                   "User-Agent": USER_AGENT}  # fmt: skip
        traceparent = TRACEPARENT.get()
        if traceparent:
            headers["traceparent"] = traceparent
        key = self.route.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def context_window(self) -> int | None:
        return self.route.context_window or self._learned

    async def learn_window(self) -> None:
        """Learn the window from the upstream if the route does not set it (see respd.backends.upstream_window)."""
        if self.context_window() is not None or time.monotonic() - self._asked_at < upstream_window.RETRY_S:
            return
        async with self._asking:
            if self.context_window() is not None or time.monotonic() - self._asked_at < upstream_window.RETRY_S:
                return
            self._asked_at = time.monotonic()
            try:
                self._learned = await upstream_window.learn(self.route.base_url, self.route.target_model,
                                                            self._headers())  # fmt: skip
            except Exception:  # learning is an improvement: a request never fails for it
                log.exception("asking %s for its context window failed", self.route.base_url)

    async def count_tokens(self, request: ModelRequest, *, local: bool = False) -> TokenCount:
        """With a ``tokenizer`` GGUF: the request as sent, rendered by its chat template and tokenized by its
        vocabulary (exact when the upstream serves that model). Without: locally an estimate, otherwise the
        upstream's own count, the ``usage.prompt_tokens`` of the same request cut to one output token (exact
        for the upstream's accounting, at the price of a call)."""
        if self.route.tokenizer:
            body = self.payload(request)
            tokenizer = await self._tokenizer()
            return TokenCount(len(await asyncio.to_thread(tokenizer.tokens, body["messages"], body.get("tools", []))),
                              exact=True)  # fmt: skip
        if local:
            return TokenCount(estimate(request), exact=False)
        body = self.payload(replace(request, stream=False, max_output_tokens=1, top_logprobs=None))
        try:
            async with await self._post(body) as reply:
                answer = orjson.loads(await reply.read())
        except (HttpError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(_describe(exc), kind=_kind(exc)) from exc
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(tokens, int):
            raise UpstreamError("The model upstream did not report how many tokens the prompt is.", kind="malformed")
        return TokenCount(tokens, exact=True)

    async def generate(
        self, request: ModelRequest, admission: Admission | None = None
    ) -> AsyncGenerator[list[Delta], None]:
        calls = CallDecoder(request.tools)
        try:
            # closing the reply before its end (the client left) drops the connection: the upstream stops
            async with await self._post(self.payload(request)) as reply:
                if request.stream:
                    async for deltas in _read_stream(reply, calls):
                        yield await self._carried(request, deltas) if request.prefill else deltas
                else:
                    deltas = _read_json(await reply.read(), calls)
                    yield await self._carried(request, deltas) if request.prefill else deltas
        except (HttpError, orjson.JSONDecodeError) as exc:
            raise UpstreamError(_describe(exc), kind=_kind(exc)) from exc


    async def _carried(self, request: ModelRequest, deltas: list[Delta]) -> list[Delta]:
        """A continuation's usage as the whole answer's: the upstream counts the partial answer it went on from
        (the prefill) as prompt; those tokens were output of this response, so they move to ``output_tokens``.
        The prompt without them is the upstream's own count (one more call, at a takeover's end only), or an
        estimate of the prefill if that call fails."""
        for delta in deltas:
            if isinstance(delta, Usage):
                assert request.prefill is not None
                try:
                    base = (await self.count_tokens(replace(request, prefill=None), local=False)).tokens
                    carried = max(0, delta.input_tokens - base)
                except UpstreamError:
                    carried = min(delta.input_tokens, math.ceil(len(request.prefill.encode()) / BYTES_PER_TOKEN))
                delta.input_tokens -= carried
                delta.output_tokens += carried
        return deltas


def _kind(exc: BaseException) -> str:
    if isinstance(exc, ReadTimeout):
        return "timeout"
    if isinstance(exc, ConnectFailed):
        return "connect"
    return "malformed" if isinstance(exc, orjson.JSONDecodeError) else "connection"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ReadTimeout):
        return "The model upstream timed out."
    if isinstance(exc, ConnectFailed):
        return f"The model upstream is unreachable: {exc}."
    if isinstance(exc, orjson.JSONDecodeError):
        return "The model upstream sent a malformed response."
    return f"The model upstream failed: {type(exc).__name__}: {exc}".rstrip(": ") + "."


def _error_message(status: int, raw: bytes) -> str:
    try:
        detail = orjson.loads(raw)["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        detail = raw[:300].decode(errors="replace")
    return f"The model upstream answered {status}: {detail}"


def _usage(raw: dict[str, Any]) -> Usage:
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _logprobs(choice: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Chat Completions' per-token log probabilities, in the Responses shape (the same fields)."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return [{**_token(t), "top_logprobs": [_token(a) for a in t.get("top_logprobs") or ()]} for t in content]


def _token(t: dict[str, Any]) -> dict[str, Any]:
    return {"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes") or list(t["token"].encode())}


def _message_deltas(choice: dict[str, Any], msg: dict[str, Any], calls: CallDecoder, out: list[Delta]) -> None:
    """Append the deltas in a whole ``message`` or in one chunk's ``delta`` (the same fields, in pieces) to
    ``out``. (Run for every streamed token: each lookup is made once.)"""
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")  # vLLM/llama.cpp name it either way
    if reasoning:
        out.append(ReasoningDelta(reasoning))
    refusal = msg.get("refusal")
    if refusal:
        out.append(RefusalDelta(refusal))
    content = msg.get("content")
    if content:
        out.append(TextDelta(content, _logprobs(choice) if choice.get("logprobs") else None))
    tool_calls = msg.get("tool_calls")
    if tool_calls:
        for i, call in enumerate(tool_calls):
            fn = call.get("function") or {}
            out.append(calls.feed(call.get("index", i), call.get("id"), fn.get("name"), fn.get("arguments") or ""))


def _read_json(raw: bytes, calls: CallDecoder) -> list[Delta]:
    body = orjson.loads(raw)
    if not isinstance(body, dict) or not body.get("choices"):
        raise UpstreamError("The model upstream sent a completion without choices.", kind="malformed")
    choice = body["choices"][0]
    out: list[Delta] = []
    _message_deltas(choice, choice.get("message") or {}, calls, out)
    out += calls.flush()
    usage = body.get("usage")
    if usage:
        out.append(_usage(usage))
    out.append(Finish(_FINISH.get(choice.get("finish_reason") or "stop", "stop")))
    return out


def _chunk_deltas(chunk: dict[str, Any], calls: CallDecoder, out: list[Delta]) -> None:
    """Append the deltas of one streamed chunk to ``out``."""
    for choice in chunk.get("choices") or ():
        _message_deltas(choice, choice.get("delta") or {}, calls, out)
        reason = choice.get("finish_reason")
        if reason:
            out.append(Finish(_FINISH.get(reason, "stop")))
    usage = chunk.get("usage")
    if usage:
        out.append(_usage(usage))


async def _read_stream(resp: Reply, calls: CallDecoder) -> AsyncIterator[list[Delta]]:
    """Parse the upstream's SSE, one list of deltas per network read (so the client gets one write per read).

    The finish is held back until usage (which comes after it) or ``[DONE]``.
    """
    finish: Finish | None = None
    buffer = b""
    done = False
    async for block in resp.chunks():
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        out: list[Delta] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            _chunk_deltas(orjson.loads(data), calls, out)
        for delta in out:
            if isinstance(delta, Finish):
                finish = delta
        if finish is not None:
            out = [delta for delta in out if not isinstance(delta, Finish)]
        if out:
            yield out
        if done:
            break
    if finish is None:
        raise UpstreamError("The model upstream closed the stream before it finished.", kind="stream_cut")
    yield [*calls.flush(), finish]
