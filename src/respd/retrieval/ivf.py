"""The approximate vector index: IVF (inverted file) lists, stored in the database beside the chunks.

Each vector store's chunks are partitioned by k-means into ``lists`` clusters; a chunk row carries the
number of its cluster (``list_no``, indexed with the store id). A search compares the query with the
centroids, reads only the chunks of the ``nprobe`` nearest lists and ranks those exactly: it touches
``nprobe / lists`` of the store, not all of it. The same tables and queries work on SQLite and PostgreSQL
(no extension needed); recall@10 against exact search is measured in ``bench/vectors_bench.py``.

A small store (up to :data:`EXACT_MAX` chunks) has no lists and is searched exactly. A store is (re)trained
when it outgrows that, and again whenever it has doubled since its last training, so training costs
O(n log n) over a store's growth; chunks added in between join their nearest existing list.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from respd.retrieval.embedder import Vectors

EXACT_MAX = 2048  # a store this small is searched exactly (~0.5 ms of arithmetic; one indexed read)
SAMPLE_PER_LIST = 40  # training points per list (k-means on a sample: the centroids barely change past it)
ITERATIONS = 10
MIN_PROBE = 16

Floats = npt.NDArray[np.float32]


def list_count(n: int) -> int:
    """How many lists a store of ``n`` chunks is trained with (0: none, searched exactly)."""
    return 0 if n <= EXACT_MAX else int(4 * math.sqrt(n))  # ~80 chunks a list at 100k


def needs_training(n: int, lists: int, trained: int) -> bool:
    """Whether a store of ``n`` chunks, trained with ``lists`` lists at ``trained`` chunks, is due."""
    if lists == 0:
        return n > EXACT_MAX
    return n >= 2 * trained


def nprobe(lists: int) -> int:
    """Lists read per query: a 32nd of them, at least :data:`MIN_PROBE` (~2.5k chunks at 100k, ~400 at 10k)."""
    return min(lists, max(MIN_PROBE, math.ceil(lists / 32)))


def train(vectors: Vectors, lists: int, seed: int = 0) -> Floats:
    """``lists`` unit centroids by spherical k-means (k-means++-style seeding) on a sample of ``vectors``."""
    rng = np.random.default_rng(seed)
    sample = vectors
    if len(vectors) > lists * SAMPLE_PER_LIST:
        sample = vectors[rng.choice(len(vectors), lists * SAMPLE_PER_LIST, replace=False)]
    sample = sample.astype(np.float32)
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(ITERATIONS):
        labels = assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        counts = np.bincount(labels, minlength=lists)
        empty = counts == 0
        if empty.any():  # an empty list takes the points farthest from their centroids
            far = np.argsort((sample * centroids[labels]).sum(axis=1))[: int(empty.sum())]
            sums[empty] = sample[far]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    return centroids


def assign(vectors: Vectors, centroids: Floats, block: int = 8192) -> npt.NDArray[np.int64]:
    """The nearest centroid (largest inner product) of each vector."""
    out = np.empty(len(vectors), dtype=np.int64)
    for i in range(0, len(vectors), block):
        out[i : i + block] = np.argmax(vectors[i : i + block] @ centroids.T, axis=1)
    return out


def probe(query: Floats, centroids: Floats, n: int) -> list[int]:
    """The ``n`` lists nearest ``query``."""
    scores = centroids @ query
    n = min(n, len(scores))
    return [int(i) for i in np.argpartition(-scores, n - 1)[:n]]


def to_blob(vector: Floats) -> bytes:
    """A chunk's stored embedding: float16 (half the bytes read per search; rankings unchanged to ~1e-3)."""
    return vector.astype(np.float16).tobytes()


def from_blobs(blobs: list[bytes], dim: int) -> Floats:
    """The embeddings of :func:`to_blob`, as float32 rows."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return decode(b"".join(blobs), len(blobs))


def decode(packed: bytes, n: int) -> Floats:
    """``n`` float16 embeddings stored end to end, as float32 rows.

    numpy's own float16 conversion runs ~5 ms for the ~3,000 vectors a probe reads at 100k chunks (no
    hardware path in the build): more than the rest of the search. This is the usual bit trick instead:
    the half's exponent and mantissa shifted into a float's place, times 2**112 to rebias the exponent
    (exact for normal and subnormal halves and zero; embeddings hold no inf or NaN), then the sign."""
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    bits = np.frombuffer(packed, dtype=np.uint16).astype(np.uint32)
    sign = bits & 0x8000
    sign <<= 16
    bits &= 0x7FFF
    bits <<= 13
    out = bits.view(np.float32)
    out *= np.float32(2.0**112)
    bits |= sign
    return out.reshape(n, -1)
