"""Uploaded sheets: checked as hostile bytes first, then read exactly like ``kb ingest``.

Order of checks, cheapest and safest first, each a one-line Japanese error:

1. size (the server refuses bodies past :data:`MAX_UPLOAD_BYTES` before reading them);
2. what the bytes are, whatever the name says: an OOXML zip (.xlsx) or text that decodes
   as UTF-8 or cp932 without control characters (.csv); a name that claims otherwise, an
   old .xls / encrypted workbook or anything else is refused;
3. for a zip, its central directory before anything is expanded: entry count, declared
   uncompressed size, compression ratio (Python's zipfile never inflates an entry past its
   declared size, so the declared sizes bound the work); then the worksheets' cell
   references and merged ranges, because openpyxl allocates a cell for every position a
   merge covers and every row up to the last referenced one;
4. the sheet itself through :func:`kb.ingest.read_table` with openpyxl in ``data_only``
   mode without external links (formulas are never evaluated; a formula cell is read as
   the value Excel saved, if any). defusedxml, a dependency, makes openpyxl refuse XML
   entity tricks.

The upload's file name is only ever shown (escaped), never used as a path: the bytes are
written to a temporary file named by kb.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import sys
import tempfile
import threading
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openpyxl.utils.cell import column_index_from_string

from kb.admin.audit import History, sha256
from kb.admin.changes import CellChange, counts, diff
from kb.admin.storage import write_private
from kb.core.errors import InputError, KbError
from kb.core.model import Table, too_long
from kb.core.yamlio import has_aliases, parse_yaml
from kb.corpus.tables import Corpus, table_from_dict, table_text, table_to_dict
from kb.sheets.ingest import (
    Ask,
    TableMeta,
    check_links,
    read_table,
    title_year_contradicting,
    year_in_words,
)
from kb.sheets.sheet import CSV_ENCODINGS

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_ZIP_ENTRIES = 500
MAX_UNZIPPED_BYTES = 30 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, for entries over RATIO_FROM bytes
RATIO_FROM = 1024 * 1024
MAX_GRID_CELLS = 200_000  # rows × columns a worksheet may span (a council sheet: ~10,000)
PENDING_DIR = "pending"
PENDING_DAYS = 2

KINDS = {".xlsx": ".xlsx", ".csv": ".csv", ".yaml": ".yaml", ".yml": ".yaml"}  # name → kind
KIND_NAMES = {".xlsx": "Excel（.xlsx）", ".csv": "CSV", ".yaml": "YAML"}
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, or an encrypted .xlsx
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CELL_REF = re.compile(rb"<(?:\w+:)?c\b[^>]*?\br=\"([A-Z]{1,3})([0-9]{1,9})\"")
_ROW_REF = re.compile(rb"<(?:\w+:)?row\b[^>]*?\br=\"([0-9]{1,9})\"")
_MERGE = re.compile(
    rb"<(?:\w+:)?mergeCell\b[^>]*?\bref=\"([A-Z]{1,3})([0-9]{1,9}):([A-Z]{1,3})([0-9]{1,9})\""
)
_COUNCIL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PENDING_ID = re.compile(r"[0-9a-f]{16}")
# What the upload form and the API call the year and council a sheet may leave out.
FORM_ASK = Ask(
    year="アップロードの画面の「年度」の欄に西暦で入れてください",
    council="アップロードの画面の「会議名」の欄に入れてください",
)
API_ASK = Ask(
    year="year（年度、西暦）で指定してください", council="council（会議名）で指定してください"
)
# Two sheets are never read at once: memory stays at one workbook's worth.
_READING = threading.Lock()


class TooLarge(KbError):
    """Past :data:`MAX_UPLOAD_BYTES` (HTTP 413)."""


def display_name(raw: str | None) -> str:
    """The upload's name as shown in pages and the audit log: its last path part, without
    control characters, at most 120 characters. Never used to name a file."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if ch.isprintable()).strip()
    return name[:120] or "アップロードされたファイル"


