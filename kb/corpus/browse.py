"""Whole-table views for browsing without a query: the original grid, organisations and
their items. They read the corpus snapshot of the loaded index build, so every cell they
show links to an id the index knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from kb.core.fields import FIELDS, Field
from kb.core.model import Column, Table
from kb.core.text import agency_of, is_empty
from kb.corpus.tables import Corpus


@dataclass(frozen=True)
class CellView:
    field: Field
    text: str
    id: str | None  # None for an empty or "－" cell, which is not indexed


@dataclass(frozen=True)
class ColumnView:
    table: Table
    column: Column
    cells: list[CellView]


@dataclass(frozen=True)
class PageGrid:
    """One printed page: its columns and the headings as printed (name, column span)."""

    table: Table
    page: int
    columns: list[ColumnView]
    headings: list[tuple[str, int]]


def column_view(table: Table, column: Column) -> ColumnView:
    cells = [
        CellView(f, column.text(f), None if is_empty(column.text(f)) else table.chunk_id(column, f))
        for f in FIELDS
    ]
    return ColumnView(table, column, cells)


def grids(corpus: Corpus) -> list[PageGrid]:
    """Every page of every table, newest year first."""
    out = []
    for table in sorted(corpus.tables, key=lambda t: (-t.year, t.council)):
        for page, columns in groupby(table.columns, key=lambda c: c.page):
            views = [column_view(table, c) for c in columns]
            headings: list[list] = []
            for view in views:
                if view.column.shares_heading and headings:
                    headings[-1][1] += 1
                else:
                    headings.append([view.column.organisation, 1])
            out.append(PageGrid(table, page, views, [(name, span) for name, span in headings]))
    return out


def organisation_columns(corpus: Corpus, name: str) -> list[ColumnView]:
    """All items of an organisation (or of every sheet of an agency), newest year first."""
    return [
        column_view(table, column)
        for table in sorted(corpus.tables, key=lambda t: -t.year)
        for column in table.columns
        if name in (column.organisation, agency_of(column.organisation))
    ]


def organisation_list(corpus: Corpus, aliases: dict[str, str]) -> list[dict]:
    """Organisations in table order with their items, cell counts and aliases."""
    by_org: dict[str, dict] = {}
    for table in corpus.tables:
        for column in table.columns:
            entry = by_org.setdefault(
                column.organisation,
                {
                    "organisation": column.organisation,
                    "agency": agency_of(column.organisation),
                    "aliases": sorted(
                        a for a, n in aliases.items() if n == column.organisation and a != n
                    ),
                    "items": [],
                    "cells": 0,
                    "years": [],
                },
            )
            entry["items"] += column.item_nos
            entry["cells"] += sum(1 for f in FIELDS if not is_empty(column.text(f)))
            if table.year not in entry["years"]:
                entry["years"].append(table.year)
    return list(by_org.values())
