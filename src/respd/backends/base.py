"""The one interface between the run engine and a model: a request in, a stream of deltas out.

Backends know nothing of the Responses API's items or events; they see a neutral :class:`ModelRequest`
(the context as Responses items, plus tools and sampling) and yield :data:`Delta` values. Quirks of a
particular upstream stay inside its backend.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(slots=True)
class TextDelta:
    """A piece of the assistant's visible answer, with its tokens' log probabilities when asked for.

    ``logprobs`` entries are ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}``.
    """

    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning text (``reasoning_content`` of vLLM / llama.cpp)."""

    text: str


@dataclass(slots=True)
class RefusalDelta:
    """A piece of a refusal the model gave instead of an answer."""

    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of the ``index``-th tool call of this turn; ``call_id``/``name``/``kind`` arrive once.

    For a ``custom`` tool, ``arguments`` carries pieces of the free-text input itself; a ``tool_search`` call
    (a client-run tool search) carries JSON arguments like a function's.
    """

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""
    namespace: str | None = None
    kind: Literal["function", "custom", "tool_search"] = "function"


@dataclass(slots=True)
class Usage:
    """Token counts for the whole turn, as the model reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Finish:
    """The model stopped; ``reason`` says why."""

    reason: FinishReason


Delta = TextDelta | ReasoningDelta | RefusalDelta | ToolCallDelta | Usage | Finish


@dataclass(slots=True, frozen=True)
class TokenCount:
    """How many tokens a prompt is; ``exact`` is false for an estimate (no tokenizer of the model at hand)."""

    tokens: int
    exact: bool


@dataclass(slots=True)
class ModelRequest:
    """What a backend needs for one turn. ``items`` are normalized Responses items, oldest first."""

    model: str
    instructions: str | None
    items: list[dict[str, Any]]
    # Neutral tools: {"type": "function"|"custom"|"tool_search", "name", "namespace", "description",
    # "parameters", "strict", "format"}; a "tool_search" tool is offered like a function.
    # tool_choice is None, a string, {"type", "name"} or {"type": "allowed_tools", …}.
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    text_format: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    reasoning_effort: str | None = None
    top_logprobs: int | None = None  # None: no log probabilities; 0..20: with that many alternatives
    user: str | None = None
    stream: bool = True
    # Continue this unfinished assistant text instead of starting a new answer (a run taken over after a
    # crash); only sent to a backend whose abilities include ``prefill``.
    prefill: str | None = None


@dataclass(frozen=True, slots=True)
class Abilities:
    """What a backend can do beyond running a turn; the engine reads these instead of probing the backend.

    ``admission``: the backend has limited room (a local model serves one request at a time, with a bounded
    queue), so a run asks :meth:`Backend.admit` for a place before any event of its response exists: a full
    queue is an HTTP 429 and a request the model cannot read a 400, never a failed response.
    ``prefill``: the model continues an unfinished assistant message (:attr:`ModelRequest.prefill`), so a
    background response taken over after a crash goes on from its partial output.
    ``loading``: the model is loaded into this process (:meth:`Backend.load`, at startup).
    """

    admission: bool = False
    prefill: bool = False
    loading: bool = False


class Backend(Protocol):
    """A model that can run one turn."""

    abilities: Abilities

    def generate(
        self, request: ModelRequest, admission: Admission | None = None
    ) -> AsyncGenerator[Delta | list[Delta], None]:
        """Yield the turn's deltas; end with :class:`Usage` (when known) and one :class:`Finish`.

        ``admission`` is what :meth:`admit` returned for ``request``, if the backend admits: what it prepared
        there (e.g. a local model's grammar) is used, not prepared again.

        A list yields deltas that arrived together (one network read); the client gets them in one write.

        Raises :class:`respd.errors.UpstreamError` when the model cannot answer. Cancelling the
        iteration must stop generation (close the upstream connection, stop the local model).
        """
        ...

    async def count_tokens(self, request: ModelRequest, *, local: bool = False) -> TokenCount:
        """The number of tokens of ``request``'s prompt (instructions, items, tools), as generation builds it.

        ``local`` is for a run's hot path: no network call, so a backend that can only ask its upstream
        estimates instead (``exact=False``). Raises :class:`respd.errors.UpstreamError` when asking fails.
        """
        ...

    def context_window(self) -> int | None:
        """The model's context size in tokens (prompt and output together), or None when unknown."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections or model memory."""
        ...

    def admit(self, request: ModelRequest) -> Admission | None:
        """Reserve a place for ``request`` or raise a :class:`respd.errors.RespdError` (``abilities.admission``);
        a backend without limited room returns None."""
        ...

    async def load(self) -> object:
        """Load the model into this process now rather than at its first turn (``abilities.loading``)."""
        ...


class Admission:
    """A request's place at a backend, held from admission until its run ends (see :meth:`Backend.admit`).

    A backend's own subclass carries what it prepared while admitting, for :meth:`Backend.generate`.
    """

    def release(self) -> None:
        """Give the place back. Idempotent."""
