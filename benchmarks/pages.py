"""Page latency: median and p95 of each web page and the search API, server warm.

    python benchmarks/pages.py                 # 20 requests per page
    python benchmarks/pages.py --requests 50 --json

The script copies ``corpus/`` (and the embedding cache, if any) into a temporary folder and
starts ``python -m kb serve`` on a free loopback port there; the server builds its index on
start, so the real index is never touched. Every page is requested twice to warm up (the
first /themes clusters the cells and caches their vectors), then ``--requests`` times in a
row, one request at a time on a fresh connection, timed from request to last byte.

Repeating a query is answered from the search service's cache of recent answers, as when a
user reloads a page; the ``/search (new query)`` row asks a different graded query (from
``eval/tune.yaml`` and ``eval/heldout.yaml``) each time, so it includes embedding the query and
ranking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import unicodedata
from urllib.parse import quote

from common import eval_queries, get, kb_server, log, wait_ready, workspace

NURSE = "看護師不足"


def pages(port: int) -> dict[str, list[str]]:
    """Name → the paths to request in turn (one path: the same request every time)."""
    status, body = get(port, f"/api/search?k=1&q={quote(NURSE)}")
    assert status == 200, status
    cell = json.loads(body)["hits"][0]["id"]  # a 課題 cell: its page also lists related work
    queries = eval_queries()
    return {
        "/search?q=看護師不足": [f"/search?q={quote(NURSE)}"],
        "/search (new query)": [f"/search?q={quote(q)}" for q in queries],
        f"/cells/{cell}": [f"/cells/{cell}"],
        "/table": ["/table"],
        "/organisations": ["/organisations"],
        "/themes": ["/themes"],
        "/api/search?q=看護師不足": [f"/api/search?q={quote(NURSE)}"],
    }


def measure(port: int, paths: list[str], n: int, warm: int) -> list[float]:
    """Milliseconds of ``n`` sequential GETs, after ``warm`` untimed ones."""
    for path in paths[:warm] if len(paths) > 1 else paths * warm:
        get(port, path)
    timed = paths[warm : warm + n] if len(paths) > 1 else paths * n
    if len(timed) < n:
        raise SystemExit(f"not enough distinct paths for {n} requests")
    out = []
    for path in timed:
        started = time.perf_counter()
        status, _ = get(port, path)
        out.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"{path}: HTTP {status}")
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (kanji take two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - used)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--json", action="store_true", help="also print one JSON object last")
    args = parser.parse_args()

    figures: dict[str, dict] = {}
    log("kb serve: building the index in a temporary folder and starting …")
    with workspace("kb-pages-") as ws, kb_server(ws.env) as (_, port):
        wait_ready(port, time.monotonic() + 300)
        for name, paths in pages(port).items():
            ms = measure(port, paths, args.requests, warm=2)
            figures[name] = {
                "requests": len(ms),
                "median_ms": statistics.median(ms),
                "p95_ms": percentile(ms, 95),
            }

    width = 36
    print(
        f"{pad('page', width)}  {'median':>9}  {'p95':>9}   ({args.requests} requests each, warm)"
    )
    for name, f in figures.items():
        print(f"{pad(name, width)}  {f['median_ms']:6.1f} ms  {f['p95_ms']:6.1f} ms")
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    sys.exit(0)


if __name__ == "__main__":
    main()
