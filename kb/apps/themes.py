"""Themes across agencies: cluster a year's cells by meaning, label them, draft an agenda.

Before each meeting the council secretariat proposes agenda items (議題案): the problems
several organisations share. :func:`build_agenda` groups the cells of one council's table of
one year and of the chosen fields (default: the challenges) into themes; another council's
tables never join them, nor its earlier years the themes' ``since``:

* **Similarity** (:mod:`kb.apps.similarity`): the build's own vector of each cell, less
  what its column's cells share (organisation, item title), blended with the overlap of
  its words and their synonyms, in standard deviations from a typical pair of the year's
  themed cells. Nothing is embedded for the cells: the build's vectors are reused.
* **Clusters.** Average-linkage agglomerative clustering. Unless the user asks for ``n``
  themes, groups merge while they are at least :data:`JOIN` standard deviations more alike
  than a typical pair. Every cell ends in exactly one theme; a cell close to no other
  becomes a theme of its own.
* **Labels** (:mod:`kb.apps.phrases`): one or two short phrases taken from the cells.
* **Shared or single.** A theme of two or more agencies (厚木市障がい福祉課① and ② are
  one agency) is shared; shared themes come first, most agencies first.
* **Since** (:mod:`kb.apps.continuity`): the first year the theme's problem was written,
  judged on the same similarity against every earlier year's cells of the same fields.
* **For the meeting**: the progress, solution and next-year cells of the theme's columns,
  what other agencies did about its central cell (``related``, SearchService.related;
  agencies outside the theme first), and one open question, a request taken from the
  theme's solution cells (話し合いたいこと) or, when none asks anything, a challenge that is
  itself a question.

Everything is deterministic: the same index and settings give the same agenda.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kb.apps import phrases
from kb.apps.continuity import first_years
from kb.apps.similarity import cell_space, unit
from kb.core.errors import FilterError
from kb.core.fields import FIELDS, Field
from kb.core.model import Chunk, Placement
from kb.core.text import is_empty
from kb.retrieval.analysis import Analyzer
from kb.retrieval.store import ChunkStore, Filters
from kb.search.hits import Hit
from kb.search.validation import parse_filters
from kb.sheets.sheet import csv_text

ALL_FIELDS = "all"
DEFAULT_FIELDS = (Field.challenge.value,)
SOLUTION_FIELDS = (Field.solution, Field.next_year)
LABEL_SEPARATOR = phrases.SEPARATOR
# Groups merge while their average similarity is at least this many standard deviations
# above a typical pair (see kb.apps.similarity); earlier years' cells continue a theme
# on the same rule.
JOIN = 1.25
LINKAGE = "average"
# What other agencies did about a shared theme: this many of their cells.
RELATED = 3
# Sentences of a solution cell that ask something of the others (話し合いたいこと): asking
# the table to tell, join or help (教えていただきたい, ご意見, 一緒に, ご協力) first, as the
# meeting can answer those; then asking someone to act (検討していただきたい); then saying
# what one wants (〜したい).
_REQUESTS = (
    re.compile(r"教えて|意見|伺|一緒に|協力|加わ"),
    re.compile(r"ほしい|欲しい|いただ|頂|ありがた|お願い"),
    re.compile(r"たい"),
)
# A challenge sentence that is itself a question (どのようにするとよいか。): the question for
# the meeting when no solution cell asks one.
_ASKS = re.compile(r"(どのよう|どう|何|いつ|どこ|誰|だれ)[^。？?]*[か？?][。]?$")
# A first line that only names whom the cell is addressed to (教育委員会、神奈川県 /
# 医療機関、訪問看護事業所など。): names and separators, no sentence (no kana but など).
_ADDRESSEE = re.compile(r"[^\u3041-\u309f]+(など)?。?")
_SENTENCE_END = re.compile(r"(?<=[。？！?!])")
# A sentence that starts like this refers to the one before it (その際は、それには …).
_POINTS_BACK = re.compile(r"(その|それ|この|これ(?!まで)|そこ|そう)")


@dataclass
class Question:
    """One open question for the meeting: a sentence of a solution cell (or, when none
    asks anything, a challenge that is a question), and whom its cell addresses."""

    text: str
    cell: Chunk
    addressee: str = ""

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "cell": self.cell.id,
            "organisation": self.cell.organisation,
            "field": self.cell.field.value,
            "addressee": self.addressee or None,
        }


@dataclass
class Theme:
    """Cells that share a topic, their label, and what their columns say about it."""

    label: str
    terms: list[str]
    cells: list[Hit]
    solutions: list[Hit]
    progress: list[Hit]
    related: list[Hit]
    since: int
    question: Question | None

    @property
    def organisations(self) -> list[str]:
        """Organisation names as printed, in the order of the theme's cells."""
        return list(dict.fromkeys(h.chunk.organisation for h in self.cells))

    @property
    def agencies(self) -> list[str]:
        return list(dict.fromkeys(h.chunk.agency for h in self.cells))

    @property
    def shared(self) -> bool:
        """Raised by two or more agencies (not two sheets of one agency)."""
        return len(self.agencies) >= 2

    def is_member(self, hit: Hit) -> bool:
        """Whether ``hit`` is a cell of one of the theme's own agencies."""
        return hit.chunk.agency in self.agencies

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "terms": self.terms,
            "organisations": self.organisations,
            "shared": self.shared,
            "since": self.since,
            "question": self.question.as_dict() if self.question else None,
            "cells": [h.as_dict() for h in self.cells],
            "progress": [h.as_dict() for h in self.progress],
            "solutions": [h.as_dict() for h in self.solutions],
            "related": [{**h.as_dict(), "theme_member": self.is_member(h)} for h in self.related],
        }


