"""Rules a create request must meet beyond its schema, and features respd cannot honour (yet).

Everything here runs before anything is stored, so a refused request changes nothing.
"""

from __future__ import annotations

from typing import Any

from respd.errors import InvalidRequest, Unsupported
from respd.wire.request import CreateResponse


def check_metadata(metadata: dict[str, str] | None, param: str = "metadata") -> None:
    """At most 16 keys, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return
    if len(metadata) > 16:
        raise InvalidRequest(
            f"Invalid '{param}': too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(metadata)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise InvalidRequest(
                f"Invalid '{param}': key too long. Expected a key with at most 64 characters, but got a key "
                f"with {len(key)} characters instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
        if len(value) > 512:
            raise InvalidRequest(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum length 512, "
                f"but got a string with length {len(value)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )


def check_parts(items: list[dict[str, Any]], param: str = "input", *, indexed: bool = True) -> None:
    """Content parts respd cannot read yet are refused, wherever they come from (this turn's input, a
    conversation's items, a referenced item): input files, and images given by ``file_id``. ``param`` names
    where the items came from; ``indexed`` adds each one's place in it."""
    for i, item in enumerate(items):
        content = item.get("content") if item.get("type") == "message" else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            where = f"{param}[{i}].content[{j}]" if indexed else param
            if part.get("type") == "input_file":
                raise Unsupported("Input files are not supported by this server.", param=where)
            if part.get("type") == "input_image" and not part.get("image_url"):
                raise Unsupported(
                    "Images by 'file_id' are not supported by this server; send 'image_url' "
                    "(an http(s) URL or a data URL).",
                    param=f"{where}.file_id" if indexed else where,
                )


def check_request(req: CreateResponse) -> None:
    """Raise the first 400 this request deserves; return quietly if it can run."""
    if req.model is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if req.input is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    check_metadata(req.metadata)
    if req.background and req.store is False:
        raise InvalidRequest("Background mode requires 'store' to be true.", param="background")
    if req.conversation is not None and req.previous_response_id is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or "
            "'conversation'.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    for name in ("prompt", "moderation"):
        if getattr(req, name) is not None:
            raise Unsupported(f"'{name}' is not supported by this server.", param=name)
