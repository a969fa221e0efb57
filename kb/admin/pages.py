"""The secretariat's pages under ``/admin``: sign-in, upload with preview, build progress,
cell fixes, history with undo. Plain HTML forms, no script, so the app's strict
Content-Security-Policy holds; the build page refreshes itself with a meta refresh."""

from __future__ import annotations

import io
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from kb.admin.access import (
    SIGN_IN,
    Denied,
    Who,
    admin_of,
    check_csrf,
    form_text,
    read_form,
    require,
    who_is,
)
from kb.admin.actions import (
    ABSENT,
    HISTORY_SHOWN,
    apply_preview,
    base_of,
    checked_upload,
    corpus_cell,
    remove_table,
    restore_version,
    save_cell,
)
from kb.admin.changes import changed_pieces, counts, diff, edited_table
from kb.admin.sessions import LOGIN_COOKIE, SESSION_COOKIE, new_token, same_token
from kb.core.errors import InputError, KbError
from kb.corpus.tables import Corpus
from kb.search.highlight import as_html
from kb.sheets.export import wide_sheets
from kb.sheets.sheet import write_xlsx

router = APIRouter(include_in_schema=False)


def marked_change(before: str, after: str) -> tuple[Markup, Markup]:
    """The two texts of a changed cell as HTML: escaped, what was removed in ``<del>`` and
    what was written in ``<ins>`` (:func:`kb.admin.changes.changed_pieces`)."""
    old, new = changed_pieces(before, after)
    return as_html(old, "del"), as_html(new, "ins")


def _page(
    request: Request, template: str, who: Who | None, status: int = 200, **context
) -> HTMLResponse:
    return admin_of(request).templates.TemplateResponse(
        request, f"admin/{template}", {"who": who, **context}, status_code=status
    )


def _secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"


