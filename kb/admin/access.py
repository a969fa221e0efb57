"""Who is calling an admin route, and the refusals every admin route shares.

A caller is a bearer token (scripts) or a session cookie (browser). Nobody → :class:`Denied`
401, which the API answers as JSON and pages as a redirect to the sign-in form, before the
request body is even read, so an anonymous request changes nothing. A POST made with a
session cookie must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``) or gets 403; bearer-token calls cannot be forged by another site (a
browser never adds the header by itself), so they need none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb.admin.accounts import Accounts
from kb.admin.audit import History
from kb.admin.jobs import Builder
from kb.admin.sessions import SESSION_COOKIE, Session, Sessions, Throttle, same_token
from kb.admin.uploads import Previews
from kb.core.settings import Settings

SIGN_IN = "/admin/login"


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


def admin_of(request: Request) -> Admin:
    return request.app.state.admin


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def who_is(request: Request) -> Who | None:
    admin = admin_of(request)
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


def require(request: Request) -> Who:
    who = who_is(request)
    if who is None:
        raise Denied(401, "ログインが必要です")
    return who


def check_csrf(request: Request, who: Who, form: FormData | None = None) -> None:
    if who.session is None:
        return  # a bearer token
    given = request.headers.get("x-csrf-token") or (form.get("csrf") if form else None)
    if not same_token(given if isinstance(given, str) else None, who.csrf):
        raise Denied(
            403,
            "フォームの有効期限が切れたか、正しくない送信です。画面を開き直してやり直してください",
        )


async def read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=1, max_fields=20)
    except StarletteHTTPException as exc:  # a malformed multipart body
        raise Denied(400, "フォームの形式が正しくありません") from exc


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def denied(request: Request, exc: Denied) -> Response:
    if is_api(request):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
    if exc.status == 401:
        if request.method in ("GET", "HEAD"):
            return RedirectResponse(
                f"{SIGN_IN}?next={quote(_here(request), safe='/')}", status_code=303
            )
        # A form sent after the session ended (a restart, 8 hours idle): signing in leads
        # back to the page the form was on (a POST-only address would answer 405), and
        # the sign-in page says the action was not done.
        return RedirectResponse(
            f"{SIGN_IN}?next={quote(_form_page(request), safe='/')}&lost=1", status_code=303
        )
    return error_page(request, exc.message, exc.status)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _form_page(request: Request) -> str:
    """The admin page a form was sent from (its Referer, when it is one of this site's
    admin pages), else the admin home."""
    referer = urlsplit(request.headers.get("referer", ""))
    local = referer.netloc in ("", request.url.netloc) and referer.path.startswith("/admin")
    if not local or referer.path == SIGN_IN:
        return "/admin"
    return referer.path + (f"?{referer.query}" if referer.query else "")


_BACK = (
    (("/admin/upload",), ("/admin/upload", "表のアップロードに戻る")),
    (("/admin/tables/", "/admin/history"), ("/admin/history", "変更の履歴に戻る")),
)


def error_page(request: Request, message: str, status: int, hint: str = "") -> Response:
    """An admin page's refusal: the admin layout, the message and a link back to the page
    the action started from (the upload form for uploads), never the public search page."""
    path = request.url.path
    back = next(
        (link for prefixes, link in _BACK if path.startswith(prefixes)),
        ("/admin", "事務局トップに戻る"),
    )
    context = {"who": who_is(request), "message": message, "hint": hint, "back": back}
    return admin_of(request).templates.TemplateResponse(
        request, "admin/error.html", context, status_code=status
    )
