"""What a search answers with: :class:`Hit` (whose :meth:`Hit.as_dict` is the one public
JSON shape of a result, for the CLI, the API and exports alike) and :class:`SearchResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kb.core.model import Chunk, ColumnView
from kb.retrieval.analysis import Analyzer
from kb.retrieval.store import ChunkStore
from kb.search.fusion import Mode


@dataclass
class Hit:
    """A matching cell, its score, the words that matched, and its whole column."""

    chunk: Chunk
    score: float
    column: ColumnView
    matched_terms: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            **self.chunk.as_dict(),
            "score": round(float(self.score), 6),
            "matched_terms": self.matched_terms,
            "column": [
                {"id": c.id, "field": c.field.value, "field_ja": c.field.ja, "text": c.text}
                for c in self.column.filled
                if c.id != self.chunk.id
            ],
        }


@dataclass
class Group:
    """Hits of one organisation, for "who tackled this"."""

    organisation: str
    hits: list[Hit]


@dataclass
class SearchResult:
    query: str
    mode: Mode
    hits: list[Hit]
    matched: int  # how many cells matched at all (before cutting to k)
    facets: dict[str, dict] = field(default_factory=dict)

    def groups(self) -> list[Group]:
        """Hits grouped by organisation, groups in order of their best hit."""
        by_org: dict[str, list[Hit]] = {}
        for hit in self.hits:
            by_org.setdefault(hit.chunk.organisation, []).append(hit)
        return [Group(org, hits) for org, hits in by_org.items()]

    @property
    def browsing(self) -> bool:
        """True for a listing by filters alone, without a query."""
        return not self.query.strip()


def hits_at(
    store: ChunkStore,
    analyzer: Analyzer,
    positions: Sequence[int],
    scores: dict[int, float],
    terms: list[str],
) -> list[Hit]:
    """Hits for ``positions`` of ``store`` with their ``scores``, the surfaces of ``terms``
    each cell contains, and their columns (fetched in one query)."""
    chunks = store.get(positions)
    columns = store.columns(c.column_id for c in chunks)
    return [
        Hit(
            chunk=chunk,
            score=scores[p],
            matched_terms=analyzer.matched_surfaces(chunk.text, terms),
            column=columns[chunk.column_id],
        )
        for p, chunk in zip(positions, chunks, strict=True)
    ]
