"""A loaded GGUF model and its one context, run by continuous batching: several requests at once.

As llama.cpp's own server does with parallel slots: the context holds one sequence per slot in a unified KV
cache, and every step is one ``llama_decode`` of a batch that advances each running request by one token
and reads a chunk of any prompt still being read; a new request joins at the next step, and a cancelled one
leaves it at once. Each request samples from its own logits with its own sampler (its grammar, when its
output is constrained). Everything touching the context runs on the process's llama.cpp thread (a context
is not thread-safe, and one thread keeps one OpenMP team: :mod:`respd.backends.llama_thread`), a step at a
time; :mod:`respd.backends.llama_cpp` queues requests in front of it and carries the deltas to the event loop.
Which slot a prompt goes to and what it reuses: :mod:`respd.backends.llama_slots`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

import llama_cpp

from respd.backends import llama_load
from respd.backends.base import Finish, FinishReason, Usage
from respd.backends.bundled import bundled_path, verify
from respd.backends.llama_grammars import TEXT_START, Constraints
from respd.backends.llama_job import Done, Job, Output
from respd.backends.llama_prompt import ChatPrompt
from respd.backends.llama_sampling import Guards, Sampler, grammar_compiles
from respd.backends.llama_slots import Slot, SlotTable
from respd.backends.llama_thread import COMPUTE
from respd.config import ModelRoute
from respd.errors import UpstreamError

log = logging.getLogger("respd.llama")

# Prompt tokens read in a step while other requests are generating: a bigger chunk reads a prompt a little
# faster but holds every running answer for its duration (~0.5 s for 128 tokens on 2 cores).
PROMPT_CHUNK = 128
MAX_CHECKED_GRAMMARS = 256  # grammars remembered as parsed; beyond, the memory starts over


def default_slots() -> int:
    """Requests run at once when the config does not say: two per core, 2 to 8 (measured in bench/README.md)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class _Batch:
    """A ``llama_batch`` filled in place, one sequence id per token."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.raw = llama_cpp.llama_batch_init(size, 0, 1)
        self.n = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        raw, i = self.raw, self.n
        raw.token[i], raw.pos[i], raw.n_seq_id[i], raw.logits[i] = token, pos, 1, logits
        raw.seq_id[i][0] = seq
        self.n = raw.n_tokens = i + 1

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.raw)


class LlamaEngine:
    """One GGUF model with one context of ``slots`` sequences, stepped by the llama.cpp thread."""

    def __init__(self, route: ModelRoute) -> None:
        path = self._model_file(route)
        threads = route.n_threads or os.cpu_count() or 1
        t0 = time.monotonic()
        # The Llama object holds the weights, vocabulary and chat template; its own context is a token one.
        # The context that runs requests is made below, with one sequence per slot.
        self.llm = llama_load.load(str(path), n_ctx=256, n_batch=32, n_ubatch=32, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)  # fmt: skip
        self.n_ctx = route.n_ctx or self.llm._model.n_ctx_train()  # one request's window
        self.n_slots = route.slots or default_slots()
        params = llama_cpp.llama_context_default_params()
        # Every slot may fill the whole window: the unified KV cache has room for all of them at once.
        params.n_ctx = self.n_ctx * self.n_slots
        params.n_batch = params.n_ubatch = max(route.n_batch, self.n_slots)  # a step holds a token of each slot
        params.n_seq_max = self.n_slots
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.llm._model.model, params)
        if not self.ctx:
            raise UpstreamError(f"llama.cpp could not make a context of {params.n_ctx} tokens for {route.name!r}.")
        self.vocab = self.llm._model.vocab
        self.guards = Guards(self.vocab)
        self.prompt = ChatPrompt(self.llm, route.chat_template, f"model {route.name!r}")
        self.table = SlotTable(self.ctx, self.n_slots, route.cache_mb << 20)
        self._batch = _Batch(params.n_batch)
        self._pieces: dict[int, bytes] = {}
        self._checked: set[str] = set()  # grammars llama.cpp has parsed
        self._waiting: deque[Job] = deque()  # guarded by COMPUTE.lock
        self._starting: list[Job] = []  # taken from the queue by admit(), started by the next step
        COMPUTE.register(self)
        log.info("loaded %s (%s) in %.1fs: n_ctx=%d slots=%d threads=%d", route.name, path, time.monotonic() - t0,
                 self.n_ctx, self.n_slots, threads)  # fmt: skip

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
        """Stop (running and waiting jobs end with an error) and free the context and the model; not from the
        compute thread."""
        COMPUTE.call(self._shut).result()

    def _shut(self) -> None:
        COMPUTE.unregister(self)
        with COMPUTE.lock:
            waiting, self._waiting = list(self._waiting), deque()
        self.fail(UpstreamError("The local model was shut down."), [*waiting, *self._starting])
        self._batch.free()
        self.guards.close()
        llama_cpp.llama_free(self.ctx)
        self.llm.close()

    # -- the event loop's side --------------------------------------------------------------------
    def prompt_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[int]:
        """The turn's prompt as tokens (see :class:`ChatPrompt`): safe on any thread."""
        return self.prompt.tokens(messages, tools)

    def submit(self, job: Job) -> None:
        """Queue ``job``; it starts in the first free slot, in order. Its deltas and :class:`Done` go to
        ``job.emit``; setting ``job.stop`` ends it at the next step (no Finish)."""
        if len(job.prompt) >= self.n_ctx:
            raise UpstreamError(f"The input is {len(job.prompt)} tokens, more than this model's context window "
                                f"of {self.n_ctx} tokens.")  # fmt: skip
        with COMPUTE.lock:
            self._waiting.append(job)
            COMPUTE.lock.notify()

    def wake(self) -> None:
        """Have the compute thread look at stop flags now (a cancelled job that waits is dropped at once)."""
        COMPUTE.wake()

    # -- the compute thread (respd.backends.llama_thread) ---------------------------------------------
    def admit(self) -> bool:
        """Drop stopped jobs, take waiting ones into free slots; whether a step is due. Under COMPUTE.lock."""
        for job in [j for j in self._waiting if j.stop.is_set()]:
            self._waiting.remove(job)
            job.emit(Done())
        for slot in self.table.busy():
            if slot.job is not None and slot.job.stop.is_set():
                self._end(slot)
        while self._waiting and len(self._starting) < len(self.table.free()):
            self._starting.append(self._waiting.popleft())
        return bool(self._starting or self.table.busy())

    def step(self) -> None:
        """Start the jobs admitted, then one decode (see :meth:`_decode`)."""
        starting, self._starting = self._starting, []
        for job in starting:
            try:
                self._start(job)
            except Exception as exc:  # a job that cannot start fails alone
                if job.sampler is not None:
                    job.sampler.close()
                    job.sampler = None
                job.emit(Done(exc))
        if self.table.busy():
            self._decode()

    def fail(self, error: BaseException, jobs: list[Job] | None = None) -> None:
        """End every running job, and ``jobs`` not yet started, with ``error``."""
        for slot in self.table.busy():
            self._end(slot, error)
        for job in jobs or []:
            job.emit(Done(error))

    def _start(self, job: Job) -> None:
        job.output = Output(job)
        self._set_grammar(job, job.constraints.answer)
        self.table.place(job)

    def _set_grammar(self, job: Job, grammar: str | None) -> None:
        if grammar is not None and grammar not in self._checked:
            if not grammar_compiles(self.vocab, grammar):
                raise UpstreamError("The output constraint could not be compiled to a grammar.")
            if len(self._checked) >= MAX_CHECKED_GRAMMARS:
                self._checked.clear()
            self._checked.add(grammar)
        if job.sampler is not None:
            job.sampler.close()
        job.sampler, job.grammar = Sampler(self.guards, job.sampling, grammar), grammar

    def _decode(self) -> None:
        """One decode: a token of every generating slot, then prompt chunks as room allows; then sampling."""
        batch, busy = self._batch, self.table.busy()
        batch.n = batch.raw.n_tokens = 0
        generating = [s for s in busy if len(s.pending) == 1]
        reading = [s for s in busy if len(s.pending) > 1]
        room = batch.size - len(generating)
        if generating:
            room = min(room, PROMPT_CHUNK)
        sampled: list[tuple[Slot, int]] = []
        taken: list[tuple[Slot, int]] = []
        for slot in generating + reading:
            n = len(slot.pending) if slot in generating else min(len(slot.pending), room)
            if n <= 0:
                continue
            if slot not in generating:
                room -= n
            base, last = len(slot.cached), n == len(slot.pending)
            for k in range(n):
                batch.add(slot.pending[k], base + k, slot.seq, last and k == n - 1)
            taken.append((slot, n))
            if last:
                sampled.append((slot, batch.n - 1))
        rc = llama_cpp.llama_decode(self.ctx, batch.raw)
        if rc != 0:
            for slot, _ in taken:
                self.table.clear(slot)
                self._end(slot, UpstreamError(f"The local model failed to evaluate the batch (llama_decode: {rc})."))
            return
        for slot, n in taken:
            slot.cached.extend(slot.pending[:n])
            del slot.pending[:n]
        for slot, index in sampled:
            try:
                self._advance(slot, index)
            except Exception as exc:  # one request's failure is its own
                self._end(slot, exc)

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = ctypes.create_string_buffer(256)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[: max(n, 0)]
        return piece

    def _advance(self, slot: Slot, index: int) -> None:
        """Sample the slot's next token and take it into its output; finish the job when it is done."""
        job = slot.job
        assert job is not None and job.output is not None
        out = job.output
        token = job.sampler.sample(self.ctx, index)
        if job.stop.is_set():
            self._end(slot)
            return
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot, "stop")
            return
        started = out.feed(token, self._piece(token))
        if job.grammar is TEXT_START:
            self._set_grammar(job, None)  # the text has begun; the rest is free
        if started is not None and job.grammar is None and job.constraints.tagged is not None:
            # The model began a call on its own: write it again from its start, under the call grammar.
            out.rewind(started)
            self._set_grammar(job, job.constraints.bare if started.bare else job.constraints.tagged)
            self.table.seek(slot, job.prompt + out.tokens)
            return
        if out.useless is not None and self._answer_in_text(slot):
            return
        if len(out.tokens) >= job.max_tokens or len(job.prompt) + len(out.tokens) >= self.n_ctx:
            self._finish(slot, "length")
            return
        slot.pending = [token]

    def _answer_in_text(self, slot: Slot) -> bool:
        """After a call of no use (a repeat of one answered, one the model did not finish), write the answer
        again from where the call began, as text, with the tools no longer shown. False where that cannot be
        done (already done once, tools required, or an answer bound to a schema): the call is left out."""
        job = slot.job
        assert job is not None and job.output is not None
        out = job.output
        if job.fallback or job.text_prompt is None or job.constraints.answer is not None:
            log.info("left out a tool call: %s", out.useless)
            out.useless = None
            return False
        log.info("answering in text instead of a tool call: %s", out.useless)
        job.fallback = True
        out.answer_in_text()
        job.prompt = job.text_prompt()
        job.constraints = Constraints(None)
        # a small model shown its call and the tool's output tends to write the call again, as text: its
        # first token may not begin one
        self._set_grammar(job, TEXT_START)
        self.table.seek(slot, job.prompt + out.tokens)
        return True

    def _finish(self, slot: Slot, reason: FinishReason) -> None:
        job = slot.job
        assert job is not None and job.output is not None
        out = job.output
        out.flush()
        if out.useless is not None:
            if reason == "stop" and self._answer_in_text(slot):
                return  # generation goes on, in text
            # a call cut short by the token limit: the response ends incomplete without it
            log.info("left out a tool call: %s", out.useless)
        out.close()
        job.emit(Usage(input_tokens=len(job.prompt), output_tokens=len(out.tokens), cached_tokens=job.cached))
        job.emit(Finish(out.finish_reason(reason)))
        self._end(slot)

    def _end(self, slot: Slot, error: BaseException | None = None) -> None:
        """Free the slot (its KV cache stays for a later prompt that shares it) and tell the job."""
        job, slot.job = slot.job, None
        slot.pending = []
        if job is None:
            return
        if job.sampler is not None:
            job.sampler.close()
            job.sampler = None
        job.emit(Done(error))
