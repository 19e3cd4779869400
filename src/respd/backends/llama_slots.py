"""The KV cache of a local model shared by its slots: which slot a prompt goes to, and what it can reuse.

The context holds one sequence per slot in one unified KV cache. A slot keeps its tokens after its request
ends, so the next turn of that conversation (a ``previous_response_id`` chain) reads only its new tokens.
A new prompt goes to the free slot that already holds the longest prefix of it (else the one used least
recently); if another slot, busy or not, holds a longer prefix, that part is shared into the chosen slot
(a copy of cell references, no recomputation). A conversation about to be overwritten is saved first
into a bounded :class:`StateCache`, from which a later turn of it is restored.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from typing import Any

import llama_cpp
import numpy as np

from respd.backends.llama_job import Job

log = logging.getLogger("respd.llama")

MIN_SAVED_TOKENS = 64  # a context shorter than this is cheaper to re-read than to save and restore


def lcp(a: Any, b: Any) -> int:
    """Length of the longest common prefix of two token sequences (lists, tuples or arrays)."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
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
            n = lcp(key, prompt)
            if n and (best is None or n > best[0]):
                best = (n, key)
        if best is None:
            return None
        self._entries.move_to_end(best[1])
        return best[1], self._entries[best[1]]


class Slot:
    """One sequence of the context: the tokens its KV cache holds, and the job running in it (if any)."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []  # tokens at positions 0.. of this sequence in the KV cache
        self.pending: list[int] = []  # tokens to evaluate next; the last one's logits are sampled
        self.job: Job | None = None
        self.used = 0  # when a job last started here (a counter), for least-recently-used choice


class SlotTable:
    """The slots of one context and the KV operations on them (all on the llama.cpp thread)."""

    def __init__(self, ctx: Any, n_slots: int, cache_bytes: int) -> None:
        self.ctx = ctx
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.slots = [Slot(i) for i in range(n_slots)]
        self.cache = StateCache(cache_bytes)
        self._clock = 0

    def free(self) -> list[Slot]:
        return [s for s in self.slots if s.job is None]

    def busy(self) -> list[Slot]:
        return [s for s in self.slots if s.job is not None]

    def place(self, job: Job) -> Slot:
        """Put ``job`` into a free slot (there must be one), reusing the longest cached prefix of its prompt."""
        prompt = job.prompt
        free = self.free()
        slot = max(free, key=lambda s: (lcp(s.cached, prompt), not s.cached, -s.used))
        reused = min(lcp(slot.cached, prompt), len(prompt) - 1)
        if len(slot.cached) - reused >= MIN_SAVED_TOKENS and self.cache.capacity:
            # another conversation is about to overwrite this one: set its KV cache aside
            self.cache.put(tuple(slot.cached), self._save(slot))
        reused = self._share(slot, prompt, reused)
        reused = self._restore(slot, prompt, reused)
        self.seek(slot, prompt, reused)
        self._clock += 1
        slot.used, slot.job, job.cached = self._clock, job, reused
        return slot

    def seek(self, slot: Slot, tokens: list[int], keep: int | None = None) -> None:
        """Make ``slot`` hold ``tokens[:keep]`` (a prefix of what it holds; default: the longest) and evaluate
        the rest next."""
        if keep is None:
            keep = lcp(slot.cached, tokens)
        keep = min(keep, len(tokens) - 1)  # the last token is evaluated again: its logits are sampled
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, keep, -1)
        del slot.cached[keep:]
        slot.pending = tokens[keep:]

    def clear(self, slot: Slot) -> None:
        """Forget what ``slot`` holds (its KV cache may be inconsistent after a failed step)."""
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        slot.cached, slot.pending = [], []

    def _share(self, slot: Slot, prompt: list[int], reused: int) -> int:
        """Copy a longer cached prefix of ``prompt`` from another slot into ``slot``."""
        best, n = None, reused
        for other in self.slots:
            if other is not slot and (k := min(lcp(other.cached, prompt), len(prompt) - 1)) > n:
                best, n = other, k
        if best is None:
            return reused
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        llama_cpp.llama_memory_seq_cp(self.mem, best.seq, slot.seq, 0, n)
        slot.cached = prompt[:n]
        return n

    def _restore(self, slot: Slot, prompt: list[int], reused: int) -> int:
        saved = self.cache.best(prompt) if self.cache.capacity else None
        if saved is None:
            return reused
        key, state = saved
        n = min(lcp(key, prompt), len(prompt) - 1)
        if n <= reused + MIN_SAVED_TOKENS // 4:
            return reused
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(self.ctx, buf, len(state), slot.seq) != len(state):
            log.warning("could not restore a saved KV cache of %d tokens; reading the prompt again", len(key))
            self.clear(slot)
            return 0
        slot.cached = list(key)
        return n

    def _save(self, slot: Slot) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.seq)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self.ctx, buf, size, slot.seq)
        return ctypes.string_at(buf, n)
