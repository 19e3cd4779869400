"""A loaded GGUF model and its one context: prompt rendering, prefix reuse, and the token loop.

Everything here is synchronous and runs on the backend's single worker thread (a llama.cpp context is not
thread-safe); :mod:`respd.backends.llama_cpp` queues requests in front of it and carries the deltas to the
event loop. The KV cache persists between turns: a prompt that extends what the context already holds (the
next turn of a ``previous_response_id`` chain) only evaluates its new tokens, and the context of another
conversation is set aside in a bounded :class:`StateCache` before it is overwritten.
"""

from __future__ import annotations

import bisect
import codecs
import ctypes
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from respd.backends import llama_grammars as grammars
from respd.backends import llama_load
from respd.backends import tool_calls as tc
from respd.backends.base import Delta, Finish, FinishReason, TextDelta, Usage
from respd.backends.bundled import bundled_path, verify
from respd.backends.llama_prompt import ChatPrompt
from respd.backends.llama_sampling import Sampler, Sampling, grammar_compiles
from respd.backends.llama_tools import Call, CallScanner, CallStarted, Piece, Text
from respd.config import ModelRoute
from respd.errors import UpstreamError
from respd.ids import new_id

log = logging.getLogger("respd.llama")

MIN_SAVED_TOKENS = 64  # a context shorter than this is cheaper to re-read than to save and restore
PROMPT_CHUNK = 128  # prompt tokens read between checks for a cancelled request (~0.5 s on 2 cores)
MAX_CHECKED_GRAMMARS = 256  # grammars remembered as parsed; beyond, the memory starts over

@dataclass(slots=True)
class Turn:
    """One request, prepared on the event loop for the worker thread."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]  # Chat Completions tools offered to the template ([] when none)
    decoder: tc.CallDecoder  # maps called names back to the request's tools
    constraints: grammars.Constraints
    parallel: bool
    max_tokens: int | None
    sampling: Sampling
    emit: Callable[[Delta], None]  # thread-safe hand-off to the event loop
    stop: threading.Event = field(default_factory=threading.Event)


def _lcp(a: Any, b: Any) -> int:
    """Length of the longest common prefix of two token sequences (lists, tuples or arrays)."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(differ[0]) if differ.size else n


