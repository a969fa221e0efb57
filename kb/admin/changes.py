"""What a change does to a table, cell by cell, and the one-cell edit.

:func:`diff` compares two versions of a table by cell id (``<year>-<council>-<key>-<field>``,
stable across versions) and is what previews show and the audit log records.
"""

from __future__ import annotations

import copy
import difflib
import re
import unicodedata
from dataclasses import asdict, dataclass

from kb.core.errors import InputError
from kb.core.fields import Field
from kb.core.model import Chunk, Table, chunks_of, too_long
from kb.corpus.tables import Corpus, table_from_dict, table_to_dict

# C0/C1 controls other than tab and line breaks: pasted by accident, invisible in a page.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class CellChange:
    """One cell added, changed or removed; ``before``/``after`` are its texts ("" if none)."""

    id: str
    change: str  # "added" | "changed" | "removed"
    organisation: str
    field: str  # Japanese name of the field (進捗, 課題 …)
    before: str
    after: str

    def as_dict(self) -> dict:
        return asdict(self)


# (text, whether it differs from the other version) pieces of one side of a change.
Pieces = list[tuple[str, bool]]


def changed_pieces(before: str, after: str) -> tuple[Pieces, Pieces]:
    """``before`` and ``after`` cut into pieces, those that differ from the other text
    marked, character by character: what a preview shows struck out and inserted, so an
    edit of one word in a long cell is seen at a glance."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    old: Pieces = []
    new: Pieces = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            old.append((before[i1:i2], tag != "equal"))
        if j2 > j1:
            new.append((after[j1:j2], tag != "equal"))
    return old, new


def _shown(chunk: Chunk) -> tuple:
    """What a reader sees of a cell: a difference in any of it is a change."""
    return (
        chunk.text,
        chunk.organisation,
        chunk.item_title,
        chunk.category,
        chunk.item_nos,
        chunk.page,
    )


def diff(old: Table | None, new: Table | None) -> list[CellChange]:
    """Cells of ``new`` not in ``old`` (added), in both but shown differently (changed),
    and in ``old`` only (removed), in table order."""
    before = {c.id: c for c in chunks_of(old)} if old else {}
    after = {c.id: c for c in chunks_of(new)} if new else {}
    changes = []
    for cell_id, cell in after.items():
        was = before.get(cell_id)
        if was is None:
            changes.append(
                CellChange(cell_id, "added", cell.organisation, cell.field.ja, "", cell.text)
            )
        elif _shown(was) != _shown(cell):
            changes.append(
                CellChange(
                    cell_id, "changed", cell.organisation, cell.field.ja, was.text, cell.text
                )
            )
    changes += [
        CellChange(cell_id, "removed", cell.organisation, cell.field.ja, cell.text, "")
        for cell_id, cell in before.items()
        if cell_id not in after
    ]
    return changes


def counts(changes: list[CellChange]) -> dict[str, int]:
    return {
        kind: sum(c.change == kind for c in changes) for kind in ("added", "changed", "removed")
    }


def clean_cell_text(text: str, cell_id: str) -> str:
    """A cell's new text as typed in the browser, normalised like sheet cells are; an
    InputError naming the cell for text that cannot go into the table."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    where = {"file": cell_id}
    if not text:
        raise InputError("空にはできません。内容がないときは「－」と入力してください", **where)
    if problem := too_long(text):
        raise InputError(problem, **where)
    if _CONTROL.search(text):
        raise InputError(
            "制御文字（見えない文字）が含まれています。貼り付け直してください", **where
        )
    return text


def edited_table(corpus: Corpus, cell_id: str, text: str) -> tuple[Table, Table]:
    """(the table holding ``cell_id``, a copy with that cell's text replaced by ``text``).

    KeyError when there is no such cell; InputError when ``text`` cannot be accepted. The
    copy goes through the same checks as a table file read from the corpus."""
    chunk = corpus.chunk(cell_id)
    table = next(t for t in corpus.tables if t.slug == f"{chunk.year}-{chunk.council_id}")
    new = copy.deepcopy(table)
    column = next(c for c in new.columns if c.key == chunk.column_key)
    column.cells[Field(chunk.field)] = clean_cell_text(text, cell_id)
    return table, table_from_dict(table_to_dict(new), cell_id)
