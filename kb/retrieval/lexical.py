"""Lexical retrieval: BM25 (bm25s) over Sudachi terms from :mod:`kb.retrieval.analysis`,
and BM25 of chosen rows from their own terms (:class:`RowIndex`, for :mod:`kb.retrieval.grams`).

A build keeps every chunk's terms as integer ids (:class:`Terms`), so the next build can
carry unchanged chunks over without reading their terms back from the text cache. The
BM25 sparse matrix is stored as .npy files and loaded memory-mapped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import bm25s
import numpy as np
import scipy.sparse as sp
from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

FOLDER = "lexical"
TERM_IDS = "term_ids.npy"
TERM_OFFSETS = "term_offsets.npy"
METHOD = "lucene"  # bm25s's BM25 variant, for both indexes
ROW_VOCAB = "vocab.json"
DOCUMENT_FREQUENCY = "document_frequency.npy"

# bm25s logs through "bm25s" at INFO; keep stderr for kb's own progress lines.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass
class Terms:
    """Every chunk's terms: row i is ``vocab[ids[offsets[i]:offsets[i + 1]]]``.

    The vocabulary is numbered in order of first appearance, so the same documents always
    give the same numbering, however they were put together.
    """

    vocab: list[str]
    ids: np.ndarray  # int64, all rows' term ids one after another
    offsets: np.ndarray  # int64, one more than there are rows

    @classmethod
    def from_lists(cls, documents: Sequence[Sequence[str]]) -> Terms:
        flat = list(chain.from_iterable(documents))
        numbering = {term: i for i, term in enumerate(dict.fromkeys(flat))}
        ids = np.fromiter(map(numbering.__getitem__, flat), dtype=np.int64, count=len(flat))
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        return cls(list(numbering), ids, _offsets(lengths))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> Terms:
        """The given rows, in that order (the vocabulary is not renumbered)."""
        ids, lengths = _gather(self.ids, self.offsets, rows)
        return Terms(self.vocab, ids, _offsets(lengths))

    @classmethod
    def assemble(cls, old: Terms, old_rows: np.ndarray, new: Terms) -> Terms:
        """Rows taken from ``old`` where ``old_rows`` ≥ 0, else the next row of ``new``:
        equal to :meth:`from_lists` of the same documents, numbering included."""
        pool = cls(
            old.vocab + new.vocab,
            np.concatenate([old.ids, new.ids + len(old.vocab)]),
            np.concatenate([old.offsets, new.offsets[1:] + old.offsets[-1]]),
        )
        rows = old_rows.astype(np.int64, copy=True)
        fresh = rows < 0
        rows[fresh] = len(old) + np.arange(np.count_nonzero(fresh))
        return pool.take(rows)._renumbered()

    def _renumbered(self) -> Terms:
        """Drop unused words, merge repeated ones, number in order of first appearance."""
        used, first = np.unique(self.ids, return_index=True)
        in_order = used[np.argsort(first, kind="stable")]
        words = [self.vocab[i] for i in in_order.tolist()]
        numbering = {word: i for i, word in enumerate(dict.fromkeys(words))}
        lookup = np.full(len(self.vocab), -1, dtype=np.int64)
        lookup[in_order] = [numbering[w] for w in words]
        return Terms(list(numbering), lookup[self.ids], self.offsets)

    def save(self, folder: Path, name: str = FOLDER) -> None:
        narrow = np.uint16 if len(self.vocab) <= np.iinfo(np.uint16).max + 1 else np.int32
        np.save(folder / name / TERM_IDS, self.ids.astype(narrow))
        np.save(folder / name / TERM_OFFSETS, self.offsets)

    @classmethod
    def load(cls, folder: Path, index: bm25s.BM25) -> Terms:
        """The terms saved beside ``index`` (whose vocabulary they are numbered in)."""
        vocab = sorted((word for word in index.vocab_dict if word), key=index.vocab_dict.get)
        ids = np.load(folder / FOLDER / TERM_IDS).astype(np.int64)
        return cls(vocab, ids, np.load(folder / FOLDER / TERM_OFFSETS))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def _gather(
    ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ids of ``rows`` one row after another, and each row's length (the rows of
    ids/offsets as :class:`Terms` lays them out)."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = offsets[rows + 1] - offsets[rows]
    starts = np.repeat(offsets[rows] - _offsets(lengths)[:-1], lengths)
    return ids[starts + np.arange(len(starts))], lengths


class _BM25(bm25s.BM25):
    """bm25s's BM25, indexed with numpy over all terms at once.

    ``BM25.index`` counts terms document by document in Python: 4.4 s for 100k chunks,
    most of a one-cell rebuild. This computes the same matrix (same scores to the bit,
    checked by the tests) from :class:`Terms` in a fraction of the time, with bm25s's own
    IDF and term-frequency formulas. The vocabulary keeps the numbering of ``terms``.
    """

    def index_terms(self, terms: Terms) -> None:
        n_docs, n_vocab = len(terms), len(terms.vocab)
        lengths = terms.lengths
        rows = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        pairs, tf = np.unique(rows * n_vocab + terms.ids, return_counts=True)
        doc, term = np.divmod(pairs, max(n_vocab, 1))
        idf = _idf(self, np.bincount(term, minlength=n_vocab), n_docs)
        tfc = _tf_part(self, tf, lengths[doc], lengths.mean())
        matrix = sp.csc_matrix(
            ((idf[term] * tfc).astype(self.dtype), (doc, term)),
            shape=(n_docs, n_vocab),
            dtype=self.dtype,
        )
        matrix.sort_indices()  # each column's rows ascending: :func:`holding` relies on it
        self.scores = {
            "data": matrix.data,
            "indices": matrix.indices.astype(self.int_dtype),
            "indptr": matrix.indptr,
            "num_docs": n_docs,
        }
        self.nonoccurrence_array = None  # only BM25L and BM25+ use it
        # As bm25s does: the empty token, numbered last, scores documents without terms.
        self.vocab_dict = {word: i for i, word in enumerate([*terms.vocab, ""])}
        self.unique_token_ids_set = set(self.vocab_dict.values())


def _idf(bm25: bm25s.BM25, frequency: np.ndarray, n_docs: int) -> np.ndarray:
    """bm25s's IDF (of ``bm25``'s method) for each term's document ``frequency``."""
    idf_of = _select_idf_scorer(bm25.idf_method)
    return np.array([idf_of(int(df), N=n_docs) for df in frequency], dtype=bm25.dtype)


