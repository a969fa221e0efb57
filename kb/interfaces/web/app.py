"""The web app: one FastAPI app with the JSON API and the HTML pages as two routers.

Every view asks :class:`~kb.search.service.SearchService` (held on ``app.state.service``);
:mod:`.api` returns :meth:`Hit.as_dict` JSON, the same shape the CLI prints, and :mod:`.pages`
renders the templates packaged in ``templates/``. This module puts them together: security
headers, the request size limit, the memo of whole responses, error pages, logging.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from kb.admin import routes as admin
from kb.core.settings import Settings
from kb.interfaces.web import api, pages
from kb.interfaces.web.answers import Answers
from kb.interfaces.web.bodylimit import BodyLimit
from kb.interfaces.web.head import HeadAsGet
from kb.search.service import SearchService

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


def _encoded(policy: str) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (name.lower().encode(), value.encode())
        for name, value in {"Content-Security-Policy": policy, **SECURITY_HEADERS}.items()
    )


# Encoded once: every response carries one of the two.
_HEADERS, _DOCS_HEADERS = _encoded(CSP), _encoded(DOCS_CSP)


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The security headers every response to ``path`` must carry, error pages included."""
    return _DOCS_HEADERS if path.startswith("/docs") else _HEADERS


def secure(response: Response, path: str = "") -> Response:
    """``response`` with :func:`security_headers` (for answers made outside the middleware)."""
    response.raw_headers.extend(security_headers(path))
    return response


def create_app(
    settings: Settings | None = None,
    service: SearchService | None = None,
    log_requests: bool = False,
) -> FastAPI:
    """The app over an opened index; pass ``service`` to share one already loaded.
    ``log_requests`` writes one line per request to stderr (method, path, status, ms)."""
    app = FastAPI(
        title="kb 取組み検索 API",
        description="小児等在宅医療連絡会議の取組み進捗状況を検索する API",
        docs_url=None,
        redoc_url=None,
    )
    # The bundled Swagger UI (4.x, served offline) refuses to render a document labelled 3.1.
    app.openapi_version = "3.0.3"
    app.state.service = service or SearchService(settings or Settings.from_env())
    app.state.templates = pages.templates()
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    _mount_docs(app)

    # Innermost: routes see a HEAD as its GET; Answers still logs it as HEAD.
    app.add_middleware(HeadAsGet)
    app.add_middleware(
        Answers,
        headers_for=security_headers,
        remembered=REMEMBERED_PATHS,
        memo_of=lambda: app.state.service.index.memo,
        log_requests=log_requests,
    )
    # Outermost, so no route (nor the answer memo) sees a request before its body is counted.
    app.add_middleware(BodyLimit, limit_of=_body_limit, refuse=_too_large)
    _add_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    admin.mount_admin(app, app.state.templates, app.state.service.settings)
    return app


def _body_limit(path: str) -> int:
    """Bytes of body the route at ``path`` accepts: an admin upload or edit its own,
    everything else :data:`MAX_BODY_BYTES`."""
    return admin.body_limit(path) or MAX_BODY_BYTES


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request whose body is over its route's limit."""
    response = admin.too_large(Request(scope)) or JSONResponse(
        {"detail": "リクエストが大きすぎます"}, status_code=413
    )
    await secure(response, scope["path"])(scope, receive, send)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _allowing_head(headers: Mapping[str, str]) -> dict[str, str]:
    """An error's ``headers`` with HEAD in ``Allow`` wherever GET is (:mod:`.head`
    answers it, though routes declare only GET)."""
    headers = dict(headers)
    allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
    if "GET" in allowed and "HEAD" not in allowed:
        headers["Allow"] = ", ".join([*allowed, "HEAD"])
    return headers


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = _allowing_head(exc.headers or {})
        message, hint = exc.detail, None  # a 422's detail is a list of errors
        if exc.status_code == 405:
            allowed = headers.get("Allow", "GET, HEAD")
            message = f"{request.method} はこの URL では受け付けていません（使えるのは {allowed}）"
            hint = "ページはブラウザーで開いてください。API の使い方は /docs にあります。"
        if _is_api(request) and exc.status_code == 404 and exc.detail == "Not Found":
            message = f"API に {request.url.path} はありません（一覧は /docs）"  # no such route
        if _is_api(request) or request.url.path.startswith(("/static", "/docs")):
            return JSONResponse({"detail": message}, status_code=exc.status_code, headers=headers)
        detail = None
        if exc.status_code == 404:
            # A route's own sentence names what is missing (セル … はありません); a URL no
            # route takes has only Starlette's "Not Found".
            detail = None if exc.detail == "Not Found" else str(exc.detail)
            message = "ページが見つかりません"
        page = pages.render(
            request,
            "error.html",
            status=exc.status_code,
            message=str(message),
            hint=hint,
            detail=detail,
            not_found=exc.status_code == 404,
        )
        page.headers.update(headers)
        return page

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        if _is_api(request):
            return JSONResponse({"detail": errors}, status_code=422)
        names = "、".join(str(e["loc"][-1]) for e in errors)
        return pages.render(
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
        return secure(pages.render(request, "error.html", status=500, message=message, hint=hint))


def _mount_docs(app: FastAPI) -> None:
    """OpenAPI docs served from the installed swagger-ui-bundle: no CDN, works offline."""
    import swagger_ui_bundle

    app.mount(
        "/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse((pages.TEMPLATES_DIR / "docs.html").read_text(encoding="utf-8"))
