"""Small text normalisations shared by the corpus, the checks and search.

Two different foldings exist on purpose:

* :func:`normalise_organisation` keeps an organisation name readable (full-width brackets,
  circled numbers such as 座間養護学校① stay) and only removes what PDF extraction and
  typing add: half-width katakana, stray spaces and line breaks.
* :func:`fold` is for comparing passages: NFKC and no whitespace at all, as the evaluation
  files and the provenance check specify.
"""

from __future__ import annotations

import re
import unicodedata

EMPTY_MARKS = frozenset({"", "－", "-", "ー", "―", "‐", "—", "−"})
"""Texts that mean "nothing here": the council marks some empty cells with a dash."""

_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]+")
_WHITESPACE = re.compile(r"\s+")
_CIRCLED_SUFFIX = re.compile(r"[\u2460-\u2473]+$")
_CATEGORY_SEPARATORS = re.compile(r"[、,，・/／\s]+")


def fold(text: str) -> str:
    """NFKC-normalise and drop all whitespace, for whitespace-insensitive comparison."""
    return _WHITESPACE.sub("", unicodedata.normalize("NFKC", text))


def normalise_organisation(name: str) -> str:
    """Canonical spelling of an organisation heading.

    >>> normalise_organisation("神奈川県ﾘﾊﾋﾞﾘﾃｰｼｮﾝ事業団")
    '神奈川県リハビリテーション事業団'
    >>> normalise_organisation("訪問看護ステーション\u3000ふたばらいふ")
    '訪問看護ステーションふたばらいふ'
    """
    name = _HALFWIDTH_KANA.sub(lambda m: unicodedata.normalize("NFKC", m.group()), name)
    return _WHITESPACE.sub("", name)


def agency_of(organisation: str) -> str:
    """The agency behind a column heading: 厚木市障がい福祉課② → 厚木市障がい福祉課.

    Councils number the sheets of one agency with circled digits; the agency is what
    "several organisations share this" should count.
    """
    return _CIRCLED_SUFFIX.sub("", organisation)


def is_empty(text: str | None) -> bool:
    """True for a blank cell or one marked only with a dash."""
    return text is None or text.strip() in EMPTY_MARKS


def split_categories(category: str | None) -> list[str]:
    """体制構築、コーディネート → ['体制構築', 'コーディネート']; a dash gives []."""
    if is_empty(category):
        return []
    return [part for part in _CATEGORY_SEPARATORS.split(category) if part and not is_empty(part)]
