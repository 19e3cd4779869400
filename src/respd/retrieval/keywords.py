"""Keyword search (the sparse half of hybrid retrieval), in each database's own full-text index.

SQLite: FTS5 with the Porter stemmer, ranked by BM25 on the text column; the store id is a second column,
so the match is limited to the stores searched inside the index. PostgreSQL: an ``english`` tsvector
(stemmed, stop words dropped) with a GIN index, ranked by ``ts_rank_cd``.

A query's words are OR-ed (any may match, more matches rank higher). A word made of several tokens
(``ERR-4471``, ``user_id``, ``v2.3.1``) is searched as a phrase, so an identifier matches as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

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
# The GIN index finds the matches; the store test is written so that no index can serve it (``|| ''``):
# left to its estimates the planner would read every chunk of the store through the store's index and test
# each tsvector. Each match ranked is a heap row read (ts_rank_cd reads its tsvector), so the matches are
# capped, and per word: each word brings at most its share of :data:`PG_MATCHES` (the index yields them
# in no useful order), so a word found in most chunks cannot crowd out a rare one, whose every match is
# ranked. A chunk matching several words comes once per word; :func:`search` keeps its first.
PG_MATCHES = 1000
_PG_WORD = """(SELECT id, file_id, vector_store_id, tsv FROM vs_chunks
    WHERE tsv @@ phraseto_tsquery('english', :w{i}) AND vector_store_id || '' = ANY(:stores) LIMIT :per)"""
_POSTGRES = """
    SELECT id, file_id, vector_store_id, ts_rank_cd(tsv, q) AS rank FROM ({matches}) m, (SELECT {query} AS q) q
    ORDER BY rank DESC, id LIMIT :k
"""


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
    kept = [w for w, n in zip(words, counts, strict=True) if n <= COMMON_DOCS]
    return kept or [words[counts.index(min(counts))]]


def pg_words(query: str) -> list[str]:
    """The query's words for PostgreSQL, each to be parsed there as a phrase by the parser that parsed the
    text (it reads ``ERR-4471`` as ``err`` then ``-4471``: a query must be cut the same way to match)."""
    words = [w for w in dict.fromkeys(_WORD.findall(query.lower())) if _TOKEN.search(w)]
    return words[:MAX_TERMS]


async def search(store: Store, stores: Sequence[str], query: str, k: int) -> list[tuple[int, str, str, float]]:
    """The ``k`` best keyword matches of ``query`` in ``stores``: ``(chunk id, file id, store id, score)``, best
    first."""
    async with store.engine.connect() as conn:
        if store.is_sqlite:
            words = terms(query, drop_stop_words=True)
            if not words:
                return []
            # on aiosqlite's own connection: one hop to its thread per statement (SQLAlchemy's cursor takes
            # three, and on a busy host each waits for a core)
            raw: Any = (await conn.get_raw_connection()).driver_connection
            words = await _uncommon(raw, words)
            params = {"q": fts5_query(words), "within": fts5_query(words, stores), "k": k}
            found = await raw.execute_fetchall(_SQLITE, params)
            return [(r[0], r[1], r[2], -float(r[3])) for r in found]  # FTS5's bm25 is lower for better
        else:
            pg = pg_words(query)
            if not pg:
                return []
            either = " || ".join(f"phraseto_tsquery('english', :w{i})" for i in range(len(pg)))
            matches = " UNION ALL ".join(_PG_WORD.format(i=i) for i in range(len(pg)))
            params = {"k": k * len(pg), "stores": list(stores), "per": max(1, PG_MATCHES // len(pg)),
                      **{f"w{i}": w for i, w in enumerate(pg)}}  # fmt: skip
            sql = _POSTGRES.format(matches=matches, query=either)
            found = (await conn.execute(text(sql), params)).all()
            rows = list({r.id: r for r in found}.values())  # a chunk's rows are alike and side by side
    return [(r.id, r.file_id, r.vector_store_id, float(r.rank)) for r in rows[:k]]
