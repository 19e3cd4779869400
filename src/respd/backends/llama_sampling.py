"""Token sampling for the local model, with a grammar that costs almost nothing when the model agrees.

llama-cpp-python applies a grammar to every candidate of the vocabulary at every step (151,936 of them for
Qwen2.5), which made grammar-bound output several times slower than free text. Like llama.cpp's own server,
this samples without the grammar first, checks the one token against it, and applies the grammar to the
whole vocabulary only when that token is rejected. Both paths draw from the same distribution restricted
to what the grammar allows.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import llama_cpp

PENALTY_LAST_N = 64  # tokens that frequency/presence penalties look back on (llama.cpp's default)
# The repetition guard on free text: llama.cpp's DRY ("don't repeat yourself") sampler makes a token that would
# extend a verbatim repeat of earlier output less likely, the more so the longer the repeat. Values as
# recommended by its author (multiplier 0.8, base 1.75, repeats of up to 2 tokens free); breakers end a
# repeat, so line starts and quotes do not count as one.
DRY_BASE = 1.75
DRY_ALLOWED = 2
DRY_LAST_N = 1024
DRY_BREAKERS = (b"\n", b":", b'"', b"*")


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampler settings for a turn; ``temp`` <= 0 is greedy."""

    temp: float
    top_p: float
    top_k: int
    min_p: float
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # the repetition guard, on free text only (under a grammar, JSON repeats keys and punctuation by design):
    repeat_penalty: float = 1.0  # 1: none; on the last PENALTY_LAST_N tokens
    dry_multiplier: float = 0.0  # 0: none


def _chain(steps: list[Any]) -> Any:
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for step in steps:
        llama_cpp.llama_sampler_chain_add(chain, step)
    return chain


class Guards:
    """A model's vocabulary and its repetition guards: the DRY sampler is built once per multiplier and cloned
    for each request: building one scans the whole vocabulary for the sequence breakers (28 ms for Qwen2.5's
    151,936 tokens; a clone 0.3 ms), on the llama.cpp thread, between two steps of every running answer."""

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self._dry: dict[float, Any] = {}

    def dry(self, multiplier: float) -> Any:
        """A new DRY sampler (no history) with ``multiplier``."""
        proto = self._dry.get(multiplier)
        if proto is None:
            breakers = (ctypes.c_char_p * len(DRY_BREAKERS))(*DRY_BREAKERS)
            proto = self._dry[multiplier] = llama_cpp.llama_sampler_init_dry(
                self.vocab, multiplier, DRY_BASE, DRY_ALLOWED, DRY_LAST_N, breakers, len(DRY_BREAKERS))  # fmt: skip
        return llama_cpp.llama_sampler_clone(proto)

    def close(self) -> None:
        """Free the samplers kept to be cloned."""
        for proto in self._dry.values():
            llama_cpp.llama_sampler_free(proto)
        self._dry.clear()


def _steps(s: Sampling, grammar: Any | None, guards: Guards | None = None) -> list[Any]:
    steps = []
    guard = guards is not None  # free text: the repetition guard applies
    if guards is not None and s.dry_multiplier > 0:
        steps.append(guards.dry(s.dry_multiplier))
    repeat = s.repeat_penalty if guard else 1.0
    if s.frequency_penalty or s.presence_penalty or repeat != 1.0:
        # this binding declares an extra leading argument; last_n goes in both so either reading is right
        steps.append(llama_cpp.llama_sampler_init_penalties(PENALTY_LAST_N, PENALTY_LAST_N, repeat,
                                                            s.frequency_penalty, s.presence_penalty))  # fmt: skip
    if grammar is not None:
        steps.append(grammar)
    if s.temp <= 0:
        return [*steps, llama_cpp.llama_sampler_init_greedy()]
    return [
        *steps,
        llama_cpp.llama_sampler_init_top_k(s.top_k),
        llama_cpp.llama_sampler_init_top_p(s.top_p, 1),
        llama_cpp.llama_sampler_init_min_p(s.min_p, 1),
        llama_cpp.llama_sampler_init_temp(s.temp),
        llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED),
    ]


def grammar_compiles(vocab: Any, grammar: str) -> bool:
    """Whether llama.cpp parses ``grammar`` (a sampler built from one it cannot parse would crash it)."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


class Sampler:
    """Draws the next token from a context's last logits; one per generation run (grammar state inside)."""

    def __init__(self, guards: Guards, sampling: Sampling, grammar: str | None) -> None:
        # the repetition guard only on free text: under a grammar, JSON repeats keys and punctuation by design
        self._free = _chain(_steps(sampling, None, guards if grammar is None else None))
        self._check: Any = None
        self._full: Any = None
        if grammar is not None:
            self._check = llama_cpp.llama_sampler_init_grammar(guards.vocab, grammar.encode(), b"root")
            full = llama_cpp.llama_sampler_init_grammar(guards.vocab, grammar.encode(), b"root")
            self._full = _chain(_steps(sampling, full))
            self._one = (llama_cpp.llama_token_data * 1)()
            self._candidates = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)

    def sample(self, ctx: Any, index: int = -1) -> int:
        """The next token from the logits of the batch's ``index``-th token, accepted into the grammar."""
        token: int = llama_cpp.llama_sampler_sample(self._free, ctx, index)
        if self._check is None:
            return token
        if not self._allowed(token):
            token = llama_cpp.llama_sampler_sample(self._full, ctx, index)  # the grammar over the whole vocabulary
        else:
            llama_cpp.llama_sampler_accept(self._full, token)
        llama_cpp.llama_sampler_accept(self._check, token)
        return token

    def _allowed(self, token: int) -> bool:
        self._one[0].id = token  # type: ignore[assignment]  # ctypes converts the int
        self._one[0].logit, self._one[0].p = 1.0, 0.0
        self._candidates.size, self._candidates.selected = 1, -1
        llama_cpp.llama_sampler_apply(self._check, ctypes.byref(self._candidates))
        return not math.isinf(self._one[0].logit)

    def close(self) -> None:
        """Free the samplers (a chain frees the steps it holds)."""
        for sampler in (self._free, self._full, self._check):
            if sampler:
                llama_cpp.llama_sampler_free(sampler)
        self._free = self._full = self._check = None
