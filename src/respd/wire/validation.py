"""Turn a request body into a typed model, or into one OpenAI-style 400 that names the parameter.

pydantic reports every problem with a location path; the client gets the first one, worded the way the
real API words it (``Unknown parameter: 'foo'.``, ``Invalid type for 'temperature': …``).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from respd.errors import InvalidRequest, Unsupported
from respd.wire.base import TAG_MARK
from respd.wire.items import KNOWN_ITEM_TYPES
from respd.wire.tools import KNOWN_TOOL_TYPES

M = TypeVar("M", bound=BaseModel)

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a decimal",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}


def param_path(loc: tuple[int | str, ...]) -> str:
    """``('input', 0, 'content')`` → ``input[0].content``, dropping pydantic's union-member labels."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_union_label(part):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _is_union_label(part: str) -> bool:
    # pydantic inserts the member it tried ("str", "list[...]", "function-after[...]", a model's class name
    # like "ConversationRef": API field names are never capitalized) or the tag of a tagged union
    # ("message", "function_call") into the location.
    return (
        "[" in part
        or "-" in part
        or part in {"str", "int", "float", "bool", "dict", "list", "none"}
        or part.startswith(TAG_MARK)
        or part.startswith("literal")
        or part[:1].isupper()
    )


def _got(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _best(errors: list[ErrorDetails]) -> ErrorDetails:
    """Of the alternatives a union reports, the one that went deepest is what the client got wrong."""

    def depth(e: ErrorDetails) -> int:
        return len([p for p in e["loc"] if not (isinstance(p, str) and _is_union_label(p))])

    return max(errors, key=depth)


def to_invalid_request(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    """The one 400 for a failed validation (of the part of a request at ``prefix``, if given)."""
    err = _best(exc.errors())
    path = param_path(err["loc"])
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    kind = err["type"]
    value = err.get("input")
    if kind == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            code="invalid_json",
        )
    if kind == "extra_forbidden":
        return InvalidRequest(f"Unknown parameter: '{path}'.", param=path, code="unknown_parameter")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{path}'.", param=path, code="missing_required_parameter")
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return _bad_tag(path, err)
    if kind in _TYPE_NAMES:
        if path == "" and kind in ("model_type", "dict_type"):
            return InvalidRequest("The request body must be a JSON object.", code="invalid_type")
        return InvalidRequest(
            f"Invalid type for '{path}': expected {_TYPE_NAMES[kind]}, but got {_got(value)} instead.",
            param=path,
            code="invalid_type",
        )
    if kind in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
        bound = next(iter((err.get("ctx") or {}).values()), None)
        above = not kind.startswith("greater")
        rel = "above maximum" if above else "below minimum"
        number = "integer" if isinstance(value, int) else "decimal"
        sign = {"less_than_equal": "<=", "less_than": "<", "greater_than_equal": ">=", "greater_than": ">"}
        return InvalidRequest(
            f"Invalid '{path}': value {rel} value. Expected a value {sign[kind]} {bound}, but got {value} instead.",
            param=path,
            code=f"{number}_{'above_max' if above else 'below_min'}_value",
        )
    if kind == "too_long" and isinstance(value, list):
        limit = (err.get("ctx") or {}).get("max_length")
        return InvalidRequest(
            f"Invalid '{path}': array too long. Expected an array with maximum length {limit}, but got an array "
            f"with length {len(value)} instead.",
            param=path,
            code="array_above_max_length",
        )
    if kind in ("string_too_long", "too_long", "string_too_short", "too_short"):
        code = "string_above_max_length" if "long" in kind else "string_below_min_length"
        return InvalidRequest(f"Invalid '{path}': {err['msg'].lower()}.", param=path, code=code)
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return InvalidRequest(
            f"Invalid value: {value!r}. Supported values are: {expected}.", param=path, code="invalid_value"
        )
    return InvalidRequest(f"Invalid '{path}': {err['msg']}.", param=path or None, code="invalid_value")


_TOOL_PATH = re.compile(r"(^|\.)tools\[\d+\]$")


def _bad_tag(path: str, err: ErrorDetails) -> InvalidRequest:
    tag = str((err.get("ctx") or {}).get("tag") or (err.get("input") or {}).get("type")).removeprefix(TAG_MARK)
    param = f"{path}.type" if path else "type"
    if _TOOL_PATH.search(path) and tag in KNOWN_TOOL_TYPES:  # in `tools`, or in an item that brings tools
        return Unsupported(f"Tool type '{tag}' is not supported by this server.", param=param)
    if path.startswith("input") and tag in KNOWN_ITEM_TYPES:
        return Unsupported(f"Input item type '{tag}' is not supported by this server.", param=param)
    expected = str((err.get("ctx") or {}).get("expected_tags", "")).replace(TAG_MARK, "")
    return InvalidRequest(
        f"Invalid value: '{tag}'. Supported values are: {expected}.", param=param, code="invalid_value"
    )


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON body against ``model``; any problem is one :class:`InvalidRequest`."""
    if not body.strip():
        raise InvalidRequest("The request body is empty; a JSON object is expected.", code="invalid_json")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise to_invalid_request(exc) from None
