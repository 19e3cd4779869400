"""The model request of each turn of a run: the create request's sampling and format, over a context and tools.

Built once per run from the request (:class:`RequestBuilder`), then asked for one :class:`ModelRequest` per
model turn: a turn differs from the one before only in its context and in the tools it offers.
"""

from __future__ import annotations

from typing import Any

from respd.backends.base import ModelRequest
from respd.config import ModelRoute
from respd.wire.request import CreateResponse


class RequestBuilder:
    """Makes a run's model requests; holds what every turn shares."""

    __slots__ = ("_req", "_stream", "_target", "_text_format", "_top_logprobs")

    def __init__(self, req: CreateResponse, route: ModelRoute, *, stream: bool) -> None:
        self._req = req
        self._target = route.target_model
        self._stream = stream  # read the model as a stream (a streamed or a background response)
        self._text_format = req.text.format.model_dump(by_alias=True) if req.text and req.text.format else None
        wants_logprobs = bool(req.top_logprobs) or "message.output_text.logprobs" in (req.include or ())
        self._top_logprobs = (req.top_logprobs or 0) if wants_logprobs else None

    def build(
        self, items: list[dict[str, Any]], tools: list[dict[str, Any]], tool_choice: Any, prefill: str | None = None
    ) -> ModelRequest:
        """The request of a turn that reads ``items`` and is offered ``tools`` (neutral tool dicts)."""
        req = self._req
        return ModelRequest(
            model=self._target,
            instructions=req.instructions,
            items=items,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=req.parallel_tool_calls,
            text_format=self._text_format,
            temperature=req.temperature,
            top_p=req.top_p,
            max_output_tokens=req.max_output_tokens,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            reasoning_effort=req.reasoning.effort if req.reasoning else None,
            top_logprobs=self._top_logprobs,
            user=req.safety_identifier or req.user,
            stream=self._stream,
            prefill=prefill,
        )
