"""The admin JSON API under ``/api/admin`` (bearer token or session + CSRF header); errors
are ``{"error": "<one Japanese line>"}``."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from kb.admin.access import Denied, admin_of, check_csrf, require
from kb.admin.actions import (
    HISTORY_SHOWN,
    apply_preview,
    base_of,
    cell_change,
    checked_upload,
    remove_table,
    restore_version,
    save_cell,
)
from kb.admin.changes import diff
from kb.admin.jobs import Job
from kb.core.errors import InputError, KbError

router = APIRouter(include_in_schema=False)


def _accepted(entry: dict, job: Job) -> JSONResponse:
    summary = {k: entry[k] for k in ("table", "added", "changed", "removed", "after_version")}
    return JSONResponse({**summary, "job": job.as_dict()}, status_code=202)


async def _json_body(request: Request) -> dict:
    """The request's JSON object; {} for an empty body; Denied 422 for anything else."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Denied(422, "本文は JSON のオブジェクト（{…}）にしてください")
    return body


@router.post("/api/admin/tables")
async def api_upload(request: Request) -> Response:
    _, preview, (status, error) = await checked_upload(request)
    if preview is None:
        return JSONResponse({"error": error}, status_code=status)
    return JSONResponse(preview.as_dict())


@router.post("/api/admin/tables/{preview_id}/apply")
async def api_apply(request: Request, preview_id: str) -> Response:
    """Optional JSON body ``{"confirm_year": true, "confirm_council": true}``: needed when
    the preview warns of the year or of a new council (``needs_confirmation``)."""
    who = require(request)
    check_csrf(request, who)
    body = await _json_body(request)
    kinds = ("year", "council")
    confirmed = {kind for kind in kinds if body.get(f"confirm_{kind}") is True}
    boxes = {kind: f"確認の欄（confirm_{kind}）" for kind in kinds}
    return _accepted(*await apply_preview(request, who, preview_id, confirmed, boxes))


@router.get("/api/admin/jobs/{job_id}")
def api_job(request: Request, job_id: str) -> Response:
    require(request)
    job = admin_of(request).builder.get(job_id)
    if job is None:
        raise Denied(404, f"更新 {job_id} の記録はありません")
    return JSONResponse(job.as_dict())


@router.get("/api/admin/history")
def api_history(request: Request) -> Response:
    require(request)
    return JSONResponse(admin_of(request).history.entries(HISTORY_SHOWN))


@router.get("/api/admin/tables/{slug}/versions")
def api_versions(request: Request, slug: str) -> Response:
    require(request)
    try:
        return JSONResponse(admin_of(request).history.versions(slug))
    except KbError as exc:
        raise Denied(404, str(exc)) from None


@router.post("/api/admin/tables/{slug}/versions/{version}/restore")
async def api_restore(request: Request, slug: str, version: str) -> Response:
    """Optional JSON body ``{"base": "<SHA-256 of the table when confirmed>" | null}``:
    409 if the table has changed since."""
    who = require(request)
    check_csrf(request, who)
    base = base_of((await _json_body(request)).get("base", False))
    return _accepted(*await restore_version(request, who, slug, version, base))


@router.post("/api/admin/tables/{slug}/remove")
async def api_remove(request: Request, slug: str) -> Response:
    """Remove a table (undo its first upload); optional ``{"base": …}`` as for restore."""
    who = require(request)
    check_csrf(request, who)
    base = base_of((await _json_body(request)).get("base", False))
    return _accepted(*await remove_table(request, who, slug, base))


@router.post("/api/admin/cells/{cell_id}")
async def api_cell(request: Request, cell_id: str) -> Response:
    """JSON body ``{"text": …, "preview": false}``: preview (200, the changed cells) or
    save (202, the build job)."""
    who = require(request)
    check_csrf(request, who)
    try:
        body = await request.json()
    except ValueError:
        raise Denied(422, '本文は {"text": "…"} の JSON にしてください') from None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise Denied(422, "text（セルの新しい内容）を文字列で指定してください")
    try:
        if body.get("preview"):
            old, new = await run_in_threadpool(cell_change, request, cell_id, text)
            return JSONResponse({"cells": [c.as_dict() for c in diff(old, new)]})
        return _accepted(*await save_cell(request, who, cell_id, text, None))
    except InputError as exc:
        raise Denied(422, str(exc)) from None
