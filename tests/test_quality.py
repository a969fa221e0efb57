"""The quality yardstick and the ranking it measures: nDCG@10, Recall@10 and MRR computed
by hand on small cases, reciprocal rank fusion on hand-built lists, and floors under the
hybrid nDCG@10 of the held-out half of the graded queries (eval/heldout.yaml, never tuned
on; see the top of eval/tune.yaml), so that a ranking regression fails the suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import REPO

from kb.apps.evaluate import evaluate, load_queries, ndcg, recall, reciprocal_rank
from kb.search.fusion import RRF_K, Mode, rrf
from kb.search.service import SearchService

HELD_OUT = REPO / "eval" / "heldout.yaml"
# README "Search quality", held-out hybrid nDCG@10, less 0.02 for harmless reorderings.
HYBRID_FLOOR = 0.825 - 0.02
EXACT_FLOOR = 0.943 - 0.02  # exact-term queries: the table's own words typed as they are


# --- nDCG@k: gain 2^grade - 1, discount log2(rank + 1) ----------------------------------


def test_ndcg_of_graded_hits_against_the_ideal_order() -> None:
    # Grades listed unsorted on purpose: the ideal ranking is 2, 1, 1 whatever their order.
    grades = {"a": 1, "b": 2, "c": 1}
    ranked = ["a", "x", "b"]  # grade 1 at rank 1, nothing at 2, grade 2 at rank 3
    dcg = 1 / math.log2(2) + 3 / math.log2(4)  # = 2.5
    ideal = 3 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # ≈ 4.1309
    assert ndcg(ranked, grades, 10) == pytest.approx(dcg / ideal)
    assert ndcg(ranked, grades, 10) == pytest.approx(0.605191, abs=1e-6)


def test_ndcg_is_one_for_the_ideal_order_and_counts_only_the_top_k() -> None:
    grades = {"a": 1, "b": 2, "c": 1}
    assert ndcg(["b", "a", "c"], grades, 10) == pytest.approx(1.0)
    # At k = 2 the ideal is the best two grades; a third relevant cell below k is not missed.
    assert ndcg(["b", "c", "a"], grades, 2) == pytest.approx(1.0)
    # The same cells past k count for nothing.
    assert ndcg(["x", "y", "b"], grades, 2) == 0.0


def test_ndcg_ties_between_equal_grades_do_not_matter() -> None:
    grades = {"a": 1, "c": 1, "b": 2}
    assert ndcg(["b", "a", "c"], grades, 10) == ndcg(["b", "c", "a"], grades, 10)
    # … but a better grade higher up does.
    assert ndcg(["b", "a"], grades, 10) > ndcg(["a", "b"], grades, 10)


def test_ndcg_of_nothing() -> None:
    assert ndcg([], {"a": 2}, 10) == 0.0  # no results
    assert ndcg(["a", "b"], {}, 10) == 0.0  # no relevant cells: 0, not a division by zero
    assert ndcg(["x", "y"], {"a": 2}, 10) == 0.0


# --- Recall@k: relevant cells found in the top k over all relevant cells ------------------


def test_recall_divides_by_the_relevant_cells_not_by_k() -> None:
    grades = {"a": 2, "b": 1, "c": 1, "d": 1}
    ranked = ["a", "x", "c", "y"]  # 2 of the 4 relevant cells, in a list of k = 10
    assert recall(ranked, grades, 10) == pytest.approx(2 / 4)


def test_recall_counts_only_the_top_k_and_ignores_grades() -> None:
    grades = {f"r{i}": 1 + i % 2 for i in range(12)}
    ranked = [f"r{i}" for i in range(12)]
    assert recall(ranked, grades, 10) == pytest.approx(10 / 12)
    assert recall(["x"] * 10 + ["r0"], grades, 10) == 0.0


def test_recall_of_nothing() -> None:
    assert recall([], {"a": 1}, 10) == 0.0
    assert recall(["a"], {}, 10) == 0.0


# --- MRR: one over the rank of the first relevant cell -----------------------------------


def test_reciprocal_rank_of_the_first_relevant_cell() -> None:
    assert reciprocal_rank(["x", "y", "a", "b"], {"a": 1, "b": 2}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["b", "a"], {"a": 2, "b": 1}) == 1.0  # any grade counts
    assert reciprocal_rank(["x", "y"], {"a": 1}) == 0.0
    assert reciprocal_rank([], {"a": 1}) == 0.0


# --- reciprocal rank fusion ----------------------------------------------------------------


def test_rrf_sums_the_contributions_of_both_lists() -> None:
    # Cell 7 is second in both lists; 1 and 2 are each first in one list only. Summing puts
    # the cell both rankers agree on first; taking the best single contribution would not.
    dense = np.array([1, 7, 3])
    lexical = np.array([2, 7, 4])
    fused = rrf([(dense, 1.0), (lexical, 1.0)], k=40)
    assert fused[7] == pytest.approx(1 / 42 + 1 / 42)
    assert fused[1] == pytest.approx(1 / 41)
    assert fused[3] == pytest.approx(1 / 43)
    order = sorted(fused, key=lambda p: -fused[p])
    assert order[0] == 7
    assert set(order) == {1, 2, 3, 4, 7}


def test_rrf_weights_and_default_k() -> None:
    fused = rrf([(np.array([5, 6]), 2.0), (np.array([6]), 0.5)])
    assert fused[5] == pytest.approx(2.0 / (RRF_K + 1))
    assert fused[6] == pytest.approx(2.0 / (RRF_K + 2) + 0.5 / (RRF_K + 1))
    assert rrf([]) == {}


# --- the ranking itself ----------------------------------------------------------------------


def test_held_out_hybrid_ndcg_stays_above_its_floor(service: SearchService) -> None:
    store = service.index.store
    queries = load_queries(HELD_OUT, store.get(range(len(store))))
    hybrid = evaluate(service, queries, [Mode.hybrid])["modes"]["hybrid"]
    assert len(queries) > 50
    assert hybrid["ndcg@10"] >= HYBRID_FLOOR, hybrid["misses"]
    assert hybrid["by_kind"]["exact"]["ndcg@10"] >= EXACT_FLOOR
