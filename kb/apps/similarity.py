"""How alike two cells are, for grouping them into themes and following themes across years.

Two signals, blended:

* **Meaning.** The vector the build embedded for each cell, for search (organisation, item
  title, field and text: :func:`kb.retrieval.index.passage_text`), read back from the
  build's cache, so nothing is embedded here. The organisation's name and the item's
  title are in every cell of a column and would make cells alike for who wrote them, not
  for what they say; so each vector loses the mean of its column's other cells, and what
  the cell adds to its column remains. Those are centred on the mean of the cells being
  themed before the cosine (vectors of one table all point one way).
* **Words.** TF-IDF cosine over Sudachi terms plus the synonyms of ``synonyms.yaml``
  (看護人材 and 看護師, 勉強会 and 研修 count as the same word): two cells naming the same
  concrete thing in different words are often far apart for a small embedder. A word
  weighs by how rare it is among the cells being themed (as c-TF-IDF weighs terms over
  the documents it clusters): what tells two challenges from the other challenges is
  what matters, not how often the rest of the table (progress, plans) repeats the word.

Each signal is standardised over the pairs of the cells being themed (z-scores), so one
with a wider spread does not drown the other, and the blend is standardised again: a
similarity of 1.0 means one standard deviation above a typical pair of this selection.
Earlier years' cells are scored on the same scale (centre, IDF and spread of the themed
cells), so "as alike as two cells of one theme" means the same thing across years.

On top of the blend, two cells that **name the same specific thing** get a bonus: a noun
run of their own (not a piece of a longer compound) of at least :data:`NAME_CHARS`
characters that at most :data:`NAMED_BY` of the themed cells write (マイサポートブック),
or the council itself (its name in the cell or its item's title, or 本会).
The small embedder puts two cells about one booklet apart when they say different things
about it (its distribution, its items), and one shared word is little against the rest
of their words; a rare name of a thing is what tells a reader they are about one problem.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kb.apps import phrases
from kb.core.model import Chunk
from kb.retrieval.analysis import Analyzer
from kb.retrieval.index import passage_text

# Weight of the meaning signal; words get the rest. (Judged pairs and continuity hold
# from 0.55 to 0.7 with the column's context removed; 0.5 loses one continuing problem.)
MEANING_WEIGHT = 0.6
# Share of the mean of a cell's column taken out of its vector.
CONTEXT = 1.0
# Standard deviations added to two cells that name the same rare thing (judged pairs hold
# from 1.8 to 5; 1.5 does not join the two マイサポートブック cells).
NAMED_BONUS = 2.5
# A name is a whole noun run this long (4 also takes サービス, which FY2017's undiagnosed
# children's parents and the unknown needs of children in care both write) …
NAME_CHARS = 5
# … that at most this many themed cells write (3 gives the same here; 4 takes 医療的ケア,
# the whole table's subject, not one problem, and splits FY2018's judged pairs).
NAMED_BY = 2
# The council itself is one more such thing: a cell that names it, or its item's title does
# (the council's own meeting), or that calls it 本会 ("this council", as council papers
# do) is about the council's own running, an agenda item of its own (README "Themes").
COUNCIL = "\x00council"  # a key no noun run can be
THIS_COUNCIL = ("本会",)


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length one (zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@dataclass
class CellSpace:
    """Themed cells (the first ``size`` rows) and any earlier cells, ready to compare.

    ``vectors`` are the build's unit passage vectors (for theme centres and label phrases);
    ``similarity`` is the blended, standardised score of every row against every row.
    """

    size: int
    vectors: np.ndarray
    similarity: np.ndarray


def cell_space(
    chunks: Sequence[Chunk],
    earlier: Sequence[Chunk],
    neighbours: Sequence[Chunk],
    analyzer: Analyzer,
    embed: Callable[[list[str]], np.ndarray],
) -> CellSpace:
    """Compare ``chunks`` (the cells to theme) and ``earlier`` (cells of earlier years, may
    be empty) on the scale of ``chunks``. ``neighbours`` hold the other cells of their
    columns (any more are ignored); ``chunks`` give the words' IDF, ``embed`` the
    passage vectors of texts (the build's, from its cache)."""
    rows = [*chunks, *earlier]
    vectors, content = _content_vectors(rows, neighbours, embed)
    size = len(chunks)
    centred = unit(content - content[:size].mean(axis=0))
    meaning = centred @ centred.T
    texts = [c.text for c in rows]
    words = _word_similarity(analyzer, texts, texts[:size])
    blend = MEANING_WEIGHT * _standardised(meaning, size) + (1 - MEANING_WEIGHT) * (
        _standardised(words, size)
    )
    similarity = _standardised(blend, size) + NAMED_BONUS * _same_names(analyzer, rows, size)
    return CellSpace(size=size, vectors=vectors, similarity=similarity)


def _content_vectors(
    rows: Sequence[Chunk], neighbours: Sequence[Chunk], embed: Callable[[list[str]], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(the unit passage vectors of ``rows``, the same minus the mean of the other cells of
    each row's column among ``neighbours``, scaled to length one; a cell alone in its
    column keeps its vector)."""
    columns = {c.column_id for c in rows}
    cells = list({c.id: c for c in [*rows, *neighbours] if c.column_id in columns}.values())
    texts = [passage_text(c) for c in cells]
    vector_of = dict(zip([c.id for c in cells], unit(np.asarray(embed(texts), float)), strict=True))
    by_column: dict[str, list[str]] = {}
    for cell in cells:
        by_column.setdefault(cell.column_id, []).append(cell.id)

    def context(cell: Chunk) -> np.ndarray:
        others = [vector_of[o] for o in by_column[cell.column_id] if o != cell.id]
        return np.mean(others, axis=0) if others else np.zeros_like(vector_of[cell.id])

    vectors = np.array([vector_of[c.id] for c in rows])
    return vectors, unit(vectors - CONTEXT * np.array([context(c) for c in rows]))


def _same_names(analyzer: Analyzer, cells: Sequence[Chunk], size: int) -> np.ndarray:
    """1 where two of ``cells``, one of them among the first ``size`` (the themed cells),
    name the same rare thing (see :data:`NAME_CHARS`, :data:`NAMED_BY`), the council itself
    included (:func:`_speaks_of_its_council`), 0 elsewhere."""
    texts = [c.text for c in cells]
    rows_of: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        for name in phrases.names(analyzer, text, NAME_CHARS):
            rows_of.setdefault(name, []).append(row)
    themed = [phrases.fold(t) for t in texts[:size]]
    # Counted in the themed texts as written: a name inside a longer word counts too.
    writers = {name: sum(name in t for t in themed) for name in rows_of}
    council = [row for row, cell in enumerate(cells) if _speaks_of_its_council(cell)]
    rows_of[COUNCIL] = council
    writers[COUNCIL] = sum(row < size for row in council)
    same = np.zeros((len(texts), len(texts)))
    for name, rows in rows_of.items():
        mine = [r for r in rows if r < size]
        if len(rows) < 2 or not mine or writers[name] > NAMED_BY:
            continue
        same[np.ix_(mine, rows)] = same[np.ix_(rows, mine)] = 1.0
    np.fill_diagonal(same, 0.0)
    return same


def _speaks_of_its_council(cell: Chunk) -> bool:
    """Whether ``cell`` is about the council whose table it is in: the council's name in
    the cell or in its item's title (the council's own meeting), or :data:`THIS_COUNCIL`."""
    name = phrases.fold(cell.council)
    text = phrases.fold(cell.text)
    return (
        name in text
        or name in phrases.fold(cell.item_title)
        or any(word in text for word in THIS_COUNCIL)
    )


def _standardised(matrix: np.ndarray, size: int) -> np.ndarray:
    """``matrix`` in standard deviations from the mean pair among its first ``size`` rows."""
    if size < 2:
        return matrix
    pairs = matrix[:size, :size][np.triu_indices(size, k=1)]
    spread = pairs.std()
    return (matrix - pairs.mean()) / (spread if spread > 0 else 1.0)


def _word_similarity(analyzer: Analyzer, texts: list[str], background: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of every text with every text, over Sudachi terms and synonyms; IDF
    from ``background`` (the themed cells; terms they lack are left out, they cannot make
    a cell alike to a themed one), so words most of them use count little. Terms count
    once per text (cells are short)."""
    # scipy.sparse, not scikit-learn's vectoriser: importing scikit-learn takes seconds.
    from scipy.sparse import csr_matrix

    terms = {t: analyzer.query_tokens(t) for t in dict.fromkeys([*texts, *background])}
    used_by = Counter(t for text in dict.fromkeys(background) for t in set(terms[text]))
    documents = len(dict.fromkeys(background))
    columns: dict[str, int] = {}
    rows, cols, weights = [], [], []
    for row, text in enumerate(texts):
        for term in dict.fromkeys(terms[text]):
            if term in used_by:
                rows.append(row)
                cols.append(columns.setdefault(term, len(columns)))
                # Smoothed IDF, as scikit-learn's TfidfVectorizer computes it.
                weights.append(math.log((1 + documents) / (1 + used_by[term])) + 1)
    matrix = csr_matrix((weights, (rows, cols)), shape=(len(texts), max(1, len(columns))))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    matrix = csr_matrix(matrix.multiply(1 / np.where(norms > 0, norms, 1.0)[:, None]))
    return (matrix @ matrix.T).toarray()