def too_large_message() -> str:
    return f"ファイルが大きすぎます（{MAX_UPLOAD_BYTES // (1024 * 1024)} MB まで）"


# --- what the bytes are ----------------------------------------------------------------


def sniff(data: bytes, name: str) -> str:
    """ ".xlsx" or ".csv", from the content; InputError if it is neither or the name's
    extension says something else."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge(too_large_message())
    if not data:
        raise InputError("ファイルが空です", file=name)
    claimed = Path(name).suffix.lower()
    if claimed not in ("", *KINDS):
        raise InputError(
            f"対応していない形式です（{claimed}）。.xlsx・.csv か、kb の表の .yaml のファイルを"
            "選んでください",
            file=name,
        )
    if data.startswith(OLE_MAGIC):
        raise InputError(
            "古い形式の Excel（.xls）か、パスワード付きのファイルです。"
            "パスワードを外し、.xlsx か CSV で保存し直してください",
            file=name,
        )
    # Bytes tell a workbook from text; text is YAML only when its name says so.
    kind = (
        ".xlsx"
        if data.startswith(ZIP_MAGIC)
        else ".yaml"
        if KINDS.get(claimed) == ".yaml"
        else ".csv"
    )
    if claimed and KINDS[claimed] != kind:
        raise InputError(
            f"名前は {claimed} ですが、中身が {KIND_NAMES[KINDS[claimed]]} のファイルではありません"
            "（別の種類のファイルの名前を変えたものかもしれません）",
            file=name,
        )
    if kind == ".xlsx":
        check_workbook(data, name)
    else:
        check_text(data, name, KIND_NAMES[kind])
    return kind


def check_text(data: bytes, name: str, what: str = "CSV") -> None:
    """A CSV (or YAML) must decode as UTF-8 or cp932 and hold no control characters (binary
    data often decodes as cp932 by chance; its NULs and controls give it away)."""
    if _decoded(data) is None:
        raise InputError(
            f"{what} として読めません。文字だけのファイルを UTF-8 か Shift_JIS で保存してください",
            file=name,
        )


def _decoded(data: bytes) -> str | None:
    """``data`` as text (UTF-8, else cp932) without control characters; None otherwise."""
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return None if _TEXT_CONTROL.search(text) else text
    return None


def check_workbook(data: bytes, name: str) -> None:
    """Refuse a zip that is not a workbook, or that would expand past the limits, from its
    central directory and worksheet references, before openpyxl sees it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"Excel ファイルが壊れています（{exc}）", file=name) from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise InputError(f"Excel ファイルの中身の数が多すぎます（{len(entries)}個）", file=name)
    names = {e.filename for e in entries}
    if not {"[Content_Types].xml", "xl/workbook.xml"} <= names:
        raise InputError(
            "Excel（.xlsx）の形式ではありません（Word などほかの形式のファイルかもしれません）",
            file=name,
        )
    if any(e.flag_bits & 0x1 for e in entries):
        raise InputError("暗号化された Excel ファイルは読めません", file=name)
    total = sum(e.file_size for e in entries)
    bomb = next(
        (
            e
            for e in entries
            if e.file_size > RATIO_FROM and e.file_size > MAX_RATIO * max(e.compress_size, 1)
        ),
        None,
    )
    if total > MAX_UNZIPPED_BYTES or bomb is not None:
        raise InputError(
            f"展開すると大きすぎる Excel ファイルです（展開後 {total / 2**20:,.0f} MB、"
            f"上限 {MAX_UNZIPPED_BYTES // 2**20} MB・圧縮率 {MAX_RATIO} 倍まで）。"
            "表だけを新しいブックに貼り付けて保存し直してください",
            file=name,
        )
    if any(e.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) for e in entries):
        # bzip2 / LZMA: never written by Excel, and bzip2 shrinks a gigabyte to 1 KB.
        raise InputError(
            "Excel が使わない圧縮方式のファイルです。Excel で保存し直してください", file=name
        )
    for entry in entries:
        if entry.filename.startswith("xl/worksheets/") and entry.filename.endswith(".xml"):
            try:
                xml = archive.read(entry)
            except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
                raise InputError(f"Excel ファイルが壊れています（{exc}）", file=name) from None
            _check_grid(xml, name)


