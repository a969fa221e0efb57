"""Turn a council spreadsheet (.xlsx / .csv, wide or long layout) into a corpus table.

The entry point is :func:`ingest`: it reads the file, validates every row, and only then
writes ``corpus/tables/<year>-<council_id>.yaml`` in one atomic step. Any problem raises
:class:`kb.core.errors.InputError` naming file, row and column, and leaves the corpus as it was.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from kb.core.errors import InputError
from kb.core.fields import (
    FIELDS,
    Field,
    is_category_label,
    is_organisation_label,
    parse_field_label,
)
from kb.core.model import NOTE_COLUMN, Column, Source, Table
from kb.core.text import fold, normalise_organisation, split_categories
from kb.corpus.history import broken_links
from kb.corpus.tables import Corpus, save_table, table_path
from kb.sheets.keys import STATED, assign_keys
from kb.sheets.layout import (
    EXTRA_ROWS,
    LONG_COLUMNS,
    META_ROWS,
    guess_item,
    long_header,
    parse_item_nos,
    parse_notes,
)
from kb.sheets.sheet import Sheet, column_letter, read_sheets


@dataclass
class TableMeta:
    """Table-level facts; given on the command line or read from the sheet's top rows."""

    year: int | None = None
    council: str | None = None
    council_id: str | None = None
    document: str | None = None
    title: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        # Names, not cell text: a full-width space around one is noise (the reader keeps
        # it in cells, where it indents a line).
        for name, value in vars(self).items():
            if isinstance(value, str):
                setattr(self, name, value.strip())

    def fill(self, other: TableMeta) -> TableMeta:
        """Self, with blanks taken from ``other``."""
        return TableMeta(
            **{k: v if v not in (None, "") else getattr(other, k) for k, v in vars(self).items()}
        )


@dataclass(frozen=True)
class Ask:
    """How the caller lets a user give what a sheet does not state, ending the errors that
    ask for it: ``kb ingest``'s options here, the upload form's fields in /admin."""

    year: str = "--year で指定してください"
    council: str = "--council で指定してください"


COMMAND_LINE = Ask()

_ERA_BASE = {"令和": 2018, "平成": 1988, "昭和": 1925, "R": 2018, "H": 1988, "S": 1925}
# An era by name or by the letter offices abbreviate it with (H30年度, R1年度); in running
# text a letter counts only as a word of its own followed by 年.
_ERA_YEAR = re.compile(r"(令和|平成|昭和|(?<![A-Za-z])[RHS])\s*(元|\d{1,2})\s*年度?")
_ERA_ALONE = re.compile(r"(令和|平成|昭和|[RHS])\s*(元|\d{1,2})", re.IGNORECASE)  # a 年度 cell
_WESTERN_YEAR = re.compile(r"((?:19|20)\d{2})\s*年度?")
YEAR_FORMS = "2018・2018年度・平成30年度・平成30・H30・令和元年度・R1 など"


def parse_year(text: str) -> int | None:
    """平成29年度 → 2017, 令和元年度 → 2019, H30年度 → 2018, 2018年度 → 2018, and as a whole
    cell "2018", "平成30", "H30", "R1" (full-width too)."""
    text = unicodedata.normalize("NFKC", text).strip()
    if re.fullmatch(r"(19|20)\d{2}", text):
        return int(text)
    era = _ERA_ALONE.fullmatch(text) or _ERA_YEAR.search(text)
    if era:
        base = _ERA_BASE[era.group(1).upper() if len(era.group(1)) == 1 else era.group(1)]
        return base + (1 if era.group(2) == "元" else int(era.group(2)))
    western = _WESTERN_YEAR.search(text)
    return int(western.group(1)) if western else None


def year_in_words(year: int, title: str) -> str:
    """平成30年度（2018年度） when the title names ``year`` in an era, else 2018年度."""
    era = _ERA_YEAR.search(unicodedata.normalize("NFKC", title))
    if era and parse_year(era.group(0)) == year:
        return f"{era.group(0).replace(' ', '')}（{year}年度）"
    return f"{year}年度"


def title_year_contradicting(table: Table) -> int | None:
    """The year the table's title states (平成30年度…) when it is not the table's year: a
    template's 年度 row or title left from last year. None when they agree or the title
    states none."""
    stated = parse_year(table.source.title) if table.source.title else None
    return None if stated in (None, table.year) else stated


