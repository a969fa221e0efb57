"""Themes over time: since when has a theme's problem been written down?

A theme of year Y continues an earlier problem when one of its cells is as alike to an
earlier year's cell (of any organisation, under any item number) as two cells must be
to share a theme. Cells are compared by what they say, without what their column shares
(see :mod:`kb.apps.similarity`: an item's title stays the same from year to year whatever
problem the item carries now). Its ``since`` is the first year such a cell appears; a
theme with none is new (``since`` = Y). Item numbers are not used: organisations
renumber their items, and one item can carry a different problem the next year.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_years(
    similarity: np.ndarray,
    groups: Sequence[np.ndarray],
    earlier_years: Sequence[int],
    year: int,
    join: float,
) -> list[int]:
    """``since`` of each group of rows. ``similarity`` compares every row with every row;
    its first rows are year ``year``'s cells (``groups`` index them), the rest the earlier
    cells of ``earlier_years``; ``join`` is the least linkage that joins a theme."""
    since = [year] * len(groups)
    if not len(earlier_years) or not groups:
        return since
    size = similarity.shape[0] - len(earlier_years)
    years = np.asarray(earlier_years)
    for theme, rows in enumerate(groups):
        # Any of its cells will do: a theme continues when one of its cells writes an
        # earlier problem again, even if its other cells are new voices on it.
        joined = years[similarity[size:, rows].max(axis=1) >= join]
        if len(joined):
            since[theme] = int(joined.min())
    return since
