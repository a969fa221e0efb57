"""Measure search quality on graded queries: nDCG@k, Recall@k and MRR per mode.

Query files (``eval/tune.yaml``, ``eval/heldout.yaml``) name relevant cells by organisation, field and a
passage of their text, so judgements survive re-chunking and new ids::

    queries:
      - query: 看護師不足
        kind: paraphrase
        relevant:
          - {org: 厚木市障がい福祉課①, field: challenge, contains: 看護人材の不足により, grade: 2}

A passage matches a cell when organisation and field are equal and the passage is part of
the cell text, both compared after NFKC and whitespace removal. ``split: tune`` or ``split:
heldout`` at the top of a file (or on one query) puts its queries in that half of the graded
queries; a query without one is in neither half (a development set) and is used only when no
half is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from kb.core.errors import InputError
from kb.core.fields import FIELDS, Field
from kb.core.model import Chunk
from kb.core.text import fold, normalise_organisation
from kb.core.yamlio import NodeReader, compose_yaml
from kb.retrieval.vocabulary import Entry
from kb.search.fusion import Mode
from kb.search.service import SearchService

SPLITS = ("tune", "heldout")  # the two halves of the graded queries; see eval/tune.yaml
_TOP_KEYS = ("queries", "split")
_QUERY_KEYS = ("query", "kind", "split", "relevant", "shares")
_JUDGED_KEYS = ("org", "field", "contains", "grade")
_GRADES = {"1": 1, "2": 2}


@dataclass(frozen=True)
class EvalQuery:
    query: str
    kind: str
    grades: dict[str, int]  # chunk id → grade (2 answers the query, 1 related); none: no answer
    split: str = ""  # "tune" or "heldout" (its own split: or its file's); "": in neither half


def load_queries(path: Path, chunks: Sequence[Chunk]) -> list[EvalQuery]:
    """Read a query file and resolve every judgement to exactly one chunk; a mistake raises
    InputError naming the file and the line of the bad entry."""
    try:
        root = compose_yaml(path)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError("UTF-8 のテキストとして読めません", file=str(path), row=line) from exc
    except OSError as exc:
        raise InputError(f"評価用の質問ファイルを読めません（{exc}）", file=str(path)) from exc
    return _Reader(path, chunks).document(root)


def select_split(queries: Sequence[EvalQuery], split: str | None) -> list[EvalQuery]:
    """The queries of ``split`` (all of them for None); InputError when there are none."""
    if split is None:
        return list(queries)
    chosen = [q for q in queries if q.split == split]
    if not chosen:
        raise InputError(
            f"--split {split} に当たる質問がありません（ファイルの先頭か質問ごとに"
            f"「split: {split}」と書いたものだけが使われます）"
        )
    return chosen


class _Reader(NodeReader):
    """Turns the node tree of one query file into queries, or one clear error."""

    def __init__(self, path: Path, chunks: Sequence[Chunk]) -> None:
        super().__init__(path)
        self.by_cell: dict[tuple[str, Field], list[Chunk]] = {}
        for chunk in chunks:
            self.by_cell.setdefault((fold(chunk.organisation), chunk.field), []).append(chunk)

    def document(self, root: yaml.Node | None) -> list[EvalQuery]:
        empty = "質問がありません（queries: の下に「- query: 検索語」の形で並べてください）"
        if root is None or not isinstance(root, yaml.MappingNode):
            raise self.fail(root, empty)
        top = self.mapping(root, _TOP_KEYS)
        split = self.split(top.get("split"), "")
        listed = top.get("queries")
        if not isinstance(listed, yaml.SequenceNode) or not listed.value:
            raise self.fail(listed or root, empty)
        return [self.query(node, split) for node in listed.value]

    def text(self, node: yaml.Node | None, key: str, where: yaml.Node, what: str) -> str:
        """The text written after ``key:``; a failure naming ``what`` when it is missing."""
        if node is None:
            raise self.fail(where, f"{what}に {key}: がありません")
        value = node.value.strip() if isinstance(node, yaml.ScalarNode) else ""
        if not value:
            raise self.fail(node, f"{what}の {key}: に何も書かれていません")
        return value

    def split(self, node: yaml.Node | None, inherited: str) -> str:
        """The half named by ``node`` (``inherited``, the file's, when absent)."""
        if node is None:
            return inherited
        value = node.value if isinstance(node, yaml.ScalarNode) else ""
        if value not in SPLITS:
            raise self.fail(node, f"split: は tune か heldout です（「{value}」は使えません）")
        if inherited and value != inherited:
            raise self.fail(node, f"split: {value} ですが、ファイル全体が split: {inherited} です")
        return value

    def query(self, node: yaml.Node, split: str) -> EvalQuery:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "質問は「- query: 検索語」の形で書いてください")
        parts = self.mapping(node, _QUERY_KEYS)
        query = self.text(parts.get("query"), "query", node, "質問")
        kind = parts.get("kind")
        relevant = parts.get("relevant", yaml.SequenceNode("tag:yaml.org,2002:seq", []))
        if not isinstance(relevant, yaml.SequenceNode):
            raise self.fail(
                relevant,
                "relevant: の下には正解のセルを「- {org: …, field: …, "
                "contains: …, grade: …}」の形で並べてください",
            )
        grades = dict(self.judged(item, query) for item in relevant.value)
        return EvalQuery(
            query,
            kind.value.strip() if isinstance(kind, yaml.ScalarNode) else "",
            grades,
            self.split(parts.get("split"), split),
        )

    def judged(self, node: yaml.Node, query: str) -> tuple[str, int]:
        """The chunk id and grade of one relevant cell of ``query``."""
        what = f"「{query}」の正解"
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, f"{what}は「{{org: …, field: …, contains: …, grade: …}}」の形で書いてください"
            )
        parts = self.mapping(node, _JUDGED_KEYS)
        org = self.text(parts.get("org"), "org", node, what)
        field_name = self.text(parts.get("field"), "field", node, what)
        contains = self.text(parts.get("contains"), "contains", node, what)
        try:
            field = Field(field_name)
        except ValueError:
            raise self.fail(
                parts["field"],
                f"{what}の field: 「{field_name}」という欄はありません"
                f"（{'・'.join(FIELDS)} のどれかです）",
            ) from None
        grade = parts.get("grade")
        written = (
            "1" if grade is None else grade.value if isinstance(grade, yaml.ScalarNode) else ""
        )
        if written not in _GRADES:
            raise self.fail(
                grade,
                f"{what}の grade: は 2（答えになる）か 1（関連する）です（「{written}」は使えません）",
            )
        key = (fold(normalise_organisation(org)), field)
        found = [c for c in self.by_cell.get(key, []) if fold(contains) in fold(c.text)]
        if len(found) != 1:
            count = f"が{len(found)}件あります" if found else "がありません"
            raise self.fail(
                node,
                f"{what} {org} / {field} / 「{contains}」の条件に当てはまるセル{count}"
                "（1件に決まるように書いてください）",
            )
        return found[0].id, _GRADES[written]


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


