"""The context window: whether a run's context fits its model, and what gives when it does not.

Decided before anything is stored or streamed, from the model's count of the prompt (instructions, items
and tools as the backend renders them; :meth:`Backend.count_tokens` with ``local=True``: exact for a local
model, an estimate for an upstream) against its context window (:meth:`Backend.context_window`):

- ``truncation: "disabled"`` (the default): an input that leaves no room for a single output token is a 400
  ``context_length_exceeded``.
- ``truncation: "auto"``: the oldest items are dropped until the input leaves room for the answer —
  ``max_output_tokens``, or :data:`DEFAULT_RESERVE` tokens when unset, never more than half the window. Items
  go in units: a tool call with its outputs, a reasoning item with the item after it. System and developer
  messages (and ``instructions``) are never dropped, nor is the newest unit. If what remains still leaves
  no room for a single output token, it is the same 400.
- With no known window (an upstream that does not say, and a route without ``context_window``), respd checks
  nothing beforehand; the upstream's refusal of a request over its window (a 400 worded as vLLM, OpenAI or
  llama.cpp's server word it) is the same ``context_length_exceeded``: a 400 when nothing was sent yet (a
  non-streamed request), else the response fails with that code. With ``truncation: "auto"`` the refused
  turn is tried once more without the oldest units (:func:`refit`). A window the refusal names is kept, so
  later requests are checked before they are sent.
- ``context_management`` compaction: once the (untruncated) count passes ``compact_threshold``, the run
  compacts its context before answering (:mod:`respd.engine.compaction`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from respd.backends.base import Backend, LearnsWindow, ModelRequest
from respd.backends.token_estimate import upper_bound
from respd.engine.compaction import DEFAULT_THRESHOLD
from respd.engine.context import CALL_OF_OUTPUT
from respd.errors import InvalidRequest
from respd.wire.request import ContextManagement

DEFAULT_RESERVE = 1024  # room kept for the answer by truncation "auto" when max_output_tokens is unset

_OUTPUTS = set(CALL_OF_OUTPUT)
_CALLS = set(CALL_OF_OUTPUT.values())


def too_long() -> InvalidRequest:
    return InvalidRequest(
        "Your input exceeds the context window of this model. Please adjust your input and try again.",
        param="input",
        code="context_length_exceeded",
    )


@dataclass(slots=True)
class Fit:
    """What the model will see, and whether the run compacts first."""

    items: list[dict[str, Any]]
    compact: bool = False


def units(items: Sequence[dict[str, Any]]) -> list[list[int]]:
    """``items``' indices grouped into what truncation drops together, oldest unit first.

    A tool call and the outputs answering it are one unit (they may not be adjacent); a reasoning item
    belongs to the item after it.
    """
    groups: list[list[int]] = []
    by_call: dict[str, list[int]] = {}
    waiting: list[int] = []  # reasoning items before their item
    for i, item in enumerate(items):
        if item["type"] == "reasoning":
            waiting.append(i)
            continue
        call_id = item.get("call_id")
        if item["type"] in _OUTPUTS and call_id in by_call:
            by_call[call_id] += [*waiting, i]
        else:
            groups.append([*waiting, i])
            if item["type"] in _CALLS and call_id:
                by_call[call_id] = groups[-1]
        waiting = []
    if waiting:
        groups.append(waiting)
    return sorted(groups, key=lambda g: g[0])


def _pinned(items: Sequence[dict[str, Any]], unit: list[int]) -> bool:
    return any(items[i]["type"] == "message" and items[i]["role"] in ("system", "developer") for i in unit)


async def _truncate(
    backend: Backend, request: ModelRequest, count: int, window: int, reserve: int, refuse: bool
) -> list[dict[str, Any]]:
    """The fewest oldest droppable units gone so that the rest plus ``reserve`` fits (binary search on the
    count, which only falls as more goes); or all of them gone, if nothing fits with the reserve."""
    items = request.items
    groups = units(items)
    droppable = [g for g in groups[:-1] if not _pinned(items, g)]

    def without(k: int) -> list[dict[str, Any]]:
        gone = {i for g in droppable[:k] for i in g}
        return [item for i, item in enumerate(items) if i not in gone]

    async def tokens(k: int) -> int:
        return (await backend.count_tokens(replace(request, items=without(k)), local=True)).tokens

    high = len(droppable)
    least = await tokens(high) if high else count
    if least + reserve > window:
        if refuse and least >= window:
            raise too_long()
        return without(high)
    low = 1
    while low < high:
        mid = (low + high) // 2
        if await tokens(mid) + reserve <= window:
            high = mid
        else:
            low = mid + 1
    return without(high)


async def refit(backend: Backend, request: ModelRequest, window: int | None) -> list[dict[str, Any]] | None:
    """``request``'s items without their oldest units, after the upstream refused it as too long for its
    context ``window`` (the one its refusal named, if any): truncation "auto"'s one retry. Units go as
    :func:`fit` drops them, for the window named; when none was named, every droppable unit goes. None when
    nothing can go."""
    items = request.items
    droppable = [g for g in units(items)[:-1] if not _pinned(items, g)]
    if not droppable:
        return None
    if window is None:
        gone = {i for g in droppable for i in g}
        return [item for i, item in enumerate(items) if i not in gone]
    count = (await backend.count_tokens(request, local=True)).tokens
    reserve = min(request.max_output_tokens or DEFAULT_RESERVE, window // 2)
    # (the count is respd's estimate, which the upstream found short of its own: at least one unit goes)
    return await _truncate(backend, request, count, window, reserve, refuse=False)


def threshold(settings: list[ContextManagement] | None, window: int | None) -> int | None:
    """The token count past which a run compacts first, or None when it never does."""
    if not settings:
        return None
    given = [s.compact_threshold for s in settings if s.compact_threshold is not None]
    if given:
        return min(given)
    if window is None:
        raise InvalidRequest(
            "This model's context window is unknown to the server, so 'compact_threshold' must be set.",
            param="context_management[0].compact_threshold",
            code="missing_required_parameter",
        )
    return int(window * DEFAULT_THRESHOLD)


async def known_window(backend: Backend) -> int | None:
    """The backend's context window; one that can learn it from its upstream asks first (once)."""
    if backend.abilities.learns_window:
        await cast(LearnsWindow, backend).learn_window()
    return backend.context_window()


async def fit(
    backend: Backend,
    request: ModelRequest,
    *,
    truncation: str | None,
    context_management: list[ContextManagement] | None = None,
    compact: bool = False,
    refuse: bool = True,
) -> Fit:
    """Fit ``request``'s context to the model (see the module docstring); ``compact`` forces compaction.

    ``refuse=False`` (counting, not running) lets a context that is too long through unchanged.
    """
    window = await known_window(backend)
    limit = threshold(context_management, window)
    if window is None and limit is None:
        return Fit(request.items, compact)
    reserve = min(request.max_output_tokens or DEFAULT_RESERVE, window // 2) if truncation == "auto" and window else 0
    if limit is None and window is not None and upper_bound(request) + max(reserve, 1) <= window:
        return Fit(request.items, compact)  # surely fits: no need to count
    count = (await backend.count_tokens(request, local=True)).tokens
    compact = compact or (limit is not None and count > limit)
    if window is None or count + max(reserve, 1) <= window:
        return Fit(request.items, compact)
    if truncation == "auto":
        return Fit(await _truncate(backend, request, count, window, reserve, refuse), compact)
    if refuse:
        raise too_long()
    return Fit(request.items, compact)
