"""Ranking: the lexical (BM25) and dense (FAISS) legs and their reciprocal rank fusion.

Search, similar cells and related cells all rank through :func:`rank`, so a change to how
the legs are cut or weighed is made here and nowhere else. Each leg contributes
``weight / (RRF_K + rank)``: RRF needs no score calibration between very different
scorers, and its constants were tuned on ``eval/queries.yaml``. A search also ranks the
first cells of the two legs by the query's character pairs (:mod:`kb.retrieval.grams`),
at half weight (chosen on the development sets, checked on an untouched one:
docs/search-quality.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from kb.retrieval import dense, lexical
from kb.retrieval.index import LoadedIndex

CANDIDATES = 200  # per leg, before fusion
RRF_K = 40
DENSE_WEIGHT = 1.0
LEXICAL_WEIGHT = 1.0
GRAMS_WEIGHT = 0.5
MIN_SHARED_PAIRS = 2
# Cells of each leg the pairs rank: one further down both legs cannot reach the first ten
# with the pairs' half weight (50 and 200 rank the evaluation queries alike).
PAIR_DEPTH = 50


class Mode(StrEnum):
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


@dataclass(frozen=True)
class Ranking:
    """Positions best first, each one's fused score, and the cosine similarity of those
    the dense leg found (what "similar cells" reports as its score)."""

    order: list[int]
    scores: dict[int, float]
    similarity: dict[int, float]


def rrf(rankings: Sequence[tuple[np.ndarray, float]], k: int | None = None) -> dict[int, float]:
    """Reciprocal rank fusion of (positions best-first, weight) rankings."""
    k = RRF_K if k is None else k
    fused: dict[int, float] = {}
    for positions, weight in rankings:
        # Python ints from the start: numpy scalars made this loop half the ranking's time.
        for rank, position in enumerate(np.asarray(positions).tolist(), start=1):
            fused[position] = fused.get(position, 0.0) + weight / (k + rank)
    return fused


def top_positive(scores: np.ndarray, allowed: np.ndarray | None, n: int) -> np.ndarray:
    """Positions of the ``n`` best positive scores, best first."""
    if allowed is not None:
        scores = np.where(allowed, scores, 0.0)
    positive = np.flatnonzero(scores > 0)
    if len(positive) > n:
        positive = positive[np.argpartition(-scores[positive], n)[:n]]
    return positive[np.argsort(-scores[positive], kind="stable")]


def rank(
    index: LoadedIndex,
    mode: Mode,
    terms: Sequence[str] | Mapping[str, float],
    vector: np.ndarray | None,
    allowed: np.ndarray | None,
    depth: int = CANDIDATES,
    pairs: Sequence[str] = (),
) -> Ranking:
    """Fuse the legs ``mode`` asks for: lexical over ``terms`` (or terms with weights, see
    :func:`lexical.scores`), dense around ``vector``
    (skipped when None, e.g. a blank query), each cut to ``depth`` rows of ``allowed``;
    in hybrid mode, their first PAIR_DEPTH cells also ranked by the character ``pairs``
    (:func:`kb.retrieval.grams.pairs` of the query; none: no such ranking)."""
    legs = []
    similarity: dict[int, float] = {}
    if mode in (Mode.hybrid, Mode.lexical):
        legs.append(
            (top_positive(lexical.scores(index.lexical, terms), allowed, depth), LEXICAL_WEIGHT)
        )
    if mode in (Mode.hybrid, Mode.dense) and vector is not None:
        positions, scores = dense.search(index.dense, vector, depth, allowed)
        similarity = dict(zip(positions.tolist(), scores.tolist(), strict=True))
        legs.append((positions, DENSE_WEIGHT))
    if mode == Mode.hybrid and pairs and legs:
        found = np.unique(np.concatenate([positions[:PAIR_DEPTH] for positions, _ in legs]))
        legs.append((_by_pairs(index, pairs, found), GRAMS_WEIGHT))
    fused = rrf(legs)
    return Ranking(sorted(fused, key=lambda p: (-fused[p], p)), fused, similarity)


def _by_pairs(index: LoadedIndex, pairs: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """``rows`` ranked by the BM25 of the character ``pairs``, best first (ties in row
    order). A row holding fewer than MIN_SHARED_PAIRS of them (all, for a shorter query) is
    left out: one pair alone is often a piece of an unrelated word (カン of カンファレンス
    for ｶﾝｺﾞｼ)."""
    scores, held = index.grams.scores_at(pairs, rows)
    keep = (scores > 0) & (held >= min(MIN_SHARED_PAIRS, len(set(pairs))))
    return rows[keep][np.argsort(-scores[keep], kind="stable")]
