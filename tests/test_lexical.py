"""The BM25 index kb builds is the one bm25s itself would build from the same terms, and
terms carried over from a previous build equal terms computed afresh."""

from __future__ import annotations

import tempfile
from pathlib import Path

import bm25s
import numpy as np
import pytest
from conftest import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.corpus.tables import Corpus
from kb.retrieval import lexical
from kb.retrieval.analysis import Analyzer
from kb.retrieval.index import lexical_text
from kb.retrieval.lexical import RowIndex, Terms


def reference(documents: list[list[str]]) -> bm25s.BM25:
    index = bm25s.BM25(method="lucene")
    index.index(documents, show_progress=False)
    return index


def column(index: bm25s.BM25, term: str) -> tuple[list[int], list[float]]:
    """The documents containing ``term`` and their scores for it."""
    at = index.vocab_dict[term]
    start, end = index.scores["indptr"][at], index.scores["indptr"][at + 1]
    return index.scores["indices"][start:end].tolist(), index.scores["data"][start:end].tolist()


def assert_same_index(ours: bm25s.BM25, theirs: bm25s.BM25) -> None:
    """Same terms, and for each the same documents with the same scores to the bit.
    (bm25s numbers its vocabulary in set order, which changes from run to run; kb numbers
    it in order of first appearance, so only the numbering may differ.)"""
    assert set(ours.vocab_dict) == set(theirs.vocab_dict)
    assert ours.scores["num_docs"] == theirs.scores["num_docs"]
    for term in theirs.vocab_dict:
        if term:  # the empty token has no column
            assert column(ours, term) == column(theirs, term), term


def assert_same_terms(ours: Terms, theirs: Terms) -> None:
    assert ours.vocab == theirs.vocab
    np.testing.assert_array_equal(ours.ids, theirs.ids)
    np.testing.assert_array_equal(ours.offsets, theirs.offsets)


@pytest.fixture(scope="module")
def corpus_terms() -> list[list[str]]:
    analyzer = Analyzer()
    return [analyzer.tokens(lexical_text(c)) for c in Corpus.load(CORPUS).chunks]


def test_fy2017_index_equals_bm25s_own(corpus_terms: list[list[str]]) -> None:
    assert_same_index(lexical.build_index(Terms.from_lists(corpus_terms)), reference(corpus_terms))


def test_saved_index_loads_and_scores_as_built(corpus_terms, tmp_path: Path) -> None:
    terms = Terms.from_lists(corpus_terms)
    built = lexical.build_index(terms)
    lexical.save(built, terms, tmp_path)
    loaded = lexical.load(tmp_path)
    query = ["看護", "不足", "存在しない語"]
    np.testing.assert_array_equal(lexical.scores(loaded, query), lexical.scores(built, query))
    assert lexical.scores(loaded, query).max() > 0
    assert_same_terms(Terms.load(tmp_path, loaded), terms)


documents = st.lists(
    st.lists(st.sampled_from(["看護", "不足", "研修", "災害", "ST", "a"]), max_size=8),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(documents.filter(any))
def test_any_documents_index_as_bm25s_does(docs: list[list[str]]) -> None:
    assert_same_index(lexical.build_index(Terms.from_lists(docs)), reference(docs))


@settings(max_examples=100, deadline=None)
@given(
    documents.filter(any), st.lists(st.sampled_from(["看護", "不足", "研修", "ない"]), max_size=4)
)
def test_scores_and_rows_are_what_bm25s_gives(docs: list[list[str]], query: list[str]) -> None:
    """kb scores a query term column by term column; bm25s all columns at once."""
    ours, theirs = lexical.build_index(Terms.from_lists(docs)), reference(docs)
    known = [t for t in dict.fromkeys(query) if t in theirs.vocab_dict]  # each term once
    expected = theirs.get_scores(known) if known else np.zeros(len(docs))
    np.testing.assert_allclose(lexical.scores(ours, query), expected, rtol=1e-6)
    weighed = dict.fromkeys(query, 0.5)
    np.testing.assert_allclose(lexical.scores(ours, weighed), expected / 2, rtol=1e-6)
    rows = np.arange(len(docs))[::-1]
    for term in query:
        holding = [term in docs[row] for row in rows]
        assert lexical.holding(ours, term, rows).tolist() == holding
        assert lexical.document_frequency(ours, term) == sum(holding)


@settings(max_examples=100, deadline=None)
@given(
    documents.filter(any),
    st.lists(st.sampled_from(["看護", "不足", "研修", "ない", "未知"]), max_size=5),
    st.data(),
)
def test_row_index_scores_chosen_rows_as_bm25s_does(docs, query, data) -> None:
    """RowIndex reads each row's own terms (saved and mapped back from disk) and gives the
    score bm25s gives that row, with how many of the query's terms the row holds."""
    theirs = reference(docs)
    known = [t for t in dict.fromkeys(query) if t in theirs.vocab_dict]
    expected = theirs.get_scores(known) if known else np.zeros(len(docs))
    rows = np.array(data.draw(st.lists(st.integers(0, len(docs) - 1), max_size=len(docs))))
    with tempfile.TemporaryDirectory() as folder:
        RowIndex.save(Terms.from_lists(docs), Path(folder), "rows")
        index = RowIndex.load(Path(folder), "rows")
        scores, held = index.scores_at(query, rows.astype(np.int64))
        assert_same_terms(index.terms(), Terms.from_lists(docs))
    np.testing.assert_allclose(scores, expected[rows] if len(rows) else [], rtol=1e-6)
    assert held.tolist() == [sum(t in docs[r] for t in dict.fromkeys(query)) for r in rows]


def test_documents_without_any_term_score_zero() -> None:
    index = lexical.build_index(Terms.from_lists([[], []]))
    assert lexical.scores(index, ["看護"]).tolist() == [0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(documents, documents, st.data())
def test_assembled_terms_equal_terms_of_the_same_documents(old_docs, new_docs, data) -> None:
    """A rebuild takes some rows from the old build and the rest from fresh documents;
    the result must be exactly what analysing all the documents afresh gives."""
    picks = data.draw(st.lists(st.integers(-1, len(old_docs) - 1), min_size=1, max_size=15))
    fresh = iter(new_docs * len(picks))
    wanted = [old_docs[p] if p >= 0 else next(fresh) for p in picks]
    fresh_rows = [wanted[i] for i, p in enumerate(picks) if p < 0]
    assembled = Terms.assemble(
        Terms.from_lists(old_docs), np.array(picks), Terms.from_lists(fresh_rows)
    )
    assert_same_terms(assembled, Terms.from_lists(wanted))
