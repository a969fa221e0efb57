"""What to highlight for a query, and a text split into matched and unmatched pieces.

:func:`marks_for` decides which of a query's terms deserve a mark: the words the user typed,
and only those vocabulary expansions that are specific (a generic word such as 医療, added
by the synonym file, would otherwise light up every cell). :func:`pieces` then cuts a text in
one pass with one regular expression (longest terms first), so overlapping terms such as
看護 and 看護師 never nest. Callers escape each piece for their medium (HTML, terminal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup, escape

from kb.retrieval.analysis import Analyzer

# A term found in more than this share of the cells says little about any one of them.
COMMON_SHARE = 0.1


@dataclass(frozen=True)
class Marks:
    """What to highlight for one query: cells' words that share one of ``terms``, and verbs
    or adjectives only as written in ``typed`` (see Analyzer.matched_surfaces)."""

    terms: frozenset[str] = frozenset()
    typed: str = ""


def marks_for(
    analyzer: Analyzer,
    query: str,
    query_terms: Iterable[str],
    is_common: Callable[[str], bool],
    typed: bool = True,
) -> Marks:
    """The marks for ``query`` searched with ``query_terms`` (its terms and expansions).

    When the user ``typed`` the query, its own words are all marked except a lone kanji cut
    out of a compound (場 of ゴルフ場); expansions only when specific (``is_common`` is False
    for them). A query that is a cell's text (related cells) is long and typed by nobody:
    only its specific words and expansions are marked, and no verbs.
    """
    own = {
        term
        for token in analyzer.analyse(query)
        for term in token.terms
        if len(term) > 1 or len(token.surface) == 1
    }
    if not typed:
        own = {t for t in own if not is_common(t)}
    expanded = {t for t in query_terms if t not in own and len(t) > 1 and not is_common(t)}
    return Marks(frozenset(own | expanded), query if typed else "")


@lru_cache(maxsize=1024)
def _pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, words)))


def pieces(text: str, terms: Iterable[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, matched) pairs; joined, the pieces give ``text`` back."""
    words = tuple(sorted({t for t in terms if t}, key=len, reverse=True))
    if not words:
        return [(text, False)] if text else []
    pattern = _pattern(words)
    out: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            out.append((text[last : match.start()], False))
        if out and out[-1][1] and match.start() == last:
            out[-1] = (out[-1][0] + match.group(), True)  # 看護 + 人材 read as one mark
        else:
            out.append((match.group(), True))
        last = match.end()
    if last < len(text):
        out.append((text[last:], False))
    return out


def as_html(marked: Iterable[tuple[str, bool]], tag: str = "mark") -> Markup:
    """(piece, marked) pairs as HTML: every piece escaped, the marked ones inside ``tag``
    (``<mark>`` for matched words; ``<del>``/``<ins>`` for a change), line breaks kept."""
    html = "".join(f"<{tag}>{escape(p)}</{tag}>" if on else str(escape(p)) for p, on in marked)
    return Markup(html.replace("\n", "<br>"))
