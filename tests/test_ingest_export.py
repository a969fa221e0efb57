"""Export and ingest through the real ``kb`` command: round trips, council sheets, bad input."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import groupby
from pathlib import Path

import openpyxl
import pytest
import yaml
from conftest import CORPUS, tree_digest
from sheet_edits import council_sheet, with_column, without_column

from kb.core.fields import FIELDS, Field
from kb.core.model import MAX_CELL_CHARS, Column, Source, Table, chunks_of
from kb.corpus.tables import Corpus, load_table, save_table
from kb.sheets.keys import assign_keys

TABLE = CORPUS / "tables" / "2017-atsugi.yaml"
FY2018_TABLE = Path(__file__).resolve().parent / "data" / "2018-atsugi.yaml"
COUNCIL = "厚木地域小児等在宅医療連絡会議"


@pytest.fixture(scope="module")
def original() -> Table:
    return load_table(TABLE)


def raw_columns() -> list[dict]:
    """The table's columns straight from the YAML, not through kb."""
    return yaml.safe_load(TABLE.read_text(encoding="utf-8"))["columns"]


def non_empty(text: str | None) -> bool:
    return (text or "").strip() not in ("", "－")


def only_table(corpus_dir: Path) -> Table:
    (path,) = (corpus_dir / "tables").glob("*.yaml")
    return load_table(path)


def assert_ok(result) -> None:
    assert result.returncode == 0, result.stderr


# --- round trips -----------------------------------------------------------------------

EXPORTS = {
    "wide.xlsx": [],
    "wide.csv": [],
    "long.csv": ["--layout", "long"],
    "long.xlsx": ["--layout", "long"],
}


def run_all(jobs: list[Callable[[], object]]) -> list:
    """Run independent ``kb`` processes side by side (each one is mostly start-up time)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda job: job(), jobs))


@pytest.fixture(scope="module")
def exported(run_kb, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real corpus exported once in every format; "stdout" holds ``kb export``'s output."""
    root = tmp_path_factory.mktemp("exported")
    corpus = Path(shutil.copytree(CORPUS, root / "corpus"))
    jobs = [
        partial(run_kb, "export", *options, "-o", root / name, corpus=corpus)
        for name, options in EXPORTS.items()
    ]
    jobs.append(partial(run_kb, "export", "--format", "jsonl", corpus=corpus))
    *writes, jsonl = run_all(jobs)
    for result in writes:
        assert_ok(result)
        assert result.stdout == ""
        assert result.stderr.startswith("書き出しました")
    assert_ok(jsonl)
    (root / "stdout").write_text(jsonl.stdout, encoding="utf-8")
    return {name: root / name for name in [*EXPORTS, "stdout"]}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_export_then_ingest_gives_the_same_table(
    invoke_kb, exported: dict[str, Path], empty_corpus: Path, original: Table, name: str
) -> None:
    ingested = invoke_kb("ingest", exported[name], corpus=empty_corpus)
    assert_ok(ingested)
    target = empty_corpus / "tables" / "2017-atsugi.yaml"
    assert ingested.stdout.strip() == str(target)
    assert "20列を取り込みました" in ingested.stderr
    assert [p.name for p in (empty_corpus / "tables").iterdir()] == ["2017-atsugi.yaml"]
    assert load_table(target) == original


def test_wide_xlsx_merges_a_shared_heading_and_puts_a_page_per_sheet(
    exported: dict[str, Path],
) -> None:
    book = openpyxl.load_workbook(exported["wide.xlsx"])
    assert book.sheetnames == ["1ページ", "2ページ", "3ページ", "4ページ"]
    first = book["1ページ"]
    heading = next(r for r in first.iter_rows() if r[0].value == "団体名")
    names = [c.value for c in heading]
    assert names[1:4] == ["神奈川県医療課", "厚木医師会", "厚木市立病院"]
    merged = {str(r) for r in first.merged_cells.ranges}
    row = heading[0].row
    # 厚木市立病院 (items 8 and 17) and もみじ (12 and 6) each head two columns.
    assert merged == {f"D{row}:E{row}", f"F{row}:G{row}"}


def test_export_jsonl_prints_one_object_per_non_empty_cell(
    exported: dict[str, Path],
) -> None:
    stdout = exported["stdout"].read_text(encoding="utf-8")
    assert stdout.endswith("\n")
    records = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(r, dict) for r in records)
    keys = {"id", "year", "page", "organisation", "item_no", "category", "field", "text"}
    assert all(keys <= r.keys() for r in records)
    expected = sum(non_empty(c.get(f.value)) for c in raw_columns() for f in FIELDS)
    assert len(records) == expected == 82
    assert len({r["id"] for r in records}) == len(records)
    assert records == [c.as_dict() for c in Corpus.load(CORPUS).chunks]
    c13 = next(r for r in records if r["id"] == "2017-atsugi-c13-challenge")
    assert c13["year"] == 2017 and c13["page"] == 3 and c13["item_no"] == 6
    assert (c13["organisation"], c13["field"]) == ("厚木市障がい福祉課①", "challenge")
    assert c13["text"].startswith("看護人材の不足により")


