"""The model's context for a request: the conversation's items or the chain behind ``previous_response_id``,
then this turn's input.

Also resolves ``item_reference`` inputs to the stored items they name. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from respd.engine.items import normalize, text_message
from respd.errors import InvalidRequest, NotFound
from respd.sealing import Sealer, SealError
from respd.store import conversations
from respd.store.store import Store
from respd.wire import client_calls
from respd.wire import items as w
from respd.wire.request import CreateResponse


async def input_items(store: Store, tenant: str, req: CreateResponse) -> list[dict[str, Any]]:
    """This turn's input in stored form, item references resolved."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [text_message(req.input)]
    return await resolve_items(store, tenant, req.input)


async def resolve_items(store: Store, tenant: str, items: Sequence[Any], param: str = "input") -> list[dict[str, Any]]:
    """Validated input items in stored form; a reference unknown to this tenant is a 404 on ``param[i].id``."""
    refs = [it.id for it in items if isinstance(it, w.ItemReference)]
    found = await store.find_items(tenant, refs) if refs else {}
    out = []
    for i, it in enumerate(items):
        if isinstance(it, w.CompactionTrigger):  # an instruction to the run, not an item of the context
            if i != len(items) - 1:
                raise InvalidRequest("A compaction_trigger item must be the last input item.", param=f"{param}[{i}]")
            continue
        if isinstance(it, w.ItemReference):
            if it.id not in found:
                raise NotFound(f"Item with id '{it.id}' not found.", param=f"{param}[{i}].id")
            out.append(found[it.id])
        else:
            out.append(normalize(it))
    return out


LocalHistory = Callable[[str], Awaitable[list[dict[str, Any]] | None]]
"""A source of chains kept outside the database (a WebSocket connection's memory): the chain up to and
including a response id, or None when it does not know that id."""


async def history(
    store: Store, tenant: str, req: CreateResponse, local: LocalHistory | None = None
) -> list[dict[str, Any]]:
    """The items before this turn, oldest first: the conversation's, or every item of the previous responses.

    ``local`` (chains kept outside the database) is asked before the store.
    """
    if req.conversation_id is not None:
        return await conversation_items(store, tenant, req.conversation_id)
    prev = req.previous_response_id
    if prev is None:
        return []
    if local is not None and (kept := await local(prev)) is not None:
        return kept
    await previous_response(store, tenant, prev)
    return await store.chain_items(tenant, prev)


async def previous_response(store: Store, tenant: str, response_id: str) -> dict[str, Any]:
    """The stored row of the ``previous_response_id`` a request names, or its 404."""
    row = await store.get_response(tenant, response_id)
    if row is None:
        raise NotFound(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return row


async def stored_response(store: Store, tenant: str, response_id: str) -> dict[str, Any]:
    """The stored row of a response named in a path (see :meth:`Store.get_response`), or a 404 on ``response_id``."""
    row = await store.get_response(tenant, response_id)
    if row is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return row


async def conversation_items(store: Store, tenant: str, conversation_id: str) -> list[dict[str, Any]]:
    """The items of a conversation the request runs in; a 404 on ``conversation`` if there is none."""
    if await conversations.get(store.engine, tenant, conversation_id) is None:
        raise NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation")
    return await conversations.items(store.engine, conversation_id)


def check_unique_ids(existing: list[dict[str, Any]], new: list[dict[str, Any]], param: str = "input") -> None:
    """Items joining a conversation must not repeat the id of one in it, or of one another: ids name them there."""
    seen = {item["id"] for item in existing}
    for item in new:
        if item["id"] in seen:
            raise duplicate_item(item["id"], param)
        seen.add(item["id"])


def duplicate_item(item_id: str, param: str = "input") -> InvalidRequest:
    """The 400 for an item whose id the conversation it joins already has."""
    return InvalidRequest(
        f"Duplicate item found with id {item_id}. Remove duplicate items from your input and try again.", param=param
    )


REASONING = "reasoning"  # the sealing purpose of a reasoning item's encrypted_content


def unseal_reasoning(sealer: Sealer, tenant: str, inputs: list[dict[str, Any]], param: str = "input") -> None:
    """Reasoning items sent back by value get their sealed text restored into the context."""
    for i, item in enumerate(inputs):
        blob = item.get("encrypted_content") if item["type"] == "reasoning" else None
        if blob is None:
            continue
        try:
            sealed = sealer.open(tenant, REASONING, blob)
        except SealError as exc:
            raise InvalidRequest(
                f"The encrypted content of reasoning item '{item['id']}' could not be verified: {exc}.",
                param=f"{param}[{i}].encrypted_content",
                code="invalid_encrypted_content",
            ) from None
        item["content"] = sealed["content"]
        item["summary"] = item["summary"] or sealed["summary"]


CALL_OF_OUTPUT = {
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
    "tool_search_output": "tool_search_call",
    **client_calls.OUTPUT_OF,
}


def _check_approvals(history: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> None:
    """An ``mcp_approval_response`` must answer an ``mcp_approval_request`` of the context (a 400 otherwise)."""
    asked = {item["id"] for item in history + inputs if item["type"] == "mcp_approval_request"}
    for i, item in enumerate(inputs):
        if item["type"] == "mcp_approval_response" and item["approval_request_id"] not in asked:
            raise InvalidRequest(
                f"No MCP approval request found with id {item['approval_request_id']}.",
                param=f"input[{i}].approval_request_id",
            )


def check_call_outputs(history: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> None:
    """Every tool output must answer a call made earlier in the context (a 400 naming it otherwise).

    A tool search output without a ``call_id`` answers no call the model made (the spec allows it for a
    search the server ran), so there is nothing to match it with. A ``function_call_output`` may answer a
    client-executed built-in's call too: Codex answers its ``local_shell_call`` items that way.
    """
    _check_approvals(history, inputs)
    calls = {(item["type"], item["call_id"]) for item in history + inputs if item["type"] in CALL_OF_OUTPUT.values()}
    calls |= {("function_call", call_id) for kind, call_id in calls if kind in client_calls.KIND_OF_CALL}
    for i, item in enumerate(inputs):
        wanted = CALL_OF_OUTPUT.get(item["type"])
        if wanted is not None and item["call_id"] is not None and (wanted, item["call_id"]) not in calls:
            raise InvalidRequest(
                f"No tool call found for {item['type']} with call_id {item['call_id']}.",
                param=f"input[{i}].call_id",
            )
