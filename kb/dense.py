"""Dense retrieval with FAISS over normalised embeddings (inner product = cosine).

Small corpora get an exact ``IndexFlatIP``. From :data:`APPROXIMATE_FROM` rows on, exact
search costs too much per query (about 110 ms at a million rows on 2 cores), so the rows
are split into ``4·√n`` k-means lists (IVF) and a query scans the :data:`NPROBE` closest
lists; vectors stay uncompressed, so scores within those lists are exact. IVF trains in
minutes where an HNSW graph took half an hour at a million rows here. Row i of the index
is chunk position i in the store.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

FILE = "dense.faiss"
APPROXIMATE_FROM = 200_000
NPROBE = 32
TRAINING_POINTS_PER_LIST = 64
SEED = 1234


def build_index(vectors: np.ndarray, approximate: bool | None = None) -> faiss.Index:
    """An index over ``vectors``; exact unless ``approximate`` (default: by size)."""
    if approximate is None:
        approximate = len(vectors) >= APPROXIMATE_FROM
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    if not approximate:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index
    lists = max(1, int(4 * np.sqrt(len(vectors))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = SEED  # the same corpus gives the same lists
    sample = np.random.default_rng(SEED).choice(
        len(vectors), min(len(vectors), lists * TRAINING_POINTS_PER_LIST), replace=False
    )
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    index.nprobe = NPROBE
    index.make_direct_map()  # lets "similar cells" and themes look vectors up by row
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
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    return faiss.SearchParameters(sel=selector)


def vectors(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """The stored vectors of ``positions`` (for "similar cells" and themes)."""
    positions = np.asarray(positions, dtype=np.int64)
    return (
        np.vstack([index.reconstruct(int(p)) for p in positions])
        if len(positions)
        else np.empty((0, index.d), np.float32)
    )
