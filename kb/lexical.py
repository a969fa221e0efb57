"""Lexical retrieval: BM25 (bm25s) over Sudachi terms from :mod:`kb.analysis`.

The index stores its sparse matrix as .npy files, loaded memory-mapped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

FOLDER = "lexical"

# bm25s logs through "bm25s" at INFO; keep stderr for kb's own progress lines.
logging.getLogger("bm25s").setLevel(logging.WARNING)


def build_index(documents: Sequence[Sequence[str]]) -> bm25s.BM25:
    """BM25 over pre-analysed documents (one list of terms per chunk, in row order)."""
    index = bm25s.BM25(method="lucene")
    index.index(documents, show_progress=False)
    return index


def save(index: bm25s.BM25, folder: Path) -> None:
    index.save(str(folder / FOLDER), show_progress=False)


def load(folder: Path) -> bm25s.BM25:
    return bm25s.BM25.load(str(folder / FOLDER), mmap=True, show_progress=False)


def scores(index: bm25s.BM25, terms: Sequence[str]) -> np.ndarray:
    """BM25 score of every row for ``terms`` (terms absent from the corpus are ignored)."""
    known = [t for t in terms if t in index.vocab_dict]
    if not known:
        return np.zeros(index.scores["num_docs"], dtype=np.float32)
    return index.get_scores(known)