@dataclass
class _Draft:
    """A column being assembled from a sheet, with where its parts came from."""

    page: int
    organisation: str
    shares_heading: bool = False
    category: str = ""
    cells: dict[Field, str] = field(default_factory=dict)
    extras: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    where: dict[str, tuple[int, str]] = field(default_factory=dict)  # part → (row, column)
    stated: set[str] = field(default_factory=set)  # of keys.STATED: what the sheet has rows for
    sheet: str | None = None  # its worksheet, named in errors when a workbook has several

    def error(self, message: str, file: str, part: tuple[int, str] | None) -> InputError:
        """An InputError at ``part`` (row, column) of this column's sheet."""
        row, column = part or (None, None)
        return InputError(message, file=file, row=row, column=column, sheet=self.sheet)


# --- wide layout -----------------------------------------------------------------------


def _is_block_start(sheet: Sheet, row: int) -> bool:
    return is_organisation_label(sheet.cell(row, 0))


def _read_meta_rows(sheet: Sheet, end: int, file: str) -> TableMeta:
    meta: dict[str, object] = {}
    for r in range(end):
        label, value = fold(sheet.cell(r, 0)), sheet.cell(r, 1)
        attr = next((a for k, a in META_ROWS.items() if fold(k) == label), None)
        if attr:
            meta[attr] = value
        elif label and not any(sheet.rows[r][1:]):
            meta.setdefault("title", sheet.cell(r, 0))
    if "year" in meta:
        year = parse_year(str(meta["year"]))
        if year is None:
            raise InputError(
                f"年度「{meta['year']}」を読み取れません（{YEAR_FORMS}の形で書いてください）",
                file=file,
                row=_row_of(sheet, "年度"),
                column="B列",
            )
        meta["year"] = year
    return TableMeta(**meta)  # type: ignore[arg-type]


def _row_of(sheet: Sheet, label: str) -> int | None:
    return next(
        (r + 1 for r, row in enumerate(sheet.rows) if row and fold(row[0]) == fold(label)), None
    )


def _read_block(
    sheet: Sheet, start: int, end: int, page: int, file: str, name: str | None
) -> list[_Draft]:
    """Columns of the block of rows [start, end) whose first row is the 団体名 row; ``name``:
    the sheet's name to give in errors (None in a file of one sheet)."""
    used = [c for c in range(1, sheet.width) if any(sheet.cell(r, c) for r in range(start, end))]
    drafts: dict[int, _Draft] = {}
    previous: _Draft | None = None
    for c in used:
        heading = normalise_organisation(sheet.cell(start, c))
        merged = (start, c) in sheet.merged_from_left or not sheet.knows_merges
        if not heading and (previous is None or c - 1 not in drafts or not merged):
            raise InputError(
                "団体名がありません", file=file, row=start + 1, column=column_letter(c)
            )
        drafts[c] = previous = _Draft(
            page=page,
            organisation=heading or previous.organisation,  # type: ignore[union-attr]
            shares_heading=not heading,
            sheet=name,
        )
    seen_fields: dict[Field, int] = {}
    last: Field | None = None
    for r in range(start + 1, end):
        label = sheet.cell(r, 0)
        if not label and not any(sheet.rows[r][1:]):
            continue
        part = _row_part(label, last, sheet, r, file)
        if isinstance(part, Field):
            if part in seen_fields and part != last:
                raise InputError(
                    f"「{part.label}」の行が2回あります（{seen_fields[part]}行目と{r + 1}行目）",
                    file=file,
                    row=r + 1,
                    column="A列",
                )
            seen_fields.setdefault(part, r + 1)
            last = part
        for c, draft in drafts.items():
            _put(draft, part, sheet.cell(r, c), (r + 1, column_letter(c)))
    return list(drafts.values())


