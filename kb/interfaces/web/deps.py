"""What the API and the pages both ask of a request: the service, a cell, a cell's item
across years, the organisation list and the themes agenda (computed once per build and
parameters)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from kb.apps.themes import Agenda, build_agenda
from kb.core.errors import CellNotFound
from kb.corpus import browse
from kb.corpus.history import ItemTimeline
from kb.search.fold import item_history
from kb.search.hits import Hit
from kb.search.service import SearchService


def service_of(request: Request) -> SearchService:
    return request.app.state.service


def cell_or_404(request: Request, cell_id: str) -> Hit:
    try:
        return service_of(request).cell(cell_id)
    except CellNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None


def timeline_or_404(request: Request, cell_id: str) -> ItemTimeline:
    """The item of the cell ``cell_id`` year by year (``kb history``); 404 if no such cell."""
    try:
        return item_history(service_of(request)).timeline(cell_id)
    except CellNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None


def organisations(request: Request) -> list[dict]:
    store = service_of(request).index.store
    return browse.organisation_list(store.all_columns, store.aliases)


def agenda(
    request: Request,
    year: int | None,
    fields: list[str] | tuple[str, ...],
    n: int | None,
    council: str | None = None,
) -> Agenda:
    """The agenda, computed once per build and parameters (a few hundred ms)."""
    service = service_of(request)
    index = service.index
    return index.memo.remembered(
        ("themes", year, tuple(fields), n, council),
        lambda: build_agenda(
            index.store,
            service.analyzer,
            service.passage_vectors,
            year,
            fields,
            n,
            related=service.related,
            council=council,
        ),
    )