class StateCache:
    """Saved KV caches of set-aside conversations, least recently used first out, bounded in bytes."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self._entries: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._size = 0

    def put(self, tokens: tuple[int, ...], state: bytes) -> None:
        """Keep ``state`` (the KV cache after ``tokens``); drop entries it extends, then the oldest."""
        if len(state) > self.capacity:
            return
        for key in [k for k in self._entries if tokens[: len(k)] == k]:
            self._size -= len(self._entries.pop(key))
        self._entries[tokens] = state
        self._size += len(state)
        while self._size > self.capacity:
            _, old = self._entries.popitem(last=False)
            self._size -= len(old)

    def best(self, prompt: list[int]) -> tuple[tuple[int, ...], bytes] | None:
        """The saved entry sharing the longest prefix with ``prompt`` (it becomes the most recently used)."""
        best: tuple[int, tuple[int, ...]] | None = None
        for key in self._entries:
            n = _lcp(key, prompt)
            if n and (best is None or n > best[0]):
                best = (n, key)
        if best is None:
            return None
        self._entries.move_to_end(best[1])
        return best[1], self._entries[best[1]]


class LlamaEngine:
    """One GGUF model with one context. Not thread-safe: one worker thread drives it."""

    def __init__(self, route: ModelRoute) -> None:
        path = self._model_file(route)
        threads = route.n_threads or os.cpu_count() or 1
        t0 = time.monotonic()
        self.llm = llama_load.load(str(path), n_ctx=route.n_ctx, n_batch=route.n_batch, n_ubatch=route.n_batch,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)  # fmt: skip
        self.n_ctx = self.llm.n_ctx()
        self.prompt = ChatPrompt(self.llm, route.chat_template, f"model {route.name!r}")
        self.cache = StateCache(route.cache_mb << 20)
        self._pieces: dict[int, bytes] = {}
        self._checked: set[str] = set()  # grammars llama.cpp has parsed
        log.info("loaded %s (%s) in %.1fs: n_ctx=%d threads=%d", route.name, path, time.monotonic() - t0,
                 self.n_ctx, threads)  # fmt: skip

    @staticmethod
    def _model_file(route: ModelRoute) -> Path:
        """The GGUF to load, checked against its sha256 first (always for the bundled model)."""
        if not route.path:
            return bundled_path()
        path = Path(route.path)
        if route.sha256:
            verify(path, route.sha256)
        return path

    def close(self) -> None:
        """Free the model and its context."""
        self.llm.close()

    # -- prompt -----------------------------------------------------------------------------------
    def prompt_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        """The turn's prompt as tokens (see :class:`ChatPrompt`): safe beside a running turn."""
        return self.prompt.tokens(messages, tools)

    # -- context ----------------------------------------------------------------------------------
    def _save_state(self) -> bytes:
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        return ctypes.string_at(buf, n)

    def _load_state(self, tokens: tuple[int, ...], state: bytes) -> None:
        llm = self.llm
        llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(state), 0) != len(state):
            raise RuntimeError("could not restore a saved KV cache")
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)

    def prepare_context(self, prompt: list[int], stop: threading.Event) -> int:
        """Make the context hold ``prompt[:-1]``, reusing what it (or the state cache) has; returns the
        number of prompt tokens not evaluated again. The last token is left for sampling, which needs fresh
        logits from it. Stops early (between chunks of the prompt) once ``stop`` is set."""
        llm = self.llm
        live = min(_lcp(llm.input_ids[: llm.n_tokens], prompt), len(prompt) - 1)
        if llm.n_tokens - live >= MIN_SAVED_TOKENS and self.cache.capacity:
            # another conversation is about to overwrite this one: set its KV cache aside
            self.cache.put(tuple(llm.input_ids[: llm.n_tokens].tolist()), self._save_state())
        reused = live
        saved = self.cache.best(prompt) if self.cache.capacity else None
        if saved is not None:
            key, state = saved
            n = min(_lcp(key, prompt), len(prompt) - 1)
            if n > live + MIN_SAVED_TOKENS // 4:
                self._load_state(key, state)
                reused = n
        llm.n_tokens = reused
        llm._ctx.kv_cache_seq_rm(-1, reused, -1)
        rest = prompt[reused:-1]
        for i in range(0, len(rest), PROMPT_CHUNK):
            if stop.is_set():
                break
            llm.eval(rest[i : i + PROMPT_CHUNK])
        return reused

    # -- generation -------------------------------------------------------------------------------
    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[: max(n, 0)]
        return piece

    def run(self, turn: Turn) -> None:
        """Generate the turn, handing each delta to ``turn.emit``; ends with Usage and Finish (unless stopped)."""
        prompt = self.prompt_tokens(turn.messages, turn.tools)
        if len(prompt) >= self.n_ctx:
            raise UpstreamError(
                f"The input is {len(prompt)} tokens, more than this model's context window of {self.n_ctx} tokens."
            )
        cached = self.prepare_context(prompt, turn.stop)
        if turn.stop.is_set():
            return
        out = _Output(turn)
        grammar = turn.constraints.answer
        reason: FinishReason | None = None
        while reason is None:
            reason, started = self._sample(prompt, grammar, turn, out)
            if started is not None:
                # The model began a call on its own: write it again from its start, under the call grammar.
                out.rewind(started)
                grammar = turn.constraints.bare if started.bare else turn.constraints.tagged
        if turn.stop.is_set():
            return
        out.close()
        turn.emit(Usage(input_tokens=len(prompt), output_tokens=len(out.tokens), cached_tokens=cached))
        turn.emit(Finish(out.finish_reason(reason)))

    def _check_grammar(self, grammar: str) -> None:
        if grammar not in self._checked:
            if not grammar_compiles(self.llm._model.vocab, grammar):
                raise UpstreamError("The output constraint could not be compiled to a grammar.")
            if len(self._checked) >= MAX_CHECKED_GRAMMARS:
                self._checked.clear()
            self._checked.add(grammar)

    def _sample(
        self, prompt: list[int], grammar: str | None, turn: Turn, out: _Output
    ) -> tuple[FinishReason | None, CallStarted | None]:
        """Generate after ``prompt`` and the output so far, until the turn ends (a reason) or the model
        begins a call that must be written again under a grammar (its start)."""
        llm = self.llm
        vocab = llm._model.vocab
        watch = grammar is None and turn.constraints.tagged is not None
        if grammar is not None:
            self._check_grammar(grammar)
        tokens = prompt + out.tokens
        # the context holds all but the last of `tokens` (prefix reuse); evaluating the rest gives fresh logits
        kept = min(_lcp(llm.input_ids[: llm.n_tokens], tokens), len(tokens) - 1)
        llm.n_tokens = kept
        llm.eval(tokens[kept:])
        sampler = Sampler(vocab, turn.sampling, grammar)
        try:
            while True:
                token = sampler.sample(llm.ctx)
                if turn.stop.is_set() or llama_cpp.llama_vocab_is_eog(vocab, token):
                    return "stop", None
                started = out.feed(token, self._piece(token))
                if turn.max_tokens is not None and len(out.tokens) >= turn.max_tokens:
                    return "length", None
                if llm.n_tokens + 1 >= self.n_ctx:
                    return "length", None
                if started is not None and watch:
                    return None, started
                llm.eval([token])
        finally:
            sampler.close()