def _row_part(label: str, last: Field | None, sheet: Sheet, r: int, file: str) -> Field | str:
    """What a row of a block holds: a Field, "category", or an extra-row attribute."""
    if not label:
        if last is None:
            raise InputError("行見出し（A列）が空です", file=file, row=r + 1, column="A列")
        return last  # a cell continued on the next row, as in merged label cells
    if is_category_label(label):
        return "category"
    extra = next((a for k, a in EXTRA_ROWS.items() if fold(k) == fold(label)), None)
    if extra:
        return extra
    parsed = parse_field_label(label)
    if parsed is None:
        raise InputError(
            f"不明な行見出し「{label}」です。課題区分・(１)項目・内容・(２)進捗・(３)課題・"
            "(４)解決策・(５)来年度以降の取組み のどれかにしてください",
            file=file,
            row=r + 1,
            column="A列",
        )
    return parsed


def _put(draft: _Draft, part: Field | str, value: str, where: tuple[int, str]) -> None:
    if isinstance(part, Field):
        before = draft.cells.get(part, "")
        draft.cells[part] = f"{before}\n{value}" if before and value else before or value
    elif part == "category":
        draft.category = value
    else:
        draft.extras[part] = value
        draft.stated.add(part)
    draft.where.setdefault(str(part), where)


def _block_end(sheet: Sheet, start: int, limit: int) -> int:
    """End of the block starting at ``start``: label-only rows after its last filled row are
    the next page's furniture (a repeated title, 資料２－２), not field rows."""
    filled = [r for r in range(start + 1, limit) if any(sheet.rows[r][1:])]
    return filled[-1] + 1 if filled else start + 1


def _read_wide(sheets: list[Sheet], file: str) -> tuple[TableMeta, list[_Draft]]:
    """The table of a wide workbook: each sheet with a 団体名 row is more of its pages.

    Errors name the sheet when there are several. A sheet stating another year or council
    than an earlier one (last year's table kept on a tab) is refused, and so is a hidden
    sheet holding a table: either would otherwise be read into this table unseen."""
    meta = TableMeta()
    drafts: list[_Draft] = []
    stated: dict[str, tuple[str, object]] = {}  # year / council → (first sheet, value)
    for sheet in sheets:
        starts = [r for r in range(len(sheet.rows)) if _is_block_start(sheet, r)]
        if not starts:
            continue
        name = sheet.name if len(sheets) > 1 else None
        try:
            if sheet.hidden:
                raise InputError(
                    "非表示のシートに表があります。この表のページなら再表示し、"
                    "ほかの年度の表や記入例なら削除してから、もう一度選んでください",
                    file=file,
                )
            own = _read_meta_rows(sheet, starts[0], file)
            _check_same_table(stated, sheet.name, own, file)
            meta = meta.fill(own)
            for start, limit in zip(starts, [*starts[1:], len(sheet.rows)], strict=True):
                page = len({d.page for d in drafts}) + 1
                end = _block_end(sheet, start, limit)
                drafts += _read_block(sheet, start, end, page, file, name)
        except InputError as exc:
            raise exc.in_sheet(name) from None
    return meta, drafts


def _check_same_table(
    stated: dict[str, tuple[str, object]], sheet: str, own: TableMeta, file: str
) -> None:
    """Refuse a sheet whose year (its 年度 row, else its title) or council differs from the
    first sheet stating one; ``stated`` collects those first statements."""
    title_year = parse_year(own.title) if own.title else None
    for attr, value, shown in (
        ("year", own.year or title_year, lambda v: f"{v}年度"),
        ("council", own.council, lambda v: f"「{v}」"),
    ):
        if value in (None, ""):
            continue
        first_sheet, first = stated.setdefault(attr, (sheet, value))
        if value != first:
            raise InputError(
                f"このシートは{shown(value)}の表ですが、シート「{first_sheet}」は"
                f"{shown(first)}の表です。1つのファイルには1つの年度・会議の表だけを入れ、"
                "ほかの表のシートは削除してください",
                file=file,
            )


# --- long layout -----------------------------------------------------------------------


LONG_REQUIRED = ("organisation", "field", "text")


