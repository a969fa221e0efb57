"""Column keys for a sheet read into a table that may replace an existing one.

A cell's id is ``<year>-<council_id>-<key>-<field>``: saved links and later years'
``continues:`` name columns by key. A sheet kb exported carries the keys in its 列キー row;
a council's own sheet carries none. When such a sheet replaces a table of the same council
and year, each of its columns without a key takes the key of the existing column that holds
the same item of the same organisation, so a column deleted or inserted in the sheet does
not shift the keys of the columns after it. :func:`assign_keys` is the one place this is
decided, for ``kb ingest --replace`` and the admin upload alike.

The pairing, within one organisation (its normalised heading), first match wins, each
existing column used once, in sheet order:

1. the same item numbers and the same item title;
2. the same item numbers;
3. the same item title (where neither side's numbers contradict the other's);
4. the remaining columns of that organisation in their order (again only where the
   numbers do not contradict: two different item numbers are two different items).

An existing column's numbers and title are both those the table records and those guessed
from its item cell, since a council's sheet states neither and kb guesses them from that
cell. Columns left unpaired are new and get keys no existing column uses; existing columns
left unpaired are the ones removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace

from kb.core.fields import Field
from kb.core.model import Column, Table
from kb.core.text import fold, split_categories
from kb.sheets.layout import guess_item

# Attributes a sheet may state for a column (a row under a wide block, a long column).
STATED = ("key", "item_no", "item_title", "continues", "notes")
_NUMBERED_KEY = re.compile(r"c(\d+)")


def guessed_item(column: Column) -> tuple[tuple[int, ...], str]:
    """(item numbers, title) as kb guesses them from the column's item cell."""
    numbers, title = guess_item(column.text(Field.item), split_categories(column.category))
    return tuple(sorted(numbers)), title


def _numbers(column: Column) -> set[tuple[int, ...]]:
    """The item numbers an existing column is known by (recorded and guessed), if any."""
    return {n for n in (tuple(sorted(column.item_nos)), guessed_item(column)[0]) if n}


def _titles(column: Column) -> set[str]:
    return {fold(t) for t in (column.item_title, guessed_item(column)[1]) if fold(t)}


def _same_numbers(new: Column, old: Column) -> bool:
    return bool(new.item_nos) and tuple(sorted(new.item_nos)) in _numbers(old)


def _same_title(new: Column, old: Column) -> bool:
    return bool(fold(new.item_title)) and fold(new.item_title) in _titles(old)


def _compatible(new: Column, old: Column) -> bool:
    """Not two different items: numbers on both sides that differ say so."""
    return not (new.item_nos and _numbers(old)) or _same_numbers(new, old)


_PASSES: tuple[Callable[[Column, Column], bool], ...] = (
    lambda new, old: _same_numbers(new, old) and _same_title(new, old),
    _same_numbers,
    lambda new, old: _same_title(new, old) and _compatible(new, old),
    _compatible,
)


def pair_columns(new: list[Column], old: list[Column]) -> dict[int, Column]:
    """Index in ``new`` → the column of ``old`` holding the same item (module docstring)."""
    pairs: dict[int, Column] = {}
    free = list(old)
    for same in _PASSES:
        for i, column in enumerate(new):
            if i in pairs:
                continue
            match = next(
                (o for o in free if o.organisation == column.organisation and same(column, o)),
                None,
            )
            if match is not None:
                pairs[i] = match
                free.remove(match)
    return pairs


def _fresh_keys(used: set[str]) -> Iterator[str]:
    """c21, c22, … after the highest numbered key in ``used``, skipping any in use."""
    n = max((int(m.group(1)) for k in used if (m := _NUMBERED_KEY.fullmatch(k))), default=0)
    while True:
        n += 1
        if f"c{n:02d}" not in used:
            yield f"c{n:02d}"


def _carried(column: Column, old: Column, stated: set[str]) -> Column:
    """``column`` with ``old``'s key, and with what ``old`` records that the sheet does not
    state: the reviewed item numbers and title (while the item cell gives the same guess
    as before, so an edited title in that cell is not undone), notes and 継続元."""
    new_guess, old_guess = guessed_item(column), guessed_item(old)
    keep = {
        "item_nos": "item_no" not in stated and new_guess[0] == old_guess[0],
        "item_title": "item_title" not in stated and new_guess[1] == old_guess[1],
        "notes": "notes" not in stated,
        "continues": "continues" not in stated,
    }
    return replace(
        column, key=old.key, **{name: getattr(old, name) for name, kept in keep.items() if kept}
    )


def assign_keys(
    columns: list[Column], stated: list[set[str]], existing: Table | None
) -> list[Column]:
    """``columns`` as read from a sheet (key "" where the sheet states none; ``stated``:
    the attributes of :data:`STATED` the sheet has a row or column for, per column) with
    every key filled in: paired with ``existing`` (the table it replaces, or None) or new."""
    taken = {c.key for c in columns if c.key}
    old = [c for c in existing.columns if c.key not in taken] if existing else []
    unkeyed = [i for i, c in enumerate(columns) if not c.key]
    pairs = pair_columns([columns[i] for i in unkeyed], old)
    fresh = _fresh_keys(taken | {c.key for c in existing.columns} if existing else taken)
    result = list(columns)
    for n, i in enumerate(unkeyed):
        match = pairs.get(n)
        result[i] = (
            _carried(columns[i], match, stated[i])
            if match is not None
            else replace(columns[i], key=next(fresh))
        )
    return result
