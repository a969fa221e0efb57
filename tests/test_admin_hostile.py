"""Hostile uploads: zip bombs, renamed binaries, oversize bodies, formulas, random bytes and
random sheets. Each gets a clear 4xx answer in one Japanese line, the corpus stays as it
was, memory stays bounded, and the server keeps answering searches."""

from __future__ import annotations

import bz2
import csv
import io
import json
import os
import resource
import struct
import zipfile
import zlib

import openpyxl
import pytest
import yaml
from admin_helpers import FY2018_CSV, FY2018_XLSX, sign_in
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kb.admin.uploads import MAX_UPLOAD_BYTES
from kb.core.model import MAX_CELL_CHARS

CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"/>'
)

# Fixtures ``settings``, ``client`` and ``token``: tests/admin_helpers.py (a conftest plugin).


def _upload(client, data: bytes, name: str, headers: dict):
    return client.post("/api/admin/tables", files={"file": (name, data)}, headers=headers)


def _refused(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error and "\n" not in error and "Traceback" not in error
    return error


def _searches(client) -> None:
    hits = client.get("/api/search", params={"q": "看護師不足"})
    assert hits.status_code == 200 and hits.json()["hits"]


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- building archives ---------------------------------------------------------------------


def _raw_zip(entries: list[tuple[str, int, int, bytes, int]]) -> bytes:
    """A zip of (name, method, crc32, compressed bytes, uncompressed size) entries, all of
    whose directory records may point at the same local data (repeated names are written
    once): the overlapping-entries construction of zip bombs."""
    out, central, offsets = io.BytesIO(), [], {}
    for name, method, crc, data, size in entries:
        key = (method, crc, data, size)
        if key not in offsets:
            offsets[key] = out.tell()
            encoded = name.encode()
            out.write(
                struct.pack(
                    "<IHHHHHIIIHH",
                    0x04034B50,
                    20,
                    0,
                    method,
                    0,
                    0,
                    crc,
                    len(data),
                    size,
                    len(encoded),
                    0,
                )
            )
            out.write(encoded + data)
        encoded = name.encode()
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offsets[key],
            )
            + encoded
        )
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), start, 0
        )
    )
    return out.getvalue()


def _stored(name: str, data: bytes) -> tuple[str, int, int, bytes, int]:
    return (name, zipfile.ZIP_STORED, zlib.crc32(data), data, len(data))


