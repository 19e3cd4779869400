"""The bodies of the ``/v1/containers`` endpoints (``S:CreateContainerBody``, ``S:CreateContainerFileBody``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from respd.wire.base import Wire


class ExpiresAfter(Wire):
    anchor: Literal["last_active_at"]
    minutes: Annotated[int, Field(ge=1, le=10_080)]


class NetworkPolicy(Wire):
    type: Literal["disabled", "allowlist"]
    allowed_domains: list[str] | None = None


class CreateContainer(Wire):
    name: Annotated[str, Field(max_length=256)]
    file_ids: Annotated[list[str], Field(max_length=50)] | None = None
    expires_after: ExpiresAfter | None = None
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: NetworkPolicy | None = None
    skills: list[dict[str, Any]] | None = None


class CreateContainerFile(Wire):
    file_id: str
