"""The HTML pages: search, cells, organisations, the whole table, themes and help.

Pages use no JavaScript of their own: filters are links and forms, a cell's column opens
with ``<details>``, so the strict Content-Security-Policy costs nothing. Form fields arrive
as text and are checked by :mod:`kb.search.validation`; a bad value is shown on the page
with status 422.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from kb.apps.themes import (
    DEFAULT_FIELDS,
    SINGLE_NOTE,
    Agenda,
    continuity,
    continuity_note,
    council_names,
    question_source,
    related_notes,
    render_csv,
    render_markdown,
)
from kb.core.errors import FilterError
from kb.core.fields import FIELDS, Field
from kb.corpus import browse
from kb.interfaces.web.deps import (
    agenda,
    cell_or_404,
    organisations,
    service_of,
    timeline_or_404,
)
from kb.search.fold import browse_folded, search_folded
from kb.search.highlight import as_html, pieces
from kb.search.service import FACET_DEPTH
from kb.search.validation import (
    MAX_QUERY_CHARS,
    canonical_filter_params,
    canonical_organisation,
    check_query,
    parse_count,
    parse_flag,
    parse_k,
    parse_year,
    parse_years,
)

# Package data: installed with kb, so a wheel serves its pages from anywhere.
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_PAGE_K = 20
EXAMPLES = (
    "看護師不足",
    "人手が足りない",
    "ショートステイ",
    "停電のとき人工呼吸器の子はどうする",
    "マイサポートブック",
    "nurse shortage",
)

router = APIRouter(include_in_schema=False)


# --- templates -------------------------------------------------------------------------


def highlight(text: str, terms: list[str]) -> Markup:
    """Escape first, then mark matched terms and keep line breaks."""
    return as_html(pieces(text, terms))


def toggled_url(request: Request, name: str, value: object) -> str:
    """The current URL with ``name=value`` added, or removed if it is already there."""
    params = list(request.query_params.multi_items())
    pair = (name, str(value))
    params = [p for p in params if p != pair] if pair in params else [*params, pair]
    return f"{request.url.path}?{urlencode(params)}"


def replaced_url(request: Request, **changes: object) -> str:
    """The current URL with single-valued parameters replaced."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    params += [(k, str(v)) for k, v in changes.items()]
    return f"{request.url.path}?{urlencode(params)}"


def templates() -> Jinja2Templates:
    """The page templates with kb's filters and globals (one set per app)."""
    loaded = Jinja2Templates(directory=TEMPLATES_DIR)
    loaded.env.filters["highlight"] = highlight
    loaded.env.globals.update(
        toggled_url=toggled_url,
        replaced_url=replaced_url,
        FIELDS=FIELDS,
        examples=EXAMPLES,
        max_query=MAX_QUERY_CHARS,
        filter_labels={"field": {f.value: f.ja for f in FIELDS}},
        facet_depth=FACET_DEPTH,
        continuity=continuity,
        continuity_note=continuity_note,
        related_notes=related_notes,
        question_source=question_source,
        single_note=SINGLE_NOTE,
    )
    return loaded


# Positional-only, so a template variable may be called ``name`` (organisation.html).
def render(
    request: Request, template: str, /, status: int = 200, **context: object
) -> HTMLResponse:
    """``template`` rendered with ``context`` by the app's templates."""
    return request.app.state.templates.TemplateResponse(
        request, template, context, status_code=status
    )


# --- search, cells, organisations ------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/search")


@router.get("/search", response_class=HTMLResponse)
async def search_page(
    request: Request,
    q: str = "",
    view: str = "org",
    k: str = "",
    field: list[str] = Query([]),
    org: list[str] = Query([]),
    category: list[str] = Query([]),
    year: list[str] = Query([]),
    fold: str = "",
) -> HTMLResponse:
    service = service_of(request)
    selected = {"field": field, "org": org, "category": category, "year": year}
    context: dict = {
        "q": q,
        "view": "cells" if view == "cells" else "org",
        "fold": False,  # the same item's cells of several years as one result
        # Folding needs two years of tables; with one, its toggle would change nothing.
        "several_years": len(service.index.store.values["year"]) > 1,
        "selected": selected,
    }
    try:
        context["fold"] = parse_flag(fold, "fold")  # fold=1 from the page, fold=true too
        run = partial(search_folded, service) if context["fold"] else service.search
        # Checked even when blank: 600 spaces are refused like by the API, not shown as help.
        await service.prepare(check_query(q))
        filters = service.filters(field, org, category, parse_years(year))
        given = list(request.query_params.multi_items())
        store = service.index.store
        canonical = canonical_filter_params(store.values, store.aliases, given)
        if canonical != given:  # 課題, an alias: the facets tick and toggle the index's names
            return RedirectResponse(f"{request.url.path}?{urlencode(canonical)}", 307)
        k_value = parse_k(k, DEFAULT_PAGE_K)
        if q.strip():
            context["result"] = run(q, k=k_value, filters=filters, with_facets=True)
        elif filters:
            browse = partial(browse_folded, service) if context["fold"] else service.browse
            context["result"] = browse(filters)
    except FilterError as exc:
        return render(request, "search.html", status=422, error=str(exc), **context)
    return render(request, "search.html", **context)


