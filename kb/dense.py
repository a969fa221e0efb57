"""Dense retrieval with FAISS over normalised embeddings (inner product = cosine).

Small corpora get an exact ``IndexFlatIP``; from :data:`APPROXIMATE_FROM` rows on, an HNSW
graph, whose search cost grows with log n instead of n. Row i of the index is chunk
position i in the store.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

FILE = "dense.faiss"
APPROXIMATE_FROM = 200_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96


def build_index(vectors: np.ndarray, approximate: bool | None = None) -> faiss.Index:
    """An index over ``vectors``; exact unless ``approximate`` (default: by size)."""
    if approximate is None:
        approximate = len(vectors) >= APPROXIMATE_FROM
    dim = vectors.shape[1]
    if approximate:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def save(index: faiss.Index, folder: Path) -> None:
    faiss.write_index(index, str(folder / FILE))


def load(folder: Path) -> faiss.Index:
    """Memory-mapped where FAISS supports it, so start-up does not read every vector."""
    path = str(folder / FILE)
    try:
        return faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(path)


def search(
    index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (positions, scores) for one query vector, restricted to ``allowed`` rows."""
    k = min(k, index.ntotal)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    params = None
    if allowed is not None:
        # FAISS keeps only a pointer: ``bitmap`` must stay alive until the search returns.
        bitmap = np.packbits(allowed, bitorder="little")
        params = _params(index, faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap)))
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def _params(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    if isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(sel=selector)
        params.efSearch = max(HNSW_EF_SEARCH, index.hnsw.efSearch)
        return params
    return faiss.SearchParameters(sel=selector)


def vectors(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """The stored vectors of ``positions`` (for "similar cells" and themes)."""
    positions = np.asarray(positions, dtype=np.int64)
    return (
        np.vstack([index.reconstruct(int(p)) for p in positions])
        if len(positions)
        else np.empty((0, index.d), np.float32)
    )
