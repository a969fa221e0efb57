"""What a search answers with: :class:`Hit` (whose :meth:`Hit.as_dict` is the one public
JSON shape of a result, for the CLI, the API and exports alike) and :class:`SearchResult`."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from kb.core.model import Chunk, ColumnView
from kb.retrieval.analysis import Analyzer
from kb.retrieval.store import ChunkStore
from kb.search.fusion import Mode
from kb.search.highlight import Marks
from kb.search.judge import Judgement


@dataclass
class Hit:
    """A matching cell, its score, the words that matched, and its whole column."""

    chunk: Chunk
    score: float
    column: ColumnView
    matched_terms: list[str] = field(default_factory=list)
    # Presented as an answer: kb has evidence for it (see kb.search.judge). Cells listed by
    # filters alone, or opened by id, are exactly what was asked for.
    confident: bool = True

    def as_dict(self) -> dict:
        return {
            **self.chunk.as_dict(),
            "score": round(float(self.score), 6),
            "confident": bool(self.confident),  # judgements may come as numpy booleans
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
    matched: int  # how many cells are confident answers (of the best FACET_DEPTH)
    facets: dict[str, dict] = field(default_factory=dict)  # over those confident cells
    judgement: Judgement | None = None
    # Milliseconds per phase of the search that computed this answer (analyse, embed,
    # rank, hits); the API sends them as a Server-Timing header.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def answers(self) -> list[Hit]:
        """The hits presented as answers, best first."""
        return [h for h in self.hits if h.confident]

    @property
    def weak(self) -> list[Hit]:
        """Ranked hits without enough evidence, shown apart if at all."""
        return [h for h in self.hits if not h.confident]

    def groups(self, hits: list[Hit] | None = None) -> list[Group]:
        """``hits`` (all hits by default) grouped by organisation, groups in order of their
        best hit."""
        by_org: dict[str, list[Hit]] = {}
        for hit in self.hits if hits is None else hits:
            by_org.setdefault(hit.chunk.organisation, []).append(hit)
        return [Group(org, hits) for org, hits in by_org.items()]

    @property
    def unknown_words(self) -> list[str]:
        """The query's Japanese content words that no cell writes and the vocabulary does
        not know, as typed, each once: said beside the hits, so a near miss (人工透析の送迎,
        answered about 送迎) reads as one."""
        return [w for w in self._uncovered() if not _latin(w)]

    @property
    def untranslated_words(self) -> list[str]:
        """The query's words in Latin letters that the vocabulary cannot put into the
        table's Japanese (respite *care*). The table is Japanese, so no cell writes them,
        but that says nothing about what it covers (ケア is in most cells): they are said
        apart, not as absent topics."""
        return [w for w in self._uncovered() if _latin(w)]

    def _uncovered(self) -> list[str]:
        return list(dict.fromkeys(self.judgement.evidence.uncovered)) if self.judgement else []

    @property
    def topicless(self) -> bool:
        """True for a query with no word that says what it is about (see
        :attr:`kb.search.judge.QueryEvidence.topical`): the user is told so."""
        return self.judgement is not None and not self.judgement.evidence.topical

    @property
    def browsing(self) -> bool:
        """True for a listing by filters alone, without a query."""
        return not self.query.strip()


def _latin(word: str) -> bool:
    """True for a word in Latin letters (English), full-width ones included."""
    return unicodedata.normalize("NFKC", word).isascii()


def hits_at(
    store: ChunkStore,
    analyzer: Analyzer,
    positions: Sequence[int],
    scores: dict[int, float],
    marks: Marks,
) -> list[Hit]:
    """Hits for ``positions`` of ``store`` with their ``scores``, the words each cell has
    that ``marks`` highlight, and their columns (fetched in one query)."""
    chunks = store.get(positions)
    columns = store.columns(c.column_id for c in chunks)
    return [
        Hit(
            chunk=chunk,
            score=scores[p],
            matched_terms=analyzer.matched_surfaces(chunk.text, marks.terms, marks.typed),
            column=columns[chunk.column_id],
        )
        for p, chunk in zip(positions, chunks, strict=True)
    ]
