"""JSON numbers respd can keep: integers within 64 bits (signed), decimals within a double's range.

JSON itself sets no limit, but everything past the edge does: orjson (which writes the stored Response and
every event) refuses integers beyond 64 bits, a decimal like ``1e400`` becomes infinity, which JSON cannot
spell, and upstreams parse numbers into 64-bit types too. So a number outside these ranges, anywhere in a
body (a tool's ``parameters``, a schema, ``max_output_tokens``), is a 400 naming where it is, before any
of it is used.

Checking costs a regular-expression scan of the raw body: only a body with a run of 19 digits, an exponent
of three digits or a ``NaN``/``Infinity`` (which pydantic's parser accepts) can hold such a number, and only
then is it parsed again (exactly, with the standard library) to find it, or to find that the digits were
inside a string.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from respd.errors import InvalidRequest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_MAYBE_LARGE = re.compile(rb"\d{19}|[eE][+-]?\d{3}|NaN|Infinity")


def check_numbers(body: bytes | str) -> None:
    """Raise a 400 naming the first number of the JSON ``body`` that is out of range; malformed JSON passes
    (the parser that follows words that error)."""
    raw = body.encode() if isinstance(body, str) else body
    if _MAYBE_LARGE.search(raw) is None:
        return
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return
    found = _find(doc, "")
    if found is not None:
        raise _out_of_range(*found)


def _find(value: Any, path: str) -> tuple[str, int | float] | None:
    """The path and value of the first number out of range in ``value``, depth first."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, bool):
            continue
        if isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                return where, node
        elif isinstance(node, float):
            if not math.isfinite(node):
                return where, node
        elif isinstance(node, dict):
            stack += [(v, f"{where}.{k}" if where else str(k)) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            stack += [(v, f"{where}[{i}]") for i, v in reversed(list(enumerate(node)))]
    return None


def _out_of_range(path: str, value: int | float) -> InvalidRequest:
    param = path or None
    if isinstance(value, int):
        above = value > INT64_MAX
        return InvalidRequest(
            f"Invalid '{path}': integer {'above maximum' if above else 'below minimum'} value. Expected a value "
            f"{'<= ' + str(INT64_MAX) if above else '>= ' + str(INT64_MIN)}, but got a {len(str(abs(value)))}-digit "
            "integer instead.",
            param=param,
            code="integer_above_max_value" if above else "integer_below_min_value",
        )
    return InvalidRequest(
        f"Invalid '{path}': number out of range. Expected a finite decimal (at most about 1.8e308 in size).",
        param=param,
        code="decimal_above_max_value" if value > 0 else "decimal_below_min_value",
    )