def _check_grid(xml: bytes, name: str) -> None:
    rows = max((int(m.group(1)) for m in _ROW_REF.finditer(xml)), default=0)
    cols = 0
    for m in _CELL_REF.finditer(xml):
        cols = max(cols, column_index_from_string(m.group(1).decode()))
        rows = max(rows, int(m.group(2)))
    merged = 0
    for m in _MERGE.finditer(xml):
        c1, r1, c2, r2 = m.groups()
        width = (
            abs(column_index_from_string(c2.decode()) - column_index_from_string(c1.decode())) + 1
        )
        merged += width * (abs(int(r2) - int(r1)) + 1)
        cols = max(cols, column_index_from_string(c2.decode()))
        rows = max(rows, int(r2))
    if rows * max(cols, 1) > MAX_GRID_CELLS or merged > MAX_GRID_CELLS:
        raise InputError(
            f"シートの範囲が大きすぎます（{rows:,}行 × {cols:,}列）。表の部分だけにしてください",
            file=name,
        )


# --- reading the sheet -----------------------------------------------------------------


@dataclass
class Upload:
    """An uploaded sheet's table, and the year the file itself states (None if it states
    none): the form's year wins over it, so a preview must say when the two differ."""

    table: Table
    file_year: int | None
    title: str


def read_upload(
    data: bytes, name: str, given: TableMeta, corpus: Corpus, ask: Ask = FORM_ASK
) -> Upload:
    """The table in an uploaded sheet, read and validated as ``kb ingest`` does; errors
    name the upload by ``name`` (its display name), never by a server path, and ask for a
    missing year or council as ``ask`` says."""
    kind = sniff(data, name)
    if kind == ".yaml":
        return _checked(_read_yaml(data, name, given, corpus), name)
    with _READING, tempfile.TemporaryDirectory(prefix="kb-upload-") as tmp:
        path = Path(tmp) / f"upload{kind}"
        path.write_bytes(data)
        try:
            table = read_table(path, given, corpus, ask)
            file_year = _stated_year(path, given) if given.year is not None else table.year
        except InputError as exc:
            problem = exc.problem.replace(str(path), name)
            raise InputError(
                problem, file=name, row=exc.row, column=exc.column, sheet=exc.sheet
            ) from None
        except KbError:
            raise
        except Exception as exc:  # openpyxl on a malformed workbook: anything can come out
            print(f"kb: upload {name!r} unreadable: {exc!r}", file=sys.stderr)
            raise InputError(
                f"{'Excel ファイル' if kind == '.xlsx' else 'CSV'}として読めません（壊れているか、対応していない内容があります）",
                file=name,
            ) from None
    return _checked(Upload(table, file_year, table.source.title), name)


def _checked(upload: Upload, name: str) -> Upload:
    """``upload`` once its table passes what any table file must (its council id names a
    file, so plain ASCII), through the corpus's own reader."""
    table = upload.table
    if not _COUNCIL_ID.fullmatch(table.council_id):
        raise InputError(
            f"会議ID「{json.dumps(table.council_id, ensure_ascii=False)[1:-1]}」は使えません。"
            "英数字と - _ で40文字までにしてください",  # (escaped: one line, whatever it holds)
            file=name,
        )
    checked = table_from_dict(table_to_dict(table), name)  # the corpus's own checks too
    return Upload(checked, upload.file_year, upload.title)


