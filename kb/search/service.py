"""Search: one service object that owns the loaded index, the analyser and the embedder.

The CLI, the JSON API and the HTML views all call :class:`SearchService`; they differ only
in how they print its :class:`Hit` objects, whose :meth:`Hit.as_dict` is the one public
JSON shape of a result.

Hybrid search fuses the dense (FAISS) and lexical (BM25) rankings with reciprocal rank
fusion: each list contributes ``weight / (RRF_K + rank)``. RRF needs no score calibration
between the two very different scorers and was tuned on ``eval/queries.yaml``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np

from kb.core.errors import FilterError, KbError
from kb.core.fields import FIELDS, Field
from kb.core.model import Chunk
from kb.core.settings import Settings
from kb.core.text import agency_of, normalise_organisation
from kb.corpus.tables import SYNONYMS_FILE
from kb.retrieval import dense, lexical
from kb.retrieval.analysis import Analyzer, Synonyms
from kb.retrieval.embedding import Embedder, load_embedder
from kb.retrieval.index import CURRENT, LoadedIndex, open_index
from kb.retrieval.store import Filters

T = TypeVar("T")

MAX_K = 100
MAX_QUERY_CHARS = 500
CANDIDATES = 200  # per ranking, before fusion
# Dense retrieval ranks every cell, so "how many match" has no natural cut-off; facet
# counts describe the best FACET_DEPTH results instead.
FACET_DEPTH = 50
RESULTS_KEPT = 2048
QUERY_VECTORS_KEPT = 4096
RRF_K = 40
DENSE_WEIGHT = 1.0
LEXICAL_WEIGHT = 1.0
# Where "who already tackled this" is written: what was done, proposed and planned.
RELATED_FIELDS = (Field.progress, Field.solution, Field.next_year)


class Mode(StrEnum):
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


@dataclass
class Hit:
    """A matching cell, its score, the words that matched, and the rest of its column."""

    chunk: Chunk
    score: float
    matched_terms: list[str] = field(default_factory=list)
    column: list[Chunk] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            **self.chunk.as_dict(),
            "score": round(float(self.score), 6),
            "matched_terms": self.matched_terms,
            "column": [
                {"id": c.id, "field": c.field.value, "field_ja": c.field.ja, "text": c.text}
                for c in self.column
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


def rrf(rankings: Sequence[tuple[np.ndarray, float]], k: int | None = None) -> dict[int, float]:
    """Reciprocal rank fusion of (positions best-first, weight) rankings."""
    k = RRF_K if k is None else k
    fused: dict[int, float] = {}
    for positions, weight in rankings:
        for rank, position in enumerate(positions, start=1):
            fused[int(position)] = fused.get(int(position), 0.0) + weight / (k + rank)
    return fused


def _top(scores: np.ndarray, allowed: np.ndarray | None, n: int) -> np.ndarray:
    """Positions of the ``n`` best positive scores, best first."""
    if allowed is not None:
        scores = np.where(allowed, scores, 0.0)
    positive = np.flatnonzero(scores > 0)
    if len(positive) > n:
        positive = positive[np.argpartition(-scores[positive], n)[:n]]
    return positive[np.argsort(-scores[positive], kind="stable")]


class SearchService:
    """Loaded once per process; safe to call from several threads at once."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or load_embedder(settings.embedder)
        self._synonyms_path = settings.corpus_dir / SYNONYMS_FILE
        self._synonyms_mtime = _mtime(self._synonyms_path)
        self.analyzer = Analyzer(Synonyms.load(self._synonyms_path))
        self._index = open_index(settings.index_dir, self.embedder.name)
        self._reload_lock = threading.Lock()
        self._rejected: str | None = None  # build id
        self._results: OrderedDict[tuple, object] = OrderedDict()  # see remembered()
        self._results_lock = threading.Lock()
        self._query_vector = lru_cache(maxsize=QUERY_VECTORS_KEPT)(self._embed_query)

    def clear_caches(self) -> None:
        """Forget remembered answers and query vectors (benchmarks measure cold queries)."""
        with self._results_lock:
            self._results.clear()
        self._query_vector.cache_clear()

    def _embed_query(self, text: str, rewritten: str | None = None) -> np.ndarray:
        """The query vector of ``text``; with ``rewritten`` (the query spelled in the table's
        terms, :meth:`Analyzer.dense_query`), the normalised mean of both vectors, embedded
        in one batch (one model call: about 1.3× the cost of one text, not 2×)."""
        texts = [text] if rewritten in (None, text) else [text, rewritten]
        vector = self.embedder.embed_queries(texts).sum(axis=0)
        vector /= np.linalg.norm(vector) or 1.0
        vector.setflags(write=False)  # shared between threads through the cache
        return vector

    def query_vector(self, query: str) -> np.ndarray:
        """The dense side's vector for ``query``: the query and, when vocabulary entries
        fire, the query rewritten in the table's terms, averaged (remembered per text)."""
        return self._query_vector(query, self.analyzer.dense_query(query))

    # --- keeping up with rebuilds and edits --------------------------------------------

    @property
    def index(self) -> LoadedIndex:
        """The current build; picks up a rebuild (``kb build``) without a restart."""
        self._refresh()
        return self._index

    def _refresh(self) -> None:
        # Two system calls (readlink, stat): cheap enough for every request.
        try:
            live = os.readlink(self.settings.index_dir / CURRENT).rsplit("/", 1)[-1]
        except OSError:
            return  # the index folder vanished; keep serving what is loaded
        # One thread reloads while the others go on answering from the loaded build; a
        # build that fails its checks is remembered and not retried on every request.
        if live not in (self._index.folder.name, self._rejected) and self._reload_lock.acquire(
            blocking=False
        ):
            try:
                self._index = open_index(self.settings.index_dir, self.embedder.name)
            except KbError as exc:
                self._rejected = live
                _warn(f"新しい索引を読み込めません（{exc}）。前の索引で検索を続けます")
            finally:
                self._reload_lock.release()
        mtime = _mtime(self._synonyms_path)
        if mtime != self._synonyms_mtime:
            self._synonyms_mtime = mtime
            try:
                self.analyzer.synonyms = Synonyms.load(self._synonyms_path)
            except KbError as exc:  # a half-saved edit: keep the last good synonyms
                _warn(f"言い換え辞書を読み直せません（{exc}）。前の内容で検索します")

    # --- filters -----------------------------------------------------------------------

    def resolve_organisations(self, names: Iterable[str]) -> tuple[str, ...]:
        """Turn what a user typed (a name, an alias, part of a name) into organisation or
        agency names of the index; unknown names raise a KbError listing the known ones."""
        values = self.index.store.values
        known = [*values["organisation"], *values["agency"]]
        resolved: list[str] = []
        for name in names:
            wanted = normalise_organisation(name)
            aliases = self.index.aliases
            if wanted in aliases and aliases[wanted] != wanted:
                # An alias names the agency (座間養護学校 → both of its sheets ① and ②).
                wanted = agency_of(aliases[wanted])
            matches = [k for k in known if k == wanted] or [
                k for k in values["organisation"] if wanted in k
            ]
            if not matches:
                raise FilterError(
                    f"団体「{name}」は見つかりません。登録されている団体: {'、'.join(values['organisation'])}",
                    param="org",
                )
            resolved += matches
        return tuple(dict.fromkeys(resolved))

    def filters(
        self,
        fields: Iterable[str] = (),
        organisations: Iterable[str] = (),
        categories: Iterable[str] = (),
        years: Iterable[int] = (),
    ) -> Filters:
        """Validated filters from user input; unknown values raise a KbError naming them."""
        values = self.index.store.values
        parsed_fields = []
        for f in fields:
            try:
                parsed_fields.append(Field(f))
            except ValueError:
                raise FilterError(
                    f"欄「{f}」はありません（{', '.join(x.value for x in FIELDS)}）", param="field"
                ) from None
        for c in categories:
            if c not in values["categories"]:
                raise FilterError(
                    f"課題区分「{c}」はありません（{'、'.join(values['categories'])}）",
                    param="category",
                )
        for y in years:
            if y not in values["year"]:
                raise FilterError(
                    f"{y}年度の表はありません（{', '.join(map(str, values['year']))}）",
                    param="year",
                )
        return Filters(
            fields=tuple(parsed_fields),
            organisations=self.resolve_organisations(organisations),
            categories=tuple(categories),
            years=tuple(years),
        )

    # --- search ------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 10,
        mode: Mode | str = Mode.hybrid,
        filters: Filters | None = None,
        with_facets: bool = False,
    ) -> SearchResult:
        """The ``k`` best cells for ``query``; raises KbError for bad parameters."""
        mode = Mode(mode)
        if not 1 <= k <= MAX_K:
            raise FilterError(f"k は 1〜{MAX_K} にしてください（{k}）", param="k")
        if len(query) > MAX_QUERY_CHARS:
            raise FilterError(
                f"検索語が長すぎます（{len(query)}文字、{MAX_QUERY_CHARS}文字まで）", param="q"
            )
        index = self.index
        return self.remembered(
            ("search", query, k, mode, filters, with_facets),
            lambda: self._search(index, query, k, mode, filters or Filters(), with_facets),
            index,
        )

    def remembered(
        self, key: tuple, compute: Callable[[], T], index: LoadedIndex | None = None
    ) -> T:
        """``compute()``, or its answer from an earlier call with the same ``key`` on the same
        build and synonyms. Staff repeat the same searches and reload the same pages; an
        answer depends only on those, so recent answers are kept (never across a rebuild)."""
        found = self.recall(key, index)
        if found is None:
            found = compute()
            self.remember(key, found, index)
        return found

    def recall(self, key: tuple, index: LoadedIndex | None = None) -> object | None:
        """What :meth:`remember` kept for ``key`` on the current build, or None."""
        full_key = self._memo_key(key, index)
        with self._results_lock:
            if full_key in self._results:
                self._results.move_to_end(full_key)
                return self._results[full_key]
        return None

    def remember(self, key: tuple, value: object, index: LoadedIndex | None = None) -> None:
        with self._results_lock:
            self._results[self._memo_key(key, index)] = value
            if len(self._results) > RESULTS_KEPT:
                self._results.popitem(last=False)

    def _memo_key(self, key: tuple, index: LoadedIndex | None) -> tuple:
        return ((index or self.index).folder, self._synonyms_mtime, *key)

    def _search(
        self,
        index: LoadedIndex,
        query: str,
        k: int,
        mode: Mode,
        filters: Filters,
        with_facets: bool,
    ) -> SearchResult:
        allowed = index.store.mask(filters)
        weights = self.analyzer.query_weights(query)
        terms = list(weights)
        rankings = []
        if mode in (Mode.hybrid, Mode.lexical):
            rankings.append(
                (_top(lexical.scores(index.lexical, weights), allowed, CANDIDATES), LEXICAL_WEIGHT)
            )
        if mode in (Mode.hybrid, Mode.dense) and query.strip():
            # The vocabulary reaches the dense side as a second text, the query rewritten in
            # the table's terms, embedded in the same model call and averaged with the query
            # (see README "Search quality" for what it gained and costs).
            positions, _ = dense.search(index.dense, self.query_vector(query), CANDIDATES, allowed)
            rankings.append((positions, DENSE_WEIGHT))
        fused = rrf(rankings)
        order = sorted(fused, key=lambda p: (-fused[p], p))
        top = np.array(order[: max(k, FACET_DEPTH)], dtype=np.int64)
        facets = index.store.facet_counts(top) if with_facets else {}
        hits = self._hits(index, order[:k], fused, terms)
        return SearchResult(query=query, mode=mode, hits=hits, matched=len(order), facets=facets)

    def browse(self, filters: Filters, limit: int = MAX_K) -> SearchResult:
        """Cells matching ``filters`` in table order, for browsing without a query."""
        index = self.index
        mask = index.store.mask(filters)
        positions = np.flatnonzero(mask) if mask is not None else np.arange(len(index.store))
        shown = [int(p) for p in positions[:limit]]
        return SearchResult(
            query="",
            mode=Mode.hybrid,
            hits=self._hits(index, shown, dict.fromkeys(shown, 1.0), []),
            matched=len(positions),
            facets=index.store.facet_counts(positions),
        )

    def _hits(
        self,
        index: LoadedIndex,
        positions: Sequence[int],
        scores: dict[int, float],
        terms: list[str],
    ) -> list[Hit]:
        # ``index`` is the build the positions came from: a rebuild may swap self.index
        # between ranking and fetching, and positions mean nothing in another build.
        chunks = index.store.get(positions)
        columns = index.store.columns(chunks)
        return [
            Hit(
                chunk=chunk,
                score=scores[p],
                matched_terms=self.analyzer.matched_surfaces(chunk.text, terms),
                column=columns[chunk.column_id],
            )
            for p, chunk in zip(positions, chunks, strict=True)
        ]

    # --- cells -------------------------------------------------------------------------

    def cell(self, chunk_id: str) -> Hit:
        """One cell with its column; KeyError if there is no such cell."""
        store = self.index.store
        position = store.position(chunk_id)
        if position is None:
            raise KeyError(chunk_id)
        (chunk,) = store.get([position])
        return Hit(chunk=chunk, score=1.0, column=store.column(chunk))

    def similar(self, chunk_id: str, k: int = 5) -> list[Hit]:
        """Cells of *other* agencies closest in meaning to this one."""
        index = self.index
        position = index.store.position(chunk_id)
        if position is None:
            raise KeyError(chunk_id)
        (chunk,) = index.store.get([position])
        others = np.asarray(index.store.codes["agency"]) != index.store.values["agency"].index(
            chunk.agency
        )
        vector = dense.vectors(index.dense, np.array([position]))[0]
        positions, scores = dense.search(index.dense, vector, k, others)
        return self._hits(
            index,
            list(positions),
            dict(zip(map(int, positions), map(float, scores), strict=True)),
            [],
        )

    def related(self, chunk_id: str, k: int = 5) -> list[Hit]:
        """What *other* agencies did about this cell's problem: their progress, solution and
        next-year cells, ranked by hybrid fusion of the cell's text used as a query (dense)
        and its terms (lexical). KeyError if there is no such cell."""
        if not 1 <= k <= MAX_K:
            raise FilterError(f"k は 1〜{MAX_K} にしてください（{k}）", param="k")
        index = self.index
        position = index.store.position(chunk_id)
        if position is None:
            raise KeyError(chunk_id)
        (chunk,) = index.store.get([position])
        allowed = index.store.mask(Filters(fields=RELATED_FIELDS)) & (
            np.asarray(index.store.codes["agency"])
            != index.store.values["agency"].index(chunk.agency)
        )
        terms = self.analyzer.query_tokens(chunk.text)
        positions, _ = dense.search(
            index.dense, self._query_vector(chunk.text), CANDIDATES, allowed
        )
        fused = rrf(
            [
                (_top(lexical.scores(index.lexical, terms), allowed, CANDIDATES), LEXICAL_WEIGHT),
                (positions, DENSE_WEIGHT),
            ]
        )
        order = sorted(fused, key=lambda p: (-fused[p], p))
        return self._hits(index, order[:k], fused, terms)


def _warn(message: str) -> None:
    print(f"注意: {message}", file=sys.stderr, flush=True)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
