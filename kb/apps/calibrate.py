"""Fit the judge (:mod:`kb.search.judge`) on queries of the tuning half.

Graded queries say which cells answer them; queries without relevant cells have no answer in
the table. The query-level weights are a logistic regression of "has an answer" on
:meth:`QueryEvidence.features`; the threshold keeps a confident hit for ``target`` of the
graded queries (see :func:`_threshold`); the per-hit cuts are those whose confident hits
best match the relevant cells of the top ten (F2; see :func:`confident_f1`). Everything is measured again on the held-out half by
``kb eval``, never fitted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from kb.apps.evaluate import EvalQuery, ndcg
from kb.search.judge import Calibration, Judgement
from kb.search.service import SearchService

TARGET_ANSWERED = 0.95
SIMILARITY_GAPS = tuple(np.round(np.arange(0.0, 0.0501, 0.0025), 4))
WORD_SHARES = (0.34, 0.5, 0.67, 1.0, 1.01)  # 1.01: words alone never vouch for a hit
# F-beta of the per-hit cuts: a coordinator who misses the one organisation that tackled a
# problem loses more than one who skips a cell that turns out unrelated.
RECALL_WEIGHT = 2.0


@dataclass(frozen=True)
class Sample:
    query: EvalQuery
    judgement: Judgement
    ranked: tuple[str, ...]  # ids of the top hits, best first


def collect(service: SearchService, queries: Sequence[EvalQuery], k: int = 10) -> list[Sample]:
    """Search every query once and keep what the judge sees."""
    samples = []
    for q in queries:
        result = service.search(q.query, k=k)
        ranked = tuple(h.chunk.id for h in result.hits)
        samples.append(Sample(q, result.judgement, ranked))
    return samples


def fit(samples: Sequence[Sample], target: float = TARGET_ANSWERED) -> Calibration:
    """The calibration that best separates answerable from unanswerable ``samples``."""
    features = np.array([s.judgement.evidence.features() for s in samples])
    answerable = np.array([bool(s.query.grades) for s in samples])
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    coef, intercept = _logistic((features - mean) / scale, answerable)
    weights = coef / scale
    bias = float(intercept - np.dot(weights, mean))
    logits = bias + features @ weights
    probability = 1.0 / (1.0 + np.exp(-logits))
    threshold = _threshold(probability, answerable, target)
    base = Calibration(tuple(map(float, weights)), bias, threshold, 0.0, 1.01)
    cuts = max(
        product(SIMILARITY_GAPS, WORD_SHARES),
        key=lambda cut: (confident_f1(samples, _with_cuts(base, *cut)), -cut[0], cut[1]),
    )
    return _with_cuts(base, *cuts)


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (as scikit-learn's default, C = 1 / ``l2``):
    weights and intercept minimising the log loss of ``y`` given ``x``."""
    from scipy.optimize import minimize
    from scipy.special import expit

    target = y.astype(np.float64)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        p = expit(x @ w + b)
        eps = 1e-12
        value = -np.sum(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps))
        gradient = np.append(x.T @ (p - target) + l2 * w, np.sum(p - target))
        return value + 0.5 * l2 * float(w @ w), gradient

    found = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return found.x[:-1], float(found.x[-1])


def _threshold(probability: np.ndarray, answerable: np.ndarray, target: float) -> float:
    """The cut between the two kinds of query that keeps ``target`` of the answerable ones
    and, within that, is right most often; among equally good cuts, the middle of the
    widest gap, so a query a little unlike the tuning ones falls on the same side."""
    edges = np.unique(np.concatenate([[0.0, 1.0], probability]))
    cuts = (edges[:-1] + edges[1:]) / 2
    widths = edges[1:] - edges[:-1]
    kept = np.array([(probability[answerable] >= c).mean() for c in cuts])
    silent = np.array([(probability[~answerable] < c).mean() for c in cuts])
    score = np.where(kept >= target, kept + silent, -1.0)
    best = np.flatnonzero(score == score.max())
    return float(cuts[best[np.argmax(widths[best])]])


def _with_cuts(base: Calibration, gap: float, share: float) -> Calibration:
    return Calibration(base.weights, base.bias, base.threshold, float(gap), float(share))


def confident_ndcg(samples: Sequence[Sample], calibration: Calibration, k: int = 10) -> float:
    """Mean nDCG@k of the confident hits alone over the graded samples."""
    scores = []
    for s in samples:
        if not s.query.grades:
            continue
        flags = s.judgement.flags(calibration)
        shown = [i for i, sure in zip(s.ranked, flags, strict=False) if sure]
        scores.append(ndcg(shown, s.query.grades, k))
    return float(np.mean(scores)) if scores else 0.0


def confident_f1(samples: Sequence[Sample], calibration: Calibration, k: int = 10) -> float:
    """How well the confident hits among the top ``k`` match the relevant cells, over the
    graded samples (F-beta of precision and recall, recall weighing :data:`RECALL_WEIGHT`). A cut that flags nearly every hit scores
    high on nDCG of the confident hits yet tells a user nothing: most of them would be
    unrelated cells presented as answers."""
    right = flagged = relevant = 0
    for s in samples:
        if not s.query.grades:
            continue
        flags = s.judgement.flags(calibration)  # one per judged hit, more than the top k
        shown = {i for i, sure in zip(s.ranked[:k], flags, strict=False) if sure}
        right += len(shown & s.query.grades.keys())
        flagged += len(shown)
        relevant += len(s.query.grades)
    precision, recall = right / max(flagged, 1), right / max(relevant, 1)
    beta2 = RECALL_WEIGHT**2
    return (1 + beta2) * precision * recall / (beta2 * precision + recall) if right else 0.0


def figures(samples: Sequence[Sample], calibration: Calibration) -> dict[str, float]:
    """Share of graded samples with a confident hit, share of unanswerable ones without
    any, and the confident-only nDCG@10."""
    answered, silent = [], []
    for s in samples:
        flags = s.judgement.flags(calibration)[: len(s.ranked)]
        (answered if s.query.grades else silent).append(any(flags))
    return {
        "answered": float(np.mean(answered)) if answered else 0.0,
        "silent": 1.0 - float(np.mean(silent)) if silent else 0.0,
        "ndcg@10 confident": confident_ndcg(samples, calibration),
    }
