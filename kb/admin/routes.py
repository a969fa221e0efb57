"""The admin pages (``/admin/…``) and API (``/api/admin/…``), added to the app by
:func:`mount_admin`.

Every route first asks who is calling: a bearer token (scripts) or a session cookie
(browser). Nobody → 401 JSON for the API, a redirect to the sign-in page for pages, before
the request body is even read, so an anonymous request changes nothing. A POST made with a
session cookie must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``) or gets 403; bearer-token calls cannot be forged by another site (a
browser never adds the header by itself), so they need none. Pages are plain HTML forms:
no script, so the app's strict Content-Security-Policy holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb.admin.accounts import Accounts
from kb.admin.audit import Conflict, History
from kb.admin.changes import counts, diff, edited_table
from kb.admin.jobs import Builder, Job
from kb.admin.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    Throttle,
    new_token,
    same_token,
)
from kb.admin.uploads import (
    MAX_UPLOAD_BYTES,
    Preview,
    Previews,
    TooLarge,
    display_name,
    too_large_message,
)
from kb.core.errors import InputError, KbError
from kb.core.settings import Settings
from kb.corpus.tables import Corpus, table_text
from kb.sheets.ingest import TableMeta

UPLOAD_PATHS = ("/admin/upload", "/api/admin/tables")
EDIT_PREFIXES = ("/admin/cells/", "/api/admin/cells/")
UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # the file plus the form around it
EDIT_BODY_BYTES = 256 * 1024  # a 5,000-character cell, URL-encoded, with room to spare
SIGN_IN = "/admin/login"
HISTORY_SHOWN = 100
JAPAN = timezone(timedelta(hours=9), "JST")  # no tz database needed; Japan has no DST

router = APIRouter(include_in_schema=False)


@dataclass
class Admin:
    """What the admin routes share, on ``app.state.admin``."""

    settings: Settings
    templates: Jinja2Templates
    accounts: Accounts
    history: History
    previews: Previews
    builder: Builder
    sessions: Sessions
    throttle: Throttle


@dataclass
class Who:
    user: str
    session: Session | None = None
    session_id: str | None = None
    csrf: str = field(init=False)

    def __post_init__(self) -> None:
        self.csrf = self.session.csrf if self.session else ""


class Denied(Exception):
    """An admin request refused with ``status`` and a Japanese ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def mount_admin(app: FastAPI, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the admin routes to ``app``. (Tests swap ``app.state.admin.throttle`` and
    ``sessions`` for ones with a fake clock.)"""
    history = History(settings.admin_dir, settings.corpus_dir)
    templates.env.filters["local_time"] = local_time
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
    app.add_exception_handler(Denied, _denied)
    app.include_router(router)


def local_time(stamp: str | None) -> str:
    """An ISO time from the log or a job as office staff read it: Japan time, to the minute."""
    if not stamp:
        return ""
    return datetime.fromisoformat(stamp).astimezone(JAPAN).strftime("%Y年%m月%d日 %H:%M")


def admin_status(app: FastAPI) -> dict:
    """For ``/api/status``: index updates running, waiting and last finished."""
    return {"updates": app.state.admin.builder.status()}


def refuse_body(request: Request, default: int) -> Response | None:
    """The response for a request body the server will not read (413 past the route's
    limit, 411 for an upload of unstated length), or None to go on."""
    path = request.url.path
    length = request.headers.get("content-length")
    upload = path in UPLOAD_PATHS
    limit = (
        UPLOAD_BODY_BYTES
        if upload
        else EDIT_BODY_BYTES
        if path.startswith(EDIT_PREFIXES)
        else default
    )
    if upload and request.method == "POST" and length is None:
        return JSONResponse(
            {"error": "ファイルの大きさ（Content-Length）が必要です"}, status_code=411
        )
    if length and (not length.isdigit() or int(length) > limit):
        if not upload:
            return JSONResponse({"detail": "リクエストが大きすぎます"}, status_code=413)
        if path.startswith("/api/"):
            return JSONResponse({"error": too_large_message()}, status_code=413)
        return _admin(request).templates.TemplateResponse(
            request,
            "error.html",
            {"message": too_large_message(), "hint": "表の部分だけを保存し直してください。"},
            status_code=413,
        )
    return None


# --- who is calling --------------------------------------------------------------------


def _admin(request: Request) -> Admin:
    return request.app.state.admin


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _who(request: Request) -> Who | None:
    admin = _admin(request)
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        user = admin.accounts.user_for_token(token) if scheme.lower() == "bearer" else None
        return Who(user) if user else None
    session_id = request.cookies.get(SESSION_COOKIE)
    session = admin.sessions.get(session_id)
    if session is None or not admin.accounts.exists(session.user):
        return None
    return Who(session.user, session, session_id)


def _require(request: Request) -> Who:
    who = _who(request)
    if who is None:
        raise Denied(401, "ログインが必要です")
    return who


def _check_csrf(request: Request, who: Who, form: FormData | None = None) -> None:
    if who.session is None:
        return  # a bearer token
    given = request.headers.get("x-csrf-token") or (form.get("csrf") if form else None)
    if not same_token(given if isinstance(given, str) else None, who.csrf):
        raise Denied(
            403,
            "フォームの有効期限が切れたか、正しくない送信です。画面を開き直してやり直してください",
        )


async def _form(request: Request) -> FormData:
    try:
        return await request.form(max_files=1, max_fields=20)
    except StarletteHTTPException as exc:  # a malformed multipart body
        raise Denied(400, "フォームの形式が正しくありません") from exc


async def _denied(request: Request, exc: Denied) -> Response:
    if _is_api(request):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
    if exc.status == 401:
        return RedirectResponse(f"{SIGN_IN}?next={quote(request.url.path)}", status_code=303)
    return _admin(request).templates.TemplateResponse(
        request, "error.html", {"message": exc.message, "hint": " "}, status_code=exc.status
    )


def _page(
    request: Request, template: str, who: Who | None, status: int = 200, **context
) -> HTMLResponse:
    return _admin(request).templates.TemplateResponse(
        request, f"admin/{template}", {"who": who, **context}, status_code=status
    )


def _secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"


def _local_next(value: object) -> str:
    """Where to go after signing in: an admin page of this site, never another site."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/admin") and "//" not in text and "\\" not in text else "/admin"