def _tf_part(
    bm25: bm25s.BM25, tf: np.ndarray, lengths: np.ndarray, average_length: float
) -> np.ndarray:
    """bm25s's term-frequency part of BM25 (``bm25``'s method, k1, b and delta) for term
    counts ``tf`` in documents of ``lengths``; times the IDF, a term's score."""
    return _select_tfc_scorer(bm25.method)(
        tf_array=tf.astype(bm25.dtype),
        l_d=lengths,
        l_avg=average_length,
        k1=bm25.k1,
        b=bm25.b,
        delta=bm25.delta,
    )


def build_index(terms: Terms) -> bm25s.BM25:
    """BM25 over every chunk's terms, in row order."""
    index = _BM25(method=METHOD)
    index.index_terms(terms)
    return index


def save(index: bm25s.BM25, terms: Terms, folder: Path) -> None:
    index.save(str(folder / FOLDER), show_progress=False)
    terms.save(folder)


def load(folder: Path) -> bm25s.BM25:
    """The index saved in ``folder``, its arrays mapped from disk (not read into memory)."""
    index = bm25s.BM25.load(str(folder / FOLDER), mmap=True, show_progress=False)
    # Plain ndarray views of the same mapping: indexing a np.memmap builds a memmap object
    # each time, some 50 times per query (a tenth of the lexical leg's time).
    index.scores = {
        key: value.view(np.ndarray) if isinstance(value, np.memmap) else value
        for key, value in index.scores.items()
    }
    return index


def scores(index: bm25s.BM25, terms: Sequence[str] | Mapping[str, float]) -> np.ndarray:
    """BM25 score of every row for ``terms``, or for each term times its weight when
    ``terms`` maps terms to weights (terms absent from the corpus are ignored).

    The sum bm25s's ``get_scores`` makes, term column by term column: a column names each
    row once, so plain indexing adds it, where bm25s's ``np.add.at`` over all the query's
    columns at once took 3 ms a term at a million rows.
    """
    weights = terms if isinstance(terms, Mapping) else dict.fromkeys(terms, 1.0)
    matrix = index.scores
    total = np.zeros(matrix["num_docs"], dtype=np.float32)
    for term, weight in weights.items():
        span = _span(index, term)
        if span and weight:
            total[matrix["indices"][span]] += np.float32(weight) * matrix["data"][span]
    return total


