"""The five fixed rows of a progress table, their Japanese labels and label parsing.

Every council table has the same rows: 課題区分 (category) and five text fields. Sheets
spell the row labels in many ways ("(３)見えてきた課題", "（３）取組みを進める中で見えてきた課題",
"課題", "challenge"); :func:`parse_field_label` maps all of them to a :class:`Field`.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Field(StrEnum):
    """A text row of the table, in table order."""

    item = "item"
    progress = "progress"
    challenge = "challenge"
    solution = "solution"
    next_year = "next_year"

    @property
    def ja(self) -> str:
        """Short Japanese name, used for badges and facets (課題, 解決策 …)."""
        return _JA[self]

    @property
    def label(self) -> str:
        """The row label as the council prints it."""
        return _LABEL[self]


FIELDS: tuple[Field, ...] = tuple(Field)

_JA = {
    Field.item: "項目",
    Field.progress: "進捗",
    Field.challenge: "課題",
    Field.solution: "解決策",
    Field.next_year: "来年度",
}

_LABEL = {
    Field.item: "(１)項目・内容",
    Field.progress: "(２)進捗状況",
    Field.challenge: "(３)見えてきた課題",
    Field.solution: "(４)解決策・話し合いたいこと",
    Field.next_year: "(５)来年度以降の取組み",
}

ORGANISATION_LABELS = ("団体名", "機関名", "organisation", "organization")
CATEGORY_LABELS = ("課題区分", "区分", "category")

# Keywords checked in order: "来年度" before "課題" because (５) labels never mention 課題,
# while (４) labels ("課題に対する…解決策") do.
_KEYWORDS: tuple[tuple[str, Field], ...] = (
    ("項目", Field.item),
    ("内容", Field.item),
    ("進捗", Field.progress),
    ("来年度", Field.next_year),
    ("次年度", Field.next_year),
    ("解決策", Field.solution),
    ("話し合", Field.solution),
    ("課題", Field.challenge),
)

_NUMBERED = re.compile(r"^[(（]?([1-5])[)）]")


def _fold(label: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", label)).lower()


def parse_field_label(label: str) -> Field | None:
    """Return the field a row label names, or None if it names none.

    Accepts the English names (``challenge``), the short Japanese names (``課題``) and the
    printed labels with or without their number ("(３)見えてきた課題").
    """
    folded = _fold(label)
    if not folded:
        return None
    for field in FIELDS:
        if folded in (field.value, field.value.replace("_", ""), _fold(field.ja)):
            return field
    numbered = _NUMBERED.match(folded)
    if numbered:
        return FIELDS[int(numbered.group(1)) - 1]
    for keyword, field in _KEYWORDS:
        if keyword in folded:
            return field
    return None


def is_organisation_label(label: str) -> bool:
    return _fold(label) in ORGANISATION_LABELS


def is_category_label(label: str) -> bool:
    return _fold(label) in CATEGORY_LABELS