def _local_next(value: object) -> str:
    """Where to go after signing in: an admin page of this site, never another site."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/admin") and "//" not in text and "\\" not in text else "/admin"


LOCKED_MESSAGE = (
    "ログインに続けて失敗したため、この利用者名では15分間ログインできません。"
    "時間をおいてお試しください"
)
WRONG_MESSAGE = "利用者名かパスワードが違います"
LOST_MESSAGE = (
    "ログインの有効期限が切れていたため、さきほどの操作（反映・保存・戻すなど）は行われていません。"
    "ログインすると操作していた画面に戻ります。もう一度操作してください"
)


def _login_page(
    request: Request,
    status: int = 200,
    error: str = "",
    name: str = "",
    next_: str = "/admin",
    notice: str = "",
) -> Response:
    token = new_token()
    response = _page(
        request,
        "login.html",
        None,
        status,
        error=error,
        notice=notice,
        name=name,
        next=next_,
        login_csrf=token,
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
    if who_is(request):
        return RedirectResponse("/admin", status_code=303)
    lost = LOST_MESSAGE if request.query_params.get("lost") else ""
    return _login_page(request, next_=_local_next(request.query_params.get("next")), notice=lost)


@router.post(SIGN_IN)
async def login(request: Request) -> Response:
    admin = admin_of(request)
    form = await read_form(request)
    if not same_token(form_text(form, "csrf") or None, request.cookies.get(LOGIN_COOKIE, "")):
        raise Denied(403, "ログインの画面を開き直してから、もう一度ログインしてください")
    name, password = form_text(form, "name").strip(), form_text(form, "password")
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
    who = require(request)
    check_csrf(request, who, await read_form(request))
    admin_of(request).sessions.end(who.session_id)
    response = RedirectResponse(SIGN_IN, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/admin")
def home(request: Request) -> Response:
    who = require(request)
    admin = admin_of(request)
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
    return _page(request, "upload.html", require(request))


@router.post("/admin/upload")
async def upload(request: Request) -> Response:
    who, preview, (status, error) = await checked_upload(request)
    if preview is None:
        return _page(request, "upload.html", who, status, error=error)
    return _page(request, "preview.html", who, preview=preview, summary=counts(preview.changes))


@router.post("/admin/uploads/{preview_id}/apply")
async def apply_upload(request: Request, preview_id: str) -> Response:
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    confirmed = {kind for kind in ("year", "council") if form_text(form, f"confirm_{kind}")}
    boxes = {"year": "年度の確認の欄", "council": "会議の確認の欄"}
    _, job = await apply_preview(request, who, preview_id, confirmed, boxes)
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/admin/tables/{slug}.xlsx")
def table_download(request: Request, slug: str) -> Response:
    """The table as it is now, as the wide .xlsx ``kb export`` writes (with 列キー and the
    other kb rows): edited and uploaded again, only the cells edited change."""
    require(request)
    try:
        table = admin_of(request).history.current(slug)
    except KbError as exc:
        raise Denied(404, str(exc)) from None
    if table is None:
        raise Denied(404, f"表 {slug} はありません")
    out = io.BytesIO()
    write_xlsx(out, wide_sheets(table))
    name = quote(f"{table.year}年度_{table.council}.xlsx")
    disposition = f"attachment; filename=\"{slug}.xlsx\"; filename*=UTF-8''{name}"
    return Response(
        out.getvalue(), media_type=XLSX_TYPE, headers={"Content-Disposition": disposition}
    )


@router.get("/admin/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    who = require(request)
    job = admin_of(request).builder.get(job_id)
    if job is None:
        raise Denied(404, "この更新の記録はありません（サーバーを再起動すると消えます）")
    return _page(request, "job.html", who, job=job)


@router.get("/admin/cells/{cell_id}")
def cell_form(request: Request, cell_id: str) -> Response:
    who = require(request)
    _, chunk = corpus_cell(request, cell_id)
    return _page(request, "cell_edit.html", who, chunk=chunk, text=chunk.text)


@router.post("/admin/cells/{cell_id}/preview")
async def cell_preview(request: Request, cell_id: str) -> Response:
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    text = form_text(form, "text")
    corpus, chunk = await run_in_threadpool(corpus_cell, request, cell_id)
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
        base=admin_of(request).history.base(old.slug),
    )


@router.post("/admin/cells/{cell_id}")
async def cell_save(request: Request, cell_id: str) -> Response:
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    try:
        _, job = await save_cell(
            request, who, cell_id, form_text(form, "text"), form_text(form, "base") or None
        )
    except InputError as exc:
        raise Denied(422, str(exc)) from None
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


@router.get("/admin/history")
def history_page(request: Request) -> Response:
    who = require(request)
    return _page(
        request, "history.html", who, entries=admin_of(request).history.entries(HISTORY_SHOWN)
    )


def _confirm_page(request: Request, who: Who, slug: str, version: str | None) -> Response:
    """What restoring ``version`` (None: removing the table) would change, with the form
    that does it; the form carries the table's SHA-256 now, so a change made in between
    is refused (409) rather than undone unseen."""
    history = admin_of(request).history
    try:
        current = history.current(slug)
        target = history.version_table(slug, version) if version else None
    except KbError as exc:
        raise Denied(404, str(exc)) from None
    if current is None and target is None:
        raise Denied(404, f"表 {slug} はありません（既に消されています）")
    changes = diff(current, target)
    return _page(
        request,
        "confirm.html",
        who,
        slug=slug,
        version=version,
        table=current or target,
        changes=changes,
        summary=counts(changes),
        base=history.base(slug) or ABSENT,
    )


@router.get("/admin/tables/{slug}/restore")
def restore_confirm(request: Request, slug: str) -> Response:
    who = require(request)
    version = request.query_params.get("version", "")
    if not version:
        raise Denied(404, "戻す版（version）を指定してください")
    return _confirm_page(request, who, slug, version)


@router.get("/admin/tables/{slug}/remove")
def remove_confirm(request: Request, slug: str) -> Response:
    return _confirm_page(request, require(request), slug, None)


@router.post("/admin/tables/{slug}/restore")
async def restore_page(request: Request, slug: str) -> Response:
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    version, base = form_text(form, "version"), base_of(form_text(form, "base"))
    if base is False:  # not sent from the confirmation page: show it first
        return RedirectResponse(
            f"/admin/tables/{quote(slug)}/restore?version={quote(version)}", status_code=303
        )
    _, job = await restore_version(request, who, slug, version, base)
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)


@router.post("/admin/tables/{slug}/remove")
async def remove_page(request: Request, slug: str) -> Response:
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    base = base_of(form_text(form, "base"))
    if base is False:
        return RedirectResponse(f"/admin/tables/{quote(slug)}/remove", status_code=303)
    _, job = await remove_table(request, who, slug, base)
    return RedirectResponse(f"/admin/jobs/{job.id}", status_code=303)
