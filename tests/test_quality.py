"""The quality yardstick and the ranking it measures: nDCG@10, Recall@10 and MRR computed
by hand on small cases, reciprocal rank fusion on hand-built lists, floors under the
hybrid nDCG@10 of the held-out half of the graded queries (eval/heldout.yaml, never tuned
on; see the top of eval/tune.yaml), so that a ranking regression fails the suite; the query
files' halves (``split:``), their mistakes reported as one line naming file and line, and the
plain report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from kb.apps.evaluate import (
    evaluate,
    load_queries,
    ndcg,
    recall,
    reciprocal_rank,
    render,
    select_split,
)
from kb.core.errors import InputError
from kb.search.fusion import RRF_K, Mode, rrf
from kb.search.service import SearchService

TUNE = REPO / "eval" / "tune.yaml"
HELD_OUT = REPO / "eval" / "heldout.yaml"
UNANSWERABLE = REPO / "eval" / "unanswerable.yaml"
FRESH = REPO / "eval" / "fresh.yaml"
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


# --- query files: the two halves -----------------------------------------------------------


def _chunks(service: SearchService) -> list:
    store = service.index.store
    return store.get(range(len(store)))


def test_each_query_takes_its_files_half_and_a_development_set_is_in_neither(service) -> None:
    chunks = _chunks(service)
    assert {q.split for q in load_queries(TUNE, chunks)} == {"tune"}
    assert {q.split for q in load_queries(HELD_OUT, chunks)} == {"heldout"}
    assert {q.split for q in load_queries(UNANSWERABLE, chunks)} == {"tune", "heldout"}
    assert {q.split for q in load_queries(FRESH, chunks)} == {""}


def test_a_half_never_takes_the_other_half_or_a_development_set(service) -> None:
    """What `kb calibrate eval/*.yaml` (default --split tune) fits on: the tuning half only."""
    chunks = _chunks(service)
    every = [
        q for path in (TUNE, HELD_OUT, UNANSWERABLE, FRESH) for q in load_queries(path, chunks)
    ]
    tune = select_split(every, "tune")
    held_out = select_split(every, "heldout")
    assert {q.split for q in tune} == {"tune"}
    assert {q.split for q in held_out} == {"heldout"}
    assert len(tune) + len(held_out) < len(every)  # fresh.yaml is in neither
    assert not {q.query for q in tune} & {q.query for q in load_queries(HELD_OUT, chunks)}
    assert select_split(every, None) == every


def test_asking_for_a_half_no_query_belongs_to_is_a_clear_error(service) -> None:
    with pytest.raises(InputError, match="--split tune に当たる質問がありません"):
        select_split(load_queries(HELD_OUT, _chunks(service)), "tune")


def test_kb_eval_of_a_half_a_file_does_not_hold_fails_in_one_line(invoke_kb, built_index) -> None:
    done = invoke_kb(
        "eval", HELD_OUT, "--split", "tune", "--mode", "hybrid",
        corpus=built_index.corpus_dir, index=built_index.index_dir,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "エラー: --split tune に当たる質問がありません（ファイルの先頭か質問ごとに"
        "「split: tune」と書いたものだけが使われます）"
    ]


# --- query files: mistakes -------------------------------------------------------------------

CELL = "{org: 厚木市障がい福祉課①, field: challenge, contains: 看護人材の不足により, grade: 2}"


def _file(relevant: str = CELL, query: str = "query: 看護師不足", top: str = "split: tune") -> str:
    """A query file whose relevant entry is on line 6."""
    return (
        f"{top}\nqueries:\n  - {query}\n    kind: paraphrase\n    relevant:\n      - {relevant}\n"
    )


@pytest.mark.parametrize(
    ("text", "row", "message"),
    [
        (_file(query="kind: exact"), 3, "質問に query: がありません"),
        (_file(query="query: ''"), 3, "質問の query: に何も書かれていません"),
        ("queries:\n  - 看護師不足\n", 2, "質問は「- query: 検索語」の形で書いてください"),
        (_file(query="query: 看護師不足\n    relevent: []"), 4, "「relevent」は使えない見出しです"),
        (
            _file("{org: 厚木市障がい福祉課①, field: challenge, grade: 2}"),
            6,
            "「看護師不足」の正解に contains: がありません",
        ),
        (
            _file("{field: challenge, contains: 看護人材の不足により}"),
            6,
            "「看護師不足」の正解に org: がありません",
        ),
        (_file("{id: 2017-atsugi-003-challenge}"), 6, "「id」は使えない見出しです"),
        (_file("看護人材の不足により"), 6, "「看護師不足」の正解は「{org: …, field: …"),
        (
            _file(CELL.replace("challenge", "kadai")),
            6,
            "field: 「kadai」という欄はありません（item・progress・challenge・solution・next_year",
        ),
        (_file(CELL.replace("grade: 2", "grade: five")), 6, "grade: は 2（答えになる）か 1"),
        (
            _file(CELL.replace("看護人材の不足により", "表にない文言")),
            6,
            "「表にない文言」の条件に当てはまるセルがありません（1件に決まるように書いてください）",
        ),
        (
            _file(
                "{org: 神奈川県リハビリテーション事業団, field: next_year,"
                " contains: 地域移行に際して}"
            ),
            6,
            "の条件に当てはまるセルが2件あります（1件に決まるように書いてください）",
        ),
        (_file(top="split: tuning"), 1, "split: は tune か heldout です（「tuning」は使えません）"),
        (
            _file(query="query: 看護師不足\n    split: heldout"),
            4,
            "split: heldout ですが、ファイル全体が split: tune です",
        ),
        ("queries:\n  - query: [看護師不足\n", 3, "YAML として読めません"),
        ("split: tune\n", 1, "質問がありません"),
    ],
)
def test_a_mistake_in_a_query_file_is_one_line_naming_file_and_line(
    service, tmp_path: Path, text: str, row: int, message: str
) -> None:
    path = tmp_path / "queries.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_queries(path, _chunks(service))
    error = raised.value
    assert message in error.problem
    assert (error.file, error.row) == (str(path), row)
    assert "\n" not in str(error)
    assert "<unicode string>" not in str(error)


def test_a_query_file_not_in_utf8_names_the_line_it_cannot_read(service, tmp_path: Path) -> None:
    path = tmp_path / "queries.yaml"
    path.write_bytes(_file().replace("看護師不足", "看護").encode("utf-8").replace(
        "看護".encode(), "看護".encode("shift_jis"), 1
    ))  # fmt: skip
    with pytest.raises(InputError, match="UTF-8 のテキストとして読めません") as raised:
        load_queries(path, _chunks(service))
    assert (raised.value.file, raised.value.row) == (str(path), 3)


# --- the plain report ------------------------------------------------------------------------


def test_the_report_explains_the_judges_columns_under_the_table(service) -> None:
    chunks = _chunks(service)
    queries = load_queries(HELD_OUT, chunks)[:3] + load_queries(UNANSWERABLE, chunks)[:2]
    lines = render(evaluate(service, queries, [Mode.hybrid])).splitlines()
    assert lines[0] == "3件の質問（ほかに答えのない質問2件）で評価（上位10件）"
    assert lines[2].split() == [
        "nDCG@10", "Recall@10", "MRR", "確信nDCG", "回答率", "該当なし正答"
    ]  # fmt: skip
    assert lines[3].startswith("hybrid")
    legend = lines[4]
    assert all(f"{column}: " in legend for column in ("確信nDCG", "回答率", "該当なし正答"))


def test_a_report_without_graded_queries_shows_only_the_judges_figure(service) -> None:
    queries = load_queries(UNANSWERABLE, _chunks(service))
    report = evaluate(service, queries, [Mode.hybrid, Mode.lexical])
    text = render(report)
    lines = text.splitlines()
    assert lines[0].startswith(f"正解つきの質問がありません。表に答えのない質問{len(queries)}件で")
    assert lines[2].split() == ["該当なし正答"]
    assert lines[3].split() == ["hybrid", f"{report['modes']['hybrid']['silent']:.3f}"]
    assert lines[4].split() == ["lexical", f"{report['modes']['lexical']['silent']:.3f}"]
    assert "nDCG@10" not in text and "回答率" not in text and "0件の質問" not in text
    assert "hybrid で答えがないのに答えを示した質問: " in text
