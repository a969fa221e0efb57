"""The character-pair ranking (kb.retrieval.grams): how texts become pairs, and what the
ranking adds to a hybrid search over the real FY2017 build."""

from __future__ import annotations

import numpy as np
import pytest

from kb.retrieval import dense, lexical
from kb.retrieval.grams import pairs
from kb.search.fusion import (
    GRAMS_WEIGHT,
    MIN_SHARED_PAIRS,
    PAIR_DEPTH,
    RRF_K,
    Mode,
    rank,
    top_positive,
)
from kb.search.service import SearchService


def test_pairs_overlap_within_runs_of_word_characters() -> None:
    assert pairs("看護師不足") == ["看護", "護師", "師不", "不足"]
    # Punctuation and spaces break a run; a run of one character stays whole.
    assert pairs("医ケア・児 受入れ") == ["医ケ", "ケア", "児", "受入", "入れ"]


def test_pairs_fold_width_and_case() -> None:
    assert pairs("ＭＳＷ") == pairs("msw") == ["ms", "sw"]
    assert pairs("ｼｮｰﾄ") == pairs("ショート")


def test_pairs_of_nothing() -> None:
    assert pairs("") == pairs("、。 ・") == []


QUERIES = ["厚木児相", "医ケア児の支援でスキルアップしたい", "訪看ステーションの研修"]


@pytest.mark.parametrize("query", QUERIES)
def test_hybrid_adds_each_cell_its_rank_among_the_pairs(service: SearchService, query: str) -> None:
    """The first PAIR_DEPTH cells of each leg that share two of the query's pairs each gain
    GRAMS_WEIGHT / (RRF_K + their rank by the pairs' BM25), computed here with bm25s's
    own index over every cell's pairs; no other cell gains anything."""
    index = service.index
    weights = service.analyzer.query_weights(query)
    vector = service.query_vector(query)
    query_pairs = pairs(service.analyzer.dense_query(query))

    without = rank(index, Mode.hybrid, weights, vector, None)
    with_pairs = rank(index, Mode.hybrid, weights, vector, None, pairs=query_pairs)

    lexical_first = top_positive(lexical.scores(index.lexical, weights), None, PAIR_DEPTH)
    dense_first = dense.search(index.dense, vector, PAIR_DEPTH, None)[0]
    ranked = np.union1d(lexical_first, dense_first)
    every_pair = lexical.build_index(index.grams.terms())
    scores = lexical.scores(every_pair, query_pairs)[ranked]
    held = sum(lexical.holding(every_pair, p, ranked).astype(int) for p in set(query_pairs))
    shared = ranked[(scores > 0) & (held >= MIN_SHARED_PAIRS)]
    by_pairs = shared[np.argsort(-scores[np.isin(ranked, shared)], kind="stable")].tolist()
    assert by_pairs, "the query shares pairs with some cell"
    assert len(by_pairs) < np.count_nonzero(scores > 0), "a cell sharing one pair is left out"

    expected = {p: GRAMS_WEIGHT / (RRF_K + r) for r, p in enumerate(by_pairs, start=1)}
    gained = {p: with_pairs.scores[p] - without.scores.get(p, 0.0) for p in with_pairs.scores}
    assert gained == pytest.approx({p: expected.get(p, 0.0) for p in gained})


@pytest.mark.parametrize("mode", [Mode.dense, Mode.lexical])
def test_single_leg_modes_ignore_the_pairs(service: SearchService, mode: Mode) -> None:
    index, query = service.index, QUERIES[0]
    weights, vector = service.analyzer.query_weights(query), service.query_vector(query)
    plain = rank(index, mode, weights, vector, None)
    assert rank(index, mode, weights, vector, None, pairs=pairs(query)) == plain


def test_search_ranks_by_the_pairs_of_the_text_it_embeds(service: SearchService) -> None:
    """The search passes the vocabulary's rewritten text on to the pair ranking: its order
    is the three-leg fusion of exactly that text."""
    query = QUERIES[1]
    text = service.analyzer.dense_query(query)
    assert text != query  # the vocabulary rewrites this one (医ケア → 医療的ケア …)
    index = service.index
    fused = rank(
        index,
        Mode.hybrid,
        service.analyzer.query_weights(query),
        service.query_vector(query),
        None,
        pairs=pairs(text),
    )
    hits = service.search(query, k=10).hits
    assert [h.chunk.id for h in hits] == [c.id for c in index.store.get(fused.order[:10])]
