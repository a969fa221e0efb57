"""Theme labels: short noun phrases taken from the member cells (看護人材の不足).

Candidates are read off Sudachi's words: runs of nouns (with prefixes and suffixes, so
新規受け入れ先 and 明確化 stay whole) and two such runs joined by の or や
(マイサポートブックの配布, 交流会や研修), a quoted name with its brackets
(「マイサポートブック」の記載項目).
Every candidate is a piece of a member cell as written, folded by NFKC only.

Choosing, as BERTopic's KeyBERT-inspired representation does:

1. **c-TF-IDF.** Over the theme's cells as one document against the year's cells: a
   phrase weighs, for each of its terms, (how many of the theme's cells use the term or a
   synonym of it) × the term's IDF in the year, summed and divided by the square root of
   the number of terms. Phrases naming what the theme's cells share, and the rest of the
   table does not, come first.
2. **Closeness to the theme.** Only the best few by weight are embedded (cached like
   cells; the first ``kb themes`` of a new year embeds them) and compared with the
   theme's centre, the mean of its cells' vectors. A phrase's score is its closeness plus
   its weight, each in standard deviations among the candidates, so the label is both
   telling and about the theme.

A label is the best phrase, joined by ・ to the best phrase (chosen the same way among
that cell's best few) of the first member cell the first does not occur in
(看護人材の不足・看護師の配置), when the theme has such a cell.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from kb.retrieval.analysis import Analyzer, Token

SEPARATOR = "・"
# Phrases longer than this read as sentences, not as an agenda item's name.
MAX_CHARS = 16
# Parts of a noun run of up to this many words are candidates too.
MAX_TOKENS = 4
# How many of the best c-TF-IDF candidates are re-ranked by closeness to the theme.
SHORTLIST = 4
# … and how many of the best of the member cell the first phrase misses, for the second.
PER_CELL = 3
_RUN_POS = {"名詞", "接頭辞", "接尾辞"}
_CONTENT_POS = {"普通名詞", "固有名詞"}
# Two noun runs joined by these read as one name: マイサポートブックの配布, 交流会や研修.
_JOINS = ("の", "や")
# … and a quoted name before の: 「マイサポートブック」の記載項目.
_OPENING = {"」": "「", "』": "『"}
_QUOTED_JOINS = tuple(f"{close}の" for close in _OPENING)


def fold(text: str) -> str:
    """Text as phrases are compared and shown: NFKC, so ３０ and 30 are one."""
    return unicodedata.normalize("NFKC", text)


def candidates(analyzer: Analyzer, text: str) -> list[str]:
    """Noun phrases of ``text`` (NFKC-folded), each once: every run of nouns and its parts
    (訪問看護ステーション in 各訪問看護ステーション現場意見), and two runs joined by の or
    や (a quoted first run keeps its brackets)."""
    tokens = analyzer.analyse(text)
    runs = _runs(tokens)
    found = [
        part
        for start, end, _ in runs
        for first in range(start, end)
        for last in range(first + 1, min(end, first + MAX_TOKENS) + 1)
        for _, _, part in _trimmed(tokens, first, last)
    ]
    for (first, end, left), (start, _, right) in itertools.pairwise(runs):
        joined = "".join(t.surface for t in tokens[end:start])
        if joined in _JOINS:
            found.append(f"{left}{joined}{right}")
        elif joined in _QUOTED_JOINS and first and tokens[first - 1].surface == _OPENING[joined[0]]:
            # 「マイサポートブック」の記載項目: a quoted name keeps its brackets.
            found.append(f"{tokens[first - 1].surface}{left}{joined}{right}")
    return list(dict.fromkeys(p for p in map(fold, found) if 2 <= len(p) <= MAX_CHARS))


def names(analyzer: Analyzer, text: str, min_chars: int) -> set[str]:
    """The whole noun runs of ``text`` (NFKC-folded) of at least ``min_chars`` characters:
    what the text names as a thing of its own (マイサポートブック), not a piece of a longer
    compound (訪問看護ステーション in 各訪問看護ステーション現場意見 is not one)."""
    runs = (fold(run) for _, _, run in _runs(analyzer.analyse(text)))
    return {run for run in runs if len(run) >= min_chars}


def _runs(tokens: Sequence[Token]) -> list[tuple[int, int, str]]:
    """(first token, one past the last, surface) of every run of nouns that names something:
    it holds a content noun, does not start with a suffix nor end with a prefix, and light
    words (こと, ため: nouns without index terms) break it."""
    runs: list[tuple[int, int, str]] = []
    start = None
    for i, token in enumerate([*tokens, None]):
        inside = token is not None and token.pos[:1] and token.pos[0] in _RUN_POS
        inside = inside and (token.terms or token.pos[0] != "名詞")
        if inside and start is None:
            start = i
        if not inside and start is not None:
            runs += _trimmed(tokens, start, i)
            start = None
    return runs


def _trimmed(tokens: Sequence[Token], start: int, end: int) -> list[tuple[int, int, str]]:
    while start < end and tokens[start].pos[0] == "接尾辞":
        start += 1
    while end > start and tokens[end - 1].pos[0] == "接頭辞":
        end -= 1
    part = tokens[start:end]
    if not any(t.pos[1:2] and t.pos[1] in _CONTENT_POS and t.terms for t in part):
        return []
    return [(start, end, "".join(t.surface for t in part))]


def choose_labels(
    analyzer: Analyzer,
    themes: Sequence[Sequence[str]],
    background: Sequence[str],
    centres: np.ndarray,
    embed: Callable[[list[str]], np.ndarray],
) -> list[list[str]]:
    """One or two phrases for each theme (a list of member texts).

    ``background`` is the year's cells (for the IDF), ``centres`` one unit vector per
    theme, ``embed`` maps a list of phrases to unit vectors in the same space. Phrases are
    embedded in two batches, the first phrases' candidates and then the second's: a few
    per theme, so a new year's labels cost a fraction of a second.
    """
    idf = _idf(analyzer, background)
    per_cell = [[candidates(analyzer, text) for text in texts] for texts in themes]
    weights = [
        _weights(analyzer, texts, cells, idf) for texts, cells in zip(themes, per_cell, strict=True)
    ]
    firsts = _closest([_top(w, SHORTLIST) for w in weights], weights, centres, embed)
    seconds = _closest(
        [
            _second_candidates(first, [fold(t) for t in texts], cells, weight)
            for first, texts, cells, weight in zip(firsts, themes, per_cell, weights, strict=True)
        ],
        weights,
        centres,
        embed,
    )
    return [[p for p in pair if p] for pair in zip(firsts, seconds, strict=True)]


def _top(weight: dict[str, float], n: int, among: Iterable[str] | None = None) -> list[str]:
    """The ``n`` candidates (of ``among``, default all) of most weight, shortest first on
    ties."""
    return sorted(weight if among is None else among, key=lambda p: (-weight[p], len(p), p))[:n]


def _second_candidates(
    first: str | None, texts: list[str], cells: list[list[str]], weight: dict[str, float]
) -> list[str]:
    """The best few candidates that neither hold ``first`` nor are part of it, of the first
    member cell ``first`` does not occur in that has such candidates; none if no cell has."""
    if first is None:
        return []
    for text, cell in zip(texts, cells, strict=True):
        own = [p for p in cell if first not in p and p not in first] if first not in text else []
        if own:
            return _top(weight, PER_CELL, own)
    return []


def _closest(
    shortlists: list[list[str]],
    weights: list[dict[str, float]],
    centres: np.ndarray,
    embed: Callable[[list[str]], np.ndarray],
) -> list[str | None]:
    """The best of each shortlist, both close to its theme's centre and telling (see
    :func:`_best`); None for an empty shortlist. All phrases are embedded in one batch."""
    phrases = sorted({p for s in shortlists for p in s})
    vector_of = dict(zip(phrases, embed(phrases), strict=True)) if phrases else {}
    return [
        _best(shortlist, {p: float(vector_of[p] @ centre) for p in shortlist}, weight)
        if shortlist
        else None
        for shortlist, weight, centre in zip(shortlists, weights, centres, strict=True)
    ]


def _idf(analyzer: Analyzer, background: Sequence[str]) -> dict[str, float]:
    """log(1 + N / how many of the N ``background`` texts use a term)."""
    used_by = Counter(t for text in background for t in set(analyzer.tokens(text)))
    return {t: math.log(1 + len(background) / n) for t, n in used_by.items()}


def _weights(
    analyzer: Analyzer, texts: Sequence[str], cells: list[list[str]], idf: dict[str, float]
) -> dict[str, float]:
    """c-TF-IDF of each candidate for the theme: (how
    many member cells use the term or a synonym of it) × the term's IDF, summed over the
    phrase's terms and divided by the square root of their number: a phrase of two
    telling words beats either word alone, a long run of weak words does not."""
    used: Counter = Counter(t for text in texts for t in set(analyzer.query_tokens(text)))
    top = max(idf.values(), default=1.0)
    weight = {}
    for phrase in {p for cell in cells for p in cell}:
        terms = set(analyzer.tokens(phrase))
        weight[phrase] = sum(used[t] * idf.get(t, top) for t in terms) / math.sqrt(len(terms) or 1)
    return weight


def _standardised(values: dict[str, float]) -> dict[str, float]:
    spread = float(np.std(list(values.values()))) or 1.0
    mean = float(np.mean(list(values.values())))
    return {k: (v - mean) / spread for k, v in values.items()}


def _best(among: list[str], closeness: dict[str, float], weight: dict[str, float]) -> str:
    """The candidate both close to the theme and telling (c-TF-IDF), each measured in
    standard deviations among ``among``."""
    near = _standardised({p: closeness[p] for p in among})
    telling = _standardised({p: weight[p] for p in among})
    return min(among, key=lambda p: (-(near[p] + telling[p]), len(p), p))