LEGEND = (
    "確信nDCG: 確かな答えとして示す結果だけで数えた nDCG@10。"
    "回答率: 正解つきの質問のうち、確かな答えを1件以上示せた割合。"
)
LEGEND_SILENT = "該当なし正答: 表に答えのない質問で、確かな答えを1件も示さなかった割合。"


def render(report: dict) -> str:
    """Side-by-side table of the modes, then each mode's misses; with no graded query, only
    the judge's figures on the unanswerable ones."""
    if not report["queries"]:
        return _render_unanswerable(report)
    modes = report["modes"]
    others = f"（ほかに答えのない質問{report['unanswerable']}件）" if report["unanswerable"] else ""
    lines = [f"{report['queries']}件の質問{others}で評価（上位{report['k']}件）", ""]
    lines.append(
        f"{'':10}{'nDCG@10':>10}{'Recall@10':>11}{'MRR':>8}{'確信nDCG':>10}{'回答率':>8}"
        + (f"{'該当なし正答':>10}" if report["unanswerable"] else "")
    )
    for name, m in modes.items():
        lines.append(
            f"{name:10}{m['ndcg@10']:>10.3f}{m['recall@10']:>11.3f}{m['mrr']:>8.3f}"
            f"{m['ndcg@10 confident']:>10.3f}{m['answered']:>8.3f}"
            + (f"{m['silent']:>10.3f}" if "silent" in m else "")
        )
    lines.append(LEGEND + (LEGEND_SILENT if report["unanswerable"] else ""))
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
            lines.append(_spoke(name, m))
    lines += ["", f"質問ごとの nDCG@10（{' '.join(modes)}）と働いた言い換え（synonyms.yaml の行）:"]
    rows = zip(*(m["per_query"] for m in modes.values()), strict=True)
    for same_query in rows:
        figures = " ".join(f"{r['ndcg']:.2f}" for r in same_query)
        used = "／".join(_describe(e) for e in same_query[0]["vocabulary"]) or "なし"
        lines.append(f"  {figures}  {same_query[0]['query']}　言い換え: {used}")
    return "\n".join(lines)


def _render_unanswerable(report: dict) -> str:
    """The report of queries that all lack an answer: there is no ranking to grade."""
    modes = report["modes"]
    lines = [
        f"正解つきの質問がありません。表に答えのない質問{report['unanswerable']}件で、"
        f"答えの確かさの判定だけを示します（上位{report['k']}件）",
        "",
        f"{'':10}{'該当なし正答':>10}",
        *(f"{name:10}{m['silent']:>10.3f}" for name, m in modes.items()),
        LEGEND_SILENT,
        "",
        *(_spoke(name, m) for name, m in modes.items()),
    ]
    return "\n".join(lines)


def _spoke(name: str, figures: dict) -> str:
    return f"{name} で答えがないのに答えを示した質問: {'、'.join(figures['spoke']) or 'なし'}"


def _describe(entry: dict) -> str:
    """An entry of the report as :meth:`Entry.describe` writes it."""
    return Entry(
        entry["concept"],
        tuple(entry["words"]),
        tuple(entry["adds"]),
        frozenset(entry["legs"]),
        entry["line"],
    ).describe()
