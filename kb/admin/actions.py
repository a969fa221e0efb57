"""What the admin pages and API both do: read an upload into a preview, apply it, save a
cell, restore a version, and start the build that follows. Blocking work runs in the
thread pool, so the event loop keeps serving searches."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from kb.admin.access import Denied, Who, admin_of, check_csrf, form_text, read_form, require
from kb.admin.audit import Conflict
from kb.admin.changes import edited_table
from kb.admin.jobs import Job
from kb.admin.uploads import (
    API_ASK,
    FORM_ASK,
    MAX_UPLOAD_BYTES,
    Preview,
    TooLarge,
    Unchanged,
    Unconfirmed,
    display_name,
)
from kb.admin.wording import entry_title
from kb.core.errors import InputError, KbError
from kb.corpus.tables import Corpus, table_text
from kb.sheets.ingest import YEAR_FORMS, Ask, TableMeta, parse_year

HISTORY_SHOWN = 100


async def uploaded(request: Request, who: Who, form: FormData) -> Preview:
    """The preview of the form's upload; InputError / TooLarge for what cannot be used."""
    admin = admin_of(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InputError("ファイル（file）を選んでください")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    ask = API_ASK if request.url.path.startswith("/api/") else FORM_ASK
    meta = TableMeta(
        year=form_year(form_text(form, "year"), ask),
        council=form_text(form, "council").strip()[:200] or None,
    )
    corpus = await run_in_threadpool(Corpus.load, admin.settings.corpus_dir)
    return await run_in_threadpool(
        admin.previews.create, data, display_name(upload.filename), meta, corpus, who.user, ask
    )


def form_year(raw: str, ask: Ask) -> int | None:
    """The year typed in the upload form's 年度 field (the API's ``year``), written as a
    sheet's 年度 row may be (2018, ２０１８, 平成30, H30 …); None when left blank. A value
    that is no year is refused, asking as ``ask`` does (the form's field, or the API's)."""
    raw = raw.strip()
    if not raw:
        return None
    year = parse_year(raw)
    if year is None or not 1900 <= year <= 2100:
        raise InputError(
            f"年度「{raw[:20]}」を読み取れません（書き方の例: {YEAR_FORMS}）。{ask.year}"
        )
    return year


async def checked_upload(request: Request) -> tuple[Who, Preview | None, tuple[int, str]]:
    """(caller, preview, "") of an upload form, or (caller, None, (status, error))."""
    who = require(request)
    form = await read_form(request)
    check_csrf(request, who, form)
    try:
        return who, await uploaded(request, who, form), (200, "")
    except TooLarge as exc:
        return who, None, (413, str(exc))
    except InputError as exc:
        return who, None, (422, str(exc))


def start_build(request: Request, entry: dict, who: Who) -> Job:
    """The build after the change ``entry`` logged, named by what it did, in words."""
    return admin_of(request).builder.submit(entry_title(entry), who.user)


_CHECK = {"year": "この年度で正しいこと", "council": "会議名が正しく、新しい会議であること"}


async def apply_preview(
    request: Request, who: Who, preview_id: str, confirmed: set[str], boxes: dict[str, str]
) -> tuple[dict, Job]:
    """Apply an upload's preview and start the build; ``confirmed``: the warnings ("year",
    "council") the user confirmed; ``boxes`` names the box to tick for each, as the
    caller's form calls it."""
    try:
        entry = await run_in_threadpool(
            admin_of(request).previews.apply,
            preview_id,
            who.user,
            "year" in confirmed,
            "council" in confirmed,
        )
    except Unconfirmed as exc:
        raise Denied(
            422,
            f"{exc}。{_CHECK[exc.box]}を確かめたうえで、{boxes[exc.box]}に印を付けてください",
        ) from None
    except Unchanged as exc:
        raise Denied(409, str(exc)) from None
    except KeyError:
        raise Denied(
            404, "この確認画面は期限切れか、既に反映されています。もう一度アップロードしてください"
        ) from None
    except Conflict as exc:
        raise Denied(409, str(exc)) from None
    return entry, start_build(request, entry, who)


def corpus_cell(request: Request, cell_id: str):
    """(the corpus as it is now, the cell); Denied 404 for an unknown cell."""
    corpus = Corpus.load(admin_of(request).settings.corpus_dir)
    try:
        return corpus, corpus.chunk(cell_id)
    except KeyError:
        raise Denied(404, f"セル {cell_id} はありません") from None


def cell_change(request: Request, cell_id: str, text: str):
    """(table, edited table) for a cell edit; Denied 404 for an unknown cell."""
    corpus, _ = corpus_cell(request, cell_id)
    return edited_table(corpus, cell_id, text)


async def save_cell(
    request: Request, who: Who, cell_id: str, text: str, base: str | None
) -> tuple[dict, Job]:
    admin = admin_of(request)
    old, new = await run_in_threadpool(cell_change, request, cell_id, text)
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
    return entry, start_build(request, entry, who)


async def restore_version(
    request: Request, who: Who, slug: str, version: str, base: str | bool | None = False
) -> tuple[dict, Job]:
    """Put a kept version back; ``base``: the table's SHA-256 when the change was confirmed
    (None: it did not exist; False: no check), 409 if it has changed since."""
    history = admin_of(request).history
    entry = await _changed(lambda: history.restore(slug, version, who.user, base))
    return entry, start_build(request, entry, who)


async def remove_table(
    request: Request, who: Who, slug: str, base: str | bool | None = False
) -> tuple[dict, Job]:
    """Take a table out (what undoes its first upload), then rebuild; ``base`` as above."""
    history = admin_of(request).history
    entry = await _changed(lambda: history.remove(slug, who.user, base))
    return entry, start_build(request, entry, who)


async def _changed(change) -> dict:
    """Run a change to a table in the thread pool: Denied 409 if the table moved on or
    the change would break another table, 404 for an unknown table or version."""
    try:
        return await run_in_threadpool(change)
    except Conflict as exc:
        raise Denied(409, str(exc)) from None
    except KbError as exc:
        raise Denied(404, str(exc)) from None


ABSENT = "absent"  # a form's base for a table that does not exist


def base_of(value: object) -> str | bool | None:
    """A confirmed base from a form field or JSON: its SHA-256, None for "the table did not
    exist" (``absent`` / JSON null), False when not given."""
    if value is None or value == ABSENT:
        return None
    return value if isinstance(value, str) and value else False
