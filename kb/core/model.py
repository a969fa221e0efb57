"""The corpus data model: a Table holds Columns; every non-empty cell becomes a Chunk.

A *column* is one organisation's numbered item on one page of a council table (an
organisation with two items side by side has two columns). Its five cells are the text
fields of :mod:`kb.core.fields`. Chunks are what gets indexed and returned by search; each
knows its column, so a hit can be shown next to the rest of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kb.core.fields import FIELDS, Field
from kb.core.text import agency_of, is_empty, split_categories


def item_label(item_nos: tuple[int, ...] | list[int], item_title: str) -> str:
    """How a column's item is named everywhere: 「項目1・8「見出し」」; "" when it has neither."""
    number = f"項目{'・'.join(map(str, item_nos))}" if item_nos else ""
    title = f"「{item_title}」" if item_title else ""
    return number + title


# Key of a reviewer's note on the column as a whole (other notes are keyed by field name).
NOTE_COLUMN = "column"

# The longest text a cell may hold, in characters: the cell editor, `kb ingest` and uploaded
# sheets all refuse more (the longest cell of a council table so far is under 300).
MAX_CELL_CHARS = 5000


def too_long(text: str) -> str | None:
    """Why ``text`` cannot be a cell for its length, in Japanese; None when it can be one."""
    if len(text) <= MAX_CELL_CHARS:
        return None
    return f"セルが長すぎます（{len(text):,}文字。1つのセルは{MAX_CELL_CHARS:,}文字までです）"


class _ItemFacts:
    """What a column, a chunk and a column view say alike about their item and its writer
    (each has ``item_nos``, ``item_title``, ``organisation`` and ``category``)."""

    item_nos: tuple[int, ...] | list[int]
    item_title: str
    organisation: str
    category: str

    @property
    def item_no(self) -> int | None:
        return self.item_nos[0] if self.item_nos else None

    @property
    def item_label(self) -> str:
        return item_label(self.item_nos, self.item_title)

    @property
    def agency(self) -> str:
        return agency_of(self.organisation)

    @property
    def categories(self) -> list[str]:
        return split_categories(self.category)


@dataclass(frozen=True)
class Placement(_ItemFacts):
    """Where a column stands — its table's year, council and document, its page — and whose
    item it is: what a chunk and a column view both carry."""

    year: int
    council: str
    council_id: str
    document: str
    page: int
    organisation: str
    item_nos: tuple[int, ...]
    item_title: str
    category: str


@dataclass
class Source:
    """Where a table came from: its printed title, document number and source file."""

    title: str = ""
    document: str = ""
    file: str = ""


