"""What every request model shares: strict validation and ``type``-tagged unions with readable errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

MAX_TEXT = 10_485_760


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
        if isinstance(value, BaseModel):
            value = {"type": getattr(value, "type", None)}
        if not isinstance(value, dict):
            return None
        kind = value.get("type")
        if kind is None and default is not None:
            kind = default(value)
        if kind in caught:
            kind = "*"
        return TAG_MARK + kind if isinstance(kind, str) else None

    members = tuple(Annotated[m, Tag(TAG_MARK + _literal_type(m))] for m in models)
    if catch_all is not None:
        members += (Annotated[catch_all[0], Tag(TAG_MARK + "*")],)
    return Annotated[Union[members], Discriminator(tag_of)]  # noqa: UP007


def _literal_type(model: type[BaseModel]) -> str:
    args = [a for a in get_args(model.model_fields["type"].annotation) if a is not type(None)]
    (literal,) = args
    value = get_args(literal)[0] if get_args(literal) else literal
    return str(value)