@dataclass
class Agenda:
    """The themes of one council's cells of one year and some fields: a draft agenda."""

    year: int
    fields: tuple[Field, ...]
    themes: list[Theme]
    # Earlier years of the council's tables, the themes' ``since`` was looked for in.
    earlier_years: tuple[int, ...] = ()
    council: str = ""
    # Every council the index holds, this one included (the page offers the others).
    councils: tuple[str, ...] = ()

    @property
    def cell_count(self) -> int:
        return sum(len(t.cells) for t in self.themes)

    @property
    def fields_ja(self) -> str:
        return "・".join(f.ja for f in self.fields)

    @property
    def shared(self) -> list[Theme]:
        return [t for t in self.themes if t.shared]

    @property
    def single(self) -> list[Theme]:
        return [t for t in self.themes if not t.shared]

    def as_dict(self) -> dict:
        """The ``kb themes --format json`` document."""
        return {
            "year": self.year,
            "council": self.council,
            "fields": [f.value for f in self.fields],
            "themes": [t.as_dict() for t in self.themes],
        }


# --- building ----------------------------------------------------------------------------


# Passage vectors of texts, one row each, through the build's cache (SearchService.passage_vectors):
# the cells' own passage texts are found there; only label phrases may be new.
Embed = Callable[[list[str]], np.ndarray]
# What other agencies did about a cell: (cell id, k) → hits (SearchService.related).
Related = Callable[[str, int], list[Hit]]


