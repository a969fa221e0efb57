"""The spreadsheet layouts councils use, shared by ingest (reading) and export (writing).

*Wide* is the council's own grid: organisations across, one row per field, a block per
page starting at a 団体名 row. kb adds optional rows under each block (項目番号, 項目名,
継続元, 列キー, ページ, メモ) so that an exported sheet can be read back without losing anything; a
council's own sheet simply lacks them. 継続元 holds ``continues``: the key of the column
this one continues in the council's previous table, for a renumbered item.

*Long* is one row per cell with named columns, for scripts and bulk edits.
"""

from __future__ import annotations

import re
import unicodedata

from kb.core.fields import FIELDS
from kb.core.model import NOTE_COLUMN
from kb.core.text import fold, is_empty

# Metadata rows above the first block of a wide sheet: label → Table attribute.
META_ROWS = {
    "会議": "council",
    "会議ID": "council_id",
    "年度": "year",
    "資料": "document",
    "表題": "title",
    "出典": "file",
}

# Extra rows under a wide block: label → column attribute.
EXTRA_ROWS = {
    "項目番号": "item_no",
    "項目名": "item_title",
    "継続元": "continues",
    "列キー": "key",
    "ページ": "page",
    "メモ": "notes",
}

# Long layout headers: the Japanese header kb writes, then accepted English spellings.
LONG_COLUMNS: dict[str, tuple[str, ...]] = {
    "year": ("年度",),
    "council": ("会議",),
    "council_id": ("会議ID",),
    "document": ("資料",),
    "title": ("表題",),
    "file": ("出典",),
    "page": ("ページ",),
    "key": ("列キー",),
    "organisation": ("団体名", "organization"),
    "item_no": ("項目番号",),
    "item_title": ("項目名",),
    "continues": ("継続元",),
    "category": ("課題区分",),
    "shares_heading": ("見出し共有",),
    "field": ("欄",),
    "text": ("内容", "本文"),
    "note": ("メモ",),
    "column_note": ("列メモ",),
}

# The categories councils use; stripped from the item cell when guessing an item's title.
KNOWN_CATEGORIES = (
    "体制構築",
    "コーディネート",
    "人材育成",
    "情報集約",
    "普及啓発",
    "資源把握",
    "その他",
)

_NOTE_NAMES = {NOTE_COLUMN: "列", **{f.value: f.ja for f in FIELDS}}


def long_header(name: str) -> str | None:
    """The long-layout attribute a header cell names, or None."""
    folded = fold(name).lower()
    for attr, spellings in LONG_COLUMNS.items():
        if folded == attr or folded in (fold(s).lower() for s in spellings):
            return attr
    return None


def format_item_nos(item_nos: list[int]) -> str:
    return ", ".join(str(n) for n in item_nos)


def parse_item_nos(text: str) -> list[int]:
    """ "1, 8, 9" → [1, 8, 9]; raises ValueError on anything that is not a number list."""
    parts = [p for p in re.split(r"[,、・\s]+", unicodedata.normalize("NFKC", text)) if p]
    return [int(p) for p in parts]


def format_notes(notes: dict[str, str]) -> str:
    """Notes as one line each, "課題: …", in field order."""
    order = [NOTE_COLUMN, *(f.value for f in FIELDS)]
    return "\n".join(f"{_NOTE_NAMES[k]}: {notes[k]}" for k in sorted(notes, key=order.index))


def parse_notes(text: str) -> dict[str, str]:
    """Inverse of :func:`format_notes`; raises ValueError naming a line it cannot read."""
    by_name = {name: key for key, name in _NOTE_NAMES.items()}
    notes: dict[str, str] = {}
    for line in filter(None, text.splitlines()):
        name, sep, note = line.partition(": ")
        if not sep or name not in by_name:
            raise ValueError(f"メモの行は「課題: …」の形にしてください: {line}")
        notes[by_name[name]] = note
    return notes


# Item numbers at the start of a line of the item cell: "８　体制構築", "①「１ 体制構築 …".
_ITEM_NO = re.compile(r"^[\u2460-\u2473]?「?\s*(\d{1,3})(?:\s|$)", re.MULTILINE)


def guess_item(item_text: str, categories: list[str]) -> tuple[list[int], str]:
    """Item numbers and a title from an item cell, for sheets that do not state them.

    "８　体制構築\\n退院前のケースカンファレンス" → ([8], "退院前のケースカンファレンス").
    """
    if is_empty(item_text):
        return [], ""
    text = unicodedata.normalize("NFKC", item_text)
    numbers = [int(n) for n in _ITEM_NO.findall(text)]
    for line in text.splitlines():
        words = [w for w in re.split(r"\s+", line.strip()) if w]
        while words and (_ITEM_NO.match(words[0]) or words[0] in (*categories, *KNOWN_CATEGORIES)):
            words.pop(0)
        if words:
            return numbers, " ".join(words)
    return numbers, ""
