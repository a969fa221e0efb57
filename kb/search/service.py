"""Search: one service object, a thin facade over a loaded build.

It keeps the current build and the synonyms up to date (hot reload), holds the analyser and
the embedder, and answers search, browse, cell, similar and related through the pieces
that make each decision once: :mod:`kb.search.validation` (what users may type),
:mod:`kb.search.fusion` (ranking) and :mod:`kb.search.hits` (the answer's shape). Answers
are memoised on the build they came from (:attr:`LoadedIndex.memo`).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kb.core.errors import CellNotFound, FilterError, KbError
from kb.core.fields import Field
from kb.core.memo import Memo
from kb.core.model import Chunk
from kb.core.settings import Settings
from kb.corpus.tables import SYNONYMS_FILE
from kb.retrieval import dense, grams, lexical
from kb.retrieval.analysis import Analyzer, Synonyms
from kb.retrieval.embedding import Embedder, embed_queries_async, load_embedder
from kb.retrieval.index import CURRENT, LoadedIndex, cached_passage_vectors, open_index
from kb.retrieval.store import Filters
from kb.search.fusion import Mode, rank
from kb.search.highlight import COMMON_SHARE, Marks, marks_for
from kb.search.hits import Hit, SearchResult, hits_at
from kb.search.judge import (
    BACKGROUND,
    FALLBACK,
    PAIR_SHARE,
    PAIR_STANDOUT,
    Judgement,
    TableFacts,
    judge_query,
    load_calibration,
    pair_shares,
    standouts,
)
from kb.search.validation import MAX_K, check_k, check_query, parse_filters

# Dense retrieval ranks every cell, so "how many match" has no natural cut-off; facet
# counts describe the best FACET_DEPTH results instead.
FACET_DEPTH = 50
QUERY_VECTORS_KEPT = 4096
# Cells of other organisations whose similarity to a cell sets the level its pairs must
# stand out from (a sample: at a million cells all of them would cost a full scan).
STANDOUT_SAMPLE = 2000
# Where "who already tackled this" is written: what was done, proposed and planned.
RELATED_FIELDS = (Field.progress, Field.solution, Field.next_year)


class SearchService:
    """Loaded once per process; safe to call from several threads at once."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or load_embedder(settings.embedder)
        self._synonyms_path = settings.corpus_dir / SYNONYMS_FILE
        self._current_link = settings.index_dir / CURRENT  # read several times a request
        self._synonyms_mtime = _mtime(self._synonyms_path)
        self.analyzer = Analyzer(Synonyms.load(self._synonyms_path))
        self._index = open_index(settings.index_dir, self.embedder.name)
        self._reload_lock = threading.Lock()
        self._rejected: str | None = None  # build id
        self._query_vectors = Memo(QUERY_VECTORS_KEPT)
        self.calibration = load_calibration(self.embedder.name) or FALLBACK
        self._background: np.ndarray | None = None

    def clear_caches(self) -> None:
        """Forget remembered answers and query vectors (benchmarks measure cold queries)."""
        self._index.memo.clear()
        self._query_vectors.clear()

    def _query_vector(self, text: str) -> np.ndarray:
        """The query embedding of ``text``, kept for the next time it is asked."""
        return self._query_vectors.remembered(
            (text,), lambda: _shared(self.embedder.embed_queries([text])[0])
        )

    async def _query_vector_async(self, text: str) -> np.ndarray:
        """:meth:`_query_vector` for a coroutine (see :func:`embed_queries_async`)."""
        vector = self._query_vectors.recall((text,))
        if vector is None:
            generation = self._query_vectors.generation
            vector = _shared((await embed_queries_async(self.embedder, [text]))[0])
            self._query_vectors.remember((text,), vector, generation)
        return vector

    def query_vector(self, query: str) -> np.ndarray:
        """The dense side's vector for ``query``: one embedding of the query followed by the
        table's terms its vocabulary entries add (:meth:`Analyzer.dense_query`)."""
        return self._query_vector(self.analyzer.dense_query(query))

    def passage_vectors(self, texts: list[str]) -> np.ndarray:
        """Passage embeddings of ``texts`` (one row each), through the builds' cache."""
        return cached_passage_vectors(self.settings.index_dir, self.embedder, texts)

    @property
    def background(self) -> np.ndarray:
        """Vectors of :data:`BACKGROUND`, the level any text reaches (builds cache them)."""
        if self._background is None:
            self._background = self.passage_vectors(list(BACKGROUND))
        return self._background

    # --- keeping up with rebuilds and edits --------------------------------------------

    @property
    def index(self) -> LoadedIndex:
        """The current build; picks up a rebuild (``kb build``) without a restart."""
        self._refresh()
        return self._index

    async def prepare(self, query: str) -> float:
        """Do a coroutine's waiting for a search of ``query`` ahead of :meth:`search`, which
        then runs without blocking the loop: load a new build on a worker thread, and embed
        the query (in place when the loop is the model's own, batched with other requests').
        Returns the milliseconds the embedding took (0 for a vector already known)."""
        if self._new_build() or _mtime(self._synonyms_path) != self._synonyms_mtime:
            await asyncio.to_thread(self._refresh)
        started = time.perf_counter()
        if query.strip():
            await self._query_vector_async(self.analyzer.dense_query(query))
        return (time.perf_counter() - started) * 1000

    def _new_build(self) -> str | None:
        """The live build's folder name when it is not the loaded one (nor one rejected)."""
        # One system call: cheap enough for every request.
        try:
            live = os.readlink(self._current_link).rsplit("/", 1)[-1]
        except OSError:
            return None  # the index folder vanished; keep serving what is loaded
        return None if live in (self._index.folder.name, self._rejected) else live

    def _refresh(self) -> None:
        live = self._new_build()
        # One thread reloads while the others go on answering from the loaded build; a
        # build that fails its checks is remembered and not retried on every request.
        if live and self._reload_lock.acquire(blocking=False):
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
            else:
                self._index.memo.clear()  # answers found with the old synonyms

    # --- filters -----------------------------------------------------------------------

    def filters(
        self,
        fields: Iterable[str] = (),
        organisations: Iterable[str] = (),
        categories: Iterable[str] = (),
        years: Iterable[int] = (),
    ) -> Filters:
        """Validated filters from user input (see :func:`parse_filters`)."""
        index = self.index
        organisations = list(organisations)
        return parse_filters(
            index.store.values,
            index.aliases if organisations else None,
            fields=fields,
            organisations=organisations,
            categories=categories,
            years=years,
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
        mode, k, query = Mode(mode), check_k(k), check_query(query)
        index = self.index
        return index.memo.remembered(
            ("search", query, k, mode, filters, with_facets),
            lambda: self._search(index, query, k, mode, filters or Filters(), with_facets),
        )

    def _search(
        self,
        index: LoadedIndex,
        query: str,
        k: int,
        mode: Mode,
        filters: Filters,
        with_facets: bool,
    ) -> SearchResult:
        timings: dict[str, float] = {}
        with _timed(timings, "analyse"):
            allowed = index.store.mask(filters)
            weights = self.analyzer.query_weights(query)
            terms = list(weights)
            # The vocabulary reaches the dense leg through the text embedded: the query with
            # the table's terms put in (README "Search quality": what it gained and costs).
            # Its character pairs rank the cells found too (kb.retrieval.grams).
            written = self.analyzer.dense_query(query) if query.strip() else ""
        # The vector is also the judge's evidence, so a lexical search computes it too.
        with _timed(timings, "embed"):
            vector = self._query_vector(written) if written else None
        with _timed(timings, "rank"):
            dense_vector = vector if mode != Mode.lexical else None
            pairs = grams.pairs(written)
            ranking = rank(index, mode, weights, dense_vector, allowed, pairs=pairs)
            judged = ranking.order[: max(k, FACET_DEPTH)]
        with _timed(timings, "judge"):
            judgement = self.judge(index, query, vector, allowed, judged, ranking.similarity)
            flags = judgement.flags(self.calibration)
            confident = [p for p, sure in zip(judged, flags, strict=True) if sure]
            facets = (
                index.store.facet_counts(np.array(confident, dtype=np.int64))
                if (with_facets and confident)
                else {}
            )
        with _timed(timings, "hits"):
            marks = marks_for(self.analyzer, query, terms, _common_in(index))
            hits = hits_at(index.store, self.analyzer, ranking.order[:k], ranking.scores, marks)
            for hit, sure in zip(hits, flags, strict=False):
                hit.confident = sure
        return SearchResult(
            query=query,
            mode=mode,
            hits=hits,
            matched=len(confident),
            facets=facets,
            judgement=judgement,
            timings=timings,
        )

    def judge(
        self,
        index: LoadedIndex,
        query: str,
        vector: np.ndarray | None,
        allowed: np.ndarray | None,
        positions: list[int],
        similarity: dict[int, float],
    ) -> Judgement:
        """The evidence for ``query`` and for each of ``positions`` (see
        :mod:`kb.search.judge`). ``similarity`` holds the dense leg's scores; the best
        similarity among ``allowed`` cells is looked up when it lacks them."""
        if vector is not None and not similarity:
            found, scores = dense.search(index.dense, vector, 1, allowed)
            similarity = dict(zip(map(int, found), map(float, scores), strict=True))
        table = TableFacts(
            specificity=lambda term: _idf(index, term),
            rarest=_idf_of(len(index.store), 1),
            holds=lambda term, rows: lexical.holding(index.lexical, term, rows),
            names=(*index.store.values["organisation"], *index.aliases),
        )
        return judge_query(
            self.analyzer,
            query,
            table,
            positions,
            [similarity.get(p) for p in positions],
            max(similarity.values(), default=0.0),
            self.background,
            vector,
        )

    def browse(self, filters: Filters, limit: int = MAX_K) -> SearchResult:
        """Cells matching ``filters`` in table order, for browsing without a query."""
        index = self.index
        mask = index.store.mask(filters)
        positions = np.flatnonzero(mask) if mask is not None else np.arange(len(index.store))
        shown = [int(p) for p in positions[:limit]]
        return SearchResult(
            query="",
            mode=Mode.hybrid,
            hits=hits_at(index.store, self.analyzer, shown, dict.fromkeys(shown, 1.0), Marks()),
            matched=len(positions),
            facets=index.store.facet_counts(positions),
        )

    # --- cells -------------------------------------------------------------------------

    def cell(self, chunk_id: str) -> Hit:
        """One cell with its column; CellNotFound if there is no such cell."""
        index = self.index
        _, chunk = _locate(index, chunk_id)
        return Hit(chunk=chunk, score=1.0, column=index.store.column(chunk.column_id))

    def similar(self, chunk_id: str, k: int = 5) -> list[Hit]:
        """Cells of *other* agencies closest in meaning to this one, scored by cosine
        similarity. CellNotFound if there is no such cell."""
        check_k(k)
        index = self.index
        position, chunk = _locate(index, chunk_id)
        vector = dense.vectors(index.dense, np.array([position]))[0]
        ranking = rank(index, Mode.dense, [], vector, _other_agencies(index, chunk), depth=k)
        hits = hits_at(index.store, self.analyzer, ranking.order[:k], ranking.similarity, Marks())
        return self._judge_pairs(index, chunk, hits)

    def related(self, chunk_id: str, k: int = 5) -> list[Hit]:
        """What *other* agencies did about this cell's problem: their progress, solution and
        next-year cells, ranked by hybrid fusion of the cell's text used as a query (dense)
        and its terms (lexical). CellNotFound if there is no such cell."""
        check_k(k)
        index = self.index
        _, chunk = _locate(index, chunk_id)
        allowed = index.store.mask(Filters(fields=RELATED_FIELDS)) & _other_agencies(index, chunk)
        terms = self.analyzer.query_tokens(chunk.text)
        ranking = rank(index, Mode.hybrid, terms, self._query_vector(chunk.text), allowed)
        marks = marks_for(self.analyzer, chunk.text, terms, _common_in(index), typed=False)
        hits = hits_at(index.store, self.analyzer, ranking.order[:k], ranking.scores, marks)
        return self._judge_pairs(index, chunk, hits)

    def related_to_challenge(self, chunk_id: str, k: int = 5) -> list[Hit]:
        """:meth:`related` for a challenge cell, as ``kb related`` and the API ask it; a cell
        of another field is refused (FilterError on ``cell_id``) with the challenge cell of
        its item to ask about instead. CellNotFound if there is no such cell."""
        cell = self.cell(chunk_id)
        if cell.chunk.field != Field.challenge:
            raise FilterError(_not_a_challenge(cell), "cell_id")
        return self.related(chunk_id, k)

    def _judge_pairs(self, index: LoadedIndex, source: Chunk, hits: list[Hit]) -> list[Hit]:
        """Flag as confident the hits that share what makes ``source`` specific and stand
        out in meaning from other organisations' cells (see :data:`PAIR_SHARE`)."""
        shares = pair_shares(
            self.analyzer,
            source.text,
            [h.chunk.text for h in hits],
            lambda term: _idf(index, term),
        )
        position = index.store.position(source.id)
        vector = dense.vectors(index.dense, np.array([position]))[0]
        rows = np.flatnonzero(_other_agencies(index, source))
        sample = rows[:: max(1, len(rows) // STANDOUT_SAMPLE)]
        population = dense.vectors(index.dense, sample) @ vector
        found = [index.store.position(h.chunk.id) for h in hits]
        mine = dense.vectors(index.dense, np.array(found, dtype=np.int64)) @ vector
        for hit, share, standout in zip(hits, shares, standouts(mine, population), strict=True):
            hit.confident = share >= PAIR_SHARE and standout >= PAIR_STANDOUT
        return hits


def _not_a_challenge(cell: Hit) -> str:
    """What "who else tackled this" expects, said for a cell of another field, with the
    challenge cell of the same item when it has one."""
    chunk = cell.chunk
    said = (
        f"セル {chunk.id} は「{chunk.field.ja}」の欄です。"
        "他の団体の取組みは、課題の欄のセルを指定して探してください"
    )
    challenge = next((c for c in cell.column.filled if c.field == Field.challenge), None)
    if challenge is None:
        return f"{said}（この項目には課題の記載がありません）"
    return f"{said}（この項目の課題は {challenge.id}）"


def _shared(vector: np.ndarray) -> np.ndarray:
    """``vector`` made read-only: cached vectors are shared between threads."""
    vector.setflags(write=False)
    return vector


def _locate(index: LoadedIndex, chunk_id: str) -> tuple[int, Chunk]:
    """The position and chunk of ``chunk_id`` in ``index``; CellNotFound if it has none."""
    position = index.store.position(chunk_id)
    if position is None:
        raise CellNotFound(chunk_id)
    (chunk,) = index.store.get([position])
    return position, chunk


def _other_agencies(index: LoadedIndex, chunk: Chunk) -> np.ndarray:
    """Row mask of the cells written by agencies other than ``chunk``'s."""
    store = index.store
    return np.asarray(store.codes["agency"]) != store.values["agency"].index(chunk.agency)


def _idf(index: LoadedIndex, term: str) -> float | None:
    """Inverse document frequency of ``term`` in ``index``; None when no cell has it."""
    found = lexical.document_frequency(index.lexical, term)
    return _idf_of(len(index.store), found) if found else None


def _idf_of(rows: int, found: int) -> float:
    """BM25's inverse document frequency of a term found in ``found`` of ``rows`` cells."""
    return math.log(1 + (rows - found + 0.5) / (found + 0.5))


def _common_in(index: LoadedIndex):
    """A test for terms found in more than :data:`COMMON_SHARE` of ``index``'s cells."""
    most = COMMON_SHARE * len(index.store)
    return lambda term: lexical.document_frequency(index.lexical, term) > most


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the milliseconds the block took to ``timings[phase]``."""
    started = time.perf_counter()
    yield
    timings[phase] = (time.perf_counter() - started) * 1000


def _warn(message: str) -> None:
    print(f"注意: {message}", file=sys.stderr, flush=True)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
