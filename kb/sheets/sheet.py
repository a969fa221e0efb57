"""Read and write spreadsheets (.xlsx, .csv) as plain grids of strings.

This module knows about files, encodings and merged cells, nothing about councils: the
layouts are interpreted by :mod:`kb.sheets.ingest` and produced by :mod:`kb.sheets.export`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import openpyxl
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from kb.core.errors import InputError
from kb.core.model import too_long
from kb.core.text import EMPTY_MARKS

SUPPORTED = (".xlsx", ".csv")
# Japanese offices save CSV as UTF-8 (often with a BOM, Excel's "CSV UTF-8") or as
# Shift_JIS; cp932 is Microsoft's Shift_JIS with the NEC/IBM extensions Excel writes.
CSV_ENCODINGS = ("utf-8-sig", "cp932")
# A CSV cell Excel would run as a formula (OWASP "CSV injection"): one starting with one of
# these, after any quotes. Such a cell is written with one more leading quote, which Excel
# shows as text and ingest takes off again, so a text round-trips exactly.
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")
# What _clean strips from a cell's ends: ASCII whitespace left by editing, never the
# full-width space (U+3000) Japanese writers indent a line with.
_NOISE = " \t\n\r\v\f"


@dataclass
class Sheet:
    """One worksheet (or a whole CSV file) as rows of cell strings."""

    name: str
    rows: list[list[str]]
    # (row, col) cells, 0-based, covered by a merge that starts further left.
    merged_from_left: set[tuple[int, int]] = field(default_factory=set)
    # xlsx records merges; CSV cannot, so there a blank cell may stand for one.
    knows_merges: bool = False
    hidden: bool = False  # a worksheet hidden in Excel (a CSV never is)

    def cell(self, row: int, col: int) -> str:
        line = self.rows[row]
        return line[col] if col < len(line) else ""

    @property
    def width(self) -> int:
        return max((len(r) for r in self.rows), default=0)


def column_letter(col: int) -> str:
    """0-based column index → spreadsheet letter, as users see it (0 → "A列")."""
    return f"{get_column_letter(col + 1)}列"


def read_sheets(path: Path) -> list[Sheet]:
    """Read every sheet of ``path``; raise InputError for empty, unreadable or unknown files."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError(
            "対応していない形式です。.xlsx か .csv のファイルを指定してください", file=str(path)
        )
    if not path.exists():
        raise InputError("ファイルが見つかりません", file=str(path))
    if path.stat().st_size == 0:
        raise InputError("ファイルが空です", file=str(path))
    sheets = _read_csv(path) if suffix == ".csv" else _read_xlsx(path)
    _check_cell_lengths(sheets, str(path))
    if not any(any(cell for cell in row) for sheet in sheets for row in sheet.rows):
        raise InputError("ファイルに表がありません（すべてのセルが空です）", file=str(path))
    return sheets


def _decode(path: Path) -> str:
    data = path.read_bytes()
    for encoding in CSV_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InputError(
        "文字コードを読み取れません。UTF-8 か Shift_JIS で保存し直してください", file=str(path)
    )


def _read_csv(path: Path) -> list[Sheet]:
    text = _decode(path)
    # The csv module refuses a field past its limit (128 KiB) without saying where; its limit
    # guards memory when a file is streamed, but the whole text is in memory already, so let
    # a cell be as long as the text and name a too-long cell in _check_cell_lengths instead.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    rows = [
        [_unquote(_clean(cell)) for cell in row]
        for row in csv.reader(io.StringIO(text, newline=""))
    ]
    return [Sheet(name=path.name, rows=rows)]


def _check_cell_lengths(sheets: list[Sheet], file: str) -> None:
    """Refuse the first cell longer than MAX_CELL_CHARS, naming its row and column (and its
    sheet, in a workbook of several)."""
    for sheet in sheets:
        for r, row in enumerate(sheet.rows):
            for c, cell in enumerate(row):
                if problem := too_long(cell):
                    raise InputError(
                        problem,
                        file=file,
                        row=r + 1,
                        column=column_letter(c),
                        sheet=sheet.name if len(sheets) > 1 else None,
                    )


