"""The corpus folder: hand-editable YAML tables, organisation aliases and the source texts.

Layout (paths relative to the corpus folder)::

    tables/<year>-<council_id>.yaml   one council table per file, one record per column
    organisations.yaml                canonical names and their aliases (ゆいはあと …)
    synonyms.yaml                     query synonyms for search
    sources/                          the original documents, unchanged

:class:`Corpus` loads all of it and answers the lookups the rest of kb needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from kb.core.cache import TextCache
from kb.core.errors import InputError, KbError
from kb.core.fields import FIELDS, Field
from kb.core.model import NOTE_COLUMN, Chunk, Column, Source, Table, chunks_of
from kb.core.text import is_empty, normalise_organisation
from kb.core.yamlio import dump_yaml, parse_yaml, read_yaml, write_atomically
from kb.corpus.history import broken_links

TABLES_DIR = "tables"
ORGANISATIONS_FILE = "organisations.yaml"
_PARSED = "parsed-yaml:1"  # cache namespace of parsed table files
SYNONYMS_FILE = "synonyms.yaml"

_COLUMN_KEYS = {
    "key",
    "page",
    "organisation",
    "item_no",
    "continues",
    "item_title",
    "category",
    "shares_heading",
    "notes",
    *(f.value for f in FIELDS),
}
_NOTE_KEYS = {NOTE_COLUMN, *(f.value for f in FIELDS)}


# --- tables ----------------------------------------------------------------------------


def _item_nos(value: object, where: dict) -> list[int]:
    if value is None or value == "":
        return []
    values = value if isinstance(value, list) else [value]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(
            f"item_no は番号か番号のリストにしてください（{value!r}）", **where
        ) from None


def _column_from_dict(raw: object, file: str, index: int) -> Column:
    where = {"file": file, "column": f"列 {index + 1}"}
    if not isinstance(raw, dict):
        raise InputError("列の記述が項目名: 値 の形になっていません", **where)
    if raw.get("key"):
        where["column"] = f"列 {raw['key']}"
    unknown = set(raw) - _COLUMN_KEYS
    if unknown:
        raise InputError(f"不明な項目名です: {', '.join(sorted(map(str, unknown)))}", **where)
    for required in ("key", "page", "organisation"):
        if raw.get(required) in (None, ""):
            raise InputError(f"{required} がありません", **where)
    notes = raw.get("notes") or {}
    if not isinstance(notes, dict) or set(notes) - _NOTE_KEYS:
        raise InputError(
            f"notes の項目名は {', '.join(sorted(_NOTE_KEYS))} のどれかにしてください", **where
        )
    return Column(
        key=str(raw["key"]),
        page=int(raw["page"]),
        organisation=normalise_organisation(str(raw["organisation"])),
        item_nos=_item_nos(raw.get("item_no"), where),
        item_title=str(raw.get("item_title") or ""),
        category=str(raw.get("category") or ""),
        cells={f: str(raw.get(f.value) or "") for f in FIELDS},
        notes={str(k): str(v) for k, v in notes.items()},
        shares_heading=bool(raw.get("shares_heading", False)),
        continues=str(raw["continues"]) if raw.get("continues") not in (None, "") else None,
    )


def _column_to_dict(column: Column) -> dict:
    item_no: int | list[int] | None = column.item_nos or None
    if column.item_nos and len(column.item_nos) == 1:
        item_no = column.item_nos[0]
    data: dict = {
        "key": column.key,
        "page": column.page,
        "organisation": column.organisation,
        "item_no": item_no,
        **({"continues": column.continues} if column.continues else {}),
        "item_title": column.item_title,
        "category": column.category,
    }
    if column.shares_heading:
        data["shares_heading"] = True
    data.update({f.value: column.text(f) for f in FIELDS})
    if column.notes:
        order = [NOTE_COLUMN, *(f.value for f in FIELDS)]
        data["notes"] = {k: column.notes[k] for k in sorted(column.notes, key=order.index)}
    return data


def table_from_dict(raw: object, file: str) -> Table:
    """Build a Table from parsed YAML, checking what a hand edit can break."""
    if not isinstance(raw, dict):
        raise InputError("表のファイルが 年度・会議・列 の形になっていません", file=file)
    for required in ("year", "council", "council_id", "columns"):
        if raw.get(required) in (None, ""):
            raise InputError(f"{required} がありません", file=file)
    source = raw.get("source") or {}
    table = Table(
        year=int(raw["year"]),
        council=str(raw["council"]),
        council_id=str(raw["council_id"]),
        source=Source(
            title=str(source.get("title") or ""),
            document=str(source.get("document") or ""),
            file=str(source.get("file") or ""),
        ),
        columns=[_column_from_dict(c, file, i) for i, c in enumerate(raw["columns"])],
    )
    _check_unique_keys(table, file)
    return table


def _check_unique_keys(table: Table, file: str) -> None:
    seen: set[str] = set()
    for column in table.columns:
        if column.key in seen:
            raise InputError("列のキーが重複しています", file=file, column=f"列 {column.key}")
        seen.add(column.key)


def table_to_dict(table: Table) -> dict:
    return {
        "year": table.year,
        "council": table.council,
        "council_id": table.council_id,
        "source": asdict(table.source),
        "columns": [_column_to_dict(c) for c in table.columns],
    }


_HEADER = (
    "# {council} {year}年度の取組み進捗状況一覧（kb のコーパス）\n"
    "# セルの文章は直接編集できます。編集後に `kb build` を実行すると検索に反映されます。\n"
)


def _parsed_files(paths: list[Path], cache: TextCache | None) -> list[object]:
    """The YAML of each file. With a cache, a file seen before (same bytes) is not parsed
    again: parsing dominated rebuilds of large corpora (9 s of 38 s at 100k cells)."""
    texts = [p.read_text(encoding="utf-8") for p in paths]
    stored = cache.get(_PARSED, texts) if cache else {}
    known = {text: json.loads(value) for text, value in stored.items()}
    fresh = {t: parse_yaml(t, p) for t, p in zip(texts, paths, strict=True) if t not in known}
    if cache and fresh:
        cache.put(
            _PARSED,
            (
                (t, json.dumps(v, ensure_ascii=False, default=str).encode())
                for t, v in fresh.items()
            ),
        )
    known.update(fresh)
    return [known[t] for t in texts]


def load_table(path: Path) -> Table:
    return table_from_dict(read_yaml(path), str(path))


def slug_list(slugs: Iterable[str]) -> str:
    """Table slugs as a message lists them: 2017-atsugi、2018-atsugi (なし for none)."""
    return "、".join(slugs) or "なし"


def no_such_table(slug: str, known: Iterable[str]) -> KbError:
    """The error for a ``--table`` naming none of the ``known`` table slugs, listing them."""
    return KbError(f"--table「{slug}」という表はありません（あるもの: {slug_list(known)}）")


def table_text(table: Table) -> str:
    """A table as its corpus file: a header comment, then the YAML."""
    return _HEADER.format(council=table.council, year=table.year) + dump_yaml(table_to_dict(table))


def save_table(table: Table, path: Path) -> None:
    write_atomically(path, table_text(table))


def table_path(root: Path, table: Table) -> Path:
    return root / TABLES_DIR / f"{table.slug}.yaml"


# --- the corpus ------------------------------------------------------------------------


@dataclass
class Corpus:
    """Everything under ``corpus/``: tables, aliases, and lookups over their chunks."""

    root: Path
    tables: list[Table]
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, cache: TextCache | None = None) -> Corpus:
        """Read every table under ``root``; ``cache`` keeps parsed files between builds."""
        paths = sorted((root / TABLES_DIR).glob("*.yaml"))
        raws = _parsed_files(paths, cache)
        tables = [table_from_dict(raw, str(p)) for raw, p in zip(raws, paths, strict=True)]
        _check_unique_tables(tables, paths)
        _check_links(tables, paths)
        return cls(root=root, tables=tables, aliases=load_aliases(root / ORGANISATIONS_FILE))

    @cached_property
    def chunks(self) -> list[Chunk]:
        return [chunk for table in self.tables for chunk in chunks_of(table)]

    @cached_property
    def _by_id(self) -> dict[str, Chunk]:
        return {chunk.id: chunk for chunk in self.chunks}

    def chunk(self, chunk_id: str) -> Chunk:
        """The chunk with this id; KeyError if there is none."""
        return self._by_id[chunk_id]

    def organisations(self) -> list[str]:
        """Organisation names in table order, each once."""
        return list(dict.fromkeys(c.organisation for c in self.chunks))

    def content_hash(self) -> str:
        """See :func:`tables_hash`."""
        return tables_hash(self.root)


def tables_hash(root: Path) -> str:
    """A hash of the tables an index is built from (synonyms apply at query time and do
    not make an index stale); reads bytes only, so it is cheap for a large corpus."""
    digest = hashlib.sha256()
    for path in sorted((root / TABLES_DIR).glob("*.yaml")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _check_unique_tables(tables: list[Table], paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for table, path in zip(tables, paths, strict=True):
        if table.slug in seen:
            raise InputError(
                f"{seen[table.slug].name} と同じ年度・会議（{table.year} {table.council}）です",
                file=str(path),
            )
        seen[table.slug] = path


def _check_links(tables: list[Table], paths: list[Path]) -> None:
    """Refuse a ``continues`` that names no column of the council's previous table."""
    problems = broken_links(tables)
    if problems:
        table, column, message = problems[0]
        path = paths[tables.index(table)]
        raise InputError(message, file=str(path), column=f"列 {column.key}")


def load_aliases(path: Path) -> dict[str, str]:
    """Alias → canonical organisation name, from ``organisations.yaml``."""
    if not path.exists():
        return {}
    raw = read_yaml(path) or {}
    entries = (raw.get("organisations") or []) if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise InputError(
            "「organisations:」の下に「- name: 団体名」を並べてください", file=str(path)
        )
    aliases: dict[str, str] = {}
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise InputError(f"{n}番目の団体に name（団体名）がありません", file=str(path))
        name = normalise_organisation(str(entry["name"]))
        # Hand edits may leave "aliases:" empty or give one alias without a list.
        extra = entry.get("aliases") or []
        for alias in [name, *([extra] if isinstance(extra, str) else extra)]:
            aliases[normalise_organisation(str(alias))] = name
    return aliases


def fields_present(columns: Iterable[Column]) -> dict[Field, int]:
    """How many non-empty cells each field has across ``columns``."""
    columns = list(columns)
    return {f: sum(1 for c in columns if not is_empty(c.text(f))) for f in FIELDS}