def _long_columns(sheet: Sheet, file: str) -> tuple[int, dict[str, int]] | None:
    """The header row and its attribute → column index, if the sheet is in long layout.

    A first row naming two or more long-layout columns is a long header (a wide sheet's
    first row names at most one: 団体名 or a metadata label), so one that lacks a required
    column is refused naming it, rather than read as no table at all."""
    header = next((r for r, row in enumerate(sheet.rows) if any(row)), None)
    if header is None:
        return None
    columns = {
        long_header(name): c for c, name in enumerate(sheet.rows[header]) if long_header(name)
    }
    if len(columns) < 2:
        return None
    missing = [LONG_COLUMNS[attr][0] for attr in LONG_REQUIRED if attr not in columns]
    if missing:
        raise InputError(
            f"縦長の表の見出しに「{'」「'.join(missing)}」の列がありません"
            f"（{'・'.join(LONG_COLUMNS[a][0] for a in LONG_REQUIRED)} の列が必要です）",
            file=file,
            row=header + 1,
        )
    return header, columns  # type: ignore[return-value]


def _read_long(
    sheet: Sheet, header: int, columns: dict[str, int], file: str
) -> tuple[TableMeta, list[_Draft]]:
    """The table's metadata and its columns from a long-layout sheet (one row per cell).

    One pass over the rows, checking each row where it is read so an error names its row
    and column; long because each attribute of a row has its own check and message, and
    splitting the pass would mean carrying the row and its position through every piece.
    """
    metas: list[tuple[int, TableMeta]] = []
    drafts: dict[tuple, _Draft] = {}
    present = {"notes" if a in ("note", "column_note") else a for a in columns}
    stated = present & set(STATED)
    for r in range(header + 1, len(sheet.rows)):
        row = {attr: sheet.cell(r, c) for attr, c in columns.items()}
        if not any(row.values()):
            continue
        where = lambda attr, r=r: (r + 1, column_letter(columns[attr]))  # noqa: E731
        organisation = normalise_organisation(row["organisation"])
        if not organisation:
            raise InputError(
                "団体名がありません",
                file=file,
                row=r + 1,
                column=column_letter(columns["organisation"]),
            )
        f = parse_field_label(row["field"])
        if f is None:
            raise InputError(
                f"不明な欄「{row['field']}」です。item・progress・challenge・solution・next_year "
                "（項目・進捗・課題・解決策・来年度）のどれかにしてください",
                file=file,
                row=r + 1,
                column=column_letter(columns["field"]),
            )
        metas.append(
            (
                r + 1,
                TableMeta(
                    **{
                        a: row[a]
                        for a in ("council", "council_id", "document", "title", "file")
                        if row.get(a)
                    }
                ),
            )
        )
        if row.get("year"):
            year = parse_year(row["year"])
            if year is None:
                raise InputError(
                    f"年度「{row['year']}」を読み取れません（{YEAR_FORMS}の形で書いてください）",
                    file=file,
                    row=r + 1,
                    column=column_letter(columns["year"]),
                )
            metas[-1][1].year = year
        page = _int(row.get("page") or "1", file, *where("page")) if row.get("page") else 1
        group = (page, row.get("key") or (organisation, row.get("item_no", "")))
        draft = drafts.setdefault(
            group, _Draft(page=page, organisation=organisation, stated=set(stated))
        )
        if f in draft.cells:
            # A cell twice is often two tables in one file (two years): say that first.
            _agreed_meta(metas, columns, file)
            first_row = draft.where[f.value][0]
            item = f" 項目{row['item_no']}" if row.get("item_no") else ""
            raise InputError(
                f"同じセル（{organisation}{item}の{f.ja}）が2回あります"
                f"（{first_row}行目と{r + 1}行目）",
                file=file,
                row=r + 1,
                column=column_letter(columns["field"]),
            )
        _put(draft, f, row["text"], where("text"))
        draft.category = draft.category or row.get("category", "")
        draft.shares_heading = draft.shares_heading or row.get("shares_heading", "") in (
            "1",
            "true",
            "True",
            "○",
        )
        for attr in ("item_no", "item_title", "continues", "key"):
            if attr in row and not draft.extras.get(attr):
                draft.extras[attr] = row[attr]
                draft.where.setdefault(attr, where(attr))
        if row.get("note"):
            draft.notes[f.value] = row["note"]
        if row.get("column_note"):
            draft.notes[NOTE_COLUMN] = row["column_note"]
    return _agreed_meta(metas, columns, file), list(drafts.values())


