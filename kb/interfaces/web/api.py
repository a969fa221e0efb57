"""The JSON API under ``/api``: the same answers as the CLI's ``--json``, in the same shapes.

Parameters are checked by :mod:`kb.search.validation` (like everywhere else); a bad value
is a 422 whose ``detail`` names the parameter, in the shape FastAPI uses for type errors.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from kb.admin.routes import admin_status
from kb.apps.themes import DEFAULT_FIELDS
from kb.core.errors import FilterError
from kb.core.fields import Field
from kb.interfaces.web.deps import (
    agenda,
    cell_or_404,
    organisations,
    service_of,
    timeline_or_404,
)
from kb.search.fold import browse_folded, search_folded
from kb.search.fusion import Mode
from kb.search.service import SearchService
from kb.search.validation import (
    MAX_K,
    MAX_QUERY_CHARS,
    check_query,
    parse_count,
    parse_flag,
    parse_k,
    parse_mode,
    parse_year,
    parse_years,
)

router = APIRouter(prefix="/api")
DEFAULT_K = 10


def _query_parameter(name: str, description: str, schema: dict) -> dict:
    many = schema.get("type") == "array"
    return {"name": name, "in": "query", "description": description, "schema": schema} | (
        {"style": "form", "explode": True} if many else {}
    )


def _many(items: dict) -> dict:
    return {"type": "array", "items": items, "default": []}


# /api/search's parameters, as the OpenAPI document shows them (see api_search).
SEARCH_PARAMETERS = [
    _query_parameter(
        "q", f"検索語（{MAX_QUERY_CHARS}文字まで）", {"type": "string", "default": ""}
    ),
    _query_parameter(
        "k",
        f"件数（1〜{MAX_K}）",
        {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K},
    ),
    _query_parameter(
        "mode",
        "検索の方法",
        {"type": "string", "enum": [m.value for m in Mode], "default": "hybrid"},
    ),
    _query_parameter(
        "field",
        "欄（複数可。課題・来年度 などの表示名も使えます）",
        _many({"type": "string", "enum": [f.value for f in Field]}),
    ),
    _query_parameter("org", "団体名または略称（複数可）", _many({"type": "string"})),
    _query_parameter("category", "課題区分（複数可）", _many({"type": "string"})),
    _query_parameter("year", "年度（複数可）", _many({"type": "integer"})),
    _query_parameter(
        "fold",
        "同じ項目の同じ欄を年度をまたいで1件にまとめる（以前の年度は earlier）",
        {"type": "boolean", "default": False},
    ),
]


def _typed(kind: str, description: str, **more: object) -> dict:
    return {"type": kind, "description": description, **more}


# The one hit shape of every answer (kb search --json, similar, related, themes' cells), as
# the OpenAPI document shows it; tests/test_web_api.py checks it against a real hit.
HIT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": _typed("string", "セルの ID（年度-会議-列キー-欄）"),
        "year": _typed("integer", "年度"),
        "council": _typed("string", "会議名"),
        "document": _typed("string", "資料番号"),
        "page": _typed("integer", "元の資料のページ"),
        "organisation": _typed("string", "団体名（①② も含む）"),
        "agency": _typed("string", "団体名（①② を除く）"),
        "item_no": _typed("integer", "項目番号（最初のもの。ないときは null）", nullable=True),
        "item_nos": _typed("array", "項目番号のすべて", items={"type": "integer"}),
        "item_title": _typed("string", "項目名"),
        "category": _typed("string", "課題区分"),
        "field": _typed("string", "欄", enum=[f.value for f in Field]),
        "field_ja": _typed("string", "欄の表示名（項目・進捗・課題・解決策・来年度）"),
        "text": _typed("string", "セルの内容"),
        "score": _typed("number", "並べ替えの値（検索: 順位の融合値、似たセル: 意味の近さ）"),
        "confident": _typed("boolean", "答えとして示す根拠があるか（false は「関連が薄い候補」）"),
        "matched_terms": _typed(
            "array", "セルの中で検索語に当たった言葉", items={"type": "string"}
        ),
        "column": _typed(
            "array",
            "同じ列（同じ団体・項目）の他の欄",
            items={
                "type": "object",
                "properties": {k: {"type": "string"} for k in ("id", "field", "field_ja", "text")},
            },
        ),
        "earlier": _typed(
            "array",
            "fold=true のとき: 同じ項目の以前の年度のセル（同じ形）",
            items={"type": "object"},
        ),
    },
}
_JSON = "application/json"
NOT_FOUND = {"description": "そのセルはありません", "content": {_JSON: {}}}
REFUSED = {"description": "値が使えないパラメーター（detail の loc と msg が名指しする）"}
HITS = {
    "description": "ヒットの一覧（よい順）",
    "content": {_JSON: {"schema": {"type": "array", "items": HIT_SCHEMA}}},
}


class Answer(JSONResponse):
    """A JSON answer written by orjson (ten hits: 0.003 ms, the standard library's encoder
    0.056 ms); numpy numbers are written as numbers."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _unprocessable(exc: FilterError, where: str = "query") -> HTTPException:
    return HTTPException(
        422, detail=[{"loc": [where, exc.param], "msg": str(exc), "type": "value_error"}]
    )