def test_export_jsonl_to_a_file_writes_the_same_lines(
    invoke_kb, exported: dict[str, Path], corpus_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cells.jsonl"
    to_file = invoke_kb("export", "-o", out, corpus=corpus_copy)
    assert_ok(to_file)
    assert to_file.stdout == ""
    assert out.read_text(encoding="utf-8") == exported["stdout"].read_text(encoding="utf-8")


# --- a council's own sheet ---------------------------------------------------------------

TITLE = "平成30年度取組み進捗状況一覧"
PROGRESS = "（２）30年度の進捗状況について、実績や検討している内容"
CHALLENGE = "（３）取組みを進める中で見えてきた課題"
SOLUTION = "（４）課題に対する考えうる解決策または関係機関と話し合いたいこと"
NEXT_YEAR = "（５）来年度以降の取組み"

# As councils keep it: a title, no kb rows, 厚木市立病院 heading two item columns (the
# heading cell C4 is empty, merged with B4 in the xlsx), a cell continued on a second row
# with an empty label, dashes and blanks, and a second page under a repeated title.
COUNCIL_SHEET: list[list[str]] = [
    [TITLE],
    ["資料２－２"],
    [],
    ["団体名", "厚木市立病院", "", "訪問看護ステーション\u3000さくら", "神奈川県ﾘﾊﾋﾞﾘﾃｰｼｮﾝ事業団"],
    ["課題区分", "体制構築", "情報集約", "人材育成", "－"],
    [
        "(１)項目・内容",
        "８　体制構築\n退院前のケースカンファレンス",
        "17　情報集約\nマイサポートブックの活用",
        "12　人材育成　小児訪問看護の勉強会",
        "－",
    ],
    [PROGRESS, "病棟と地域の合同カンファレンスを開いた。", "外来で配布した。", "－", ""],
    [CHALLENGE, "退院後の連絡先が分かりにくい。", "", "受け入れる事業所が少ない。", "－"],
    ["", "", "", "経験を積む機会も少ない。", ""],
    [SOLUTION, "－", "", "合同の勉強会を開きたい。", "送迎の相談をしたい。"],
    [NEXT_YEAR, "連絡票を作る。", "病棟でも配布する。", "", ""],
    [],
    [TITLE],
    ["団体名", "厚木児童相談所"],
    ["課題区分", "資源把握"],
    ["(１)項目・内容", "16　資源把握　厚木地域の福祉資源調査"],
    [PROGRESS, "利用している事業所を抽出した。"],
    [CHALLENGE, "－"],
    [SOLUTION, "－"],
    [NEXT_YEAR, "連絡会議を共催する。"],
]


def write_council_xlsx(path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in COUNCIL_SHEET:
        sheet.append([value or None for value in row])
    sheet.merge_cells("B4:C4")
    book.save(path)


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    path.write_bytes(out.getvalue().encode(encoding))


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_a_council_sheet_without_kb_rows_ingests(
    invoke_kb, corpus_copy: Path, tmp_path: Path, digest, suffix: str
) -> None:
    sheet = tmp_path / f"平成30年度{suffix}"
    if suffix == ".xlsx":
        write_council_xlsx(sheet)
    else:
        write_csv(sheet, COUNCIL_SHEET)
    before = digest(corpus_copy / "tables")
    result = invoke_kb("ingest", sheet, "--council", COUNCIL, corpus=corpus_copy)
    assert_ok(result)
    # The council already has a table, so its id is reused; the 2017 table is untouched.
    target = corpus_copy / "tables" / "2018-atsugi.yaml"
    assert result.stdout.strip() == str(target)
    after = digest(corpus_copy / "tables")
    assert after.pop("2018-atsugi.yaml")
    assert after == before

    table = load_table(target)
    assert (table.year, table.council, table.council_id) == (2018, COUNCIL, "atsugi")
    assert table.source.title == TITLE
    columns = {c.key: c for c in table.columns}
    assert [(c.page, c.organisation, c.item_nos) for c in table.columns] == [
        (1, "厚木市立病院", [8]),
        (1, "厚木市立病院", [17]),
        (1, "訪問看護ステーションさくら", [12]),
        (1, "神奈川県リハビリテーション事業団", []),
        (2, "厚木児童相談所", [16]),
    ]
    assert [c.shares_heading for c in table.columns] == [False, True, False, False, False]
    assert columns["c01"].item_title == "退院前のケースカンファレンス"
    assert columns["c02"].category == "情報集約"
    assert (
        columns["c03"].text(Field.challenge)
        == "受け入れる事業所が少ない。\n経験を積む機会も少ない。"
    )
    assert columns["c03"].text(Field.solution) == "合同の勉強会を開きたい。"
    assert columns["c05"].text(Field.next_year) == "連絡会議を共催する。"

    chunks = [c for c in Corpus.load(corpus_copy).chunks if c.year == 2018]
    ids = {c.id for c in chunks}
    # The continuation row (index 8) adds to a cell, not a chunk.
    assert len(ids) == sum(
        non_empty(text)
        for row in COUNCIL_SHEET[5:8] + COUNCIL_SHEET[9:11] + COUNCIL_SHEET[15:]
        for text in row[1:]
    )
    assert "2018-atsugi-c01-solution" not in ids  # "－"
    assert "2018-atsugi-c02-challenge" not in ids  # blank
    assert "2018-atsugi-c05-challenge" not in ids
    assert "2018-atsugi-c03-challenge" in ids

    checked = invoke_kb("corpus", "--check", corpus=corpus_copy)
    assert checked.returncode == 0, checked.stderr
    assert "2018-atsugi: 元の文書の指定がないため確認していません" in checked.stderr
    # The last line says what was checked, not that every table matched.
    assert checked.stderr.splitlines()[-1] == (
        "確かめた1件の表は元の文書と一致しました（1件は元の文書がないため未確認）"
    )


def test_command_line_year_wins_over_the_title(
    invoke_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    sheet = tmp_path / "council.csv"
    write_csv(sheet, COUNCIL_SHEET)
    options = ["--council", "テスト会議", "--year", "2019", "--council-id", "test"]
    result = invoke_kb("ingest", sheet, *options, corpus=empty_corpus)
    assert_ok(result)
    assert only_table(empty_corpus).year == 2019
    assert (empty_corpus / "tables" / "2019-test.yaml").exists()


def test_shift_jis_csv_reads_the_same_as_utf8(
    invoke_kb, exported: dict[str, Path], tmp_path: Path, original: Table
) -> None:
    utf8 = exported["wide.csv"]
    text = utf8.read_text(encoding="utf-8-sig")
    sjis = tmp_path / "sjis.csv"
    sjis.write_bytes(text.encode("cp932"))
    with pytest.raises(UnicodeDecodeError):
        sjis.read_bytes().decode("utf-8")  # so the cp932 fallback is what reads it
    tables = []
    for path in (utf8, sjis):
        corpus = tmp_path / f"from-{path.stem}"
        assert_ok(invoke_kb("ingest", path, corpus=corpus))
        tables.append(only_table(corpus))
    assert tables[0] == tables[1] == original


def test_small_shift_jis_sheet_with_half_width_kana(
    invoke_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    rows = [
        ["会議", "テスト会議"],
        ["年度", "令和元年度"],
        ["団体名", "神奈川県ﾘﾊﾋﾞﾘﾃｰｼｮﾝ事業団", "座間養護学校①"],
        ["課題区分", "体制構築", "人材育成"],
        ["(３)見えてきた課題", "医療的ケア児の受け入れ先が足りない。", "研修の機会が少ない。"],
    ]
    utf8, sjis = tmp_path / "utf8.csv", tmp_path / "sjis.csv"
    write_csv(utf8, rows)
    write_csv(sjis, rows, encoding="cp932")
    assert_ok(invoke_kb("ingest", sjis, corpus=empty_corpus))
    table = only_table(empty_corpus)
    assert table.year == 2019
    assert [c.organisation for c in table.columns] == [
        "神奈川県リハビリテーション事業団",
        "座間養護学校①",
    ]
    assert table.columns[0].text(Field.challenge) == "医療的ケア児の受け入れ先が足りない。"
    assert_ok(invoke_kb("ingest", utf8, "--replace", corpus=empty_corpus))
    assert only_table(empty_corpus) == table


@pytest.fixture
def two_tables(corpus_copy: Path) -> Path:
    """The corpus with the invented FY2018 table beside FY2017."""
    shutil.copy(FY2018_TABLE, corpus_copy / "tables")
    return corpus_copy


def test_export_table_writes_only_that_table_in_every_format(
    invoke_kb, two_tables: Path, tmp_path: Path
) -> None:
    jsonl = invoke_kb("export", "--table", "2018-atsugi", corpus=two_tables)
    assert_ok(jsonl)
    ids = [json.loads(line)["id"] for line in jsonl.stdout.splitlines()]
    fy2018 = load_table(FY2018_TABLE)
    assert ids == [c.id for c in Corpus.load(two_tables).chunks if c.year == 2018]
    assert ids and len(ids) < len(Corpus.load(two_tables).chunks)
    sheet = tmp_path / "long.csv"
    assert_ok(
        invoke_kb(
            "export", "--table", "2018-atsugi", "--layout", "long", "-o", sheet, corpus=two_tables
        )
    )
    years = {row[0] for row in csv.reader(io.StringIO(sheet.read_text(encoding="utf-8-sig")))}
    assert years == {"年度", str(fy2018.year)}


TWO_TABLES = (
    "表が複数あります。xlsx・csv には表を1つずつ書き出すので、--table で選んでください"
    "（2017-atsugi、2018-atsugi）"
)
LAYOUT_OF_JSONL = "--layout は xlsx・csv に書き出すときだけ使えます（jsonl は1セル1行です）"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--table", "nope"),
            "--table「nope」という表はありません（あるもの: 2017-atsugi、2018-atsugi）",
        ),
        (
            ("--table", "nope", "--format", "csv", "-o", "{out}.csv"),
            "--table「nope」という表はありません（あるもの: 2017-atsugi、2018-atsugi）",
        ),
        (("--format", "xlsx"), "xlsx に書き出すときは -o で出力ファイルを指定してください"),
        (("-o", "{out}.xlsx"), TWO_TABLES),
        (("--layout", "long", "-o", "{out}.csv"), TWO_TABLES),
        (("-o", "{out}.txt"), "-o の拡張子「.txt」には書き出せません"),
        (
            ("--format", "xlsx", "-o", "{out}.csv"),
            "-o の拡張子「.csv」が --format xlsx と合いません。拡張子を「.xlsx」にするか、"
            "--format を省いてください",
        ),
        (
            ("--table", "2017-atsugi", "-o", "{out}"),
            "-o「out」に拡張子がありません。.xlsx・.csv・.jsonl のどれかを付けてください",
        ),
        (
            ("--table", "2017-atsugi", "--format", "csv", "-o", "{out}"),
            "-o「out」に拡張子がありません。「.csv」を付けてください",
        ),
        (("--table", "2017-atsugi", "--layout", "long"), LAYOUT_OF_JSONL),
        (("--format", "jsonl", "--layout", "wide", "-o", "{out}.jsonl"), LAYOUT_OF_JSONL),
    ],
    ids=[
        "unknown-table",
        "unknown-table-csv",
        "xlsx-without-o",
        "wide-of-two-tables",
        "long-of-two-tables",
        "txt",
        "format-against-extension",
        "no-extension",
        "no-extension-with-format",
        "layout-of-jsonl",
        "layout-of-jsonl-file",
    ],
)
def test_export_mistakes_are_one_japanese_line_and_exit_1(
    run_kb, two_tables: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "out"
    result = run_kb("export", *(a.format(out=out) for a in args), corpus=two_tables)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"エラー: {message}"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("out*"))


# --- bad input -------------------------------------------------------------------------

WIDE = [
    ["会議", "テスト会議"],
    ["年度", "2018"],
    [],
    ["団体名", "A病院", "B課"],
    ["課題区分", "体制構築", "人材育成"],
    ["(１)項目・内容", "1 体制構築 会議の実施", "2 人材育成 研修"],
    ["(２)進捗状況", "進捗A。", "進捗B。"],
    ["(３)見えてきた課題", "課題A。", "課題B。"],
]
LONG = [
    ["年度", "会議", "団体名", "項目番号", "欄", "内容"],
    ["2018", "テスト会議", "A病院", "1", "item", "1 体制構築 会議の実施"],
    ["2018", "テスト会議", "A病院", "1", "challenge", "課題A。"],
    ["2018", "テスト会議", "B課", "2", "challenge", "課題B。"],
]


def edited(rows: list[list[str]], row: int, col: int, value: str) -> list[list[str]]:
    """A copy of ``rows`` with the cell at 1-based ``row`` and 0-based ``col`` replaced."""
    copy = [list(r) for r in rows]
    copy[row - 1][col] = value
    return copy


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def workbook_bytes(sheets: dict[str, list[list[str]]], hidden: tuple[str, ...] = ()) -> bytes:
    """A workbook with a sheet per entry, in order; those named in ``hidden`` hidden."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        sheet.sheet_state = "hidden" if name in hidden else "visible"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


PAGE_2 = WIDE[3:]  # a second page: its block without the table's own rows

# Bytes that are neither UTF-8 (0x81 cannot start a character) nor cp932 (0x7f cannot
# follow the lead byte 0x81).
UNDECODABLE = "団体名,A病院\n".encode() + b"\x81\x7f\n"


@pytest.mark.parametrize(
    ("name", "content"),
    [("wide.csv", csv_bytes(WIDE)), ("long.csv", csv_bytes(LONG)), ("wide.xlsx", xlsx_bytes(WIDE))],
)
def test_the_base_files_of_the_bad_input_cases_are_good(
    invoke_kb, empty_corpus: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    """Each bad file below differs from one of these in one respect only."""
    path = tmp_path / name
    path.write_bytes(content)
    assert_ok(invoke_kb("ingest", path, corpus=empty_corpus))
    assert len(only_table(empty_corpus).columns) == 2


BAD_INPUT: list[tuple[str, str, bytes, str, str | None]] = [
    # id, file name, content, expected message, "N行目、X列" or None
    (
        "wide-unknown-row-label",
        "wide.csv",
        csv_bytes(edited(WIDE, 7, 0, "感想")),
        "不明な行見出し「感想」です",
        "7行目、A列",
    ),
    (
        "long-unknown-field",
        "long.csv",
        csv_bytes(edited(LONG, 3, 4, "感想")),
        "不明な欄「感想」です",
        "3行目、E列",
    ),
    (
        "wide-missing-organisation",
        "wide.csv",
        csv_bytes(edited(WIDE, 4, 1, "")),
        "団体名がありません",
        "4行目、B列",
    ),
    (
        "wide-xlsx-missing-organisation",
        "wide.xlsx",
        xlsx_bytes(edited(WIDE, 4, 1, "")),
        "団体名がありません",
        "4行目、B列",
    ),
    (
        "long-missing-organisation",
        "long.csv",
        csv_bytes(edited(LONG, 4, 2, "")),
        "団体名がありません",
        "4行目、C列",
    ),
    (
        "wide-field-row-twice",
        "wide.csv",
        csv_bytes([*WIDE, ["(２)進捗状況", "進捗C。", "進捗D。"]]),
        "「(２)進捗状況」の行が2回あります（7行目と9行目）",
        "9行目、A列",
    ),
    (
        "long-cell-twice",
        "long.csv",
        csv_bytes([*LONG, LONG[2]]),
        "同じセル（A病院 項目1の課題）が2回あります（3行目と5行目）",
        "5行目、E列",
    ),
    (
        "long-cell-twice-without-item-no",
        "long.csv",
        csv_bytes([LONG[0], *[["2018", "テスト会議", "A病院", "", "challenge", "課題A。"]] * 2]),
        "同じセル（A病院の課題）が2回あります（2行目と3行目）",
        "3行目、E列",
    ),
    (
        # Two tables in one long file (the QA case: two years' rows of the same cell).
        "long-two-years",
        "long.csv",
        csv_bytes([*LONG, ["2019", *LONG[2][1:]]]),
        "1つのファイルに年度が2つあります（2行目は「2018」、5行目は「2019」）。"
        "表は年度・会議ごとに1つのファイルにしてください",
        "5行目、A列",
    ),
    (
        "wide-unreadable-year",
        "wide.csv",
        csv_bytes(edited(WIDE, 2, 1, "来年")),
        "年度「来年」を読み取れません（2018・2018年度・平成30年度・平成30・H30・令和元年度・R1 "
        "などの形で書いてください）",
        "2行目、B列",
    ),
    (
        "long-unreadable-year",
        "long.csv",
        csv_bytes(edited(LONG, 3, 0, "来年度")),
        "年度「来年度」を読み取れません",
        "3行目、A列",
    ),
    ("no-year", "wide.csv", csv_bytes(WIDE[:1] + WIDE[2:]), "年度がわかりません", None),
    ("no-council", "wide.csv", csv_bytes(WIDE[1:]), "会議名がわかりません", None),
    ("undecodable-bytes", "wide.csv", UNDECODABLE, "文字コードを読み取れません", None),
    ("empty-file", "wide.csv", b"", "ファイルが空です", None),
    ("only-empty-cells", "wide.csv", b",,\r\n , ,\r\n,,\r\n", "すべてのセルが空です", None),
    (
        "only-empty-xlsx-cells",
        "wide.xlsx",
        xlsx_bytes([["", "  "], [], ["", "", ""]]),
        "すべてのセルが空です",
        None,
    ),
    (
        # Past the csv module's own field limit (131,072): once a raw _csv.Error traceback.
        "csv-cell-past-the-csv-limit",
        "wide.csv",
        csv_bytes(edited(WIDE, 7, 2, "進" * 140_000)),
        f"セルが長すぎます（140,000文字。1つのセルは{MAX_CELL_CHARS:,}文字までです）",
        "7行目、C列",
    ),
    (
        "csv-cell-past-the-cell-limit",
        "wide.csv",
        csv_bytes(edited(WIDE, 8, 1, "課" * (MAX_CELL_CHARS + 1))),
        f"セルが長すぎます（{MAX_CELL_CHARS + 1:,}文字。",
        "8行目、B列",
    ),
    (
        "xlsx-cell-past-the-cell-limit",
        "wide.xlsx",
        xlsx_bytes(edited(WIDE, 6, 2, "項" * 6000)),
        "セルが長すぎます（6,000文字。",
        "6行目、C列",
    ),
    (
        "long-cell-past-the-cell-limit",
        "long.csv",
        csv_bytes(edited(LONG, 3, 5, "課" * 6000)),
        "セルが長すぎます（6,000文字。",
        "3行目、F列",
    ),
    (
        "long-without-its-text-column",
        "long.csv",
        csv_bytes([row[:5] for row in LONG]),
        "縦長の表の見出しに「内容」の列がありません（団体名・欄・内容 の列が必要です）",
        "1行目",
    ),
    (
        "long-without-field-and-text",
        "long.csv",
        csv_bytes([row[:4] for row in LONG]),
        "縦長の表の見出しに「欄」「内容」の列がありません",
        "1行目",
    ),
    ("unsupported-extension", "wide.txt", csv_bytes(WIDE), "対応していない形式です", None),
    (
        "not-really-xlsx",
        "wide.xlsx",
        csv_bytes(WIDE),
        "Excel ファイルとして開けません。中身が Excel（.xlsx）の形式ではありません"
        "（別の種類のファイルの名前を .xlsx に変えたものかもしれません）",
        None,
    ),
    ("no-table", "wide.csv", csv_bytes([["メモ", "来週に送ります"]]), "表が見つかりません", None),
    (
        # Last year's table kept on a tab of this year's workbook: once read as more pages
        # of this year's table.
        "xlsx-last-years-table-on-a-tab",
        "wide.xlsx",
        workbook_bytes({"H30": WIDE, "H29": edited(WIDE, 2, 1, "2017")}),
        "このシートは2017年度の表ですが、シート「H30」は2018年度の表です。"
        "1つのファイルには1つの年度・会議の表だけを入れ、ほかの表のシートは削除してください",
        "シート「H29」",
    ),
    (
        "xlsx-last-years-tab-stating-its-year-in-its-title",
        "wide.xlsx",
        workbook_bytes({"H30": WIDE, "H29": [["平成29年度取組み進捗状況一覧"], *PAGE_2]}),
        "このシートは2017年度の表ですが、シート「H30」は2018年度の表です",
        "シート「H29」",
    ),
    (
        "xlsx-another-councils-table-on-a-tab",
        "wide.xlsx",
        workbook_bytes({"A": WIDE, "B": edited(WIDE, 1, 1, "ほかの会議")}),
        "このシートは「ほかの会議」の表ですが、シート「A」は「テスト会議」の表です",
        "シート「B」",
    ),
    (
        "xlsx-hidden-sheet-holding-a-table",
        "wide.xlsx",
        workbook_bytes({"H30": WIDE, "記入例": PAGE_2}, hidden=("記入例",)),
        "非表示のシートに表があります。この表のページなら再表示し、"
        "ほかの年度の表や記入例なら削除してから、もう一度選んでください",
        "シート「記入例」",
    ),
    (
        # A long table read from its first sheet only: the second's rows were left out.
        "xlsx-long-table-on-two-sheets",
        "long.xlsx",
        workbook_bytes({"1": LONG, "2": [LONG[0], LONG[1]]}),
        "縦長の表は最初のシート「1」だけを読みますが、このシートにも内容があります",
        "シート「2」",
    ),
    (
        # A row and column alone would point at the first sheet.
        "xlsx-error-on-the-second-page-names-its-sheet",
        "wide.xlsx",
        workbook_bytes({"1ページ": WIDE, "2ページ": edited(PAGE_2, 4, 0, "感想")}),
        "不明な行見出し「感想」です",
        "シート「2ページ」、4行目、A列",
    ),
    (
        "xlsx-duplicate-column-on-the-second-page-names-its-sheet",
        "wide.xlsx",
        workbook_bytes(
            {"1ページ": WIDE, "2ページ": [*PAGE_2, ["ページ", "1", "1"]]},
        ),
        "同じ列が2つあります: A病院 項目1（1ページ）",
        "シート「2ページ」、2行目、B列",
    ),
]


def test_undecodable_bytes_really_are_neither_utf8_nor_cp932() -> None:
    for encoding in ("utf-8-sig", "cp932"):
        with pytest.raises(UnicodeDecodeError):
            UNDECODABLE.decode(encoding)


@pytest.fixture(scope="module")
def bad_runs(run_kb, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Each bad file ingested into its own copy of the corpus, all side by side.

    case id → (file, CompletedProcess, corpus digest before, corpus digest after).
    """
    prepared = {}
    for case, name, content, _, _ in BAD_INPUT:
        root = tmp_path_factory.mktemp(case)
        corpus = Path(shutil.copytree(CORPUS, root / "corpus"))
        path = root / "incoming" / name
        path.parent.mkdir()
        path.write_bytes(content)
        prepared[case] = (path, corpus, tree_digest(corpus))
    results = run_all(
        [partial(run_kb, "ingest", path, corpus=corpus) for path, corpus, _ in prepared.values()]
    )
    return {
        case: (path, result, before, tree_digest(corpus))
        for (case, (path, corpus, before)), result in zip(prepared.items(), results, strict=True)
    }


@pytest.mark.parametrize(
    ("case", "message", "spot"),
    [(case[0], case[3], case[4]) for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_is_refused_with_one_clear_error_and_the_corpus_unchanged(
    bad_runs: dict[str, tuple], case: str, message: str, spot: str | None
) -> None:
    path, result, before, after = bad_runs[case]
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    where = f"{path}（{spot}）" if spot else str(path)
    assert lines[0].startswith(f"エラー: {where}: "), lines[0]
    assert message in lines[0]
    # No library's English in the line, such as 「（File is not a zip file）」.
    assert not re.search(r"[A-Za-z]+ [a-z]+ [a-z]+", lines[0].removeprefix(f"エラー: {where}")), (
        lines[0]
    )
    assert after == before


def test_a_cell_of_exactly_the_limit_is_read(invoke_kb, empty_corpus: Path, tmp_path: Path) -> None:
    """The limit is the cell editor's: a cell of MAX_CELL_CHARS characters still goes in."""
    sheet = tmp_path / "wide.csv"
    sheet.write_bytes(csv_bytes(edited(WIDE, 8, 1, "課" * MAX_CELL_CHARS)))
    assert_ok(invoke_kb("ingest", sheet, corpus=empty_corpus))
    assert only_table(empty_corpus).columns[0].text(Field.challenge) == "課" * MAX_CELL_CHARS


def test_a_missing_file_is_refused(run_kb, corpus_copy: Path, tmp_path: Path, digest) -> None:
    before = digest(corpus_copy)
    result = run_kb("ingest", tmp_path / "nowhere.csv", corpus=corpus_copy)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"エラー: {tmp_path / 'nowhere.csv'}: ファイルが見つかりません\n"
    assert digest(corpus_copy) == before


# --- replacing a table -----------------------------------------------------------------


def test_ingesting_the_same_year_and_council_twice_needs_replace(
    run_kb,
    invoke_kb,
    exported: dict[str, Path],
    corpus_copy: Path,
    tmp_path: Path,
    digest,
    original: Table,
) -> None:
    old = "看護人材の不足により"
    new = "看護師の不足により"
    text = exported["wide.csv"].read_text(encoding="utf-8-sig")
    assert text.count(old) == 1
    sheet = tmp_path / "wide.csv"
    sheet.write_text(text.replace(old, new), encoding="utf-8")

    before = digest(corpus_copy)
    refused = run_kb("ingest", sheet, corpus=corpus_copy)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "2017年度の厚木地域小児等在宅医療連絡会議の表は既にあります" in refused.stderr
    assert "--replace" in refused.stderr
    assert digest(corpus_copy) == before

    replaced = invoke_kb("ingest", sheet, "--replace", corpus=corpus_copy)
    assert_ok(replaced)
    after = digest(corpus_copy)
    assert {k for k in before if before[k] != after.get(k)} == {"tables/2017-atsugi.yaml"}
    assert after.keys() == before.keys()
    table = only_table(corpus_copy)
    c13 = next(c for c in table.columns if c.key == "c13")
    assert c13.text(Field.challenge).startswith(new)
    c13.cells[Field.challenge] = c13.text(Field.challenge).replace(new, old)
    assert table == original


def council_rows(exported: dict[str, Path]) -> list[list[str]]:
    """The exported FY2017 wide CSV as a council keeps it: without kb's own rows (列キー …)."""
    text = exported["wide.csv"].read_text(encoding="utf-8-sig")
    return council_sheet(list(csv.reader(io.StringIO(text))))


@pytest.mark.parametrize("dropped", ["神奈川県医療課", "厚木市障がい福祉課①"])
def test_replacing_with_a_council_sheet_matches_columns_by_organisation_and_item(
    invoke_kb,
    exported: dict[str, Path],
    corpus_copy: Path,
    tmp_path: Path,
    original: Table,
    dropped: str,
) -> None:
    sheet = tmp_path / "council.csv"
    write_csv(sheet, without_column(council_rows(exported), dropped))
    assert_ok(invoke_kb("ingest", sheet, "--replace", corpus=corpus_copy))
    table = only_table(corpus_copy)
    (gone,) = [c for c in original.columns if c.organisation == dropped]
    # Every other column keeps its key and everything kb recorded that the sheet does not
    # state (reviewed titles and item numbers, notes), so only the dropped cells go.
    assert table.columns == [c for c in original.columns if c is not gone]
    assert table.source == original.source  # the sheet has no 出典 row: kept, not dropped
    old_ids = {c.id for c in chunks_of(original)}
    new_ids = {c.id for c in chunks_of(table)}
    assert new_ids < old_ids
    assert {i.split("-")[2] for i in old_ids - new_ids} == {gone.key}


def test_a_column_inserted_and_a_title_renamed_keep_the_other_columns_keys(
    invoke_kb,
    exported: dict[str, Path],
    corpus_copy: Path,
    tmp_path: Path,
    original: Table,
) -> None:
    old_item, new_item = (
        "６　医療的ケアに対応できる施設の拡大",
        "６　医療的ケアに対応できる事業所の拡大",
    )
    rows = [[new_item if c == old_item else c for c in r] for r in council_rows(exported)]
    added = ["厚木市消防本部", "体制構築", "30　体制構築　救急搬送の連携", "救急隊と共有した。"]
    rows = with_column(rows, "訪問看護ステーションもみじ", [*added, "－", "－", "連絡票を作る。"])
    sheet = tmp_path / "council.csv"
    write_csv(sheet, rows)
    assert_ok(invoke_kb("ingest", sheet, "--replace", corpus=corpus_copy))
    table = only_table(corpus_copy)
    new = table.columns[4]
    assert (new.key, new.organisation, new.item_nos, new.page) == ("c21", "厚木市消防本部", [30], 1)
    assert new.item_title == "救急搬送の連携"
    renamed = next(c for c in table.columns if c.key == "c06")
    assert renamed.item_title == "医療的ケアに対応できる事業所の拡大"
    assert renamed.text(Field.item) == new_item and renamed.item_nos == [6]
    expected = [copy.deepcopy(c) for c in original.columns]
    was = next(c for c in expected if c.key == "c06")
    was.cells[Field.item], was.item_title = new_item, "医療的ケアに対応できる事業所の拡大"
    assert [c for c in table.columns if c is not new] == expected


def _column(key: str, organisation: str, nos: tuple[int, ...] = (), title: str = "") -> Column:
    return Column(key=key, page=1, organisation=organisation, item_nos=list(nos), item_title=title)


def test_keys_pair_by_numbers_then_title_then_order_within_an_organisation() -> None:
    existing = Table(
        year=2017,
        council=COUNCIL,
        council_id="atsugi",
        source=Source(title="", document="", file=""),
        columns=[
            _column("c01", "A課", title="会議の開催"),
            _column("c02", "A課", title="研修"),
            _column("c03", "B課", nos=(8,)),
            _column("c04", "B課", nos=(9,), title="連絡票"),
            _column("c05", "C課", title="講演"),
        ],
    )
    read = [
        _column("", "A課", title="研修"),  # title: c02, though c01 comes first
        _column("", "A課", title="会議の運営"),  # renamed, only A課 column left: c01
        _column("", "B課", nos=(9,), title="連絡票の改訂"),  # number: c04
        _column("", "B課", nos=(10,)),  # number 8 ≠ 10: a new item, not c03
        _column("c05", "C課", title="講演"),  # keeps the key the sheet states
        _column("", "D課"),  # new organisation
    ]
    keyed = assign_keys(read, [set()] * len(read), existing)
    assert [c.key for c in keyed] == ["c02", "c01", "c04", "c06", "c05", "c07"]
    # Without a table to replace, keys follow the sheet's order, as before.
    fresh = assign_keys([_column("", "A課"), _column("", "B課")], [set(), set()], None)
    assert [c.key for c in fresh] == ["c01", "c02"]


# --- kb corpus -------------------------------------------------------------------------


def expected_pages() -> list[tuple[int, list[tuple[str, list[int]]]]]:
    """Pages → organisations in order with their item numbers, straight from the YAML."""
    pages = []
    for page, columns in groupby(raw_columns(), key=lambda c: c["page"]):
        organisations = []
        for name, group in groupby(columns, key=lambda c: c["organisation"]):
            items = []
            for c in group:
                no = c.get("item_no")
                items += no if isinstance(no, list) else [no] if no is not None else []
            organisations.append((name, items))
        pages.append((page, organisations))
    return pages


def test_corpus_command_lists_pages_organisations_items_and_field_counts(
    run_kb, corpus_copy: Path
) -> None:
    result = run_kb("corpus", corpus=corpus_copy)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert "年度: 2017" in lines[0] and "セル: 82" in lines[0]
    shown: list[tuple[int, list[tuple[str, list[int]]]]] = []
    for line in lines:
        if line.startswith("  ") and line.strip().endswith("ページ"):
            shown.append((int(line.strip().removesuffix("ページ")), []))
        elif line.startswith("    ") and "（項目 " in line:
            name, _, items = line.strip().rpartition("（項目 ")
            numbers = [] if items == "番号なし）" else [int(n) for n in items[:-1].split("、")]
            shown[-1][1].append((name, numbers))
    assert shown == expected_pages()
    assert len(shown) == 4
    assert "    厚木市立病院（項目 8、17）" in lines
    assert "    神奈川県リハビリテーション事業団（項目 5、10）" in lines
    counts = {f: sum(non_empty(c.get(f.value)) for c in raw_columns()) for f in FIELDS}
    assert f"  欄ごとのセル数: {'　'.join(f'{f.ja} {n}' for f, n in counts.items())}" in lines
    assert counts[Field.challenge] == 14


def test_corpus_command_json(run_kb, corpus_copy: Path) -> None:
    result = run_kb("corpus", "--json", corpus=corpus_copy)
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["years"] == [2017] and summary["councils"] == [COUNCIL]
    assert summary["cells"] == 82
    (table,) = summary["tables"]
    assert (table["columns"], table["organisations"]) == (20, 17)
    pages = [
        (p["page"], [(o["organisation"], o["items"]) for o in p["organisations"]])
        for p in table["pages"]
    ]
    assert pages == expected_pages()
    assert table["cells"] == {
        "item": 19,
        "progress": 19,
        "challenge": 14,
        "solution": 14,
        "next_year": 16,
    }


def test_corpus_check_passes_on_the_real_corpus(run_kb, corpus_copy: Path, digest) -> None:
    before = digest(corpus_copy)
    result = run_kb("corpus", "--check", corpus=corpus_copy)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "すべての表が元の文書と一致しました"
    assert digest(corpus_copy) == before


def test_corpus_check_json_carries_the_verdict(run_kb, corpus_copy: Path) -> None:
    result = run_kb("corpus", "--check", "--json", corpus=corpus_copy)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["check"] == {"2017-atsugi": []}


# --- texts a spreadsheet could take for something else ---------------------------------

# Cell texts that start like a formula (Excel runs =, +, -, @ in a CSV), a quote that is
# text, the empty marks, and a full-width space used as indentation: all must survive.
TRICKY = {
    ("c01", Field.progress): "=1+1 引き続き会議を開く",
    ("c01", Field.challenge): "+81 の番号に連絡する",
    ("c01", Field.solution): "-",
    ("c02", Field.item): "@担当者 へ連絡",
    ("c02", Field.solution): "'=既に引用符がある",
    ("c03", Field.progress): "\u3000引き続き研修を行う。\n\u3000二行目も字下げ",
    ("c03", Field.challenge): "-2 件減った",
    ("c03", Field.next_year): "－",
}


@pytest.fixture(scope="module")
def tricky_exports(run_kb, tmp_path_factory: pytest.TempPathFactory) -> tuple[Table, dict]:
    """The real table with the TRICKY texts, and its export in every format."""
    root = tmp_path_factory.mktemp("tricky")
    corpus = Path(shutil.copytree(CORPUS, root / "corpus"))
    table = load_table(TABLE)
    for column in table.columns:
        for (key, f), text in TRICKY.items():
            if column.key == key:
                column.cells[f] = text
    save_table(table, corpus / "tables" / TABLE.name)
    jobs = [
        partial(run_kb, "export", *options, "-o", root / name, corpus=corpus)
        for name, options in EXPORTS.items()
    ]
    for result in run_all(jobs):
        assert_ok(result)
    return load_table(corpus / "tables" / TABLE.name), {n: root / n for n in EXPORTS}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_texts_that_look_like_formulas_or_are_indented_read_back_exactly(
    invoke_kb, tricky_exports: tuple[Table, dict], empty_corpus: Path, name: str
) -> None:
    table, files = tricky_exports
    assert_ok(invoke_kb("ingest", files[name], corpus=empty_corpus))
    assert only_table(empty_corpus) == table
    back = {c.key: c for c in only_table(empty_corpus).columns}
    for (key, f), text in TRICKY.items():
        assert back[key].text(f) == text


@pytest.mark.parametrize("name", ["wide.xlsx", "long.xlsx"])
def test_xlsx_export_writes_every_text_as_a_string_never_a_formula(
    tricky_exports: tuple[Table, dict], name: str
) -> None:
    book = openpyxl.load_workbook(tricky_exports[1][name])
    types = {cell.data_type for ws in book.worksheets for row in ws.iter_rows() for cell in row}
    assert "f" not in types
    texts = {cell.value for ws in book.worksheets for row in ws.iter_rows() for cell in row}
    assert "=1+1 引き続き会議を開く" in texts


@pytest.mark.parametrize("name", ["wide.csv", "long.csv"])
def test_csv_export_quotes_cells_excel_would_run_as_formulas(
    tricky_exports: tuple[Table, dict], name: str
) -> None:
    text = tricky_exports[1][name].read_text(encoding="utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and c != "-"]
    assert risky == []
    assert "'=1+1 引き続き会議を開く" in cells
    assert "''=既に引用符がある" in cells
    assert "-" in cells  # a lone dash is an empty mark, not a formula: written as it is


def test_every_csv_kb_writes_is_guarded_the_agenda_download_included() -> None:
    # The agenda CSV (/themes.csv, kb themes --format csv) goes through csv_text too.
    from kb.sheets.sheet import csv_text

    assert (
        csv_text([["=HYPERLINK(1)", "-", "看護師不足", "@x"]])
        == "'=HYPERLINK(1),-,看護師不足,'@x\r\n"
    )


def with_cached_value(path: Path, formula: str, value: str) -> None:
    """Give the formula cell ``formula`` of an openpyxl-written workbook the cached value
    Excel saves beside it (openpyxl writes formulas without one)."""
    with zipfile.ZipFile(path) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    old = f"<f>{formula}</f><v />".encode()
    assert old in parts[sheet]
    parts[sheet] = parts[sheet].replace(old, f"<f>{formula}</f><v>{value}</v>".encode())
    with zipfile.ZipFile(path, "w") as book:
        for name, data in parts.items():
            book.writestr(name, data)


def test_a_council_formula_cell_takes_its_saved_value(
    invoke_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "council.xlsx"
    path.write_bytes(xlsx_bytes(edited(WIDE, 7, 1, "=1+1")))
    with_cached_value(path, "1+1", "2")
    assert_ok(invoke_kb("ingest", path, corpus=empty_corpus))
    assert only_table(empty_corpus).columns[0].text(Field.progress) == "2"


def test_a_formula_cell_without_a_saved_value_is_refused_not_emptied(
    run_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "council.xlsx"
    path.write_bytes(xlsx_bytes(edited(WIDE, 7, 1, "=1+1")))
    result = run_kb("ingest", path, corpus=empty_corpus)
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert "7行目" in result.stderr and "B列" in result.stderr, result.stderr
    assert "数式" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (empty_corpus / "tables").exists()


def test_a_full_width_space_around_a_name_is_dropped_but_kept_in_a_cell(
    invoke_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    sheet = tmp_path / "wide.csv"
    rows = edited(edited(WIDE, 1, 1, "\u3000テスト会議\u3000"), 8, 1, "\u3000課題A。")
    sheet.write_bytes(csv_bytes(rows))
    assert_ok(invoke_kb("ingest", sheet, corpus=empty_corpus))
    table = only_table(empty_corpus)
    assert table.council == "テスト会議"
    assert table.columns[0].text(Field.challenge) == "\u3000課題A。"


@pytest.mark.parametrize(
    ("written", "year"),
    [
        ("2018", 2018),
        ("2018年度", 2018),
        ("平成30年度", 2018),
        ("平成30", 2018),
        ("H30", 2018),
        ("Ｈ３０年度", 2018),
        ("R1", 2019),
        ("令和元年度", 2019),
        ("R元年度", 2019),
    ],
)
def test_a_year_row_reads_the_ways_offices_write_a_year(
    invoke_kb, empty_corpus: Path, tmp_path: Path, written: str, year: int
) -> None:
    """「H30」 and 「平成30」 in the 年度 row were refused as unreadable."""
    path = tmp_path / "wide.csv"
    path.write_bytes(csv_bytes(edited(WIDE, 2, 1, written)))
    assert_ok(invoke_kb("ingest", path, corpus=empty_corpus))
    assert only_table(empty_corpus).year == year


def test_a_title_abbreviating_its_era_gives_the_year(
    invoke_kb, empty_corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(csv_bytes([["H30年度取組み進捗状況一覧"], WIDE[0], *WIDE[2:]]))
    assert_ok(invoke_kb("ingest", path, corpus=empty_corpus))
    assert only_table(empty_corpus).year == 2018


def test_ingest_notes_a_title_of_another_year_and_a_new_council(
    run_kb, empty_corpus: Path, corpus_copy: Path, tmp_path: Path
) -> None:
    """What the admin upload asks to confirm, kb ingest says after the fact on stderr."""
    path = tmp_path / "wide.csv"
    path.write_bytes(csv_bytes([*WIDE[:2], ["表題", "平成29年度取組み進捗状況一覧"], *WIDE[2:]]))
    first = run_kb("ingest", path, corpus=empty_corpus)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[1:] == [
        "注意: 表題には平成29年度（2017年度）と書かれていますが、2018年度の表として取り込みました"
        "（--year か「年度」の行を確かめてください）"
    ]
    path.write_bytes(csv_bytes(WIDE))
    second = run_kb("ingest", path, corpus=corpus_copy)
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines()[1:] == [
        "注意: 会議「テスト会議」の表はこれまでありませんでした。新しい会議の表として取り込みました"
        "（今ある会議：厚木地域小児等在宅医療連絡会議）"
    ]
