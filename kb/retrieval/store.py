"""The chunks of a built index: metadata in SQLite, filter columns as numpy arrays.

Search works on row positions (0 … n-1, the same order as the FAISS and BM25 rows). The
store turns positions into :class:`~kb.core.model.Chunk` objects, finds a column's cells, and
answers filters and facet counts with numpy over small integer codes, so neither needs
all chunk objects in memory (a million chunks load in milliseconds, memory-mapped).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import numpy as np

from kb.core.errors import KbError
from kb.core.fields import FIELDS, Field
from kb.core.memo import Memo
from kb.core.model import Chunk, ColumnView

DB = "chunks.sqlite"
FACETS = "facets.json"
_CODES = ("field", "year", "organisation", "agency", "categories")
# Chunks and columns read back lately, kept parsed (a build's store never changes): hits
# come back to the same cells (a result's columns, a cell page's neighbours), and reading
# them from SQLite again took a third of a search's time outside the model (FY2017:
# 0.69 → 0.46 ms). A few tens of MB at most (1M chunks: server RSS 2083 MB).
CHUNKS_KEPT = 8192
COLUMNS_KEPT = 4096


@dataclass(frozen=True)
class Filters:
    """Restrictions on a search; empty tuples mean "any"."""

    fields: tuple[Field, ...] = ()
    organisations: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    years: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fields or self.organisations or self.categories or self.years)


# One SQLite column per Chunk attribute (item numbers as "1,8,9"): no JSON to encode for
# every row of a large build, nor to decode for every hit.
_ATTRIBUTES = tuple(f.name for f in dataclasses.fields(Chunk))
_SELECT = ", ".join(_ATTRIBUTES)


_VALUES = operator.attrgetter(*_ATTRIBUTES)
_FIELD_AT = _ATTRIBUTES.index("field")
_ITEM_NOS_AT = _ATTRIBUTES.index("item_nos")


def _chunk_row(chunk: Chunk) -> list:
    row = list(_VALUES(chunk))
    row[_FIELD_AT] = chunk.field.value
    row[_ITEM_NOS_AT] = ",".join(map(str, chunk.item_nos))
    return row


def _chunk_from_row(row: Sequence) -> Chunk:
    values = dict(zip(_ATTRIBUTES, row, strict=True))
    values["field"] = Field(values["field"])
    values["item_nos"] = tuple(int(n) for n in values["item_nos"].split(",") if n)
    return Chunk(**values)


def write_store(
    folder: Path,
    chunks: Sequence[Chunk],
    columns: Sequence[ColumnView],
    aliases: dict[str, str] | None = None,
) -> None:
    """Write ``chunks`` (in index row order), the ``columns`` they belong to (in table
    order) and the organisation ``aliases`` into ``folder``."""
    db = sqlite3.connect(folder / DB)
    # No journal and no syncing while writing: the file is new, in a build folder that is
    # fsynced as a whole and goes live only when complete.
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute(
        f"CREATE TABLE chunks (pos INTEGER PRIMARY KEY, column_id TEXT, {_SELECT}, UNIQUE (id))"
    )
    marks = ",".join("?" * (len(_ATTRIBUTES) + 2))
    db.executemany(
        f"INSERT INTO chunks VALUES ({marks})",
        ((i, c.column_id, *_chunk_row(c)) for i, c in enumerate(chunks)),
    )
    db.execute("CREATE INDEX by_column ON chunks (column_id)")
    db.execute("CREATE TABLE columns (pos INTEGER PRIMARY KEY, id TEXT UNIQUE, data TEXT)")
    db.executemany(
        "INSERT INTO columns VALUES (?, ?, ?)",
        ((i, v.id, json.dumps(v.as_dict(), ensure_ascii=False)) for i, v in enumerate(columns)),
    )
    db.execute("CREATE TABLE aliases (alias TEXT PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO aliases VALUES (?, ?)", (aliases or {}).items())
    db.commit()
    db.close()
    _write_codes(folder, chunks)


def _write_codes(folder: Path, chunks: Sequence[Chunk]) -> None:
    """The filter columns: each chunk's field, year, organisation, agency and categories
    as small integer codes (categories as a bit mask), and the values the codes stand for."""
    organisations = [c.organisation for c in chunks]
    # Derived once per distinct value (a few dozen), not once per chunk (a million).
    agencies = {o: c.agency for o, c in {c.organisation: c for c in chunks}.items()}
    categories_of = {k: c.categories for k, c in {c.category: c for c in chunks}.items()}
    values = {
        "organisation": sorted(agencies),
        "agency": sorted(set(agencies.values())),
        "categories": sorted({cat for cats in categories_of.values() for cat in cats}),
        "year": sorted({c.year for c in chunks}),
    }
    if len(values["categories"]) > 63:
        raise KbError(
            f"課題区分が {len(values['categories'])} 種類あります。索引で扱えるのは 63 種類までです"
        )
    lookup = {name: {v: i for i, v in enumerate(vals)} for name, vals in values.items()}
    mask_of = {
        category: sum(1 << lookup["categories"][cat] for cat in cats)
        for category, cats in categories_of.items()
    }
    codes = {
        "field": np.array([FIELDS.index(c.field) for c in chunks], dtype=np.uint8),
        "year": np.array([c.year for c in chunks], dtype=np.int16),
        "organisation": np.array([lookup["organisation"][o] for o in organisations], np.int32),
        "agency": np.array([lookup["agency"][agencies[o]] for o in organisations], np.int32),
        "categories": np.array([mask_of[c.category] for c in chunks], dtype=np.uint64),
    }
    for name in _CODES:
        np.save(folder / f"{name}.npy", codes[name])
    (folder / FACETS).write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")


class ChunkStore:
    """Read side of :func:`write_store`; safe to share between threads."""

    def __init__(self, folder: Path) -> None:
        self._db = sqlite3.connect(f"file:{folder / DB}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self.values: dict[str, list] = json.loads((folder / FACETS).read_text(encoding="utf-8"))
        self.codes = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _CODES}
        self._chunks = Memo(CHUNKS_KEPT)
        self._columns = Memo(COLUMNS_KEPT)

    def __len__(self) -> int:
        return len(self.codes["field"])

    def _query(self, sql: str, params: Sequence) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def get(self, positions: Iterable[int]) -> list[Chunk]:
        """Chunks at ``positions``, in that order."""
        positions = [int(p) for p in positions]
        chunks = _kept(
            self._chunks,
            positions,
            lambda missing: (
                (row[0], _chunk_from_row(row[1:]))
                for row in self._query(
                    f"SELECT pos, {_SELECT} FROM chunks WHERE pos IN ({_marks(missing)})", missing
                )
            ),
        )
        return [chunks[p] for p in positions]

    def position(self, chunk_id: str) -> int | None:
        rows = self._query("SELECT pos FROM chunks WHERE id = ?", [chunk_id])
        return rows[0][0] if rows else None

    def column(self, column_id: str) -> ColumnView:
        """The column with this id (a chunk's ``column_id``)."""
        return self.columns([column_id])[column_id]

    def columns(self, column_ids: Iterable[str]) -> dict[str, ColumnView]:
        """Column id → column, for those of ``column_ids`` that exist (one SQLite query at
        most)."""
        return _kept(
            self._columns,
            list(dict.fromkeys(column_ids)),
            lambda missing: (
                (column_id, ColumnView.from_dict(json.loads(data)))
                for column_id, data in self._query(
                    f"SELECT id, data FROM columns WHERE id IN ({_marks(missing)})", missing
                )
            ),
        )

    @cached_property
    def all_columns(self) -> list[ColumnView]:
        """Every column in table order (read once, for the pages that show whole tables)."""
        rows = self._query("SELECT data FROM columns ORDER BY pos", [])
        return [ColumnView.from_dict(json.loads(data)) for (data,) in rows]

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Organisation alias → canonical name, as they were when the build was made."""
        return dict(self._query("SELECT alias, name FROM aliases", []))

    def mask(self, filters: Filters) -> np.ndarray | None:
        """Boolean row mask for ``filters``; None when nothing is filtered."""
        if not filters:
            return None
        mask = np.ones(len(self), dtype=bool)
        if filters.fields:
            mask &= np.isin(self.codes["field"], [FIELDS.index(f) for f in filters.fields])
        if filters.years:
            mask &= np.isin(self.codes["year"], list(filters.years))
        if filters.organisations:
            wanted = set(filters.organisations)
            org_codes = [i for i, v in enumerate(self.values["organisation"]) if v in wanted]
            agency_codes = [i for i, v in enumerate(self.values["agency"]) if v in wanted]
            mask &= np.isin(self.codes["organisation"], org_codes) | np.isin(
                self.codes["agency"], agency_codes
            )
        if filters.categories:
            bits = sum(
                1 << i for i, v in enumerate(self.values["categories"]) if v in filters.categories
            )
            mask &= (self.codes["categories"] & np.uint64(bits)) != 0
        return mask

    def facet_counts(self, positions: np.ndarray) -> dict[str, dict]:
        """How many of ``positions`` fall in each organisation, field, category and year."""
        positions = np.asarray(positions, dtype=np.int64)

        def count(name: str, labels: list) -> dict:
            codes = np.asarray(self.codes[name])[positions]
            counts = (
                np.bincount(codes, minlength=len(labels))
                if len(codes)
                else np.zeros(len(labels), int)
            )
            return {label: int(n) for label, n in zip(labels, counts, strict=True) if n}

        category_codes = np.asarray(self.codes["categories"])[positions]
        return {
            "organisation": count("organisation", self.values["organisation"]),
            "field": count("field", [f.value for f in FIELDS]),
            "year": _year_counts(self.codes["year"], positions),
            "category": {
                cat: int(((category_codes >> np.uint64(i)) & np.uint64(1)).sum())
                for i, cat in enumerate(self.values["categories"])
                if ((category_codes >> np.uint64(i)) & np.uint64(1)).any()
            },
        }


K = TypeVar("K")
V = TypeVar("V")


def _kept(
    memo: Memo, keys: list[K], read: Callable[[list[K]], Iterable[tuple[K, V]]]
) -> dict[K, V]:
    """Key → value for those of ``keys`` that exist, in their order: what ``memo`` keeps,
    the rest from one ``read(missing)`` (pairs of key and value), then kept."""
    found = {key: memo.recall((key,)) for key in keys}
    missing = [key for key, value in found.items() if value is None]
    if missing:
        generation = memo.generation
        for key, value in read(missing):
            found[key] = value
            memo.remember((key,), value, generation)
    return {key: value for key, value in found.items() if value is not None}


def _marks(values: Sequence) -> str:
    return ",".join("?" * len(values))


def _year_counts(years: np.ndarray, positions: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(np.asarray(years)[positions], return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}