def _only_one_long_sheet(sheets: list[Sheet], file: str) -> None:
    """A long-layout workbook is read from its first sheet: refuse one with anything on
    another sheet, which would otherwise be left out unseen."""
    other = next((s for s in sheets[1:] if any(any(row) for row in s.rows)), None)
    if other is not None:
        raise InputError(
            f"縦長の表は最初のシート「{sheets[0].name}」だけを読みますが、このシートにも内容が"
            "あります。1つのシートにまとめるか、表でないシートは削除してください",
            file=file,
            sheet=other.name,
        )


def _agreed_meta(
    metas: list[tuple[int, TableMeta]], columns: dict[str, int], file: str
) -> TableMeta:
    """The one year, council, … that every row (row number, its meta) states; a file that
    states two is two tables, refused at the first row that differs."""
    agreed = TableMeta()
    for attr in vars(agreed):
        first: tuple[int, object] | None = None
        for row, meta in metas:
            value = getattr(meta, attr)
            if value in (None, ""):
                continue
            if first is None:
                first = (row, value)
            elif value != first[1]:
                raise InputError(
                    f"1つのファイルに{LONG_COLUMNS[attr][0]}が2つあります（{first[0]}行目は"
                    f"「{first[1]}」、{row}行目は「{value}」）。表は年度・会議ごとに1つの"
                    "ファイルにしてください（kb export では --table で1つずつ書き出せます）",
                    file=file,
                    row=row,
                    column=column_letter(columns[attr]),
                )
        setattr(agreed, attr, first[1] if first else None)
    return agreed


def _int(value: str, file: str, row: int, column: str) -> int:
    try:
        return int(unicodedata.normalize("NFKC", value))
    except ValueError:
        raise InputError(
            f"数値ではありません「{value}」", file=file, row=row, column=column
        ) from None


# --- assembling the table --------------------------------------------------------------


def _column(draft: _Draft, file: str) -> Column:
    """The column a draft holds; its key is "" when the sheet states none (see
    :func:`kb.sheets.keys.assign_keys`)."""
    extras, notes = draft.extras, dict(draft.notes)
    if extras.get("notes"):
        try:
            notes.update(parse_notes(extras["notes"]))
        except ValueError as exc:
            raise draft.error(str(exc), file, draft.where["notes"]) from None
    guessed_nos, guessed_title = guess_item(
        draft.cells.get(Field.item, ""), split_categories(draft.category)
    )
    item_nos = guessed_nos
    if extras.get("item_no"):
        try:
            item_nos = parse_item_nos(extras["item_no"])
        except ValueError:
            message = f"項目番号は数字で書いてください「{extras['item_no']}」"
            raise draft.error(message, file, draft.where["item_no"]) from None
    try:
        page = (
            _int(extras["page"], file, *draft.where["page"]) if extras.get("page") else draft.page
        )
    except InputError as exc:
        raise exc.in_sheet(draft.sheet) from None
    return Column(
        key=extras.get("key", ""),
        page=page,
        organisation=draft.organisation,
        item_nos=item_nos,
        item_title=extras.get("item_title", guessed_title),
        category=draft.category,
        cells={f: draft.cells.get(f, "") for f in FIELDS},
        notes=notes,
        shares_heading=draft.shares_heading,
        continues=extras.get("continues") or None,
    )


def _check_duplicates(columns: list[Column], drafts: list[_Draft], file: str) -> None:
    seen: dict[tuple, Column] = {}
    for column, draft in zip(columns, drafts, strict=True):
        identity = (
            (column.page, column.organisation, tuple(column.item_nos)) if column.item_nos else None
        )
        for key, clash in (("key", column.key), ("item", identity)):
            if clash is None:
                continue
            other = seen.get((key, clash))
            if other is not None:
                part = (
                    draft.where.get("item_no")
                    or draft.where.get("key")
                    or next(iter(draft.where.values()), None)
                )
                what = (
                    f"列キー {column.key}"
                    if key == "key"
                    else f"{column.organisation} 項目{column.item_no}（{column.page}ページ）"
                )
                raise draft.error(f"同じ列が2つあります: {what}", file, part)
            seen[(key, clash)] = column


def council_id_for(council: str, corpus: Corpus | None) -> str:
    """The id an existing table of this council uses, else a short stable hash of its name."""
    for table in corpus.tables if corpus else []:
        if table.council == council:
            return table.council_id
    return "c" + hashlib.sha1(council.encode()).hexdigest()[:6]