@pytest.fixture(scope="module")
def bz2_zeros() -> tuple[int, bytes, int]:
    """(crc32, bzip2 stream, size) of 64 MiB of zeros: about 100 bytes."""
    size, chunk = 64 << 20, bytes(1 << 22)
    compressor, crc = bz2.BZ2Compressor(9), 0
    parts = []
    for _ in range(size // len(chunk)):
        parts.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(compressor.flush())
    return crc, b"".join(parts), size


def _workbook(rows: list[list[str]], merge: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    if merge:
        book.active.merge_cells(merge)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _rezip(data: bytes, edit) -> bytes:
    """``data`` (an xlsx) with each entry's bytes passed through ``edit(name, bytes)``."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, edit(info.filename, source.read(info)))
    return out.getvalue()


def _fy2018_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO(FY2018_CSV.read_text(encoding="utf-8-sig"))))


# --- bombs -------------------------------------------------------------------------------------


def test_a_10_kb_zip_bomb_is_refused_before_expansion(client, settings, token, bz2_zeros, digest):
    """32 directory entries over one bzip2 stream of zeros: 2 GiB declared in a few KB."""
    crc, stream, size = bz2_zeros
    bomb = _raw_zip(
        [
            _stored("[Content_Types].xml", CONTENT_TYPES),
            _stored("xl/workbook.xml", b"<workbook/>"),
            *[
                (f"xl/worksheets/sheet{i}.xml", zipfile.ZIP_BZIP2, crc, stream, size)
                for i in range(32)
            ],
        ]
    )
    assert len(bomb) < 10_000
    assert sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(bomb)).infolist()) >= 2 << 30
    corpus = digest(settings.corpus_dir)
    rss = _max_rss_mb()
    error = _refused(_upload(client, bomb, "bomb.xlsx", token))
    assert "展開すると大きすぎる" in error and "bomb.xlsx" in error
    assert _max_rss_mb() - rss < 100  # nothing was expanded
    assert digest(settings.corpus_dir) == corpus
    _searches(client)


def test_a_deflate_bomb_and_a_merge_bomb_are_refused(client, token):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros, size = bytes(1 << 22), 256 << 20
    stream = (
        b"".join(compressor.compress(zeros) for _ in range(size // len(zeros))) + compressor.flush()
    )
    crc = 0
    for _ in range(size // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    deflated = _raw_zip(
        [
            _stored("[Content_Types].xml", CONTENT_TYPES),
            _stored("xl/workbook.xml", b"<workbook/>"),
            ("xl/worksheets/sheet1.xml", zipfile.ZIP_DEFLATED, crc, stream, size),
        ]
    )
    assert "展開すると大きすぎる" in _refused(_upload(client, deflated, "zeros.xlsx", token))
    # One merged range over a whole sheet: openpyxl would allocate 17 billion cells.
    merged = _rezip(
        _workbook([["団体名", "A"]], merge="B1:C1"),
        lambda name, data: data.replace(b'ref="B1:C1"', b'ref="B1:XFD1048576"'),
    )
    assert "シートの範囲が大きすぎます" in _refused(_upload(client, merged, "merged.xlsx", token))
    far = _rezip(
        _workbook([["団体名", "A"]]),
        lambda name, data: (
            data.replace(b'r="B1"', b'r="XFD1000000"') if "worksheets" in name else data
        ),
    )
    assert "シートの範囲が大きすぎます" in _refused(_upload(client, far, "far.xlsx", token))
    _searches(client)


# --- what the bytes really are ---------------------------------------------------------------


def test_renamed_and_foreign_files_are_refused(client, token):
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    assert "中身が Excel（.xlsx） のファイルではありません" in _refused(
        _upload(client, png, "table.xlsx", token)
    )
    assert "CSV として読めません" in _refused(_upload(client, png, "table.csv", token))
    elf = b"\x7fELF" + bytes(100) + os.urandom(500)
    assert "CSV として読めません" in _refused(_upload(client, elf, "data", token))
    assert "中身が CSV のファイルではありません" in _refused(
        _upload(client, FY2018_XLSX.read_bytes(), "table.csv", token)
    )
    docx = _raw_zip(
        [_stored("[Content_Types].xml", CONTENT_TYPES), _stored("word/document.xml", b"<d/>")]
    )
    assert "Excel（.xlsx）の形式ではありません" in _refused(
        _upload(client, docx, "report.xlsx", token)
    )
    xls = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000)
    assert ".xls" in _refused(_upload(client, xls, "old.xlsx", token))
    assert "対応していない形式" in _refused(_upload(client, b"a,b\n", "notes.pdf", token))
    assert "空です" in _refused(_upload(client, b"", "empty.csv", token))
    _searches(client)


def test_unknown_row_label_names_file_row_and_column(client, token):
    rows = _fy2018_rows()
    row = next(i for i, r in enumerate(rows) if r and r[0].startswith("(４)"))
    rows[row][0] = "よくわからない行"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    error = _refused(_upload(client, out.getvalue().encode("cp932", "replace"), "sjis.csv", token))
    assert (
        error.startswith(f"sjis.csv（{row + 1}行目、A列）")
        and "不明な行見出し「よくわからない行」" in error
    )


@pytest.mark.parametrize("length", [MAX_CELL_CHARS + 1, 140_000])
def test_a_too_long_cell_names_file_row_column_and_the_limit(client, token, length):
    """The cell editor's limit holds for uploads too; past the csv module's own limit
    (131,072) the upload was once refused as an unreadable Excel file."""
    rows = _fy2018_rows()
    row = next(i for i, r in enumerate(rows) if r and r[0].startswith("(２)"))
    rows[row][2] = "進" * length
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    error = _refused(_upload(client, out.getvalue().encode(), "long.csv", token))
    assert error == (
        f"long.csv（{row + 1}行目、C列）: セルが長すぎます（{length:,}文字。"
        f"1つのセルは{MAX_CELL_CHARS:,}文字までです）"
    )


def test_the_upload_name_is_never_a_path(client, settings, token):
    body = _upload(client, FY2018_CSV.read_bytes(), "../../corpus/tables/evil.csv", token).json()
    assert body["file"] == "evil.csv" and body["added"] > 0
    assert not list(settings.corpus_dir.parent.rglob("evil*"))
    # Nor the council id a sheet declares, which names the table file.
    rows = [["会議ID", "../../escape"] if r[:1] == ["会議ID"] else r for r in _fy2018_rows()]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert "会議ID「../../escape」は使えません" in _refused(
        _upload(client, out.getvalue().encode(), "x.csv", token)
    )
    # One line whatever the id holds (it was printed as it was, line break included).
    rows = [["会議ID", "atsugi\nevil"] if r[:1] == ["会議ID"] else r for r in _fy2018_rows()]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert "会議ID「atsugi\\nevil」は使えません" in _refused(
        _upload(client, out.getvalue().encode(), "x.csv", token)
    )


def test_formulas_are_never_evaluated(client, token):
    book = openpyxl.load_workbook(FY2018_XLSX)
    sheet = book.worksheets[0]
    row = next(r for r in sheet.iter_rows() if str(r[0].value or "").startswith("(２)"))
    row[1].value = "=1+1"
    row[2].value = '=WEBSERVICE("http://127.0.0.1:9/leak")'
    out = io.BytesIO()
    book.save(out)
    # Saved by a program, the formulas have no value Excel computed: refused, naming the
    # first one's cell, rather than evaluated or read as empty cells.
    error = _refused(_upload(client, out.getvalue(), "formulas.xlsx", token))
    assert "数式で、計算した値が保存されていません" in error
    assert f"{row[1].row}行目、B列" in error


def test_oversize_bodies_are_refused_unread_stated_or_chunked(client, token):
    big = b"a," * (MAX_UPLOAD_BYTES // 2 + 100_000)
    assert "10 MB まで" in _refused(_upload(client, big, "big.csv", token), 413)
    client.post("/admin/login")  # any page; the upload page answers in HTML:
    page = client.post("/admin/upload", files={"file": ("big.csv", big)})
    assert page.status_code == 413 and "10 MB まで" in page.text
    # An admin error: a way back to the upload form, not the public search box.
    sign_in(client)
    page = client.post("/admin/upload", files={"file": ("big.csv", big)})
    assert page.status_code == 413 and "10 MB まで" in page.text
    assert '<a href="/admin/upload" class="back-link">表のアップロードに戻る</a>' in page.text
    assert 'role="search"' not in page.text and "ログアウト" in page.text
    # A chunked body states no length: the bytes that arrive are counted instead (that the
    # rest is never read is shown over a real socket in test_body_limit.py).
    chunks = iter([b"--x\r\n", *[b"x" * 1024 * 1024] * 11])
    chunked = client.post(
        "/api/admin/tables",
        content=chunks,
        headers={**token, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert "10 MB まで" in _refused(chunked, 413)
    _searches(client)


# --- random input ---------------------------------------------------------------------------

LABELS = [
    "団体名", "課題区分", "(１)項目・内容", "(２)進捗状況", "(３)見えてきた課題",
    "(４)解決策・話し合いたいこと", "(５)来年度以降の取組み", "年度", "会議", "会議ID",
    "表題", "項目番号", "項目名", "列キー", "ページ", "メモ", "", "内容", "欄", "感想",
]  # fmt: skip
NAMES = ["t.xlsx", "t.csv", "t", "t.CSV", "../t.xlsx", "a\x00b.csv", "表.xlsx", "t.txt", "t.yaml"]
HYPOTHESIS = hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def _check_answer(response) -> None:
    assert response.status_code in (200, 413, 422), (response.status_code, response.text[:300])
    body = response.json()
    assert (
        ("id" in body and "cells" in body)
        if response.status_code == 200
        else "\n" not in body["error"]
    )


@HYPOTHESIS
@given(data=st.binary(max_size=4000), name=st.sampled_from(NAMES), zip_head=st.booleans())
def test_random_bytes_never_give_5xx(client, token, data, name, zip_head):
    if zip_head:  # get past the first check more often
        data = b"PK\x03\x04" + data
    _check_answer(_upload(client, data, name, token))


sheets = st.lists(
    st.tuples(st.sampled_from(LABELS), st.lists(st.text(max_size=25), max_size=4)),
    min_size=1,
    max_size=14,
).map(lambda rows: [[label, *cells] for label, cells in rows])


@HYPOTHESIS
@given(
    rows=sheets,
    head=st.booleans(),
    form=st.sampled_from(["utf-8", "cp932", "xlsx"]),
    year=st.sampled_from(["", "2018", "１９", "abc", "99999"]),
)
def test_random_valid_looking_sheets_never_give_5xx(client, token, rows, head, form, year):
    if head:
        rows = [["年度", "2018"], ["会議", "架空の連絡会議"], *rows]
    if form == "xlsx":
        try:
            data, name = _workbook(rows), "random.xlsx"
        except (ValueError, openpyxl.utils.exceptions.IllegalCharacterError):
            return  # openpyxl cannot even write it
    else:
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        data, name = out.getvalue().encode(form, "replace"), "random.csv"
    response = client.post(
        "/api/admin/tables", files={"file": (name, data)}, data={"year": year}, headers=token
    )
    _check_answer(response)


# Table-shaped YAML: the keys a table file has, with any values, nested a little.
_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_column_keys = st.sampled_from(
    ["key", "page", "organisation", "item_no", "continues", "challenge", "notes", "x"]
)
yaml_tables = st.fixed_dictionaries(
    {
        "year": st.one_of(st.integers(1800, 2200), st.text(max_size=6), st.none()),
        "council": st.text(max_size=10),
        "council_id": st.text(max_size=10),
        "columns": st.one_of(
            st.lists(st.dictionaries(_column_keys, _yaml_values, max_size=6), max_size=4),
            _yaml_values,
        ),
    },
    optional={"source": _yaml_values},
)


@HYPOTHESIS
@given(table=yaml_tables)
def test_random_table_yaml_never_gives_5xx(client, token, table):
    data = yaml.safe_dump(table, allow_unicode=True).encode()
    _check_answer(_upload(client, data, "t.yaml", token))


def test_yaml_uploads_refuse_aliases_and_renamed_files(client, token):
    """A few bytes of anchors and aliases can stand for millions of columns."""
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    bomb = f"year: 2019\ncouncil: x\ncouncil_id: x\n{laughs}columns: *i\n".encode()
    assert _refused(_upload(client, bomb, "laughs.yaml", token)) == (
        "laughs.yaml: YAML のアンカーとエイリアス（& と *）は使えません"
    )
    assert "中身が YAML のファイルではありません" in _refused(
        _upload(client, FY2018_XLSX.read_bytes(), "table.yaml", token)
    )
    assert "YAML として読めません" in _refused(
        _upload(client, b"\x7fELF" + bytes(100), "t.yml", token)
    )
    assert "t.yaml（3行目）: YAML として読めません" in _refused(
        _upload(client, b"year: 2019\ncolumns: [\n", "t.yaml", token)
    )
    # Bytes libyaml reads but PyYAML's own scanner does not (a tab): one reader for both.
    assert _upload(client, b"(\t\x88\x9f", "t.yaml", token).status_code == 422
    _searches(client)


def test_random_input_leaves_the_corpus_and_search_alone(client, settings, token, digest):
    corpus = digest(settings.corpus_dir)
    for name in NAMES:
        _check_answer(_upload(client, os.urandom(3000), name, token))
    assert digest(settings.corpus_dir) == corpus
    assert json.loads(client.get("/api/admin/history", headers=token).text) == []
    _searches(client)
