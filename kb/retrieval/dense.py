"""Dense retrieval with FAISS over normalised embeddings (inner product = cosine).

Below :data:`APPROXIMATE_FROM` rows the index is an exact ``IndexFlatIP`` (measured, one
thread, 2 cores: 8 ms a query at 50k rows, 14 ms at 100k, 26 ms at 200k). Above it the
rows are split into ``4·√n`` k-means lists (IVF) and a query scans the closest
``max(256, lists/8)`` of them: at a million rows 47 ms instead of 180 ms, recall@10 0.993
against exact search (benchmarks/run.py). Recall depends on how the vectors cluster, and
at 100k the same rule gave only 0.97, so exact search is kept up to 200k rows. Vectors stay
uncompressed, so scores within the scanned lists are exact. IVF trains in minutes where
HNSW took 150 s already at 100k rows here. Row i of the index is chunk position i in the
store.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

FILE = "dense.faiss"
APPROXIMATE_FROM = 200_000
MIN_NPROBE = 256
TRAINING_POINTS_PER_LIST = 64
SEED = 1234


def build_index(vectors: np.ndarray, approximate: bool | None = None) -> faiss.Index:
    """An index over ``vectors``; exact unless ``approximate`` (default: by size)."""
    searching_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building uses every core
    try:
        return _build(vectors, approximate)
    finally:
        faiss.omp_set_num_threads(searching_threads)


def _build(vectors: np.ndarray, approximate: bool | None) -> faiss.Index:
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
    index.nprobe = max(MIN_NPROBE, lists // 8)
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
    # One OpenMP thread per search: a lone query gains nothing from a second thread (waking
    # it costs more: 14 ms instead of 20 ms at 100k rows) and a server runs searches side by
    # side anyway. The setting belongs to the calling thread, so it is made here, in every
    # thread that searches; builds set their own.
    faiss.omp_set_num_threads(1)
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def _params(index: faiss.Index, selector: faiss.IDSelector) -> faiss.SearchParameters:
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    return faiss.SearchParameters(sel=selector)


def vectors(index: faiss.Index, positions: np.ndarray) -> np.ndarray:
    """The stored vectors of ``positions`` (for "similar cells", themes and rebuilds)."""
    positions = np.asarray(positions, dtype=np.int64)
    if not len(positions):
        return np.empty((0, index.d), np.float32)
    return index.reconstruct_batch(positions)
