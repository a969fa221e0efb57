"""Items across years: which columns of a council's yearly tables are the same item.

An item is identified by council, agency (organisation without its circled number) and
item number, so 厚木市障がい福祉課① item 6 of FY2017 and of FY2018 are one item. A column
may override this with ``continues: <key>``, the key of the column it continues in the
council's previous table (the latest earlier year), for an item that was renumbered; the
link then carries on to later years under the new number.

:class:`ItemHistory` answers, for a cell, every cell of its item year by year
(``kb history``, ``/api/cells/{id}/history``, the cell page's timeline) and which item a
cell belongs to (folding search results across years).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby

from kb.core.errors import CellNotFound
from kb.core.model import Chunk, Column, ColumnView, Placement, Table, column_views


def _previous_years(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
    """(council id, year) → the same council's latest earlier year (None for its first)."""
    previous: dict[tuple[str, int], int | None] = {}
    last: dict[str, int] = {}
    for council_id, year in sorted(set(pairs)):
        previous[(council_id, year)] = last.get(council_id)
        last[council_id] = year
    return previous


def broken_links(tables: list[Table]) -> list[tuple[Table, Column, str]]:
    """Columns whose ``continues`` names no column of the council's previous table, each
    with a Japanese sentence saying what is wrong."""
    by_year = {(t.council_id, t.year): t for t in tables}
    previous = _previous_years(by_year)
    problems = []
    for table in tables:
        year = previous[(table.council_id, table.year)]
        before = by_year[(table.council_id, year)] if year is not None else None
        keys = {c.key for c in before.columns} if before else set()
        for column in table.columns:
            if not column.continues or column.continues in keys:
                continue
            if before is None:
                message = (
                    f"継続元（continues: {column.continues}）がありますが、この会議には"
                    f"{table.year}年度より前の表がありません"
                )
            else:
                message = (
                    f"継続元（continues: {column.continues}）は {before.year}年度の表"
                    f"（{before.slug}）にない列キーです"
                )
            problems.append((table, column, message))
    return problems


def _chunks(view: ColumnView) -> list[Chunk]:
    """The column's indexed cells as chunks (the shape search and ``kb export`` use)."""
    placement = {name: getattr(view, name) for name in Placement.__dataclass_fields__}
    key = view.id.removeprefix(f"{view.year}-{view.council_id}-")
    return [
        Chunk(id=cell.id, text=cell.text, field=cell.field, column_key=key, **placement)
        for cell in view.filled
    ]


@dataclass(frozen=True)
class ItemYear:
    """The cells of one item in one year (several columns' cells if it had several)."""

    year: int
    cells: list[Chunk]


@dataclass(frozen=True)
class ItemTimeline:
    """One item year by year; ``agency`` and ``item_no`` as in its latest year."""

    council: str
    agency: str
    item_no: int | None
    years: list[ItemYear]

    def as_dict(self) -> dict:
        """The JSON of ``kb history --json``; cells in the ``kb export --format jsonl`` shape."""
        return {
            "council": self.council,
            "agency": self.agency,
            "item_no": self.item_no,
            "years": [
                {"year": y.year, "cells": [c.as_dict() for c in y.cells]} for y in self.years
            ],
        }

    def plans_and_progress(self) -> list[tuple[ItemYear, ItemYear]]:
        """(earlier year, next year) pairs, for showing a year's 来年度 plan beside the
        following year's 進捗 ("planned → done")."""
        return list(zip(self.years, self.years[1:], strict=False))


class ItemHistory:
    """Which item every column belongs to, and each item's cells by year.

    Built from column views: the build's stored columns (pages, API, folded search) or a
    corpus's tables (:meth:`of_tables`, for ``kb history``), so both give the same answers.
    """

    def __init__(self, columns: Iterable[ColumnView]) -> None:
        views = list(columns)
        self._item_of: dict[str, int] = {}  # column id → item number
        # Per council: (agency, item number) → the item that last used it.
        self._latest: dict[str, dict[tuple[str, int | None], int]] = {}
        self._count = 0
        years: dict[tuple[str, int], list[ColumnView]] = {}
        for view in views:
            years.setdefault((view.council_id, view.year), []).append(view)
        previous = _previous_years(years)
        for (council_id, year), same_table in sorted(years.items(), key=lambda kv: kv[0][1]):
            before = previous[(council_id, year)]
            self._link(council_id, same_table, f"{before}-{council_id}-" if before else None)
        self._cells: dict[int, list[Chunk]] = {}
        self._chunk: dict[str, Chunk] = {}
        for view in views:
            for chunk in _chunks(view):
                self._cells.setdefault(self._item_of[view.id], []).append(chunk)
                self._chunk[chunk.id] = chunk

    @classmethod
    def of_tables(cls, tables: Iterable[Table]) -> ItemHistory:
        return cls(view for table in tables for view in column_views(table))

    def _link(self, council_id: str, views: list[ColumnView], before: str | None) -> None:
        """Give each column of one table the item of the column it continues: the one named
        by ``continues`` in the previous table (whose column ids start with ``before``),
        else the latest earlier column of the council with its agency and item number."""
        latest = self._latest.setdefault(council_id, {})
        this_year: dict[tuple[str, int | None], int] = {}
        for view in views:
            natural = (view.agency, view.item_no)
            item = None
            if view.continues and before is not None:
                item = self._item_of.get(before + view.continues)
            if item is None:
                item = latest.get(natural, this_year.get(natural))
            if item is None:
                item, self._count = self._count, self._count + 1
            self._item_of[view.id] = item
            this_year[natural] = item
        # A renumbered item no longer answers to its old number, unless it is still used.
        moved = set(this_year.values())
        for natural in [n for n, item in latest.items() if item in moved]:
            del latest[natural]
        latest.update(this_year)

    def item_of(self, chunk: Chunk) -> int:
        """A number standing for the chunk's item (equal for the same item in any year)."""
        return self._item_of[chunk.column_id]

    def timeline(self, chunk_id: str) -> ItemTimeline:
        """The item of the cell ``chunk_id`` year by year, years ascending; CellNotFound if
        there is no such cell."""
        chunk = self._chunk.get(chunk_id)
        if chunk is None:
            raise CellNotFound(chunk_id)
        cells = self._cells[self.item_of(chunk)]
        years = [
            ItemYear(year=year, cells=list(group))
            for year, group in groupby(sorted(cells, key=lambda c: c.year), key=lambda c: c.year)
        ]
        latest = years[-1].cells[0]
        return ItemTimeline(
            council=chunk.council, agency=latest.agency, item_no=latest.item_no, years=years
        )