def build_agenda(
    store: ChunkStore,
    analyzer: Analyzer,
    embed: Embed,
    year: int | None = None,
    fields: Sequence[str] = DEFAULT_FIELDS,
    n: int | None = None,
    related: Related | None = None,
    council: str | None = None,
) -> Agenda:
    """Themes of one council's cells of ``year`` in ``fields`` (field names, or ``all`` for
    every field) of the build's ``store``; ``n`` fixes the number of themes. The council is
    ``council`` (its name or id) or, left out, the one with the most columns that year (see
    :func:`choose_council`); the year is the council's latest when left out. ``analyzer``
    reads the cells' words, ``embed`` gives their vectors, ``related`` (if given) what other
    agencies did about a shared theme. Bad values raise a FilterError naming the parameter."""
    columns = store.all_columns
    parse_filters(store.values, years=[] if year is None else [year])  # raises if unknown
    council_id, council_name = choose_council(columns, council, year)
    council_years = sorted({c.year for c in columns if c.council_id == council_id})
    if year is None:
        year = council_years[-1]
    elif year not in council_years:
        raise FilterError(
            f"{council_name}の{year}年度の表はありません"
            f"（表がある年度: {'・'.join(f'{y}年度' for y in council_years)}）",
            "year",
        )
    names = [name.strip() for name in fields if name.strip()] or list(DEFAULT_FIELDS)
    if ALL_FIELDS in names:
        names = [f.value for f in FIELDS]
    filters = parse_filters(store.values, fields=names, years=[year])  # raises if unknown
    wanted = tuple(f for f in FIELDS if f in filters.fields)

    def council_cells(found: Filters) -> list[Chunk]:
        return [
            c for c in store.get(np.flatnonzero(store.mask(found))) if c.council_id == council_id
        ]

    chunks = council_cells(filters)
    if not chunks:
        raise FilterError(
            f"{council_name}の{year}年度の{'・'.join(f.ja for f in wanted)}欄にセルがありません",
            "field",
        )
    if n is not None and not 1 <= n <= len(chunks):
        raise FilterError(f"テーマの数は 1〜{len(chunks)} にしてください（{n}）", "n")
    earlier_years = tuple(y for y in council_years if y < year)
    # Every cell of those years: the columns of the themed and earlier cells, whose shared
    # context (organisation, item title) similarity takes out of each cell's vector.
    neighbours = council_cells(Filters(years=(year, *earlier_years)))
    year_cells = [c for c in neighbours if c.year == year]
    earlier = council_cells(Filters(fields=wanted, years=earlier_years)) if earlier_years else []
    background = [c.text for c in year_cells]
    space = cell_space(chunks, earlier, neighbours, analyzer, embed)
    own = space.similarity[: space.size, : space.size]
    labels = _cluster(own, n)
    groups = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    centres = unit(np.array([space.vectors[g].mean(axis=0) for g in groups]))
    label_phrases = phrases.choose_labels(
        analyzer,
        [[chunks[i].text for i in g] for g in groups],
        background,
        centres,
        lambda texts: unit(embed(texts)),
    )
    since = first_years(space.similarity, groups, [c.year for c in earlier], year, JOIN)
    themes = [
        _theme(store, analyzer, [chunks[i] for i in g], own[np.ix_(g, g)], terms, first, year_cells)
        for g, terms, first in zip(groups, label_phrases, since, strict=True)
    ]
    for theme in themes:
        if related and theme.shared:
            theme.related = _related(related, theme)
    # Shared first, then most agencies; ties by size, then by where the theme starts.
    order = sorted(
        range(len(themes)),
        key=lambda t: (
            not themes[t].shared,
            -len(themes[t].agencies),
            -len(groups[t]),
            groups[t][0],
        ),
    )
    return Agenda(
        year=year,
        fields=wanted,
        themes=[themes[t] for t in order],
        earlier_years=earlier_years,
        council=council_name,
        councils=council_names(columns),
    )


def council_names(columns: Sequence[Placement]) -> tuple[str, ...]:
    """The councils of ``columns`` (a build's), by name, in name order."""
    return tuple(sorted({c.council for c in columns}))


def choose_council(
    columns: Sequence[Placement], wanted: str | None, year: int | None
) -> tuple[str, str]:
    """(id, name) of the council whose agenda is drafted: ``wanted``, by its name or id, or
    the one with the most columns in ``year`` (the latest year of any table when None).
    An agenda is one council's: its meeting does not discuss another council's table.
    FilterError naming ``council`` for a council the build has no table of."""
    names = {c.council_id: c.council for c in columns}
    if wanted is not None and wanted.strip():
        key = unicodedata.normalize("NFKC", wanted).strip()
        for council_id, name in names.items():
            if key in (council_id, unicodedata.normalize("NFKC", name)):
                return council_id, name
        raise FilterError(
            f"会議「{wanted}」の表はありません（表がある会議: {'・'.join(sorted(names.values()))}）",
            "council",
        )
    year = max(c.year for c in columns) if year is None else year
    counts = Counter(c.council_id for c in columns if c.year == year)
    council_id = min(counts, key=lambda k: (-counts[k], names[k]))
    return council_id, names[council_id]


def _cluster(similarity: np.ndarray, n: int | None) -> np.ndarray:
    """Theme number of every row (0 …); ``n`` themes, or as many as the data shows."""
    # SciPy's hierarchy, not scikit-learn's: importing scikit-learn takes seconds.
    from scipy.cluster.hierarchy import cut_tree, fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(similarity) == 1:
        return np.zeros(1, dtype=np.int64)
    # Distances must not be negative: shift the similarities below their maximum.
    top = float(similarity.max())
    distances = top - similarity
    np.fill_diagonal(distances, 0.0)
    tree = linkage(squareform(distances, checks=False), method=LINKAGE)
    if n is not None:
        return cut_tree(tree, n_clusters=n).ravel()
    return fcluster(tree, t=top - JOIN, criterion="distance") - 1