@dataclass
class Column(_ItemFacts):
    """One organisation's item on one page, with its five cells as printed."""

    key: str
    page: int
    organisation: str
    item_nos: list[int] = field(default_factory=list)
    item_title: str = ""
    category: str = ""
    cells: dict[Field, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # The source printed one organisation heading over this column and the one to its
    # left (厚木市立病院 items 8 and 17); the table page and the provenance check need it.
    # ``notes`` holds reviewers' judgement notes, keyed by field name or "column".
    shares_heading: bool = False
    # The key of the column this one continues in the council's previous table, when the
    # item was renumbered (otherwise agency and item number link the years).
    continues: str | None = None

    def text(self, f: Field) -> str:
        return self.cells.get(f, "")


@dataclass
class Table:
    """One council's progress table for one fiscal year (one corpus file)."""

    year: int
    council: str
    council_id: str
    source: Source
    columns: list[Column]

    @property
    def slug(self) -> str:
        return f"{self.year}-{self.council_id}"

    def chunk_id(self, column: Column, f: Field) -> str:
        return f"{self.slug}-{column.key}-{f.value}"


@dataclass(frozen=True)
class Chunk(Placement):
    """A non-empty cell with everything needed to index, filter and show it."""

    id: str
    text: str
    field: Field
    column_key: str

    @property
    def column_id(self) -> str:
        return f"{self.year}-{self.council_id}-{self.column_key}"

    def as_dict(self) -> dict:
        """The public JSON shape of a cell (export, API, search hits)."""
        return {
            "id": self.id,
            "year": self.year,
            "council": self.council,
            "document": self.document,
            "page": self.page,
            "organisation": self.organisation,
            "agency": self.agency,
            "item_no": self.item_no,
            "item_nos": list(self.item_nos),
            "item_title": self.item_title,
            "category": "、".join(self.categories),
            "field": self.field.value,
            "field_ja": self.field.ja,
            "text": self.text,
        }


def _placement(table: Table, column: Column) -> dict:
    """What a chunk and a column view both carry about where their column stands."""
    return {
        "year": table.year,
        "council": table.council,
        "council_id": table.council_id,
        "document": table.source.document,
        "page": column.page,
        "organisation": column.organisation,
        "item_nos": tuple(column.item_nos),
        "item_title": column.item_title,
        "category": column.category,
    }


def chunks_of(table: Table) -> list[Chunk]:
    """Every non-empty cell of a table, column by column in field order."""
    chunks = []
    for column in table.columns:
        placement = _placement(table, column)
        chunks += [
            Chunk(
                id=table.chunk_id(column, f),
                text=column.text(f),
                field=f,
                column_key=column.key,
                **placement,
            )
            for f in FIELDS
            if not is_empty(column.text(f))
        ]
    return chunks


# --- the column as readers see it --------------------------------------------------------


@dataclass(frozen=True)
class CellView:
    """One of a column's five cells; ``id`` is None for an empty or "－" cell (not indexed)."""

    field: Field
    text: str
    id: str | None


@dataclass(frozen=True)
class ColumnView(Placement):
    """A column as every reader sees it — search hits, cell pages, the grid, organisation
    pages — with its table's names and all five cells in field order. Builds store one per
    column (:mod:`kb.retrieval.store`), so serving reads columns from one place."""

    id: str  # Chunk.column_id of its cells
    title: str  # the table's printed title
    shares_heading: bool
    cells: tuple[CellView, ...]
    continues: str | None = None  # Column.continues: for items across years

    @property
    def filled(self) -> list[CellView]:
        """The cells that are indexed (not empty), in field order."""
        return [cell for cell in self.cells if cell.id is not None]

    def as_dict(self) -> dict:
        """Plain data (for the build's store); :meth:`from_dict` reads it back."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["item_nos"] = list(self.item_nos)
        data["cells"] = [[c.field.value, c.text, c.id] for c in self.cells]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ColumnView:
        cells = tuple(CellView(Field(f), text, id_) for f, text, id_ in data["cells"])
        return cls(**{**data, "item_nos": tuple(data["item_nos"]), "cells": cells})


def column_views(table: Table) -> list[ColumnView]:
    """The view of every column of ``table``, in table order."""
    return [
        ColumnView(
            id=f"{table.slug}-{column.key}",
            title=table.source.title,
            shares_heading=column.shares_heading,
            continues=column.continues,
            **_placement(table, column),
            cells=tuple(
                CellView(
                    f,
                    column.text(f),
                    None if is_empty(column.text(f)) else table.chunk_id(column, f),
                )
                for f in FIELDS
            ),
        )
        for column in table.columns
    ]


def column_views_of_chunks(chunks: list[Chunk]) -> list[ColumnView]:
    """Views of the columns of ``chunks`` when there are no tables to read them from
    (synthetic builds): only their non-empty cells are known."""
    by_column: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_column.setdefault(chunk.column_id, []).append(chunk)
    views = []
    for column_id, cells in by_column.items():
        first, texts = cells[0], {c.field: c for c in cells}
        views.append(
            ColumnView(
                id=column_id,
                year=first.year,
                council=first.council,
                council_id=first.council_id,
                title="",
                document=first.document,
                page=first.page,
                organisation=first.organisation,
                item_nos=first.item_nos,
                item_title=first.item_title,
                category=first.category,
                shares_heading=False,
                cells=tuple(
                    CellView(f, texts[f].text, texts[f].id) if f in texts else CellView(f, "", None)
                    for f in FIELDS
                ),
            )
        )
    return views
