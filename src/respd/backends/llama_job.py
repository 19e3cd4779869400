"""One request on the local model: what it asks for, and its output as the engine generates it.

A :class:`Job` is prepared on the event loop (chat messages, tools, constraints, sampling, prompt tokens) and
handed to the llama.cpp thread, which runs it in a slot beside other jobs. Its :class:`Output` splits
the generated text into answer text and tool calls and hands each delta to the event loop through ``emit``.
"""

from __future__ import annotations

import bisect
import codecs
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from respd.backends import llama_grammars as grammars
from respd.backends import tool_calls as tc
from respd.backends.base import Delta, FinishReason, TextDelta
from respd.backends.llama_sampling import Sampling
from respd.backends.llama_tools import BrokenCall, Call, CallScanner, CallStarted, Piece, Text
from respd.ids import new_id

log = logging.getLogger("respd.llama")


@dataclass(slots=True)
class Done:
    """The job is over (sent through ``emit`` last): ``error`` when it failed, None otherwise."""

    error: BaseException | None = None


@dataclass(slots=True)
class Job:
    """One request, prepared on the event loop for the llama.cpp thread."""

    prompt: list[int]  # the rendered chat template, tokenized
    decoder: tc.CallDecoder  # maps called names back to the request's tools
    constraints: grammars.Constraints
    parallel: bool
    max_tokens: int  # the request's max_output_tokens, or the route's cap
    sampling: Sampling
    emit: Callable[[Delta | Done], None]  # thread-safe hand-off to the event loop
    # calls already made and answered in this turn (name, compact JSON arguments): the model making one of
    # them again after its output is a loop, answered with text instead (tool_choice auto only)
    answered: frozenset[tuple[str, str]] = frozenset()
    # the prompt without tools, for an answer in text when a call the model began is of no use
    text_prompt: Callable[[], list[int]] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # set by the engine while it runs the job
    output: Output | None = None
    sampler: Any = None
    grammar: str | None = None  # the grammar the sampler applies now
    cached: int = 0  # prompt tokens the KV cache already held
    fallback: bool = False  # a call the model began had to be replaced by its text answer


class Output:
    """The job's output so far: its tokens, their text split into answer text and tool calls, emitted."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.tokens: list[int] = []
        self.calls = 0
        self.useless: str | None = None  # why a call the model wrote was not emitted (it must answer in text)
        self.useless_at = 0  # where that call began, in characters of output
        self._call_at = 0
        self._ends: list[int] = []  # characters of output text after each token
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        c = job.constraints
        self._scanner = CallScanner(set(c.bare_tools) if c.answer is None and c.bare_tools else None)

    @property
    def in_call(self) -> bool:
        """Whether the output ends inside a call the model has not finished."""
        return self._scanner.in_call

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
        self._call_at = self._ends[-1] if self._ends else 0
        self._scanner.restart(self._call_at, started.bare)

    def flush(self) -> None:
        """The end of generation: emit partial UTF-8, held-back text and calls not yet complete."""
        self._emit(self._scanner.feed(self._utf8.decode(b"", final=True)) + self._scanner.flush())

    def close(self) -> None:
        """The end of the output: the decoder's last deltas."""
        for delta in self.job.decoder.flush():
            self.job.emit(delta)

    def answer_in_text(self) -> None:
        """Go back to where the useless call began; what follows is text (the scanner takes no calls)."""
        keep = bisect.bisect_right(self._ends, self.useless_at)
        del self.tokens[keep:], self._ends[keep:]
        self._utf8.reset()
        self._scanner = CallScanner(None)
        self.useless = None

    def finish_reason(self, reason: FinishReason) -> FinishReason:
        """``tool_calls`` when the turn ended on its calls."""
        return "tool_calls" if reason == "stop" and self.calls else reason

    def _emit(self, pieces: list[Piece]) -> CallStarted | None:
        started = None
        job = self.job
        for piece in pieces:
            if isinstance(piece, Text):
                job.emit(TextDelta(piece.text))
            elif isinstance(piece, CallStarted):
                started = started or piece
                self._call_at = piece.at
            elif self.useless is not None:
                continue  # after a useless call, nothing more is emitted: the answer is written again from it
            elif isinstance(piece, Call):
                if (piece.name, piece.arguments) in job.answered:
                    self._useless(f"it repeats a call already answered: {piece.name}({piece.arguments})")
                elif not self.calls or job.parallel:
                    job.emit(job.decoder.feed(self.calls, new_id("call"), piece.name, piece.arguments))
                    self.calls += 1
            elif isinstance(piece, BrokenCall):
                self._useless(f"the model did not finish it: {piece.raw[:200]!r}")
        return started

    def _useless(self, why: str) -> None:
        if self.calls:  # beside calls already made, a useless one is only left out
            log.info("left out a tool call: %s", why)
        else:
            self.useless, self.useless_at = why, self._call_at
