"""Keyword search (the sparse half of hybrid retrieval), in each database's own full-text index.

SQLite: FTS5 with the Porter stemmer, ranked by BM25 on the text column; the store id is a second column,
so the match is limited to the stores searched inside the index. PostgreSQL: an ``english`` tsvector
(stemmed, stop words dropped) with a GIN index, ranked by the rarity of the words a chunk holds (an IDF
from the table's statistics, see :func:`_pg_search`), ties by ``ts_rank``.

A query's words are OR-ed (any may match, more matches rank higher). A word made of several tokens
(``ERR-4471``, ``user_id``, ``v2.3.1``) is searched as a phrase, so an identifier matches as a whole.
Matches are looked up only for the words found in at most :data:`COMMON_DOCS` chunks (the rarest word is
always kept): ranking a common word's every match is what a keyword search costs, and its matches tell
chunks apart the least. On PostgreSQL the common words still weigh in the ranking of those matches.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from respd.store.store import Store

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"[^\W_]+")
MAX_TERMS = 32
COMMON_DOCS = 2000  # a word in more chunks than this is left out of a SQLite keyword query (see _uncommon)

# Words too common to tell chunks apart (NLTK's English list); dropped from SQLite queries (PostgreSQL's
# english configuration drops its own, Snowball's, which is much the same)
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves""".split()  # noqa: SIM905
)

# The text query is ranked on its own and the stores' matches (the same words AND the store id, unranked)
# are a set it is checked against: bm25 counts the rows of every phrase of its query, so a store-id phrase
# in the ranked query would read the store's whole posting list (every chunk) on each search. The ``+``
# keeps SQLite from driving the ranked query by that set (one FTS5 query per row). Ranking first and
# joining the chunks for the ``k`` kept only: joined first, every match's row was read (10 ms at 100k).
_SQLITE = """
    SELECT c.id, c.file_id, c.vector_store_id, m.rank FROM (
        SELECT rowid, bm25(vs_chunks_fts, 0.0, 1.0) AS rank FROM vs_chunks_fts
        WHERE vs_chunks_fts MATCH :q
        AND +rowid IN (SELECT rowid FROM vs_chunks_fts WHERE vs_chunks_fts MATCH :within)
        ORDER BY rank LIMIT :k) m
    JOIN vs_chunks c ON c.id = m.rowid ORDER BY m.rank
"""
# The GIN index finds the matches of the uncommon words; the store test is written so that no index can
# serve it (``|| ''``): left to its estimates the planner would read every chunk of the store through the
# store's index and test each tsvector. Each match ranked is a heap row read, so the matches are capped, and
# per word: each word brings at most its share of :data:`PG_MATCHES` (the index yields them in no useful
# order), so a word found in many chunks cannot crowd out a rarer one, whose every match is ranked. A
# match's rank is the summed IDF of the query's words it holds, common ones included (so a chunk with a
# rare and a common word of the query comes before one with the rare word alone), then ``ts_rank`` (how
# often they occur; ``ts_rank_cd`` ranked no better, measured against BM25, at 1.5x the cost). A chunk
# matching several words comes once per word, alike and side by side; :func:`search` keeps its first.
PG_MATCHES = 1000
_PG_WORD = """(SELECT id, file_id, vector_store_id, tsv FROM vs_chunks
    WHERE tsv @@ ${w}::tsquery AND vector_store_id || '' = ANY($2) LIMIT $3)"""
_PG_WEIGHT = "${idf}::float8 * (tsv @@ ${w}::tsquery)::int"
_POSTGRES = """
    SELECT id, file_id, vector_store_id, {weights} + ts_rank(tsv, $4::tsquery) AS rank
    FROM ({matches}) m ORDER BY rank DESC, id LIMIT $1
"""
# Each word's lexemes, as the text's tsvector holds them (a word of stop words only has none), and its
# phrase query. The search takes the queries as values, not as calls of phraseto_tsquery: once a prepared
# statement's plan is generic (PostgreSQL's choice from its 6th run), such a call is made again for each
# row, parsing the word anew (the query took 2-3x as long).
_PG_WORDS = """SELECT tsvector_to_array(to_tsvector('english', w)), phraseto_tsquery('english', w)::text
    FROM unnest($1::text[]) WITH ORDINALITY AS t(w, i) ORDER BY i"""