def _read_xlsx(path: Path) -> list[Sheet]:
    try:
        # data_only: formulas are never evaluated, the value Excel saved is read instead;
        # the formulas themselves are read too, to refuse one saved without a value.
        book = openpyxl.load_workbook(path, data_only=True, keep_links=False)
        formulas = (
            openpyxl.load_workbook(path, keep_links=False) if _has_formula_element(path) else None
        )
    except (InvalidFileException, zipfile.BadZipFile, KeyError) as exc:
        # Not a zip, or a zip without a workbook's parts: the library's English says which.
        raise InputError(
            "Excel ファイルとして開けません。中身が Excel（.xlsx）の形式ではありません"
            "（別の種類のファイルの名前を .xlsx に変えたものかもしれません）",
            file=str(path),
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(
            "Excel ファイルとして開けません。ファイルが壊れているか、読めない内容があります。"
            "Excel で開いて保存し直してください",
            file=str(path),
        ) from exc
    if formulas is not None:
        _check_formulas(book, formulas, str(path))
    sheets = []
    for ws in book.worksheets:
        rows = [[_clean(cell) for cell in row] for row in ws.iter_rows(values_only=True)]
        merged = {
            (r - 1, c - 1)
            for rng in ws.merged_cells.ranges
            for r in range(rng.min_row, rng.max_row + 1)
            for c in range(rng.min_col + 1, rng.max_col + 1)
        }
        sheets.append(
            Sheet(
                name=ws.title,
                rows=rows,
                merged_from_left=merged,
                knows_merges=True,
                hidden=ws.sheet_state != "visible",
            )
        )
    return sheets


# A formula element (<f>, <f t="shared" …/>, or namespaced <x:f>) in a workbook part.
_FORMULA_ELEMENT = re.compile(rb"<(?:\w+:)?f[\s>/]")


def _has_formula_element(path: Path) -> bool:
    """Whether any XML part of the workbook has a formula element: a cheap scan that spares
    a second parse of the (usual) workbook without one."""
    with zipfile.ZipFile(path) as book:
        return any(
            _FORMULA_ELEMENT.search(book.read(name))
            for name in book.namelist()
            if name.endswith(".xml")
        )


def _check_formulas(values: openpyxl.Workbook, formulas: openpyxl.Workbook, file: str) -> None:
    """Refuse the first formula cell saved without its value (a workbook written by a
    program rather than Excel): read as values it would be silently empty."""
    for ws, ws_formulas in zip(values.worksheets, formulas.worksheets, strict=True):
        for row in ws_formulas.iter_rows():
            for cell in row:
                if cell.data_type == "f" and ws.cell(cell.row, cell.column).value is None:
                    raise InputError(
                        "セルが数式で、計算した値が保存されていません。Excel で開いて"
                        "保存し直すか、数式を値に置き換えてください",
                        file=file,
                        row=cell.row,
                        column=column_letter(cell.column - 1),
                        sheet=ws.title if len(values.worksheets) > 1 else None,
                    )


def _clean(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).replace("\r\n", "\n").replace("\r", "\n").strip(_NOISE)


def _quoted(text: str) -> str:
    """A CSV cell Excel cannot run: ``text`` with a leading quote if it starts like a
    formula (a lone empty mark such as "-" is not one, and stays as councils write it)."""
    return f"'{text}" if _FORMULA_START.match(text) and text not in EMPTY_MARKS else text


def _unquote(text: str) -> str:
    """Inverse of :func:`_quoted`: one leading quote off a cell that starts like a formula."""
    return text[1:] if text.startswith("'") and _FORMULA_START.match(text[1:]) else text


# --- writing ---------------------------------------------------------------------------


def csv_text(rows: list[list[str]]) -> str:
    """``rows`` as CSV text; cells that start like a formula are quoted (:func:`_quoted`),
    so neither an export nor an agenda download can run a formula in Excel."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([[_quoted(c) for c in r] for r in rows])
    return out.getvalue()


def write_csv(path: Path, rows: list[list[str]]) -> None:
    """UTF-8 with a BOM, so Excel on a Japanese PC opens it without garbling."""
    path.write_text(csv_text(rows), encoding="utf-8-sig", newline="")


def write_xlsx(path: Path | IO[bytes], sheets: list[Sheet]) -> None:
    """Write sheets to a file or a binary stream, merging each run of cells marked
    ``merged_from_left`` into its left cell."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for sheet in sheets:
        ws = book.create_sheet(sheet.name[:31])
        for row in sheet.rows:
            ws.append(row)
        _as_text(ws)
        for r, c in sorted(sheet.merged_from_left):
            if (r, c - 1) not in sheet.merged_from_left:
                end = c
                while (r, end + 1) in sheet.merged_from_left:
                    end += 1
                ws.merge_cells(start_row=r + 1, start_column=c, end_row=r + 1, end_column=end + 1)
        _style(ws)
    book.save(path)


def _as_text(ws: openpyxl.worksheet.worksheet.Worksheet) -> None:
    """Make every cell text: openpyxl takes a string starting with "=" for a formula, which
    Excel would run and which reads back empty."""
    for row in ws.iter_rows():
        for cell in row:
            if cell.data_type == "f":
                cell.data_type = "s"


def _style(ws: openpyxl.worksheet.worksheet.Worksheet) -> None:
    ws.column_dimensions["A"].width = 22
    for col in range(2, ws.max_column + 1):
        ws.column_dimensions[get_column_letter(col)].width = 36
    for row in ws.iter_rows():
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    for cell in ws["A"]:
        cell.font = Font(bold=True)
