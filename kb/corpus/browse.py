"""Whole-table views for browsing without a query: the original grid, organisations and
their items. They read the columns of the loaded build's store — the same columns search
hits carry — so every cell they show links to an id the index knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from kb.core.model import ColumnView
from kb.core.text import agency_of


@dataclass(frozen=True)
class PageGrid:
    """One printed page of a table: its columns and the headings as printed (name, span)."""

    year: int
    council: str
    title: str
    document: str
    page: int
    columns: list[ColumnView]
    headings: list[tuple[str, int]]


def grids(columns: Sequence[ColumnView]) -> list[PageGrid]:
    """Every page of every table, newest year first (``columns`` in table order)."""
    newest_first = sorted(columns, key=lambda v: (-v.year, v.council))
    out = []
    for _, page_columns in groupby(newest_first, key=lambda v: (v.year, v.council_id, v.page)):
        views = list(page_columns)
        headings: list[list] = []
        for view in views:
            if view.shares_heading and headings:
                headings[-1][1] += 1
            else:
                headings.append([view.organisation, 1])
        first = views[0]
        out.append(
            PageGrid(
                first.year,
                first.council,
                first.title,
                first.document,
                first.page,
                views,
                [(name, span) for name, span in headings],
            )
        )
    return out


def organisation_columns(columns: Sequence[ColumnView], name: str) -> list[ColumnView]:
    """All items of an organisation (or of every sheet of an agency), newest year first."""
    return sorted((v for v in columns if name in (v.organisation, v.agency)), key=lambda v: -v.year)


def organisation_list(columns: Sequence[ColumnView], aliases: dict[str, str]) -> list[dict]:
    """Organisations in table order with their item numbers (each once, in the order
    first written), cell counts, years and aliases."""
    by_org: dict[str, dict] = {}
    for column in columns:
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
        # An item written in several years is still one item of the organisation.
        entry["items"] += [n for n in column.item_nos if n not in entry["items"]]
        entry["cells"] += len(column.filled)
        if column.year not in entry["years"]:
            entry["years"].append(column.year)
    return list(by_org.values())