# ANALYZE's most common lexemes of vs_chunks.tsv (up to 10 x the statistics target: 1,000 by default) with
# the fraction of chunks holding each, and the table's row count
_PG_STATS = """SELECT c.reltuples, s.most_common_elems::text::text[] AS lexemes, s.most_common_elem_freqs AS freqs
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'tsv'
        AND NOT s.inherited
    WHERE c.oid = 'vs_chunks'::regclass"""
STATS_TTL_S = 600.0  # how long a process uses the statistics it read (ANALYZE renews them far less often)


def terms(query: str, *, drop_stop_words: bool) -> list[list[str]]:
    """The query's words, each as its tokens (lower case), without repeats."""
    out: list[list[str]] = []
    for word in _WORD.findall(query.lower()):
        tokens = _TOKEN.findall(word)
        if not tokens or tokens in out or (drop_stop_words and len(tokens) == 1 and tokens[0] in STOP_WORDS):
            continue
        out.append(tokens)
    return out[:MAX_TERMS]


def fts5_query(words: list[list[str]], stores: Sequence[str] | None = None) -> str:
    """The FTS5 query for ``words`` (any of them), limited to the chunks of ``stores`` if given."""
    phrases = " OR ".join('"' + " ".join(tokens) + '"' for tokens in words)
    if stores is None:
        return f"text : ({phrases})"
    within = " OR ".join('"' + s.lower().replace("_", "") + '"' for s in stores)  # as the trigger indexes it
    return f"vector_store_id : ({within}) AND text : ({phrases})"


async def _uncommon(raw: Any, words: list[list[str]]) -> list[list[str]]:
    """``words`` less those found in more than :data:`COMMON_DOCS` chunks (the rarest is always kept): BM25
    weighs them little, and ranking a word's every match is what a keyword search costs. ``raw``: the
    aiosqlite connection."""
    tokens = sorted({t for w in words for t in w})
    marks = ",".join("?" * len(tokens))
    docs = dict(await raw.execute_fetchall(f"SELECT term, doc FROM vs_chunks_vocab WHERE term IN ({marks})", tokens))
    # a token the index keeps under another form (the Porter stem) is not found here, and kept
    counts = [min(docs.get(t, 0) for t in w) for w in words]
    return _kept(words, counts)


W = TypeVar("W")


def _kept(words: list[W], counts: Sequence[float]) -> list[W]:
    """The words found in at most :data:`COMMON_DOCS` chunks (``counts``), or else the rarest."""
    kept = [w for w, n in zip(words, counts, strict=True) if n <= COMMON_DOCS]
    return kept or [words[counts.index(min(counts))]]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """How many chunks hold each of PostgreSQL's most common lexemes (all stores together, as SQLite's
    vocabulary counts them), estimated from the table's statistics."""

    chunks: float  # in the table
    counts: dict[str, float]
    read_at: float

    @property
    def floor(self) -> float:
        """The count taken for a lexeme not listed: the least listed (an unlisted one is rarer, or the
        statistics were cut short), :data:`COMMON_DOCS` with none (never analyzed: nothing is common)."""
        return min(self.counts.values(), default=COMMON_DOCS)

    def count(self, lexemes: Sequence[str]) -> float:
        """An estimate of the chunks holding all ``lexemes`` (a phrase's, at least one): its rarest's count."""
        floor = self.floor
        return min(self.counts.get(x, floor) for x in lexemes)

    def idf(self, count: float) -> float:
        """The inverse document frequency of a word in ``count`` chunks."""
        return math.log(1 + max(self.chunks, 1.0) / max(count, 1.0))


