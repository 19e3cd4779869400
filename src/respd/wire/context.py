"""Bodies of the context endpoints: ``POST /v1/responses/input_tokens`` and ``POST /v1/responses/compact``.

Their fields are create's fields (same types, same checks), so each body turns into the
:class:`~respd.wire.request.CreateResponse` it describes, and the engine gathers its context the one way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from respd.wire.base import MAX_TEXT, Wire
from respd.wire.items import InputItem
from respd.wire.request import ConversationRef, CreateResponse, ReasoningParam, TextParam, ToolChoice
from respd.wire.tools import Tool

Input = Annotated[str, Field(max_length=MAX_TEXT)] | list[InputItem] | None


class _AsCreate(Wire):
    def as_create(self, **overrides: Any) -> CreateResponse:
        """The create request with this body's fields (already validated, so not validated again)."""
        fields = {name: getattr(self, name) for name in self.model_fields_set if name in CreateResponse.model_fields}
        return CreateResponse.model_construct(**({"model": None} | fields | overrides))  # model may be left out here


class TokenCountsBody(_AsCreate):
    """``S:TokenCountsBody``: every field optional. ``personality`` changes nothing respd sends."""

    model: str | None = None
    input: Input = None
    previous_response_id: str | None = None
    tools: list[Tool] | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    truncation: Literal["auto", "disabled"] | None = None
    instructions: str | None = None
    personality: Annotated[str, Field(max_length=64)] | None = None
    conversation: str | ConversationRef | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None


class PromptCacheOptions(Wire):
    ttl: str | None = None
    mode: str | None = None


class ResponseCompactBody(_AsCreate):
    """The body of ``POST /v1/responses/{id}/compact``: ``/compact``'s without ``previous_response_id`` (the path
    names it), and ``model`` defaults to the response's. The prompt-cache and tier fields are hints."""

    model: str | None = None
    input: Input = None
    instructions: str | None = None
    prompt_cache_key: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    service_tier: Literal["auto", "default", "fast", "flex", "priority"] | None = None


class CompactBody(ResponseCompactBody):
    """``S:CompactResponseMethodPublicBody``; ``model`` is required (checked with create's wording)."""

    previous_response_id: str | None = None
