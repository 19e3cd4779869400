"""The Response object (the union of ``S:Response`` and Open Responses' ``ResponseResource``) as respd emits it.

Built as a plain dict with every key present — required-but-nullable keys are ``None``, never left out —
because clients of both specs check for them.
"""

from __future__ import annotations

from typing import Any

from respd.wire.request import CreateResponse

Response = dict[str, Any]


def _tool_choice(req: CreateResponse) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def _text(req: CreateResponse) -> dict[str, Any]:
    fmt: dict[str, Any] = {"type": "text"}
    verbosity = "medium"
    if req.text is not None:
        if req.text.format is not None:
            fmt = req.text.format.model_dump(by_alias=True, exclude_none=True)
        verbosity = req.text.verbosity or verbosity
    return {"format": fmt, "verbosity": verbosity}


def _reasoning(req: CreateResponse) -> dict[str, Any]:
    r = req.reasoning
    if r is None:
        return {"effort": None, "summary": None}
    return {"effort": r.effort, "summary": r.summary or r.generate_summary}


def new_response(
    req: CreateResponse, *, response_id: str, model: str, created_at: int, status: str, tools: list[dict[str, Any]]
) -> Response:
    """A Response for ``req`` before any output: the echo of every request parameter."""
    response: Response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(req.background),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "model": model,
        "output": [],
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "reasoning": _reasoning(req),
        "service_tier": "default",
        "store": True if req.store is None else req.store,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": _text(req),
        "tool_choice": _tool_choice(req),
        "tools": tools,
        "top_logprobs": req.top_logprobs or 0,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "frequency_penalty": req.frequency_penalty or 0.0,
        "presence_penalty": req.presence_penalty or 0.0,
        "truncation": req.truncation or "disabled",
        "usage": None,
        "metadata": req.metadata or {},
        "conversation": None if req.conversation_id is None else {"id": req.conversation_id},
        "prompt": None,
        "prompt_cache_key": req.prompt_cache_key,
        "prompt_cache_retention": req.prompt_cache_retention,
        "safety_identifier": req.safety_identifier,
    }
    if req.user is not None:  # deprecated, and a string (not nullable) in the spec: present only when given
        response["user"] = req.user
    return response


TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})