def _read_yaml(data: bytes, name: str, given: TableMeta, corpus: Corpus) -> Upload:
    """A table file of the corpus's own YAML (a coordinator's edit of ``corpus/tables/…``,
    or a kept version), read with the corpus's checks. Anchors and aliases are refused
    (no table file uses them, and aliases can multiply a small file's content). The year
    and council are the file's: a form's year or council differing from them is refused
    rather than silently moving the table."""
    text = _decoded(data) or ""
    if has_aliases(text, Path(name)):  # a syntax error names its row
        raise InputError("YAML のアンカーとエイリアス（& と *）は使えません", file=name)
    raw = parse_yaml(text, Path(name))
    try:
        table = table_from_dict(raw, name)
    except (TypeError, ValueError, AttributeError):
        raise InputError(
            "kb の表の YAML として読めません（year・page は数字、columns は列の並びにしてください）",
            file=name,
        ) from None
    for stated, given_value, label in (
        (table.year, given.year, "年度"),
        (table.council, given.council, "会議名"),
    ):
        if given_value not in (None, "") and given_value != stated:
            raise InputError(
                f"YAML の表の{label}はファイルの中のもの（{stated}）です。{label}の欄は空にしてください",
                file=name,
            )
    if not 1900 <= table.year <= 2100:
        raise InputError(f"year は西暦にしてください（{table.year}）", file=name)
    for column in table.columns:
        for f, cell in column.cells.items():
            if problem := too_long(cell):
                raise InputError(
                    f"{f.ja}の{problem}",
                    file=name,
                    column=f"列 {column.key}",
                )
    check_links(table, corpus, name)
    return Upload(table, table.year, table.source.title)


def _stated_year(path: Path, given: TableMeta) -> int | None:
    """The year the sheet at ``path`` states (its 年度 row or column, else its title), as
    ``kb ingest`` would read it without ``--year``; None when it states none. Read again
    without the corpus: only the year is wanted, not the links of a table of that year;
    a placeholder council lets a sheet without a 会議 row be read for its year alone."""
    try:
        return read_table(path, TableMeta(council=given.council or "?")).year
    except InputError:
        return None


# --- previews waiting to be applied ----------------------------------------------------


@dataclass
class Preview:
    """A validated upload and what applying it would change."""

    id: str
    table: Table
    changes: list[CellChange]
    file: str
    sha256: str
    base: str | None  # SHA-256 of the table file it was compared with (None: new table)
    user: str
    file_year: int | None = None  # the year the file itself states
    title: str = ""  # the file's title, to name its year as it does (平成30年度)
    replaces: Table | None = None  # the table of the same council and year it replaces
    councils: tuple[str, ...] = ()  # the councils the corpus has tables of

    @property
    def year_warning(self) -> str | None:
        """One Japanese line when the table's year differs from a year the file states: the
        form's year overriding the file's, or the file's 年度 row contradicting its title
        (a template's row or title left from last year); applying then needs
        ``confirm_year``. None otherwise."""
        stated = self.file_year
        if stated is None or stated == self.table.year:
            stated = title_year_contradicting(self.table)
            if stated is None:
                return None
            where = "ファイルの表題には"
        else:
            where = "ファイルには"
        return (
            f"{where}{year_in_words(stated, self.title)}と書かれていますが、"
            f"{self.table.year}年度として取り込もうとしています"
        )

    @property
    def council_warning(self) -> str | None:
        """One Japanese line when the upload would start a council the corpus has no table
        of while it has others (a misspelt 会議 row or 会議名 field would otherwise add a
        second copy of a council's year unseen); applying then needs ``confirm_council``."""
        if not self.councils or self.table.council in self.councils:
            return None
        return (
            f"会議「{self.table.council}」の表はまだありません。新しい会議の表として加えます"
            f"（今ある会議：{'、'.join(self.councils)}）"
        )

    @property
    def unchanged(self) -> bool:
        """The upload is the table as it already is: there is nothing to apply."""
        return self.replaces is not None and self.replaces == self.table

    @property
    def replace_notice(self) -> str | None:
        """「既存の表（2017年度 …）を置き換えます」 with the counts, for a table that exists."""
        if self.replaces is None:
            return None
        n = counts(self.changes)
        return (
            f"既存の表（{self.replaces.year}年度 {self.replaces.council}）を置き換えます："
            f"追加 {n['added']}・変更 {n['changed']}・削除 {n['removed']} セル"
        )

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "table": self.table.slug,
            "year": self.table.year,
            "council": self.table.council,
            "file": self.file,
            "sha256": self.sha256,
            **counts(self.changes),
            "cells": [c.as_dict() for c in self.changes],
            "file_year": self.file_year,
            "year_warning": self.year_warning,
            "council_warning": self.council_warning,
            "needs_confirmation": bool(self.year_warning or self.council_warning),
            "replaces": self.replaces.slug if self.replaces else None,
            "replace_notice": self.replace_notice,
            "unchanged": self.unchanged,
        }


