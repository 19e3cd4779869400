"""Cutting a file's text into overlapping chunks, and embedding them without embedding any text twice.

Sizes are in tokens, as the API states them (``max_chunk_size_tokens``, ``chunk_overlap_tokens``; ``auto``
is 800 and 400, as OpenAI's). Tokens here are counted the same way whatever the embedding model: a word
piece of up to five letters or digits, or one other non-space character — about what a BPE tokenizer
makes of English (it errs a little high on long words), and cheap enough for a 500 MB file.

A chunk overlaps its neighbours, so with the default strategy every token is in two chunks. The bundled
model reads at most 256 tokens at once anyway, so instead of embedding each chunk, the text is cut at every
chunk boundary into *segments*, each segment is embedded once, and a chunk's vector is the
length-weighted mean of its segments' vectors: half the work, and the same direction as windows would give.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

import numpy as np

from respd.retrieval.embedder import Embedder, Vectors, normalize

AUTO_SIZE = 800
AUTO_OVERLAP = 400
MIN_SIZE, MAX_SIZE = 100, 4096  # the API's bounds on max_chunk_size_tokens

_TOKEN = re.compile(r"[^\W_]{1,5}|[^\w\s]|_")


@dataclass(frozen=True, slots=True)
class Chunk:
    """``text[start:end]`` of the file's text."""

    start: int
    end: int
    text: str


def token_starts(text: str) -> list[int]:
    """The character offset where each token of ``text`` begins."""
    return [m.start() for m in _TOKEN.finditer(text)]


def chunk_spans(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges ``[a, b)`` of the chunks: ``size`` tokens, each starting ``size - overlap`` after the last."""
    if n_tokens == 0:
        return []
    step = size - overlap
    spans = []
    start = 0
    while True:
        end = min(start + size, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            return spans
        start += step


def chunk_text(text: str, size: int = AUTO_SIZE, overlap: int = AUTO_OVERLAP) -> tuple[list[Chunk], list[int]]:
    """The chunks of ``text``, and the token offsets (``token_starts``) they were cut on."""
    starts = token_starts(text)
    bounds = [*starts, len(text)]
    chunks = []
    for a, b in chunk_spans(len(starts), size, overlap):
        lo, hi = _word_start(text, bounds[a]), _word_start(text, bounds[b]) if b < len(starts) else len(text)
        if hi > lo:
            chunks.append(Chunk(lo, hi, text[lo:hi].strip()))
    return chunks, starts


def _word_start(text: str, at: int) -> int:
    """``at``, moved back to the start of the word it falls in (a chunk never begins or ends mid-word); a
    "word" running longer than 64 characters is cut between letters and other characters, or anywhere."""
    if at == 0 or at >= len(text) or text[at - 1].isspace():
        return at
    lo = max(0, at - 64)
    space = max(text.rfind(c, lo, at) for c in " \n\t\r")
    if space >= 0:
        return space + 1
    while at > lo and text[at - 1].isalnum() and text[at].isalnum():
        at -= 1
    return at


async def embed_chunks(embedder: Embedder, text: str, chunks: list[Chunk], starts: list[int], size_tokens: int,
                       *, bulk: bool = True) -> Vectors:  # fmt: skip
    """One unit vector per chunk."""
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    # an upstream model reads a whole chunk (~4 bytes a token): embed the chunks themselves
    if embedder.max_tokens >= size_tokens * 2:
        return await embedder.embed([c.text for c in chunks], bulk=bulk)
    cuts = sorted({c.start for c in chunks} | {c.end for c in chunks})
    segments = list(itertools.pairwise(cuts))
    vectors = await embedder.embed([text[a:b] for a, b in segments], bulk=bulk)
    weights = np.asarray([_tokens_between(starts, a, b) for a, b in segments], dtype=np.float32)
    weighted = vectors * np.maximum(weights, 1.0)[:, None]
    out = np.zeros((len(chunks), vectors.shape[1]), dtype=np.float32)
    for i, chunk in enumerate(chunks):
        first = bisect.bisect_left(cuts, chunk.start)
        last = bisect.bisect_left(cuts, chunk.end)
        out[i] = weighted[first:last].sum(axis=0)
    return normalize(out)


def _tokens_between(starts: list[int], a: int, b: int) -> int:
    return bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a)
