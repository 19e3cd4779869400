"""The bodies of the ``/v1/conversations`` endpoints (``S:CreateConversationBody`` and friends)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from respd.wire.base import Wire
from respd.wire.items import InputItem

MAX_ITEMS = 20  # items per create call, on the conversation and on its items


class CreateConversation(Wire):
    metadata: dict[str, str] | None = None
    items: Annotated[list[InputItem], Field(max_length=MAX_ITEMS)] | None = None


class UpdateConversation(Wire):
    metadata: dict[str, str] | None  # required; null clears it


class CreateItems(Wire):
    items: Annotated[list[InputItem], Field(max_length=MAX_ITEMS)]
