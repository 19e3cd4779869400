"""Embedders: text in, unit vectors out. The bundled model in-process (llama.cpp), or an upstream's
OpenAI-compatible ``/v1/embeddings`` (vLLM, Ollama, TEI, OpenAI) named in the config's ``[embeddings]``.

Embedding is CPU-heavy: the local model computes on the process's llama.cpp thread
(:mod:`respd.backends.llama_thread`, which also steps the chat models), so the event loop keeps serving
requests while files are ingested. Ingestion hands it one window (at most 256 tokens) at a time, in the
background share of its time, so an answer being written beside it waits for one window at most between
two tokens; a search query is urgent (and has a context of its own), so it waits for the window being
computed at most, never for a whole file.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from respd.backends.llama_thread import COMPUTE
from respd.config import EmbeddingsConfig
from respd.retrieval.minilm import MINILM, BundledEmbedder, gguf_path

Vectors = npt.NDArray[np.float32]


class EmbeddingError(Exception):
    """The embedder could not embed (upstream down or refusing, model file bad); the message says why."""


class Embedder(Protocol):
    """What ingestion and search need of an embedding model."""

    name: str  # stored with each vector store: its chunks and queries must be embedded by the same model
    max_tokens: int  # the longest text (in this model's tokens) one vector may stand for

    async def embed(self, texts: list[str], *, bulk: bool = False) -> Vectors:
        """One L2-normalized float32 row per text; a text too long for the model is embedded in windows.
        ``bulk``: ingestion (may wait for other ingestion), not a query."""
        ...

    async def aclose(self) -> None: ...


def normalize(rows: Vectors) -> Vectors:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: Vectors = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


class LocalEmbedder:
    """The bundled model (all-MiniLM-L6-v2) in llama.cpp, loaded on first use."""

    def __init__(self, model: BundledEmbedder = MINILM, n_threads: int = 0) -> None:
        self.model = model
        self.name = model.name
        self.max_tokens = model.max_tokens
        self.dimensions = model.dimensions
        self.n_threads = n_threads
        self._llama: dict[bool, Any] = {}
        self._locks = {False: threading.Lock(), True: threading.Lock()}  # a context runs one batch at a time

    def _load(self, bulk: bool) -> Any:
        """The context for ``bulk`` (ingestion) or queries, loaded on first use; hold its lock."""
        if bulk not in self._llama:
            import os

            import llama_cpp

            from respd.backends.llama_load import load

            self._llama[bulk] = load(
                str(gguf_path(self.model)), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                n_threads=self.n_threads or os.cpu_count() or 1, verbose=False,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            )  # fmt: skip
        return self._llama[bulk]

    def _windows(self, llama: Any, text: str) -> list[str]:
        """``text`` cut into pieces of at most ``max_tokens`` model tokens (on the tokens' boundaries)."""
        ids = llama.tokenize(text.encode(), add_bos=False, special=False)
        size = self.max_tokens - 2  # [CLS] and [SEP]
        if len(ids) <= size:
            return [text]
        return [llama.detokenize(ids[i : i + size]).decode(errors="ignore") for i in range(0, len(ids), size)]

    def _pieces(self, texts: list[str], bulk: bool) -> tuple[list[str], list[int]]:
        """The texts' windows, and the text each is of (tokenizing computes nothing: any thread)."""
        with self._locks[bulk]:
            llama = self._load(bulk)
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for window in self._windows(llama, text or " "):
                pieces.append(window)
                owner.append(i)
        return pieces, owner

    def _rows(self, pieces: list[str], bulk: bool) -> Vectors:
        """The pieces' embeddings, not normalized (computed: on the llama.cpp thread)."""
        with self._locks[bulk]:
            llama = self._load(bulk)
            return np.asarray(llama.embed(pieces, normalize=False), dtype=np.float32).reshape(len(pieces), -1)

    def _combined(self, rows: list[Vectors], owner: list[int], n: int) -> Vectors:
        out = np.zeros((n, self.dimensions), dtype=np.float32)
        if rows:
            np.add.at(out, np.asarray(owner), normalize(np.concatenate(rows)))  # a long text: its windows' mean
        return normalize(out)

    def _query(self, texts: list[str]) -> Vectors:
        pieces, owner = self._pieces(texts, False)
        return self._combined([self._rows(pieces, False)] if pieces else [], owner, len(texts))

    async def embed(self, texts: list[str], *, bulk: bool = False) -> Vectors:
        if not bulk:  # a query: urgent, in one turn on the thread (one hop: a search waits on it)
            if False not in self._llama:
                await asyncio.to_thread(self._pieces, [], False)  # loading computes nothing: not on the thread
            return await COMPUTE.run(functools.partial(self._query, texts), first=True)
        # ingestion: a window (at most max_tokens) per turn, in the background share of the thread
        pieces, owner = await asyncio.to_thread(self._pieces, texts, True)
        rows = [await COMPUTE.run(functools.partial(self._rows, [piece], True)) for piece in pieces]
        return self._combined(rows, owner, len(texts))

    async def aclose(self) -> None:
        for bulk, llama in list(self._llama.items()):
            with self._locks[bulk]:
                llama.close()
        self._llama.clear()


class UpstreamEmbedder:
    """An OpenAI-compatible ``POST {base_url}/embeddings``."""

    def __init__(self, config: EmbeddingsConfig) -> None:
        import os

        self.config = config
        self.name = config.model
        self.max_tokens = config.max_tokens
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(base_url=config.base_url.rstrip("/") + "/", headers=headers,
                                         timeout=config.timeout_s)  # fmt: skip

    async def _request(self, texts: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        if self.config.dimensions:
            body["dimensions"] = self.config.dimensions
        try:
            reply = await self._client.post("embeddings", json=body)
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"The embeddings upstream could not be reached: {exc!r}") from None
        if reply.status_code != 200:
            raise EmbeddingError(f"The embeddings upstream answered {reply.status_code}: {reply.text[:300]}")
        try:
            data = sorted(reply.json()["data"], key=lambda d: d["index"])
            rows = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"The embeddings upstream's reply is not an embeddings list: {exc!r}") from None
        if rows.ndim != 2 or rows.shape[0] != len(texts) or not np.isfinite(rows).all():
            raise EmbeddingError(f"The embeddings upstream returned {rows.shape[0]} vectors for {len(texts)} inputs")
        return normalize(rows)

    async def embed(self, texts: list[str], *, bulk: bool = False) -> Vectors:
        step = max(1, self.config.batch)
        limit = self.max_tokens * 4  # bytes; the upstream refuses longer input, so cut it (rarely needed)
        texts = [t[:limit] or " " for t in texts]
        parts = [await self._request(texts[i : i + step]) for i in range(0, len(texts), step)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_embedder(config: EmbeddingsConfig) -> Embedder:
    """The embedder the config names (the bundled model when it names none)."""
    if config.base_url:
        return UpstreamEmbedder(config)
    return LocalEmbedder(n_threads=config.n_threads)


def tokens_estimate(text: str) -> int:
    """About how many tokens ``text`` is for an upstream model (4 bytes each)."""
    return math.ceil(len(text.encode()) / 4)