def holding(index: bm25s.BM25, term: str, rows: np.ndarray) -> np.ndarray:
    """Whether each of ``rows`` contains ``term``: a binary search of the term's column
    (its rows ascend), not a score for every row."""
    span = _span(index, term)
    if span is None or span.start == span.stop:
        return np.zeros(len(rows), dtype=bool)
    column = index.scores["indices"][span]
    at = np.minimum(np.searchsorted(column, rows), len(column) - 1)
    return column[at] == rows


def _span(index: bm25s.BM25, term: str) -> slice | None:
    """Where ``term``'s column lies in the sparse matrix; None for an unknown term."""
    column = index.vocab_dict.get(term)
    if column is None or column >= len(index.scores["indptr"]) - 1:
        return None  # (the empty token bm25s numbers last has no column)
    indptr = index.scores["indptr"]
    return slice(int(indptr[column]), int(indptr[column + 1]))


def document_frequency(index: bm25s.BM25, term: str) -> int:
    """How many rows contain ``term`` (0 for a term the corpus does not have)."""
    span = _span(index, term)
    return span.stop - span.start if span else 0


@dataclass(frozen=True)
class RowIndex:
    """BM25 of chosen rows, read from each row's own terms (:class:`Terms`), with bm25s's
    formulas: the scores :func:`scores` gives the same rows.

    For scoring a hundred candidates, not for finding rows. The terms are read into memory,
    16 bits a term when the vocabulary allows (a million cells of pairs: 160 MB): a mapped
    file is no smaller here, because the kernel maps the 1–2 MB around each row touched (a
    hundred random rows made 140 MB of it resident, a few queries all of it).
    """

    numbering: dict[str, int]
    ids: np.ndarray  # Terms.ids as saved (uint16 or int32)
    offsets: np.ndarray  # Terms.offsets
    idf: np.ndarray  # per term id
    average_length: float
    bm25: bm25s.BM25  # the parameters (k1, b …) build_index uses; not indexed

    @staticmethod
    def save(terms: Terms, folder: Path, name: str) -> None:
        """``terms`` in ``folder``/``name``, with their vocabulary and document frequencies."""
        (folder / name).mkdir(parents=True, exist_ok=True)
        terms.save(folder, name)
        (folder / name / ROW_VOCAB).write_text(json.dumps(terms.vocab, ensure_ascii=False))
        # Each row's terms once: scipy sorts row by row (np.unique sorted all of them, 2 min
        # for a million rows against 1 s).
        rows = sp.csr_matrix(
            (np.ones(len(terms.ids), np.int8), terms.ids, terms.offsets),
            shape=(len(terms), len(terms.vocab)),
        )
        rows.sum_duplicates()
        frequency = np.bincount(rows.indices, minlength=len(terms.vocab))
        np.save(folder / name / DOCUMENT_FREQUENCY, frequency)

    @classmethod
    def load(cls, folder: Path, name: str) -> RowIndex:
        vocab = json.loads((folder / name / ROW_VOCAB).read_text(encoding="utf-8"))
        offsets = np.load(folder / name / TERM_OFFSETS)
        frequency = np.load(folder / name / DOCUMENT_FREQUENCY)
        rows = len(offsets) - 1
        bm25 = _BM25(method=METHOD)
        return cls(
            numbering={word: i for i, word in enumerate(vocab)},
            ids=np.load(folder / name / TERM_IDS),
            offsets=offsets,
            idf=_idf(bm25, frequency, rows),
            average_length=float(offsets[-1]) / max(rows, 1),
            bm25=bm25,
        )

    def terms(self) -> Terms:
        """Every row's terms (a build carries them over)."""
        vocab = sorted(self.numbering, key=self.numbering.get)
        return Terms(vocab, self.ids.astype(np.int64), self.offsets)

    def scores_at(self, terms: Sequence[str], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``rows``: its BM25 score for ``terms`` (each counted once) and how
        many of them it holds."""
        wanted = np.zeros(len(self.numbering), dtype=bool)
        wanted[[self.numbering[t] for t in terms if t in self.numbering]] = True
        ids, lengths = _gather(self.ids, self.offsets, rows)
        owner = np.repeat(np.arange(len(lengths)), lengths)
        hit = wanted[ids]
        found, tf = np.unique(owner[hit] * len(self.numbering) + ids[hit], return_counts=True)
        row, term = np.divmod(found, max(len(self.numbering), 1))
        tfc = _tf_part(self.bm25, tf, lengths[row], self.average_length)
        total = np.bincount(row, weights=self.idf[term] * tfc, minlength=len(lengths))
        return total.astype(np.float32), np.bincount(row, minlength=len(lengths))
