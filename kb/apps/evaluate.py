"""Measure search quality on graded queries: nDCG@k, Recall@k and MRR per mode.

Query files (``eval/tune.yaml``, ``eval/heldout.yaml``) name relevant cells by organisation, field and a
passage of their text, so judgements survive re-chunking and new ids::

    queries:
      - query: 看護師不足
        kind: paraphrase
        relevant:
          - {org: 厚木市障がい福祉課①, field: challenge, contains: 看護人材の不足により, grade: 2}

A passage matches a cell when organisation and field are equal and the passage is part of
the cell text, both compared after NFKC and whitespace removal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from kb.core.errors import InputError
from kb.core.fields import Field
from kb.core.model import Chunk
from kb.core.text import fold, normalise_organisation
from kb.retrieval.vocabulary import Entry
from kb.search.fusion import Mode
from kb.search.service import SearchService


@dataclass(frozen=True)
class EvalQuery:
    query: str
    kind: str
    grades: dict[str, int]  # chunk id → grade (2 answers the query, 1 related); none: no answer
    split: str = ""  # "tune" or "heldout" where a file mixes both halves


def load_queries(path: Path, chunks: Sequence[Chunk]) -> list[EvalQuery]:
    """Read a query file and resolve every judgement to exactly one chunk."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"評価用の質問ファイルを読めません（{exc}）", file=str(path)) from exc
    by_cell: dict[tuple[str, Field], list[Chunk]] = {}
    for chunk in chunks:
        by_cell.setdefault((fold(chunk.organisation), chunk.field), []).append(chunk)
    queries = []
    for n, entry in enumerate(raw.get("queries", []), start=1):
        grades: dict[str, int] = {}
        for judged in entry.get("relevant", []):
            key = (fold(normalise_organisation(judged["org"])), Field(judged["field"]))
            found = [c for c in by_cell.get(key, []) if fold(judged["contains"]) in fold(c.text)]
            if len(found) != 1:
                raise InputError(
                    f"質問 {n}「{entry['query']}」の正解 {judged['org']} / {judged['field']} / "
                    f"「{judged['contains']}」に当てはまるセルが{len(found)}件あります（1件にしてください）",
                    file=str(path),
                )
            grades[found[0].id] = int(judged.get("grade", 1))
        queries.append(
            EvalQuery(
                str(entry["query"]),
                str(entry.get("kind", "")),
                grades,
                str(entry.get("split", "")),
            )
        )
    if not queries:
        raise InputError("質問がありません（queries: の下に並べてください）", file=str(path))
    return queries


