"""Cursor pages of items (``input_items``, conversation items): limit, order, after; the ``include`` query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from respd.api.openapi import Param
from respd.errors import InvalidRequest
from respd.wire.request import INCLUDABLE_VALUES

INCLUDE = Param("include", {"type": "array", "items": {"type": "string", "enum": sorted(INCLUDABLE_VALUES)}},
                "Extra data to include (also spelled `include[]`).")  # fmt: skip
PAGE = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Items per page."),
    Param("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "Oldest or newest first."),
    Param("after", {"type": "string"}, "List the items after the one with this id."),
)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A page asked for: at most ``limit`` items, oldest first if ``ascending``, after the item ``after``."""

    limit: int
    ascending: bool
    after: str | None


def page_query(request: Request) -> PageQuery:
    """The query's ``limit`` (1 to 100, default 20), ``order`` (``asc`` or ``desc``, default ``desc``) and
    ``after`` (an item id; empty is none)."""
    q = request.query_params
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequest(
            "Invalid type for 'limit': expected an integer.", param="limit", code="invalid_type"
        ) from None
    if not 1 <= limit <= 100:
        raise InvalidRequest(
            f"Invalid 'limit': integer out of range. Expected a value between 1 and 100, but got {limit} instead.",
            param="limit",
            code="integer_out_of_range",
        )
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{order[:64]}'. Supported values are: 'asc' and 'desc'.", param="order",
            code="invalid_value",
        )  # fmt: skip
    return PageQuery(limit, order == "asc", q.get("after") or None)


def unknown_after(after: str) -> InvalidRequest:
    """The 400 for an ``after`` cursor that names no item of the list."""
    shown = after if len(after) <= 64 else after[:64] + "…"
    return InvalidRequest(f"Invalid 'after': no item with id '{shown}'.", param="after", code="invalid_value")


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A ``list`` object, the one shape of every list the API pages (input items, conversation items, files,
    vector stores and their files, containers and their files). An empty page's ``first_id``/``last_id`` are
    empty strings: the spec types them as strings (required) in each of those lists, and a page with no items
    has no id to give."""
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else "",
            "last_id": data[-1]["id"] if data else "", "has_more": has_more}  # fmt: skip


def paginate(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``list`` page of ``items`` (oldest first), all in memory, per the query (see :func:`page_query`)."""
    q = page_query(request)
    ordered = items if q.ascending else items[::-1]
    if q.after is not None:
        ids = [it.get("id") for it in ordered]
        if q.after not in ids:
            raise unknown_after(q.after)
        ordered = ordered[ids.index(q.after) + 1 :]
    return page(ordered[: q.limit], len(ordered) > q.limit)


def check_include(request: Request) -> None:
    """``include[]`` values must be ones the API knows; the ones about built-in tools have nothing to add here."""
    for value in request.query_params.getlist("include[]") + request.query_params.getlist("include"):
        if value not in INCLUDABLE_VALUES:
            shown = value if len(value) <= 64 else value[:64] + "…"
            raise InvalidRequest(
                f"Invalid value: '{shown}'. Supported values are: {', '.join(sorted(INCLUDABLE_VALUES))}.",
                param="include",
                code="invalid_value",
            )