class _Output:
    """The turn's output so far: its tokens, their text split into answer text and tool calls, emitted."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.tokens: list[int] = []
        self.calls = 0
        self._ends: list[int] = []  # characters of output text after each token
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        c = turn.constraints
        self._scanner = CallScanner(set(c.bare_tools) if c.answer is None and c.bare_tools else None)

    def feed(self, token: int, piece: bytes) -> CallStarted | None:
        """Take one generated token; returns the start of a call it revealed, if any."""
        self.tokens.append(token)
        text = self._utf8.decode(piece)
        self._ends.append((self._ends[-1] if self._ends else 0) + len(text))
        return self._emit(self._scanner.feed(text)) if text else None

    def rewind(self, started: CallStarted) -> None:
        """Drop the tokens from the one where ``started`` begins on (the call is written again)."""
        keep = bisect.bisect_right(self._ends, started.at)
        del self.tokens[keep:], self._ends[keep:]
        self._utf8.reset()
        self._scanner.restart(self._ends[-1] if self._ends else 0, started.bare)

    def close(self) -> None:
        """The end: flush partial UTF-8, held-back text and unfinished calls."""
        self._emit(self._scanner.feed(self._utf8.decode(b"", final=True)) + self._scanner.flush())
        for delta in self.turn.decoder.flush():
            self.turn.emit(delta)

    def finish_reason(self, reason: FinishReason) -> FinishReason:
        """``tool_calls`` when the turn ended on its calls."""
        return "tool_calls" if reason == "stop" and self.calls else reason

    def _emit(self, pieces: list[Piece]) -> CallStarted | None:
        started = None
        for piece in pieces:
            if isinstance(piece, Text):
                self.turn.emit(TextDelta(piece.text))
            elif isinstance(piece, CallStarted):
                started = started or piece
            elif isinstance(piece, Call):
                if self.calls and not self.turn.parallel:
                    continue
                self.turn.emit(self.turn.decoder.feed(self.calls, new_id("call"), piece.name, piece.arguments))
                self.calls += 1
            else:
                # only a call cut short by the token limit: the response ends incomplete without it
                log.info("dropped an unfinished tool call: %.200s", piece.raw)
        return started
