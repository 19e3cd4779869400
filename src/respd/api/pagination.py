"""Cursor pages of items (``input_items``, conversation items): limit, order, after; the ``include`` query."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from respd.errors import InvalidRequest
from respd.wire.request import INCLUDABLE_VALUES


def page_args(request: Request) -> tuple[int, str, str | None]:
    """The query's ``limit`` (1-100, default 20), ``order`` (``asc``/``desc``, default ``desc``) and ``after``."""
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
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order", code="invalid_value"
        )
    return limit, order, q.get("after")


def page_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A ``list`` object of ``data``."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def paginate(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``list`` page of ``items`` (oldest first) per the query's ``limit``/``order``/``after``."""
    limit, order, after = page_args(request)
    ordered = items if order == "asc" else items[::-1]
    if after is not None:
        ids = [it.get("id") for it in ordered]
        if after not in ids:
            raise InvalidRequest(f"Invalid 'after': no item with id '{after}'.", param="after", code="invalid_value")
        ordered = ordered[ids.index(after) + 1 :]
    return page_body(ordered[:limit], len(ordered) > limit)


def check_include(request: Request) -> None:
    """``include[]`` values must be ones the API knows; the ones about built-in tools have nothing to add here."""
    for value in request.query_params.getlist("include[]") + request.query_params.getlist("include"):
        if value not in INCLUDABLE_VALUES:
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: {', '.join(sorted(INCLUDABLE_VALUES))}.",
                param="include",
                code="invalid_value",
            )
