"""Helpers shared by the benchmark scripts: a kb server on a free loopback port, HTTP GETs,
and a one-cell corpus edit. Scripts run as ``python benchmarks/<name>.py``, which puts this
folder on ``sys.path``."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from kb.core.fields import Field
from kb.corpus.tables import load_table, save_table

ROOT = Path(__file__).resolve().parent.parent
MARKER = "負荷試験中に書き換えたセル"
EVAL_FILES = (ROOT / "eval" / "tune.yaml", ROOT / "eval" / "heldout.yaml")


def eval_queries() -> list[str]:
    """The text of every graded query (both halves of the evaluation set), in file order."""
    return [
        q["query"]
        for path in EVAL_FILES
        for q in yaml.safe_load(path.read_text(encoding="utf-8"))["queries"]
    ]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, deadline: float, path: str = "/api/status") -> float:
    """Poll until ``path`` answers 200; returns the monotonic time it did."""
    while time.monotonic() < deadline:
        try:
            if get(port, path)[0] == 200:
                return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the server did not answer in time")


@contextmanager
def kb_server(
    env: dict, stderr: int | None = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen, int]]:
    """``kb serve`` on a free loopback port with ``env``; stopped on exit."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kb", "serve", "--port", str(port), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    try:
        yield server, port
    finally:
        server.terminate()
        server.wait(timeout=30)


class Workspace:
    """A copy of ``corpus/`` and an index folder in ``root``; ``kb`` runs against them, never
    against the real ones. The embedding cache is copied too, so builds are quick."""

    def __init__(self, root: Path) -> None:
        self.corpus = root / "corpus"
        self.index = root / "index"
        shutil.copytree(ROOT / "corpus", self.corpus)
        if (ROOT / "index" / "cache").exists():
            shutil.copytree(ROOT / "index" / "cache", self.index / "cache")
        self.env = {**os.environ, "KB_CORPUS": str(self.corpus), "KB_INDEX": str(self.index)}

    def kb(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "kb", *args],
            env=self.env,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def live(self) -> Path:
        """The build ``index/current`` points at."""
        return (self.index / "current").resolve()


@contextmanager
def workspace(prefix: str) -> Iterator[Workspace]:
    """A :class:`Workspace` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Workspace(Path(tmp))


def edit_one_cell(corpus_dir: Path) -> None:
    """Prefix the first column's progress cell of the first table with :data:`MARKER`."""
    path = sorted((corpus_dir / "tables").glob("*.yaml"))[0]
    table = load_table(path)
    column = table.columns[0]
    column.cells[Field.progress] = f"{MARKER}。{column.text(Field.progress)}"
    save_table(table, path)