def _theme(
    store: ChunkStore,
    analyzer: Analyzer,
    members: list[Chunk],
    similarity: np.ndarray,
    terms: list[str],
    since: int,
    year_cells: list[Chunk],
) -> Theme:
    """A theme of ``members``: cells ordered by how alike they are to the rest of the theme,
    and the progress / solution / next-year cells of their columns."""
    closeness = similarity.mean(axis=1) if len(members) > 1 else np.ones(1)
    order = sorted(range(len(members)), key=lambda i: (-closeness[i], i))
    analyser_terms = [t for s in terms for t in analyzer.tokens(s)]
    cells = [
        Hit(
            chunk=members[i],
            score=float(closeness[i]),
            # Marks the label's words in the cell; lone characters (要, 者) would mark noise.
            matched_terms=[
                w for w in analyzer.matched_surfaces(members[i].text, analyser_terms) if len(w) > 1
            ],
            column=store.column(members[i].column_id),
        )
        for i in order
    ]
    rank = {}
    for hit in cells:
        rank.setdefault(hit.chunk.column_id, len(rank))

    def of_columns(wanted: Sequence[Field]) -> list[Hit]:
        found = sorted(
            (c for c in year_cells if c.field in wanted and c.column_id in rank),
            key=lambda c: (rank[c.column_id], FIELDS.index(c.field)),
        )
        return [
            Hit(chunk=c, score=1.0 / (1 + rank[c.column_id]), column=store.column(c.column_id))
            for c in found
        ]

    solutions = of_columns(SOLUTION_FIELDS)
    members_ids = {c.id for c in members}
    return Theme(
        label=LABEL_SEPARATOR.join(terms) or _fallback_label(members),
        terms=terms,
        cells=cells,
        solutions=solutions,
        progress=[h for h in of_columns((Field.progress,)) if h.chunk.id not in members_ids],
        related=[],
        since=since,
        question=_question(solutions) or _asked(cells),
    )


def _related(related: Related, theme: Theme) -> list[Hit]:
    """What other agencies of the council wrote about the theme's central challenge, in its
    year or before, outside the theme's own columns (those are listed already). Agencies
    outside the theme come first, in related's order: "the others" are what a secretariat
    asks for; a member's cell of another item only fills the list (and is labelled so)."""
    central = theme.cells[0].chunk
    if central.field != Field.challenge:
        return []
    columns = {h.chunk.column_id for h in theme.cells}
    hits = [
        h
        for h in related(central.id, RELATED * 3)
        if h.chunk.column_id not in columns
        and h.chunk.year <= central.year
        and h.chunk.council_id == central.council_id
    ]
    return sorted(hits, key=theme.is_member)[:RELATED]


def _question(solutions: list[Hit]) -> Question | None:
    """The first sentence of the theme's solution cells (in the order of the theme's cells)
    that asks the others for something, or failing that says what its writer wants to do;
    None when no solution cell does either. A sentence that points back (その際は …) comes
    with the sentence before it on its line: alone it does not say what it asks for."""
    sentences = [
        (hit.chunk, addressee, sentence)
        for hit in solutions
        if hit.chunk.field == Field.solution and not is_empty(hit.chunk.text)
        for addressee, lines in [_addressed(hit.chunk.text)]
        for line in lines
        for sentence in _sentences(line)
    ]
    for request in _REQUESTS:
        for cell, addressee, sentence in sentences:
            if request.search(sentence):
                return Question(text=sentence, cell=cell, addressee=addressee)
    return None


