"""The pure parts of retrieval: chunk spans and boundaries, filters, keyword queries, the IVF index."""

from __future__ import annotations

import numpy as np
import pytest

from respd.errors import InvalidRequest
from respd.retrieval import filters, ivf, keywords
from respd.retrieval.chunking import chunk_spans, chunk_text, token_starts
from respd.retrieval.embedder import normalize


def test_chunk_spans_cover_the_text_with_the_overlap() -> None:
    assert chunk_spans(0, 800, 400) == []
    assert chunk_spans(500, 800, 400) == [(0, 500)]
    assert chunk_spans(2000, 800, 400) == [(0, 800), (400, 1200), (800, 1600), (1200, 2000)]
    assert chunk_spans(1000, 300, 0) == [(0, 300), (300, 600), (600, 900), (900, 1000)]


def test_chunks_begin_and_end_on_words() -> None:
    text = " ".join(f"alpha{i} extraordinarily-long-words_here" for i in range(400))
    chunks, starts = chunk_text(text, 100, 50)
    assert len(chunks) > 5 and len(starts) > 1000
    for c in chunks:
        assert c.text == text[c.start : c.end].strip()
        assert c.start == 0 or not text[c.start - 1].isalnum()
        assert c.end == len(text) or not text[c.end - 1].isalnum() or not text[c.end].isalnum()
    assert chunks[0].text.startswith("alpha0") and chunks[-1].text.endswith("words_here")
    assert len(token_starts("ERR-4471 abcdefghij")) == 5  # ERR, -, 4471, abcde, fghij


def test_filters_match_as_the_api_says() -> None:
    attrs = {"category": "it", "year": 2024, "public": True}
    assert filters.matches({"type": "eq", "key": "category", "value": "it"}, attrs)
    assert not filters.matches({"type": "eq", "key": "public", "value": 1}, attrs)  # a boolean is not 1
    assert filters.matches({"type": "gte", "key": "year", "value": 2024}, attrs)
    assert not filters.matches({"type": "gt", "key": "category", "value": 3}, attrs)  # no order across types
    assert filters.matches({"type": "in", "key": "category", "value": ["food", "it"]}, attrs)
    assert filters.matches({"type": "ne", "key": "missing", "value": "x"}, attrs)
    assert not filters.matches({"type": "eq", "key": "missing", "value": "x"}, attrs)
    nested = {"type": "or", "filters": [{"type": "lt", "key": "year", "value": 2000},
                                         {"type": "and", "filters": [{"type": "nin", "key": "category", "value": ["x"]},
                                                                     {"type": "eq", "key": "public", "value": True}]}]}  # fmt: skip
    assert filters.matches(filters.check(nested), attrs)
    for bad, param in (({"type": "eq", "key": "a"}, "filters.value"),
                       ({"type": "in", "key": "a", "value": "x"}, "filters.value"),
                       ({"type": "and", "filters": [{"type": "zz", "key": "a", "value": 1}]}, "filters.filters[0].type"),
                       ({"type": "eq", "key": "a", "value": 1, "extra": 1}, "filters.extra")):  # fmt: skip
        with pytest.raises(InvalidRequest) as err:
            filters.check(bad)
        assert err.value.param == param


def test_keyword_queries() -> None:
    words = keywords.terms("How do I fix ERR-4471 on the router?", drop_stop_words=True)
    assert words == [["fix"], ["err", "4471"], ["router"]]
    q = keywords.fts5_query(words, ["vs_abc123"])
    assert q == 'vector_store_id : ("vsabc123") AND text : ("fix" OR "err 4471" OR "router")'
    assert keywords.terms("the of and", drop_stop_words=True) == []
    assert keywords.pg_words("Fix ERR-4471, fix it") == ["fix", "err-4471,", "it"]


def test_common_words_from_postgres_statistics() -> None:
    vocab = keywords.Vocabulary(100_000, {"router": 9000.0, "reset": 2500.0, "err": 1200.0}, 0.0)
    assert vocab.floor == 1200 and vocab.count(["router"]) == 9000
    assert vocab.count(["err", "4471"]) == 1200  # a phrase: its rarest lexeme; one not listed is at most the floor
    assert vocab.idf(10) > vocab.idf(1200) > vocab.idf(9000) > 0
    assert keywords._kept(["router", "reset", "err-4471"], [9000, 2500, 1200]) == ["err-4471"]
    assert keywords._kept(["router", "reset"], [9000, 2500]) == ["reset"]  # all common: the rarest is kept
    assert keywords.Vocabulary(0, {}, 0.0).floor == keywords.COMMON_DOCS  # never analyzed: nothing is common


def test_ivf_recall_against_exact_search() -> None:
    rng = np.random.default_rng(3)
    centers = normalize(rng.normal(0, 1, (120, 64)).astype(np.float32))
    data = normalize(centers[rng.integers(0, 120, 6000)] + rng.normal(0, 0.06, (6000, 64)).astype(np.float32))
    lists = ivf.list_count(len(data))
    assert lists == int(4 * np.sqrt(6000)) and ivf.list_count(1000) == 0
    centroids = ivf.train(data, lists)
    labels = ivf.assign(data, centroids)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-4)
    recalls = []
    for q in normalize(centers[:40] + rng.normal(0, 0.06, (40, 64)).astype(np.float32)):
        exact = set(np.argsort(-(data @ q))[:10].tolist())
        probed = np.isin(labels, ivf.probe(q, centroids, ivf.nprobe(lists)))
        found = np.flatnonzero(probed)[np.argsort(-(data[probed] @ q))[:10]]
        recalls.append(len(exact & set(found.tolist())) / 10)
        assert probed.sum() < len(data) / 4  # a probe reads a fraction of the store
    assert np.mean(recalls) >= 0.95
    assert ivf.needs_training(5000, 0, 0) and not ivf.needs_training(7000, lists, 6000)
    assert ivf.needs_training(12000, lists, 6000)
