"""The bodies of the ``/v1/vector_stores`` endpoints (``CreateVectorStoreRequest`` and friends).

Filters are kept as plain JSON here and checked by :func:`respd.retrieval.filters.check` (they nest).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from respd.wire.base import Wire

Attributes = dict[str, str | float | bool]


class StaticNumbers(Wire):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class AutoChunking(Wire):
    type: Literal["auto"]


class StaticChunking(Wire):
    type: Literal["static"]
    static: StaticNumbers


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class ExpiresAfter(Wire):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class CreateVectorStore(Wire):
    name: str | None = None
    file_ids: Annotated[list[str], Field(max_length=500)] | None = None
    description: str | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: dict[str, str] | None = None


class UpdateVectorStore(Wire):
    name: str | None = None
    expires_after: ExpiresAfter | None = None
    metadata: dict[str, str] | None = None


class CreateFile(Wire):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class UpdateFile(Wire):
    attributes: Attributes | None


class BatchFile(Wire):
    file_id: str
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class CreateBatch(Wire):
    file_ids: Annotated[list[str], Field(min_length=1, max_length=2000)] | None = None
    files: Annotated[list[BatchFile], Field(min_length=1, max_length=2000)] | None = None
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class HybridSearch(Wire):
    embedding_weight: float
    text_weight: float


class RankingOptions(Wire):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0
    hybrid_search: HybridSearch | None = None


class SearchRequest(Wire):
    query: str | Annotated[list[str], Field(min_length=1)]
    rewrite_query: bool = False
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    filters: dict[str, Any] | None = None
    ranking_options: RankingOptions | None = None
