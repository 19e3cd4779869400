"""Rules a create request must meet beyond its schema, and features respd cannot honour (yet).

Everything here runs before anything is stored, so a refused request changes nothing.
"""

from __future__ import annotations

from respd.errors import InvalidRequest, Unsupported
from respd.wire import items as w
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


def _check_input(req: CreateResponse) -> None:
    if not isinstance(req.input, list):
        return
    for i, item in enumerate(req.input):
        if isinstance(item, w.Message) and not isinstance(item.content, str):
            for j, part in enumerate(item.content):
                if isinstance(part, w.InputImage) and not part.image_url and not part.file_id:
                    raise InvalidRequest(
                        "An input_image part needs 'image_url' (an http(s) URL or a data URL) or 'file_id'.",
                        param=f"input[{i}].content[{j}]",
                        code="missing_required_parameter",
                    )
    # input_file parts (and images by file_id) are read before the run: respd.files.inputs


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
    _check_input(req)