def ndcg(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    def dcg(gains: Sequence[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))

    ideal = dcg(sorted(grades.values(), reverse=True)[:k])
    return dcg([grades.get(i, 0) for i in ranked[:k]]) / ideal if ideal else 0.0


def recall(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & grades.keys()) / len(grades) if grades else 0.0


def reciprocal_rank(ranked: Sequence[str], grades: dict[str, int]) -> float:
    return next((1 / r for r, i in enumerate(ranked, start=1) if i in grades), 0.0)


def evaluate(
    service: SearchService, queries: Sequence[EvalQuery], modes: Sequence[Mode], k: int = 10
) -> dict:
    """Mean metrics per mode, per-query figures, and the queries each mode misses.

    Besides the ranking, each mode reports the judgement (:mod:`kb.search.judge`):
    ``answered`` — share of graded queries keeping a confident hit in the top ``k``;
    ``ndcg@10 confident`` — nDCG of the confident hits alone, as a user is shown them; and,
    for queries without any relevant cell, ``silent`` — share with no confident hit."""
    graded = [q for q in queries if q.grades]
    unanswerable = [q for q in queries if not q.grades]
    report: dict = {"k": k, "queries": len(graded), "unanswerable": len(unanswerable)}
    # Which vocabulary entries fired, per query: the way to find an entry that hurts.
    fired = {q.query: [e.as_dict() for e in service.analyzer.fired(q.query)] for q in queries}
    report["modes"] = {
        mode.value: _evaluate_mode(service, graded, unanswerable, mode, k, fired) for mode in modes
    }
    return report


def _evaluate_mode(
    service: SearchService,
    graded: Sequence[EvalQuery],
    unanswerable: Sequence[EvalQuery],
    mode: Mode,
    k: int,
    fired: dict[str, list[dict]],
) -> dict:
    rows = []
    for q in graded:
        hits = service.search(q.query, k=k, mode=mode).hits
        ranked = [h.chunk.id for h in hits]
        shown = [h.chunk.id for h in hits if h.confident]
        rows.append(
            {
                "query": q.query,
                "kind": q.kind,
                "ndcg": ndcg(ranked, q.grades, k),
                "recall": recall(ranked, q.grades, k),
                "rr": reciprocal_rank(ranked, q.grades),
                "ndcg_confident": ndcg(shown, q.grades, k),
                "answered": bool(shown),
                "vocabulary": fired[q.query],
            }
        )
    silent = [
        {"query": q.query, "kind": q.kind, "confident": _confident_count(service, q, mode, k)}
        for q in unanswerable
    ]
    figures = {
        "ndcg@10": _mean(rows, "ndcg"),
        "recall@10": _mean(rows, "recall"),
        "mrr": _mean(rows, "rr"),
        "ndcg@10 confident": _mean(rows, "ndcg_confident"),
        "answered": _mean(rows, "answered"),
        "by_kind": _by_kind(rows),
        "misses": [r["query"] for r in rows if r["recall"] == 0],
        "unanswered": [r["query"] for r in rows if not r["answered"]],
        "per_query": rows,
    }
    if silent:
        figures["silent"] = float(np.mean([r["confident"] == 0 for r in silent]))
        figures["spoke"] = [r["query"] for r in silent if r["confident"]]
        figures["per_unanswerable"] = silent
    return figures


def _confident_count(service: SearchService, q: EvalQuery, mode: Mode, k: int) -> int:
    return sum(h.confident for h in service.search(q.query, k=k, mode=mode).hits)


def _mean(rows: Sequence[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else 0.0


def _by_kind(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Mean nDCG@10 and query count per kind of query (queries without a kind left out)."""
    kinds = sorted({r["kind"] for r in rows if r["kind"]})
    return {
        kind: {
            "ndcg@10": float(np.mean([r["ndcg"] for r in rows if r["kind"] == kind])),
            "queries": sum(r["kind"] == kind for r in rows),
        }
        for kind in kinds
    }


def render(report: dict) -> str:
    """Side-by-side table of the modes, then each mode's misses."""
    modes = report["modes"]
    lines = [f"{report['queries']}件の質問で評価（上位{report['k']}件）", ""]
    lines.append(
        f"{'':10}{'nDCG@10':>10}{'Recall@10':>11}{'MRR':>8}{'確信nDCG':>10}{'回答率':>8}"
        + (f"{'該当なし正答':>10}" if report.get("unanswerable") else "")
    )
    for name, m in modes.items():
        lines.append(
            f"{name:10}{m['ndcg@10']:>10.3f}{m['recall@10']:>11.3f}{m['mrr']:>8.3f}"
            f"{m['ndcg@10 confident']:>10.3f}{m['answered']:>8.3f}"
            + (f"{m['silent']:>10.3f}" if "silent" in m else "")
        )
    kinds = sorted({kind for m in modes.values() for kind in m["by_kind"]})
    if kinds:
        lines += ["", "種類別 nDCG@10: " + "  ".join(f"{n}" for n in modes)]
        for kind in kinds:
            cells = [m["by_kind"][kind]["ndcg@10"] for m in modes.values()]
            lines.append(f"  {kind:12}" + "  ".join(f"{c:.3f}" for c in cells))
    for name, m in modes.items():
        lines.append(
            f"\n{name} で正解が1件も上位に入らなかった質問: {'、'.join(m['misses']) or 'なし'}"
        )
        lines.append(
            f"{name} で確かな答えを示せなかった質問: {'、'.join(m['unanswered']) or 'なし'}"
        )
        if "spoke" in m:
            lines.append(
                f"{name} で答えがないのに答えを示した質問: {'、'.join(m['spoke']) or 'なし'}"
            )
    lines += ["", f"質問ごとの nDCG@10（{' '.join(modes)}）と働いた言い換え（synonyms.yaml の行）:"]
    rows = zip(*(m["per_query"] for m in modes.values()), strict=True)
    for same_query in rows:
        figures = " ".join(f"{r['ndcg']:.2f}" for r in same_query)
        used = "／".join(_describe(e) for e in same_query[0]["vocabulary"]) or "なし"
        lines.append(f"  {figures}  {same_query[0]['query']}　言い換え: {used}")
    return "\n".join(lines)


def _describe(entry: dict) -> str:
    """An entry of the report as :meth:`Entry.describe` writes it."""
    return Entry(
        entry["concept"],
        tuple(entry["words"]),
        tuple(entry["adds"]),
        frozenset(entry["legs"]),
        entry["line"],
    ).describe()
