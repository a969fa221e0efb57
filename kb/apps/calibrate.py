"""Fit the judge (:mod:`kb.search.judge`) on graded and unanswerable queries, and measure it
on queries it was not fitted on.

Graded queries say which cells answer them; queries without relevant cells have no answer in
the table. The query-level weights are a logistic regression of "has an answer" on
:meth:`QueryEvidence.features`; the threshold keeps a confident hit for ``target`` of the
graded queries (see :func:`_threshold`); the per-hit cuts are those whose confident hits
best match the relevant cells of the top ten (F2; see :meth:`_GradedHits.f2`). kb's stored
calibration is fitted on every query file of ``eval/`` (``kb calibrate eval/*.yaml --split
all``; not ``eval/untouched/``, kept for one run after a round of changes): six numbers
fitted on half of them overfitted that half, and queries written without knowing the
vocabulary have words it lacks that the others do not. :func:`cross_validated` measures
what it does on queries left out of the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from kb.apps.evaluate import EvalQuery, ndcg
from kb.core.errors import KbError
from kb.search.judge import Calibration, Judgement, confident_hits
from kb.search.service import SearchService

TARGET_ANSWERED = 0.95
SIMILARITY_GAPS = tuple(np.round(np.arange(0.0, 0.0501, 0.0025), 4))
WORD_SHARES = (0.34, 0.5, 0.67, 1.0)  # a hit holding all the query's words is always an answer
MEANING_GAPS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03)  # at most the similarity gap
SOME_SHARES = (0.0, 0.2, 0.34, 0.5)  # 0: any of the query's words is "some"
# F-beta of the per-hit cuts: a coordinator who misses the one organisation that tackled a
# problem loses more than one who skips a cell that turns out unrelated.
RECALL_WEIGHT = 2.0
F2_TOLERANCE = 0.005


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
    """The calibration that best separates answerable from unanswerable ``samples``;
    KbError when they lack either kind (there is nothing to separate)."""
    features = np.array([s.judgement.evidence.features() for s in samples])
    answerable = np.array([bool(s.query.grades) for s in samples])
    if answerable.all() or not answerable.any():
        raise KbError(
            "判定を合わせるには、正解つきの質問と、表に答えがない質問（relevant: のないもの）の"
            f"両方が要ります（正解つき {int(answerable.sum())}件・答えなし "
            f"{int((~answerable).sum())}件）"
        )
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    coef, intercept = _logistic((features - mean) / scale, answerable)
    weights = coef / scale
    bias = float(intercept - np.dot(weights, mean))
    logits = bias + features @ weights
    probability = 1.0 / (1.0 + np.exp(-logits))
    threshold = _threshold(probability, answerable, target)
    base = Calibration(tuple(map(float, weights)), bias, threshold, 0.0, 1.01)
    graded = _GradedHits.of(samples, base, k=10)
    scores = {
        cut: graded.f2(_with_cuts(base, *cut))
        for cut in product(SIMILARITY_GAPS, WORD_SHARES, MEANING_GAPS, SOME_SHARES)
        if cut[2] <= cut[0] and cut[3] < cut[1]
    }
    best = max(scores.values())
    # F2 is nearly flat across the cuts (a relevant cell moves it by 0.003): among the
    # near-best, the one that asks most of a hit (the largest shares of the query's words,
    # then the narrowest gaps), so fewer weak hits are presented as answers.
    near = [cut for cut, score in scores.items() if score >= best - F2_TOLERANCE]
    return _with_cuts(base, *max(near, key=lambda cut: (cut[1], cut[3], -cut[2], -cut[0])))


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


def _with_cuts(
    base: Calibration, gap: float, share: float, meaning: float, some: float
) -> Calibration:
    cuts = (float(gap), float(share), float(meaning), float(some))
    return Calibration(base.weights, base.bias, base.threshold, *cuts)


@dataclass(frozen=True)
class _GradedHits:
    """The graded samples' judged hits, stacked (one row a query, padded) so that every cut
    of a fit is scored by one call of :func:`confident_hits` rather than a loop."""

    similarities: np.ndarray  # NaN outside the dense leg and in the padding
    shares: np.ndarray  # -1 in the padding, which no cut makes confident
    best_share: np.ndarray  # one per query
    shown: np.ndarray  # (queries, k): a hit of a query judged answerable
    relevant: np.ndarray  # (queries, k): that hit is graded relevant
    relevant_total: int

    @classmethod
    def of(cls, samples: Sequence[Sample], calibration: Calibration, k: int) -> _GradedHits:
        graded = [s for s in samples if s.query.grades]
        width = max([k, *(len(s.judgement.similarities) for s in graded)])
        similarities = np.full((len(graded), width), np.nan)
        shares = np.full((len(graded), width), -1.0)
        shown = np.zeros((len(graded), k), dtype=bool)
        relevant = np.zeros((len(graded), k), dtype=bool)
        for row, s in enumerate(graded):
            judged = s.judgement
            n = len(judged.similarities)
            similarities[row, :n] = [np.nan if x is None else x for x in judged.similarities]
            shares[row, :n] = judged.word_shares
            top = s.ranked[:k]
            shown[row, : len(top)] = (
                calibration.answerable(judged.evidence) >= calibration.threshold
            )
            relevant[row, : len(top)] = [cell in s.query.grades for cell in top]
        best_share = np.array([s.judgement.evidence.best_share for s in graded])
        total = sum(len(s.query.grades) for s in graded)
        return cls(similarities, shares, best_share, shown, relevant, total)

    def f2(self, cuts: Calibration) -> float:
        """How well the confident hits among the top k match the relevant cells (F-beta of
        precision and recall, recall weighing :data:`RECALL_WEIGHT`). A cut that flags
        nearly every hit scores high on nDCG of the confident hits yet tells a user
        nothing: most of them would be unrelated cells presented as answers."""
        k = self.shown.shape[1]
        flags = confident_hits(self.similarities, self.shares, self.best_share, cuts)
        confident = flags[:, :k] & self.shown
        right, flagged = int((confident & self.relevant).sum()), int(confident.sum())
        precision, recall = right / max(flagged, 1), right / max(self.relevant_total, 1)
        beta2 = RECALL_WEIGHT**2
        return (1 + beta2) * precision * recall / (beta2 * precision + recall) if right else 0.0


def cross_validated(
    samples: Sequence[Sample], folds: int = 5, repeats: int = 10, target: float = TARGET_ANSWERED
) -> dict[str, float]:
    """:func:`figures` of queries the calibration was not fitted on: each of ``repeats``
    shuffles (fixed seeds) cuts ``samples`` into ``folds`` parts with the same share of
    unanswerable queries, fits on all parts but one and judges that one. Returns the
    figures over all judged queries, averaged over the repeats, and their spread (``sd``)."""
    runs = []
    for seed in range(repeats):
        parts = _stratified_folds(samples, folds, np.random.default_rng(seed))
        judged = [
            (sample, calibration)
            for k, part in enumerate(parts)
            for calibration in [fit([s for j, p in enumerate(parts) if j != k for s in p], target)]
            for sample in part
        ]
        runs.append(_judged_figures(judged))
    keys = runs[0].keys()
    return {key: float(np.mean([run[key] for run in runs])) for key in keys} | {
        f"{key} sd": float(np.std([run[key] for run in runs])) for key in keys
    }


def _stratified_folds(
    samples: Sequence[Sample], folds: int, rng: np.random.Generator
) -> list[list[Sample]]:
    parts: list[list[Sample]] = [[] for _ in range(folds)]
    for answerable in (True, False):
        # In query order, so the folds do not depend on the order the files were read in.
        group = sorted(
            (s for s in samples if bool(s.query.grades) == answerable),
            key=lambda s: (s.query.query, s.query.kind),
        )
        for n, i in enumerate(rng.permutation(len(group))):
            parts[n % folds].append(group[i])
    return parts


def figures(samples: Sequence[Sample], calibration: Calibration) -> dict[str, float]:
    """Share of graded samples with a confident hit, share of unanswerable ones without
    any, the nDCG@10 of the confident hits alone and, beside it, of all hits."""
    return _judged_figures([(s, calibration) for s in samples])


def _judged_figures(judged: Sequence[tuple[Sample, Calibration]], k: int = 10) -> dict[str, float]:
    answered, silent, confident, plain = [], [], [], []
    for s, calibration in judged:
        flags = s.judgement.flags(calibration)[: len(s.ranked)]
        if not s.query.grades:
            silent.append(not any(flags))
            continue
        answered.append(any(flags))
        shown = [i for i, sure in zip(s.ranked, flags, strict=False) if sure]
        confident.append(ndcg(shown, s.query.grades, k))
        plain.append(ndcg(s.ranked, s.query.grades, k))
    return {
        "answered": _mean(answered),
        "silent": _mean(silent),
        "ndcg@10 confident": _mean(confident),
        "ndcg@10": _mean(plain),
    }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0