_vocabularies: WeakKeyDictionary[Store, Vocabulary] = WeakKeyDictionary()


async def vocabulary(store: Store, raw: Any) -> Vocabulary:
    """The store's :class:`Vocabulary`, read at most every :data:`STATS_TTL_S` (``raw``: an asyncpg
    connection)."""
    cached = _vocabularies.get(store)
    now = time.monotonic()
    if cached is not None and now - cached.read_at < STATS_TTL_S:
        return cached
    row = await raw.fetchrow(_PG_STATS)
    chunks = max(float(row["reltuples"]), 0.0)  # -1: never vacuumed or analyzed
    # the frequencies are per chunk; two more follow the lexemes' (their least and greatest)
    counts = dict(zip(row["lexemes"] or [], (f * chunks for f in row["freqs"] or []), strict=False))
    fresh = _vocabularies[store] = Vocabulary(chunks, counts, now)
    return fresh


def pg_words(query: str) -> list[str]:
    """The query's words for PostgreSQL, each to be parsed there as a phrase by the parser that parsed the
    text (it reads ``ERR-4471`` as ``err`` then ``-4471``: a query must be cut the same way to match)."""
    words = [w for w in dict.fromkeys(_WORD.findall(query.lower())) if _TOKEN.search(w)]
    return words[:MAX_TERMS]


async def search(store: Store, stores: Sequence[str], query: str, k: int) -> list[tuple[int, str, str, float]]:
    """The ``k`` best keyword matches of ``query`` in ``stores``: ``(chunk id, file id, store id, score)``, best
    first."""
    async with store.engine.connect() as conn:
        # on the driver's own connection: one hop to its thread (aiosqlite) or round trip (asyncpg) per
        # statement (SQLAlchemy's cursor takes three to aiosqlite's thread, and a BEGIN to PostgreSQL)
        raw: Any = (await conn.get_raw_connection()).driver_connection
        if store.is_sqlite:
            words = terms(query, drop_stop_words=True)
            if not words:
                return []
            words = await _uncommon(raw, words)
            params = {"q": fts5_query(words), "within": fts5_query(words, stores), "k": k}
            found = await raw.execute_fetchall(_SQLITE, params)
            return [(r[0], r[1], r[2], -float(r[3])) for r in found]  # FTS5's bm25 is lower for better
        return await _pg_search(store, raw, stores, pg_words(query), k)


async def _pg_search(store: Store, raw: Any, stores: Sequence[str], words: list[str],
                     k: int) -> list[tuple[int, str, str, float]]:  # fmt: skip
    """:func:`search` on PostgreSQL (``raw``: an asyncpg connection); ``words``: :func:`pg_words`'s."""
    if not words:
        return []
    vocab = await vocabulary(store, raw)
    # words of stop words only match nothing: left out
    parsed = await raw.fetch(_PG_WORDS, words)
    every = {q: vocab.count(lexemes) for lexemes, q in parsed if lexemes}  # a phrase query once
    if not every:
        return []
    matched = _kept(list(every), list(every.values()))
    ranked = matched + [q for q in every if q not in matched]  # $5, $6, …: the matched words' first
    either = " | ".join(f"({q})" for q in ranked)
    first = 5 + len(ranked)  # the IDFs' parameters follow the words'
    weights = " + ".join(_PG_WEIGHT.format(idf=first + i, w=5 + i) for i in range(len(ranked)))
    matches = " UNION ALL ".join(_PG_WORD.format(w=5 + i) for i in range(len(matched)))
    sql = _POSTGRES.format(weights=weights, matches=matches)
    found = await raw.fetch(sql, k * len(matched), list(stores), max(1, PG_MATCHES // len(matched)), either,
                            *ranked, *(vocab.idf(every[q]) for q in ranked))  # fmt: skip
    rows = list({r["id"]: r for r in found}.values())  # a chunk's rows are alike and side by side
    return [(r["id"], r["file_id"], r["vector_store_id"], float(r["rank"])) for r in rows[:k]]
