"""Compaction: a conversation folded into a summary the model writes, sealed into one ``compaction`` item.

A compaction item stands for the whole context before it. Its ``encrypted_content`` is sealed
(:mod:`respd.sealing`, purpose ``compaction``, bound to the tenant) and holds the summary and the user's own
messages, kept verbatim, as the real API keeps them. When a compaction item is in a context, the model sees
none of the items before it; in its place come a user message carrying the summary, then the kept user
messages. So the item works however the client continues: with the ``/compact`` output as its next input,
with the whole old input plus the compaction output, with ``previous_response_id``, or after pruning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from respd.backends.base import Backend, ModelRequest, TextDelta, Usage
from respd.errors import InvalidRequest, UpstreamError
from respd.sealing import Sealer, SealError

COMPACTION = "compaction"  # the sealing purpose of a compaction item's encrypted_content
SUMMARY_MAX_TOKENS = 2048  # a longer summary would defeat the point of compacting
DEFAULT_THRESHOLD = 0.8  # of the context window, for context_management without compact_threshold

PROMPT = (
    "Stop here: this conversation is being compacted so that it can go on in a fresh context. Write a summary "
    "of everything so far that someone could continue from: the user's goals and requests, what was decided, "
    "the facts, tool results and code that matter, the current state of the work, and what remains to be "
    "done. Be concise but keep names, numbers and identifiers exact. Write only the summary."
)
SUMMARY_HEAD = (
    "Earlier turns of this conversation were compacted. This is a summary of them (the user's own messages "
    "follow it, verbatim):\n\n"
)


@dataclass(slots=True)
class Compacted:
    """The outcome of one compaction pass."""

    summary: str
    kept: list[dict[str, Any]]  # the user's messages, verbatim
    usage: Usage

    def seal(self, sealer: Sealer, tenant: str) -> str:
        """The ``encrypted_content`` of the compaction item."""
        return sealer.seal(tenant, COMPACTION, {"summary": self.summary, "kept": self.kept})

    def context(self, item_id: str) -> list[dict[str, Any]]:
        """What the model sees in place of the compacted context."""
        return [summary_message(item_id, self.summary), *self.kept]


def summary_message(item_id: str, summary: str) -> dict[str, Any]:
    """The user message that carries a compaction item's summary to the model (it has the item's id)."""
    return {"id": item_id, "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": SUMMARY_HEAD + summary}]}  # fmt: skip


def kept_messages(context: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's own messages in ``context`` (not the summaries standing in for earlier compactions)."""
    return [
        item
        for item in context
        if item["type"] == "message" and item["role"] == "user" and not str(item.get("id", "")).startswith("cmp_")
    ]


async def compact(backend: Backend, request: ModelRequest) -> Compacted:
    """Have the model summarize ``request``'s context (its instructions included, no tools offered)."""
    ask = {"id": "msg_compaction_prompt", "type": "message", "role": "user", "status": "completed",
           "content": [{"type": "input_text", "text": PROMPT}]}  # fmt: skip
    summarizing = replace(request, items=[*request.items, ask], tools=[], tool_choice=None, text_format=None,
                          max_output_tokens=SUMMARY_MAX_TOKENS, top_logprobs=None, stream=False)  # fmt: skip
    text: list[str] = []
    usage = Usage()
    async for got in backend.generate(summarizing):
        for delta in got if isinstance(got, list) else (got,):
            if isinstance(delta, TextDelta):
                text.append(delta.text)
            elif isinstance(delta, Usage):
                usage = delta  # the rest (reasoning, stray tool calls) is not the summary
    summary = "".join(text).strip()
    if not summary:
        raise UpstreamError("The model wrote no summary of the conversation to compact it.")
    return Compacted(summary, kept_messages(request.items), usage)


def _open(sealer: Sealer, tenant: str, item: dict[str, Any], param: str) -> dict[str, Any]:
    try:
        payload = sealer.open(tenant, COMPACTION, item["encrypted_content"])
    except SealError as exc:
        raise InvalidRequest(
            f"The encrypted content of compaction item '{item['id']}' could not be verified: {exc}.",
            param=param,
            code="invalid_encrypted_content",
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("summary"), str):
        raise InvalidRequest(f"Compaction item '{item['id']}' is malformed.", param=param,
                             code="invalid_encrypted_content")  # fmt: skip
    return payload


def expand(
    sealer: Sealer, tenant: str, history: list[dict[str, Any]], inputs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The context the model sees for ``history`` + ``inputs``: from the newest compaction item on.

    Every compaction item the client sent must open (a tampered or foreign one is a 400 naming it). A stored
    one that never got its content (its response failed while compacting) stands for nothing.
    """
    hist = [it for it in history if not (it["type"] == COMPACTION and not it["encrypted_content"])]
    opened = {
        len(hist) + i: _open(sealer, tenant, item, f"input[{i}].encrypted_content")
        for i, item in enumerate(inputs)
        if item["type"] == COMPACTION
    }
    items = hist + inputs
    last = max((i for i, it in enumerate(items) if it["type"] == COMPACTION), default=None)
    if last is None:
        return items
    item = items[last]
    payload = opened.get(last) or _open(sealer, tenant, item, "previous_response_id")
    return [summary_message(item["id"], payload["summary"]), *payload.get("kept", ()), *items[last + 1 :]]