# --- sign-in ---------------------------------------------------------------------------

LOCKED_MESSAGE = (
    "ログインに続けて失敗したため、この利用者名では15分間ログインできません。"
    "時間をおいてお試しください"
)
WRONG_MESSAGE = "利用者名かパスワードが違います"


def _login_page(
    request: Request, status: int = 200, error: str = "", name: str = "", next_: str = "/admin"
) -> Response:
    token = new_token()
    response = _page(
        request, "login.html", None, status, error=error, name=name, next=next_, login_csrf=token
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure_cookie(request),
        path=SIGN_IN,
    )
    return response


@router.get(SIGN_IN)
def login_form(request: Request) -> Response:
    if _who(request):
        return RedirectResponse("/admin", status_code=303)
    return _login_page(request, next_=_local_next(request.query_params.get("next")))


@router.post(SIGN_IN)
async def login(request: Request) -> Response:
    admin = _admin(request)
    form = await _form(request)
    if not same_token(_text(form, "csrf") or None, request.cookies.get(LOGIN_COOKIE, "")):
        raise Denied(403, "ログインの画面を開き直してから、もう一度ログインしてください")
    name, password = _text(form, "name").strip(), _text(form, "password")
    next_ = _local_next(form.get("next"))
    if admin.throttle.locked(name):
        return _login_page(request, 429, LOCKED_MESSAGE, name, next_)
    if not name or not await run_in_threadpool(admin.accounts.check_password, name, password):
        admin.throttle.failed(name)
        if admin.throttle.locked(name):
            return _login_page(request, 429, LOCKED_MESSAGE, name, next_)
        return _login_page(request, 401, WRONG_MESSAGE, name, next_)
    admin.throttle.succeeded(name)
    response = RedirectResponse(next_, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        admin.sessions.start(name),
        httponly=True,
        samesite="strict",
        secure=_secure_cookie(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path=SIGN_IN)
    return response


@router.post("/admin/logout")
async def logout(request: Request) -> Response:
    who = _require(request)
    _check_csrf(request, who, await _form(request))
    _admin(request).sessions.end(who.session_id)
    response = RedirectResponse(SIGN_IN, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# --- pages -----------------------------------------------------------------------------


@router.get("/admin")
def home(request: Request) -> Response:
    who = _require(request)
    admin = _admin(request)
    return _page(
        request,
        "home.html",
        who,
        status_of=admin.builder.status(),
        entries=admin.history.entries(5),
        tables=Corpus.load(admin.settings.corpus_dir).tables,
    )


@router.get("/admin/upload")
def upload_form(request: Request) -> Response:
    return _page(request, "upload.html", _require(request))


async def _uploaded(request: Request, who: Who, form: FormData) -> Preview:
    """The preview of the form's upload; InputError / TooLarge for what cannot be used."""
    admin = _admin(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InputError("ファイル（file）を選んでください")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    meta = TableMeta(
        year=_year(_text(form, "year")), council=_text(form, "council").strip()[:200] or None
    )
    corpus = await run_in_threadpool(Corpus.load, admin.settings.corpus_dir)
    return await run_in_threadpool(
        admin.previews.create, data, display_name(upload.filename), meta, corpus, who.user
    )


def _year(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1900 <= int(raw) <= 2100:
        raise InputError(f"年度（year）は西暦の数字で指定してください（例: 2018）「{raw[:20]}」")
    return int(raw)


async def _checked_upload(request: Request) -> tuple[Who, Preview | None, tuple[int, str]]:
    """(caller, preview, "") of an upload form, or (caller, None, (status, error))."""
    who = _require(request)
    form = await _form(request)
    _check_csrf(request, who, form)
    try:
        return who, await _uploaded(request, who, form), (200, "")
    except TooLarge as exc:
        return who, None, (413, str(exc))
    except InputError as exc:
        return who, None, (422, str(exc))


@router.post("/admin/upload")
async def upload(request: Request) -> Response:
    who, preview, (status, error) = await _checked_upload(request)
    if preview is None:
        return _page(request, "upload.html", who, status, error=error)
    return _page(request, "preview.html", who, preview=preview, summary=counts(preview.changes))


def _start(request: Request, entry: dict, reason: str, who: Who) -> Job:
    return _admin(request).builder.submit(f"{reason} {entry['table']}", who.user)


async def _apply_upload(request: Request, who: Who, preview_id: str) -> tuple[dict, Job]:
    try:
        entry = await run_in_threadpool(_admin(request).previews.apply, preview_id, who.user)
    except KeyError:
        raise Denied(
            404, "この確認画面は期限切れか、既に反映されています。もう一度アップロードしてください"
        ) from None
    except Conflict as exc:
        raise Denied(409, str(exc)) from None
    return entry, _start(request, entry, "アップロード", who)


@router.post("/admin/uploads/{preview_id}/apply")
async def apply_upload(request: Request, preview_id: str) -> Response:
    who = _require(request)
    _check_csrf(request, who, await _form(request))
    _, job = await _apply_upload(request, who, preview_id)
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


@router.get("/admin/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    who = _require(request)
    job = _admin(request).builder.get(job_id)
    if job is None:
        raise Denied(404, "この更新の記録はありません（サーバーを再起動すると消えます）")
    return _page(request, "job.html", who, job=job)


def _corpus_cell(request: Request, cell_id: str):
    """(the corpus as it is now, the cell); Denied 404 for an unknown cell."""
    corpus = Corpus.load(_admin(request).settings.corpus_dir)
    try:
        return corpus, corpus.chunk(cell_id)
    except KeyError:
        raise Denied(404, f"セル {cell_id} はありません") from None


def _cell_change(request: Request, cell_id: str, text: str):
    """(table, edited table) for a cell edit; Denied 404 for an unknown cell."""
    corpus, _ = _corpus_cell(request, cell_id)
    return edited_table(corpus, cell_id, text)


@router.get("/admin/cells/{cell_id}")
def cell_form(request: Request, cell_id: str) -> Response:
    who = _require(request)
    _, chunk = _corpus_cell(request, cell_id)
    return _page(request, "cell_edit.html", who, chunk=chunk, text=chunk.text)


@router.post("/admin/cells/{cell_id}/preview")
async def cell_preview(request: Request, cell_id: str) -> Response:
    who = _require(request)
    form = await _form(request)
    _check_csrf(request, who, form)
    text = _text(form, "text")
    corpus, chunk = await run_in_threadpool(_corpus_cell, request, cell_id)
    try:
        old, new = edited_table(corpus, cell_id, text)
    except InputError as exc:
        return _page(request, "cell_edit.html", who, 422, chunk=chunk, text=text, error=str(exc))
    return _page(
        request,
        "cell_edit.html",
        who,
        chunk=chunk,
        text=text,
        changes=diff(old, new),
        base=_admin(request).history.base(old.slug),
    )


async def _save_cell(
    request: Request, who: Who, cell_id: str, text: str, base: str | None
) -> tuple[dict, Job]:
    admin = _admin(request)
    old, new = await run_in_threadpool(_cell_change, request, cell_id, text)
    try:
        entry = await run_in_threadpool(
            lambda: admin.history.write(
                table_text(new).encode("utf-8"),
                old.slug,
                user=who.user,
                action="edit",
                expected_base=base if base is not None else admin.history.base(old.slug),
                extra={"cell": cell_id},
            )
        )
    except Conflict as exc:
        raise Denied(409, str(exc)) from None
    return entry, _start(request, entry, f"修正 {cell_id}", who)


@router.post("/admin/cells/{cell_id}")
async def cell_save(request: Request, cell_id: str) -> Response:
    who = _require(request)
    form = await _form(request)
    _check_csrf(request, who, form)
    try:
        _, job = await _save_cell(
            request, who, cell_id, _text(form, "text"), _text(form, "base") or None
        )
    except InputError as exc:
        raise Denied(422, str(exc)) from None
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


@router.get("/admin/history")
def history_page(request: Request) -> Response:
    who = _require(request)
    return _page(
        request, "history.html", who, entries=_admin(request).history.entries(HISTORY_SHOWN)
    )


async def _restore(request: Request, who: Who, slug: str, version: str) -> tuple[dict, Job]:
    try:
        entry = await run_in_threadpool(_admin(request).history.restore, slug, version, who.user)
    except KbError as exc:
        raise Denied(404, str(exc)) from None
    return entry, _start(request, entry, "復元", who)


@router.post("/admin/tables/{slug}/restore")
async def restore_page(request: Request, slug: str) -> Response:
    who = _require(request)
    form = await _form(request)
    _check_csrf(request, who, form)
    _, job = await _restore(request, who, slug, _text(form, "version"))
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


# --- API -------------------------------------------------------------------------------


def _accepted(entry: dict, job: Job) -> JSONResponse:
    summary = {k: entry[k] for k in ("table", "added", "changed", "removed", "after_version")}
    return JSONResponse({**summary, "job": job.as_dict()}, status_code=202)


@router.post("/api/admin/tables")
async def api_upload(request: Request) -> Response:
    _, preview, (status, error) = await _checked_upload(request)
    if preview is None:
        return JSONResponse({"error": error}, status_code=status)
    return JSONResponse(preview.as_dict())


@router.post("/api/admin/tables/{preview_id}/apply")
async def api_apply(request: Request, preview_id: str) -> Response:
    who = _require(request)
    _check_csrf(request, who)
    return _accepted(*await _apply_upload(request, who, preview_id))


@router.get("/api/admin/jobs/{job_id}")
def api_job(request: Request, job_id: str) -> Response:
    _require(request)
    job = _admin(request).builder.get(job_id)
    if job is None:
        raise Denied(404, f"更新 {job_id} の記録はありません")
    return JSONResponse(job.as_dict())


@router.get("/api/admin/history")
def api_history(request: Request) -> Response:
    _require(request)
    return JSONResponse(_admin(request).history.entries(HISTORY_SHOWN))


@router.get("/api/admin/tables/{slug}/versions")
def api_versions(request: Request, slug: str) -> Response:
    _require(request)
    try:
        return JSONResponse(_admin(request).history.versions(slug))
    except KbError as exc:
        raise Denied(404, str(exc)) from None


@router.post("/api/admin/tables/{slug}/versions/{version}/restore")
async def api_restore(request: Request, slug: str, version: str) -> Response:
    who = _require(request)
    _check_csrf(request, who)
    return _accepted(*await _restore(request, who, slug, version))


@router.post("/api/admin/cells/{cell_id}")
async def api_cell(request: Request, cell_id: str) -> Response:
    """JSON body ``{"text": …, "preview": false}``: preview (200, the changed cells) or
    save (202, the build job)."""
    who = _require(request)
    _check_csrf(request, who)
    try:
        body = await request.json()
    except ValueError:
        raise Denied(422, '本文は {"text": "…"} の JSON にしてください') from None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise Denied(422, "text（セルの新しい内容）を文字列で指定してください")
    try:
        if body.get("preview"):
            old, new = await run_in_threadpool(_cell_change, request, cell_id, text)
            return JSONResponse({"cells": [c.as_dict() for c in diff(old, new)]})
        return _accepted(*await _save_cell(request, who, cell_id, text, None))
    except InputError as exc:
        raise Denied(422, str(exc)) from None
