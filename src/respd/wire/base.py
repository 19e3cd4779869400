"""What every request model shares: strict validation and ``type``-tagged unions with readable errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_TEXT = 10_485_760
MAX_ID = 128  # the longest item id a client may give (and the stored column's width)
_ID_CHARS = re.compile(r"[!-~]+")  # visible ASCII: no spaces, no control characters (NUL), nothing else


def _item_id(value: str) -> str:
    if value and (len(value) > MAX_ID or not _ID_CHARS.fullmatch(value)):  # "" stands for no id, as before
        raise PydanticCustomError(
            "item_id",
            f"expected an ID of 1 to {MAX_ID} visible ASCII characters (letters, digits, punctuation; no spaces or "
            "control characters)",
        )
    return value


ItemId = Annotated[
    str, AfterValidator(_item_id), WithJsonSchema({"type": "string", "maxLength": MAX_ID, "pattern": "^[!-~]*$"})
]
"""An item id a client gives (``msg_…``, ``fc_…``, or its own; ``""`` is none): respd stores and looks items
up by it, so it is checked here, the same on every database, rather than left for a column to refuse."""


class Wire(BaseModel):
    """Base for request models: unknown fields are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


TAG_MARK = "~"  # marks union tags in error locations, so they can be told from field names


def tagged(
    *models: type[BaseModel],
    default: Callable[[dict[str, Any]], str] | None = None,
    catch_all: tuple[type[BaseModel], frozenset[str]] | None = None,
) -> Any:
    """A union discriminated by ``type`` whose tags cannot be mistaken for field names in error paths.

    ``default`` is the member for a dict without ``type`` (messages may leave it out); ``catch_all`` is one
    model that takes every ``type`` in its set (built-in tools respd passes through or leaves out).
    """
    caught = catch_all[1] if catch_all else frozenset()

    def tag_of(value: Any) -> str | None:
        # None (no tag) for anything but an object with a string ``type``: respd.wire.validation words the
        # error from the value itself (a string where an object belongs, a ``type`` that is an object, …).
        if isinstance(value, BaseModel):
            value = {"type": getattr(value, "type", None)}
        if not isinstance(value, dict):
            return None
        kind = value.get("type")
        if kind is None and default is not None:
            kind = default(value)
        if not isinstance(kind, str):
            return None
        return TAG_MARK + ("*" if kind in caught else kind)

    members = tuple(Annotated[m, Tag(TAG_MARK + _literal_type(m))] for m in models)
    if catch_all is not None:
        members += (Annotated[catch_all[0], Tag(TAG_MARK + "*")],)
    return Annotated[Union[members], Discriminator(tag_of)]  # noqa: UP007


def _literal_type(model: type[BaseModel]) -> str:
    args = [a for a in get_args(model.model_fields["type"].annotation) if a is not type(None)]
    (literal,) = args
    value = get_args(literal)[0] if get_args(literal) else literal
    return str(value)
