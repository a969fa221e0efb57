"""Edits a secretariat makes to an exported wide sheet (rows of a CSV grid), shared by the
ingest and admin tests: drop the rows only kb writes, delete or insert a column."""

from __future__ import annotations

from kb.sheets.layout import EXTRA_ROWS

# Rows kb writes that a council's own sheet does not have.
KB_ONLY_ROWS = (*EXTRA_ROWS, "会議ID", "出典")


def council_sheet(rows: list[list[str]]) -> list[list[str]]:
    """An exported wide grid as a council keeps it: without kb's own rows."""
    return [list(r) for r in rows if not r or r[0] not in KB_ONLY_ROWS]


def _block_of(rows: list[list[str]], organisation: str) -> tuple[int, int, int]:
    """(first row, end row, column) of the block whose 団体名 row names ``organisation``."""
    starts = [i for i, r in enumerate(rows) if r and r[0] == "団体名"]
    for start, end in zip(starts, [*starts[1:], len(rows)], strict=True):
        if organisation in rows[start]:
            return start, end, rows[start].index(organisation)
    raise AssertionError(f"no column {organisation}")


def without_column(rows: list[list[str]], organisation: str) -> list[list[str]]:
    """``rows`` with the (first) column headed ``organisation`` deleted from its block."""
    start, end, col = _block_of(rows, organisation)
    return [r[:col] + r[col + 1 :] if start <= i < end else list(r) for i, r in enumerate(rows)]


def with_column(rows: list[list[str]], before: str, cells: list[str]) -> list[list[str]]:
    """``rows`` with a new column inserted left of the one headed ``before``; ``cells`` from
    the 団体名 row down."""
    start, end, col = _block_of(rows, before)
    out = [list(r) for r in rows]
    for i in range(start, end):
        if out[i]:
            value = cells[i - start] if i - start < len(cells) else ""
            out[i] = [*out[i][:col], value, *out[i][col:]]
    return out
