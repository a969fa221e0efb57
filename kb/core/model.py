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


@dataclass
class Source:
    """Where a table came from: its printed title, document number and source file."""

    title: str = ""
    document: str = ""
    file: str = ""


@dataclass
class Column:
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

    def text(self, f: Field) -> str:
        return self.cells.get(f, "")

    @property
    def item_no(self) -> int | None:
        return self.item_nos[0] if self.item_nos else None

    @property
    def item_label(self) -> str:
        return item_label(self.item_nos, self.item_title)

    @property
    def categories(self) -> list[str]:
        return split_categories(self.category)


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
class Chunk:
    """A non-empty cell with everything needed to index, filter and show it."""

    id: str
    text: str
    field: Field
    year: int
    council: str
    council_id: str
    document: str
    page: int
    organisation: str
    item_nos: tuple[int, ...]
    item_title: str
    category: str
    column_key: str

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


def chunks_of(table: Table) -> list[Chunk]:
    """Every non-empty cell of a table, column by column in field order."""
    return [
        Chunk(
            id=table.chunk_id(column, f),
            text=column.text(f),
            field=f,
            year=table.year,
            council=table.council,
            council_id=table.council_id,
            document=table.source.document,
            page=column.page,
            organisation=column.organisation,
            item_nos=tuple(column.item_nos),
            item_title=column.item_title,
            category=column.category,
            column_key=column.key,
        )
        for column in table.columns
        for f in FIELDS
        if not is_empty(column.text(f))
    ]