def read_table(
    path: Path, given: TableMeta, corpus: Corpus | None = None, ask: Ask = COMMAND_LINE
) -> Table:
    """Parse a spreadsheet into a Table without touching the corpus; ``ask``: how the
    errors for a missing year or council tell the user to give it."""
    file = str(path)
    sheets = read_sheets(path)
    long = _long_columns(sheets[0], file)
    if long:
        _only_one_long_sheet(sheets, file)
        meta, drafts = _read_long(sheets[0], *long, file)
    else:
        meta, drafts = _read_wide(sheets, file)
    if not drafts:
        raise InputError(
            "表が見つかりません。A列に「団体名」の行がある横長の表か、"
            "「団体名」「欄」「内容」の見出しがある縦長の表にしてください",
            file=file,
        )
    meta = given.fill(meta)
    if meta.year is None and meta.title:
        meta.year = parse_year(meta.title)  # 平成30年度取組み進捗状況一覧
    if meta.year is None:
        raise InputError(
            f"年度がわかりません。表題（例: 平成30年度…）か「年度」の行を入れるか、{ask.year}",
            file=file,
        )
    if not meta.council:
        raise InputError(f"会議名がわかりません。「会議」の行を入れるか、{ask.council}", file=file)
    council_id = meta.council_id or council_id_for(meta.council, corpus)
    slug = f"{int(meta.year)}-{council_id}"
    existing = next((t for t in corpus.tables if t.slug == slug), None) if corpus else None
    if existing is not None:  # what the table records of its source, unless the sheet says
        known = existing.source
        meta = meta.fill(TableMeta(title=known.title, document=known.document, file=known.file))
    columns = assign_keys([_column(d, file) for d in drafts], [d.stated for d in drafts], existing)
    _check_duplicates(columns, drafts, file)
    table = Table(
        year=int(meta.year),
        council=meta.council,
        council_id=council_id,
        source=Source(title=meta.title or "", document=meta.document or "", file=meta.file or ""),
        columns=columns,
    )
    if corpus is not None:
        check_links(table, corpus, file, partial(_spot, table, drafts))
    return table


def _spot(table: Table, drafts: list[_Draft], column: Column) -> dict:
    """Where the sheet states ``column``'s 継続元: its row, column and sheet."""
    draft = drafts[table.columns.index(column)]
    row, col = draft.where["continues"]
    return {"row": row, "column": col, "sheet": draft.sheet}


def check_links(
    table: Table, corpus: Corpus, file: str, spot: Callable[[Column], dict] | None = None
) -> None:
    """Refuse a 継続元 (``continues``) naming no column of the council's previous table,
    and a table that would leave a later table's 継続元 pointing at nothing. ``spot``: where
    one of ``table``'s columns is in ``file`` (row, column, sheet), by default its key."""
    others = [t for t in corpus.tables if t.slug != table.slug]
    problems = broken_links([*others, table])
    if not problems:
        return
    broken, column, message = problems[0]
    if broken is not table:  # the file drops a column a later table continues
        raise InputError(
            f"{broken.year}年度の表（{broken.slug}）の列 {column.key}（{column.organisation}）が"
            f"この表の列 {column.continues} を引き継いでいますが（継続元）、このファイルには"
            f"その列がありません。その列を残すか、先に{broken.year}年度の表の継続元を直してください",
            file=file,
        )
    raise InputError(message, file=file, **(spot or _by_key)(column))


def _by_key(column: Column) -> dict:
    return {"column": f"列 {column.key}"}


def ingest(
    path: Path, corpus_dir: Path, given: TableMeta, replace: bool = False
) -> tuple[Table, Path]:
    """Validate ``path`` and write it into the corpus; returns the table and where it went."""
    corpus = Corpus.load(corpus_dir)
    table = read_table(path, given, corpus)
    target = table_path(corpus_dir, table)
    if target.exists() and not replace:
        raise InputError(
            f"{table.year}年度の{table.council}の表は既にあります（{target}）。"
            "置き換えるときは --replace を付けてください",
            file=str(path),
        )
    save_table(table, target)
    return table, target