@router.get(
    "/search",
    summary="セルを検索する（kb search --json と同じ形）",
    openapi_extra={"parameters": SEARCH_PARAMETERS},
    responses={
        200: {
            "description": "検索語とヒット（よい順）",
            "content": {
                _JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string"},
                            "hits": {"type": "array", "items": HIT_SCHEMA},
                        },
                    }
                }
            },
        },
        422: REFUSED,
    },
)
async def api_search(request: Request) -> Response:
    # Parameters are read by kb's own validators rather than declared to FastAPI: its
    # per-parameter machinery cost a fresh query 0.08 ms (docs/benchmarks.md).
    params = request.query_params
    service = service_of(request)
    try:
        q = check_query(params.get("q", ""))
        k = parse_k(params.get("k", ""), DEFAULT_K)
        mode = parse_mode(params.get("mode", ""))
        fold = parse_flag(params.get("fold", ""), "fold")
        run = partial(search_folded, service) if fold else service.search
        browse = partial(browse_folded, service) if fold else service.browse
        embedded_ms = await service.prepare(q)
        filters = service.filters(
            fields=params.getlist("field"),
            organisations=params.getlist("org"),
            categories=params.getlist("category"),
            years=parse_years(params.getlist("year")),
        )
        if q.strip():
            result = run(q, k=k, mode=mode, filters=filters)
        else:  # as `kb search ""` and the page: the cells of the filters, if any
            result = browse(filters, limit=k) if filters else None
    except FilterError as exc:
        raise _unprocessable(exc) from exc
    hits = result.hits if result else []
    # A response of its own skips FastAPI's per-field re-encoding of plain dicts (a few ms).
    return Answer(
        {"query": q, "hits": [h.as_dict() for h in hits]},
        headers={"Server-Timing": server_timing(result.timings, embedded_ms)}
        if result and result.timings
        else None,
    )


def server_timing(timings: dict[str, float], embedded_ms: float) -> str:
    """A ``Server-Timing`` header value: ``embed;dur=4.81, rank;dur=0.52`` (milliseconds),
    the query's embedding ahead of the search (:meth:`SearchService.prepare`) included."""
    timings = {**timings, "embed": timings.get("embed", 0.0) + embedded_ms}
    return ", ".join(f"{phase};dur={ms:.2f}" for phase, ms in timings.items())


@router.get(
    "/cells/{cell_id}",
    summary="セル1件と同じ列の他の欄",
    responses={200: {"content": {_JSON: {"schema": HIT_SCHEMA}}}, 404: NOT_FOUND},
)
def api_cell(request: Request, cell_id: str) -> dict:
    return cell_or_404(request, cell_id).as_dict()


@router.get(
    "/cells/{cell_id}/history", summary="同じ項目の年度ごとのセル（kb history --json と同じ形）"
)
def api_history(request: Request, cell_id: str) -> dict:
    return timeline_or_404(request, cell_id).as_dict()


# The ``k`` of /api/cells/{id}/similar and /related, read by hand like /api/search's.
DEFAULT_ABOUT_K = 5
K_PARAMETER = _query_parameter(
    "k",
    f"件数（1〜{MAX_K}）",
    {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_ABOUT_K},
)


@router.get(
    "/cells/{cell_id}/similar",
    summary="他の団体の似たセル",
    openapi_extra={"parameters": [K_PARAMETER]},
    responses={200: HITS, 404: NOT_FOUND, 422: REFUSED},
)
def api_similar(request: Request, cell_id: str) -> list[dict]:
    return _hits_about(request, cell_id, SearchService.similar)


@router.get(
    "/cells/{cell_id}/related",
    summary="この課題に他の団体が取り組んでいること",
    openapi_extra={"parameters": [K_PARAMETER]},
    responses={200: HITS, 404: NOT_FOUND, 422: REFUSED},
)
def api_related(request: Request, cell_id: str) -> list[dict]:
    return _hits_about(request, cell_id, SearchService.related_to_challenge)


def _hits_about(request: Request, cell_id: str, find: Callable) -> list[dict]:
    """``find(service, cell_id, k)`` (similar or related cells) as JSON; 404 if no such cell,
    422 for a bad ``k`` or a cell ``find`` does not take."""
    cell_or_404(request, cell_id)
    try:
        k = parse_k(request.query_params.get("k", ""), DEFAULT_ABOUT_K)
    except FilterError as exc:
        raise _unprocessable(exc) from exc
    try:
        return [h.as_dict() for h in find(service_of(request), cell_id, k)]
    except FilterError as exc:
        raise _unprocessable(exc, "path") from exc


@router.get("/status", summary="読み込んでいる索引（作成日時・セル数・埋め込みモデル）")
def api_status(request: Request) -> dict:
    manifest = service_of(request).index.manifest
    return {
        "build_id": manifest["build_id"],
        "built_at": manifest["built_at"],
        "chunks": manifest["chunks"],
        "embedder": manifest["embedder"]["name"],
        **admin_status(request.app),
    }


@router.get("/organisations", summary="団体の一覧")
def api_organisations(request: Request) -> list[dict]:
    return organisations(request)


# /api/themes's year and n, read by hand so a bad value is a Japanese 422 like /api/search's.
THEMES_PARAMETERS = [
    _query_parameter("year", "年度（省略時は最新）", {"type": "integer"}),
    _query_parameter(
        "council",
        "会議の名前か会議ID（省略時はその年度のセルが最も多い会議）",
        {"type": "string"},
    ),
    _query_parameter(
        "n", "テーマの数（省略時は内容から決める）", {"type": "integer", "minimum": 1}
    ),
]


@router.get(
    "/themes",
    summary="団体に共通するテーマ（kb themes --format json と同じ形）",
    openapi_extra={"parameters": THEMES_PARAMETERS},
)
def api_themes(
    request: Request,
    field: list[str] = Query([], description="欄（複数可、all ですべて。既定は challenge）"),
) -> dict:
    params = request.query_params
    try:
        year, n = parse_year(params.get("year", "")), parse_count(params.get("n", ""))
        council = params.get("council") or None
        return agenda(request, year, field or DEFAULT_FIELDS, n, council).as_dict()
    except FilterError as exc:
        raise _unprocessable(exc) from exc
