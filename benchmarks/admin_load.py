"""Searching while a build started from the admin API runs.

    python benchmarks/admin_load.py                 # 16 clients; upload FY2018 and apply it mid-load
    python benchmarks/admin_load.py --fresh         # every search a new query (nothing reused)
    python benchmarks/admin_load.py --clients 8 --json

The script copies ``corpus/`` into a temporary folder, builds an index there, creates a
secretariat account and a bearer token in the copy's admin folder, and serves it with
``python -m kb serve``. Clients search (``/api/search`` and ``/search`` alternating) with
the graded queries of ``eval/``. After a warm-up, the invented FY2018 sheet
(``tests/data/2018-atsugi-wide.xlsx``) is uploaded through ``POST /api/admin/tables`` and
applied with ``POST /api/admin/tables/{id}/apply``; the build runs inside the server
while the clients go on. The script prints p50/p95/p99 and errors for the searches made
before the build, while it ran, and for the whole run (the same run, so they compare); the build's duration and cells embedded; and
whether a new FY2018 cell is found afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
from common import ROOT, eval_queries, fetch, get, kb_server, log, wait_ready, workspace

from kb.admin.accounts import Accounts

SHEET = ROOT / "tests" / "data" / "2018-atsugi-wide.xlsx"


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            parts.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
            parts.append(f"--{boundary}\r\n{head}\r\n{value}\r\n".encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def call(port: int, method: str, path: str, token: str, body: bytes = b"", ctype: str = ""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    if ctype:
        headers["Content-Type"] = ctype
    conn.request(method, path, body=body or None, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data


class Searches:
    """(start time, latency ms, error) of every search, from many threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[float, float, str | None]] = []

    def add(self, started: float, ms: float, error: str | None) -> None:
        with self.lock:
            self.records.append((started, ms, error))

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict:
        chosen = [r for r in self.records if since <= r[0] <= until]
        ms = np.array([r[1] for r in chosen]) if chosen else np.zeros(1)
        return {
            "requests": len(chosen),
            "errors": sum(r[2] is not None for r in chosen),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
        }


def client(port: int, paths: list[str], stop: threading.Event, rec: Searches, n: int, fresh: bool):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = n
    while not stop.is_set():
        path = paths[i % len(paths)] + (quote(f" {n}-{i}") if fresh else "")
        started = time.monotonic()
        error = fetch(conn, path)
        rec.add(started, (time.monotonic() - started) * 1000, error)
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the upload")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after the build")
    parser.add_argument("--fresh", action="store_true", help="every search a new query")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()

    queries = eval_queries()
    paths = [p for q in queries for p in (f"/api/search?q={quote(q)}", f"/search?q={quote(q)}")]
    with workspace("kb-admin-load-") as ws:
        admin = Path(ws.corpus.parent / "admin")
        accounts = Accounts(admin)
        accounts.add("bench", "bench-password-1")
        token = accounts.create_token("bench")
        env = {**ws.env, "KB_ADMIN": str(admin)}
        log("索引を作っています…")
        ws.kb("build", check=True)
        with kb_server(env) as (_, port):
            wait_ready(port, time.monotonic() + 120)
            before = json.loads(get(port, "/api/status")[1])["build_id"]
            rec, stop = Searches(), threading.Event()
            threads = [
                threading.Thread(target=client, args=(port, paths, stop, rec, n, args.fresh))
                for n in range(args.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(args.warmup)
            body, ctype = multipart({"file": ("2018.xlsx", SHEET.read_bytes())})
            status, preview = call(port, "POST", "/api/admin/tables", token, body, ctype)
            assert status == 200, preview
            build_started = time.monotonic()
            status, applied = call(port, "POST", f"/api/admin/tables/{preview['id']}/apply", token)
            assert status == 202, applied
            job = applied["job"]
            while job["state"] not in ("done", "failed"):
                time.sleep(0.2)
                job = call(port, "GET", f"/api/admin/jobs/{job['id']}", token)[1]
            build_ended = time.monotonic()
            time.sleep(args.after)
            stop.set()
            for t in threads:
                t.join()
            after = json.loads(get(port, "/api/status")[1])["build_id"]
            new_cell = max(preview["cells"], key=lambda c: len(c["after"]))
            found = get(port, f"/api/search?q={quote(new_cell['after'][:40])}&year=2018")[1]
    report = {
        "clients": args.clients,
        "fresh": args.fresh,
        "build": {
            "state": job["state"],
            "seconds": round(build_ended - build_started, 1),
            "cells": job["cells"],
            "embedded": job["embedded"],
            "switched": after == job["build_id"] != before,
            "new_cell_found": new_cell["id"] in [h["id"] for h in json.loads(found)["hits"]],
        },
        "before_build": rec.summary(0.0, build_started),
        "during_build": rec.summary(build_started, build_ended),
        "whole_run": rec.summary(),
    }
    b = report["build"]
    print(
        f"build from the admin API: {b['state']} in {b['seconds']} s, {b['embedded']} of "
        f"{b['cells']} cells embedded, switched live: {b['switched']}, new cell found: "
        f"{b['new_cell_found']}"
    )
    for label in ("before_build", "during_build", "whole_run"):
        s = report[label]
        print(
            f"{args.clients} clients, {label.replace('_', ' ')}: {s['requests']} searches, errors {s['errors']}, "
            f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, p99 {s['p99_ms']} ms"
        )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