def _addressed(text: str) -> tuple[str, list[str]]:
    """(whom a solution cell addresses, its other lines): a first line that only names
    organisations, followed by what is asked of them; ("", every line) otherwise."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and _ADDRESSEE.fullmatch(lines[0]):
        return lines[0].rstrip("。"), lines[1:]
    return "", lines


def _asked(cells: list[Hit]) -> Question | None:
    """The first sentence of the theme's challenge cells (closest first) that is itself a
    question (…をどのようにするとよいか。), or None."""
    for hit in cells:
        if hit.chunk.field != Field.challenge:
            continue
        for line in hit.chunk.text.splitlines():
            for sentence in _sentences(line):
                if _ASKS.search(sentence):
                    return Question(text=sentence, cell=hit.chunk)
    return None


def _sentences(line: str) -> list[str]:
    """The sentences of one line of a cell, without a leading ・; one that starts by
    pointing back (その, それ, この …) is joined to the one before it."""
    found: list[str] = []
    for part in _SENTENCE_END.split(line):
        sentence = part.strip().lstrip("・").strip()
        if not sentence:
            continue
        if found and _POINTS_BACK.match(sentence):
            found[-1] += sentence
        else:
            found.append(sentence)
    return found


def _fallback_label(members: list[Chunk]) -> str:
    """The start of the first cell, for a theme whose texts have no noun phrase."""
    return " ".join(members[0].text.split())[:20]


# --- rendering ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _source(chunk: Chunk, notes: Sequence[str] = ()) -> str:
    """The organisation, with ``notes`` and the item in one bracket (never two)."""
    inside = [*notes, *([chunk.item_label] if chunk.item_label else [])]
    return f"{chunk.organisation}（{'・'.join(inside)}）" if inside else chunk.organisation


def related_notes(agenda: Agenda, theme: Theme, hit: Hit) -> list[str]:
    """What a reader must know about a related cell that the heading "what the others did"
    does not say: an earlier year's table (2017年度), one of the theme's own agencies."""
    notes = [f"{hit.chunk.year}年度"] if hit.chunk.year < agenda.year else []
    return notes + (["このテーマの団体"] if theme.is_member(hit) else [])


def _where(chunk: Chunk) -> str:
    return f"{chunk.year}年度 {chunk.document} {chunk.page}ページ"


def continuity(agenda: Agenda, theme: Theme) -> str:
    """継続（2017年度から） or 新規, as the agenda shows it; "" when the index has no earlier
    year to compare with (every theme would be "new", which says nothing)."""
    if not agenda.earlier_years:
        return ""
    return f"継続（{theme.since}年度から）" if theme.since < agenda.year else "新規"


def _with_status(agenda: Agenda, theme: Theme, text: str) -> str:
    """``text`` after the theme's 継続／新規 and a ・, when there is one."""
    status = continuity(agenda, theme)
    return f"{status}・{text}" if status else text


def _cell_line(chunk: Chunk) -> str:
    return f"{_source(chunk)}: {_one_line(chunk.text)}（{_where(chunk)}・{chunk.id}）"


def _shared_markdown(number: int, theme: Theme, agenda: Agenda) -> list[str]:
    lines = [
        "",
        f"## {number}. {theme.label}",
        "",
        f"- {_with_status(agenda, theme, f'{len(theme.agencies)}団体')}:"
        f" {'、'.join(theme.organisations)}",
        f"- {agenda.fields_ja}:",
        *(f"  - {_cell_line(h.chunk)}" for h in theme.cells),
        "- 各団体のこれまでの取組み（進捗・解決策・来年度）:",
        *(
            [
                f"  - ［{h.chunk.field.ja}］{h.chunk.organisation}: {_one_line(h.chunk.text)}"
                for h in (*theme.progress, *theme.solutions)
                if not is_empty(h.chunk.text)
            ]
            or ["  - （記載はまだありません）"]
        ),
    ]
    if theme.related:
        lines += [
            "- ほかの団体がすでにしていること:",
            *(
                f"  - ［{h.chunk.field.ja}］{_source(h.chunk, related_notes(agenda, theme, h))}:"
                f" {_one_line(h.chunk.text)}（{h.chunk.id}）"
                for h in theme.related
            ),
        ]
    question = (
        _question_text(theme.question)
        if theme.question
        else "（解決策欄に、関係機関への問いかけはまだありません）"
    )
    return [*lines, f"- 会議で話し合いたいこと（案）: {question}"]


def question_source(question: Question) -> str:
    """Where a question comes from and whom it addresses:
    厚木医師会の解決策欄より・教育委員会、神奈川県あて."""
    cell = question.cell
    to = f"・{question.addressee}あて" if question.addressee else ""
    return f"{cell.organisation}の{cell.field.ja}欄より{to}"


def _question_text(question: Question) -> str:
    return f"「{question.text}」（{question_source(question)}）"


def _single_markdown(theme: Theme, agenda: Agenda) -> list[str]:
    """A single-agency theme: its cells, and what its agency asks of the others, if any
    (one agency's request can still become an agenda item)."""
    status = continuity(agenda, theme)
    lines = [
        # Not in brackets: 継続（2017年度から） and names like …「まめの木」（厚木市福祉総務課）
        # have their own, and brackets inside brackets read badly.
        f"- **{theme.label}**: {theme.organisations[0]}{f'・{status}' if status else ''}",
        *(f"  - {_cell_line(h.chunk)}" for h in theme.cells),
    ]
    if theme.question:
        lines.append(f"  - 話し合いたいこと（案）: {_question_text(theme.question)}")
    return lines