class Unconfirmed(KbError):
    """Applying a preview with a warning not confirmed; its message is the warning, ``box``
    which confirmation it needs ("year" or "council"; the caller says where to tick it)."""

    def __init__(self, message: str, box: str) -> None:
        super().__init__(message)
        self.box = box


class Unchanged(KbError):
    """Applying a preview of the table exactly as it already is (HTTP 409)."""


UNCHANGED_MESSAGE = "今の表と同じ内容です。反映する必要はありません"


class Previews:
    """Previews kept under ``<admin>/pending/<id>.json`` until applied (or two days)."""

    def __init__(self, admin_dir: Path, history: History) -> None:
        self.folder = admin_dir / PENDING_DIR
        self.history = history

    def create(
        self,
        data: bytes,
        name: str,
        given: TableMeta,
        corpus: Corpus,
        user: str,
        ask: Ask = FORM_ASK,
    ) -> Preview:
        upload = read_upload(data, name, given, corpus, ask)
        table = upload.table
        base = self.history.base(table.slug)
        current = next((t for t in corpus.tables if t.slug == table.slug), None)
        preview = Preview(
            id=secrets.token_hex(8),
            table=table,
            changes=diff(current, table),
            file=name,
            sha256=sha256(data),
            base=base,
            user=user,
            file_year=upload.file_year,
            title=upload.title,
            replaces=current,
            councils=tuple(dict.fromkeys(t.council for t in corpus.tables)),
        )
        self._forget_old()
        record = {
            "table": table_to_dict(table),
            "file": name,
            "sha256": preview.sha256,
            "base": base,
            "year_warning": preview.year_warning,
            "council_warning": preview.council_warning,
            "user": user,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_private(
            self.folder / f"{preview.id}.json", json.dumps(record, ensure_ascii=False).encode()
        )
        return preview

    def apply(
        self, preview_id: str, user: str, confirm_year: bool = False, confirm_council: bool = False
    ) -> dict:
        """Write the previewed table into the corpus (KeyError if there is no such
        preview; :class:`Unchanged` if the table is already so; :class:`Unconfirmed` if the
        preview warned of the year or the council and that was not confirmed); returns the
        audit entry."""
        path = self.folder / f"{preview_id}.json"
        if not _PENDING_ID.fullmatch(preview_id) or not path.exists():
            raise KeyError(preview_id)
        record = json.loads(path.read_text(encoding="utf-8"))
        table = table_from_dict(record["table"], record["file"])
        if (
            self.history.base(table.slug) == record["base"]
            and self.history.current(table.slug) == table
        ):  # (a table changed since the preview is a Conflict, below)
            raise Unchanged(UNCHANGED_MESSAGE)
        if record.get("year_warning") and not confirm_year:
            raise Unconfirmed(record["year_warning"], "year")
        if record.get("council_warning") and not confirm_council:
            raise Unconfirmed(record["council_warning"], "council")
        entry = self.history.write(
            table_text(table).encode("utf-8"),
            table.slug,
            user=user,
            action="upload",
            expected_base=record["base"],
            extra={"file": record["file"], "sha256": record["sha256"]},
        )
        path.unlink(missing_ok=True)
        return entry

    def _forget_old(self) -> None:
        if not self.folder.exists():
            return
        cutoff = (datetime.now(UTC) - timedelta(days=PENDING_DAYS)).timestamp()
        for old in self.folder.glob("*.json"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
