"""Character pairs: the third ranking of a hybrid search, for words Sudachi cuts otherwise.

Sudachi splits a query and a cell into words, and the lexical leg matches whole words. An
everyday query often shortens the table's words or writes them inside longer ones (訪看,
医ケア, 厚木児相, 在宅ナース), so that its words and the cell's differ where their
characters still overlap. Overlapping pairs of characters, the classic complement to
morphological analysis in Japanese retrieval, match there.
They are ranked with the same BM25 as Sudachi's terms, read row by row
(:class:`kb.retrieval.lexical.RowIndex`, the build's ``grams/`` folder), and only among
the cells the other two legs ranked first (:func:`kb.search.fusion.rank`). Measured in
docs/search-quality.md ("Character pairs").
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from kb.retrieval.lexical import RowIndex, Terms

FOLDER = "grams"
# Raise when :func:`pairs` changes: a build then computes every cell's pairs again instead
# of carrying the live build's over (kb.retrieval.index.analysis_version).
VERSION = "1"
_RUN = re.compile(r"\w+")  # letters, kana, kanji and digits; punctuation and spaces break


def pairs(text: str) -> list[str]:
    """Overlapping pairs of characters of every run of word characters in ``text`` (after
    NFKC and lower case), in order; a run of one character is kept whole.

    >>> pairs("医ケア児・受入れ")
    ['医ケ', 'ケア', 'ア児', '受入', '入れ']
    """
    found: list[str] = []
    for run in _RUN.findall(unicodedata.normalize("NFKC", text).lower()):
        found += [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]
    return found


def save(terms: Terms, folder: Path) -> None:
    """Every row's pairs (``Terms`` of :func:`pairs`) in the build ``folder``."""
    RowIndex.save(terms, folder, FOLDER)


def load(folder: Path) -> RowIndex:
    """The pairs saved in the build ``folder``."""
    return RowIndex.load(folder, FOLDER)