@router.get("/cells/{cell_id}", response_class=HTMLResponse)
def cell_page(request: Request, cell_id: str) -> HTMLResponse:
    hit = cell_or_404(request, cell_id)
    service = service_of(request)
    # Only cells kb is confident about are presented as others' work; "nobody else wrote
    # about this" is an answer too, and the template says it.
    similar = [h for h in service.similar(cell_id, 5) if h.confident]
    related = service.related(cell_id, 5) if hit.chunk.field == Field.challenge else []
    timeline = timeline_or_404(request, cell_id)
    confident = [h for h in related if h.confident]
    return render(
        request, "cell.html", hit=hit, similar=similar, related=confident, timeline=timeline
    )


@router.get("/organisations", response_class=HTMLResponse)
def organisations_page(request: Request) -> HTMLResponse:
    return render(request, "organisations.html", organisations=organisations(request))


@router.get("/organisations/{name}", response_class=HTMLResponse)
def organisation_page(request: Request, name: str) -> Response:
    """An organisation's (or an agency's) items; an alias or another spelling of a name
    redirects to the page of what it names, as ``org=`` in a search resolves it."""
    store = service_of(request).index.store
    columns = browse.organisation_columns(store.all_columns, name)
    if columns:
        # An agency's list names each of its sheets, so the search page's facets tick
        # them and unticking one leaves the other (org=<agency> stayed whole).
        sheets = dict.fromkeys(v.organisation for v in columns)
        listing = f"/search?{urlencode([('org', sheet) for sheet in sheets])}"
        return render(request, "organisation.html", name=name, columns=columns, listing=listing)
    canonical = canonical_organisation(store.aliases, name)
    if canonical != name and browse.organisation_columns(store.all_columns, canonical):
        return RedirectResponse(f"/organisations/{quote(canonical)}", status_code=307)
    raise HTTPException(404, detail=f"団体「{name}」はありません")


@router.get("/table", response_class=HTMLResponse)
def table_page(request: Request, year: str = "") -> HTMLResponse:
    """The original grids, every year or the one ``year`` picks (a link per year above)."""
    store = service_of(request).index.store
    context: dict = {"years": sorted(store.values["year"], reverse=True), "year": None}
    try:
        context["year"] = parse_year(year)
    except FilterError as exc:
        return render(request, "table.html", status=422, error=str(exc), grids=[], **context)
    columns = [v for v in store.all_columns if context["year"] in (None, v.year)]
    if not columns:
        error = f"{context['year']}年度の表はありません"
        return render(request, "table.html", status=404, error=error, grids=[], **context)
    return render(request, "table.html", grids=browse.grids(columns), **context)


@router.get("/help", response_class=HTMLResponse)
def help_page(request: Request) -> HTMLResponse:
    return render(request, "help.html")


# --- themes ----------------------------------------------------------------------------


def _page_agenda(request: Request, year: str, field: list[str], n: str, council: str) -> Agenda:
    """The agenda for a page's GET parameters; FilterError for values kb does not know."""
    return agenda(
        request, parse_year(year), field or DEFAULT_FIELDS, parse_count(n), council or None
    )


def _download(agenda: Agenda, text: str, suffix: str, media_type: str) -> Response:
    """``text`` as a UTF-8 file download named 議題案-<year>.<suffix>."""
    name = f"議題案-{agenda.year}.{suffix}"
    disposition = (
        f"attachment; filename=\"agenda-{agenda.year}.{suffix}\"; filename*=UTF-8''{quote(name)}"
    )
    return Response(
        text.encode("utf-8"),
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )


@router.get("/themes", response_class=HTMLResponse)
def themes_page(
    request: Request,
    year: str = "",
    field: list[str] = Query([]),
    n: str = "",
    council: str = "",
) -> HTMLResponse:
    store = service_of(request).index.store
    context: dict = {
        "years": store.values["year"],
        "councils": council_names(store.all_columns),
        "selected": {
            "year": year,
            "field": field or list(DEFAULT_FIELDS),
            "n": n,
            "council": council,
        },
    }
    try:
        found = _page_agenda(request, year, field, n, council)
    except FilterError as exc:
        return render(request, "themes.html", status=422, error=str(exc), **context)
    query = urlencode(request.query_params.multi_items())
    return render(
        request, "themes.html", agenda=found, query=f"?{query}" if query else "", **context
    )


def _downloadable(request: Request, year: str, field: list[str], n: str, council: str) -> Agenda:
    try:
        return _page_agenda(request, year, field, n, council)
    except FilterError as exc:
        raise HTTPException(422, detail=str(exc)) from exc


@router.get("/themes.md")
def themes_markdown(
    request: Request,
    year: str = "",
    field: list[str] = Query([]),
    n: str = "",
    council: str = "",
) -> Response:
    found = _downloadable(request, year, field, n, council)
    return _download(found, render_markdown(found), "md", "text/markdown")


@router.get("/themes.csv")
def themes_csv(
    request: Request,
    year: str = "",
    field: list[str] = Query([]),
    n: str = "",
    council: str = "",
) -> Response:
    found = _downloadable(request, year, field, n, council)
    return _download(found, render_csv(found), "csv", "text/csv")
