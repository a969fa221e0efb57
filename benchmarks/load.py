"""Load test: concurrent clients against a kb server on loopback, optionally during a rebuild.

    python benchmarks/load.py                      # 32 clients, 30 s, /api/search and /search
    python benchmarks/load.py --rebuild            # … while `kb build` replaces the index
    python benchmarks/load.py --clients 8 --seconds 10 --json
    python benchmarks/load.py --fresh              # every request a new query: no answer reused

The script copies ``corpus/`` into a temporary folder, builds an index there and serves it
with ``python -m kb serve`` on a free loopback port, so the real index is never touched.
Clients cycle through the real queries of ``eval/tune.yaml`` and ``eval/heldout.yaml`` and
alternate between the JSON API and the HTML page. With ``--rebuild`` one cell of the copy is edited after a third
of the run and ``kb build`` runs while the load continues; the script then checks that the
server answered every request, switched to the new build without a restart, and finds the
edited text. The server keeps answers to repeated requests (as it would for staff
searching the same words); ``--fresh`` makes every query new by appending the request
number, so each request pays for a real search.

It prints requests/s, p50/p95/p99 latency and the error count per route; bounded by
``--seconds`` and ``--max-requests``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import defaultdict
from urllib.parse import quote

import numpy as np
from common import (
    MARKER,
    Workspace,
    edit_one_cell,
    eval_queries,
    fetch,
    get,
    kb_server,
    wait_ready,
    workspace,
)


class Recorder:
    """Latencies and failures per route, from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)

    def add(self, route: str, ms: float, error: str | None) -> None:
        with self.lock:
            self.latencies[route].append(ms)
            if error:
                self.errors[route].append(error)


def client(
    port: int,
    paths: list[str],
    stop: threading.Event,
    budget: list[int],
    rec: Recorder,
    offset: int,
    fresh: bool,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = offset
    while not stop.is_set():
        with rec.lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        path = paths[i % len(paths)]
        route = path.split("?")[0]
        if fresh:  # the query is the last parameter of every path
            path += quote(f" {offset}-{i}")
        started = time.perf_counter()
        error = fetch(conn, path)
        rec.add(route, (time.perf_counter() - started) * 1000, error)
        i += 1
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--rebuild", action="store_true", help="run kb build during the load")
    parser.add_argument(
        "--fresh", action="store_true", help="make every query new (no answer reused)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as one JSON object last"
    )
    args = parser.parse_args()

    with workspace("kb-load-") as ws:
        ws.kb("build", check=True)
        with kb_server(ws.env) as (_, port):
            wait_ready(port, time.monotonic() + 60)
            result = run_load(args, port, ws)
    report(result, args.json)
    sys.exit(0 if result["errors"] == 0 and result.get("rebuild_ok", True) else 1)


def run_load(args: argparse.Namespace, port: int, ws: Workspace) -> dict:
    queries = eval_queries()
    paths = [
        p for q in queries for p in (f"/api/search?k=10&q={quote(q)}", f"/search?q={quote(q)}")
    ]
    before = json.loads(get(port, "/api/status")[1])["build_id"]
    rec, stop, budget = Recorder(), threading.Event(), [args.max_requests]
    threads = [
        threading.Thread(
            target=client, args=(port, paths, stop, budget, rec, i * 7, args.fresh), daemon=True
        )
        for i in range(args.clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    rebuild: dict = {}
    if args.rebuild:
        time.sleep(args.seconds / 3)
        edit_one_cell(ws.corpus)
        t0 = time.monotonic()
        ws.kb("build", check=True)
        rebuild["rebuild_s"] = time.monotonic() - t0
    time.sleep(max(0.0, args.seconds - (time.monotonic() - started)))
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    result = summarise(rec, elapsed)
    result["build_before"] = before
    if args.rebuild:
        after = json.loads(get(port, "/api/status")[1])["build_id"]
        status, body = get(port, f"/api/search?k=5&q={quote(MARKER)}")
        found = status == 200 and MARKER in body.decode("utf-8")
        result.update(
            rebuild,
            build_after=after,
            edited_cell_found=found,
            rebuild_ok=after != before and found,
        )
    return result


def summarise(rec: Recorder, elapsed: float) -> dict:
    routes = {}
    for route, values in rec.latencies.items():
        routes[route] = {
            "requests": len(values),
            "errors": len(rec.errors[route]),
            "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)),
            "p99_ms": float(np.percentile(values, 99)),
        }
    every = [v for values in rec.latencies.values() for v in values]
    return {
        "seconds": elapsed,
        "requests": len(every),
        "requests_per_s": len(every) / elapsed,
        "p50_ms": float(np.percentile(every, 50)) if every else None,
        "p95_ms": float(np.percentile(every, 95)) if every else None,
        "p99_ms": float(np.percentile(every, 99)) if every else None,
        "errors": sum(len(e) for e in rec.errors.values()),
        "error_samples": [e for errs in rec.errors.values() for e in errs][:5],
        "routes": routes,
    }


def report(r: dict, as_json: bool) -> None:
    print(
        f"{r['requests']} requests in {r['seconds']:.1f} s = {r['requests_per_s']:.0f} req/s; "
        f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; errors {r['errors']}"
    )
    for route, s in r["routes"].items():
        print(
            f"  {route:12} {s['requests']:>7} req  p50 {s['p50_ms']:6.1f} ms  p95 {s['p95_ms']:6.1f} ms  "
            f"p99 {s['p99_ms']:6.1f} ms  errors {s['errors']}"
        )
    if "build_after" in r:
        print(
            f"rebuild during load: {r['rebuild_s']:.1f} s; build {r['build_before']} → {r['build_after']}; "
            f"edited cell found after the swap: {r['edited_cell_found']}"
        )
    for sample in r["error_samples"]:
        print(f"  error: {sample}")
    if as_json:
        print(json.dumps({k: v for k, v in r.items() if k != "error_samples"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
