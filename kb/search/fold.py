"""Search results folded across years: one result per item and field, latest year first.

The same item comes back every year, so a search over several years can list the same
problem three times. Folded, the latest year's cell leads and the same item's matching
cells of the other years ride along in ``earlier`` (latest first), one click away in the
page and one key away in the JSON (``"earlier": [hit, …]``, each in the usual hit shape).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kb.corpus.history import ItemHistory
from kb.retrieval.store import Filters
from kb.search.hits import Hit, SearchResult
from kb.search.service import FACET_DEPTH, SearchService
from kb.search.validation import MAX_K, check_k


@dataclass
class FoldedHit(Hit):
    """A hit with the same item's matching cells of other years (latest first)."""

    earlier: list[Hit] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "earlier": [h.as_dict() for h in self.earlier]}


def item_history(service: SearchService) -> ItemHistory:
    """The items of the loaded build's columns, worked out once per build."""
    index = service.index
    return index.memo.remembered(("item-history",), lambda: ItemHistory(index.store.all_columns))


def fold_years(hits: list[Hit], history: ItemHistory) -> list[FoldedHit]:
    """``hits`` (best first) with each item's cells of one field folded into one result,
    placed where its best cell was and led by its latest year's cell. Answers fold only
    with answers and weak hits with weak ones: a weak cell of a later year must not lead,
    and so hide, an earlier year's answer (nor an answer carry a weak cell along)."""
    groups: dict[tuple[int, str, bool], list[Hit]] = {}
    for hit in hits:
        key = (history.item_of(hit.chunk), hit.chunk.field.value, bool(hit.confident))
        groups.setdefault(key, []).append(hit)
    folded = []
    for members in groups.values():
        lead, *earlier = sorted(members, key=lambda h: -h.chunk.year)  # stable: best first
        folded.append(FoldedHit(**vars(lead), earlier=earlier))
    return folded


def search_folded(service: SearchService, query: str, k: int, **options: object) -> SearchResult:
    """:meth:`SearchService.search` with results folded across years, still ``k`` of them.

    It folds at least the FACET_DEPTH cells the judge looks at (and ``k`` per year, up to
    MAX_K): a later year's cell of an item may rank far below the earlier year's, and with
    only ``k`` per year the earlier cell led its item and the later answer went missing, so
    the first three results differed from the first three of twenty.
    """
    k, years = check_k(k), len(service.index.store.values["year"])
    depth = k if years < 2 else min(MAX_K, max(k * years, FACET_DEPTH))
    result = service.search(query, k=depth, **options)  # type: ignore[arg-type]
    return replace(result, hits=fold_years(result.hits, item_history(service))[:k])


def browse_folded(service: SearchService, filters: Filters, limit: int = MAX_K) -> SearchResult:
    """:meth:`SearchService.browse` folded across years: at most ``limit`` results, each
    item's cells of one field once, led by the latest year's, in table order. Up to
    MAX_K cells a year are read first, since a later table's cells come after all of an
    earlier one's."""
    years = max(1, len(service.index.store.values["year"]))
    result = service.browse(filters, limit=MAX_K * years)
    return replace(result, hits=fold_years(result.hits, item_history(service))[: check_k(limit)])