# What the single-agency part is, on the page and in the Markdown.
SINGLE_NOTE = (
    "一つの団体だけが挙げているテーマです。"
    "ほかの団体に尋ねたいことが書かれているものは、議題に加えることもできます。"
)


def continuity_note(agenda: Agenda) -> str:
    """What 継続／新規 mean here, or why they are not shown."""
    if not agenda.earlier_years:
        whose = "この会議の" if len(agenda.councils) > 1 else ""
        return f"{whose}{agenda.year}年度より前の表がないため、継続・新規は示していません。"
    first, last = min(agenda.earlier_years), max(agenda.earlier_years)
    years = f"{first}年度" if first == last else f"{first}〜{last}年度"
    return (
        f"「継続」は{years}の表にも同じ問題の記載があるテーマ"
        "（団体や項目番号が違っても内容で判断）、「新規」は今年度初めて挙がったテーマです。"
    )


def render_markdown(agenda: Agenda) -> str:
    """The agenda as Markdown: the shared themes as agenda items (label, organisations,
    cells with their source, what was done, one question), then the single-agency ones."""
    shared, single = agenda.shared, agenda.single
    lines = [
        f"# 議題案（{agenda.year}年度・{agenda.fields_ja}）",
        "",
        f"{agenda.council}の{agenda.year}年度の{agenda.fields_ja}欄 {agenda.cell_count}件を内容の近さでまとめた"
        f"下書きです。複数の団体に共通するテーマが{len(shared)}件、"
        f"一つの団体だけのテーマが{len(single)}件あります。"
        "テーマ名は各テーマのセルの言葉から自動で選んだものです。"
        "内容は元の資料でご確認のうえ、自由に直してお使いください。",
        "",
        continuity_note(agenda),
    ]
    if shared:
        lines += ["", "# 複数の団体に共通するテーマ"]
    for number, theme in enumerate(shared, start=1):
        lines += _shared_markdown(number, theme, agenda)
    if single:
        lines += ["", "# 単独の課題", "", SINGLE_NOTE, ""]
        for theme in single:
            lines += _single_markdown(theme, agenda)
    return "\n".join(lines) + "\n"


CSV_HEADER = [
    "テーマ番号",
    "テーマ",
    "共通・単独",
    "継続・新規",
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


QUESTION_ROW = "話し合いたいこと（案）"
RELATED_ROW = "ほかの団体の取組み"
# A related cell of one of the theme's own agencies (another item of theirs).
MEMBER_RELATED_ROW = "テーマの団体の別の項目の取組み"


def csv_rows(agenda: Agenda) -> list[list[str]]:
    """One row per theme cell, per cell of what was done about it, and per question (its
    text, with the solution cell it comes from), under :data:`CSV_HEADER`."""
    rows = [CSV_HEADER]
    for number, theme in enumerate(agenda.themes, start=1):
        entries = [
            (kind, hit.chunk, hit.chunk.text)
            for kind, hits in (
                ("テーマのセル", theme.cells),
                ("進捗", theme.progress),
                ("解決策・来年度", theme.solutions),
            )
            for hit in hits
        ] + [
            (MEMBER_RELATED_ROW if theme.is_member(h) else RELATED_ROW, h.chunk, h.chunk.text)
            for h in theme.related
        ]
        if theme.question:
            entries.append((QUESTION_ROW, theme.question.cell, theme.question.text))
        for kind, c, text in entries:
            rows.append(
                [
                    str(number),
                    theme.label,
                    "共通" if theme.shared else "単独",
                    continuity(agenda, theme),
                    str(len(theme.agencies)),
                    kind,
                    c.organisation,
                    "・".join(map(str, c.item_nos)),
                    c.field.ja,
                    text,
                    str(c.year),
                    c.document,
                    str(c.page),
                    c.id,
                ]
            )
    return rows


def render_csv(agenda: Agenda) -> str:
    """The agenda as CSV text for Excel: with a BOM, so Excel on a Japanese PC opens it
    without garbling it, whether downloaded from /themes or saved from ``kb themes``."""
    return "\ufeff" + csv_text(csv_rows(agenda))
