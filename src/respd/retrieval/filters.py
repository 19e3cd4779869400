"""Attribute filters (``ComparisonFilter``, ``CompoundFilter``): checked when a request arrives, then
evaluated against each vector store file's ``attributes``.

A search applies the filter to the files first (a store has far fewer files than chunks) and then ranks
only the chunks of the files that pass, so a filter never leaves a page short of results it could have had.
"""

from __future__ import annotations

from typing import Any

from respd.errors import InvalidRequest

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")

Filter = dict[str, Any]


def check(f: Any, param: str = "filters") -> Filter:
    """``f`` if it is a well-formed filter, else a 400 naming where it is wrong."""
    if not isinstance(f, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    kind = f.get("type")
    if kind in COMPOUNDS:
        _keys(f, {"type", "filters"}, param)
        subs = f.get("filters")
        if not isinstance(subs, list):
            raise InvalidRequest(f"Invalid type for '{param}.filters': expected an array.", param=f"{param}.filters",
                                 code="invalid_type")  # fmt: skip
        for i, sub in enumerate(subs):
            check(sub, f"{param}.filters[{i}]")
        return f
    if kind not in COMPARISONS:
        allowed = ", ".join(f"'{k}'" for k in COMPARISONS + COMPOUNDS)
        raise InvalidRequest(f"Invalid value for '{param}.type': {kind!r}. Supported values are: {allowed}.",
                             param=f"{param}.type", code="invalid_value")  # fmt: skip
    _keys(f, {"type", "key", "value"}, param)
    if not isinstance(f.get("key"), str):
        raise InvalidRequest(f"Missing or invalid '{param}.key': expected a string.", param=f"{param}.key")
    value = f.get("value")
    scalar = (str, int, float, bool)
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(isinstance(v, scalar) for v in value):
            raise InvalidRequest(f"Invalid '{param}.value': '{kind}' needs an array of strings or numbers.",
                                 param=f"{param}.value")  # fmt: skip
    elif not isinstance(value, scalar):
        raise InvalidRequest(f"Invalid '{param}.value': expected a string, number or boolean.", param=f"{param}.value")
    return f


def _keys(f: Filter, allowed: set[str], param: str) -> None:
    if "type" not in f or not allowed <= set(f) | {"type"}:
        missing = sorted(allowed - set(f))
        raise InvalidRequest(f"Missing required parameter: '{param}.{missing[0]}'.", param=f"{param}.{missing[0]}",
                             code="missing_required_parameter")  # fmt: skip
    extra = sorted(set(f) - allowed)
    if extra:
        raise InvalidRequest(f"Unknown parameter: '{param}.{extra[0]}'.", param=f"{param}.{extra[0]}",
                             code="unknown_parameter")  # fmt: skip


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _order(a: Any, b: Any, op: str) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if not (isinstance(a, numbers) and isinstance(b, numbers)) and not (isinstance(a, str) and isinstance(b, str)):
        return False  # a string attribute is not ordered against a number
    x: Any = a  # both numbers or both strings, as checked above
    y: Any = b
    if op == "gt":
        return bool(x > y)
    if op == "gte":
        return bool(x >= y)
    if op == "lt":
        return bool(x < y)
    return bool(x <= y)


def matches(f: Filter, attributes: dict[str, Any]) -> bool:
    """Whether a file with ``attributes`` passes ``f`` (an attribute it lacks passes only ``ne``/``nin``)."""
    kind = f["type"]
    if kind == "and":
        return all(matches(sub, attributes) for sub in f["filters"])
    if kind == "or":
        return any(matches(sub, attributes) for sub in f["filters"])
    key, value = f["key"], f["value"]
    if key not in attributes:
        return kind in ("ne", "nin")
    have = attributes[key]
    if kind == "eq":
        return _same(have, value)
    if kind == "ne":
        return not _same(have, value)
    if kind == "in":
        return any(_same(have, v) for v in value)
    if kind == "nin":
        return not any(_same(have, v) for v in value)
    return _order(have, value, kind)
