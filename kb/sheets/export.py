"""Write corpus tables back out: wide sheets (.xlsx / .csv), long CSV, and JSON lines.

Wide and long files written here read back through :mod:`kb.sheets.ingest` into the same table,
judgement notes and column keys included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import groupby

from kb.core.fields import FIELDS
from kb.core.model import NOTE_COLUMN, Column, Table, chunks_of
from kb.sheets.layout import (
    EXTRA_ROWS,
    LONG_COLUMNS,
    META_ROWS,
    format_item_nos,
    format_notes,
)
from kb.sheets.sheet import Sheet


def _meta_rows(table: Table) -> list[list[str]]:
    values = {
        "council": table.council,
        "council_id": table.council_id,
        "year": str(table.year),
        "document": table.source.document,
        "title": table.source.title,
        "file": table.source.file,
    }
    return [[label, values[attr]] for label, attr in META_ROWS.items()]


def _extra_value(column: Column, attr: str) -> str:
    return {
        "item_no": format_item_nos(column.item_nos),
        "item_title": column.item_title,
        "continues": column.continues or "",
        "key": column.key,
        "page": str(column.page),
        "notes": format_notes(column.notes),
    }[attr]


def _block(columns: list[Column]) -> tuple[list[list[str]], set[int]]:
    """Rows of one page's grid, and the 0-based columns whose heading merges leftwards."""
    rows = [["団体名", *("" if c.shares_heading else c.organisation for c in columns)]]
    rows.append(["課題区分", *(c.category for c in columns)])
    rows += [[f.label, *(c.text(f) for c in columns)] for f in FIELDS]
    rows += [
        [label, *(_extra_value(c, attr) for c in columns)] for label, attr in EXTRA_ROWS.items()
    ]
    return rows, {i + 1 for i, c in enumerate(columns) if c.shares_heading}


def _pages(table: Table) -> list[list[Column]]:
    return [list(cols) for _, cols in groupby(table.columns, key=lambda c: c.page)]


def wide_sheets(table: Table) -> list[Sheet]:
    """One sheet per page; the first carries the table's metadata rows above its grid."""
    sheets = []
    for n, columns in enumerate(_pages(table)):
        top = [*_meta_rows(table), []] if n == 0 else []
        block, merged = _block(columns)
        sheets.append(
            Sheet(
                name=f"{columns[0].page}ページ",
                rows=top + block,
                merged_from_left={(len(top), c) for c in merged},
            )
        )
    return sheets


def wide_csv_rows(table: Table) -> list[list[str]]:
    """All pages stacked in one grid, a blank row between blocks (CSV has no sheets)."""
    rows: list[list[str]] = [*_meta_rows(table), []]
    for columns in _pages(table):
        rows += [*_block(columns)[0], []]
    return rows


def long_rows(table: Table) -> list[list[str]]:
    """One row per cell of ``table`` (empty cells included, so a column's shape survives)."""
    header = [names[0] for names in LONG_COLUMNS.values()]
    rows = [header]
    for column in table.columns:
        for f in FIELDS:
            values = {
                "year": str(table.year),
                "council": table.council,
                "council_id": table.council_id,
                "document": table.source.document,
                "title": table.source.title,
                "file": table.source.file,
                "page": str(column.page),
                "key": column.key,
                "organisation": column.organisation,
                "item_no": format_item_nos(column.item_nos),
                "item_title": column.item_title,
                "continues": column.continues or "",
                "category": column.category,
                "shares_heading": "1" if column.shares_heading else "",
                "field": f.value,
                "text": column.text(f),
                "note": column.notes.get(f.value, ""),
                "column_note": column.notes.get(NOTE_COLUMN, ""),
            }
            rows.append([values[attr] for attr in LONG_COLUMNS])
    return rows


def jsonl_lines(tables: list[Table]) -> Iterator[str]:
    """One JSON object per non-empty cell of ``tables``, in their order."""
    for table in tables:
        for chunk in chunks_of(table):
            yield json.dumps(chunk.as_dict(), ensure_ascii=False)
