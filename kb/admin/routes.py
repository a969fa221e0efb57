"""The admin side put into the app: :func:`mount_admin` adds the pages and the API and the
shared state they use; :func:`body_limit` and :func:`too_large` are the admin routes' request
sizes for the app's body limit; :func:`admin_status` is what ``/api/status`` adds."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from kb.admin import api, pages, wording
from kb.admin.access import Admin, Denied, denied, error_page
from kb.admin.accounts import Accounts
from kb.admin.audit import History, local_time
from kb.admin.jobs import Builder
from kb.admin.sessions import Sessions, Throttle
from kb.admin.uploads import MAX_UPLOAD_BYTES, Previews, too_large_message
from kb.core.settings import Settings

ROUTERS = (pages.router, api.router)
UPLOAD_PATHS = ("/admin/upload", "/api/admin/tables")
EDIT_PREFIXES = ("/admin/cells/", "/api/admin/cells/")
UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # the file plus the form around it
EDIT_BODY_BYTES = 256 * 1024  # a 5,000-character cell, URL-encoded, with room to spare


def mount_admin(app: FastAPI, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the admin routes to ``app``. (Tests swap ``app.state.admin.throttle`` and
    ``sessions`` for ones with a fake clock.)"""
    history = History(settings.admin_dir, settings.corpus_dir)
    templates.env.filters["local_time"] = local_time
    templates.env.globals["marked_change"] = pages.marked_change
    for name in ("entry_title", "table_name", "version_name"):
        templates.env.globals[name] = getattr(wording, name)
    app.state.admin = Admin(
        settings=settings,
        templates=templates,
        accounts=Accounts(settings.admin_dir),
        history=history,
        previews=Previews(settings.admin_dir, history),
        builder=Builder(settings, lambda: app.state.service.embedder),
        sessions=Sessions(),
        throttle=Throttle(),
    )
    app.add_exception_handler(Denied, denied)
    for router in ROUTERS:
        app.include_router(router)


def admin_status(app: FastAPI) -> dict:
    """For ``/api/status``: index updates running, waiting and last finished."""
    return {"updates": app.state.admin.builder.status()}


def body_limit(path: str) -> int | None:
    """How many body bytes the admin route at ``path`` accepts; None for other routes."""
    if path in UPLOAD_PATHS:
        return UPLOAD_BODY_BYTES
    if path.startswith(EDIT_PREFIXES):
        return EDIT_BODY_BYTES
    return None


def too_large(request: Request) -> Response | None:
    """The admin answer to an upload over the limit (JSON for the API, the admin error page
    with a link back to the upload form otherwise); None for other routes."""
    path = request.url.path
    if path not in UPLOAD_PATHS:
        return None
    if path.startswith("/api/"):
        return JSONResponse({"error": too_large_message()}, status_code=413)
    return error_page(request, too_large_message(), 413, "表の部分だけを保存し直してください。")
