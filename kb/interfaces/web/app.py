"""The web UI and JSON API: one FastAPI app, thin views, HTML in ``web/templates``.

Every view asks :class:`~kb.search.service.SearchService` (held on ``app.state.service``) and hands
the result to a template or returns :meth:`Hit.as_dict` JSON, the same shape the CLI prints.
Pages use no JavaScript of their own: filters are links and forms, a cell's column opens
with ``<details>``, so the strict Content-Security-Policy costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb.apps.themes import DEFAULT_FIELDS, Agenda, build_agenda, render_csv, render_markdown
from kb.core.errors import FilterError
from kb.core.fields import FIELDS, Field
from kb.core.settings import WEB_DIR, Settings
from kb.corpus import browse
from kb.retrieval.store import Filters
from kb.search.highlight import pieces
from kb.search.service import FACET_DEPTH, MAX_K, MAX_QUERY_CHARS, Hit, Mode, SearchService

MAX_BODY_BYTES = 16 * 1024
# GET routes whose responses depend only on the build and the URL (not /api/status).
REMEMBERED_PATHS = (
    "/search",
    "/api/search",
    "/cells/",
    "/api/cells/",
    "/organisations",
    "/api/organisations",
    "/table",
    "/themes",
    "/api/themes",
)
DEFAULT_PAGE_K = 20
EXAMPLES = (
    "看護師不足",
    "人手が足りない",
    "ショートステイ",
    "停電のとき人工呼吸器の子はどうする",
    "マイサポートブック",
    "nurse shortage",
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI styles itself inline; scripts stay external everywhere, docs included.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def secure(response: Response, path: str = "") -> Response:
    """Add the security headers every response must carry, error pages included."""
    response.headers["Content-Security-Policy"] = DOCS_CSP if path.startswith("/docs") else CSP
    response.headers.update(SECURITY_HEADERS)
    return response


# --- template helpers ------------------------------------------------------------------


def highlight(text: str, terms: list[str]) -> Markup:
    """Escape first, then mark matched terms and keep line breaks."""
    html = "".join(
        f"<mark>{escape(p)}</mark>" if matched else str(escape(p))
        for p, matched in pieces(text, terms)
    )
    return Markup(html.replace("\n", "<br>"))


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


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    templates.env.filters["highlight"] = highlight
    templates.env.globals.update(
        toggled_url=toggled_url,
        replaced_url=replaced_url,
        FIELDS=FIELDS,
        examples=EXAMPLES,
        max_query=MAX_QUERY_CHARS,
        filter_labels={"field": {f.value: f.ja for f in FIELDS}},
        facet_depth=FACET_DEPTH,
    )
    return templates


# --- the app ---------------------------------------------------------------------------


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """The app over an opened index; pass ``service`` to share one already loaded."""
    app = FastAPI(
        title="kb 取組み検索 API",
        description="小児等在宅医療連絡会議の取組み進捗状況を検索する API",
        docs_url=None,
        redoc_url=None,
    )
    # The bundled Swagger UI (4.x, served offline) refuses to render a document labelled 3.1.
    app.openapi_version = "3.0.3"
    app.state.service = service or SearchService(settings or Settings.from_env())
    templates = _templates()
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    _mount_docs(app)

    @app.middleware("http")
    async def headers_and_limits(request: Request, call_next: Callable) -> Response:
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return secure(JSONResponse({"detail": "リクエストが大きすぎます"}, status_code=413))
        return secure(await _answer(request, call_next), request.url.path)

    # Positional-only, so a template variable may be called ``name`` (organisation.html).
    def page(
        request: Request, template: str, /, status: int = 200, **context: object
    ) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status)

    _add_error_handlers(app, page)
    _add_api(app)
    _add_pages(app, page)
    _add_themes(app, page)
    return app


async def _answer(request: Request, call_next: Callable) -> Response:
    """The app's response, or the same response kept from an earlier identical GET.

    Pages and API answers depend only on the loaded build and the URL, so a repeated
    request (a reload, a shared link, a colleague's same search) skips searching and
    rendering; :meth:`SearchService.remember` forgets them when a new build is loaded.
    """
    if request.method != "GET" or not request.url.path.startswith(REMEMBERED_PATHS):
        return await call_next(request)
    service = _service(request)
    key = ("response", request.url.path, request.url.query)
    kept = service.recall(key)
    if kept is not None:
        body, headers = kept
        return Response(body, headers=headers)
    response = await call_next(request)
    if response.status_code != 200:
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])
    headers = {
        k: v for k, v in response.headers.items() if k in ("content-type", "content-disposition")
    }
    service.remember(key, (body, headers))
    return Response(body, headers=headers)


def _service(request: Request) -> SearchService:
    return request.app.state.service


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _add_error_handlers(app: FastAPI, page: Callable) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request) or request.url.path.startswith(("/static", "/docs")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        message = "ページが見つかりません" if exc.status_code == 404 else str(exc.detail)
        return page(request, "error.html", status=exc.status_code, message=message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        if _is_api(request):
            return JSONResponse({"detail": errors}, status_code=422)
        names = "、".join(str(e["loc"][-1]) for e in errors)
        return page(
            request, "error.html", status=422, message=f"パラメータ {names} の値が正しくありません"
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        # Runs outside the middleware stack, so it sets the headers itself. A person in a
        # browser gets a page with a way on, not a line of JSON.
        message = "内部エラーが発生しました"
        if _is_api(request) or request.url.path.startswith(("/static", "/docs", "/openapi")):
            return secure(JSONResponse({"detail": message}, status_code=500))
        hint = "しばらくしてからもう一度お試しください。続くときは管理者にお知らせください。"
        return secure(page(request, "error.html", status=500, message=message, hint=hint))


def _mount_docs(app: FastAPI) -> None:
    """OpenAPI docs served from the installed swagger-ui-bundle: no CDN, works offline."""
    import swagger_ui_bundle

    app.mount(
        "/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse((WEB_DIR / "templates" / "docs.html").read_text(encoding="utf-8"))


# --- JSON API --------------------------------------------------------------------------


def _api_filters(
    service: SearchService, field: list[Field], org: list[str], category: list[str], year: list[int]
) -> Filters:
    return service.filters(
        fields=[f.value for f in field], organisations=org, categories=category, years=year
    )


def _unprocessable(exc: FilterError) -> HTTPException:
    return HTTPException(
        422, detail=[{"loc": ["query", exc.param], "msg": str(exc), "type": "value_error"}]
    )


def _add_api(app: FastAPI) -> None:
    @app.get("/api/search", summary="セルを検索する（kb search --json と同じ形）")
    def api_search(
        request: Request,
        q: str = Query("", max_length=MAX_QUERY_CHARS, description="検索語"),
        k: int = Query(10, ge=1, le=MAX_K, description="件数"),
        mode: Mode = Query(Mode.hybrid),
        field: list[Field] = Query([], description="欄（複数可）"),
        org: list[str] = Query([], description="団体名または略称（複数可）"),
        category: list[str] = Query([], description="課題区分（複数可）"),
        year: list[int] = Query([], description="年度（複数可）"),
    ) -> dict:
        service = _service(request)
        try:
            filters = _api_filters(service, field, org, category, year)
            hits = service.search(q, k=k, mode=mode, filters=filters).hits if q.strip() else []
        except FilterError as exc:
            raise _unprocessable(exc) from exc
        # A JSONResponse skips FastAPI's per-field re-encoding of plain dicts (a few ms).
        return JSONResponse({"query": q, "hits": [h.as_dict() for h in hits]})

    @app.get("/api/cells/{cell_id}", summary="セル1件と同じ列の他の欄")
    def api_cell(request: Request, cell_id: str) -> dict:
        return _cell_or_404(request, cell_id).as_dict()

    @app.get("/api/cells/{cell_id}/similar", summary="他の団体の似たセル")
    def api_similar(
        request: Request, cell_id: str, k: int = Query(5, ge=1, le=MAX_K)
    ) -> list[dict]:
        return _hits_about(request, cell_id, SearchService.similar, k)

    @app.get("/api/status", summary="読み込んでいる索引（作成日時・セル数・埋め込みモデル）")
    def api_status(request: Request) -> dict:
        manifest = _service(request).index.manifest
        return {
            "build_id": manifest["build_id"],
            "built_at": manifest["built_at"],
            "chunks": manifest["chunks"],
            "embedder": manifest["embedder"]["name"],
        }

    @app.get("/api/organisations", summary="団体の一覧")
    def api_organisations(request: Request) -> list[dict]:
        return _organisations(request)


def _organisations(request: Request) -> list[dict]:
    service = _service(request)
    return browse.organisation_list(service.index.corpus, service.index.aliases)


def _hits_about(request: Request, cell_id: str, find: Callable, k: int) -> list[dict]:
    """``find(service, cell_id, k)`` (similar or related cells) as JSON; 404 if no such cell."""
    _cell_or_404(request, cell_id)
    return [h.as_dict() for h in find(_service(request), cell_id, k)]


def _cell_or_404(request: Request, cell_id: str) -> Hit:
    try:
        return _service(request).cell(cell_id)
    except KeyError:
        raise HTTPException(404, detail=f"セル {cell_id} はありません") from None


# --- HTML pages ------------------------------------------------------------------------


def _page_k(raw: str) -> int:
    if not raw.strip():
        return DEFAULT_PAGE_K
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_K:
        raise FilterError(f"表示件数は 1〜{MAX_K} の数にしてください（{raw}）", param="k")
    return int(raw)


def _page_query(q: str) -> str:
    # Checked even when blank: 600 spaces are refused like by the API, not shown as help.
    if len(q) > MAX_QUERY_CHARS:
        raise FilterError(
            f"検索語が長すぎます（{len(q)}文字、{MAX_QUERY_CHARS}文字まで）", param="q"
        )
    return q


def _page_years(raw: list[str]) -> list[int]:
    if not all(y.strip().isdigit() for y in raw):
        raise FilterError(f"年度は数字で指定してください（{'、'.join(raw)}）", param="year")
    return [int(y) for y in raw]


def _add_pages(app: FastAPI, page: Callable) -> None:
    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/search")

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_page(
        request: Request,
        q: str = "",
        view: str = "org",
        k: str = "",
        field: list[str] = Query([]),
        org: list[str] = Query([]),
        category: list[str] = Query([]),
        year: list[str] = Query([]),
    ) -> HTMLResponse:
        service = _service(request)
        selected = {"field": field, "org": org, "category": category, "year": year}
        context: dict = {
            "q": q,
            "view": "cells" if view == "cells" else "org",
            "selected": selected,
        }
        try:
            filters = service.filters(field, org, category, _page_years(year))
            k_value = _page_k(k)
            if _page_query(q).strip():
                context["result"] = service.search(q, k=k_value, filters=filters, with_facets=True)
            elif filters:
                context["result"] = service.browse(filters)
        except FilterError as exc:
            return page(request, "search.html", status=422, error=str(exc), **context)
        return page(request, "search.html", **context)

    @app.get("/cells/{cell_id}", response_class=HTMLResponse, include_in_schema=False)
    def cell_page(request: Request, cell_id: str) -> HTMLResponse:
        hit = _cell_or_404(request, cell_id)
        similar = _service(request).similar(cell_id, 5)
        related = (
            _service(request).related(cell_id, 5) if hit.chunk.field == Field.challenge else []
        )
        return page(request, "cell.html", hit=hit, similar=similar, related=related)

    @app.get("/organisations", response_class=HTMLResponse, include_in_schema=False)
    def organisations_page(request: Request) -> HTMLResponse:
        return page(request, "organisations.html", organisations=_organisations(request))

    @app.get("/organisations/{name}", response_class=HTMLResponse, include_in_schema=False)
    def organisation_page(request: Request, name: str) -> HTMLResponse:
        columns = browse.organisation_columns(_service(request).index.corpus, name)
        if not columns:
            raise HTTPException(404, detail=f"団体「{name}」はありません")
        return page(request, "organisation.html", name=name, columns=columns)

    @app.get("/table", response_class=HTMLResponse, include_in_schema=False)
    def table_page(request: Request) -> HTMLResponse:
        return page(request, "table.html", grids=browse.grids(_service(request).index.corpus))

    @app.get("/help", response_class=HTMLResponse, include_in_schema=False)
    def help_page(request: Request) -> HTMLResponse:
        return page(request, "help.html")


# --- themes and cross-agency links -----------------------------------------------------


def _theme_count(raw: str) -> int | None:
    """The page's ``n`` (number of themes); blank means "let the data decide"."""
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        raise FilterError(f"テーマの数は数字で指定してください（{raw}）", param="n")
    return int(raw)


def _page_agenda(request: Request, year: str, field: list[str], n: str) -> Agenda:
    """The agenda for a page's GET parameters; FilterError for values kb does not know."""
    years = _page_years([year] if year.strip() else [])
    return _agenda(request, years[0] if years else None, field or DEFAULT_FIELDS, _theme_count(n))


def _agenda(
    request: Request, year: int | None, fields: list[str] | tuple[str, ...], n: int | None
) -> Agenda:
    """The agenda, computed once per build and parameters (clustering takes ~80 ms)."""
    service = _service(request)
    return service.remembered(
        ("themes", year, tuple(fields), n), lambda: build_agenda(service, year, fields, n)
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


def _add_themes(app: FastAPI, page: Callable) -> None:
    @app.get("/api/themes", summary="団体に共通するテーマ（kb themes --format json と同じ形）")
    def api_themes(
        request: Request,
        year: int | None = Query(None, description="年度（省略時は最新）"),
        field: list[str] = Query([], description="欄（複数可、all ですべて。既定は challenge）"),
        n: int | None = Query(None, ge=1, description="テーマの数（省略時は内容から決める）"),
    ) -> dict:
        try:
            agenda = _agenda(request, year, field or DEFAULT_FIELDS, n)
        except FilterError as exc:
            raise _unprocessable(exc) from exc
        return agenda.as_dict()

    @app.get("/api/cells/{cell_id}/related", summary="この課題に他の団体が取り組んでいること")
    def api_related(
        request: Request, cell_id: str, k: int = Query(5, ge=1, le=MAX_K)
    ) -> list[dict]:
        return _hits_about(request, cell_id, SearchService.related, k)

    @app.get("/themes", response_class=HTMLResponse, include_in_schema=False)
    def themes_page(
        request: Request, year: str = "", field: list[str] = Query([]), n: str = ""
    ) -> HTMLResponse:
        context: dict = {
            "years": _service(request).index.store.values["year"],
            "selected": {"year": year, "field": field or list(DEFAULT_FIELDS), "n": n},
        }
        try:
            agenda = _page_agenda(request, year, field, n)
        except FilterError as exc:
            return page(request, "themes.html", status=422, error=str(exc), **context)
        query = urlencode(request.query_params.multi_items())
        return page(
            request, "themes.html", agenda=agenda, query=f"?{query}" if query else "", **context
        )

    def downloadable(request: Request, year: str, field: list[str], n: str) -> Agenda:
        try:
            return _page_agenda(request, year, field, n)
        except FilterError as exc:
            raise HTTPException(422, detail=str(exc)) from exc

    @app.get("/themes.md", include_in_schema=False)
    def themes_markdown(
        request: Request, year: str = "", field: list[str] = Query([]), n: str = ""
    ) -> Response:
        agenda = downloadable(request, year, field, n)
        return _download(agenda, render_markdown(agenda), "md", "text/markdown")

    @app.get("/themes.csv", include_in_schema=False)
    def themes_csv(
        request: Request, year: str = "", field: list[str] = Query([]), n: str = ""
    ) -> Response:
        agenda = downloadable(request, year, field, n)
        # The BOM lets Excel on a Japanese PC open the file without garbling it.
        return _download(agenda, "\ufeff" + render_csv(agenda), "csv", "text/csv")
